#include "openjd/source.h"

#include <fmt/format.h>

namespace farmhand::openjd {

Result<CreatedJob> create_job(const JobSource& source, uint64_t max_tasks_per_step) {
  CreatedJob created;
  for (const auto& [name, text] : source.env_templates) {
    auto env = parse_environment_template(text);
    if (!env) {
      return fail(env.error().code, fmt::format("{}: {}", printable(name), env.error().reason));
    }
    created.environments.push_back(std::move(*env));
  }
  auto parsed = parse_job_template(source.template_text);
  if (!parsed) return fail(parsed.error());
  JobOptions options;
  options.values = source.values;
  options.template_dir = source.template_dir;
  options.working_dir = source.working_dir;
  options.max_tasks_per_step = max_tasks_per_step;
  auto job = create_job(*parsed, options, created.environments);
  if (!job) return fail(job.error());
  created.job_template = std::move(*parsed);
  created.job = std::move(*job);
  return created;
}

}  // namespace farmhand::openjd
