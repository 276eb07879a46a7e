#include "cli/commands.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <sstream>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "cli/openjd_commands.h"
#include "cli/output.h"
#include "common/byte_size.h"
#include "common/curve.h"
#include "common/frame_set.h"
#include "common/sequence.h"

namespace farmhand::cli {

namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

constexpr const char* kDefaultBroker = "tcp://127.0.0.1:7600";
constexpr double kDefaultTimeoutS = 5;
// A day: long enough for any broker, short enough that the milliseconds fit.
constexpr double kMaxTimeoutS = 86'400;
// watch and --wait long-poll the status request: the broker holds it until the
// job changes (StatusRequest.wait_ms, seen_version), so a change is seen the
// moment it is committed and an idle job costs one request per kLongPoll.
constexpr milliseconds kLongPoll{10'000};
// A broker that does not long-poll (reply without a version) is polled, fast
// at first: a thumbnail is done in ~0.1 s, an hour-long job needs no more
// than four status requests a second.
constexpr milliseconds kFirstPollInterval{5};
constexpr milliseconds kPollInterval{250};

// ---------------------------------------------------------------- errors

void print_error(std::ostream& err, std::string_view reason) {
  err << "farmhand: " << single_line(reason) << '\n' << std::flush;
}

int exit_code_for(const Error& error) {
  // A broker that refuses this client's key cannot be used from here either.
  return error.code == ErrorCode::kUnavailable || error.code == ErrorCode::kPermissionDenied
             ? kExitUnreachable
             : kExitFailed;
}

int report(Context& ctx, const Error& error) {
  print_error(ctx.err, error.reason);
  return exit_code_for(error);
}

void write_json(Context& ctx, const Json& json) {
  ctx.out << dump_json(json) << '\n';
}

// ---------------------------------------------------------------- settings

struct Settings {
  std::string endpoint;
  milliseconds timeout;
  std::optional<common::CurveClientKeys> curve;
};

Result<double> timeout_from_env() {
  const char* text = std::getenv("FARMHAND_TIMEOUT");
  if (text == nullptr || *text == '\0') return kDefaultTimeoutS;
  char* end = nullptr;
  const double seconds = std::strtod(text, &end);
  if (*end != '\0' || !std::isfinite(seconds) || seconds <= 0 || seconds > kMaxTimeoutS) {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("FARMHAND_TIMEOUT '{}' is not a number of seconds in (0, {}]", text,
                            kMaxTimeoutS));
  }
  return seconds;
}

// Why `endpoint` cannot name a broker ("" when it can): tcp://HOST:PORT with a
// port in 1-65535, or ipc://PATH.
std::string endpoint_problem(const std::string& endpoint) {
  if (endpoint.rfind("ipc://", 0) == 0 && endpoint.size() > 6) return "";
  if (endpoint.rfind("tcp://", 0) == 0) {
    const std::string rest = endpoint.substr(6);
    const size_t colon = rest.rfind(':');
    if (colon != std::string::npos && colon > 0) {
      uint32_t port = 0;
      const char* begin = rest.data() + colon + 1;
      const char* end = rest.data() + rest.size();
      auto [ptr, ec] = std::from_chars(begin, end, port);
      if (begin != end && ec == std::errc() && ptr == end && port >= 1 && port <= 65535) return "";
    }
  }
  return "expected tcp://HOST:PORT or ipc://PATH";
}

Result<Settings> resolve(const GlobalOptions& globals) {
  Settings settings;
  settings.endpoint = globals.broker;
  const char* from = "--broker";
  if (settings.endpoint.empty()) {
    const char* env = std::getenv("FARMHAND_BROKER");
    if (env != nullptr && *env != '\0') from = "$FARMHAND_BROKER";
    settings.endpoint = env != nullptr && *env != '\0' ? env : kDefaultBroker;
  }
  if (auto problem = endpoint_problem(settings.endpoint); !problem.empty()) {
    return fail(ErrorCode::kInvalidArgument, fmt::format("bad {} value '{}': {}", from,
                                                         single_line(settings.endpoint), problem));
  }
  double seconds = globals.timeout_s;
  if (seconds <= 0) {
    auto from_env = timeout_from_env();
    if (!from_env) return fail(std::move(from_env.error()));
    seconds = *from_env;
  }
  settings.timeout = milliseconds(std::max<long long>(1, std::llround(seconds * 1000)));
  auto from_env = [](const std::string& given, const char* name) {
    const char* env = std::getenv(name);
    return !given.empty() ? given : std::string(env != nullptr ? env : "");
  };
  auto curve = common::curve_client_keys(from_env(globals.broker_key, "FARMHAND_BROKER_KEY"),
                                         from_env(globals.key_file, "FARMHAND_KEY_FILE"));
  if (!curve) return fail(std::move(curve.error()));
  settings.curve = std::move(*curve);
  return settings;
}

// ---------------------------------------------------------------- option helpers

// `--timeout` names the job's task timeout on submit, so there the reply timeout
// is only `--reply-timeout` (or given before the subcommand).
void add_global_options(CLI::App& cmd, GlobalOptions& globals, bool timeout_taken = false) {
  cmd.add_option("--broker", globals.broker,
                 "broker endpoint (default $FARMHAND_BROKER, else tcp://127.0.0.1:7600)");
  cmd.add_flag("--json", globals.json, "machine-readable JSON output");
  cmd.add_option(
         "--broker-key", globals.broker_key,
         "CurveZMQ: the broker's client public key, or @FILE (default $FARMHAND_BROKER_KEY)")
      ->type_name("KEY|@FILE");
  cmd.add_option("--key-file", globals.key_file,
                 "CurveZMQ: your secret key file (default $FARMHAND_KEY_FILE)")
      ->type_name("FILE");
  cmd.add_option(timeout_taken ? "--reply-timeout" : "--timeout,--reply-timeout", globals.timeout_s,
                 "seconds to wait for the broker (default $FARMHAND_TIMEOUT, else 5)")
      ->type_name("SECONDS")
      ->check(CLI::Range(0.001, kMaxTimeoutS));
}

// A subcommand that runs something: it takes the global options too.
CLI::App* add_leaf(CLI::App& parent, Invocation& inv, const std::string& name,
                   const std::string& description, bool timeout_taken = false) {
  CLI::App* cmd = parent.add_subcommand(name, description);
  add_global_options(*cmd, inv.globals, timeout_taken);
  return cmd;
}

// Binds `run(ctx, *options)` as the command to run when `cmd` is chosen.
template <typename Options, typename Run>
void bind(CLI::App* cmd, Invocation& inv, std::shared_ptr<Options> options, Run run) {
  cmd->callback([&inv, options, run] {
    inv.command = [options, run](Context& ctx) { return run(ctx, *options); };
  });
}

// Whole decimal numbers in [min, max], rewritten in canonical form: CLI11 converts
// with base 0, so "010" would otherwise be 8 and "0x10" 16. Its own range checks
// print the limits of a double, hence these.
template <typename Int>
CLI::Validator whole_number(Int min, Int max = std::numeric_limits<Int>::max()) {
  return CLI::Validator(
      [min, max](std::string& text) -> std::string {
        Int value{};
        const char* end = text.data() + text.size();
        auto [ptr, ec] = std::from_chars(text.data(), end, value);
        if (text.empty() || ec == std::errc::invalid_argument || ptr != end) {
          return fmt::format("'{}' is not a whole number", text);
        }
        if (ec == std::errc::result_out_of_range || value < min || value > max) {
          return fmt::format("{} is not in [{}, {}]", text, min, max);
        }
        text = std::to_string(value);
        return "";
      },
      "");
}

// Sizes as people write them (8G, 512M, 1.5T; binary units), rewritten as bytes.
CLI::Validator byte_size() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        auto bytes = common::parse_byte_size(text);
        if (!bytes) return bytes.error().reason;
        text = std::to_string(*bytes);
        return "";
      },
      "SIZE");
}

// A memory retry factor: 1 to 16, or 0 for none where `zero_ok`.
CLI::Validator retry_factor(bool zero_ok) {
  return CLI::Validator(
      [zero_ok](std::string& text) -> std::string {
        double value = 0;
        const char* end = text.data() + text.size();
        auto [ptr, ec] = std::from_chars(text.data(), end, value);
        if (text.empty() || ec != std::errc() || ptr != end) {
          return fmt::format("'{}' is not a number", text);
        }
        if ((zero_ok && value == 0) || (value >= 1 && value <= 16)) return "";
        return fmt::format("{} is not {}between 1 and 16", text, zero_ok ? "0 or " : "");
      },
      "FACTOR");
}

const CLI::Validator kPositive = whole_number<uint64_t>(1);
const CLI::Validator kNonNegative = whole_number<uint64_t>(0);
const CLI::Validator kPositive32 = whole_number<uint32_t>(1);
const CLI::Validator kNonNegative32 = whole_number<uint32_t>(0);

CLI::Validator key_value_check() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        const auto eq = text.find('=');
        if (eq == std::string::npos || eq == 0) return "expected key=value, got '" + text + "'";
        return "";
      },
      "");
}

// Frame sets are checked here as well as by the broker, so a typo is a usage error
// before anything is sent.
CLI::Validator frame_set_check() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        auto frames = common::FrameSet::parse(text);
        return frames ? "" : frames.error().reason;
      },
      "");
}

const CLI::Validator kNotEmpty(
    [](std::string& text) -> std::string { return text.empty() ? "must not be empty" : ""; }, "");

template <typename Map>
void put_key_values(const std::vector<std::string>& pairs, Map& map) {
  for (const auto& pair : pairs) {
    const auto eq = pair.find('=');
    map[pair.substr(0, eq)] = pair.substr(eq + 1);
  }
}

// ---------------------------------------------------------------- watch

// Columns of the terminal on stdout, asked at each draw so a resize is followed. A
// bar that wrapped would break the \r redraw, which returns to its last row only.
size_t terminal_columns() {
  winsize size{};
  if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 0) return size.ws_col;
  return 80;
}

