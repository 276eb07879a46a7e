// JobIntake: turns a submitted spec into a job — checks common to every kind
// (lane, labels, name), the kind's own row (daemon/job_kinds.h), the scheduler
// entry and the job row in the turn's batch.
//
// Owns nothing; touches the Farm (scheduler, job book) and the Turn. A new job
// is not dispatched until the turn that created it is committed. Not
// thread-safe: the event loop calls it.
#pragma once

#include "farmhand.pb.h"
#include <spdlog/spdlog.h>

#include "common/config.h"
#include "common/frame_set.h"
#include "common/result.h"
#include "daemon/clock.h"
#include "daemon/farm.h"
#include "daemon/turn.h"

namespace farmhand::daemon {

class JobIntake {
 public:
  JobIntake(const common::Config& config, const Clock& clock, Farm& farm, spdlog::logger& log)
      : config_(config), clock_(clock), farm_(farm), log_(log) {}

  // `farmhand submit`: a new job, or the one an idempotency key names.
  void submit(const wire::SubmitRequest& request, wire::ClientReply& reply, Turn& turn);

  // Validates and creates one job (staged in `turn`, not yet durable).
  // `on_disk`: a media job's input frames, when a publish has read them already.
  [[nodiscard]] Result<core::JobId> create_job(wire::JobSpec spec, Turn& turn,
                                               const common::FrameSet* on_disk = nullptr);

 private:
  const common::Config& config_;
  const Clock& clock_;
  Farm& farm_;
  spdlog::logger& log_;
};

}  // namespace farmhand::daemon
