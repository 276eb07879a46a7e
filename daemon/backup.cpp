#include "daemon/backup.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include <fcntl.h>
#include <fmt/format.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/media_jobs.h"

namespace farmhand::daemon {

namespace fs = std::filesystem;

namespace {

std::string errno_text(int err) {
  return std::strerror(err);
}

std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

// True when `dir` (no symlinks in it) is `state` or inside it, by device and inode.
bool in_state_dir(const fs::path& dir, const struct stat& state) {
  for (fs::path at = dir;; at = at.parent_path()) {
    struct stat st = {};

    if (::stat(at.c_str(), &st) == 0 && st.st_dev == state.st_dev && st.st_ino == state.st_ino) {
      return true;
    }
    if (at == at.parent_path()) return false;
  }
}

// Closes a descriptor on every path out.
struct Fd {
  int fd = -1;

  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

Result<std::string> check_backup_target(const std::string& target, const BackupPolicy& policy) {
  if (target.empty() || target.front() != '/' || target.find('\0') != std::string::npos) {
    return fail(ErrorCode::kInvalidArgument, "backup path must be absolute");
  }
  const std::string shown = printable(target, 300);
  const fs::path written(target);
  const fs::path name = written.filename();
  if (name.empty() || name == "." || name == "..") {
    return fail(ErrorCode::kInvalidArgument, fmt::format("backup path {} must name a file", shown));
  }
  const fs::path parent = written.parent_path();
  char* resolved = ::realpath(parent.c_str(), nullptr);

  struct stat parent_stat = {};

  if (resolved == nullptr || ::stat(resolved, &parent_stat) != 0 || !S_ISDIR(parent_stat.st_mode)) {
    std::free(resolved);
    return fail(ErrorCode::kNotFound,
                fmt::format("cannot back up to {}: no directory {} on the broker's host", shown,
                            printable(parent.string(), 300)));
  }
  const fs::path real_parent(resolved);
  std::free(resolved);
  const fs::path real_target = real_parent / name;

  struct stat state = {};

  if (!policy.state_dir.empty() && ::stat(policy.state_dir.c_str(), &state) == 0 &&
      in_state_dir(real_parent, state)) {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("backup path {} is in the state dir {}; back up to another directory",
                            shown, printable(policy.state_dir, 300)));
  }

  std::vector<std::string> roots = policy.allowed_roots;
  if (!policy.backup_dir.empty()) roots.insert(roots.begin(), policy.backup_dir);
  if (!roots.empty() && !check_allowed_root("backup path", target, roots)) {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("backup path {} is outside broker.backup_dir and broker.allowed_roots "
                            "({})",
                            shown, printable(joined(roots), 300)));
  }

  struct stat existing = {};

