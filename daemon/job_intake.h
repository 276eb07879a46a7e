// JobIntake: turns a submitted spec into a job — checks common to every kind
// (lane, labels, name), the kind's own row (daemon/job_kinds.h), the scheduler
// entry and the job row in the turn's batch.
//
// Owns nothing; touches the Farm (scheduler, job book) and the Turn. A new job
// is not dispatched until the turn that created it is committed. A job that
// will wait for a worker (its pool has none alive) is accepted with a warning.
// Not thread-safe: the event loop calls it.
#pragma once

#include <optional>
#include <string>

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

  // `farmhand submit`: a new job, or the one an idempotency key names (a key
  // sent again with another spec is refused). `peer`: the client's CURVE key
  // name, recorded as the job's submitted_key.
  void submit(const wire::SubmitRequest& request, wire::ClientReply& reply, Turn& turn,
              const std::string& peer = {});

  // `farmhand submit openjd`: one job per step of the template, each after
  // the jobs of the steps it depends on, all in this turn or none (a resent
  // idempotency key is answered by ClientService from the stored reply).
  void submit_openjd(const wire::SubmitOpenJdRequest& request, wire::ClientReply& reply, Turn& turn,
                     const std::string& peer = {});

  // What create_job checks before it makes the job, completing `spec` as the
  // kind's row does (frames, defaults).
  [[nodiscard]] Result<void> check_spec(wire::JobSpec& spec,
                                        const common::FrameSet* on_disk = nullptr) const;

  // Validates and creates one job (staged in `turn`, not yet durable).
  // `on_disk`: a media job's input frames, when a publish has read them already.
  [[nodiscard]] Result<core::JobId> create_job(wire::JobSpec spec, Turn& turn,
                                               const common::FrameSet* on_disk = nullptr);

 private:
  // A movie in segments (daemon/media_jobs.h): the job that encodes them,
  // then the job that joins them after it, whose id is returned.
  [[nodiscard]] Result<core::JobId> create_movie_in_segments(wire::JobSpec spec, Turn& turn);

  // create_job for a spec check_spec has completed.
  [[nodiscard]] Result<core::JobId> create_checked_job(wire::JobSpec spec, Turn& turn);

  // A movie's join job: names in the reply the job that encodes its segments.
  void describe_segments(core::JobId id, wire::SubmitReply& reply) const;

  // Adds unserved_pool()'s warning to a submit reply while the job is not finished.
  void warn_if_waiting(core::JobId id, wire::ClientReply& reply) const;

  const common::Config& config_;
  const Clock& clock_;
  Farm& farm_;
  spdlog::logger& log_;
};

// Why a job of `pool` would wait for a worker: one line when no live worker
// serves the pool now ("no live worker serves pool 'gpu' now; the job waits
// until one joins"), else nothing. For the submit's warnings and `status`.
std::optional<std::string> unserved_pool(const core::Scheduler& scheduler, const std::string& pool);

// Why a job's tasks can never start where they are asked to run: no live worker
// of its pool has the cores and memory one task asks for. For the submit's
// warnings and `status`.
// `hold` is the job's, of kind kUnsatisfiable.
std::string unsatisfiable_request(core::JobId id, const core::JobSpec& spec,
                                  const core::JobHold& hold);

// Why a job waits: no live worker of its pool has the tags it asks for (an
// OpenJD step's host attributes). `hold` is the job's, of kind kTags.
std::string no_worker_has_tags(const core::JobHold& hold);

// A job's --memory-retry-factor: 0 (none) or 1 to 16.
inline bool valid_memory_retry_factor(double factor) {
  return factor == 0 || (factor >= 1 && factor <= 16);
}

}  // namespace farmhand::daemon
