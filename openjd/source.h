// A job as it is submitted: the job template's text, the environment
// templates' text and the parameter values given. The CLI, the broker and
// every worker make the same job from it (openjd::create_job), so this is what
// travels, never the job made from it.
//
// Pure: no files are read. Thread-safe: no shared state.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "openjd/job.h"
#include "openjd/template.h"

#include "common/result.h"

namespace farmhand::openjd {

struct JobSource {
  std::string template_text;
  // (name, text), applied in this order; the name prefixes their errors.
  std::vector<std::pair<std::string, std::string>> env_templates;
  std::map<std::string, std::string> values;  // -p NAME=VALUE
  // Absolute: where relative PATH values and defaults start.
  std::string template_dir;
  std::string working_dir;
};

struct CreatedJob {
  JobTemplate job_template;
  std::vector<EnvironmentTemplate> environments;
  Job job;
};

// Parses the templates and creates the job. Errors are one line: the job
// template's own as parse_job_template and create_job give them, an
// environment template's prefixed with its name.
[[nodiscard]] Result<CreatedJob> create_job(const JobSource& source,
                                            uint64_t max_tasks_per_step = 1'000'000);

}  // namespace farmhand::openjd
