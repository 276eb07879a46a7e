// The codes under which the store writes task states (the `state` column of the
// tasks table, documented in migrations/0001_init.sql). They are part of the file
// format: a code never changes meaning and is never reused, whatever the order of
// core::TaskState. They equal the enum's values when the schema was written, so
// existing state dirs need no data migration.
// Pure functions: thread-safe.
#pragma once

#include <optional>

#include "daemon/core/scheduler.h"

namespace farmhand::daemon {

// The stored code of a task state. kBackoff (a queued task waiting out its retry
// delay) is stored as queued: the delay is not durable.
constexpr int task_state_code(core::TaskState state) {
  switch (state) {
    case core::TaskState::kWaiting:
      return 0;
    case core::TaskState::kQueued:
    case core::TaskState::kBackoff:
      return 1;
    case core::TaskState::kRunning:
      return 2;
    case core::TaskState::kSucceeded:
      return 3;
    case core::TaskState::kFailed:
      return 4;
    case core::TaskState::kDead:
      return 5;
    case core::TaskState::kCancelled:
      return 6;
  }
  return -1;
}

// The task state a stored code names; nullopt for a code no farmhandd writes.
constexpr std::optional<core::TaskState> task_state_from_code(int code) {
  switch (code) {
    case 0:
      return core::TaskState::kWaiting;
    case 1:
      return core::TaskState::kQueued;
    case 2:
      return core::TaskState::kRunning;
    case 3:
      return core::TaskState::kSucceeded;
    case 4:
      return core::TaskState::kFailed;
    case 5:
      return core::TaskState::kDead;
    case 6:
      return core::TaskState::kCancelled;
    default:
      return std::nullopt;
  }
}

}  // namespace farmhand::daemon
