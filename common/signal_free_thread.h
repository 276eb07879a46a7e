// A thread that takes no signal. The broker (and the worker) read SIGTERM and
// SIGHUP from a signalfd, with the signals blocked in the main thread; any
// other thread that could receive them would die of them first, and the
// process with it. A thread starts with its creator's mask, so the creator
// blocks everything around the creation and restores its own mask after.
// Each is named (what `top -H`, `ps -L` and perf show), so an operator can
// tell the loop from the HTTP front or the checkpointer.
#pragma once

#include <system_error>
#include <thread>
#include <utility>

#include <pthread.h>
#include <signal.h>

namespace farmhand::common {

// Names the calling thread (at most 15 characters are kept).
inline void name_this_thread(const char* name) {
  (void)pthread_setname_np(pthread_self(), name);
}

// Starts `body` on a new thread named `name` (a string literal) with every
// signal blocked. Throws what std::thread throws (std::system_error), with the
// caller's mask restored.
template <typename Body>
std::thread start_signal_free_thread(const char* name, Body&& body) {
  sigset_t all;
  sigset_t previous;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &previous);
  try {
    std::thread thread([name, body = std::forward<Body>(body)]() mutable {
      name_this_thread(name);
      body();
    });
    pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    return thread;
  } catch (...) {
    pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    throw;
  }
}

}  // namespace farmhand::common
