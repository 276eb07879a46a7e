#include "workers/media/output_file.h"

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <tuple>
#include <utility>

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

namespace farmhand::media {

namespace {

namespace fs = std::filesystem;

// A file name is at most 255 bytes on every file system we write to.
constexpr size_t kMaxName = 255;

std::string host_tag() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
  uint32_t hash = 2166136261u;  // FNV-1a: a short tag, not a secret
  for (const char* c = host; *c != '\0'; ++c) {
    hash = (hash ^ static_cast<unsigned char>(*c)) * 16777619u;
  }
  return fmt::format("{:08x}", hash);
}

const std::string& this_host_tag() {
  static const std::string tag = host_tag();
  return tag;
}

tl::unexpected<Error> write_fail(const std::string& output, const std::string& why) {
  return fail(ErrorCode::kIo, fmt::format("cannot write {}: {}", output, why));
}

// Whether `pid` may be a farmhand process writing a temporary file: alive and
// named farmhand*, or alive and not ours to inspect (then we keep its files).
bool live_farmhand(pid_t pid) {
  if (::kill(pid, 0) != 0 && errno == ESRCH) return false;
  std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
  std::string name;
  if (!comm || !std::getline(comm, name)) return true;
  return name.rfind("farmhand", 0) == 0;
}

// Removes the temporaries that dead farmhand-media processes of this host left
// in the directory `dir_fd`.
void sweep(int dir_fd) {
  int fd = ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  DIR* dir = ::fdopendir(fd);
  if (dir == nullptr) {
    ::close(fd);
    return;
  }
  const std::string prefix = ".farmhand-tmp." + this_host_tag() + ".";
  std::vector<std::string> stale;
  while (const dirent* entry = ::readdir(dir)) {
    std::string name = entry->d_name;
    if (name.rfind(prefix, 0) != 0) continue;
    size_t end = name.find('.', prefix.size());
    if (end == std::string::npos || end == prefix.size() || end - prefix.size() > 9) continue;
    std::string digits = name.substr(prefix.size(), end - prefix.size());
    if (digits.find_first_not_of("0123456789") != std::string::npos) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(digits));
    if (pid == ::getpid() || live_farmhand(pid)) continue;
    stale.push_back(std::move(name));
  }
  ::closedir(dir);
  for (const std::string& name : stale) ::unlinkat(dir_fd, name.c_str(), 0);
}

// Sweeps each directory once per process: the first output written there. A
// directory is its path and its inode (a new directory may reuse an inode).
void sweep_once(int dir_fd, const std::string& path) {
  static std::mutex mutex;
  static std::set<std::tuple<std::string, dev_t, ino_t>> swept;

  struct stat st {};

  if (::fstat(dir_fd, &st) != 0) return;
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (!swept.insert({path, st.st_dev, st.st_ino}).second) return;
  }
  sweep(dir_fd);
}

