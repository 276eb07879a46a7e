#include "daemon/store/flusher.h"

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fcntl.h>
#include <fmt/format.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

namespace farmhand::daemon {

namespace {

Error flush_error(const std::string& path, int err) {
  return Error{ErrorCode::kIo,
               fmt::format("state store flush failed: {} ({})", std::strerror(err), path)};
}

// A file just created or replaced is durable only once its directory entry is.
Result<void> sync_parent_dir(const std::string& path) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  const std::string dir = parent.empty() ? std::string(".") : parent.string();
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return fail(flush_error(dir, errno));
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return fail(flush_error(dir, err));
  return {};
}

}  // namespace

Result<std::unique_ptr<Flusher>> make_flusher(const std::string& flush_path) {
  if (flush_path.empty()) return std::unique_ptr<Flusher>(std::make_unique<InlineFlusher>());
  auto flusher = FileFlusher::open(flush_path);
  if (!flusher) return fail(flusher.error());
  return std::unique_ptr<Flusher>(std::move(*flusher));
}

FileFlusher::FileFlusher(std::string path) : path_(std::move(path)) {}

Result<std::unique_ptr<FileFlusher>> FileFlusher::open(const std::string& path) {
  std::unique_ptr<FileFlusher> flusher(new FileFlusher(path));
  flusher->event_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (flusher->event_fd_ < 0) {
    return fail(ErrorCode::kInternal, fmt::format("cannot create eventfd: {}", strerror(errno)));
  }
  if (auto ok = flusher->reopen(); !ok) return fail(ok.error());
  // The thread blocks every signal (it inherits the mask it is created with):
  // the loop takes SIGTERM, SIGHUP and SIGCHLD through its signalfd, and a
  // signal delivered here instead would kill the broker or be lost.
  sigset_t all;
  sigset_t previous;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &previous);
  flusher->thread_ = std::thread([f = flusher.get()] { f->run(); });
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  return flusher;
}

FileFlusher::~FileFlusher() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (file_fd_ >= 0) ::close(file_fd_);
  if (event_fd_ >= 0) ::close(event_fd_);
}

void FileFlusher::request(uint64_t seq) {
  {
    std::lock_guard lock(mu_);
    if (seq <= requested_) return;
    requested_ = seq;
  }
  wake_.notify_one();
}

Result<uint64_t> FileFlusher::flushed() {
  uint64_t count = 0;
  while (::read(event_fd_, &count, sizeof(count)) == sizeof(count)) {
  }
  std::lock_guard lock(mu_);
  if (error_) return fail(*error_);
  return done_;
}

Result<uint64_t> FileFlusher::wait(uint64_t seq) {
  request(seq);
  std::unique_lock lock(mu_);
  settled_.wait(lock, [&] { return done_ >= seq || error_.has_value(); });
  if (error_) return fail(*error_);
  return done_;
}

uint64_t FileFlusher::flushes() const {
  std::lock_guard lock(mu_);
  return flushes_;
}

void FileFlusher::run() {
  std::unique_lock lock(mu_);
  for (;;) {
    wake_.wait(lock, [&] { return stop_ || (requested_ > done_ && !error_); });
    if (stop_) return;
    const uint64_t target = requested_;
    lock.unlock();
    // Everything written before this call is covered, so the commits requested
    // while it runs wait for the next one, which covers them all.
    auto ok = flush_once();
    lock.lock();
    ++flushes_;
    if (ok) {
      done_ = target;
    } else {
      error_ = ok.error();
    }
    settled_.notify_all();
    const uint64_t one = 1;
    (void)!::write(event_fd_, &one, sizeof(one));
  }
}

Result<void> FileFlusher::reopen() {
  int fd = ::open(path_.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) {
    // Not there (yet, or any more): the next flush looks again.
    if (file_fd_ >= 0) ::close(file_fd_);
    file_fd_ = -1;
    return {};
  }
  if (fd < 0) return fail(flush_error(path_, errno));
  if (file_fd_ >= 0) ::close(file_fd_);
  file_fd_ = fd;
  return sync_parent_dir(path_);
}

Result<void> FileFlusher::flush_once() {
  struct stat at_path = {};
  struct stat ours = {};
  const bool present = ::stat(path_.c_str(), &at_path) == 0;
  const bool same = present && file_fd_ >= 0 && ::fstat(file_fd_, &ours) == 0 &&
                    ours.st_ino == at_path.st_ino && ours.st_dev == at_path.st_dev;
  if (!same) {
    // Flush what we held first: a replaced file's last writes may still matter
    // until the new one is in place.
    if (file_fd_ >= 0 && ::fdatasync(file_fd_) != 0) return fail(flush_error(path_, errno));
    if (auto ok = reopen(); !ok) return ok;
  }
  if (file_fd_ < 0) return {};
  if (::fdatasync(file_fd_) != 0) return fail(flush_error(path_, errno));
  return {};
}

}  // namespace farmhand::daemon