// Follows a job until it is final, polling status. Returns 0 iff it succeeded.
int follow_job(Context& ctx, uint64_t job_id) {
  wire::StatusRequest request;
  request.set_job_id(job_id);
  const milliseconds timeout = ctx.client.timeout();
  // The broker may restart while we watch: keep asking until it has been silent
  // for the whole timeout since its last reply.
  auto deadline = Clock::now() + timeout;
  milliseconds interval = kFirstPollInterval;
  std::string last_line;
  bool bar_open = false;  // a bar is drawn and its line not yet ended
  // Plain output (a pipe, a log file) gets at most a line a second.
  std::optional<Clock::time_point> last_printed;
  // The ETA's rate: frames (or tasks) done when this watch first saw the job.
  std::optional<std::pair<Clock::time_point, uint64_t>> first_seen;

  uint64_t seen_version = 0;  // the job as last shown; 0: nothing yet

  while (true) {
    const auto remaining = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    request.set_seen_version(seen_version);
    request.set_wait_ms(seen_version != 0 ? static_cast<uint32_t>(kLongPoll.count()) : 0);
    auto status = ctx.client.status(request, std::max(remaining, milliseconds(1)));
    if (!status) {
      Error error = std::move(status.error());
      if (error.code == ErrorCode::kUnavailable) {
        if (seen_version != 0) {
          // A held request that got no answer: the broker may have restarted and
          // forgotten it. Ask afresh, with a whole timeout to answer in.
          seen_version = 0;
          deadline = Clock::now() + timeout;
          continue;
        }
        if (Clock::now() + kPollInterval < deadline) {
          std::this_thread::sleep_for(kPollInterval);
          continue;
        }
        error.reason = ctx.client.unreachable_reason(timeout);
      }
      if (bar_open) ctx.out << '\n' << std::flush;
      return report(ctx, error);
    }
    deadline = Clock::now() + timeout;

    const auto& job = status->job();
    const bool final = job_state_is_final(job.state());
    if (!ctx.json) {
      const FrameProgress frames = frame_progress(*status);
      const uint64_t done =
          frames.total > 0 ? frames.done : task_count_in(job, wire::TASK_SUCCEEDED);
      const uint64_t total = frames.total > 0 ? frames.total : total_tasks(job);
      const auto now = Clock::now();
      if (!first_seen) first_seen = std::make_pair(now, done);
      std::string line;
      if (ctx.tty) {
        const int64_t now_ms = std::chrono::duration_cast<milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count();
        const double elapsed_s =
            job.submitted_unix_ms() > 0
                ? static_cast<double>(now_ms - job.submitted_unix_ms()) / 1000.0
                : 0.0;
        // The rate this watch has seen; unknown until something got done.
        double eta_s = -1;
        const double watched_s = std::chrono::duration<double>(now - first_seen->first).count();
        if (done > first_seen->second && watched_s > 0) {
          const double rate = static_cast<double>(done - first_seen->second) / watched_s;
          eta_s = static_cast<double>(total - std::min(done, total)) / rate;
        }
        line = progress_bar_line(*status, elapsed_s, eta_s);
      } else {
        line = progress_plain_line(job);
        if (frames.total > 0) line += fmt::format(" frames={}/{}", frames.done, frames.total);
      }
      if (ctx.tty && line != last_line) {
        // One column spare: some terminals wrap on writing the last one.
        ctx.out << "\r\33[2K" << line.substr(0, terminal_columns() - 1) << std::flush;
        bar_open = true;
        last_line = std::move(line);
      } else if (!ctx.tty && line != last_line && !final &&
                 (!last_printed || now - *last_printed >= std::chrono::seconds(1))) {
        ctx.out << line << '\n' << std::flush;
        last_printed = now;
        last_line = std::move(line);
      }
    }
    if (!final) {
      const bool changed = status->version() != seen_version;
      seen_version = status->version();
      // An older broker (no version) is polled. So is one that answered a held
      // request without a change: its wait ran out, or it holds too many
      // requests already, and asking again at once would spin.
      if (seen_version == 0 || !changed) {
        std::this_thread::sleep_for(interval);
        interval = std::min(interval * 2, kPollInterval);
      } else {
        interval = kFirstPollInterval;
      }
      continue;
    }

    const std::string last_error =
        job.state() == wire::JOB_FAILED ? last_error_text(*status) : std::string();
    if (ctx.json) {
      write_json(ctx, to_json(*status));
    } else {
      if (bar_open) ctx.out << '\n';
      ctx.out << progress_plain_line(job)
              << (last_error.empty() ? "" : "; last error: " + last_error) << '\n'
              << std::flush;
    }
    if (job.state() == wire::JOB_SUCCEEDED) return kExitOk;
    print_error(ctx.err, fmt::format("job {} {}{}", job_id, job_state_name(job.state()),
                                     last_error.empty() ? "" : ": " + last_error));
    return kExitFailed;
  }
}

// ---------------------------------------------------------------- submit

// Options every submit kind shares.
struct SubmitOptions {
  int32_t priority = 0;
  std::string pool;
  std::vector<uint64_t> after;
  uint64_t after_frames = 0;
  uint32_t max_attempts = 0;
  uint32_t timeout_s = 0;
  std::vector<std::string> labels;
  std::string key;
  std::string name;
  std::string lane;
  std::vector<std::string> limits;
  uint32_t max_running = 0;
  std::string project;
  uint32_t cores = 0;
  uint64_t memory = 0;
  uint32_t gpus = 0;
  double memory_retry_factor = 0;
  bool wait = false;
};

void add_submit_options(CLI::App& cmd, SubmitOptions& o) {
  cmd.add_option("--priority", o.priority, "higher runs first (default 0)")
      ->transform(whole_number<int32_t>(std::numeric_limits<int32_t>::min()));
  cmd.add_option("--pool", o.pool, "run only on workers tagged with this pool");
  cmd.add_option("--after", o.after, "start after this whole job succeeded (repeatable)")
      ->type_name("JOB_ID")
      ->allow_extra_args(false)
      ->transform(kPositive);
  cmd.add_option("--after-frames", o.after_frames,
                 "each task waits for the tasks of this job covering its frames")
      ->type_name("JOB_ID")
      ->transform(kPositive);
  cmd.add_option("--max-attempts", o.max_attempts, "attempts per task (default: broker's)")
      ->transform(kPositive32);
  cmd.add_option("--timeout", o.timeout_s, "seconds a task attempt may run (default: none)")
      ->type_name("SECONDS")
      ->transform(kPositive32);
  cmd.add_option("--label", o.labels, "job label (repeatable)")
      ->type_name("KEY=VALUE")
      ->allow_extra_args(false)
      ->check(key_value_check());
  cmd.add_option("--key", o.key, "idempotency key: a repeated key returns the first job")
      ->type_name("IDEMPOTENCY_KEY")
      ->check(kNotEmpty);
  cmd.add_option("--name", o.name, "display name (default: from kind and template)");
  cmd.add_option("--lane", o.lane,
                 "batch (default) or interactive: media jobs that may use the slots workers "
                 "reserve for short publish work")
      ->check(CLI::IsMember({"batch", "interactive"}));
  cmd.add_option("--limit", o.limits,
                 "each running task holds a token of this limit (repeatable; `farmhand limits`)")
      ->type_name("NAME")
      ->allow_extra_args(false)
      ->check(kNotEmpty);
  cmd.add_option("--max-running", o.max_running, "at most this many tasks of the job run at once")
      ->type_name("N")
      ->transform(kPositive32);
  cmd.add_option("--project", o.project,
                 "the show or project the job is for (default: its `project` label)")
      ->check(kNotEmpty);
  cmd.add_option("--cores", o.cores,
                 "cores each task needs: a worker runs no more tasks than its cores hold")
      ->type_name("N")
      ->transform(kPositive32);
  cmd.add_option("--memory", o.memory,
                 "memory each task needs (8G, 512M): booked on a worker, and enforced there")
      ->type_name("SIZE")
      ->transform(byte_size());
  cmd.add_option("--gpus", o.gpus,
                 "GPUs each task needs: only workers with as many free run it "
                 "(CUDA_VISIBLE_DEVICES names them)")
      ->type_name("N")
      ->transform(kPositive32);
  cmd.add_option("--memory-retry-factor", o.memory_retry_factor,
                 "a task that runs out of memory raises the job's --memory to its peak times "
                 "this (1 to 16)")
      ->transform(retry_factor(false));
  cmd.add_flag("--wait", o.wait, "follow the job like `watch`; exit 0 only if it succeeded");
}

wire::JobSpec base_spec(const SubmitOptions& o, const std::string& kind) {
  wire::JobSpec spec;
  spec.set_kind(kind);
  spec.set_name(o.name);
  spec.set_chunk(1);
  spec.set_priority(o.priority);
  spec.set_pool(o.pool);
  for (uint64_t id : o.after) spec.add_after(id);
  spec.set_after_frames(o.after_frames);
  spec.set_max_attempts(o.max_attempts);
  spec.set_timeout_s(o.timeout_s);
  put_key_values(o.labels, *spec.mutable_labels());
  // Empty: Client::submit generates one, so its resends cannot create a second job.
  spec.set_idempotency_key(o.key);
  spec.set_lane(o.lane);
  for (const std::string& limit : o.limits) spec.add_limits(limit);
  spec.set_max_running(o.max_running);
  spec.set_project(o.project);
  spec.set_cores(o.cores);
  spec.set_memory_bytes(o.memory);
  spec.set_gpus(o.gpus);
  spec.set_memory_retry_factor(o.memory_retry_factor);
  return spec;
}

