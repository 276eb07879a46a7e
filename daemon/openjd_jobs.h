// Open Job Description on the farm (`farmhand submit openjd`, README "Open Job
// Description"): a job template becomes one farmhand job per step, each after
// the jobs of the steps it depends on, with a task per task of the step's
// parameter space (task i of the job is task i of the step as
// openjd::create_job makes it). The job carries the template's text and the
// values given, never the job made from them: broker and workers make the same
// job from that (openjd/source.h).
//
// Running templates is off until the config enables it (`openjd:`): every
// submit is refused until then, and each task tells its worker which programs
// its actions may start. Pure: no sockets, no store.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "farmhand.pb.h"
#include "openjd/source.h"

#include "common/config.h"
#include "common/frame_set.h"
#include "common/result.h"
#include "daemon/job_kinds.h"

namespace farmhand::daemon {

// One step's job, before it has an id.
struct OpenJdStepJob {
  std::string step;
  wire::JobSpec spec;
  std::vector<size_t> after;  // indexes of earlier entries: the steps it depends on
  uint64_t tasks = 0;
  size_t template_index = 0;  // the step's place in the template
};

struct OpenJdPlan {
  std::string job_name;
  std::vector<OpenJdStepJob> steps;  // each after the steps it depends on
  std::vector<std::string> warnings;
};

// The jobs `request` makes, or why none can be made (one line): OpenJD off in
// the config, a template or value the specification refuses, a PATH value
// outside broker.allowed_roots, a host requirement no farmhand worker meets.
[[nodiscard]] Result<OpenJdPlan> plan_openjd_jobs(const wire::SubmitOpenJdRequest& request,
                                                  const common::Config& config);

// The job kind's row (daemon/job_kinds.h).
[[nodiscard]] Result<void> prepare_openjd(wire::JobSpec& spec, const KindContext& context);
[[nodiscard]] Result<void> assign_openjd(const wire::JobSpec& spec, const common::FrameSet& frames,
                                         const common::Config& config, wire::Assign& assign);

}  // namespace farmhand::daemon
