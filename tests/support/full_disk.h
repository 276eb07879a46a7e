// FullDisk: a directory where writes fail after 64 KiB, for tests of what a
// full disk does to an output.
//
// As root it is a real full file system, a 64 KiB tmpfs mounted on the
// directory (writes fail with ENOSPC). Where mounting is not allowed (a CI
// container without CAP_SYS_ADMIN) it is the process's file size limit
// instead: RLIMIT_FSIZE lowered to 64 KiB for the FullDisk's life, with
// SIGXFSZ ignored, so that a write past it fails with EFBIG as a full disk
// fails with ENOSPC — the same failed write() through the same code, never a
// skipped test (FARMHAND_TEST_NO_MOUNT=1 forces it, to test it as root).
// reason() is the strerror text the test should expect.
// One FullDisk at a time, on the test's own thread.
#pragma once

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include "tests/support/temp_dir.h"
#include <sys/resource.h>

namespace farmhand::testing_support {

class FullDisk {
 public:
  static constexpr rlim_t kSize = 64 * 1024;

  explicit FullDisk(const TempDir& dir) : path_(dir.file("full")) {
    std::filesystem::create_directory(path_);
    mounted_ =
        std::getenv("FARMHAND_TEST_NO_MOUNT") == nullptr &&
        std::getenv("FARMHAND_E2E_NO_MOUNT") == nullptr &&
        std::system(("mount -t tmpfs -o size=64k tmpfs '" + path_ + "' 2>/dev/null").c_str()) == 0;
    if (!mounted_) {
      getrlimit(RLIMIT_FSIZE, &saved_limit_);
      rlimit limit = saved_limit_;
      limit.rlim_cur = kSize;
      setrlimit(RLIMIT_FSIZE, &limit);
      saved_handler_ = std::signal(SIGXFSZ, SIG_IGN);
    }
  }

  ~FullDisk() { release(); }

  FullDisk(const FullDisk&) = delete;
  FullDisk& operator=(const FullDisk&) = delete;

  // Frees the disk early (unmounts, or lifts the limit), so that a test can
  // look at what was left behind.
  void release() {
    if (released_) return;
    released_ = true;
    if (mounted_) {
      (void)std::system(("umount '" + path_ + "'").c_str());
    } else {
      setrlimit(RLIMIT_FSIZE, &saved_limit_);
      std::signal(SIGXFSZ, saved_handler_);
    }
  }

  const std::string& path() const { return path_; }

  // What a failed write says here.
  std::string reason() const { return std::strerror(mounted_ ? ENOSPC : EFBIG); }

 private:
  std::string path_;
  bool mounted_ = false;
  bool released_ = false;
  rlimit saved_limit_{};
  void (*saved_handler_)(int) = SIG_DFL;
};

}  // namespace farmhand::testing_support
