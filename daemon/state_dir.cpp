#include "daemon/state_dir.h"

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

namespace farmhand::daemon {

namespace {

std::string errno_text(int err) {
  return std::strerror(err);
}

// The pid a lock holder wrote into the lock file, or "" while it has not yet.
std::string holder_pid(int fd) {
  char buf[32] = {};
  ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
  if (n <= 0) return "";
  std::string text(buf, static_cast<size_t>(n));
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos) return "";
  return text;
}

Result<void> fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return fail(ErrorCode::kIo, fmt::format("cannot open {}: {}", dir, errno_text(errno)));
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return fail(ErrorCode::kIo, fmt::format("cannot sync {}: {}", dir, errno_text(err)));
  return {};
}

}  // namespace

Result<std::unique_ptr<StateDir>> StateDir::open(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return fail(ErrorCode::kIo, fmt::format("cannot create state dir {}: {}", dir, ec.message()));
  }
  const std::string lock_path = (std::filesystem::path(dir) / kLockName).string();
  // Never truncated before the lock is ours: the holder's pid must stay readable.
  int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) {
    return fail(ErrorCode::kIo,
                fmt::format("cannot open state dir lock {}: {}", lock_path, errno_text(errno)));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    std::string pid = err == EWOULDBLOCK ? holder_pid(fd) : "";
    ::close(fd);
    if (err != EWOULDBLOCK) {
      return fail(ErrorCode::kIo,
                  fmt::format("cannot lock state dir {}: {}", dir, errno_text(err)));
    }
    return fail(ErrorCode::kUnavailable,
                pid.empty() ? fmt::format("state dir {} is in use by another farmhandd", dir)
                            : fmt::format("state dir {} is in use by farmhandd pid {}", dir, pid));
  }
  std::string pid = fmt::format("{}\n", ::getpid());
  if (::ftruncate(fd, 0) != 0 ||
      ::pwrite(fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    int err = errno;
    ::close(fd);
    return fail(ErrorCode::kIo, fmt::format("cannot write {}: {}", lock_path, errno_text(err)));
  }
  return std::unique_ptr<StateDir>(new StateDir(dir, fd));
}

StateDir::~StateDir() {
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

std::string StateDir::database_path() const {
  return (std::filesystem::path(path_) / kDatabaseName).string();
}

std::string StateDir::marker_path() const {
  return (std::filesystem::path(path_) / kMarkerName).string();
}

Result<void> StateDir::check_database() const {
  struct stat marker = {};

  if (::lstat(marker_path().c_str(), &marker) != 0) {
    if (errno == ENOENT) return {};  // fresh, or made before the marker existed
    return fail(ErrorCode::kIo,
                fmt::format("cannot read {}: {}", marker_path(), errno_text(errno)));
  }

  struct stat db = {};

  std::string lost;
  if (::lstat(database_path().c_str(), &db) != 0) {
    if (errno != ENOENT) {
      return fail(ErrorCode::kIo,
                  fmt::format("cannot read {}: {}", database_path(), errno_text(errno)));
    }
    lost = "is missing";
  } else if (S_ISREG(db.st_mode) && db.st_size == 0) {
    lost = "is empty";
  }
  if (lost.empty()) return {};
  return fail(
      ErrorCode::kCorrupt,
      fmt::format("state dir {} has lost its database: {} {} but {} records that one was "
                  "created; restore a backup made by `farmhand admin backup` to {} "
                  "(removing its -wal and -shm files), or remove {} to start an empty "
                  "farm on purpose",
                  path_, database_path(), lost, marker_path(), database_path(), marker_path()));
}

Result<std::unique_ptr<SqliteStore>> StateDir::open_store(const std::string& synchronous,
                                                          SqliteStore::Flush flush) {
  if (auto ok = check_database(); !ok) return fail(ok.error());
  auto store = SqliteStore::open(database_path(), synchronous, flush);
  if (!store) return store;
  if (auto ok = write_marker(); !ok) return fail(ok.error());
  return store;
}

Result<void> StateDir::write_marker() const {
  const std::string path = marker_path();
  if (::access(path.c_str(), F_OK) == 0) return {};
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0)
    return fail(ErrorCode::kIo, fmt::format("cannot write {}: {}", tmp, errno_text(errno)));
  static constexpr char kText[] =
      "farmhand: farmhand.db was created in this state dir; farmhandd refuses to start while it "
      "is missing or empty\n";
  bool ok = ::write(fd, kText, sizeof kText - 1) == static_cast<ssize_t>(sizeof kText - 1) &&
            ::fsync(fd) == 0;
  int err = errno;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    if (ok) err = errno;
    ::unlink(tmp.c_str());
    return fail(ErrorCode::kIo, fmt::format("cannot write {}: {}", path, errno_text(err)));
  }
  return fsync_dir(path_);
}

}  // namespace farmhand::daemon
