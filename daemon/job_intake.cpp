#include "daemon/job_intake.h"

#include <random>

#include <fmt/format.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include "common/byte_size.h"
#include "daemon/job_kinds.h"
#include "daemon/media_jobs.h"
#include "daemon/openjd_jobs.h"

namespace farmhand::daemon {

namespace {

constexpr size_t kMaxLabels = 64;
constexpr size_t kMaxLabelBytes = 4096;
constexpr size_t kMaxNameBytes = 256;
constexpr size_t kMaxIdempotencyKeyBytes = 256;
// A task in the interactive lane covers at most this many frames (10 s at 24 fps).
constexpr uint32_t kMaxInteractiveTaskFrames = 240;
constexpr uint32_t kMaxChunkTargetS = 7 * 24 * 3600;
constexpr size_t kMaxWhoBytes = 256;

// What the client asked for, as a number: the spec as sent, without what
// says who sent it (a resend from another shell is the same job). Serialized
// deterministically (map order), hashed with FNV-1a; never 0.
uint64_t request_fingerprint(wire::JobSpec spec) {
  spec.clear_submitted_by();
  spec.clear_submitted_from();
  spec.clear_submitted_key();
  spec.clear_request_fingerprint();
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream out(&stream);
    out.SetSerializationDeterministic(true);
    spec.SerializeToCodedStream(&out);
  }
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h == 0 ? 1 : h;
}

}  // namespace

std::optional<std::string> unserved_pool(const core::Scheduler& scheduler,
                                         const std::string& pool) {
  if (pool.empty() || scheduler.pool_served(pool)) return std::nullopt;
  return fmt::format("no live worker serves pool '{}' now; the job waits until one joins",
                     printable(pool));
}

namespace {

// "8 cores and 64.0 GiB", "64.0 GiB", "2 GPUs", "nothing known"; the GPUs
// also when none (`gpus_asked`: the job asks for some).
std::string resource_text(uint32_t cores, uint64_t memory, uint32_t gpus, bool gpus_asked) {
  std::vector<std::string> parts;
  if (cores > 0) parts.push_back(fmt::format("{} core{}", cores, cores == 1 ? "" : "s"));
  if (memory > 0) parts.push_back(common::format_byte_size(memory));
  if (gpus > 0 || gpus_asked) parts.push_back(fmt::format("{} GPU{}", gpus, gpus == 1 ? "" : "s"));
  return parts.empty() ? std::string("no known cores or memory")
                       : fmt::format("{}", fmt::join(parts, " and "));
}

}  // namespace

std::string unsatisfiable_request(core::JobId id, const core::JobSpec& spec,
                                  const core::JobHold& hold) {
  return fmt::format(
      "no worker can ever run a task of this job: each asks for {}, and the largest worker "
      "that serves {} has {}; it waits for a larger worker (`farmhand job set {} --cores N "
      "--memory SIZE --gpus N` lowers the request)",
      resource_text(spec.cores, spec.memory, spec.gpus, spec.gpus > 0),
      spec.pool.empty() ? std::string("any pool") : fmt::format("pool '{}'", printable(spec.pool)),
      // What the job asks for, of the largest worker.
      resource_text(spec.cores > 0 ? hold.cores : 0, spec.memory > 0 ? hold.memory : 0, hold.gpus,
                    spec.gpus > 0),
      id);
}

namespace {

// At most 16 choices of at most 16 tags, each 1 to 128 bytes.
Result<void> check_tag_choices(const wire::JobSpec& spec) {
  constexpr int kMaxChoices = 16;
  constexpr size_t kMaxTagBytes = 128;
  if (spec.tag_choices_size() > kMaxChoices) {
    return fail(ErrorCode::kInvalidArgument, fmt::format("more than {} tag choices", kMaxChoices));
  }
  for (const wire::TagChoice& choice : spec.tag_choices()) {
    if (choice.any_size() == 0 || choice.any_size() > kMaxChoices) {
      return fail(ErrorCode::kInvalidArgument, fmt::format("a tag choice has {} tags (1 to {})",
                                                           choice.any_size(), kMaxChoices));
    }
    for (const std::string& tag : choice.any()) {
      if (tag.empty() || tag.size() > kMaxTagBytes) {
        return fail(ErrorCode::kInvalidArgument,
                    fmt::format("bad tag '{}' (1 to {} bytes)", printable(tag, 64), kMaxTagBytes));
      }
    }
  }
  return {};
}

}  // namespace

