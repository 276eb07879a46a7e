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

#include "openjd/job.h"
#include "openjd/local_run.h"
#include "openjd/path_mapping.h"
#include "openjd/source.h"
#include "openjd/template.h"
#include <fmt/format.h>

#include "cli/output.h"

namespace farmhand::cli {

namespace {

struct CheckOptions {
  std::string path;
};

struct TasksOptions {
  std::string path;
  std::vector<std::string> parameters;     // NAME=VALUE
  std::vector<std::string> env_templates;  // environment template files
  // run only
  std::string step;
  std::string path_mapping_rules;  // a pathmapping-1.0 JSON file
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

using openjd::CreatedJob;

}  // namespace

Result<openjd::JobSource> read_job_source(const std::string& path,
                                          const std::vector<std::string>& parameters,
                                          const std::vector<std::string>& env_templates) {
  openjd::JobSource source;
  for (const std::string& p : parameters) {
    const size_t eq = p.find('=');
    if (eq == std::string::npos || eq == 0) {
      return fail(ErrorCode::kInvalidArgument, fmt::format("-p {}: not NAME=VALUE", printable(p)));
    }
    source.values[p.substr(0, eq)] = p.substr(eq + 1);
  }
  std::error_code ec;
  const std::filesystem::path cwd = std::filesystem::current_path(ec);
  source.working_dir = cwd.string();
  source.template_dir =
      path == "-" ? cwd.string()
                  : std::filesystem::absolute(path, ec).lexically_normal().parent_path().string();
  for (const std::string& env_path : env_templates) {
    auto text = read_template(env_path);
    if (!text) return fail(text.error());
    source.env_templates.emplace_back(env_path, std::move(*text));
  }
  auto text = read_template(path);
  if (!text) return fail(text.error());
  source.template_text = std::move(*text);
  return source;
}

namespace {

// The job a template makes with these parameters (job creation as the
// specification does it at submission), or one line on stderr and the exit code.
std::variant<CreatedJob, int> create(Context& ctx, const TasksOptions& o) {
  auto source = read_job_source(o.path, o.parameters, o.env_templates);
  if (!source) {
    ctx.err << "farmhand: " << single_line(source.error().reason) << '\n' << std::flush;
    return kExitUsage;
  }
  auto created = openjd::create_job(*source);
  if (!created) {
    ctx.err << "farmhand: " << single_line(created.error().reason) << '\n' << std::flush;
    return kExitFailed;
  }
  return std::move(*created);
}

int tasks(Context& ctx, const TasksOptions& o) {
  auto created = create(ctx, o);
  if (const int* code = std::get_if<int>(&created)) return *code;
  const openjd::Job& job = std::get<CreatedJob>(created).job;
  if (ctx.json) {
    Json steps = Json::array();
    for (const auto& step : job.steps) {
      Json tasks = Json::array();
      for (const auto& task : step.tasks) {
        Json t = Json::object();
        for (const auto& [name, value] : task) t[name] = value;
        tasks.push_back(std::move(t));
      }
      steps.push_back(Json{{"name", step.name}, {"tasks", std::move(tasks)}});
    }
    ctx.out << dump_json(Json{{"name", job.name}, {"steps", std::move(steps)}}) << '\n'
            << std::flush;
    return kExitOk;
  }
  ctx.out << "job \"" << shown_text(job.name) << "\"\n";
  for (const auto& step : job.steps) {
    ctx.out << "step \"" << shown_text(step.name) << "\": " << plural(step.tasks.size(), "task")
            << '\n';
    for (const auto& task : step.tasks) {
      std::string line = " ";
      for (const auto& [name, value] : task) line += fmt::format(" {}={}", name, shown_text(value));
      ctx.out << (task.empty() ? "  (no task parameters)" : line) << '\n';
    }
  }
  ctx.out << std::flush;
  return kExitOk;
}

// Runs the whole job here, in one session under $TMPDIR, printing what its
// actions print (secrets redacted) as they print it.
int run_locally(Context& ctx, const TasksOptions& o) {
  auto created = create(ctx, o);
  if (const int* code = std::get_if<int>(&created)) return *code;
  const CreatedJob& made = std::get<CreatedJob>(created);
  openjd::LocalRunOptions options;
  options.only_step = o.step;
  if (!o.path_mapping_rules.empty()) {
    auto text = read_template(o.path_mapping_rules);
    if (!text) {
      ctx.err << "farmhand: " << single_line(text.error().reason) << '\n' << std::flush;
      return kExitUsage;
    }
    auto rules = openjd::parse_path_mapping_json(*text);
    if (!rules) {
      ctx.err << "farmhand: " << printable(o.path_mapping_rules) << ": "
              << single_line(rules.error().reason) << '\n'
              << std::flush;
      return kExitUsage;
    }
    options.path_mapping_rules = std::move(*rules);
  }
  std::error_code ec;
  options.root_dir = std::filesystem::temp_directory_path(ec).string();
  if (ec) options.root_dir = "/tmp";
  options.log = [&ctx](const std::string& line) { ctx.out << line << '\n' << std::flush; };
  ctx.out << "running job \"" << shown_text(made.job.name) << "\"\n" << std::flush;
  const openjd::LocalRunResult result =
      openjd::run_job_locally(made.job_template, made.job, made.environments, std::move(options));
  if (!result.succeeded()) {
    ctx.err << "farmhand: job \"" << single_line(made.job.name) << "\" failed after "
            << plural(result.tasks_run, "task") << ": " << single_line(result.failure) << '\n'
            << std::flush;
    return kExitFailed;
  }
  ctx.out << "job \"" << shown_text(made.job.name)
          << "\" succeeded: " << plural(result.tasks_run, "task") << '\n'
          << std::flush;
  return kExitOk;
}

}  // namespace

// TEMPLATE, -p NAME=VALUE and --env-template, as `tasks` and `run` take them.
void add_job_options(CLI::App& cmd, TasksOptions& o, const char* env_template_help) {
  cmd.add_option("TEMPLATE", o.path, "the job template file, or - for standard input")->required();
  cmd.add_option("-p,--param", o.parameters, "a job parameter value, NAME=VALUE (repeatable)");
  cmd.add_option("--env-template", o.env_templates, env_template_help);
}

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

  auto t = std::make_shared<TasksOptions>();
  CLI::App* tasks_cmd = openjd->add_subcommand(
      "tasks",
      "create the job a template makes (job parameters checked, format strings resolved) and "
      "print every step's tasks; runs locally, no broker needed");
  add_globals(*tasks_cmd);
  add_job_options(*tasks_cmd, *t,
                  "an environment template whose parameter definitions apply (repeatable)");
  tasks_cmd->callback([&inv, t] { inv.command = [t](Context& ctx) { return tasks(ctx, *t); }; });

  auto r = std::make_shared<TasksOptions>();
  CLI::App* run_cmd = openjd->add_subcommand(
      "run",
      "run the whole job on this host, in one session (as `openjd run` does): for template "
      "authors; the template's commands run as you, no broker involved");
  add_globals(*run_cmd);
  add_job_options(*run_cmd, *r, "an environment template entered before the job's (repeatable)");
  run_cmd->add_option("--step", r->step,
                      "run only this step (inside the job's environments and its own)");
  run_cmd->add_option("--path-mapping-rules", r->path_mapping_rules,
                      "a pathmapping-1.0 JSON file of rules for PATH parameters");
  run_cmd->callback(
      [&inv, r] { inv.command = [r](Context& ctx) { return run_locally(ctx, *r); }; });
}

}  // namespace farmhand::cli
