#include "cli/output.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <ctime>
#include <map>

#include <fmt/format.h>

#include "common/byte_size.h"
#include "common/result.h"

namespace farmhand::cli {

namespace {

// Lifecycle order, which is also the order counts are shown in.
constexpr wire::TaskState kTaskStates[] = {
    wire::TASK_WAITING, wire::TASK_QUEUED, wire::TASK_RUNNING,   wire::TASK_SUCCEEDED,
    wire::TASK_FAILED,  wire::TASK_DEAD,   wire::TASK_CANCELLED,
};

constexpr wire::JobState kJobStates[] = {
    wire::JOB_QUEUED,    wire::JOB_RUNNING, wire::JOB_PAUSED,
    wire::JOB_SUCCEEDED, wire::JOB_FAILED,  wire::JOB_CANCELLED,
};

constexpr int kBarWidth = 30;

std::string or_dash(std::string_view text) {
  return text.empty() ? "-" : single_line(text);
}

// "TASK_DEAD" -> "dead", "Dead" -> "dead": the schema only says "task state name".
std::string normalised_state_key(std::string_view key) {
  std::string out;
  for (char c : key) out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (out.rfind("task_", 0) == 0) out.erase(0, 5);
  return out;
}

std::string join(const std::vector<std::string>& parts, std::string_view separator) {
  std::string out;
  for (const auto& part : parts) {
    if (!out.empty()) out += separator;
    out += part;
  }
  return out;
}

// null when the message is absent (unknown).
template <typename Message>
Json optional_json(bool present, const Message& message) {
  return present ? to_json(message) : Json(nullptr);
}

Json tasks_json(const google::protobuf::RepeatedPtrField<wire::TaskInfo>& tasks) {
  Json out = Json::array();
  for (const auto& task : tasks) out.push_back(to_json(task));
  return out;
}

}  // namespace

// ---------------------------------------------------------------- states

std::string job_state_name(wire::JobState state) {
  switch (state) {
    case wire::JOB_QUEUED:
      return "queued";
    case wire::JOB_RUNNING:
      return "running";
    case wire::JOB_PAUSED:
      return "paused";
    case wire::JOB_SUCCEEDED:
      return "succeeded";
    case wire::JOB_FAILED:
      return "failed";
    case wire::JOB_CANCELLED:
      return "cancelled";
    default:
      return "unspecified";
  }
}

std::string task_state_name(wire::TaskState state) {
  switch (state) {
    case wire::TASK_WAITING:
      return "waiting";
    case wire::TASK_QUEUED:
      return "queued";
    case wire::TASK_RUNNING:
      return "running";
    case wire::TASK_SUCCEEDED:
      return "succeeded";
    case wire::TASK_FAILED:
      return "failed";
    case wire::TASK_DEAD:
      return "dead";
    case wire::TASK_CANCELLED:
      return "cancelled";
    default:
      return "unspecified";
  }
}

const std::vector<std::string>& job_state_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (auto state : kJobStates) out.push_back(job_state_name(state));
    return out;
  }();
  return names;
}

const std::vector<std::string>& task_state_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (auto state : kTaskStates) out.push_back(task_state_name(state));
    return out;
  }();
  return names;
}

std::optional<wire::JobState> job_state_from_name(std::string_view name) {
  for (auto state : kJobStates) {
    if (job_state_name(state) == name) return state;
  }
  return std::nullopt;
}

std::optional<wire::TaskState> task_state_from_name(std::string_view name) {
  for (auto state : kTaskStates) {
    if (task_state_name(state) == name) return state;
  }
  return std::nullopt;
}

bool job_state_is_final(wire::JobState state) {
  return state == wire::JOB_SUCCEEDED || state == wire::JOB_FAILED || state == wire::JOB_CANCELLED;
}

// ---------------------------------------------------------------- progress

uint64_t task_count_in(const wire::JobSummary& job, wire::TaskState state) {
  const std::string wanted = task_state_name(state);
  uint64_t count = 0;
  for (const auto& [key, value] : job.counts()) {
    if (normalised_state_key(key) == wanted) count += value;
  }
  return count;
}

uint64_t total_tasks(const wire::JobSummary& job) {
  if (job.task_count() != 0) return job.task_count();
  uint64_t sum = 0;
  for (const auto& [key, value] : job.counts()) sum += value;
  return sum;
}

int progress_percent(const wire::JobSummary& job) {
  const uint64_t total = total_tasks(job);
  if (total == 0) return 0;
  const uint64_t done = std::min(task_count_in(job, wire::TASK_SUCCEEDED), total);
  // In long double: done * 100 overflows uint64 near 2^57 tasks, which no job has,
  // but the arithmetic should not care.
  return static_cast<int>(static_cast<long double>(done) * 100 / static_cast<long double>(total));
}

