#include "daemon/job_kinds.h"

#include <map>

#include <fmt/format.h>

#include "common/command_template.h"
#include "daemon/media_jobs.h"
#include "daemon/openjd_jobs.h"

namespace farmhand::daemon {

namespace {

Result<void> prepare_noop(wire::JobSpec& spec, const KindContext&) {
  if (spec.frames().empty()) {
    if (spec.tasks() == 0) return fail(ErrorCode::kInvalidArgument, "noop job needs --tasks N");
    spec.set_frames(fmt::format("1-{}", spec.tasks()));
  }
  if (!spec.command_template().empty() || spec.params_size() > 0) {
    return fail(ErrorCode::kInvalidArgument, "noop jobs take no template or params");
  }
  return {};
}

Result<void> assign_noop(const wire::JobSpec&, const common::FrameSet&, const common::Config&,
                         wire::Assign&) {
  return {};
}

Result<void> prepare_command(wire::JobSpec& spec, const KindContext& context) {
  if (spec.frames().empty()) return fail(ErrorCode::kInvalidArgument, "command job needs --frames");
  const auto& commands = context.config.commands;
  auto it = commands.find(spec.command_template());
  if (it == commands.end()) {
    std::string known;
    for (const auto& [name, t] : commands) known += (known.empty() ? "" : ", ") + name;
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("unknown command template '{}' (configured: {})",
                            printable(spec.command_template()), known.empty() ? "none" : known));
  }
  std::map<std::string, std::string> params(spec.params().begin(), spec.params().end());
  auto validated = common::validate_params(it->second, params);
  if (!validated) return fail(validated.error());
  spec.mutable_params()->clear();
  for (const auto& [k, v] : *validated) (*spec.mutable_params())[k] = v;
  return {};
}

Result<void> assign_command(const wire::JobSpec& spec, const common::FrameSet& frames,
                            const common::Config& config, wire::Assign& assign) {
  auto tmpl = config.commands.find(spec.command_template());
  if (tmpl == config.commands.end()) {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("command template '{}' is no longer configured",
                            printable(spec.command_template())));
  }
  std::map<std::string, std::string> params(spec.params().begin(), spec.params().end());
  auto argvs = common::expand_task(tmpl->second, params,
                                   {assign.ref().job_id(), assign.ref().task(), frames});
  if (!argvs) return fail(argvs.error());
  assign.mutable_env()->insert(tmpl->second.env.begin(), tmpl->second.env.end());
  for (const auto& argv : *argvs) {
    auto* a = assign.add_commands();
    for (const auto& word : argv) a->add_args(word);
  }
  return {};
}

Result<void> prepare_media(wire::JobSpec& spec, const KindContext& context) {
  if (!spec.command_template().empty()) {
    return fail(ErrorCode::kInvalidArgument, "media jobs take no command template");
  }
  if (auto ok = prepare_media_job(spec, context.on_disk); !ok) return ok;
  return check_media_paths(spec, context.config.broker.allowed_roots);
}

Result<void> assign_media(const wire::JobSpec& spec, const common::FrameSet& frames,
                          const common::Config&, wire::Assign& assign) {
  auto request = media_request(spec, frames);
  if (!request) return fail(request.error());
  assign.set_media_request(std::move(*request));
  if (assign.timeout_s() == 0) {
    assign.set_timeout_s(static_cast<uint32_t>(default_media_timeout(spec, frames.size()).count()));
  }
  return {};
}

constexpr JobKind kKinds[] = {
    {"noop", false, prepare_noop, assign_noop},
    {"command", false, prepare_command, assign_command},
    {"thumbnail", true, prepare_media, assign_media},
    {"convert", true, prepare_media, assign_media},
    {"transcode", true, prepare_media, assign_media},
    {"contactsheet", true, prepare_media, assign_media},
    {"openjd", false, prepare_openjd, assign_openjd},
};

}  // namespace

std::span<const JobKind> job_kinds() {
  return kKinds;
}

const JobKind* find_job_kind(std::string_view name) {
  for (const JobKind& kind : kKinds) {
    if (kind.name == name) return &kind;
  }
  return nullptr;
}

std::string job_kind_names() {
  std::string names;
  for (const JobKind& kind : kKinds) {
    if (!names.empty()) names += ", ";
    names += kind.name;
  }
  return names;
}

}  // namespace farmhand::daemon
