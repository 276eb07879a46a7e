#include "daemon/openjd_jobs.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <optional>

#include "openjd/chunks.h"
#include "openjd/path_mapping.h"
#include "openjd/wire_source.h"
#include <fmt/format.h>

#include "common/frame_set.h"
#include "daemon/media_jobs.h"

namespace farmhand::daemon {

namespace {

// More tasks than this in one step is a mistake (a product of ranges), not a render.
constexpr uint64_t kMaxTasksPerStep = 1'000'000;
constexpr size_t kMaxNameBytes = 256;

std::vector<openjd::PathMappingRule> path_rules(const common::Config& config) {
  std::vector<openjd::PathMappingRule> rules;
  for (const auto& rule : config.path_mapping) {
    rules.push_back({rule.source_path_format == "WINDOWS" ? openjd::PathFormat::kWindows
                                                          : openjd::PathFormat::kPosix,
                     rule.source_path, rule.destination_path});
  }
  return openjd::order_path_mapping_rules(std::move(rules));
}

// The job `source` makes, if this farm runs templates and its PATH values,
// mapped as the workers will map them, lie under the allowed roots.
Result<openjd::CreatedJob> make_job(const wire::OpenJdSource& source,
                                    const common::Config& config) {
  if (!config.openjd.enabled) {
    return fail(ErrorCode::kInvalidArgument,
                "Open Job Description jobs are off on this farm: farmhandd's config enables them "
                "(openjd.enabled, with openjd.executables, the programs templates may run)");
  }
  auto created = openjd::create_job(openjd::job_source(source), kMaxTasksPerStep);
  if (!created) {
    const std::string name = source.template_name().empty() ? "template" : source.template_name();
    return fail(created.error().code,
                fmt::format("{}: {}", printable(name), created.error().reason));
  }
  const auto rules = path_rules(config);
  for (const auto& [name, value] : created->job.parameters) {
    if (value.type != openjd::ParameterType::kPath) continue;
    const std::string mapped = openjd::map_path(rules, value.value).value_or(value.value);
    if (auto ok = check_allowed_root(fmt::format("parameter {}", name), mapped,
                                     config.broker.allowed_roots);
        !ok) {
      return fail(ok.error());
    }
  }
  return created;
}

const openjd::CreatedStep* find_step(const openjd::Job& job, const std::string& name) {
  for (const auto& step : job.steps) {
    if (step.name == name) return &step;
  }
  return nullptr;
}

// Host requirements as farmhand requests: vCPUs, memory and GPUs become the
// job's cores, memory and gpus (the scheduler packs by them); cpu.arch and custom
// attributes become tags a worker must have; an OS other than Linux, or an
// amount no farmhand worker reports, no worker can meet.
Result<void> apply_host_requirements(const openjd::CreatedStep& step, wire::JobSpec& spec,
                                     std::vector<std::string>& warnings) {
  for (const auto& amount : step.amounts) {
    const double min = amount.min ? std::strtod(amount.min->c_str(), nullptr) : 0;
    const std::string name = ascii_lower(amount.name);
    if (name == "amount.worker.vcpu") {
      const auto cores = static_cast<uint32_t>(std::min(std::ceil(min), 1e6));
      spec.set_cores(std::max(spec.cores(), cores));
    } else if (name == "amount.worker.gpu") {
      const auto gpus = static_cast<uint32_t>(std::min(std::ceil(min), 1e6));
      spec.set_gpus(std::max(spec.gpus(), gpus));
    } else if (name == "amount.worker.memory") {
      const auto bytes = static_cast<uint64_t>(std::min(std::ceil(min), 1e12)) << 20;  // MiB
      spec.set_memory_bytes(std::max(spec.memory_bytes(), bytes));
    } else if (min > 0) {
      return fail(ErrorCode::kInvalidArgument,
                  fmt::format("step {} needs {} of at least {}; farmhand workers offer vcpu, "
                              "memory and gpu only, so none could run it",
                              printable(step.name), printable(amount.name), *amount.min));
    }
    if (amount.max) {
      warnings.push_back(fmt::format("step {}: the most {} a worker may have ({}) is not enforced",
                                     printable(step.name), printable(amount.name), *amount.max));
    }
  }
  for (const auto& attribute : step.attributes) {
    const std::string name = ascii_lower(attribute.name);
    auto allows = [&](const std::string& value) {
      const bool any = attribute.any_of.empty() ||
                       std::find(attribute.any_of.begin(), attribute.any_of.end(), value) !=
                           attribute.any_of.end();
      const bool all = std::all_of(attribute.all_of.begin(), attribute.all_of.end(),
                                   [&](const std::string& v) { return v == value; });
      return any && all;
    };
    if (name == "attr.worker.os.family") {
      // Every farmhand worker runs Linux: nothing to choose between.
      if (!allows("linux")) {
        return fail(ErrorCode::kInvalidArgument,
                    fmt::format("step {} runs only where attr.worker.os.family is not linux; "
                                "farmhand workers run Linux, so none could run it",
                                printable(step.name)));
      }
      continue;
    }
    if (name.rfind("attr.worker.", 0) == 0 && name != "attr.worker.cpu.arch") {
      warnings.push_back(fmt::format("step {}: {} is not matched against workers",
                                     printable(step.name), printable(attribute.name)));
      continue;
    }
    // attr.worker.cpu.arch and custom attributes (attr.NAME): worker tags
    // "cpu.arch=x86_64" (each worker has its own) and "NAME=VALUE" (given
    // with --tag); anyOf is one choice, each allOf value a choice of its own.
    const std::string tag_name =
        name.substr(name.rfind("attr.worker.", 0) == 0 ? std::string_view("attr.worker.").size()
                                                       : std::string_view("attr.").size());
    auto tag = [&](const std::string& value) { return tag_name + "=" + value; };
    if (!attribute.any_of.empty()) {
      wire::TagChoice& choice = *spec.add_tag_choices();
      for (const std::string& value : attribute.any_of) choice.add_any(tag(value));
    }
    for (const std::string& value : attribute.all_of) {
      spec.add_tag_choices()->add_any(tag(value));
    }
  }
  return {};
}

constexpr uint64_t kMaxChunkTargetS = 7 * 24 * 3600;

// A step whose chunks adapt to its targetRuntimeSeconds, as the frames of one
// job: the CHUNK[INT] values themselves when they are the step's only task
// parameter; else value v of combination c of the other parameters is frame
// c * stride + (v - base), where the stride leaves a gap between combinations
// wider than `max_gap`, so no chunk spans two.
struct AdaptivePlan {
  std::string frames;
  uint64_t max_gap = 0;
  wire::OpenJdChunking chunking;  // stride 0: the frames are the values
};

__extension__ typedef __int128 Wide;

// Consecutive runs of `values` (ascending, distinct) moved by `offset`: "0-4,7".
void append_runs(const std::vector<int64_t>& values, Wide offset, std::string& out) {
  for (size_t i = 0; i < values.size();) {
    size_t end = i + 1;
    while (end < values.size() && values[end - 1] != INT64_MAX &&
           values[end] == values[end - 1] + 1) {
      ++end;
    }
    const auto first = static_cast<int64_t>(values[i] + offset);
    const auto last = static_cast<int64_t>(values[end - 1] + offset);
    if (!out.empty()) out += ',';
    out += first == last ? fmt::format("{}", first) : fmt::format("{}-{}", first, last);
    i = end;
  }
}

std::optional<AdaptivePlan> adaptive_plan(const openjd::CreatedStep& step) {
  if (!step.chunked_parameter || step.target_runtime_s == 0 || step.chunk_values.empty()) {
    return std::nullopt;
  }
  const std::string& chunked = *step.chunked_parameter;
  // The other parameters' combinations, in the order the step's tasks have them.
  std::vector<openjd::TaskParameters> combinations;
  std::map<openjd::TaskParameters, uint64_t> chunks_of;
  for (const openjd::TaskParameters& task : step.tasks) {
    openjd::TaskParameters others;
    for (const auto& [name, value] : task) {
      if (name != chunked) others.emplace_back(name, value);
    }
    if (chunks_of[others]++ == 0) combinations.push_back(std::move(others));
  }
  const std::vector<int64_t>& values = step.chunk_values;
  AdaptivePlan plan;
  if (combinations.size() == 1 && combinations.front().empty()) {
    append_runs(values, 0, plan.frames);
    plan.max_gap = step.contiguous ? 1 : 0;
    return plan;
  }
  // Each combination must have every value (a product, not an association).
  // (Submit time only: the template's own chunking, counted.)
  const uint64_t chunks = step.contiguous
                              ? openjd::contiguous_chunks(step.chunk_size, values).size()
                              : openjd::chunk_sizes(step.chunk_size, values.size()).size();
  for (const auto& [others, count] : chunks_of) {
    if (count != chunks) return std::nullopt;
  }
  const Wide span = Wide{values.back()} - values.front();
  const Wide gap = span + 2;  // the widest gap within a combination, and then some
  const Wide stride = 2 * gap;
  const auto count = static_cast<Wide>(combinations.size());
  if ((count - 1) * stride + span > Wide{INT64_MAX} ||
      count * static_cast<Wide>(values.size()) > Wide{common::FrameSet::kMaxFrames}) {
    return std::nullopt;
  }
  plan.max_gap = step.contiguous ? 1 : static_cast<uint64_t>(gap);
  plan.chunking.set_stride(static_cast<uint64_t>(stride));
  plan.chunking.set_base(values.front());
  for (size_t c = 0; c < combinations.size(); ++c) {
    append_runs(values, Wide(c) * stride - values.front(), plan.frames);
    wire::OpenJdCombination& out = *plan.chunking.add_combinations();
    for (const auto& [name, value] : combinations[c]) {
      wire::OpenJdParam& param = *out.add_values();
      param.set_name(name);
      param.set_value(value);
    }
  }
  return plan;
}

std::string cut(std::string text, size_t max) {
  if (text.size() <= max) return text;
  text.resize(max);
  while (!text.empty() && (static_cast<unsigned char>(text.back()) & 0xC0) == 0x80) text.pop_back();
  if (!text.empty() && (static_cast<unsigned char>(text.back()) & 0x80)) text.pop_back();
  return text;
}

}  // namespace

Result<OpenJdPlan> plan_openjd_jobs(const wire::SubmitOpenJdRequest& request,
                                    const common::Config& config) {
  auto created = make_job(request.source(), config);
  if (!created) return fail(created.error());
  const openjd::Job& job = created->job;
  OpenJdPlan plan;
  plan.job_name = job.name;
  std::map<std::string, size_t> index_of;
  for (const openjd::CreatedStep* step : openjd::dependency_order(job)) {
    OpenJdStepJob out;
    out.step = step->name;
    out.tasks = step->tasks.size();
    out.template_index = static_cast<size_t>(step - job.steps.data());
    wire::JobSpec& spec = out.spec;
    spec = request.options();
    spec.set_kind("openjd");
    spec.set_name(cut(fmt::format("{} / {}", job.name, step->name), kMaxNameBytes));
    spec.clear_frames();
    spec.clear_tasks();
    spec.clear_command_template();
    spec.clear_params();
    spec.clear_idempotency_key();     // the submit's action key stands for all the steps
    spec.clear_openjd_session_job();  // the broker's to set
    (*spec.mutable_labels())["openjd.job"] = job.name;
    (*spec.mutable_labels())["openjd.step"] = step->name;
    *spec.mutable_openjd() = request.source();
    spec.set_openjd_step(step->name);
    if (auto ok = apply_host_requirements(*step, spec, plan.warnings); !ok) return fail(ok.error());
    if (step->target_runtime_s > 0 && step->chunked_parameter && !adaptive_plan(*step)) {
      plan.warnings.push_back(fmt::format(
          "step {}: chunks keep the template's size (targetRuntimeSeconds adapts them only "
          "where every combination of the other task parameters has every value of {})",
          printable(step->name), printable(*step->chunked_parameter)));
    }
    for (const std::string& dependency : step->dependencies)
      out.after.push_back(index_of.at(dependency));
    index_of[step->name] = plan.steps.size();
    plan.steps.push_back(std::move(out));
  }
  return plan;
}

Result<void> prepare_openjd(wire::JobSpec& spec, const KindContext& context) {
  if (spec.openjd_step().empty() || spec.openjd().template_().empty()) {
    return fail(ErrorCode::kInvalidArgument,
                "openjd jobs come from a template: farmhand submit openjd TEMPLATE");
  }
  auto created = make_job(spec.openjd(), context.config);
  if (!created) return fail(created.error());
  const openjd::CreatedStep* step = find_step(created->job, spec.openjd_step());
  if (!step) {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("the template has no step {}", printable(spec.openjd_step())));
  }
  spec.set_tasks(0);
  spec.set_chunk_target_s(0);
  spec.set_chunk_max_gap(0);
  spec.clear_openjd_chunking();
  if (auto adaptive = adaptive_plan(*step)) {
    // The step's tasks as frames, cut as the scheduler adapts them.
    spec.set_frames(std::move(adaptive->frames));
    spec.set_chunk(static_cast<uint32_t>(std::min<uint64_t>(step->chunk_size, UINT32_MAX)));
    spec.set_chunk_target_s(
        static_cast<uint32_t>(std::min<uint64_t>(step->target_runtime_s, kMaxChunkTargetS)));
    spec.set_chunk_max_gap(adaptive->max_gap);
    if (adaptive->chunking.stride() > 0) *spec.mutable_openjd_chunking() = adaptive->chunking;
  } else {
    // Task i is the step's task i: one frame each, whatever was sent.
    spec.set_frames(fmt::format("1-{}", step->tasks.size()));
    spec.set_chunk(1);
  }
  if (!spec.command_template().empty() || spec.params_size() > 0) {
    return fail(ErrorCode::kInvalidArgument, "openjd jobs take no command template or params");
  }
  return {};
}