// ---------------------------------------------------------------- JSON

Json to_json(const wire::TaskInfo& task) {
  return Json{
      {"index", task.index()},
      {"state", task_state_name(task.state())},
      {"frames", task.frames()},
      {"attempts", task.attempts()},
      {"worker", task.worker()},
      {"error", task.error()},
      {"running_s", task.running_s()},
      {"started_unix_ms",
       task.started_unix_ms() == 0 ? Json(nullptr) : Json(task.started_unix_ms())},
      {"elapsed_s", task.started_unix_ms() == 0 ? Json(nullptr) : Json(task.elapsed_s())},
      {"job_id", task.job_id()},
      {"progress_done", task.progress_done()},
      {"progress_total", task.progress_total()},
      {"status_message", task.status_message()},
      {"last_attempt", optional_json(task.has_last_attempt(), task.last_attempt())},
  };
}

Json to_json(const wire::AttemptStats& stats) {
  return Json{
      {"wall_s", stats.wall_s()},
      {"cpu_user_s", stats.cpu_user_s()},
      {"cpu_system_s", stats.cpu_system_s()},
      {"cpu_s", stats.cpu_user_s() + stats.cpu_system_s()},
      {"peak_rss_bytes",
       stats.peak_rss_bytes() == 0 ? Json(nullptr) : Json(stats.peak_rss_bytes())},
      {"exit_code", stats.has_exit_code() ? Json(stats.exit_code()) : Json(nullptr)},
      {"exit_signal", stats.exit_signal().empty() ? Json(nullptr) : Json(stats.exit_signal())},
  };
}

Json to_json(const wire::JobUsage& usage) {
  return Json{
      {"cpu_s", usage.cpu_s()},
      {"cpu_hours", usage.cpu_s() / 3600.0},
      {"peak_rss_bytes", usage.peak_rss_bytes()},
      {"attempts", usage.attempts()},
  };
}

