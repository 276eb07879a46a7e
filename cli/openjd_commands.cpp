#include "cli/openjd_commands.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <variant>

#include "openjd/template.h"
#include <fmt/format.h>

#include "cli/output.h"

namespace farmhand::cli {

namespace {

struct CheckOptions {
  std::string path;
};

// The whole file, or stdin for "-".
Result<std::string> read_template(const std::string& path) {
  std::ostringstream text;
  if (path == "-") {
    text << std::cin.rdbuf();
    if (std::cin.bad()) return fail(ErrorCode::kIo, "cannot read standard input");
    return text.str();
  }
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return fail(ErrorCode::kIo, fmt::format("cannot read {}: it is a directory", printable(path)));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return fail(ErrorCode::kNotFound,
                fmt::format("cannot open {}: {}", printable(path), std::strerror(errno)));
  }
  text << in.rdbuf();
  if (in.bad()) {
    return fail(ErrorCode::kIo, fmt::format("cannot read {}", printable(path)));
  }
  return text.str();
}

std::string plural(size_t n, std::string_view word) {
  return fmt::format("{} {}{}", n, word, n == 1 ? "" : "s");
}

int check(Context& ctx, const CheckOptions& o) {
  auto text = read_template(o.path);
  if (!text) {
    ctx.err << "farmhand: " << single_line(text.error().reason) << '\n' << std::flush;
    return kExitUsage;
  }
  auto parsed = openjd::parse_template(*text);
  if (!parsed) {
    ctx.err << "farmhand: " << single_line(parsed.error().reason) << '\n' << std::flush;
    return kExitFailed;
  }
  Json json;
  std::string line;
  if (const auto* job = std::get_if<openjd::JobTemplate>(&*parsed)) {
    size_t envs = job->job_environments.size();
    for (const auto& step : job->steps) envs += step.step_environments.size();
    json = Json{{"valid", true},
                {"kind", "job"},
                {"specification_version", openjd::kJobTemplateVersion},
                {"name", job->name},
                {"steps", job->steps.size()},
                {"parameters", job->parameter_definitions.size()},
                {"environments", envs},
                {"extensions", job->extensions.names}};
    line = fmt::format("valid job template \"{}\": {}, {}", shown_text(job->name),
                       plural(job->steps.size(), "step"),
                       plural(job->parameter_definitions.size(), "parameter"));
  } else {
    const auto& env = std::get<openjd::EnvironmentTemplate>(*parsed);
    json = Json{{"valid", true},
                {"kind", "environment"},
                {"specification_version", openjd::kEnvironmentTemplateVersion},
                {"name", env.environment.name},
                {"parameters", env.parameter_definitions.size()},
                {"extensions", env.extensions.names}};
    line = fmt::format("valid environment template \"{}\": {}", shown_text(env.environment.name),
                       plural(env.parameter_definitions.size(), "parameter"));
  }
  if (!ctx.json) {
    ctx.out << line << '\n' << std::flush;
  } else {
    ctx.out << dump_json(json) << '\n' << std::flush;
  }
  return kExitOk;
}

}  // namespace

void add_openjd_commands(CLI::App& app, Invocation& inv,
                         const std::function<void(CLI::App&)>& add_globals) {
  CLI::App* openjd = app.add_subcommand("openjd", "Open Job Description templates");
  openjd->require_subcommand(1);
  auto o = std::make_shared<CheckOptions>();
  CLI::App* cmd = openjd->add_subcommand(
      "check",
      "validate a job or environment template (YAML or JSON, specification 2023-09); runs "
      "locally, no broker needed");
  add_globals(*cmd);
  cmd->add_option("TEMPLATE", o->path, "the template file, or - for standard input")->required();
  cmd->callback([&inv, o] { inv.command = [o](Context& ctx) { return check(ctx, *o); }; });
}

}  // namespace farmhand::cli
