// Open Job Description job creation (2023-09): a validated job template plus
// job parameter values make a job, whose steps list their tasks.
//
// create_job() does what the specification does when a job is submitted:
//   - every job parameter gets its value (the one given, else the default; a
//     name the template does not define, or a parameter with neither, is an
//     error), checked against its type and constraints (INTs are 64-bit and
//     compared as numbers; PATHs are made absolute: a given relative value
//     against the submitter's working directory, a relative default against
//     the template's directory, which it may not leave);
//   - the format strings resolved at job creation are resolved (the job's name,
//     task parameter ranges, chunk sizes, host requirement names and values)
//     and their results checked again (a name of at most 128 characters, a
//     range of at most 1024 values, ...);
//   - each step's parameter space is expanded into its tasks, in the order the
//     reference implementation iterates them (products row-major, the rightmost
//     parameter fastest; associations element by element), with a CHUNK[INT]
//     parameter divided into balanced chunks (openjd/chunks.h).
//
// Pure: no files are read (the caller gives the directories), no processes run.
// Errors are one line naming what was wrong:
//   parameter Frames: value "1-x" is not an integer range expression
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "openjd/format_string.h"
#include "openjd/template.h"

#include "common/result.h"

namespace farmhand::openjd {

// A job parameter's value as format strings see it: `Param.<name>` and
// `RawParam.<name>` (the same until a worker maps PATHs).
struct ParameterValue {
  ParameterType type = ParameterType::kString;
  std::string value;  // INT in canonical decimal, FLOAT as written, PATH absolute
};

// One task: each task parameter's value as `{{Task.Param.<name>}}` substitutes
// it, in the order the step defines its task parameters.
using TaskParameters = std::vector<std::pair<std::string, std::string>>;

struct CreatedStep {
  std::string name;
  std::vector<std::string> dependencies;
  std::vector<TaskParameters> tasks;  // one empty set for a step without a parameter space
  // CHUNK[INT]: the parameter, the chunk size tasks were made with, and the
  // target runtime (0: none) a scheduler may adapt chunk sizes to.
  std::optional<std::string> chunked_parameter;
  uint64_t chunk_size = 0;
  uint64_t target_runtime_s = 0;
  std::vector<int64_t> chunk_values;  // every value of the chunked parameter
  bool contiguous = true;
  // Host requirements with their names and numbers resolved.
  std::vector<AmountRequirement> amounts;
  std::vector<AttributeRequirement> attributes;
};

struct Job {
  std::string name;
  std::map<std::string, ParameterValue> parameters;
  std::vector<CreatedStep> steps;  // template order
};

struct JobOptions {
  // Values given at submission (`-p NAME=VALUE`), as text.
  std::map<std::string, std::string> values;
  // Absolute: where relative PATH defaults and relative PATH values start.
  std::string template_dir;
  std::string working_dir;
  // At most this many tasks in one step (a product of 1024-value ranges grows fast).
  uint64_t max_tasks_per_step = 1'000'000;
};

// The job a template and its parameter values make. Environment templates'
// parameter definitions are merged in before the job template's (their
// constraints may only narrow; the last default wins).
[[nodiscard]] Result<Job> create_job(const JobTemplate& job_template, const JobOptions& options,
                                     const std::vector<EnvironmentTemplate>& environments = {});

// Steps in an order that runs each after the steps it depends on (template
// order otherwise).
std::vector<const CreatedStep*> dependency_order(const Job& job);

}  // namespace farmhand::openjd