namespace {

int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// How long the job has run: from its first task's start until it finished
// (or now); 0 before it starts.
double job_elapsed_s(const wire::JobSummary& job) {
  if (job.started_unix_ms() == 0) return 0;
  const int64_t end = job.finished_unix_ms() != 0 ? job.finished_unix_ms() : now_unix_ms();
  return std::max<double>(0, static_cast<double>(end - job.started_unix_ms()) / 1000.0);
}

// How long it waited for its first task to start: from submit until then (or
// until it finished without starting, or now).
double job_queued_s(const wire::JobSummary& job) {
  if (job.submitted_unix_ms() == 0) return 0;
  const int64_t end = job.started_unix_ms() != 0    ? job.started_unix_ms()
                      : job.finished_unix_ms() != 0 ? job.finished_unix_ms()
                                                    : now_unix_ms();
  return std::max<double>(0, static_cast<double>(end - job.submitted_unix_ms()) / 1000.0);
}

// Local time, to the second: "2026-12-06 10:17:31".
std::string local_time(int64_t unix_ms) {
  if (unix_ms == 0) return "-";
  const std::time_t t = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  localtime_r(&t, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S", &tm);
  return text;
}

std::string submitter_text(const wire::JobSummary& job) {
  std::string who = job.submitted_by().empty() ? "?" : single_line(job.submitted_by());
  if (!job.submitted_from().empty()) who += "@" + single_line(job.submitted_from());
  if (!job.submitted_key().empty()) who += " (key " + single_line(job.submitted_key()) + ")";
  return who;
}

}  // namespace

Json to_json(const wire::JobSummary& job) {
  Json counts = Json::object();
  for (auto state : kTaskStates) counts[task_state_name(state)] = task_count_in(job, state);
  // Sorted, so the output does not depend on protobuf's map order.
  std::map<std::string, std::string> labels(job.labels().begin(), job.labels().end());
  Json after = Json::array();
  for (uint64_t id : job.after()) after.push_back(id);
  return Json{
      {"id", job.id()},
      {"name", job.name()},
      {"kind", job.kind()},
      {"state", job_state_name(job.state())},
      {"priority", job.priority()},
      {"pool", job.pool()},
      {"frames", job.frames()},
      {"chunk", job.chunk()},
      {"chunk_target_s", job.chunk_target_s()},
      {"chunk_now", job.chunk_now()},
      {"task_count", job.task_count()},
      {"counts", std::move(counts)},
      {"progress_percent", progress_percent(job)},
      {"submitted_unix_ms", job.submitted_unix_ms()},
      {"finished_unix_ms",
       job.finished_unix_ms() == 0 ? Json(nullptr) : Json(job.finished_unix_ms())},
      {"started_unix_ms", job.started_unix_ms() == 0 ? Json(nullptr) : Json(job.started_unix_ms())},
      {"elapsed_s", job_elapsed_s(job)},
      {"queued_s", job_queued_s(job)},
      {"submitted_by", job.submitted_by()},
      {"submitted_from", job.submitted_from()},
      {"submitted_key", job.submitted_key()},
      {"project", job.project()},
      {"command_template", job.command_template()},
      {"params", std::map<std::string, std::string>(job.params().begin(), job.params().end())},
      {"max_running", job.max_running()},
      {"cores", job.cores()},
      {"gpus", job.gpus()},
      {"tag_choices", std::vector<std::string>(job.tag_choices().begin(), job.tag_choices().end())},
      {"memory_bytes", job.memory_bytes()},
      {"memory_retry_factor", job.memory_retry_factor()},
      {"frames_total", job.frames_total()},
      {"frames_succeeded", job.frames_succeeded()},
      {"limits", std::vector<std::string>(job.limits().begin(), job.limits().end())},
      {"labels", labels},
      {"max_attempts", job.max_attempts()},
      {"timeout_s", job.timeout_s()},
      {"after", std::move(after)},
      {"after_frames", job.after_frames()},
      {"lane", job.lane().empty() ? "batch" : job.lane()},
      {"event_id", job.event_id()},
      {"usage", optional_json(job.has_usage(), job.usage())},
  };
}

Json blocked_json(const google::protobuf::RepeatedPtrField<wire::BlockedWorker>& blocked) {
  Json out = Json::array();
  for (const auto& b : blocked) {
    out.push_back(Json{{"worker", b.worker()}, {"failures", b.failures()}, {"reason", b.reason()}});
  }
  return out;
}

Json to_json(const wire::StatusReply& status) {
  return Json{
      {"job", to_json(status.job())},
      {"running", tasks_json(status.running())},
      {"last_errors", tasks_json(status.last_errors())},
      {"tasks", tasks_json(status.tasks())},
      {"waiting_reason", status.waiting_reason()},
      {"blocked", blocked_json(status.blocked())},
  };
}

Json to_json(const wire::HealthReply& health) {
  Json jobs = Json::object();
  for (auto state : kJobStates) {
    auto it = health.jobs().find(job_state_name(state));
    jobs[job_state_name(state)] = it == health.jobs().end() ? 0 : it->second;
  }
  Json tasks = Json::object();
  for (auto state : kTaskStates) {
    auto it = health.tasks().find(task_state_name(state));
    tasks[task_state_name(state)] = it == health.tasks().end() ? 0 : it->second;
  }
  return Json{
      {"healthy", health.store_writes()},
      {"store_writes", health.store_writes()},
      {"store_error", health.store_error()},
      {"store_retry_in_s", health.store_writes() ? Json(nullptr) : Json(health.store_retry_in_s())},
      {"uptime_s", health.uptime_s()},
      {"jobs", std::move(jobs)},
      {"tasks", std::move(tasks)},
      {"workers_alive", health.workers_alive()},
      {"workers_silent", health.workers_silent()},
      {"held_status_requests", health.held_status_requests()},
      {"failed_commits", health.failed_commits()},
  };
}

Json to_json(const wire::LimitInfo& limit) {
  return Json{
      {"name", limit.name()},
      {"capacity", limit.configured() ? Json(limit.capacity()) : Json(nullptr)},
      {"in_use", limit.in_use()},
      {"waiting_jobs", limit.waiting_jobs()},
  };
}

Json to_json(const wire::ShareInfo& share) {
  return Json{
      {"project", share.project()},       {"weight", share.weight()},
      {"running", share.running()},       {"queued_jobs", share.queued_jobs()},
      {"configured", share.configured()},
  };
}

Json to_json(const wire::WorkerInfo& worker) {
  Json tags = Json::array();
  for (const auto& tag : worker.tags()) tags.push_back(tag);
  return Json{
      {"name", worker.name()},
      {"host", worker.host()},
      {"pid", worker.pid()},
      {"slots", worker.slots()},
      {"interactive_slots", worker.interactive_slots()},
      {"tags", std::move(tags)},
      {"alive", worker.alive()},
      {"last_beat_s", worker.last_beat_s()},
      {"running", tasks_json(worker.running())},
      {"control", worker.control().empty() ? std::string("enabled") : worker.control()},
      {"control_reason", worker.control_reason()},
      {"cores", worker.cores()},
      {"memory_bytes", worker.memory_bytes()},
      {"cores_used", worker.cores_used()},
      {"memory_used_bytes", worker.memory_used_bytes()},
      {"gpus", worker.gpus()},
      {"gpus_used", worker.gpus_used()},
      {"isolation", worker.isolation()},
  };
}

Json to_json(const wire::TaskLog& log) {
  return Json{
      {"task", log.task()},
      {"attempt", log.attempt()},
      {"worker", log.worker()},
      {"error", log.error()},
      {"text", log.text()},
      {"running", log.running()},
      {"stats", optional_json(log.has_stats(), log.stats())},
  };
}

Json to_json(const common::Sequence& sequence) {
  const bool single = sequence.is_single_file();
  Json missing = nullptr;
  if (sequence.missing) missing = sequence.missing->to_string();
  return Json{
      {"dir", sequence.pattern.dir},
      {"pattern", sequence.pattern.name(common::PaddingStyle::kHash)},
      {"frames", sequence.frames.to_string()},
      {"first", single ? Json(nullptr) : Json(sequence.first())},
      {"last", single ? Json(nullptr) : Json(sequence.last())},
      {"count", sequence.count()},
      {"missing", std::move(missing)},
      {"missing_count", sequence.missing_count()},
      {"padding", sequence.pattern.padding},
  };
}

std::string dump_json(const Json& json) {
  // nlohmann escapes C0 controls itself. DEL, the C1 controls (U+0080..U+009F:
  // some terminals take U+009B as CSI), the bidi overrides and isolates, and
  // the line and paragraph separators it leaves raw; they are escaped here
  // too, so that --json on a terminal is as harmless as the text. Their bytes
  // can only stand inside strings (JSON's own syntax is printable ASCII), and
  // a parser gives back the exact text.
  const std::string raw = json.dump(2, ' ', false, Json::error_handler_t::replace);
  std::string out;
  out.reserve(raw.size());
  auto escape = [&out](unsigned code) { out += fmt::format("\\u{:04x}", code); };
  for (size_t i = 0; i < raw.size(); ++i) {
    const auto c = static_cast<unsigned char>(raw[i]);
    const auto next = i + 1 < raw.size() ? static_cast<unsigned char>(raw[i + 1]) : 0u;
    const auto third = i + 2 < raw.size() ? static_cast<unsigned char>(raw[i + 2]) : 0u;
    if (c == 0x7f) {
      escape(0x7f);
    } else if (c == 0xc2 && next >= 0x80 && next <= 0x9f) {
      escape(next);
      i += 1;
    } else if (c == 0xe2 && next == 0x80 && third >= 0xa8 && third <= 0xae) {
      escape(0x2000 + (third - 0x80));  // U+2028..U+202E
      i += 2;
    } else if (c == 0xe2 && next == 0x81 && third >= 0xa6 && third <= 0xa9) {
      escape(0x2040 + (third - 0x80));  // U+2066..U+2069
      i += 2;
    } else {
      out += raw[i];
    }
  }
  return out;
}

// ---------------------------------------------------------------- text

std::string single_line(std::string_view text) {
  return printable(text, kWholeText);
}

std::string shown_text(std::string_view text) {
  return printable_lines(text);
}

void Table::write(std::ostream& out, std::string_view indent) const {
  std::vector<size_t> widths;
  for (const auto& row : rows_) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  for (const auto& row : rows_) {
    std::string line(indent);
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    out << line << '\n';
  }
}

std::string format_seconds(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) seconds = 0;
  if (seconds < 60) return fmt::format("{:.1f}s", seconds);
  const auto whole = static_cast<uint64_t>(seconds);
  if (whole < 3600) return fmt::format("{}m{:02}s", whole / 60, whole % 60);
  return fmt::format("{}h{:02}m", whole / 3600, whole % 3600 / 60);
}

