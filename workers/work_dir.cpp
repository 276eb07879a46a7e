#include "workers/work_dir.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>
#include <unistd.h>

namespace farmhand::worker {

namespace {

constexpr const char* kLockFile = "worker.lock";
constexpr const char* kResultsDir = "results";
constexpr const char* kResultSuffix = ".result";
constexpr const char* kTempSuffix = ".tmp";
// A result is a few KiB (its log tail is capped at 64 KiB); anything far
// bigger in the results folder is not ours.
constexpr std::uintmax_t kMaxResultFileBytes = 1 << 20;

std::string errno_text() {
  return std::strerror(errno);
}

Result<void> write_all(int fd, const std::string& data, const std::string& path) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(ErrorCode::kIo, fmt::format("cannot write {}: {}", path, errno_text()));
    done += static_cast<size_t>(n);
  }
  return {};
}

}  // namespace

Result<WorkDirLock> WorkDirLock::acquire(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec)
    return fail(ErrorCode::kIo, fmt::format("cannot create work dir {}: {}", dir, ec.message()));
  std::string path = (std::filesystem::path(dir) / kLockFile).string();
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return fail(ErrorCode::kIo, fmt::format("cannot open {}: {}", path, errno_text()));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    char buf[32] = {};
    ssize_t n = ::pread(fd, buf, sizeof(buf) - 1, 0);
    ::close(fd);
    if (err != EWOULDBLOCK) {
      return fail(ErrorCode::kIo, fmt::format("cannot lock {}: {}", path, std::strerror(err)));
    }
    std::string pid = n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
    while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
    return fail(ErrorCode::kUnavailable,
                fmt::format("work dir {} is in use by another worker (pid {}); give this worker "
                            "its own --work-dir",
                            dir, pid.empty() ? "unknown" : pid));
  }
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) < 0) {
    ::close(fd);
    return fail(ErrorCode::kIo, fmt::format("cannot write {}: {}", path, errno_text()));
  }
  return WorkDirLock(fd);
}

WorkDirLock& WorkDirLock::operator=(WorkDirLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

WorkDirLock::~WorkDirLock() {
  if (fd_ >= 0) ::close(fd_);
}

ResultStore::ResultStore(std::string work_dir)
    : dir_((std::filesystem::path(work_dir) / kResultsDir).string()) {}

std::string ResultStore::path(const wire::TaskRef& ref) const {
  return fmt::format("{}/job{}-task{}-lease{:016x}{}", dir_, ref.job_id(), ref.task(), ref.lease(),
                     kResultSuffix);
}

Result<void> ResultStore::save(const std::vector<const wire::TaskResult*>& results) {
  if (results.empty()) return {};
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) return fail(ErrorCode::kIo, fmt::format("cannot create {}: {}", dir_, ec.message()));
  for (const wire::TaskResult* result : results) {
    std::string final_path = path(result->ref());
    std::string temp_path = final_path + kTempSuffix;
    int fd = ::open(temp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
      return fail(ErrorCode::kIo, fmt::format("cannot create {}: {}", temp_path, errno_text()));
    }
    auto written = write_all(fd, result->SerializeAsString(), temp_path);
    if (written && ::fsync(fd) != 0) {
      written = fail(ErrorCode::kIo, fmt::format("cannot fsync {}: {}", temp_path, errno_text()));
    }
    ::close(fd);
    if (written && ::rename(temp_path.c_str(), final_path.c_str()) != 0) {
      written = fail(ErrorCode::kIo, fmt::format("cannot rename {}: {}", temp_path, errno_text()));
    }
    if (!written) {
      ::unlink(temp_path.c_str());
      return written;
    }
  }
  // The renames are durable once the directory is.
  int dir_fd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0)
    return fail(ErrorCode::kIo, fmt::format("cannot open {}: {}", dir_, errno_text()));
  int synced = ::fsync(dir_fd);
  ::close(dir_fd);
  if (synced != 0)
    return fail(ErrorCode::kIo, fmt::format("cannot fsync {}: {}", dir_, errno_text()));
  return {};
}

void ResultStore::remove(const wire::TaskRef& ref) {
  ::unlink(path(ref).c_str());
}

Result<ResultStore::Loaded> ResultStore::load() {
  Loaded loaded;
  std::error_code ec;
  if (!std::filesystem::exists(dir_, ec)) return loaded;
  std::filesystem::directory_iterator it(dir_, ec);
  if (ec) return fail(ErrorCode::kIo, fmt::format("cannot read {}: {}", dir_, ec.message()));
  for (const auto& entry : it) {
    const std::string name = entry.path().filename().string();
    const std::string file = entry.path().string();
    auto drop = [&](const std::string& why) {
      loaded.dropped.push_back(fmt::format("{}: {}", file, why));
      std::error_code ignored;
      std::filesystem::remove(entry.path(), ignored);
    };
    if (name.ends_with(kTempSuffix)) {
      // A write that a crash interrupted before its rename: never a result.
      std::error_code ignored;
      std::filesystem::remove(entry.path(), ignored);
      continue;
    }
    if (!name.ends_with(kResultSuffix)) continue;
    std::error_code size_ec;
    auto size = entry.file_size(size_ec);
    if (size_ec || size > kMaxResultFileBytes) {
      drop("not a result file");
      continue;
    }
    std::ifstream in(file, std::ios::binary);
    std::stringstream data;
    data << in.rdbuf();
    wire::TaskResult result;
    if (!in || !result.ParseFromString(data.str()) || !result.has_ref() ||
        path(result.ref()) != file) {
      drop("unreadable result");
      continue;
    }
    loaded.results.push_back(std::move(result));
  }
  return loaded;
}

}  // namespace farmhand::worker
