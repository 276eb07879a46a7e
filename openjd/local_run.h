// A whole OpenJD job run on this host in one session, as the reference
// `openjd run` does: the environment templates' environments and the job's
// environments entered once; then each step, after the steps it depends on,
// with its step environments entered around its tasks; then everything exited
// in reverse. The first failure stops the run (sessions fail as a whole); what
// was entered is still exited.
//
// For template authors (`farmhand openjd run`) and the conformance job tests;
// the farm runs tasks on workers instead.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "openjd/job.h"
#include "openjd/session.h"

namespace farmhand::openjd {

struct LocalRunOptions {
  std::string root_dir;                    // the session's working directory goes here
  std::map<std::string, std::string> env;  // added to every action's environment
  std::vector<PathMappingRule> path_mapping_rules;
  LogSink log;  // every logged line, already redacted
  // Run only this step (inside the job's environments and its own); "": all.
  std::string only_step;
};

struct LocalRunResult {
  uint64_t tasks_run = 0;  // tasks that succeeded
  std::string failure;     // the first failure; empty when every action succeeded
  std::optional<int> failing_exit_code;

  bool succeeded() const { return failure.empty(); }
};

LocalRunResult run_job_locally(const JobTemplate& job_template, const Job& job,
                               const std::vector<EnvironmentTemplate>& environments,
                               LocalRunOptions options);

}  // namespace farmhand::openjd