std::string format_bytes(uint64_t bytes) {
  return bytes == 0 ? "-" : common::format_byte_size(bytes);
}

std::string exit_text(const wire::AttemptStats& stats) {
  if (!stats.exit_signal().empty()) return single_line(stats.exit_signal());
  if (stats.has_exit_code()) return std::to_string(stats.exit_code());
  return "-";
}

std::string attempt_stats_text(const wire::AttemptStats& stats) {
  return fmt::format("wall {} cpu {} peak {} exit {}", format_seconds(stats.wall_s()),
                     format_seconds(stats.cpu_user_s() + stats.cpu_system_s()),
                     format_bytes(stats.peak_rss_bytes()), exit_text(stats));
}

std::string usage_text(const wire::JobSummary& job) {
  const wire::JobUsage& usage = job.usage();
  if (usage.attempts() == 0) return "";
  return fmt::format("usage: cpu {} ({:.2f} CPU hours) over {} attempt{}, largest peak {}",
                     format_seconds(usage.cpu_s()), usage.cpu_s() / 3600.0, usage.attempts(),
                     usage.attempts() == 1 ? "" : "s", format_bytes(usage.peak_rss_bytes()));
}

std::string times_text(const wire::JobSummary& job) {
  const std::string queued = format_seconds(job_queued_s(job));
  const bool finished = job.finished_unix_ms() != 0;
  if (job.started_unix_ms() == 0) {
    // Not started, or finished before any task ran (or before the broker kept start times).
    return finished ? fmt::format("finished {} without a start time (queued {})",
                                  local_time(job.finished_unix_ms()), queued)
                    : fmt::format("not started yet (queued {})", queued);
  }
  if (finished) {
    return fmt::format("started {}, finished {}: ran {} (queued {})",
                       local_time(job.started_unix_ms()), local_time(job.finished_unix_ms()),
                       format_seconds(job_elapsed_s(job)), queued);
  }
  return fmt::format("started {}, running for {} (queued {})", local_time(job.started_unix_ms()),
                     format_seconds(job_elapsed_s(job)), queued);
}

