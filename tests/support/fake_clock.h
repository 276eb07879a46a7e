// FakeClock: a daemon::Clock that moves only when a test says so.
#pragma once

#include <chrono>
#include <cstdint>

#include "daemon/clock.h"

namespace farmhand::testing {

class FakeClock final : public daemon::Clock {
 public:
  FakeClock() : Clock(SteadyTime{}), now_(SteadyTime{} + std::chrono::hours(1)) {}

  SteadyTime steady() const override { return now_; }

  int64_t unix_ms() const override {
    return kEpochMs +
           std::chrono::duration_cast<std::chrono::milliseconds>(now_.time_since_epoch()).count();
  }

  void advance(SteadyTime::duration by) { now_ += by; }

 private:
  static constexpr int64_t kEpochMs = 1'800'000'000'000;  // 2027
  SteadyTime now_;
};

}  // namespace farmhand::testing
