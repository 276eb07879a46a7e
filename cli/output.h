// Output of the `farmhand` command: wire messages as JSON and as text for people.
//
// JSON mapping is written by hand rather than with protobuf's JsonUtil, which
// renders 64-bit integers as strings: here every number is a JSON number, keys are
// the proto's snake_case field names and states are lower-case words ("queued",
// "dead"). Task counts are normalised to those words and every state is present,
// so `jq .job.counts.dead` is 0 rather than null.
//
// Pure functions of their arguments, except the write_* helpers, which only write
// to the stream they are given.
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "farmhand.pb.h"
#include <nlohmann/json.hpp>

#include "common/sequence.h"

namespace farmhand::cli {

// Insertion-ordered, so objects read in the order the fields are listed.
using Json = nlohmann::ordered_json;

// ---------------------------------------------------------------- states

// "queued", "running", ...; "unspecified" for 0 or unknown values.
std::string job_state_name(wire::JobState state);
std::string task_state_name(wire::TaskState state);

// Every state a user can name, in lifecycle order.
const std::vector<std::string>& job_state_names();
const std::vector<std::string>& task_state_names();

// Inverse of the *_name functions (lower case only); nullopt when unknown.
std::optional<wire::JobState> job_state_from_name(std::string_view name);
std::optional<wire::TaskState> task_state_from_name(std::string_view name);

bool job_state_is_final(wire::JobState state);

// ---------------------------------------------------------------- progress

// How many of a job's tasks are in `state`. The counts map is keyed by state name;
// "TASK_DEAD" and "dead" are both accepted.
uint64_t task_count_in(const wire::JobSummary& job, wire::TaskState state);

// task_count, or the sum of the counts when the broker left it 0.
uint64_t total_tasks(const wire::JobSummary& job);

// Succeeded tasks as a whole percentage of all tasks, rounded down, so 100 means done.
int progress_percent(const wire::JobSummary& job);

// ---------------------------------------------------------------- JSON

Json to_json(const wire::TaskInfo& task);
Json to_json(const wire::JobSummary& job);
Json to_json(const wire::StatusReply& status);
Json to_json(const wire::WorkerInfo& worker);
Json to_json(const wire::LimitInfo& limit);
Json to_json(const wire::ShareInfo& share);
Json to_json(const wire::TaskLog& log);
// {wall_s, cpu_user_s, cpu_system_s, cpu_s, peak_rss_bytes, exit_code, exit_signal}; an
// unknown peak, exit code or signal is null.
Json to_json(const wire::AttemptStats& stats);
// {cpu_s, cpu_hours, peak_rss_bytes, attempts}.
Json to_json(const wire::JobUsage& usage);
// `admin health --json`: every job and task state present, zeros included.
Json to_json(const wire::HealthReply& health);

// `seq ls --json`: {dir, pattern, frames, first, last, count, missing, missing_count, padding}.
// A single file has padding 0, count 0, empty frames and missing, and null first and last;
// missing is null when there are too many missing frames to list (missing_count still counts).
Json to_json(const common::Sequence& sequence);

// Indented text; invalid UTF-8 (from task logs) is replaced, never thrown on.
std::string dump_json(const Json& json);

// ---------------------------------------------------------------- text

// User text (names, labels, meta, paths, worker names, event ids, reasons) as
// shown on one line: control characters, escape sequences and bytes that are
// not UTF-8 escaped as \xNN (common::printable, never cut), so table cells,
// headers and error lines stay one line and a value cannot drive the terminal.
// The JSON output needs none of this: its encoder escapes them.
std::string single_line(std::string_view text);

// Multi-line user text (a task's log) as shown: line feeds and tabs kept,
// everything else single_line() escapes escaped (CR, ESC, ...).
std::string shown_text(std::string_view text);

// Columns separated by two spaces, each as wide as its widest cell; the last
// column is not padded.
class Table {
 public:
  explicit Table(std::vector<std::string> header) { rows_.push_back(std::move(header)); }