std::string counts_text(const wire::JobSummary& job) {
  std::vector<std::string> parts;
  for (auto state : kTaskStates) {
    if (uint64_t count = task_count_in(job, state); count != 0) {
      parts.push_back(fmt::format("{}={}", task_state_name(state), count));
    }
  }
  return join(parts, " ");
}

void write_status(std::ostream& out, const wire::StatusReply& status, bool with_tasks) {
  const auto& job = status.job();
  const uint64_t total = total_tasks(job);
  std::string name = job.name().empty() ? "" : fmt::format(" \"{}\"", single_line(job.name()));
  out << fmt::format(
      "job {}{} kind={} state={} priority={} pool={} frames={} chunk={}{}\n", job.id(), name,
      or_dash(job.kind()), job_state_name(job.state()), job.priority(),
      job.pool().empty() ? "any" : single_line(job.pool()), or_dash(job.frames()), job.chunk(),
      job.chunk_target_s() == 0 ? ""
                                : fmt::format(" (adapting to {} s a chunk: {} frames now)",
                                              job.chunk_target_s(), job.chunk_now()));
  out << fmt::format("submitted {} by {}{}\n", local_time(job.submitted_unix_ms()),
                     submitter_text(job),
                     job.project().empty() ? "" : " for " + single_line(job.project()));
  out << times_text(job) << '\n';
  // What it runs: the command template or the media kind's parameters.
  if (!job.command_template().empty() || !job.params().empty()) {
    std::map<std::string, std::string> params(job.params().begin(), job.params().end());
    std::vector<std::string> parts;
    if (!job.command_template().empty()) {
      parts.push_back("command=" + single_line(job.command_template()));
    }
    for (const auto& [key, value] : params) {
      // "_output_dir", "_output_root": where the broker placed the output, for
      // the worker; --json has them.
      if (key.rfind('_', 0) == 0) continue;
      parts.push_back(single_line(key) + "=" + single_line(value));
    }
    if (!parts.empty()) out << join(parts, " ") << '\n';
  }
  // Where it came from and what it waits for, when there is something to say.
  std::vector<std::string> extra;
  if (job.max_running() != 0) extra.push_back(fmt::format("max_running={}", job.max_running()));
  if (job.cores() != 0) extra.push_back(fmt::format("cores={}", job.cores()));
  if (job.gpus() != 0) extra.push_back(fmt::format("gpus={}", job.gpus()));
  if (!job.tag_choices().empty()) {
    extra.push_back(
        "needs_tags=" +
        join(std::vector<std::string>(job.tag_choices().begin(), job.tag_choices().end()), ","));
  }
  if (job.memory_bytes() != 0) {
    extra.push_back("memory=" + common::format_byte_size(job.memory_bytes()));
  }
  if (job.memory_retry_factor() > 1) {
    extra.push_back(fmt::format("memory_retry_factor={}", job.memory_retry_factor()));
  }
  if (!job.limits().empty()) {
    extra.push_back("limits=" +
                    join(std::vector<std::string>(job.limits().begin(), job.limits().end()), ","));
  }
  if (job.lane() == "interactive") extra.push_back("lane=interactive");
  if (!job.after().empty()) {
    std::vector<std::string> ids;
    for (uint64_t id : job.after()) ids.push_back(std::to_string(id));
    extra.push_back("after=" + join(ids, ","));
  }
  if (job.after_frames() != 0) extra.push_back(fmt::format("after_frames={}", job.after_frames()));
  std::map<std::string, std::string> labels(job.labels().begin(), job.labels().end());
  for (const auto& [key, value] : labels) {
    extra.push_back(single_line(key) + "=" + single_line(value));
  }
  if (!extra.empty()) out << join(extra, " ") << '\n';
  const std::string counts = counts_text(job);
  out << fmt::format("tasks: {} ({} total)\n", counts.empty() ? "none" : counts, total);
  if (!status.waiting_reason().empty()) {
    out << "waiting: " << single_line(status.waiting_reason()) << '\n';
  }
  if (const FrameProgress frames = frame_progress(status); frames.total > 0) {
    out << fmt::format("frames: {}/{} done\n", frames.done, frames.total);
  }
  out << fmt::format("progress: {}% ({}/{} succeeded)\n", progress_percent(job),
                     task_count_in(job, wire::TASK_SUCCEEDED), total);
  if (const std::string usage = usage_text(job); !usage.empty()) out << usage << '\n';

  if (!status.running().empty()) {
    out << "running:\n";
    // A task's own status line (OpenJD's openjd_status) where any has one.
    const bool said = std::any_of(status.running().begin(), status.running().end(),
                                  [](const auto& task) { return !task.status_message().empty(); });
    std::vector<std::string> header = {"TASK", "FRAMES", "WORKER", "ATTEMPT", "STARTED", "RUNNING"};
    if (said) header.push_back("STATUS");
    Table table(header);
    for (const auto& task : status.running()) {
      std::vector<std::string> row = {std::to_string(task.index()),
                                      or_dash(task.frames()),
                                      or_dash(task.worker()),
                                      std::to_string(task.attempts()),
                                      local_time(task.started_unix_ms()),
                                      format_seconds(task.running_s())};
      if (said) row.push_back(or_dash(single_line(task.status_message())));
      table.add_row(row);
    }
    table.write(out, "  ");
  }
  if (!status.blocked().empty()) {
    out << "blocked workers (take no more of this job; `farmhand job unblock`):\n";
    Table table({"WORKER", "FAILURES", "LAST ERROR"});
    for (const auto& b : status.blocked()) {
      table.add_row({single_line(b.worker()), std::to_string(b.failures()), or_dash(b.reason())});
    }
    table.write(out, "  ");
  }
  if (!status.last_errors().empty()) {
    out << "last errors:\n";
    Table table({"TASK", "FRAMES", "ATTEMPTS", "ERROR"});
    for (const auto& task : status.last_errors()) {
      table.add_row({std::to_string(task.index()), or_dash(task.frames()),
                     std::to_string(task.attempts()), or_dash(task.error())});
    }
    table.write(out, "  ");
  }
  if (with_tasks) {
    out << fmt::format("task page ({} shown):\n", status.tasks_size());
    // WORKER, STARTED, ELAPSED: the running attempt, else the last one; CPU to
    // EXIT: the last attempt that reported its use.
    Table table({"TASK", "STATE", "FRAMES", "ATTEMPTS", "WORKER", "STARTED", "ELAPSED", "CPU",
                 "PEAK", "EXIT", "ERROR"});
    for (const auto& task : status.tasks()) {
      const bool known = task.has_last_attempt();
      const wire::AttemptStats& last = task.last_attempt();
      const bool started = task.started_unix_ms() != 0;
      table.add_row({std::to_string(task.index()), task_state_name(task.state()),
                     or_dash(task.frames()), std::to_string(task.attempts()),
                     or_dash(task.worker()), started ? local_time(task.started_unix_ms()) : "-",
                     started ? format_seconds(task.elapsed_s())
                     : known ? format_seconds(last.wall_s())
                             : "-",
                     known ? format_seconds(last.cpu_user_s() + last.cpu_system_s()) : "-",
                     known ? format_bytes(last.peak_rss_bytes()) : "-",
                     known ? exit_text(last) : "-", or_dash(task.error())});
    }
    table.write(out, "  ");
  }
}