std::string no_worker_has_tags(const core::JobHold& hold) {
  return fmt::format(
      "no live worker that serves the job has the tags it needs ({}; one of each, as "
      "`farmhand-worker --tag NAME=VALUE`); it waits until one joins",
      printable(hold.tags, 512));
}

void JobIntake::submit(const wire::SubmitRequest& request, wire::ClientReply& reply, Turn& turn,
                       const std::string& peer) {
  wire::JobSpec spec = request.spec();
  const uint64_t fingerprint = request_fingerprint(spec);
  if (auto id = farm_.jobs.find_key(spec.idempotency_key())) {
    const JobRecord* record = farm_.jobs.find(*id);
    const uint64_t first = record ? record->spec.request_fingerprint() : 0;
    if (first != 0 && first != fingerprint) {
      return set_error(reply, Error{ErrorCode::kInvalidArgument,
                                    fmt::format("idempotency key '{}' was used for job {} with "
                                                "another spec; use a new key for a new job",
                                                printable(spec.idempotency_key(), 64), *id)});
    }
    reply.mutable_submit()->set_job_id(*id);
    reply.mutable_submit()->set_duplicate(true);
    if (auto view = farm_.scheduler->job(*id)) {
      reply.mutable_submit()->set_task_count(view->task_count);
    }
    describe_segments(*id, *reply.mutable_submit());
    warn_if_waiting(*id, reply);  // a resend after a lost reply gets it too
    return;
  }
  if (spec.idempotency_key().size() > kMaxIdempotencyKeyBytes) {
    return set_error(
        reply, Error{ErrorCode::kInvalidArgument,
                     fmt::format("idempotency key longer than {} bytes", kMaxIdempotencyKeyBytes)});
  }
  for (const std::string* who : {&spec.submitted_by(), &spec.submitted_from()}) {
    if (who->size() > kMaxWhoBytes) {
      return set_error(reply, Error{ErrorCode::kInvalidArgument,
                                    fmt::format("submitter name over {} bytes", kMaxWhoBytes)});
    }
  }
  // Only the broker says which key a job came with, and which jobs share sessions.
  spec.set_submitted_key(peer);
  spec.clear_openjd_session_job();
  spec.set_request_fingerprint(fingerprint);
  auto id = create_job(std::move(spec), turn);
  if (!id) return set_error(reply, id.error());
  auto view = farm_.scheduler->job(*id);
  reply.mutable_submit()->set_job_id(*id);
  reply.mutable_submit()->set_task_count(view ? view->task_count : 0);
  describe_segments(*id, *reply.mutable_submit());
  warn_if_waiting(*id, reply);
}

void JobIntake::describe_segments(core::JobId id, wire::SubmitReply& reply) const {
  const JobRecord* join = farm_.jobs.find(id);
  if (!join || !is_movie_join(join->spec) || join->spec.after_size() != 1) return;
  const uint64_t segments = join->spec.after(0);
  reply.set_segments_job(segments);
  if (auto view = farm_.scheduler->job(segments)) {
    reply.set_segments(static_cast<uint32_t>(view->task_count));
  }
}

