#include "openjd/wire_source.h"

namespace farmhand::openjd {

JobSource job_source(const wire::OpenJdSource& source) {
  JobSource out;
  out.template_text = source.template_();
  for (const auto& env : source.env_templates()) {
    out.env_templates.emplace_back(env.name(), env.text());
  }
  for (const auto& p : source.parameters()) out.values[p.name()] = p.value();
  out.template_dir = source.template_dir();
  out.working_dir = source.working_dir();
  return out;
}

}  // namespace farmhand::openjd