std::string health_problem(const wire::HealthReply& health) {
  if (health.store_writes()) return "";
  return single_line(health.store_error()) +
         fmt::format("; writes are refused and dispatch is stopped, trying again in {:.1f} s",
                     health.store_retry_in_s());
}

void write_health(std::ostream& out, const wire::HealthReply& health) {
  auto counts = [](const auto& map, const auto& states, auto name_of) {
    std::vector<std::string> parts;
    for (auto state : states) {
      auto it = map.find(name_of(state));
      if (it != map.end() && it->second != 0) {
        parts.push_back(fmt::format("{}={}", name_of(state), it->second));
      }
    }
    return parts.empty() ? std::string("none") : join(parts, " ");
  };
  out << (health.store_writes() ? "healthy: the state store writes"
                                : "unhealthy: " + health_problem(health))
      << '\n';
  out << "uptime: " << format_seconds(health.uptime_s()) << '\n';
  out << "jobs: " << counts(health.jobs(), kJobStates, [](auto s) { return job_state_name(s); })
      << '\n';
  out << "tasks: " << counts(health.tasks(), kTaskStates, [](auto s) { return task_state_name(s); })
      << '\n';
  out << fmt::format("workers: {} alive, {} silent\n", health.workers_alive(),
                     health.workers_silent());
  out << fmt::format("held status requests: {}\n", health.held_status_requests());
  if (health.failed_commits() != 0) {
    out << fmt::format("failed commits: {}\n", health.failed_commits());
  }
  out << std::flush;
}

