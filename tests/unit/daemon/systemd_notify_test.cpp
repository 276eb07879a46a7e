// systemd_notify against a real AF_UNIX datagram socket standing in for systemd's NOTIFY_SOCKET.
#include "daemon/systemd_notify.h"

#include <optional>
#include <string>

#include "tests/support/temp_dir.h"
#include <gtest/gtest.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace farmhand::daemon::systemd {
namespace {

using namespace std::chrono_literals;

// A bound datagram socket exported as NOTIFY_SOCKET for the test's lifetime.
class NotifySocketTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    path_ = dir_.file("notify");
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd_, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    ASSERT_LT(path_.size(), sizeof(addr.sun_path));
    path_.copy(addr.sun_path, path_.size());
    ASSERT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    setenv("NOTIFY_SOCKET", path_.c_str(), 1);
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
  }

  void TearDown() override {
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    if (fd_ >= 0) close(fd_);
  }

  // The next datagram, or nullopt if none arrives within a second.
  std::optional<std::string> receive() {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, 1000) != 1) return std::nullopt;
    char buf[4096];
    ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    if (n < 0) return std::nullopt;
    return std::string(buf, static_cast<size_t>(n));
  }

  bool nothing_pending() {
    pollfd p{fd_, POLLIN, 0};
    return poll(&p, 1, 50) == 0;
  }

  testing_support::TempDir dir_{"fh-notify"};
  std::string path_;
  int fd_ = -1;
};

TEST_F(NotifySocketTest, ReadyStoppingAndWatchdogArriveAsDatagrams) {
  EXPECT_TRUE(notify_ready());
  EXPECT_EQ(receive(), "READY=1");
  EXPECT_TRUE(notify_watchdog());
  EXPECT_EQ(receive(), "WATCHDOG=1");
  EXPECT_TRUE(notify_stopping());
  EXPECT_EQ(receive(), "STOPPING=1");
}

TEST_F(NotifySocketTest, ReloadingCarriesAMonotonicTimestamp) {
  EXPECT_TRUE(notify_reloading());
  auto got = receive();
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->rfind("RELOADING=1\nMONOTONIC_USEC=", 0), 0u) << *got;
  std::string usec = got->substr(got->find('=', 12) + 1);
  ASSERT_FALSE(usec.empty());
  EXPECT_EQ(usec.find_first_not_of("0123456789"), std::string::npos) << usec;
  EXPECT_GT(std::stoull(usec), 0u);
}

TEST_F(NotifySocketTest, StatusIsOneLineEvenWhenTheTextIsNot) {
  EXPECT_TRUE(notify_status("serving\nREADY=1"));
  EXPECT_EQ(receive(), "STATUS=serving READY=1");
}

TEST_F(NotifySocketTest, WatchdogIntervalIsHalfOfWatchdogUsecForThisProcess) {
  EXPECT_EQ(watchdog_interval(), std::nullopt);
  setenv("WATCHDOG_USEC", "20000000", 1);
  EXPECT_EQ(watchdog_interval(), std::optional(std::chrono::milliseconds(10s)));
  setenv("WATCHDOG_PID", std::to_string(getpid()).c_str(), 1);
  EXPECT_EQ(watchdog_interval(), std::optional(std::chrono::milliseconds(10s)));
  // Meant for another process (a child inherited the environment): not ours to ping.
  setenv("WATCHDOG_PID", std::to_string(getpid() + 1).c_str(), 1);
  EXPECT_EQ(watchdog_interval(), std::nullopt);
}

TEST_F(NotifySocketTest, EverythingIsANoOpWithoutNotifySocket) {
  unsetenv("NOTIFY_SOCKET");
  EXPECT_FALSE(notify_ready());
  EXPECT_FALSE(notify_watchdog());
  EXPECT_FALSE(notify_stopping());
  EXPECT_FALSE(notify_reloading());
  EXPECT_FALSE(notify_status("idle"));
  EXPECT_TRUE(nothing_pending());
}

TEST_F(NotifySocketTest, AMissingSocketIsNotAnError) {
  setenv("NOTIFY_SOCKET", dir_.file("gone").c_str(), 1);
  EXPECT_FALSE(notify_ready());
  EXPECT_FALSE(notify_watchdog());
}

}  // namespace
}  // namespace farmhand::daemon::systemd