void JobIntake::submit_openjd(const wire::SubmitOpenJdRequest& request, wire::ClientReply& reply,
                              Turn& turn, const std::string& peer) {
  const wire::JobSpec& options = request.options();
  for (const std::string* who : {&options.submitted_by(), &options.submitted_from()}) {
    if (who->size() > kMaxWhoBytes) {
      return set_error(reply, Error{ErrorCode::kInvalidArgument,
                                    fmt::format("submitter name over {} bytes", kMaxWhoBytes)});
    }
  }
  for (uint64_t after : options.after()) {
    if (!farm_.scheduler->job(after)) {
      return set_error(reply, Error{ErrorCode::kNotFound, fmt::format("no job {}", after)});
    }
  }
  auto plan = plan_openjd_jobs(request, config_);
  if (!plan) return set_error(reply, plan.error());
  // Every step's spec is checked before the first job is made: a template
  // becomes all its jobs or none.
  std::vector<wire::JobSpec> specs;
  for (const OpenJdStepJob& step : plan->steps) {
    wire::JobSpec spec = step.spec;
    spec.set_submitted_key(peer);
    if (auto ok = check_spec(spec); !ok) {
      return set_error(reply,
                       Error{ok.error().code,
                             fmt::format("step {}: {}", printable(step.step), ok.error().reason)});
    }
    specs.push_back(std::move(spec));
  }
  wire::SubmitOpenJdReply& out = *reply.mutable_submit_openjd();
  out.set_job_name(plan->job_name);
  std::vector<core::JobId> ids;
  for (size_t i = 0; i < plan->steps.size(); ++i) {
    for (size_t index : plan->steps[i].after) specs[i].add_after(ids.at(index));
    if (i > 0) specs[i].set_openjd_session_job(ids.front());
    // Checked above (an OpenJD step's check makes the whole job from its text:
    // once per step is enough).
    auto id = create_checked_job(std::move(specs[i]), turn);
    if (!id) {
      // check_spec passed it: only the scheduler can refuse now, and what was
      // made of this template goes with the turn's undo.
      log_.error("openjd step refused after its check step=\"{}\" reason=\"{}\"",
                 printable(plan->steps[i].step), id.error().reason);
      return set_error(reply, id.error());
    }
    ids.push_back(*id);
  }
  // Template order, as `openjd tasks` lists the steps.
  std::vector<size_t> order(plan->steps.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return plan->steps[a].template_index < plan->steps[b].template_index;
  });
  for (size_t i : order) {
    wire::OpenJdStepJob& job = *out.add_steps();
    job.set_step(plan->steps[i].step);
    job.set_job_id(ids[i]);
    job.set_task_count(plan->steps[i].tasks);
  }
  for (std::string& warning : plan->warnings) out.add_warnings(std::move(warning));
  if (!ids.empty()) {
    if (auto warning = unserved_pool(*farm_.scheduler, options.pool())) {
      out.add_warnings(*warning);
    } else {
      // A step that waits for a worker with its host attributes or its size.
      for (size_t i = 0; i < ids.size(); ++i) {
        const core::JobHold hold = farm_.scheduler->hold(ids[i]);
        const core::JobSpec* spec = farm_.scheduler->job_spec(ids[i]);
        if (hold.kind == core::JobHold::Kind::kTags) {
          out.add_warnings(
              fmt::format("step {}: {}", printable(plan->steps[i].step), no_worker_has_tags(hold)));
        } else if (hold.kind == core::JobHold::Kind::kUnsatisfiable && spec) {
          out.add_warnings(fmt::format("step {}: {}", printable(plan->steps[i].step),
                                       unsatisfiable_request(ids[i], *spec, hold)));
        }
      }
    }
  }
}

void JobIntake::warn_if_waiting(core::JobId id, wire::ClientReply& reply) const {
  auto view = farm_.scheduler->job(id);
  const core::JobSpec* spec = farm_.scheduler->job_spec(id);
  if (!view || !spec || is_finished(view->state)) return;
  if (auto warning = unserved_pool(*farm_.scheduler, spec->pool)) {
    reply.mutable_submit()->add_warnings(*warning);
  } else if (core::JobHold hold = farm_.scheduler->hold(id);
             hold.kind == core::JobHold::Kind::kUnsatisfiable) {
    reply.mutable_submit()->add_warnings(unsatisfiable_request(id, *spec, hold));
  } else if (hold.kind == core::JobHold::Kind::kTags) {
    reply.mutable_submit()->add_warnings(no_worker_has_tags(hold));
  }
}