void write_jobs(std::ostream& out, const wire::ListReply& list) {
  Table table({"ID", "STATE", "PRIO", "KIND", "NAME", "PROJECT", "USER", "DONE/TOTAL", "ELAPSED"});
  for (const auto& job : list.jobs()) {
    table.add_row({std::to_string(job.id()), job_state_name(job.state()),
                   std::to_string(job.priority()), or_dash(job.kind()), or_dash(job.name()),
                   or_dash(job.project()), or_dash(job.submitted_by()),
                   fmt::format("{}/{} ({}%)", task_count_in(job, wire::TASK_SUCCEEDED),
                               total_tasks(job), progress_percent(job)),
                   job.started_unix_ms() == 0 ? "-" : format_seconds(job_elapsed_s(job))});
  }
  table.write(out);
}

void write_workers(std::ostream& out, const wire::WorkersReply& workers) {
  Table table({"NAME", "HOST", "SLOTS", "CORES", "MEMORY", "GPUS", "TAGS", "RUNNING", "LAST-BEAT",
               "ALIVE", "STATE", "ISOLATION"});
  for (const auto& worker : workers.workers()) {
    std::vector<std::string> tags(worker.tags().begin(), worker.tags().end());
    std::vector<std::string> running;
    for (const auto& task : worker.running()) {
      running.push_back(fmt::format("{}/{}", task.job_id(), task.index()));
    }
    std::string slots = std::to_string(worker.slots());
    if (worker.interactive_slots() > 0) {
      slots += fmt::format(" + {} interactive", worker.interactive_slots());
    }
    // Booked by running tasks' requests / what it has.
    std::string cores = worker.cores() == 0
                            ? std::string("-")
                            : fmt::format("{}/{}", worker.cores_used(), worker.cores());
    std::string memory =
        worker.memory_bytes() == 0
            ? std::string("-")
            : fmt::format("{}/{}",
                          worker.memory_used_bytes() == 0
                              ? std::string("0")
                              : common::format_byte_size(worker.memory_used_bytes()),
                          common::format_byte_size(worker.memory_bytes()));
    std::string gpus = worker.gpus() == 0 ? std::string("-")
                                          : fmt::format("{}/{}", worker.gpus_used(), worker.gpus());
    table.add_row({or_dash(worker.name()), or_dash(worker.host()), slots, cores, memory, gpus,
                   or_dash(join(tags, ",")), or_dash(join(running, ",")),
                   format_seconds(worker.last_beat_s()) + " ago", worker.alive() ? "yes" : "no",
                   worker.control().empty() || worker.control() == "enabled"
                       ? std::string("enabled")
                       : worker.control() + (worker.control_reason().empty()
                                                 ? std::string()
                                                 : ": " + single_line(worker.control_reason())),
                   or_dash(single_line(worker.isolation()))});
  }
  table.write(out);
}

void write_limits(std::ostream& out, const wire::LimitsReply& limits) {
  if (limits.limits().empty()) {
    out << "no limits (set them under `limits:` in the config, or with `farmhand limit set`)\n";
    return;
  }
  Table table({"LIMIT", "IN-USE", "CAPACITY", "WAITING-JOBS"});
  for (const auto& limit : limits.limits()) {
    table.add_row({limit.name(), std::to_string(limit.in_use()),
                   limit.configured() ? std::to_string(limit.capacity()) : "not configured",
                   std::to_string(limit.waiting_jobs())});
  }
  table.write(out);
}

void write_shares(std::ostream& out, const wire::LimitsReply& limits) {
  if (!limits.shares_configured()) {
    out << "no shares configured (set them under `shares:` in the config): jobs of one priority "
           "share slots job by job\n";
    if (limits.shares().empty()) return;
  }
  // TARGET: the part of contended slots a share converges to, among the shares
  // with work now. Projects the config does not name share one default share
  // of weight 1.
  auto active = [](const wire::ShareInfo& share) {
    return share.queued_jobs() > 0 || share.running() > 0;
  };
  uint64_t weights = 0;
  bool default_active = false;
  for (const auto& share : limits.shares()) {
    if (!active(share)) continue;
    if (share.configured()) {
      weights += share.weight();
    } else {
      default_active = true;
    }
  }
  if (default_active) weights += 1;
  auto target = [&](uint64_t weight) {
    return limits.shares_configured() && weights > 0
               ? fmt::format("{:.0f}%",
                             100.0 * static_cast<double>(weight) / static_cast<double>(weights))
               : std::string("-");
  };
  Table table({"PROJECT", "WEIGHT", "RUNNING", "QUEUED-JOBS", "TARGET"});
  for (const auto& share : limits.shares()) {
    if (!share.configured()) continue;
    table.add_row({single_line(share.project()), std::to_string(share.weight()),
                   std::to_string(share.running()), std::to_string(share.queued_jobs()),
                   active(share) ? target(share.weight()) : std::string("-")});
  }
  for (const auto& share : limits.shares()) {
    if (share.configured()) continue;
    table.add_row(
        {share.project().empty() ? std::string("(no project)") : single_line(share.project()),
         limits.shares_configured() ? "default" : "-", std::to_string(share.running()),
         std::to_string(share.queued_jobs()), "-"});
  }
  if (limits.shares_configured() && default_active) {
    table.add_row({"(default share)", "1", "-", "-", target(1)});
  }
  table.write(out);
}

