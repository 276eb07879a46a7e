#include "daemon/farm.h"

#include <algorithm>
#include <cmath>

#include <fmt/ranges.h>

#include "daemon/clock.h"

namespace farmhand::daemon {

// ------------------------------------------------------------------ JobBook

void JobBook::add(core::JobId id, JobRecord record) {
  if (!record.spec.idempotency_key().empty()) keys_[record.spec.idempotency_key()] = id;
  records_[id] = std::move(record);
}

const JobRecord* JobBook::find(core::JobId id) const {
  auto it = records_.find(id);
  return it == records_.end() ? nullptr : &it->second;
}

void JobBook::set_spec(core::JobId id, wire::JobSpec spec) {
  if (auto it = records_.find(id); it != records_.end()) it->second.spec = std::move(spec);
}

void JobBook::add_usage(core::JobId id, const AttemptStats& stats) {
  if (records_.count(id) != 0) usage_[id].add(stats);
}

void JobBook::set_usage(core::JobId id, const JobUsage& usage) {
  if (records_.count(id) != 0) usage_[id] = usage;
}

JobUsage JobBook::usage(core::JobId id) const {
  auto it = usage_.find(id);
  return it == usage_.end() ? JobUsage{} : it->second;
}

std::optional<core::JobId> JobBook::find_key(const std::string& idempotency_key) const {
  if (idempotency_key.empty()) return std::nullopt;
  auto it = keys_.find(idempotency_key);
  if (it == keys_.end()) return std::nullopt;
  return it->second;
}

void JobBook::set_finished(core::JobId id, int64_t unix_ms, Batch& batch) {
  auto it = records_.find(id);
  if (it == records_.end()) return;
  it->second.finished_unix_ms = unix_ms;
  batch.finished.emplace_back(id, unix_ms);
}

void JobBook::set_started(core::JobId id, int64_t unix_ms, Batch& batch) {
  auto it = records_.find(id);
  if (it == records_.end() || it->second.started_unix_ms != 0) return;
  it->second.started_unix_ms = unix_ms;
  batch.started.emplace_back(id, unix_ms);
}

void JobBook::erase(core::JobId id) {
  auto it = records_.find(id);
  if (it == records_.end()) return;
  if (auto key = keys_.find(it->second.spec.idempotency_key());
      key != keys_.end() && key->second == id) {
    keys_.erase(key);
  }
  records_.erase(it);
  usage_.erase(id);
}

void JobBook::clear() {
  records_.clear();
  keys_.clear();
  usage_.clear();
}

// ------------------------------------------------------------------ EventBook

void EventBook::add(wire::EventInfo event) {
  if (event.source().rfind("watch:", 0) == 0) watch_published_.insert(event.path());
  index_[event.event_id()] = events_.size();
  events_.push_back(std::move(event));
}

const wire::EventInfo* EventBook::find(const std::string& event_id) const {
  auto it = index_.find(event_id);
  return it == index_.end() ? nullptr : &events_[it->second];
}

void EventBook::reindex() {
  index_.clear();
  for (size_t i = 0; i < events_.size(); ++i) index_[events_[i].event_id()] = i;
}

void EventBook::clear() {
  events_.clear();
  index_.clear();
  watch_published_.clear();
}

// ------------------------------------------------------------------ Farm

Result<void> Farm::restore(Store& store, const Clock& clock, core::Millis hold_dispatch,
                           spdlog::logger& log, Batch& staged,
                           const std::map<std::string, uint32_t>& configured_limits) {
  scheduler = std::make_unique<core::Scheduler>(scheduler_options);
  jobs.clear();
  events.clear();
  // Limits before jobs, so that restored running tasks take their tokens: the
  // config's, then what `farmhand limit set` stored (the wrangler's last word).
  for (const auto& [name, capacity] : configured_limits) scheduler->set_limit(name, capacity);
  if (auto ok =
          store.load_limits([&](LimitRow&& row) { scheduler->set_limit(row.name, row.capacity); });
      !ok) {
    return ok;
  }
  if (auto ok = store.load_worker_controls([&](WorkerControlRow&& row) {
        scheduler->control_worker(row.name, row.control, std::move(row.reason));
      });
      !ok) {
    return ok;
  }
  Error failure;
  bool failed = false;
  auto ok = store.load(
      [&](JobRow&& row) {
        wire::JobSpec spec;
        if (!spec.ParseFromString(row.spec)) {
          log.error("job skipped at restore job={} reason=\"unreadable spec\"", row.id);
          return;
        }
        auto core_spec = to_core_spec(spec);
        if (!core_spec) {
          log.error("job skipped at restore job={} reason=\"{}\"", row.id,
                    core_spec.error().reason);
          return;
        }
        if (auto r =
                scheduler->restore_job(row.id, std::move(*core_spec), row.paused, row.cancelled);
            !r) {
          failed = true;
          failure = r.error();
          return;
        }
        jobs.add(row.id, JobRecord{std::move(spec), row.submitted_unix_ms, row.finished_unix_ms,
                                   row.started_unix_ms});
      },
      [&](TaskRow&& row) {
        scheduler->restore_task(row.job, row.task, row.state, row.attempts, row.budget_base,
                                row.lease, row.worker, row.error);
      });
  if (!ok) return ok;
  if (failed) return fail(failure);
  ok = store.load_blocks([&](core::WorkerBlock&& block) { scheduler->restore_block(block); });
  if (!ok) return ok;
  ok = store.load_job_usage(
      [&](core::JobId id, const JobUsage& usage) { jobs.set_usage(id, usage); });
  if (!ok) return ok;
  action_keys.clear();
  ok = store.load_action_keys([&](ActionKeyRow&& row) {
    std::string key = row.key;
    action_keys.emplace(std::move(key), std::move(row));
  });
  if (!ok) return ok;
  ok = store.load_events([&](EventRow&& row) {
    wire::EventInfo event;
    if (!event.ParseFromString(row.info)) {
      log.error("event skipped at restore event={} reason=\"unreadable\"", row.event_id);
      return;
    }
    events.add(std::move(event));
  });
  if (!ok) return ok;
  const core::Millis now = clock.millis();
  scheduler->finish_restore(now);
  // Jobs that finished before the store recorded finish times count from now
  // (recorded with the next commit).
  std::vector<core::JobId> unrecorded;
  for (const auto& [id, record] : jobs.records()) {
    if (record.finished_unix_ms != 0) continue;
    if (auto view = scheduler->job(id); view && is_finished(view->state)) unrecorded.push_back(id);
  }
  for (core::JobId id : unrecorded) jobs.set_finished(id, clock.unix_ms(), staged);
  // Give workers that outlived us a few beats to report what they still run
  // before their tasks are handed to someone else.
  if (jobs.size() > 0) scheduler->hold_dispatch_until(now + hold_dispatch);
  return {};
}

// ------------------------------------------------------------------ wire names

wire::TaskState to_wire(core::TaskState s) {
  switch (s) {
    case core::TaskState::kWaiting:
      return wire::TASK_WAITING;
    case core::TaskState::kQueued:
    case core::TaskState::kBackoff:
      return wire::TASK_QUEUED;
    case core::TaskState::kRunning:
      return wire::TASK_RUNNING;
    case core::TaskState::kSucceeded:
      return wire::TASK_SUCCEEDED;
    case core::TaskState::kFailed:
      return wire::TASK_FAILED;
    case core::TaskState::kDead:
      return wire::TASK_DEAD;
    case core::TaskState::kCancelled:
      return wire::TASK_CANCELLED;
  }
  return wire::TASK_STATE_UNSPECIFIED;
}

std::optional<core::TaskState> task_state_from_wire(wire::TaskState s) {
  for (int i = 0; i < core::kTaskStateCount; ++i) {
    auto state = static_cast<core::TaskState>(i);
    if (state != core::TaskState::kBackoff && to_wire(state) == s) return state;
  }
  return std::nullopt;
}

wire::JobState to_wire(core::JobState s) {
  switch (s) {
    case core::JobState::kQueued:
      return wire::JOB_QUEUED;
    case core::JobState::kRunning:
      return wire::JOB_RUNNING;
    case core::JobState::kPaused:
      return wire::JOB_PAUSED;
    case core::JobState::kSucceeded:
      return wire::JOB_SUCCEEDED;
    case core::JobState::kFailed:
      return wire::JOB_FAILED;
    case core::JobState::kCancelled:
      return wire::JOB_CANCELLED;
  }
  return wire::JOB_STATE_UNSPECIFIED;
}

bool is_finished(core::JobState s) {
  return s == core::JobState::kSucceeded || s == core::JobState::kFailed ||
         s == core::JobState::kCancelled;
}

Result<core::JobSpec> to_core_spec(const wire::JobSpec& spec) {
  core::JobSpec out;
  out.kind = spec.kind();
  auto frames = common::FrameSet::parse(spec.frames());
  if (!frames) return fail(frames.error());
  out.frames = std::move(*frames);
  out.chunk = spec.chunk() == 0 ? 1 : spec.chunk();
  out.priority = spec.priority();
  out.pool = spec.pool();
  out.after.assign(spec.after().begin(), spec.after().end());
  out.after_frames = spec.after_frames();
  out.max_attempts = spec.max_attempts();
  out.timeout = std::chrono::seconds(spec.timeout_s());
  out.interactive = spec.lane() == "interactive";
  out.limits.assign(spec.limits().begin(), spec.limits().end());
  out.max_running = spec.max_running();
  out.project = spec.project();
  out.cores = spec.cores();
  out.memory = spec.memory_bytes();
  out.gpus = spec.gpus();
  out.memory_retry_factor = spec.memory_retry_factor();
  out.chunk_target_s = spec.chunk_target_s();
  out.chunk_max_gap = spec.chunk_max_gap();
  out.chunk_now = spec.chunk_now();
  for (const wire::ChunkRun& run : spec.chunk_runs()) {
    out.chunk_runs.push_back({run.tasks(), run.frames()});
  }
  for (const wire::TagChoice& choice : spec.tag_choices()) {
    out.tag_choices.emplace_back(choice.any().begin(), choice.any().end());
  }
  return out;
}

bool same_chunk_runs(const wire::JobSpec& spec, const core::JobSpec& core_spec) {
  if (spec.chunk_now() != core_spec.chunk_now) return false;
  if (static_cast<size_t>(spec.chunk_runs_size()) != core_spec.chunk_runs.size()) return false;
  for (size_t i = 0; i < core_spec.chunk_runs.size(); ++i) {
    const wire::ChunkRun& run = spec.chunk_runs(static_cast<int>(i));
    if (core::ChunkRun{run.tasks(), run.frames()} != core_spec.chunk_runs[i]) return false;
  }
  return true;
}

void set_chunk_runs(wire::JobSpec& spec, const core::JobSpec& core_spec) {
  spec.set_chunk_now(core_spec.chunk_now);
  spec.clear_chunk_runs();
  for (const core::ChunkRun& run : core_spec.chunk_runs) {
    wire::ChunkRun& out = *spec.add_chunk_runs();
    out.set_tasks(run.tasks);
    out.set_frames(run.frames);
  }
}

AttemptStats attempt_stats(const wire::AttemptStats& stats) {
  auto seconds = [](double s) { return std::isfinite(s) && s > 0 ? s : 0.0; };
  AttemptStats out;
  out.wall_s = seconds(stats.wall_s());
  out.cpu_user_s = seconds(stats.cpu_user_s());
  out.cpu_system_s = seconds(stats.cpu_system_s());
  out.peak_rss_bytes = stats.peak_rss_bytes();
  if (stats.has_exit_code()) out.exit_code = stats.exit_code();
  // "SIGKILL", "signal 99": anything else is not from our worker.
  out.exit_signal = stats.exit_signal().substr(0, 32);
  std::erase_if(out.exit_signal, [](char c) { return c < ' ' || c > '~'; });
  return out;
}

void to_wire(const AttemptStats& stats, wire::AttemptStats& out) {
  out.set_wall_s(stats.wall_s);
  out.set_cpu_user_s(stats.cpu_user_s);
  out.set_cpu_system_s(stats.cpu_system_s);
  out.set_peak_rss_bytes(stats.peak_rss_bytes);
  if (stats.exit_code) out.set_exit_code(*stats.exit_code);
  out.set_exit_signal(stats.exit_signal);
}

char task_state_letter(core::TaskState s) {
  switch (s) {
    case core::TaskState::kWaiting:
      return 'w';
    case core::TaskState::kQueued:
    case core::TaskState::kBackoff:
      return 'q';
    case core::TaskState::kRunning:
      return 'r';
    case core::TaskState::kSucceeded:
      return 's';
    case core::TaskState::kFailed:
      return 'f';
    case core::TaskState::kDead:
      return 'd';
    case core::TaskState::kCancelled:
      return 'c';
  }
  return '?';
}

std::string job_display_name(const wire::JobSpec& spec) {
  if (!spec.name().empty()) return spec.name();
  return spec.command_template().empty() ? spec.kind()
                                         : spec.kind() + " " + spec.command_template();
}

bool job_matches(const wire::ListRequest& request, const std::string& needle, const JobFacts& job) {
  if (request.state() != wire::JOB_STATE_UNSPECIFIED && job.state != request.state()) return false;
  if (!request.user().empty() && job.user != request.user()) return false;
  if (!request.project().empty() && job.project != request.project()) return false;
  if (request.since_unix_ms() != 0 && job.submitted_unix_ms < request.since_unix_ms()) {
    return false;
  }
  for (const auto& [key, value] : request.labels()) {
    auto it = job.labels.find(key);
    if (it == job.labels.end() || it->second != value) return false;
  }
  return needle.empty() || ascii_lower(job.name).find(needle) != std::string::npos;
}

void fill_summary_fixed(const Farm& farm, core::JobId id, wire::JobSummary& summary) {
  const core::Scheduler& scheduler = *farm.scheduler;
  auto view = scheduler.job(id);
  const core::JobSpec* spec = scheduler.job_spec(id);
  const JobRecord* record = farm.jobs.find(id);
  if (!view || !spec || !record) return;
  const wire::JobSpec& wspec = record->spec;
  summary.set_id(id);
  summary.set_name(job_display_name(wspec));
  summary.set_kind(wspec.kind());
  summary.set_priority(spec->priority);
  summary.set_pool(spec->pool);
  summary.set_frames(spec->frames.to_string());
  summary.set_chunk(spec->chunk);
  summary.set_chunk_target_s(spec->chunk_target_s);
  for (const auto& choice : spec->tag_choices) {
    summary.add_tag_choices(fmt::format("{}", fmt::join(choice, "|")));
  }
  if (spec->chunk_target_s > 0) {
    summary.set_chunk_now(spec->chunk_now != 0 ? spec->chunk_now : spec->chunk);
  }
  summary.set_task_count(view->task_count);
  summary.set_submitted_unix_ms(record->submitted_unix_ms);
  summary.mutable_labels()->insert(wspec.labels().begin(), wspec.labels().end());
  summary.set_max_attempts(spec->max_attempts);
  summary.set_timeout_s(static_cast<uint32_t>(spec->timeout.count()));
  for (core::JobId up : spec->after) summary.add_after(up);
  summary.set_after_frames(spec->after_frames);
  summary.set_lane(spec->interactive ? "interactive" : "batch");
  if (auto it = wspec.labels().find("event"); it != wspec.labels().end()) {
    summary.set_event_id(it->second);
  }
  summary.set_submitted_by(wspec.submitted_by());
  summary.set_submitted_from(wspec.submitted_from());
  summary.set_submitted_key(wspec.submitted_key());
  summary.set_project(wspec.project());
  summary.set_command_template(wspec.command_template());
  summary.mutable_params()->insert(wspec.params().begin(), wspec.params().end());
  summary.set_max_running(spec->max_running);
  summary.set_cores(spec->cores);
  summary.set_gpus(spec->gpus);
  summary.set_memory_bytes(spec->memory);
  summary.set_memory_retry_factor(spec->memory_retry_factor);
  summary.set_frames_total(spec->frames.size());
  for (const std::string& limit : spec->limits) summary.add_limits(limit);
}

std::optional<JobMoving> job_moving(const Farm& farm, core::JobId id) {
  const core::Scheduler& scheduler = *farm.scheduler;
  auto view = scheduler.job(id);
  const core::JobSpec* spec = scheduler.job_spec(id);
  const JobRecord* record = farm.jobs.find(id);
  if (!view || !spec || !record) return std::nullopt;
  JobMoving moving;
  moving.state = to_wire(view->state);
  moving.counts = view->counts;
  moving.started_unix_ms = record->started_unix_ms;
  moving.finished_unix_ms = record->finished_unix_ms;
  moving.usage = farm.jobs.usage(id);
  // Frames, for a progress bar that moves with the frames of long tasks.
  moving.frames_succeeded = view->frames_succeeded;
  return moving;
}

void apply_moving(const JobMoving& moving, wire::JobSummary& summary) {
  summary.set_state(moving.state);
  for (int i = 0; i < core::kTaskStateCount; ++i) {
    auto state = static_cast<core::TaskState>(i);
    if (state == core::TaskState::kBackoff) continue;
    (*summary.mutable_counts())[std::string(core::task_state_name(state))] = moving.counts[i];
  }
  summary.set_started_unix_ms(moving.started_unix_ms);
  summary.set_finished_unix_ms(moving.finished_unix_ms);
  summary.set_frames_succeeded(moving.frames_succeeded);
  auto* out = summary.mutable_usage();
  out->set_cpu_s(moving.usage.cpu_s);
  out->set_peak_rss_bytes(moving.usage.peak_rss_bytes);
  out->set_attempts(moving.usage.attempts);
}

void fill_summary(const Farm& farm, core::JobId id, wire::JobSummary& summary) {
  auto moving = job_moving(farm, id);
  if (!moving) return;
  fill_summary_fixed(farm, id, summary);
  apply_moving(*moving, summary);
}

}  // namespace farmhand::daemon
