// start_signal_free_thread(): the broker's helper threads take no signal (a
// SIGTERM meant for the loop's signalfd would kill the process on them) and
// carry a name an operator sees in `top -H` and `ps -L`.
#include "common/signal_free_thread.h"

#include <array>
#include <csignal>
#include <string>

#include <gtest/gtest.h>
#include <pthread.h>

namespace farmhand::common {
namespace {

TEST(SignalFreeThreadTest, TheThreadIsNamedAndBlocksEverySignal) {
  std::string name;
  bool term_blocked = false;
  bool hup_blocked = false;
  std::thread thread = start_signal_free_thread("fh-test-name", [&] {
    std::array<char, 16> buffer{};
    if (pthread_getname_np(pthread_self(), buffer.data(), buffer.size()) == 0) name = buffer.data();
    sigset_t mask;
    pthread_sigmask(SIG_SETMASK, nullptr, &mask);
    term_blocked = sigismember(&mask, SIGTERM) == 1;
    hup_blocked = sigismember(&mask, SIGHUP) == 1;
  });
  thread.join();
  EXPECT_EQ(name, "fh-test-name");
  EXPECT_TRUE(term_blocked);
  EXPECT_TRUE(hup_blocked);
}

TEST(SignalFreeThreadTest, TheCallersMaskIsRestored) {
  sigset_t before;
  pthread_sigmask(SIG_SETMASK, nullptr, &before);
  std::thread thread = start_signal_free_thread("fh-test", [] {});
  thread.join();
  sigset_t after;
  pthread_sigmask(SIG_SETMASK, nullptr, &after);
  EXPECT_EQ(sigismember(&after, SIGTERM), sigismember(&before, SIGTERM));
  EXPECT_EQ(sigismember(&after, SIGUSR1), sigismember(&before, SIGUSR1));
}

}  // namespace
}  // namespace farmhand::common