void write_logs(std::ostream& out, const wire::LogsReply& logs) {
  for (const auto& log : logs.logs()) {
    out << fmt::format("== task {} attempt {} on {}: {} ==\n", log.task(), log.attempt(),
                       or_dash(log.worker()),
                       log.running()         ? "running, the log so far"
                       : log.error().empty() ? "ok"
                                             : single_line(log.error()));
    // On a line of its own, so the header line stays what scripts already read.
    if (log.has_stats()) out << "-- used: " << attempt_stats_text(log.stats()) << " --\n";
    out << shown_text(log.text());
    if (!log.text().empty() && log.text().back() != '\n') out << '\n';
  }
}

std::string sequence_line(const common::Sequence& sequence) {
  // File names come from the disk, and any byte but '/' and NUL may be in one.
  const std::string name = single_line(sequence.pattern.name(common::PaddingStyle::kHash));
  if (sequence.is_single_file()) return name;
  std::string line = fmt::format("{}  {}  ({} frame{})", name, sequence.frames.to_string(),
                                 sequence.count(), sequence.count() == 1 ? "" : "s");
  if (sequence.missing && !sequence.missing->empty()) {
    line += "  missing " + sequence.missing->to_string();
  } else if (!sequence.missing) {
    line += fmt::format("  missing {} frames", sequence.missing_count());
  }
  return line;
}

void write_sequences(std::ostream& out, const std::vector<common::Sequence>& sequences) {
  for (const auto& sequence : sequences) out << sequence_line(sequence) << '\n';
}

FrameProgress frame_progress(const wire::StatusReply& status) {
  const auto& job = status.job();
  FrameProgress p{job.frames_succeeded(), job.frames_total()};
  for (const auto& task : status.running()) p.done += task.progress_done();
  p.done = std::min(p.done, p.total);
  return p;
}

std::string progress_bar_line(const wire::StatusReply& status, double elapsed_s, double eta_s) {
  const auto& job = status.job();
  const uint64_t total = total_tasks(job);
  const uint64_t done = task_count_in(job, wire::TASK_SUCCEEDED);
  const FrameProgress frames = frame_progress(status);
  // By frames where the job has them, so that long tasks move the bar too.
  const int percent = frames.total > 0
                          ? static_cast<int>(static_cast<long double>(frames.done) * 100 /
                                             static_cast<long double>(frames.total))
                          : progress_percent(job);
  const int filled = std::clamp(percent, 0, 100) * kBarWidth / 100;
  // "failed" on the bar counts tasks that failed an attempt and those out of attempts.
  const uint64_t failed =
      task_count_in(job, wire::TASK_FAILED) + task_count_in(job, wire::TASK_DEAD);
  std::string line = fmt::format("[{}{}] {}% ", std::string(filled, '#'),
                                 std::string(kBarWidth - filled, '.'), percent);
  if (frames.total > 0) line += fmt::format("{}/{} frames, ", frames.done, frames.total);
  line += fmt::format("tasks {}/{} running {} failed {}  elapsed {}", done, total,
                      task_count_in(job, wire::TASK_RUNNING), failed, format_seconds(elapsed_s));
  if (eta_s >= 0) line += " eta " + format_seconds(eta_s);
  return line + fmt::format("  job {} {}", job.id(), job_state_name(job.state()));
}

std::string progress_plain_line(const wire::JobSummary& job) {
  return fmt::format("job {} {} succeeded={}/{} running={} dead={}", job.id(),
                     job_state_name(job.state()), task_count_in(job, wire::TASK_SUCCEEDED),
                     total_tasks(job), task_count_in(job, wire::TASK_RUNNING),
                     task_count_in(job, wire::TASK_DEAD));
}

std::string last_error_text(const wire::StatusReply& status) {
  if (status.last_errors().empty()) return "";
  const auto& task = status.last_errors(0);
  return fmt::format("task {} (frames {}, {} attempts): {}", task.index(), or_dash(task.frames()),
                     task.attempts(), or_dash(task.error()));
}

}  // namespace farmhand::cli