  void add_row(std::vector<std::string> row) { rows_.push_back(std::move(row)); }

  void write(std::ostream& out, std::string_view indent = "") const;

 private:
  std::vector<std::vector<std::string>> rows_;
};

// "12.3s", "5m03s", "2h05m".
std::string format_seconds(double seconds);

// "512 B", "210.3 MiB", "1.5 GiB"; "-" for 0 (unknown).
std::string format_bytes(uint64_t bytes);

// How an attempt's last process ended: "0", "3", "SIGKILL"; "-" when unknown.
std::string exit_text(const wire::AttemptStats& stats);

// "wall 1.2s cpu 0.8s peak 210.3 MiB exit 0".
std::string attempt_stats_text(const wire::AttemptStats& stats);

// `status`'s totals line: "usage: cpu 1m03s (0.02 CPU hours) over 3 attempts, largest peak
// 210.3 MiB"; "" when no attempt reported its use.
std::string usage_text(const wire::JobSummary& job);

// `status`'s times line: "started 2026-12-06 10:17:31, finished 2026-12-06 10:19:02: ran
// 1m31s (queued 0.4s)", "started ..., running for 12.0s (queued 0.4s)", "not started yet
// (queued 3.1s)".
std::string times_text(const wire::JobSummary& job);

// Non-zero task counts in lifecycle order: "queued=3 running=2 succeeded=5".
std::string counts_text(const wire::JobSummary& job);

// The `status` report: job line, counts, progress, running tasks, last errors
// and, with `with_tasks`, the requested page of tasks.
void write_status(std::ostream& out, const wire::StatusReply& status, bool with_tasks);

// One row per job: ID STATE PRIO KIND NAME DONE/TOTAL.
void write_jobs(std::ostream& out, const wire::ListReply& list);

void write_workers(std::ostream& out, const wire::WorkersReply& workers);
void write_limits(std::ostream& out, const wire::LimitsReply& limits);
// The projects' fair shares: weight, running tasks, queued jobs, target part.
void write_shares(std::ostream& out, const wire::LimitsReply& limits);

// `admin health`: "healthy: ..." or "unhealthy: <problem>", then uptime, job and
// task counts, workers, held status requests.
void write_health(std::ostream& out, const wire::HealthReply& health);

// Why the broker is unhealthy, one line ("state store write failed: ...; writes
// are refused and dispatch is stopped, retrying"); "" when it is healthy.
std::string health_problem(const wire::HealthReply& health);

// Each log as "== task N attempt A on WORKER: <error or ok> ==", then what the attempt
// used when known ("-- used: wall 1.2s cpu 0.8s peak 210.3 MiB exit 0 --"), then its text.
void write_logs(std::ostream& out, const wire::LogsReply& logs);

// One `seq ls` line, like lsseq: "sh010.####.exr  1001-1100  (96 frames)  missing 1012,1050-1052";
// a single file is just its name.
std::string sequence_line(const common::Sequence& sequence);

// sequence_line() for each, one a line.
void write_sequences(std::ostream& out, const std::vector<common::Sequence>& sequences);

// Frames done of a job: those of its succeeded tasks plus what its running
// tasks report (a one-task movie moves frame by frame); total 0 for a job
// without frames.
struct FrameProgress {
  uint64_t done = 0;
  uint64_t total = 0;
};

FrameProgress frame_progress(const wire::StatusReply& status);

// `watch` on a terminal: "[#####.....] 45% 108/240 frames, tasks 0/1 running 1 failed 0
// elapsed 12.0s eta 14.6s  job 7 running". `eta_s` < 0: not known yet.
std::string progress_bar_line(const wire::StatusReply& status, double elapsed_s, double eta_s);

// `watch` into a pipe or file: "job 7 running succeeded=450/1000 running=2 dead=0".
std::string progress_plain_line(const wire::JobSummary& job);

// The most recent error of a job, "task 12 (frames 120-129, 3 attempts): missing
// frame 125"; empty when there is none.
std::string last_error_text(const wire::StatusReply& status);

}  // namespace farmhand::cli