Result<void> JobIntake::check_spec(wire::JobSpec& spec, const common::FrameSet* on_disk) const {
  const JobKind* kind = find_job_kind(spec.kind());
  if (!kind) {
    return fail(ErrorCode::kInvalidArgument, fmt::format("unknown job kind '{}' ({})",
                                                         printable(spec.kind()), job_kind_names()));
  }
  if (!spec.lane().empty() && spec.lane() != "batch" && spec.lane() != "interactive") {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("unknown lane '{}' (batch, interactive)", printable(spec.lane())));
  }
  if (spec.lane() == "interactive" && !kind->interactive_lane) {
    return fail(ErrorCode::kInvalidArgument,
                "only thumbnail, convert and transcode jobs may use the interactive lane");
  }
  if (spec.chunk_runs_size() > 0 || spec.chunk_now() != 0 || spec.has_openjd_chunking()) {
    return fail(ErrorCode::kInvalidArgument,
                "chunk_runs, chunk_now and openjd_chunking are the broker's to set");
  }
  if (spec.chunk_target_s() > kMaxChunkTargetS) {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("chunk target of {} s over the limit of {} s (a week)",
                            spec.chunk_target_s(), kMaxChunkTargetS));
  }
  if (spec.chunk_target_s() != 0 && spec.lane() == "interactive") {
    // Its reserved slots are for short tasks: chunks must not grow there.
    return fail(ErrorCode::kInvalidArgument,
                "the interactive lane's tasks keep their size: no chunk target");
  }
  if (spec.chunk_max_gap() != 0 && spec.chunk_target_s() == 0) {
    return fail(ErrorCode::kInvalidArgument, "chunk_max_gap needs a chunk target");
  }
  if (auto ok = check_tag_choices(spec); !ok) return fail(ok.error());
  if (auto ok = kind->prepare(spec, KindContext{config_, on_disk}); !ok) return fail(ok.error());
  if (spec.labels_size() > static_cast<int>(kMaxLabels)) {
    return fail(ErrorCode::kInvalidArgument, fmt::format("more than {} labels", kMaxLabels));
  }
  for (const auto& [k, v] : spec.labels()) {
    if (k.empty() || k.size() + v.size() > kMaxLabelBytes) {
      return fail(ErrorCode::kInvalidArgument, fmt::format("bad label '{}'", printable(k, 64)));
    }
  }
  if (spec.name().size() > kMaxNameBytes) {
    return fail(ErrorCode::kInvalidArgument, fmt::format("job name over {} bytes", kMaxNameBytes));
  }
  if (spec.project().empty()) {
    if (auto it = spec.labels().find("project"); it != spec.labels().end()) {
      spec.set_project(it->second);
    }
  }
  if (spec.project().size() > kMaxNameBytes) {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("project name over {} bytes", kMaxNameBytes));
  }
  if (!valid_memory_retry_factor(spec.memory_retry_factor())) {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("memory retry factor {} is not 0 or between 1 and 16",
                            spec.memory_retry_factor()));
  }
  if (spec.chunk() == 0) spec.set_chunk(1);
  if (spec.lane() == "interactive" && spec.chunk() > kMaxInteractiveTaskFrames) {
    // The reserved slots are for short work: a long movie there would hold back
    // the thumbnails of every publish behind it. It runs in the batch lane.
    log_.info(
        "job moved to the batch lane kind={} name=\"{}\" reason=\"a task of {} frames is "
        "over the interactive lane's {}\"",
        spec.kind(), printable(spec.name()), spec.chunk(), kMaxInteractiveTaskFrames);
    spec.set_lane("batch");
  }
  if (auto core_spec = to_core_spec(spec); !core_spec) return fail(core_spec.error());
  return {};
}

Result<core::JobId> JobIntake::create_job(wire::JobSpec spec, Turn& turn,
                                          const common::FrameSet* on_disk) {
  if (auto ok = check_spec(spec, on_disk); !ok) return fail(ok.error());
  if (wants_segments(spec)) return create_movie_in_segments(std::move(spec), turn);
  return create_checked_job(std::move(spec), turn);
}

Result<core::JobId> JobIntake::create_movie_in_segments(wire::JobSpec spec, Turn& turn) {
  static thread_local std::mt19937_64 random{std::random_device{}()};
  MovieJobs jobs = split_movie_job(std::move(spec), random());
  auto segments = create_checked_job(std::move(jobs.segments), turn);
  if (!segments) return segments;
  jobs.join.add_after(*segments);
  auto join = create_checked_job(std::move(jobs.join), turn);
  if (join) log_.info("movie in segments job={} segments_job={}", *join, *segments);
  return join;
}

Result<core::JobId> JobIntake::create_checked_job(wire::JobSpec spec, Turn& turn) {
  auto core_spec = to_core_spec(spec);
  if (!core_spec) return fail(core_spec.error());
  auto id = farm_.scheduler->submit(std::move(*core_spec), clock_.millis(), /*durable=*/false);
  if (!id) return fail(id.error());
  turn.new_jobs.push_back(*id);
  // Adaptive chunks start balanced: the scheduler's cut is the job's, kept with it.
  if (const core::JobSpec* made = farm_.scheduler->job_spec(*id);
      made && !same_chunk_runs(spec, *made)) {
    set_chunk_runs(spec, *made);
  }

  const int64_t now = clock_.unix_ms();
  JobRow row;
  row.id = *id;
  row.spec = spec.SerializeAsString();
  row.submitted_unix_ms = now;
  row.idempotency_key = spec.idempotency_key();
  turn.batch.new_jobs.push_back(std::move(row));
  auto view = farm_.scheduler->job(*id);
  log_.info("job accepted job={} kind={} tasks={} priority={} lane={}", *id, spec.kind(),
            view ? view->task_count : 0, spec.priority(),
            spec.lane().empty() ? "batch" : spec.lane());
  farm_.jobs.add(*id, JobRecord{std::move(spec), now, 0});
  return *id;
}

}  // namespace farmhand::daemon
