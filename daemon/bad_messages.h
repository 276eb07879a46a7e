// BadMessages: counts what clients and workers send that cannot be used, and
// logs it at most once per burst, so that a hostile peer cannot flood the
// journal. Not thread-safe: the event loop owns it.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include <spdlog/spdlog.h>

#include "common/result.h"
#include "daemon/clock.h"

namespace farmhand::daemon {

class BadMessages {
 public:
  BadMessages(const Clock& clock, spdlog::logger& log) : clock_(clock), log_(log) {}

  void note(const char* socket, const std::string& reason) {
    ++count_;
    const auto now = clock_.steady();
    if (logged_ && now - last_log_ < kQuiet) return;
    logged_ = true;
    last_log_ = now;
    log_.warn("bad message dropped socket={} reason=\"{}\" total_dropped={}", socket,
              printable(reason, 200), count_);
  }

  uint64_t count() const { return count_; }

 private:
  static constexpr std::chrono::seconds kQuiet{10};
  const Clock& clock_;
  spdlog::logger& log_;
  uint64_t count_ = 0;
  bool logged_ = false;
  Clock::SteadyTime last_log_{};
};

}  // namespace farmhand::daemon
