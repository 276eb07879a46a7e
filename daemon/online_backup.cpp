#include "daemon/online_backup.h"

#include <filesystem>

#include <fmt/format.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/signal_free_thread.h"
#include "daemon/backup.h"

namespace farmhand::daemon {

OnlineBackup::~OnlineBackup() {
  if (!job_) return;
  if (job_->thread.joinable()) job_->thread.join();
  if (job_->event_fd >= 0) close(job_->event_fd);
}

int OnlineBackup::fd() const {
  return job_ ? job_->event_fd : -1;
}

bool OnlineBackup::start(PendingReply& pending, const wire::BackupRequest& request) {
  wire::ClientReply& reply = pending.reply;
  const std::string& target = request.path();
  const BackupPolicy policy{std::filesystem::path(db_path_).parent_path().string(),
                            config_.broker.backup_dir, config_.broker.allowed_roots,
                            request.force()};
  if (auto ok = check_backup_target(target, policy); !ok) {
    set_error(reply, ok.error());
    return false;
  }
  if (job_) {
    set_error(reply, Error{ErrorCode::kUnavailable, "a backup is already running"});
    return false;
  }
  auto job = std::make_unique<Job>();
  job->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (job->event_fd < 0) {
    set_error(reply, Error{ErrorCode::kInternal, "cannot create eventfd"});
    return false;
  }
  job->reply = pending;
  job->target = target;
  job->started = clock_.steady();
  Job* j = job.get();
  // Its own connection on its own thread: WAL lets the loop keep committing meanwhile.
  job->thread = std::thread([j, source = db_path_, policy] {
    common::name_this_thread("fh-backup");
    j->result = backup_database(source, j->target, policy);
    uint64_t one = 1;
    (void)!write(j->event_fd, &one, sizeof one);
  });
  job_ = std::move(job);
  log_.info("backup started target={}", printable(target, 300));
  return true;
}

void OnlineBackup::finish() {
  if (!job_) return;
  uint64_t count = 0;
  if (read(job_->event_fd, &count, sizeof count) != sizeof count) return;
  job_->thread.join();
  close(job_->event_fd);
  PendingReply pending = std::move(job_->reply);
  const double elapsed = std::chrono::duration<double>(clock_.steady() - job_->started).count();
  if (job_->result) {
    pending.reply.mutable_backup()->set_bytes(*job_->result);
    pending.reply.mutable_backup()->set_elapsed_s(elapsed);
    log_.info("backup done target={} bytes={} elapsed_s={:.3f}", printable(job_->target, 300),
              *job_->result, elapsed);
  } else {
    set_error(pending.reply, job_->result.error());
    log_.error("backup failed target={} reason=\"{}\"", printable(job_->target, 300),
               job_->result.error().reason);
  }
  job_.reset();
  clients_.send(pending);
}

}  // namespace farmhand::daemon
