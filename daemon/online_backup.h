// OnlineBackup: `farmhand admin backup` — a consistent copy of the live
// database made on a thread of its own, through its own read connection (WAL
// lets the loop keep committing meanwhile), at most one at a time.
//
// Owns the thread and the eventfd that wakes the loop when the copy is done;
// answers the client through the ClientPort then. The loop thread calls every
// method; the copy thread touches only its Job.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "farmhand.pb.h"
#include <spdlog/spdlog.h>

#include "common/config.h"
#include "common/result.h"
#include "daemon/clock.h"
#include "daemon/turn.h"

namespace farmhand::daemon {

class OnlineBackup {
 public:
  // Copies `db_path`; targets are checked against the config's backup_dir and
  // allowed_roots, and never lie in the database's own directory (daemon/backup.h).
  OnlineBackup(std::string db_path, const common::Config& config, const Clock& clock,
               ClientPort& clients, spdlog::logger& log)
      : db_path_(std::move(db_path)),
        config_(config),
        clock_(clock),
        clients_(clients),
        log_(log) {}

  ~OnlineBackup();

  OnlineBackup(const OnlineBackup&) = delete;
  OnlineBackup& operator=(const OnlineBackup&) = delete;

  // Starts a copy and holds the reply (true); false with the reason in
  // `pending.reply` when refused (answered by the caller).
  bool start(PendingReply& pending, const wire::BackupRequest& request);
  // Readable when the running copy is done; -1 when none runs.
  int fd() const;
  // Joins the finished copy and answers its client.
  void finish();

 private:
  struct Job {
    std::thread thread;
    int event_fd = -1;
    PendingReply reply;
    std::string target;
    Result<uint64_t> result = 0;
    Clock::SteadyTime started{};
  };

  std::string db_path_;
  const common::Config& config_;
  const Clock& clock_;
  ClientPort& clients_;
  spdlog::logger& log_;
  std::unique_ptr<Job> job_;
};

}  // namespace farmhand::daemon
