// Clock: the broker's one source of time (after LevelDB's Env::NowMicros).
//
// Every component asks the Clock it was given, never std::chrono directly, so
// a test drives time by hand (FakeClock in tests/support) and a deadline can be
// checked without waiting for it. Three readings of one instant:
//   steady()  monotonic, for deadlines (the supervisor's and watcher's timers);
//   millis()  the scheduler's monotonic milliseconds, never below one second,
//             so that "time zero" never looks like a real deadline;
//   unix_ms() wall time, only for what users read (submitted, finished).
// Implementations are thread-safe (the backup thread reads none of them).
#pragma once

#include <chrono>
#include <cstdint>

#include "daemon/core/scheduler.h"

namespace farmhand::daemon {

class Clock {
 public:
  using SteadyTime = std::chrono::steady_clock::time_point;

  virtual ~Clock() = default;
  virtual SteadyTime steady() const = 0;
  virtual int64_t unix_ms() const = 0;

  core::Millis millis() const {
    return std::chrono::duration_cast<core::Millis>(steady() - origin_) + core::Millis(1000);
  }

  // Milliseconds from now until `deadline` (negative when it has passed).
  core::Millis until(SteadyTime deadline) const {
    return std::chrono::duration_cast<core::Millis>(deadline - steady());
  }

 protected:
  explicit Clock(SteadyTime origin) : origin_(origin) {}

 private:
  SteadyTime origin_;
};

// The real clocks.
class SystemClock final : public Clock {
 public:
  SystemClock() : Clock(std::chrono::steady_clock::now()) {}

  SteadyTime steady() const override { return std::chrono::steady_clock::now(); }

  int64_t unix_ms() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
};

}  // namespace farmhand::daemon
