// Expansion of command templates into argv lists, per task chunk.
//
// Pure functions: no process, file or clock. The broker validates a job's
// parameters at submit (validate_params) and expands a task's argv at dispatch
// (expand_task). A template word that names {frame} makes one invocation per
// frame of the chunk; otherwise one invocation covers the chunk ({first},
// {last}, {frames}). Values are substituted as whole argv words or inside
// words; nothing is ever passed through a shell.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/frame_set.h"
#include "common/result.h"

namespace farmhand::common {

// Checks that every placeholder in the template is known (built-in or a
// declared param); used by config validation. Error names the placeholder.
[[nodiscard]] Result<void> check_template(const CommandTemplate& tmpl);

// Checks user parameters against the template: unknown keys, missing required
// values and pattern mismatches are errors ("param 'scene' does not match ^...$").
// Returns the parameters with defaults filled in.
[[nodiscard]] Result<std::map<std::string, std::string>> validate_params(
    const CommandTemplate& tmpl, const std::map<std::string, std::string>& params);

struct TaskContext {
  uint64_t job_id = 0;
  uint64_t task_index = 0;
  FrameSet frames;  // the task's chunk
};

// The invocations for one task: argv lists, run in order.
[[nodiscard]] Result<std::vector<std::vector<std::string>>> expand_task(
    const CommandTemplate& tmpl, const std::map<std::string, std::string>& params,
    const TaskContext& task);

}  // namespace farmhand::common