// Opens `place.dir` beneath `place.root` without following a symlink below the
// root, creating missing directories.
Result<int> open_beneath(const std::string& output, const OutputPlace& place) {
  const fs::path root = fs::path(place.root).lexically_normal();
  const fs::path dir = fs::path(place.dir).lexically_normal();
  const fs::path rel = dir.lexically_relative(root);
  if (!root.is_absolute() || rel.empty() || *rel.begin() == "..") {
    return write_fail(output, fmt::format("{} is outside its root {}", place.dir, place.root));
  }
  int fd = ::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return write_fail(output, fmt::format("{}: {}", root.string(), std::strerror(errno)));
  fs::path at = root;
  for (const fs::path& part : rel) {
    if (part == ".") continue;
    at /= part;
    if (part == ".." || part.empty()) {
      ::close(fd);
      return write_fail(output, fmt::format("bad directory {}", place.dir));
    }
    int next = ::openat(fd, part.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (next < 0 && errno == ENOENT) {
      // Outputs land in new folders (proxy/, review/) more often than not.
      if (::mkdirat(fd, part.c_str(), 0777) != 0 && errno != EEXIST) {
        int error = errno;
        ::close(fd);
        return write_fail(output,
                          fmt::format("cannot create {}: {}", at.string(), std::strerror(error)));
      }
      next = ::openat(fd, part.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    if (next < 0) {
      int error = errno;

      struct stat st {};

      bool link = ::fstatat(fd, part.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode);
      ::close(fd);
      if (link || error == ELOOP) {
        return write_fail(output, fmt::format("{} is a symlink", at.string()));
      }
      return write_fail(output, fmt::format("{}: {}", at.string(), std::strerror(error)));
    }
    ::close(fd);
    fd = next;
  }
  return fd;
}

// The output's parent as written: for requests that carry no root.
Result<int> open_parent(const std::string& output) {
  fs::path parent = fs::path(output).parent_path();
  if (parent.empty()) parent = ".";
  int fd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return write_fail(output, fmt::format("{}: {}", parent.string(), std::strerror(errno)));
  return fd;
}

}  // namespace

std::string temp_prefix() {
  return ".farmhand-tmp." + this_host_tag() + "." + std::to_string(::getpid()) + ".";
}

Result<OutputFile> OutputFile::create(const std::string& output, const OutputPlace& place) {
  const std::string name = fs::path(output).filename().string();
  if (name.empty() || name == "." || name == "..") {
    return write_fail(output, "it is a directory");
  }
  auto dir_fd = place.root.empty() ? open_parent(output) : open_beneath(output, place);
  if (!dir_fd) return fail(dir_fd.error());
  sweep_once(*dir_fd, place.root.empty() ? fs::path(output).parent_path().string() : place.dir);
  static std::atomic<uint64_t> counter{0};
  std::string temp = temp_prefix() + std::to_string(counter.fetch_add(1)) + ".";
  // The real extension stays last, for anything that looks at it.
  temp += temp.size() + name.size() <= kMaxName ? name : fs::path(name).extension().string();
  int file_fd =
      ::openat(*dir_fd, temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
  if (file_fd < 0) {
    int error = errno;
    ::close(*dir_fd);
    return write_fail(output, std::strerror(error));
  }
  return OutputFile(output, name, *dir_fd, file_fd, std::move(temp));
}

OutputFile::OutputFile(std::string output, std::string name, int dir_fd, int file_fd,
                       std::string temp_name)
    : output_(std::move(output)),
      name_(std::move(name)),
      dir_fd_(dir_fd),
      file_fd_(file_fd),
      temp_name_(std::move(temp_name)),
      write_path_("/proc/self/fd/" + std::to_string(file_fd)) {}

OutputFile::OutputFile(OutputFile&& other) noexcept
    : output_(std::move(other.output_)),
      name_(std::move(other.name_)),
      dir_fd_(std::exchange(other.dir_fd_, -1)),
      file_fd_(std::exchange(other.file_fd_, -1)),
      temp_name_(std::move(other.temp_name_)),
      write_path_(std::move(other.write_path_)),
      committed_(std::exchange(other.committed_, true)) {}

OutputFile::~OutputFile() {
  if (file_fd_ >= 0) ::close(file_fd_);
  if (dir_fd_ >= 0) {
    if (!committed_) ::unlinkat(dir_fd_, temp_name_.c_str(), 0);
    ::close(dir_fd_);
  }
}

std::string OutputFile::full_disk() const {
  struct statvfs fs {};

  if (::fstatvfs(file_fd_, &fs) == 0 && fs.f_bavail == 0) {
    return std::strerror(ENOSPC);
  }
  // A file size limit (ulimit -f, systemd's LimitFSIZE=) stops a file at the
  // limit, and the write that would cross it fails with EFBIG.
  rlimit limit{};
  struct stat st = {};
  if (::getrlimit(RLIMIT_FSIZE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY &&
      ::fstat(file_fd_, &st) == 0 && static_cast<rlim_t>(st.st_size) >= limit.rlim_cur) {
    return fmt::format("{} (the file size limit is {} bytes)", std::strerror(EFBIG),
                       limit.rlim_cur);
  }
  return {};
}

Result<void> OutputFile::commit(const std::vector<std::string>& reads) {
  struct stat target {};

  if (::fstatat(dir_fd_, name_.c_str(), &target, AT_SYMLINK_NOFOLLOW) == 0) {
    if (S_ISDIR(target.st_mode)) return write_fail(output_, "it is a directory");
    for (const std::string& read : reads) {
      struct stat st {};

      if (!read.empty() && ::stat(read.c_str(), &st) == 0 && st.st_dev == target.st_dev &&
          st.st_ino == target.st_ino) {
        return fail(ErrorCode::kInvalidArgument,
                    fmt::format("output {} is the task's input {}: a job never overwrites what "
                                "it reads",
                                output_, read));
      }
    }
  }
  if (::renameat(dir_fd_, temp_name_.c_str(), dir_fd_, name_.c_str()) != 0) {
    return write_fail(output_, std::strerror(errno));
  }
  committed_ = true;
  return {};
}

}  // namespace farmhand::media