Result<void> assign_openjd(const wire::JobSpec& spec, const common::FrameSet& frames,
                           const common::Config& config, wire::Assign& assign) {
  if (!config.openjd.enabled) {
    return fail(ErrorCode::kInvalidArgument,
                "Open Job Description jobs were turned off in farmhandd's config");
  }
  wire::OpenJdTask& task = *assign.mutable_openjd();
  *task.mutable_source() = spec.openjd();
  task.set_step(spec.openjd_step());
  for (const std::string& name : config.openjd.executables) task.add_executables(name);
  task.set_any_executable(config.openjd.any_executable);
  task.set_allow_root(config.openjd.allow_root);
  task.set_session_key(spec.openjd_session_job() != 0 ? spec.openjd_session_job()
                                                      : assign.ref().job_id());
  if (spec.chunk_target_s() > 0) {
    // The chunk the scheduler cut, as values of the CHUNK[INT] parameter (and
    // the combination of the others its frames stand for).
    const wire::OpenJdChunking& chunking = spec.openjd_chunking();
    std::vector<int64_t> values;
    values.reserve(frames.size());
    uint64_t combination = 0;
    for (uint64_t i = 0; i < frames.size(); ++i) {
      const int64_t frame = frames.frame_at(i);
      if (chunking.stride() == 0) {
        values.push_back(frame);
        continue;
      }
      const uint64_t offset = static_cast<uint64_t>(frame);
      combination = offset / chunking.stride();
      values.push_back(
          static_cast<int64_t>(static_cast<Wide>(chunking.base()) + offset % chunking.stride()));
    }
    std::sort(values.begin(), values.end());
    task.set_chunk(spec.chunk_max_gap() == 1 && !values.empty()
                       ? fmt::format("{}-{}", values.front(), values.back())
                       : openjd::range_expression_of(values));
    if (chunking.stride() > 0) {
      if (combination >= static_cast<uint64_t>(chunking.combinations_size())) {
        return fail(ErrorCode::kInternal, fmt::format("frame {} of an OpenJD step is no task of it",
                                                      frames.empty() ? 0 : frames.frame_at(0)));
      }
      *task.mutable_task_parameters() =
          chunking.combinations(static_cast<int>(combination)).values();
    }
  }
  for (const auto& rule : config.path_mapping) {
    wire::OpenJdPathRule& out = *task.add_path_mapping();
    out.set_source_path_format(rule.source_path_format);
    out.set_source_path(rule.source_path);
    out.set_destination_path(rule.destination_path);
  }
  return {};
}

}  // namespace farmhand::daemon