int run_submit(Context& ctx, const SubmitOptions& o, wire::JobSpec spec) {
  auto reply = ctx.client.submit(std::move(spec));
  if (!reply) return report(ctx, reply.error());
  // Accepted, but it may wait (no worker serves its pool): say so, exit 0 all the same.
  for (const auto& warning : reply->warnings()) {
    ctx.err << "farmhand: warning: " << single_line(warning) << '\n' << std::flush;
  }
  if (reply->segments_job() != 0 && !ctx.json) {
    ctx.err << "farmhand: job " << reply->segments_job() << " encodes the movie in "
            << reply->segments() << " segments; job " << reply->job_id() << " joins them\n"
            << std::flush;
  }
  if (!o.wait || !ctx.json) {
    if (ctx.json) {
      Json out{{"job_id", reply->job_id()},
               {"duplicate", reply->duplicate()},
               {"tasks", reply->task_count()},
               {"warnings",
                std::vector<std::string>(reply->warnings().begin(), reply->warnings().end())}};
      if (reply->segments_job() != 0) {
        out["segments_job"] = reply->segments_job();
        out["segments"] = reply->segments();
      }
      write_json(ctx, out);
    } else {
      ctx.out << reply->job_id() << '\n' << std::flush;
    }
  }
  return o.wait ? follow_job(ctx, reply->job_id()) : kExitOk;
}

struct NoopOptions {
  SubmitOptions common;
  uint64_t tasks = 0;
  std::string frames;
  uint32_t chunk = 1;
  uint32_t chunk_target_s = 0;
};

// --chunk-target: chunks that adapt to a runtime as tasks finish.
CLI::Option* add_chunk_target(CLI::App& cmd, uint32_t& seconds) {
  return cmd
      .add_option("--chunk-target", seconds,
                  "seconds a chunk should take: the chunks not yet started are cut again to it "
                  "as tasks finish (--chunk is the first size)")
      ->type_name("SECONDS")
      ->transform(kPositive32);
}

void add_submit_noop(CLI::App& submit, Invocation& inv) {
  auto o = std::make_shared<NoopOptions>();
  CLI::App* cmd = add_leaf(submit, inv, "noop",
                           "a job whose tasks do nothing (dispatch benchmark, health check)",
                           /*timeout_taken=*/true);
  auto* tasks = cmd->add_option("--tasks", o->tasks, "number of tasks (frames 1-N, chunk 1)")
                    ->transform(kPositive);
  auto* frames =
      cmd->add_option("--frames", o->frames, "frame set instead of --tasks, e.g. 1-100x2")
          ->type_name("FRAMES")
          ->check(frame_set_check());
  auto* chunk = cmd->add_option("--chunk", o->chunk, "frames per task with --frames (default 1)")
                    ->transform(kPositive32);
  auto* target = add_chunk_target(*cmd, o->chunk_target_s);
  tasks->excludes(frames)->excludes(chunk)->excludes(target);
  add_submit_options(*cmd, o->common);
  cmd->callback([&inv, o, tasks, frames] {
    if (tasks->count() == 0 && frames->count() == 0) {
      throw CLI::RequiredError("--tasks or --frames");
    }
    inv.command = [o](Context& ctx) {
      wire::JobSpec spec = base_spec(o->common, "noop");
      if (o->frames.empty()) {
        spec.set_tasks(o->tasks);
      } else {
        spec.set_frames(o->frames);
        spec.set_chunk(o->chunk);
        spec.set_chunk_target_s(o->chunk_target_s);
      }
      return run_submit(ctx, o->common, std::move(spec));
    };
  });
}

struct CommandOptions {
  SubmitOptions common;
  std::string command_template;
  std::string frames;
  uint32_t chunk = 1;
  uint32_t chunk_target_s = 0;
  std::vector<std::string> params;
};

void add_submit_command(CLI::App& submit, Invocation& inv) {
  auto o = std::make_shared<CommandOptions>();
  CLI::App* cmd = add_leaf(submit, inv, "command", "run a command template named in the config",
                           /*timeout_taken=*/true);
  cmd->add_option("TEMPLATE", o->command_template, "command template name")
      ->required()
      ->check(kNotEmpty);
  cmd->add_option("--frames", o->frames, "frame set, e.g. 1-100")
      ->type_name("FRAMES")
      ->required()
      ->check(frame_set_check());
  cmd->add_option("--chunk", o->chunk, "frames per task (default 1)")->transform(kPositive32);
  add_chunk_target(*cmd, o->chunk_target_s);
  cmd->add_option("--param", o->params, "template parameter (repeatable)")
      ->type_name("KEY=VALUE")
      ->allow_extra_args(false)
      ->check(key_value_check());
  add_submit_options(*cmd, o->common);
  bind(cmd, inv, o, [](Context& ctx, const CommandOptions& opts) {
    wire::JobSpec spec = base_spec(opts.common, "command");
    spec.set_command_template(opts.command_template);
    spec.set_frames(opts.frames);
    spec.set_chunk(opts.chunk);
    spec.set_chunk_target_s(opts.chunk_target_s);
    put_key_values(opts.params, *spec.mutable_params());
    return run_submit(ctx, opts.common, std::move(spec));
  });
}

// ---------------------------------------------------------------- openjd submits

struct OpenJdSubmitOptions {
  SubmitOptions common;
  std::string path;
  std::vector<std::string> parameters;
  std::vector<std::string> env_templates;
};

int run_openjd_submit(Context& ctx, const OpenJdSubmitOptions& o) {
  auto source = read_job_source(o.path, o.parameters, o.env_templates);
  if (!source) {
    ctx.err << "farmhand: " << single_line(source.error().reason) << '\n' << std::flush;
    return kExitUsage;
  }
  wire::SubmitOpenJdRequest request;
  wire::OpenJdSource& wire_source = *request.mutable_source();
  wire_source.set_template_(std::move(source->template_text));
  wire_source.set_template_name(o.path == "-" ? "<stdin>" : o.path);
  for (auto& [name, text] : source->env_templates) {
    wire::OpenJdFile& file = *wire_source.add_env_templates();
    file.set_name(name);
    file.set_text(std::move(text));
  }
  for (const auto& [name, value] : source->values) {
    wire::OpenJdParam& param = *wire_source.add_parameters();
    param.set_name(name);
    param.set_value(value);
  }
  wire_source.set_template_dir(source->template_dir);
  wire_source.set_working_dir(source->working_dir);
  *request.mutable_options() = base_spec(o.common, "openjd");
  auto reply = ctx.client.submit_openjd(std::move(request));
  if (!reply) return report(ctx, reply.error());
  for (const auto& warning : reply->warnings()) {
    ctx.err << "farmhand: warning: " << single_line(warning) << '\n' << std::flush;
  }
  if (ctx.json) {
    Json steps = Json::array();
    for (const auto& step : reply->steps()) {
      steps.push_back(
          Json{{"step", step.step()}, {"job_id", step.job_id()}, {"tasks", step.task_count()}});
    }
    write_json(ctx, Json{{"job_name", reply->job_name()},
                         {"duplicate", reply->duplicate()},
                         {"steps", std::move(steps)},
                         {"warnings", std::vector<std::string>(reply->warnings().begin(),
                                                               reply->warnings().end())}});
  } else {
    // One line per step, its job first: `farmhand submit openjd ... | cut -f1`.
    for (const auto& step : reply->steps()) {
      ctx.out << step.job_id() << '\t' << single_line(step.step()) << '\n';
    }
    ctx.out << std::flush;
  }
  if (!o.common.wait) return kExitOk;
  int result = kExitOk;
  for (const auto& step : reply->steps()) {
    if (int code = follow_job(ctx, step.job_id()); code != kExitOk) result = code;
  }
  return result;
}

void add_submit_openjd(CLI::App& submit, Invocation& inv) {
  auto o = std::make_shared<OpenJdSubmitOptions>();
  CLI::App* cmd = add_leaf(submit, inv, "openjd",
                           "an Open Job Description job template: one job per step, each "
                           "after the steps it depends on",
                           /*timeout_taken=*/true);
  cmd->add_option("template", o->path, "the job template (YAML or JSON; - reads stdin)")
      ->required();
  cmd->add_option("-p,--parameter", o->parameters, "a job parameter's value (repeatable)")
      ->type_name("NAME=VALUE")
      ->allow_extra_args(false);
  cmd->add_option("--env-template", o->env_templates,
                  "an environment template the job runs in (repeatable, in order)")
      ->type_name("FILE")
      ->allow_extra_args(false);
  add_submit_options(*cmd, o->common);
  cmd->callback(
      [&inv, o] { inv.command = [o](Context& ctx) { return run_openjd_submit(ctx, *o); }; });
}

// ---------------------------------------------------------------- media submits

// The broker may run on another host with its own working directory: paths go
// over the wire absolute.
std::string absolute(const std::string& path) {
  if (path.empty() || path.front() == '/') return path;
  std::error_code ec;
  auto cwd = std::filesystem::current_path(ec);
  return ec ? path : (cwd / path).lexically_normal().string();
}

struct MediaOptions {
  SubmitOptions common;
  std::string input;
  std::string output;
  std::string frame;
  std::string size;
  std::string resize;
  std::string format;
  uint32_t chunk = 0;
  std::string codec;
  std::string fps;
  std::string crf;
  std::string missing;
  std::string ocio;
  std::string display;
  std::string view;
  std::string look;
  std::string audio;
  std::string audio_offset;
  std::string segments;
  std::string every;
  std::string columns;
  std::string title;
  std::vector<std::string> burn_ins;
  std::vector<std::string> meta;
  bool slate = false;
  std::string font;
  std::string burn_in_size;
  std::string burn_in_colour;
};