  if (::lstat(real_target.c_str(), &existing) == 0) {
    if (S_ISDIR(existing.st_mode)) {
      return fail(ErrorCode::kInvalidArgument, fmt::format("backup path {} is a directory", shown));
    }
    if (!policy.force) {
      return fail(ErrorCode::kInvalidArgument,
                  fmt::format("backup path {} exists; add --force to replace it", shown));
    }
  }
  return real_target.string();
}

Result<void> rename_into_place(int dir_fd, const std::string& from, const std::string& to,
                               bool replace) {
  if (replace) {
    // rename() replaces a symlink at the target; it never follows it.
    if (::renameat(dir_fd, from.c_str(), dir_fd, to.c_str()) != 0) {
      return fail(ErrorCode::kIo, fmt::format("cannot write {}: {}", to, errno_text(errno)));
    }
    return {};
  }
  if (::renameat2(dir_fd, from.c_str(), dir_fd, to.c_str(), RENAME_NOREPLACE) == 0) return {};
  int err = errno;
  if (err == EINVAL || err == ENOSYS) {
    // No RENAME_NOREPLACE on this file system: link() refuses an existing name too.
    err = ::linkat(dir_fd, from.c_str(), dir_fd, to.c_str(), 0) == 0 ? 0 : errno;
    if (err == 0) ::unlinkat(dir_fd, from.c_str(), 0);
  }
  if (err == EEXIST) {
    return fail(
        ErrorCode::kInvalidArgument,
        fmt::format("backup path {} exists; add --force to replace it", printable(to, 300)));
  }
  if (err != 0)
    return fail(ErrorCode::kIo, fmt::format("cannot write {}: {}", to, errno_text(err)));
  return {};
}

Result<uint64_t> backup_database(const std::string& source, const std::string& target,
                                 const BackupPolicy& policy) {
  auto checked = check_backup_target(target, policy);
  if (!checked) return fail(checked.error());
  const fs::path real_target(*checked);
  const std::string dir = real_target.parent_path().string();
  const std::string name = real_target.filename().string();

  Fd dir_fd{::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
  if (dir_fd.fd < 0) {
    return fail(ErrorCode::kIo, fmt::format("cannot open {}: {}", dir, errno_text(errno)));
  }
  // A fresh name of our own (O_EXCL): nothing there is followed or overwritten.
  std::string temp = (fs::path(dir) / ("." + name + ".XXXXXX.partial")).string();
  Fd temp_fd{::mkostemps(temp.data(), 8, O_CLOEXEC)};
  if (temp_fd.fd < 0) {
    return fail(ErrorCode::kIo, fmt::format("cannot write {}: {}", target, errno_text(errno)));
  }
  const std::string temp_name = fs::path(temp).filename().string();
  auto discard = [&](Error error) {
    ::unlinkat(dir_fd.fd, temp_name.c_str(), 0);
    return fail(std::move(error));
  };
  (void)::fchmod(temp_fd.fd, 0640);

  sqlite3* from = nullptr;
  if (sqlite3_open_v2(source.c_str(), &from, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    std::string reason = from ? sqlite3_errmsg(from) : "out of memory";
    sqlite3_close(from);
    return discard(Error{ErrorCode::kIo, fmt::format("cannot open state {}: {}", source, reason)});
  }
  sqlite3* to = nullptr;
  if (sqlite3_open_v2(temp.c_str(), &to, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW, nullptr) !=
      SQLITE_OK) {
    std::string reason = to ? sqlite3_errmsg(to) : "out of memory";
    sqlite3_close(to);
    sqlite3_close(from);
    return discard(Error{ErrorCode::kIo, fmt::format("cannot write {}: {}", target, reason)});
  }
  // No journal file beside the copy: a failed copy is deleted whole.
  int rc = sqlite3_exec(to, "PRAGMA journal_mode=MEMORY", nullptr, nullptr, nullptr);
  sqlite3_backup* backup =
      rc == SQLITE_OK ? sqlite3_backup_init(to, "main", from, "main") : nullptr;
  rc = SQLITE_ERROR;
  if (backup) {
    // One step: the whole copy reads one snapshot, so writers never force a restart.
    rc = sqlite3_backup_step(backup, -1);
    sqlite3_backup_finish(backup);
  }
  std::string reason = rc == SQLITE_DONE ? "" : sqlite3_errmsg(to);
  sqlite3_close(to);
  sqlite3_close(from);
  if (rc != SQLITE_DONE) {
    return discard(Error{ErrorCode::kIo, fmt::format("backup to {} failed: {}", target, reason)});
  }

  // The name must still be the file we made and filled.
  struct stat ours = {};
  struct stat named = {};
  if (::fsync(temp_fd.fd) != 0 || ::fstat(temp_fd.fd, &ours) != 0 ||
      ::fstatat(dir_fd.fd, temp_name.c_str(), &named, AT_SYMLINK_NOFOLLOW) != 0 ||
      ours.st_dev != named.st_dev || ours.st_ino != named.st_ino) {
    return discard(Error{ErrorCode::kIo, fmt::format("cannot write {}", target)});
  }

  if (auto ok = rename_into_place(dir_fd.fd, temp_name, name, policy.force); !ok) {
    Error error = ok.error();
    if (error.code == ErrorCode::kInvalidArgument) {
      error.reason =
          fmt::format("backup path {} exists; add --force to replace it", printable(target, 300));
    }
    return discard(std::move(error));
  }
  if (::fsync(dir_fd.fd) != 0) {
    return fail(ErrorCode::kIo, fmt::format("cannot sync {}: {}", dir, errno_text(errno)));
  }
  return static_cast<uint64_t>(ours.st_size);
}

}  // namespace farmhand::daemon
