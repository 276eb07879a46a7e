// Expansion of command templates into argv lists, per task chunk.
//
// Pure functions: no process, file or clock. The broker validates a job's
// parameters at submit (validate_params) and expands a task's argv at dispatch
// (expand_task). A template word that names {frame} makes one invocation per
// frame of the chunk; otherwise one invocation covers the chunk ({first},
// {last}, {frames}). Values are substituted as whole argv words or inside
// words; nothing is ever passed through a shell.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/config.h"
#include "common/frame_set.h"
#include "common/result.h"

namespace farmhand::common {

// The placeholders every template may use without declaring them.
inline constexpr std::string_view kBuiltinPlaceholders[] = {"frame",  "first", "last",
                                                            "frames", "job",   "task"};

// A param value longer than this is refused: argv words are not a data channel.
inline constexpr std::size_t kMaxParamValueBytes = 4096;

// A task expanding to more invocations than this is refused rather than built in
// memory; a chunk that large with {frame} is almost certainly a wrong --chunk.
inline constexpr uint64_t kMaxInvocationsPerTask = 100'000;

// Checks that every placeholder in the template is known (built-in or a
// declared param); used by config validation. Error names the placeholder.
// Syntax: {name}, {frame:04} (zero padding, frame/first/last only), {{ and }}
// for literal braces.
[[nodiscard]] Result<void> check_template(const CommandTemplate& tmpl);

// The same check for one argv word of `tmpl`, so config validation can report
// each bad word at its own line.
[[nodiscard]] Result<void> check_argv_word(const CommandTemplate& tmpl, std::string_view word);

// Checks that a param pattern compiles as an RE2 regex (ECMAScript-like syntax
// without backreferences and lookaround, matched in time linear in the value).
// Error: "pattern '(a)\1' is not a valid regex: invalid escape sequence: \1 (...)".
[[nodiscard]] Result<void> check_pattern(const std::string& pattern);

// Checks one param value against its spec: size, no NUL, full match of the
// pattern (bytes, as written: the pattern need not be anchored). Thread-safe:
// compiled patterns are cached behind a mutex.
[[nodiscard]] Result<void> check_param_value(const std::string& name, const ParamSpec& spec,
                                             const std::string& value);

// Checks user parameters against the template: unknown keys, missing required
// values and pattern mismatches are errors ("param 'scene' value 'a b' does not
// match ^...$"); every problem is reported, joined by "; ". Returns the
// parameters with defaults filled in.
[[nodiscard]] Result<std::map<std::string, std::string>> validate_params(
    const CommandTemplate& tmpl, const std::map<std::string, std::string>& params);

struct TaskContext {
  uint64_t job_id = 0;
  uint64_t task_index = 0;
  FrameSet frames;  // the task's chunk
};

// The invocations for one task: argv lists, run in order. Params are checked
// again with validate_params (defaults filled in), so nothing unvalidated ever
// reaches an argv, even from a stored job.
[[nodiscard]] Result<std::vector<std::vector<std::string>>> expand_task(
    const CommandTemplate& tmpl, const std::map<std::string, std::string>& params,
    const TaskContext& task);

}  // namespace farmhand::common