int run_media_submit(Context& ctx, const MediaOptions& o, const std::string& kind) {
  wire::JobSpec spec = base_spec(o.common, kind);
  spec.set_chunk(o.chunk);
  auto& params = *spec.mutable_params();
  params["input"] = absolute(o.input);
  params["output"] = absolute(o.output);
  auto put = [&params](const char* key, const std::string& value) {
    if (!value.empty()) params[key] = value;
  };
  put("frame", o.frame);
  put("size", o.size);
  put("resize", o.resize);
  put("format", o.format);
  put("codec", o.codec);
  put("fps", o.fps);
  put("crf", o.crf);
  put("missing", o.missing);
  put("ocio", o.ocio);
  put("display", o.display);
  put("view", o.view);
  put("look", o.look);
  if (!o.audio.empty()) params["audio"] = absolute(o.audio);
  put("audio_offset", o.audio_offset);
  put("segments", o.segments);
  if (!o.burn_ins.empty()) {
    std::string lines;
    for (const std::string& burn : o.burn_ins) lines += (lines.empty() ? "" : "\n") + burn;
    params["burn_in"] = lines;
  }
  if (o.slate) params["slate"] = "true";
  put("burn_in_size", o.burn_in_size);
  put("burn_in_colour", o.burn_in_colour);
  if (!o.font.empty()) params["font"] = absolute(o.font);
  for (const std::string& kv : o.meta) {
    const size_t eq = kv.find('=');
    params["meta." + kv.substr(0, eq)] = eq == std::string::npos ? "" : kv.substr(eq + 1);
  }
  put("every", o.every);
  put("columns", o.columns);
  put("title", o.title);
  return run_submit(ctx, o.common, std::move(spec));
}

CLI::App* add_media_leaf(CLI::App& submit, Invocation& inv, const char* kind, const char* help,
                         MediaOptions& o) {
  CLI::App* cmd = add_leaf(submit, inv, kind, help, /*timeout_taken=*/true);
  cmd->add_option("INPUT", o.input, "image sequence (shot.####.exr, shot.1001-1100#.exr) or file")
      ->required()
      ->check(kNotEmpty);
  cmd->add_option("-o,--output", o.output, "output path or pattern")->required()->check(kNotEmpty);
  cmd->add_option("--ocio", o.ocio, "OpenColorIO config (default: $OCIO, else built-in sRGB)");
  cmd->add_option("--display", o.display,
                  "the OCIO display (default: the config's; web movies: sRGB if it has one)");
  cmd->add_option("--view", o.view, "the OCIO view (default: the display's)");
  cmd->add_option("--look", o.look, "an OCIO look applied before the view");
  return cmd;
}

void add_submit_thumbnail(CLI::App& submit, Invocation& inv) {
  auto o = std::make_shared<MediaOptions>();
  CLI::App* cmd = add_media_leaf(submit, inv, "thumbnail",
                                 "a thumbnail of one frame, as displayed, fitted in --size", *o);
  cmd->add_option("--frame", o->frame, "first, middle (default), last or a frame number");
  cmd->add_option("--size", o->size, "WxH box to fit in, or W (width only); default 256");
  add_submit_options(*cmd, o->common);
  bind(cmd, inv, o, [](Context& ctx, const MediaOptions& opts) {
    return run_media_submit(ctx, opts, "thumbnail");
  });
}

// Burn-ins on movies and proxies: their texts, size, colour, font and values.
void add_burn_in_options(CLI::App& cmd, MediaOptions& o) {
  cmd.add_option(
      "--burn-in", o.burn_ins,
      "[POSITION=]TEXT drawn on every frame or proxy (repeatable): {frame} {timecode} {shot} "
      "{version} {date} ... POSITION: top-left, top, top-right, bottom-left, bottom, "
      "bottom-right");
  cmd.add_option("--burn-in-size", o.burn_in_size,
                 "the burn-ins' font size in pixels (default: a 28th of the height)");
  cmd.add_option("--burn-in-colour", o.burn_in_colour,
                 "the burn-ins' colour: a name or #RRGGBB (default white, on a dark box)");
  cmd.add_option("--meta", o.meta,
                 "k=v: a value for the burn-ins (and a movie's slate; repeatable)")
      ->check(CLI::Validator(
          [](std::string& kv) {
            return kv.find('=') == std::string::npos || kv.front() == '='
                       ? std::string("--meta takes KEY=VALUE")
                       : std::string();
          },
          "KEY=VALUE"));
  cmd.add_option("--font", o.font, "a TrueType font for the burn-ins and slate (DejaVu Sans)");
}

void add_submit_convert(CLI::App& submit, Invocation& inv) {
  auto o = std::make_shared<MediaOptions>();
  CLI::App* cmd =
      add_media_leaf(submit, inv, "convert", "convert frames (proxies): one task per chunk", *o);
  cmd->add_option("--resize", o->resize, "WxH, W (keep aspect) or N%");
  cmd->add_option("--format", o->format, "jpg, png, tif, dpx or exr (default: from -o)");
  cmd->add_option("--chunk", o->chunk, "frames per task (default 10)")->transform(kPositive32);
  add_burn_in_options(*cmd, *o);
  add_submit_options(*cmd, o->common);
  bind(cmd, inv, o, [](Context& ctx, const MediaOptions& opts) {
    return run_media_submit(ctx, opts, "convert");
  });
}

void add_submit_transcode(CLI::App& submit, Invocation& inv) {
  auto o = std::make_shared<MediaOptions>();
  CLI::App* cmd = add_media_leaf(submit, inv, "transcode",
                                 "a review movie (.mov, .mp4, .webm) of a sequence", *o);
  cmd->add_option("--codec", o->codec, "h264 (default), h265, vp9, av1, prores or dnxhr");
  cmd->add_option("--fps", o->fps, "frame rate (default 24)");
  cmd->add_option("--crf", o->crf,
                  "quality: h264/h265 0-51 (default 23/28), vp9/av1 0-63 (default 32/35)");
  cmd->add_option("--missing", o->missing, "missing frames: hold (default), black or fail");
  cmd->add_option("--audio", o->audio,
                  "a sound file (WAV, AIFF, FLAC) muxed beside the pictures, as long as they are");
  cmd->add_option("--audio-offset", o->audio_offset,
                  "frames to delay the sound by (negative: cut its start)");
  cmd->add_option("--segments", o->segments,
                  "encode in N segments of whole GOPs on as many workers, joined into one "
                  "file (default: one task; a movie after --after-frames streams in 30-frame "
                  "segments, one GOP each)");
  add_burn_in_options(*cmd, *o);
  cmd->add_flag("--slate", o->slate, "a slate frame (shot, version, artist, frames, poster) first");
  add_submit_options(*cmd, o->common);
  bind(cmd, inv, o, [](Context& ctx, const MediaOptions& opts) {
    return run_media_submit(ctx, opts, "transcode");
  });
}

void add_submit_contactsheet(CLI::App& submit, Invocation& inv) {
  auto o = std::make_shared<MediaOptions>();
  CLI::App* cmd = add_media_leaf(submit, inv, "contactsheet",
                                 "a grid of labelled thumbnails of a sequence, one image", *o);
  cmd->add_option("--every", o->every, "every Nth frame (default: about 24 cells in all)");
  cmd->add_option("--columns", o->columns, "cells per row (default: about 3:2 overall)");
  cmd->add_option("--size", o->size, "each cell's width, 16-4096 (default 320)");
  cmd->add_option("--title", o->title, "text above the grid (default: the input's file name)");
  add_submit_options(*cmd, o->common);
  bind(cmd, inv, o, [](Context& ctx, const MediaOptions& opts) {
    return run_media_submit(ctx, opts, "contactsheet");
  });
}

// ---------------------------------------------------------------- status, ls, watch

struct StatusOptions {
  uint64_t job_id = 0;
  bool tasks = false;
  uint64_t offset = 0;
  uint32_t limit = 0;
  std::string state;
};

CLI::Option* add_job_id(CLI::App& cmd, uint64_t& job_id) {
  return cmd.add_option("JOB_ID", job_id, "job id")->required()->transform(kPositive);
}

