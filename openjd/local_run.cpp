#include "openjd/local_run.h"

#include <algorithm>
#include <set>

namespace farmhand::openjd {

LocalRunResult run_job_locally(const JobTemplate& job_template, const Job& job,
                               const std::vector<EnvironmentTemplate>& environments,
                               LocalRunOptions options) {
  LocalRunResult run;
  const std::string only = options.only_step;
  if (!only.empty() && std::none_of(job.steps.begin(), job.steps.end(),
                                    [&](const CreatedStep& step) { return step.name == only; })) {
    run.failure = "the template has no step \"" + only + "\"";
    return run;
  }
  SessionOptions session_options;
  session_options.root_dir = std::move(options.root_dir);
  session_options.job_parameters = job.parameters;
  session_options.path_mapping_rules = std::move(options.path_mapping_rules);
  session_options.redacted_env_vars = job_template.extensions.redacted_env_vars;
  session_options.env = std::move(options.env);
  session_options.log = std::move(options.log);
  Result<std::unique_ptr<Session>> created = Session::create(std::move(session_options));
  if (!created) {
    run.failure = created.error().reason;
    return run;
  }
  Session& session = **created;
  // True while nothing has failed; records the first failure.
  auto ok = [&run](const Result<ActionOutcome>& outcome) {
    if (outcome && outcome->succeeded()) return true;
    if (run.failure.empty()) {
      run.failure = outcome ? outcome->reason : outcome.error().reason;
      if (outcome && outcome->exit_code && *outcome->exit_code != 0) {
        run.failing_exit_code = outcome->exit_code;
      }
    }
    return false;
  };
  bool good = true;
  for (const EnvironmentTemplate& environment : environments) {
    good = good && ok(session.enter(environment.environment));
  }
  for (const Environment& environment : job_template.job_environments) {
    good = good && ok(session.enter(environment));
  }
  for (const CreatedStep* created_step : dependency_order(job)) {
    if (!good) break;
    if (!only.empty() && created_step->name != only) continue;
    auto step = std::find_if(job_template.steps.begin(), job_template.steps.end(),
                             [&](const Step& s) { return s.name == created_step->name; });
    if (step == job_template.steps.end()) {
      run.failure = "no step template for " + created_step->name;
      break;
    }
    size_t entered = 0;
    for (const Environment& environment : step->step_environments) {
      if (!good) break;
      ++entered;
      good = ok(session.enter(environment));
    }
    for (const TaskParameters& task : created_step->tasks) {
      if (!good) break;
      good = ok(session.run_task(*step, task));
      if (good) ++run.tasks_run;
    }
    for (; entered > 0; --entered) good = ok(session.exit()) && good;
  }
  for (const Result<ActionOutcome>& exited : session.exit_all()) ok(exited);
  return run;
}

}  // namespace farmhand::openjd