void add_status(CLI::App& app, Invocation& inv) {
  auto o = std::make_shared<StatusOptions>();
  CLI::App* cmd = add_leaf(app, inv, "status", "a job's state, progress, running tasks and errors");
  add_job_id(*cmd, o->job_id);
  cmd->add_flag("--tasks", o->tasks, "also list a page of tasks");
  cmd->add_option("--offset", o->offset, "first task of the page (implies --tasks)")
      ->transform(kNonNegative);
  cmd->add_option("--limit", o->limit, "tasks in the page, default 100 (implies --tasks)")
      ->transform(whole_number<uint32_t>(1, 10'000));
  cmd->add_option("--state", o->state, "only tasks in this state (implies --tasks)")
      ->transform(CLI::IsMember(task_state_names(), CLI::ignore_case));
  bind(cmd, inv, o, [](Context& ctx, const StatusOptions& opts) {
    wire::StatusRequest request;
    request.set_job_id(opts.job_id);
    request.set_tasks(opts.tasks || opts.offset != 0 || opts.limit != 0 || !opts.state.empty());
    request.set_tasks_offset(opts.offset);
    request.set_tasks_limit(opts.limit);
    request.set_tasks_state(
        task_state_from_name(opts.state).value_or(wire::TASK_STATE_UNSPECIFIED));
    auto reply = ctx.client.status(request);
    if (!reply) return report(ctx, reply.error());
    if (ctx.json) {
      write_json(ctx, to_json(*reply));
    } else {
      write_status(ctx.out, *reply, request.tasks());
    }
    return kExitOk;
  });
}

struct ListOptions {
  std::string state;
  uint32_t limit = 0;
  uint64_t offset = 0;
  std::string user;
  bool mine = false;
  std::string project;
  std::vector<std::string> labels;
  std::string name;
  std::string since;
};

// "90s", "15m", "3h", "2d", "1w": seconds; nullopt for anything else.
std::optional<int64_t> age_seconds(const std::string& text) {
  if (text.size() < 2) return std::nullopt;
  int64_t n = 0;
  const char* end = text.data() + text.size() - 1;
  auto [ptr, ec] = std::from_chars(text.data(), end, n);
  if (ec != std::errc() || ptr != end || n < 0 || n > 100'000) return std::nullopt;
  switch (text.back()) {
    case 's':
      return n;
    case 'm':
      return n * 60;
    case 'h':
      return n * 3600;
    case 'd':
      return n * 86'400;
    case 'w':
      return n * 7 * 86'400;
    default:
      return std::nullopt;
  }
}

void add_ls(CLI::App& app, Invocation& inv) {
  auto o = std::make_shared<ListOptions>();
  CLI::App* cmd = add_leaf(app, inv, "ls", "list jobs, newest last; filters combine");
  cmd->add_option("--state", o->state, "only jobs in this state")
      ->transform(CLI::IsMember(job_state_names(), CLI::ignore_case));
  auto* user = cmd->add_option("--user", o->user, "only jobs this user submitted");
  cmd->add_flag("--mine", o->mine, "only jobs you submitted")->excludes(user);
  cmd->add_option("--project", o->project, "only jobs of this project")->check(kNotEmpty);
  cmd->add_option("--label", o->labels, "only jobs with this label (repeatable)")
      ->type_name("KEY=VALUE")
      ->allow_extra_args(false)
      ->check(key_value_check());
  cmd->add_option("--name", o->name, "only jobs whose name contains this (any case)");
  cmd->add_option("--since", o->since, "only jobs submitted in the last AGE: 90s, 15m, 3h, 2d, 1w")
      ->type_name("AGE")
      ->check(CLI::Validator(
          [](std::string& text) -> std::string {
            return age_seconds(text) ? "" : "'" + text + "' is not an age such as 90s, 3h or 2d";
          },
          ""));
  cmd->add_option("--limit", o->limit, "at most this many jobs (default 1000)")
      ->transform(kPositive32);
  cmd->add_option("--offset", o->offset, "skip the newest N matches (the next page)")
      ->type_name("N")
      ->transform(kNonNegative);
  bind(cmd, inv, o, [](Context& ctx, const ListOptions& opts) {
    wire::ListRequest request;
    request.set_state(job_state_from_name(opts.state).value_or(wire::JOB_STATE_UNSPECIFIED));
    request.set_limit(opts.limit);
    request.set_offset(opts.offset);
    request.set_user(opts.mine ? Client::login_name() : opts.user);
    request.set_project(opts.project);
    put_key_values(opts.labels, *request.mutable_labels());
    request.set_name_contains(opts.name);
    if (auto age = age_seconds(opts.since)) {
      const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
      request.set_since_unix_ms(now - *age * 1000);
    }
    auto reply = ctx.client.list(request);
    if (!reply) return report(ctx, reply.error());
    if (reply->next_offset() != 0) {
      ctx.err << fmt::format("farmhand: {} more job{} match; --offset {} shows the next page\n",
                             reply->matched() - reply->next_offset(),
                             reply->matched() - reply->next_offset() == 1 ? "" : "s",
                             reply->next_offset());
    }
    if (ctx.json) {
      Json jobs = Json::array();
      for (const auto& job : reply->jobs()) jobs.push_back(to_json(job));
      write_json(ctx, jobs);
    } else {
      write_jobs(ctx.out, *reply);
    }
    return kExitOk;
  });
}

struct JobOptions {
  uint64_t job_id = 0;
};

void add_watch(CLI::App& app, Invocation& inv) {
  auto o = std::make_shared<JobOptions>();
  CLI::App* cmd =
      add_leaf(app, inv, "watch", "follow a job's progress; exit 0 only if it succeeds");
  add_job_id(*cmd, o->job_id);
  bind(cmd, inv, o,
       [](Context& ctx, const JobOptions& opts) { return follow_job(ctx, opts.job_id); });
}

// ---------------------------------------------------------------- job actions

// An action's idempotency key: each invocation sends a fresh random one (so a
// resend after a lost reply acts once), or the one a script gives.
CLI::Option* add_key_option(CLI::App& cmd, std::string& key) {
  return cmd
      .add_option("--key", key,
                  "idempotency key: a repeat with the same key acts once and gets the first "
                  "reply (default: a fresh random key)")
      ->check(kNotEmpty);
}

struct ActionOptions {
  uint64_t job_id = 0;
  std::string key;
};

void add_action(CLI::App& app, Invocation& inv, const std::string& name,
                wire::JobActionRequest::Action action, const std::string& description) {
  auto o = std::make_shared<ActionOptions>();
  CLI::App* cmd = add_leaf(app, inv, name, description);
  add_job_id(*cmd, o->job_id);
  add_key_option(*cmd, o->key);
  bind(cmd, inv, o, [action](Context& ctx, const ActionOptions& opts) {
    auto reply = ctx.client.act(opts.job_id, action, {}, opts.key);
    if (!reply) return report(ctx, reply.error());
    const std::string state = job_state_name(reply->state());
    if (ctx.json) {
      write_json(ctx, Json{{"job_id", opts.job_id},
                           {"state", state},
                           {"tasks_changed", reply->tasks_changed()}});
    } else {
      ctx.out << fmt::format("job {} {} ({} task{} changed)\n", opts.job_id, state,
                             reply->tasks_changed(), reply->tasks_changed() == 1 ? "" : "s");
    }
    return kExitOk;
  });
}

// `farmhand retry|kill|skip|requeue JOB [--tasks SET | --frames SET | --state S]`.
void add_task_action(CLI::App& app, Invocation& inv, const std::string& name,
                     wire::JobActionRequest::Action action, const std::string& description) {
  struct TaskActionOptions {
    uint64_t job_id = 0;
    std::string tasks;
    std::string frames;
    std::string state;
    bool fail = false;
    std::string key;
  };

  auto o = std::make_shared<TaskActionOptions>();
  CLI::App* cmd = add_leaf(app, inv, name, description);
  add_job_id(*cmd, o->job_id);
  auto* tasks = cmd->add_option("--tasks", o->tasks, "task indices, e.g. 3,7-9 (from 0)")
                    ->type_name("SET")
                    ->check(kNotEmpty);
  auto* frames = cmd->add_option("--frames", o->frames, "the tasks covering these frames")
                     ->type_name("SET")
                     ->check(kNotEmpty)
                     ->excludes(tasks);
  cmd->add_option("--state", o->state, "only tasks in this state")
      ->transform(CLI::IsMember(task_state_names(), CLI::ignore_case))
      ->excludes(tasks)
      ->excludes(frames);
  if (action == wire::JobActionRequest::KILL) {
    cmd->add_flag("--fail", o->fail,
                  "count the stopped attempt as failed (retried after a backoff, or dead)");
  }
  add_key_option(*cmd, o->key);
  const std::string verb = name == "retry"  ? "retried"
                           : name == "kill" ? "killed"
                           : name == "skip" ? "skipped"
                                            : "requeued";
  bind(cmd, inv, o, [action, name, verb](Context& ctx, const TaskActionOptions& opts) {
    const bool selected = !opts.tasks.empty() || !opts.frames.empty() || !opts.state.empty();
    if (!selected &&
        (action == wire::JobActionRequest::KILL || action == wire::JobActionRequest::SKIP)) {
      print_error(ctx.err, fmt::format("{} needs --tasks, --frames or --state", name));
      return kExitUsage;
    }
    wire::JobActionRequest request;
    request.set_job_id(opts.job_id);
    request.set_action(action);
    request.set_tasks(opts.tasks);
    request.set_frames(opts.frames);
    if (!opts.state.empty()) {
      request.set_state(task_state_from_name(opts.state).value_or(wire::TASK_STATE_UNSPECIFIED));
    }
    request.set_fail(opts.fail);
    request.set_idempotency_key(opts.key);
    auto reply = ctx.client.act(std::move(request));
    if (!reply) return report(ctx, reply.error());
    const std::string state = job_state_name(reply->state());
    const uint64_t changed = reply->tasks_changed();
    if (ctx.json) {
      write_json(ctx, Json{{"job_id", opts.job_id}, {"state", state}, {"tasks_changed", changed}});
    } else if (changed == 0) {
      ctx.out << fmt::format("job {} {}: no task matched, nothing {}\n", opts.job_id, state, verb);
    } else {
      ctx.out << fmt::format("job {} {} ({} task{} {})\n", opts.job_id, state, changed,
                             changed == 1 ? "" : "s", verb);
    }
    return kExitOk;
  });
}

// `farmhand job set JOB ...` and `farmhand job unblock JOB [WORKER]`.
void add_job_commands(CLI::App& app, Invocation& inv) {
  CLI::App* job = app.add_subcommand("job", "change a job while it runs");
  job->require_subcommand(1);

  struct SetOptions {
    uint64_t job_id = 0;
    std::optional<int32_t> priority;
    std::optional<uint32_t> max_running;
    std::optional<std::string> pool;
    std::optional<uint32_t> max_attempts;
    std::optional<uint32_t> timeout_s;
    std::vector<std::string> limits;
    bool no_limits = false;
    std::optional<uint32_t> cores;
    std::optional<uint64_t> memory;
    std::optional<uint32_t> gpus;
    std::optional<double> memory_retry_factor;
    std::string key;
  };

  auto o = std::make_shared<SetOptions>();
  CLI::App* set =
      add_leaf(*job, inv, "set", "change a queued or running job; running tasks keep running",
               /*timeout_taken=*/true);
  add_job_id(*set, o->job_id);
  set->add_option("--priority", o->priority, "higher runs first")
      ->transform(whole_number<int32_t>(std::numeric_limits<int32_t>::min()));
  set->add_option("--max-running", o->max_running, "at most this many running tasks (0: no cap)")
      ->type_name("N")
      ->transform(kNonNegative32);
  set->add_option("--pool", o->pool, "run only on workers tagged with this pool (\"\": any)");
  set->add_option("--max-attempts", o->max_attempts, "attempts per task (0: the broker's default)")
      ->transform(kNonNegative32);
  set->add_option("--timeout", o->timeout_s, "seconds a task attempt may run (0: none)")
      ->type_name("SECONDS")
      ->transform(kNonNegative32);
  auto* limit = set->add_option("--limit", o->limits,
                                "the limits each task holds, replacing the job's (repeatable)")
                    ->type_name("NAME")
                    ->allow_extra_args(false)
                    ->check(kNotEmpty);
  set->add_flag("--no-limit", o->no_limits, "the job's tasks hold no limit from now on")
      ->excludes(limit);
  set->add_option("--cores", o->cores, "cores each task needs (0: none)")
      ->type_name("N")
      ->transform(kNonNegative32);
  set->add_option("--memory", o->memory, "memory each task needs (8G, 512M; 0: none)")
      ->type_name("SIZE")
      ->transform(byte_size());
  set->add_option("--gpus", o->gpus, "GPUs each task needs (0: none)")
      ->type_name("N")
      ->transform(kNonNegative32);
  set->add_option("--memory-retry-factor", o->memory_retry_factor,
                  "raise --memory after an out-of-memory failure by this (1 to 16; 0: never)")
      ->transform(retry_factor(true));
  add_key_option(*set, o->key);
  bind(set, inv, o, [](Context& ctx, const SetOptions& opts) {
    wire::JobSetRequest request;
    request.set_job_id(opts.job_id);
    request.set_idempotency_key(opts.key);
    if (opts.priority) request.set_priority(*opts.priority);
    if (opts.max_running) request.set_max_running(*opts.max_running);
    if (opts.pool) request.set_pool(*opts.pool);
    if (opts.max_attempts) request.set_max_attempts(*opts.max_attempts);
    if (opts.timeout_s) request.set_timeout_s(*opts.timeout_s);
    if (!opts.limits.empty() || opts.no_limits) {
      request.set_set_limits(true);
      for (const auto& name : opts.limits) request.add_limits(name);
    }
    if (opts.cores) request.set_cores(*opts.cores);
    if (opts.memory) request.set_memory_bytes(*opts.memory);
    if (opts.gpus) request.set_gpus(*opts.gpus);
    if (opts.memory_retry_factor) request.set_memory_retry_factor(*opts.memory_retry_factor);
    if (!opts.priority && !opts.max_running && !opts.pool && !opts.max_attempts &&
        !opts.timeout_s && !request.set_limits() && !opts.cores && !opts.memory && !opts.gpus &&
        !opts.memory_retry_factor) {
      print_error(ctx.err,
                  "nothing to change: give --priority, --max-running, --pool, --max-attempts, "
                  "--timeout, --limit, --no-limit, --cores, --gpus, --memory or "
                  "--memory-retry-factor");
      return kExitUsage;
    }
    auto reply = ctx.client.job_set(request);
    if (!reply) return report(ctx, reply.error());
    const std::string state = job_state_name(reply->state());
    if (ctx.json) {
      write_json(ctx, Json{{"job_id", opts.job_id}, {"state", state}});
    } else {
      ctx.out << fmt::format("job {} changed ({})\n", opts.job_id, state);
    }
    return kExitOk;
  });

  struct UnblockOptions {
    uint64_t job_id = 0;
    std::string worker;
    std::string key;
  };

  auto u = std::make_shared<UnblockOptions>();
  CLI::App* unblock = add_leaf(*job, inv, "unblock",
                               "let workers blocked for failing the job take its tasks again");
  add_job_id(*unblock, u->job_id);
  unblock->add_option("WORKER", u->worker, "only this worker (default: every blocked worker)");
  add_key_option(*unblock, u->key);
  bind(unblock, inv, u, [](Context& ctx, const UnblockOptions& opts) {
    auto reply =
        ctx.client.act(opts.job_id, wire::JobActionRequest::UNBLOCK, opts.worker, opts.key);
    if (!reply) return report(ctx, reply.error());
    if (ctx.json) {
      write_json(ctx, Json{{"job_id", opts.job_id}, {"unblocked", reply->tasks_changed()}});
    } else {
      ctx.out << fmt::format("job {}: {} worker{} unblocked\n", opts.job_id, reply->tasks_changed(),
                             reply->tasks_changed() == 1 ? "" : "s");
    }
    return kExitOk;
  });
}

// ---------------------------------------------------------------- workers, logs

void add_workers(CLI::App& app, Invocation& inv) {
  struct NoOptions {};

  CLI::App* cmd = add_leaf(app, inv, "workers", "list workers and what they run");
  bind(cmd, inv, std::make_shared<NoOptions>(), [](Context& ctx, const NoOptions&) {
    auto reply = ctx.client.workers();
    if (!reply) return report(ctx, reply.error());
    if (ctx.json) {
      Json workers = Json::array();
      for (const auto& worker : reply->workers()) workers.push_back(to_json(worker));
      write_json(ctx, workers);
    } else {
      write_workers(ctx.out, *reply);
    }
    return kExitOk;
  });
}

void add_worker_control(CLI::App& app, Invocation& inv) {
  struct ControlOptions {
    std::string name;
    std::string reason;
    bool wait = false;
    std::string key;
  };

  CLI::App* worker = app.add_subcommand("worker", "disable, drain or enable a worker");
  worker->require_subcommand(1);

  struct Verb {
    const char* name;
    wire::WorkerControlRequest::Action action;
    const char* help;
  };

  for (const Verb& verb : {
           Verb{"disable", wire::WorkerControlRequest::DISABLE,
                "take no new task on this worker (its running tasks finish); kept across "
                "restarts"},
           Verb{"drain", wire::WorkerControlRequest::DRAIN,
                "as disable, for maintenance: --wait returns once the worker is idle"},
           Verb{"enable", wire::WorkerControlRequest::ENABLE, "let the worker take tasks again"},
       }) {
    auto o = std::make_shared<ControlOptions>();
    CLI::App* cmd = add_leaf(*worker, inv, verb.name, verb.help);
    cmd->add_option("NAME", o->name, "worker name (`farmhand workers`)")
        ->required()
        ->check(kNotEmpty);
    if (verb.action != wire::WorkerControlRequest::ENABLE) {
      cmd->add_option("--reason", o->reason, "why, shown in `farmhand workers`");
    }
    if (verb.action == wire::WorkerControlRequest::DRAIN) {
      cmd->add_flag("--wait", o->wait, "wait until the worker runs nothing, then say so");
    }
    add_key_option(*cmd, o->key);
    const auto action = verb.action;
    bind(cmd, inv, o, [action](Context& ctx, const ControlOptions& opts) {
      auto reply = ctx.client.control_worker(opts.name, action, opts.reason, opts.key);
      if (!reply) return report(ctx, reply.error());
      auto running_on = [&](const wire::WorkersReply& workers) -> std::optional<size_t> {
        for (const auto& w : workers.workers()) {
          if (w.name() == opts.name) return static_cast<size_t>(w.running_size());
        }
        return std::nullopt;  // gone: nothing runs there
      };
      std::optional<size_t> running = running_on(*reply);
      const auto wait_started = std::chrono::steady_clock::now();
      auto interval = std::chrono::milliseconds(50);
      while (opts.wait && running.value_or(0) > 0) {
        std::this_thread::sleep_for(interval);
        interval = std::min(interval * 2, std::chrono::milliseconds(1000));
        auto workers = ctx.client.workers();
        if (!workers) return report(ctx, workers.error());
        running = running_on(*workers);
      }
      if (ctx.json) {
        Json out = Json::array();
        for (const auto& w : reply->workers()) out.push_back(to_json(w));
        write_json(ctx, out);
      } else if (opts.wait) {
        ctx.out << fmt::format(
            "worker {} is drained: it runs nothing and takes no new task (waited {})\n",
            printable(opts.name),
            format_seconds(
                std::chrono::duration<double>(std::chrono::steady_clock::now() - wait_started)
                    .count()));
      } else {
        ctx.out << fmt::format("worker {} {}; {} task(s) running on it\n", printable(opts.name),
                               action == wire::WorkerControlRequest::ENABLE    ? "enabled"
                               : action == wire::WorkerControlRequest::DISABLE ? "disabled"
                                                                               : "draining",
                               running.value_or(0));
      }
      return kExitOk;
    });
  }
}

int show_limits(Context& ctx, const wire::LimitsReply& reply) {
  if (ctx.json) {
    Json limits = Json::array();
    for (const auto& limit : reply.limits()) limits.push_back(to_json(limit));
    write_json(ctx, limits);
  } else {
    write_limits(ctx.out, reply);
  }
  return kExitOk;
}

void add_limits(CLI::App& app, Invocation& inv) {
  struct NoOptions {};

  CLI::App* list =
      add_leaf(app, inv, "limits", "the limits: tokens in use, capacity, waiting jobs");
  bind(list, inv, std::make_shared<NoOptions>(), [](Context& ctx, const NoOptions&) {
    auto reply = ctx.client.limits();
    if (!reply) return report(ctx, reply.error());
    return show_limits(ctx, *reply);
  });

  CLI::App* shares = add_leaf(app, inv, "shares",
                              "fair share: each project's weight, running tasks and queued jobs");
  bind(shares, inv, std::make_shared<NoOptions>(), [](Context& ctx, const NoOptions&) {
    auto reply = ctx.client.limits();
    if (!reply) return report(ctx, reply.error());
    if (ctx.json) {
      Json out = Json::array();
      for (const auto& share : reply->shares()) out.push_back(to_json(share));
      write_json(ctx, Json{{"configured", reply->shares_configured()}, {"shares", out}});
    } else {
      write_shares(ctx.out, *reply);
    }
    return kExitOk;
  });

  struct SetOptions {
    std::string name;
    uint32_t capacity = 0;
    std::string key;
  };

  CLI::App* limit = app.add_subcommand("limit", "change a limit");
  limit->require_subcommand(1);
  auto o = std::make_shared<SetOptions>();
  CLI::App* set = add_leaf(*limit, inv, "set",
                           "set a limit's capacity now (stored: it outlives restarts; 0 stops "
                           "new tasks holding it)");
  set->add_option("NAME", o->name, "limit name")->required()->check(kNotEmpty);
  set->add_option("CAPACITY", o->capacity, "running tasks that may hold it at once")
      ->required()
      ->transform(kNonNegative32);
  add_key_option(*set, o->key);
  bind(set, inv, o, [](Context& ctx, const SetOptions& opts) {
    auto reply = ctx.client.limits(std::make_pair(opts.name, opts.capacity), opts.key);
    if (!reply) return report(ctx, reply.error());
    return show_limits(ctx, *reply);
  });
}

struct LogsOptions {
  uint64_t job_id = 0;
  int64_t task = -1;
};

void add_logs(CLI::App& app, Invocation& inv) {
  auto o = std::make_shared<LogsOptions>();
  CLI::App* cmd = add_leaf(app, inv, "logs", "task logs of a job");
  add_job_id(*cmd, o->job_id);
  cmd->add_option("--task", o->task, "only this task (default: every task with a log)")
      ->type_name("N")
      ->transform(whole_number<int64_t>(0));
  bind(cmd, inv, o, [](Context& ctx, const LogsOptions& opts) {
    std::optional<uint64_t> task;
    if (opts.task >= 0) task = static_cast<uint64_t>(opts.task);
    auto reply = ctx.client.logs(opts.job_id, task);
    if (!reply) return report(ctx, reply.error());
    if (ctx.json) {
      Json logs = Json::array();
      for (const auto& log : reply->logs()) logs.push_back(to_json(log));
      write_json(ctx, logs);
    } else if (reply->logs().empty()) {
      ctx.out << fmt::format("job {} has no task logs\n", opts.job_id);
    } else {
      write_logs(ctx.out, *reply);
    }
    return kExitOk;
  });
}

// ---------------------------------------------------------------- seq

struct SeqListOptions {
  std::vector<std::string> dirs;
};

// Runs locally, like ls: it reads the directories and never asks the broker. A directory that
// cannot be read is reported and the others are still listed; the exit code is then 2 for
// a directory that is not there (a usage error), else 1.
void add_seq(CLI::App& app, Invocation& inv) {
  CLI::App* seq = app.add_subcommand("seq", "image sequences on disk");
  seq->require_subcommand(1);
  auto o = std::make_shared<SeqListOptions>();
  CLI::App* cmd = add_leaf(*seq, inv, "ls",
                           "list image sequences in directories with their frame ranges and "
                           "missing frames (like lsseq); runs locally, no broker needed");
  cmd->add_option("DIR", o->dirs, "directories to list")->required();
  bind(cmd, inv, o, [](Context& ctx, const SeqListOptions& opts) {
    int code = kExitOk;
    Json all = Json::array();
    bool listed = false;
    for (const std::string& dir : opts.dirs) {
      auto found = common::scan_directory(dir);
      if (!found) {
        print_error(ctx.err, found.error().reason);
        // A directory that is not there is the caller's mistake (2); one that
        // cannot be read, a refusal (1). The worst wins.
        code =
            std::max(code, found.error().code == ErrorCode::kNotFound ? kExitUsage : kExitFailed);
        continue;
      }
      if (ctx.json) {
        for (const auto& sequence : *found) all.push_back(to_json(sequence));
        continue;
      }
      // Several directories get a "DIR:" heading each, as ls prints them.
      if (opts.dirs.size() > 1) ctx.out << (listed ? "\n" : "") << single_line(dir) << ":\n";
      write_sequences(ctx.out, *found);
      listed = true;
    }
    if (ctx.json) write_json(ctx, all);
    ctx.out << std::flush;
    return code;
  });
}

// ---------------------------------------------------------------- publish, events, admin

struct PublishOptions {
  std::string path;
  std::vector<std::string> meta;
  std::string event_id;
  bool wait = false;
};

Json to_json(const wire::PublishReply& reply) {
  return Json{
      {"event_id", reply.event_id()},
      {"duplicate", reply.duplicate()},
      {"job_ids", std::vector<uint64_t>(reply.job_ids().begin(), reply.job_ids().end())},
      {"rules", std::vector<std::string>(reply.rules().begin(), reply.rules().end())},
      {"warnings", std::vector<std::string>(reply.warnings().begin(), reply.warnings().end())}};
}

std::string join_ids(const google::protobuf::RepeatedField<uint64_t>& ids) {
  std::string out;
  for (uint64_t id : ids) out += (out.empty() ? "" : " ") + std::to_string(id);
  return out.empty() ? "none" : out;
}

// "12 succeeded, 13 running" when the broker sent the states, else the ids.
std::string jobs_with_states(const wire::EventInfo& e) {
  if (e.job_states_size() != e.job_ids_size()) return join_ids(e.job_ids());
  std::string out;
  for (int i = 0; i < e.job_ids_size(); ++i) {
    out += fmt::format("{}{} {}", i == 0 ? "" : ", ", e.job_ids(i),
                       job_state_name(static_cast<wire::JobState>(e.job_states(i))));
  }
  return out.empty() ? "none" : out;
}

void add_publish(CLI::App& app, Invocation& inv) {
  auto o = std::make_shared<PublishOptions>();
  CLI::App* cmd = add_leaf(app, inv, "publish",
                           "publish a sequence, file or folder: the config's rules make its jobs");
  cmd->add_option("PATH", o->path, "sequence (shot.####.exr), file or directory")
      ->required()
      ->check(kNotEmpty);
  cmd->add_option("--meta", o->meta, "metadata for the rules, e.g. task=comp (repeatable)")
      ->type_name("KEY=VALUE")
      ->allow_extra_args(false)
      ->check(key_value_check());
  cmd->add_option("--event-id", o->event_id,
                  "a repeated id creates nothing new (default: a fresh random id)")
      ->check(kNotEmpty);
  cmd->add_flag("--wait", o->wait, "wait for every job it made; exit 0 only if all succeeded");
  bind(cmd, inv, o, [](Context& ctx, const PublishOptions& opts) {
    wire::PublishRequest request;
    request.set_path(absolute(opts.path));
    put_key_values(opts.meta, *request.mutable_meta());
    request.set_event_id(opts.event_id);
    auto reply = ctx.client.publish(std::move(request));
    if (!reply) return report(ctx, reply.error());
    for (const auto& warning : reply->warnings()) {
      ctx.err << "farmhand: warning: " << single_line(warning) << '\n';
    }
    if (ctx.json && !opts.wait) {
      write_json(ctx, to_json(*reply));
    } else if (!ctx.json) {
      ctx.out << fmt::format("event {}{}: jobs {}\n", single_line(reply->event_id()),
                             reply->duplicate() ? " (duplicate: nothing new)" : "",
                             join_ids(reply->job_ids()))
              << std::flush;
    }
    if (!opts.wait) return kExitOk;
    int code = kExitOk;
    Json jobs = Json::array();
    for (uint64_t id : reply->job_ids()) {
      int job_code = kExitOk;
      if (ctx.json) {
        // One JSON document in all: each job's final status goes inside the reply's.
        std::ostringstream status;
        Context quiet{ctx.client, true, false, status, ctx.err};
        job_code = follow_job(quiet, id);
        Json parsed = Json::parse(status.str(), nullptr, /*allow_exceptions=*/false);
        jobs.push_back(parsed.is_discarded() ? Json{{"job_id", id}} : parsed);
      } else {
        job_code = follow_job(ctx, id);  // each job's final line, as `watch` prints it
      }
      if (job_code != kExitOk) code = job_code;
    }
    if (ctx.json) {
      Json out = to_json(*reply);
      out["jobs"] = std::move(jobs);
      write_json(ctx, out);
    }
    return code;
  });
}

struct EventsOptions {
  uint32_t limit = 0;
  std::string event_id;
};

void add_events(CLI::App& app, Invocation& inv) {
  auto o = std::make_shared<EventsOptions>();
  CLI::App* cmd = add_leaf(app, inv, "events", "publish events, newest first, with their jobs");
  cmd->add_option("--limit", o->limit, "at most this many (default 100)")->transform(kPositive32);
  cmd->add_option("--event-id", o->event_id, "only this event")->check(kNotEmpty);
  bind(cmd, inv, o, [](Context& ctx, const EventsOptions& opts) {
    wire::EventsRequest request;
    request.set_limit(opts.limit);
    request.set_event_id(opts.event_id);
    auto reply = ctx.client.events(request);
    if (!reply) return report(ctx, reply.error());
    if (ctx.json) {
      Json events = Json::array();
      for (const auto& e : reply->events()) {
        Json meta = Json::object();
        for (const auto& [k, v] : e.meta()) meta[k] = v;
        Json states = Json::array();
        for (int s : e.job_states()) {
          states.push_back(job_state_name(static_cast<wire::JobState>(s)));
        }
        events.push_back(
            Json{{"event_id", e.event_id()},
                 {"path", e.path()},
                 {"meta", std::move(meta)},
                 {"source", e.source()},
                 {"received_unix_ms", e.received_unix_ms()},
                 {"job_ids", std::vector<uint64_t>(e.job_ids().begin(), e.job_ids().end())},
                 {"job_states", std::move(states)},
                 {"rules", std::vector<std::string>(e.rules().begin(), e.rules().end())},
                 {"warnings", std::vector<std::string>(e.warnings().begin(), e.warnings().end())}});
      }
      write_json(ctx, events);
      return kExitOk;
    }
    for (const auto& e : reply->events()) {
      std::string meta;
      for (const auto& [k, v] : e.meta()) {
        meta += fmt::format(" {}={}", single_line(k), single_line(v));
      }
      ctx.out << fmt::format("{}  {}  {}  jobs: {}{}\n", single_line(e.event_id()),
                             single_line(e.source()), single_line(e.path()), jobs_with_states(e),
                             meta);
      for (const auto& w : e.warnings()) ctx.out << "    warning: " << single_line(w) << '\n';
    }
    if (reply->events().empty()) ctx.out << "no publish events\n";
    ctx.out << std::flush;
    return kExitOk;
  });
}

Json delivery_json(const wire::HookDeliveryInfo& d) {
  return Json{{"delivery_id", d.delivery_id()},
              {"event", d.event()},
              {"job_id", d.job_id() == 0 ? Json(nullptr) : Json(d.job_id())},
              {"created_unix_ms", d.created_unix_ms()},
              {"attempts", d.attempts()},
              {"next_attempt_unix_ms", d.next_attempt_unix_ms()},
              {"last_error", d.last_error()}};
}

std::string delivery_line(const wire::HookDeliveryInfo& d, int64_t now_ms) {
  return fmt::format(
      "{} {}{} ({} old, {} attempts){}", single_line(d.delivery_id()), single_line(d.event()),
      d.job_id() == 0 ? std::string() : fmt::format(" job {}", d.job_id()),
      format_seconds(static_cast<double>(now_ms - d.created_unix_ms()) / 1000.0), d.attempts(),
      d.last_error().empty() ? std::string() : ": " + single_line(d.last_error()));
}

// `farmhand hooks`: exit 1 when a delivery was given up, so a check can alert on it.
void add_hooks(CLI::App& app, Invocation& inv) {
  struct NoOptions {};

  CLI::App* cmd = add_leaf(app, inv, "hooks",
                           "the webhooks: pending, delivered and failed (given up) deliveries, "
                           "and the oldest pending one with its last error");
  bind(cmd, inv, std::make_shared<NoOptions>(), [](Context& ctx, const NoOptions&) {
    auto reply = ctx.client.hooks();
    if (!reply) return report(ctx, reply.error());
    bool any_failed = false;
    for (const auto& h : reply->hooks()) any_failed = any_failed || h.failed() > 0;
    if (ctx.json) {
      Json hooks = Json::array();
      for (const auto& h : reply->hooks()) {
        hooks.push_back(Json{
            {"name", h.name()},
            {"url", h.url()},
            {"events", std::vector<std::string>(h.events().begin(), h.events().end())},
            {"pending", h.pending()},
            {"delivered", h.delivered()},
            {"failed", h.failed()},
            {"oldest_pending",
             h.has_oldest_pending() ? delivery_json(h.oldest_pending()) : Json(nullptr)},
            {"last_failed", h.has_last_failed() ? delivery_json(h.last_failed()) : Json(nullptr)}});
      }
      write_json(ctx, hooks);
      return any_failed ? kExitFailed : kExitOk;
    }
    if (reply->hooks().empty()) {
      ctx.out << "no hooks (configure them under `hooks:` in the broker's config)\n" << std::flush;
      return kExitOk;
    }
    const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
    for (const auto& h : reply->hooks()) {
      std::string events;
      for (const auto& e : h.events()) events += (events.empty() ? "" : ",") + e;
      ctx.out << fmt::format("{}  {}  events: {}\n  pending {}  delivered {}  failed {}\n",
                             single_line(h.name()), single_line(h.url()), events, h.pending(),
                             h.delivered(), h.failed());
      if (h.has_oldest_pending()) {
        ctx.out << "  oldest pending: " << delivery_line(h.oldest_pending(), now_ms) << '\n';
      }
      if (h.has_last_failed()) {
        ctx.out << "  given up: " << delivery_line(h.last_failed(), now_ms) << '\n';
      }
    }
    ctx.out << std::flush;
    return any_failed ? kExitFailed : kExitOk;
  });
}

// Exit 1 when the broker's state store cannot write: a monitoring check can use it as is.
void add_admin_health(CLI::App& admin, Invocation& inv) {
  struct NoOptions {};

  CLI::App* cmd = add_leaf(admin, inv, "health",
                           "the broker's health: whether its state store writes, uptime, jobs, "
                           "tasks and workers; exit 1 when the store cannot write");
  bind(cmd, inv, std::make_shared<NoOptions>(), [](Context& ctx, const NoOptions&) {
    auto reply = ctx.client.health();
    if (!reply) return report(ctx, reply.error());
    if (ctx.json) {
      write_json(ctx, cli::to_json(*reply));
    } else {
      write_health(ctx.out, *reply);
    }
    if (reply->store_writes()) return kExitOk;
    print_error(ctx.err, health_problem(*reply));
    return kExitFailed;
  });
}

struct BackupOptions {
  std::string path;
  bool force = false;
};

void add_admin(CLI::App& app, Invocation& inv) {
  CLI::App* admin = app.add_subcommand("admin", "administration of the broker");
  admin->require_subcommand(1);
  add_admin_health(*admin, inv);
  auto o = std::make_shared<BackupOptions>();
  CLI::App* cmd = add_leaf(*admin, inv, "backup",
                           "an online, consistent copy of the broker's state (SQLite backup API), "
                           "written by the broker to FILE on its host");
  cmd->add_option("FILE", o->path,
                  "where the copy goes (on the broker's host; under broker.backup_dir or "
                  "broker.allowed_roots, never in the state dir)")
      ->required()
      ->check(kNotEmpty);
  cmd->add_flag("--force", o->force, "replace FILE if it exists");
  bind(cmd, inv, o, [](Context& ctx, const BackupOptions& opts) {
    auto reply = ctx.client.backup(absolute(opts.path), opts.force);
    if (!reply) return report(ctx, reply.error());
    if (ctx.json) {
      write_json(ctx, Json{{"path", absolute(opts.path)},
                           {"bytes", reply->bytes()},
                           {"elapsed_s", reply->elapsed_s()}});
    } else {
      ctx.out << fmt::format("backed up {} bytes to {} in {}\n", reply->bytes(),
                             single_line(absolute(opts.path)), format_seconds(reply->elapsed_s()))
              << std::flush;
    }
    return kExitOk;
  });

  auto k = std::make_shared<BackupOptions>();
  CLI::App* keygen = add_leaf(*admin, inv, "keygen",
                              "make a CurveZMQ key pair: PREFIX.key (secret, 0600) and PREFIX.pub "
                              "(public); needs no broker");
  keygen->add_option("PREFIX", k->path, "e.g. /etc/farmhand/curve/render-07")
      ->required()
      ->check(kNotEmpty);
  bind(keygen, inv, k, [](Context& ctx, const BackupOptions& opts) {
    auto pair = common::write_curve_keypair(opts.path);
    if (!pair) return report(ctx, pair.error());
    if (ctx.json) {
      write_json(ctx, Json{{"public_key", pair->public_key},
                           {"secret_key_file", opts.path + ".key"},
                           {"public_key_file", opts.path + ".pub"}});
    } else {
      ctx.out << fmt::format("wrote {}.key (secret) and {}.pub\npublic key {}\n",
                             single_line(opts.path), single_line(opts.path), pair->public_key)
              << std::flush;
    }
    return kExitOk;
  });
}

}  // namespace

void add_commands(CLI::App& app, Invocation& inv) {
  // Options given after a subcommand that it does not know go to its parent, so
  // `farmhand submit --json noop ...` works as well as `farmhand --json submit ...`.
  app.fallthrough();
  app.require_subcommand(1);
  add_global_options(app, inv.globals);

  CLI::App* submit = app.add_subcommand("submit", "submit a job and print its id");
  submit->require_subcommand(1);
  add_submit_noop(*submit, inv);
  add_submit_command(*submit, inv);
  add_submit_thumbnail(*submit, inv);
  add_submit_convert(*submit, inv);
  add_submit_transcode(*submit, inv);
  add_submit_contactsheet(*submit, inv);
  add_submit_openjd(*submit, inv);

  add_status(app, inv);
  add_ls(app, inv);
  add_watch(app, inv);
  add_action(app, inv, "cancel", wire::JobActionRequest::CANCEL,
             "cancel a job; running tasks are stopped");
  add_task_action(app, inv, "retry", wire::JobActionRequest::RETRY,
                  "run a job's dead, failed and cancelled tasks again (or the selected ones, "
                  "succeeded ones too)");
  add_task_action(app, inv, "kill", wire::JobActionRequest::KILL,
                  "stop running tasks; each runs again as a new attempt (--fail: counted as "
                  "failed)");
  add_task_action(app, inv, "skip", wire::JobActionRequest::SKIP,
                  "mark tasks succeeded without running them; their dependants are released");
  add_task_action(app, inv, "requeue", wire::JobActionRequest::REQUEUE,
                  "run a finished job again (all tasks, or the selected ones), keeping history");
  add_action(app, inv, "pause", wire::JobActionRequest::PAUSE,
             "dispatch no more tasks of a job; running ones finish");
  add_action(app, inv, "resume", wire::JobActionRequest::RESUME, "dispatch a paused job again");
  add_workers(app, inv);
  add_worker_control(app, inv);
  add_job_commands(app, inv);
  add_limits(app, inv);
  add_logs(app, inv);
  add_seq(app, inv);
  add_publish(app, inv);
  add_events(app, inv);
  add_hooks(app, inv);
  add_admin(app, inv);
  add_openjd_commands(app, inv, [&inv](CLI::App& cmd) { add_global_options(cmd, inv.globals); });
}

int run(const Invocation& invocation, std::ostream& out, std::ostream& err, bool tty) {
  if (!invocation.command) {
    print_error(err, "no command given (see farmhand --help)");
    return kExitUsage;
  }
  auto settings = resolve(invocation.globals);
  if (!settings) {
    print_error(err, settings.error().reason);
    return kExitUsage;
  }
  Client client(settings->endpoint, settings->timeout, settings->curve);
  Context ctx{client, invocation.globals.json, tty, out, err};
  return invocation.command(ctx);
}

}  // namespace farmhand::cli
