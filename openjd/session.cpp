#include "openjd/session.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <string_view>
#include <utility>

#include "openjd/format_string.h"
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace farmhand::openjd {

namespace {

using Clock = std::chrono::steady_clock;
using Symbols = std::map<std::string, std::string>;

// Environment actions' notify period when the template gives none, and
// onExit's timeout (Template Schemas 5 and 5.3.2).
constexpr auto kTaskNotifyPeriod = std::chrono::seconds(120);
constexpr auto kEnvironmentNotifyPeriod = std::chrono::seconds(30);
constexpr auto kExitTimeout = std::chrono::seconds(300);
// A line longer than this is passed on in pieces: an action that prints
// megabytes without a newline must not grow the buffer without bound.
constexpr size_t kMaxLineBytes = 1 << 20;

std::string errno_text(int err) {
  return std::strerror(err);
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// A positive whole number of seconds, as a template writes it (a number, or a
// FEATURE_BUNDLE_1 format string resolving to one).
Result<std::chrono::seconds> seconds_value(const std::string& written, const Symbols& symbols,
                                           const std::string& field) {
  Result<std::string> text = resolve_format_string(written, symbols);
  if (!text) return fail(ErrorCode::kInvalidArgument, field + ": " + text.error().reason);
  const std::string_view digits = trim(*text);
  int64_t value = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (ec != std::errc() || end != digits.data() + digits.size() || value <= 0) {
    return fail(ErrorCode::kInvalidArgument,
                field + ": " + printable(*text) + " is not a positive integer");
  }
  return std::chrono::seconds(value);
}

std::string signal_text(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return abbrev != nullptr ? std::string("SIG") + abbrev : "signal " + std::to_string(sig);
}

// Where `program` is run from: as given when it names a path, else the first
// executable regular file of that name on `path` (relative entries, and the
// empty one, count from the working directory, as the child sees them).
std::optional<std::string> find_program(const std::string& program, std::string_view path,
                                        const std::string& working_dir) {
  if (program.find('/') != std::string::npos) return program;
  for (;;) {
    const size_t colon = path.find(':');
    std::string dir(path.substr(0, colon));
    if (dir.empty() || dir.front() != '/') dir = working_dir + (dir.empty() ? "" : "/" + dir);
    const std::string candidate = dir + "/" + program;

    struct stat st {};

    if (stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
    if (colon == std::string_view::npos) return std::nullopt;
    path.remove_prefix(colon + 1);
  }
}

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// `data` with the line endings `end_of_line` asks for (FEATURE_BUNDLE_1):
// AUTO is this host's, LF; without the field the data is written as given.
std::string with_line_endings(std::string data, const std::optional<std::string>& end_of_line) {
  if (!end_of_line) return data;
  std::string lf;
  lf.reserve(data.size());
  for (size_t i = 0; i < data.size(); ++i) {
    if (data[i] == '\r' && i + 1 < data.size() && data[i + 1] == '\n') continue;
    lf += data[i];
  }
  if (*end_of_line != "CRLF") return lf;
  std::string crlf;
  crlf.reserve(lf.size() + lf.size() / 16);
  for (char c : lf) {
    if (c == '\n') crlf += '\r';
    crlf += c;
  }
  return crlf;
}

// Removes `dir` even where an action took away its own write permission.
void remove_tree(const std::string& dir) {
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  if (!ec) return;
  for (auto it = std::filesystem::recursive_directory_iterator(
           dir, std::filesystem::directory_options::skip_permission_denied, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_directory(ec) && !it->is_symlink(ec)) {
      std::filesystem::permissions(it->path(), std::filesystem::perms::owner_all,
                                   std::filesystem::perm_options::add, ec);
    }
  }
  std::filesystem::permissions(dir, std::filesystem::perms::owner_all,
                               std::filesystem::perm_options::add, ec);
  std::filesystem::remove_all(dir, ec);
}

}  // namespace

std::string_view action_result_name(ActionResult result) {
  switch (result) {
    case ActionResult::kSucceeded:
      return "succeeded";
    case ActionResult::kFailed:
      return "failed";
    case ActionResult::kTimedOut:
      return "timed out";
    case ActionResult::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

struct Session::Entered {
  Environment environment;
  // Its variables, then its onEnter's changes (nullopt: unset), applied in order.
  std::vector<std::pair<std::string, std::optional<std::string>>> vars;
  std::map<std::string, std::string> file_paths;  // embedded file name -> path
};

struct Session::ResolvedAction {
  std::vector<std::string> argv;
  std::optional<std::chrono::seconds> timeout;
  CancelationMode mode = CancelationMode::kTerminate;
  std::chrono::milliseconds notify_period{0};
};

struct Session::Running {
  std::string partial;                 // a line not yet ended
  std::optional<std::string> problem;  // a malformed env line: the action fails
};

Session::Session(SessionOptions options)
    : options_(std::move(options)),
      spawner_(options_.spawner != nullptr ? *options_.spawner : common::real_spawner()),
      output_(options_.redacted_env_vars) {
  options_.path_mapping_rules = order_path_mapping_rules(std::move(options_.path_mapping_rules));
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

Session::~Session() {
  if (wake_fd_ >= 0) close(wake_fd_);
  if (!working_dir_.empty()) remove_tree(working_dir_);
}

Result<std::unique_ptr<Session>> Session::create(SessionOptions options) {
  std::unique_ptr<Session> session(new Session(std::move(options)));
  if (session->wake_fd_ < 0) {
    return fail(ErrorCode::kInternal, "cannot make an eventfd: " + errno_text(errno));
  }
  const std::string& root = session->options_.root_dir;
  std::string pattern = (std::filesystem::path(root) / "session-XXXXXX").string();
  // mkdtemp makes it 0700: the session's files are its user's alone.
  if (mkdtemp(pattern.data()) == nullptr) {
    return fail(ErrorCode::kIo,
                "cannot make a session directory in " + printable(root) + ": " + errno_text(errno));
  }
  session->working_dir_ = pattern;
  session->files_dir_ = pattern + "/embedded_files";
  if (mkdir(session->files_dir_.c_str(), 0700) != 0) {
    return fail(ErrorCode::kIo,
                "cannot make " + printable(session->files_dir_) + ": " + errno_text(errno));
  }
  session->path_mapping_file_ = pattern + "/path_mapping.json";
  const int fd = open(session->path_mapping_file_.c_str(),
                      O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  const bool written =
      fd >= 0 && write_all(fd, path_mapping_json(session->options_.path_mapping_rules));
  const int err = errno;
  if (fd >= 0) close(fd);
  if (!written) {
    return fail(ErrorCode::kIo,
                "cannot write " + printable(session->path_mapping_file_) + ": " + errno_text(err));
  }
  return session;
}

Symbols Session::base_symbols() const {
  Symbols symbols;
  symbols["Session.WorkingDirectory"] = working_dir_;
  symbols["Session.HasPathMappingRules"] = options_.path_mapping_rules.empty() ? "false" : "true";
  symbols["Session.PathMappingRulesFile"] = path_mapping_file_;
  for (const auto& [name, parameter] : options_.job_parameters) {
    symbols["RawParam." + name] = parameter.value;
    std::string value = parameter.value;
    if (parameter.type == ParameterType::kPath) {
      value = map_path(options_.path_mapping_rules, value).value_or(value);
    }
    symbols["Param." + name] = std::move(value);
  }
  return symbols;
}

Result<void> Session::write_files(const std::vector<EmbeddedFile>& files, const std::string& prefix,
                                  Symbols& symbols, std::map<std::string, std::string>& paths) {
  // Every path is known before any data is resolved: one file's data may name another.
  for (const EmbeddedFile& file : files) {
    auto known = paths.find(file.name);
    if (known == paths.end()) {
      std::string path;
      if (file.filename) {
        path = files_dir_ + "/" + *file.filename;
      } else {
        // A name of its own, reserved now (mkstemp makes it 0600).
        path = files_dir_ + "/XXXXXX";
        const int fd = mkstemp(path.data());
        if (fd < 0) {
          return fail(ErrorCode::kIo,
                      "cannot make a file in " + printable(files_dir_) + ": " + errno_text(errno));
        }
        close(fd);
      }
      known = paths.emplace(file.name, std::move(path)).first;
    }
    symbols[prefix + "." + file.name] = known->second;
  }
  for (const EmbeddedFile& file : files) {
    Result<std::string> data = resolve_format_string(file.data, symbols);
    if (!data) {
      return fail(ErrorCode::kInvalidArgument,
                  "embedded file " + file.name + ": " + data.error().reason);
    }
    const std::string& path = paths.at(file.name);
    const mode_t mode = file.runnable ? 0700 : 0600;
    // A fresh file each time: an action may have changed the last one's mode.
    if (unlink(path.c_str()) != 0 && errno != ENOENT) {
      return fail(ErrorCode::kIo, "cannot replace " + printable(path) + ": " + errno_text(errno));
    }
    const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
    bool written = fd >= 0 && fchmod(fd, mode) == 0 &&
                   write_all(fd, with_line_endings(std::move(*data), file.end_of_line));
    const int err = errno;
    if (fd >= 0 && close(fd) != 0) written = false;
    if (!written) {
      return fail(ErrorCode::kIo, "cannot write " + printable(path) + ": " + errno_text(err));
    }
  }
  return {};
}

Result<Session::ResolvedAction> Session::resolve_action(
    const Action& action, const Symbols& symbols, std::chrono::seconds notify_default,
    std::optional<std::chrono::seconds> timeout_default) {
  ResolvedAction resolved;
  Result<std::string> command = resolve_format_string(action.command, symbols);
  if (!command) return fail(ErrorCode::kInvalidArgument, "command: " + command.error().reason);
  resolved.argv.push_back(std::move(*command));
  for (size_t i = 0; i < action.args.size(); ++i) {
    Result<std::string> arg = resolve_format_string(action.args[i], symbols);
    if (!arg) {
      return fail(ErrorCode::kInvalidArgument,
                  "args[" + std::to_string(i) + "]: " + arg.error().reason);
    }
    resolved.argv.push_back(std::move(*arg));
  }
  resolved.timeout = timeout_default;
  if (action.timeout_s) {
    Result<std::chrono::seconds> timeout = seconds_value(*action.timeout_s, symbols, "timeout");
    if (!timeout) return fail(timeout.error());
    resolved.timeout = *timeout;
  }
  std::chrono::milliseconds notify = notify_default;
  if (action.cancelation) {
    resolved.mode = action.cancelation->mode;
    if (action.cancelation->notify_period_s) {
      Result<std::chrono::seconds> period = seconds_value(
          *action.cancelation->notify_period_s, symbols, "cancelation.notifyPeriodInSeconds");
      if (!period) return fail(period.error());
      notify = *period;
    }
  }
  resolved.notify_period = std::min(notify, options_.max_notify_period);
  return resolved;
}

std::map<std::string, std::optional<std::string>> Session::action_env() const {
  std::map<std::string, std::optional<std::string>> env;
  for (const auto& [name, value] : options_.env) env[name] = value;
  for (const Entered& entered : entered_) {
    for (const auto& [name, value] : entered.vars) env[name] = value;
  }
  return env;
}

void Session::write_cancel_info(std::chrono::milliseconds notify_period) {
  const auto end = std::chrono::system_clock::now() + notify_period;
  const std::time_t t = std::chrono::system_clock::to_time_t(end);
  std::tm utc{};
  gmtime_r(&t, &utc);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &utc);
  const std::string path = working_dir_ + "/cancel_info.json";
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return;  // best effort: the SIGTERM is the notice that counts
  (void)write_all(fd, std::string("{\"NotifyEnd\": \"") + stamp + "\"}\n");
  close(fd);
}

void Session::handle_line(std::string_view line, Running& running, ActionOutcome& outcome,
                          std::vector<EnvChange>* env_changes) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  OutputLine read = output_.read(line, env_changes != nullptr);
  if (read.progress) outcome.progress = read.progress;
  if (read.status) outcome.status = std::move(read.status);
  if (read.failure) outcome.fail_message = std::move(read.failure);
  if (read.env && env_changes != nullptr) env_changes->push_back(std::move(*read.env));
  if (read.fails_action && !running.problem) running.problem = read.problem;
  if (options_.log) options_.log(read.logged);
  outcome.output.push_back(std::move(read.logged));
  if (outcome.output.size() > 2 * ActionOutcome::kOutputLines) {
    outcome.output.erase(outcome.output.begin(),
                         outcome.output.end() - ActionOutcome::kOutputLines);
  }
}

ActionOutcome Session::run(const ResolvedAction& action, std::vector<EnvChange>* env_changes,
                           bool after_failure) {
  ActionOutcome outcome;
  outcome.argv = action.argv;
  auto refused = [&](ActionResult result, std::string reason) {
    outcome.result = result;
    outcome.reason = std::move(reason);
    failed_ = true;
    return outcome;
  };

  common::SpawnSpec spec;
  std::optional<std::string> path;
  for (auto& [name, value] : action_env()) {
    if (name == "PATH") path = value;
    if (value) {
      spec.env.push_back(name + "=" + *value);
    } else {
      spec.unset_env.push_back(name);
    }
  }
  const char* worker_path = getenv("PATH");
  const std::string search =
      path ? *path : (worker_path != nullptr ? worker_path : std::string("/bin:/usr/bin"));
  std::optional<std::string> program = find_program(action.argv[0], search, working_dir_);
  if (!program) {
    return refused(ActionResult::kFailed,
                   "cannot start '" + action.argv[0] + "': not found on the action's PATH");
  }
  if (options_.allow_program) {
    if (std::optional<std::string> why = options_.allow_program(*program)) {
      return refused(ActionResult::kFailed, "cannot start '" + action.argv[0] + "': " + *why);
    }
  }
  spec.argv = action.argv;
  spec.argv[0] = *program;
  spec.working_dir = working_dir_;
  spec.stdin_fd = common::StdioFd::null();
  spec.new_process_group = true;
  spec.parent_death_signal = SIGKILL;

  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
    return refused(ActionResult::kFailed, "cannot make a pipe: " + errno_text(errno));
  }
  spec.stdout_fd = common::StdioFd::from(pipe_fds[1]);
  spec.stderr_fd = common::StdioFd::from(pipe_fds[1]);

  {
    std::lock_guard lock(mutex_);
    if (failed_ && !after_failure) {
      close(pipe_fds[0]);
      close(pipe_fds[1]);
      outcome.result = ActionResult::kCancelled;
      outcome.reason = "cancelled";
      return outcome;
    }
    cancel_requested_ = false;
    uint64_t drained = 0;
    while (read(wake_fd_, &drained, sizeof drained) > 0) {
    }
    running_ = true;
  }

  struct EndRunning {
    Session* session;

    ~EndRunning() {
      std::lock_guard lock(session->mutex_);
      session->running_ = false;
    }
  } end_running{this};

  Result<pid_t> spawned = spawner_.spawn(spec);
  close(pipe_fds[1]);
  if (!spawned) {
    close(pipe_fds[0]);
    return refused(ActionResult::kFailed, spawned.error().reason);
  }
  const pid_t pid = *spawned;
  const int out_fd = pipe_fds[0];
  fcntl(out_fd, F_SETFL, fcntl(out_fd, F_GETFL) | O_NONBLOCK);
  // Readable once the child has ended (not yet reaped): the group can then be
  // killed before the pid is freed. Without pidfds (Linux < 5.3), poll.
  const int pid_fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));

  const Clock::time_point start = Clock::now();
  std::optional<Clock::time_point> deadline;
  if (action.timeout) deadline = start + *action.timeout;
  std::optional<Clock::time_point> kill_at;
  std::optional<Clock::time_point> drain_until;
  std::optional<ActionResult> kill_result;
  std::string kill_reason;
  std::optional<int> status;
  bool pipe_open = true;
  Running running;

  auto begin_cancel = [&](ActionResult result, std::string reason, CancelationMode mode) {
    if (kill_result || status) return;
    kill_result = result;
    kill_reason = std::move(reason);
    if (mode == CancelationMode::kTerminate) {
      spawner_.signal_group(pid, SIGKILL);
      return;
    }
    write_cancel_info(action.notify_period);
    spawner_.signal_group(pid, SIGTERM);
    kill_at = Clock::now() + action.notify_period;
  };
  auto read_output = [&] {
    char buffer[65536];
    for (;;) {
      const ssize_t n = read(out_fd, buffer, sizeof buffer);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return;  // EAGAIN: nothing more for now
      if (n == 0) {
        pipe_open = false;
        if (!running.partial.empty()) handle_line(running.partial, running, outcome, env_changes);
        running.partial.clear();
        return;
      }
      std::string_view chunk(buffer, static_cast<size_t>(n));
      for (;;) {
        const size_t newline = chunk.find('\n');
        if (newline == std::string_view::npos) {
          running.partial.append(chunk);
          if (running.partial.size() >= kMaxLineBytes) {
            handle_line(running.partial, running, outcome, env_changes);
            running.partial.clear();
          }
          break;
        }
        running.partial.append(chunk.substr(0, newline));
        handle_line(running.partial, running, outcome, env_changes);
        running.partial.clear();
        chunk.remove_prefix(newline + 1);
      }
    }
  };

  for (;;) {
    const Clock::time_point now = Clock::now();
    if (!status) {
      if (running.problem)
        begin_cancel(ActionResult::kFailed, *running.problem, CancelationMode::kTerminate);
      if (deadline && now >= *deadline) {
        begin_cancel(ActionResult::kTimedOut,
                     "timed out after " + std::to_string(action.timeout->count()) + " s",
                     CancelationMode::kTerminate);
      }
      if (kill_at && now >= *kill_at) {
        spawner_.signal_group(pid, SIGKILL);
        kill_at.reset();
      }
    }
    if (status && (!pipe_open || now >= *drain_until)) break;

    std::optional<Clock::time_point> wake_at;
    auto consider = [&](std::optional<Clock::time_point> t) {
      if (t && (!wake_at || *t < *wake_at)) wake_at = t;
    };
    if (!status) {
      if (!kill_result) consider(deadline);
      consider(kill_at);
      if (pid_fd < 0) consider(now + std::chrono::milliseconds(20));
    } else {
      consider(drain_until);
    }
    int timeout_ms = -1;
    if (wake_at) {
      const auto wait = std::chrono::ceil<std::chrono::milliseconds>(*wake_at - now);
      timeout_ms = static_cast<int>(std::clamp<int64_t>(wait.count(), 0, 60'000));
    }
    pollfd fds[3];
    nfds_t count = 0;
    int out_index = -1;
    int pid_index = -1;
    if (pipe_open) {
      out_index = static_cast<int>(count);
      fds[count++] = {out_fd, POLLIN, 0};
    }
    if (!status && pid_fd >= 0) {
      pid_index = static_cast<int>(count);
      fds[count++] = {pid_fd, POLLIN, 0};
    }
    const int wake_index = static_cast<int>(count);
    fds[count++] = {wake_fd_, POLLIN, 0};
    const int ready = poll(fds, count, timeout_ms);
    if (ready < 0 && errno != EINTR) break;  // cannot happen with valid descriptors
    if (ready <= 0) continue;

    if (out_index >= 0 && fds[out_index].revents != 0) read_output();
    if (fds[wake_index].revents != 0) {
      uint64_t ignored = 0;
      while (read(wake_fd_, &ignored, sizeof ignored) > 0) {
      }
      bool requested = false;
      {
        std::lock_guard lock(mutex_);
        requested = std::exchange(cancel_requested_, false);
      }
      if (requested) begin_cancel(ActionResult::kCancelled, "cancelled", action.mode);
    }
    if (!status && (pid_fd < 0 || (pid_index >= 0 && fds[pid_index].revents != 0))) {
      // The leader has ended (a zombie, so its pid and group stay ours): what
      // it left in its group must not outlive it.
      if (pid_fd >= 0) spawner_.signal_group(pid, SIGKILL);
      Result<std::optional<common::Reaped>> reaped = spawner_.try_reap(pid);
      if (!reaped || reaped->has_value()) {
        if (pid_fd < 0) spawner_.signal_group(pid, SIGKILL);
        status = reaped ? (*reaped)->status : 0;
        if (reaped) outcome.usage = (*reaped)->usage;
        drain_until = Clock::now() + options_.output_drain;
        if (!reaped) {
          kill_result = ActionResult::kFailed;
          kill_reason = "lost the exit status of " + action.argv[0];
        }
      }
    }
  }
  if (pipe_open && !running.partial.empty()) {
    handle_line(running.partial, running, outcome, env_changes);
  }
  close(out_fd);
  if (pid_fd >= 0) close(pid_fd);
  if (outcome.output.size() > ActionOutcome::kOutputLines) {
    outcome.output.erase(outcome.output.begin(),
                         outcome.output.end() - ActionOutcome::kOutputLines);
  }

  const int wait_status = status.value_or(0);
  if (WIFEXITED(wait_status)) outcome.exit_code = WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) outcome.signal = WTERMSIG(wait_status);
  if (!kill_result && running.problem) {
    kill_result = ActionResult::kFailed;
    kill_reason = *running.problem;
  }
  if (kill_result) return refused(*kill_result, kill_reason);
  if (outcome.exit_code == 0) return outcome;
  std::string reason;
  if (outcome.fail_message) {
    reason = *outcome.fail_message;
  } else if (outcome.signal != 0) {
    reason = "killed by signal " + signal_text(outcome.signal) + " running " + action.argv[0];
  } else {
    reason =
        "exit code " + std::to_string(outcome.exit_code.value_or(-1)) + " from " + action.argv[0];
  }
  return refused(ActionResult::kFailed, std::move(reason));
}

Result<ActionOutcome> Session::enter(const Environment& environment) {
  const std::string what = "environment " + printable(environment.name);
  if (failed_) return fail(ErrorCode::kUnavailable, "session has failed: not entering " + what);
  entered_.push_back(Entered{environment, {}, {}});
  Entered& entered = entered_.back();
  auto refuse = [&](const Error& error) {
    failed_ = true;
    return fail(error.code, what + ": " + error.reason);
  };

  Symbols symbols = base_symbols();
  if (environment.script) {
    Result<void> written =
        write_files(environment.script->embedded_files, "Env.File", symbols, entered.file_paths);
    if (!written) return refuse(written.error());
  }
  for (const auto& [name, value] : environment.variables) {
    Result<std::string> resolved = resolve_format_string(value, symbols);
    if (!resolved) {
      return refuse(
          Error{ErrorCode::kInvalidArgument, "variables." + name + ": " + resolved.error().reason});
    }
    entered.vars.emplace_back(name, std::move(*resolved));
  }
  if (!environment.script || !environment.script->on_enter) return ActionOutcome{};

  Result<ResolvedAction> action = resolve_action(*environment.script->on_enter, symbols,
                                                 kEnvironmentNotifyPeriod, std::nullopt);
  if (!action) return refuse(action.error());
  std::vector<EnvChange> changes;
  ActionOutcome outcome = run(*action, &changes);
  // Kept even when onEnter failed: its onExit runs with what it set.
  for (EnvChange& change : SessionOutput::settle(changes)) {
    entered.vars.emplace_back(std::move(change.name), std::move(change.value));
  }
  return outcome;
}

Result<ActionOutcome> Session::run_task(const Step& step, const TaskParameters& task) {
  const std::string what = "step " + printable(step.name);
  if (failed_) return fail(ErrorCode::kUnavailable, "session has failed: not running " + what);
  auto refuse = [&](const Error& error) {
    failed_ = true;
    return fail(error.code, what + ": " + error.reason);
  };

  Symbols symbols = base_symbols();
  for (const auto& [name, value] : task) {
    bool is_path = false;
    if (step.parameter_space) {
      for (const TaskParameterDefinition& definition : step.parameter_space->task_parameters) {
        if (definition.name == name) is_path = definition.type == TaskParameterType::kPath;
      }
    }
    symbols["Task.RawParam." + name] = value;
    symbols["Task.Param." + name] =
        is_path ? map_path(options_.path_mapping_rules, value).value_or(value) : value;
  }

  std::map<std::string, std::string> paths;
  Result<ResolvedAction> action = fail(ErrorCode::kInvalidArgument, "no onRun action");
  if (step.script.simple) {
    // FEATURE_BUNDLE_1's sugar (Template Schemas 8): the script becomes an
    // embedded file with the interpreter's extension, given to the
    // interpreter (after /C or -File for cmd and powershell) before the args.
    const SimpleAction& simple = *step.script.simple;
    std::string_view extension = ".py";
    std::vector<std::string> before_file;
    if (simple.interpreter == "bash") {
      extension = ".sh";
    } else if (simple.interpreter == "cmd") {
      extension = ".bat";
      before_file = {"/C"};
    } else if (simple.interpreter == "node") {
      extension = ".js";
    } else if (simple.interpreter == "powershell") {
      extension = ".ps1";
      before_file = {"-File"};
    }
    std::string path = files_dir_ + "/XXXXXX" + std::string(extension);
    const int fd = mkstemps(path.data(), static_cast<int>(extension.size()));
    if (fd < 0) {
      return refuse(Error{ErrorCode::kIo, "cannot make a file in " + printable(files_dir_) + ": " +
                                              errno_text(errno)});
    }
    close(fd);
    // The file's own name is not a value reference templates can use.
    const std::string name = "__" + simple.interpreter + "_script";
    paths[name] = path;
    EmbeddedFile file;
    file.name = name;
    file.data = simple.script;
    Result<void> written = write_files({file}, "Task.File", symbols, paths);
    if (!written) return refuse(written.error());
    Action expanded;
    expanded.command = simple.interpreter;
    expanded.args = simple.args;
    expanded.timeout_s = simple.timeout_s;
    expanded.cancelation = simple.cancelation;
    action = resolve_action(expanded, symbols, kTaskNotifyPeriod, std::nullopt);
    if (action) {
      // The file's path goes in as it is, not through format-string resolution.
      before_file.push_back(path);
      action->argv.insert(action->argv.begin() + 1, before_file.begin(), before_file.end());
    }
  } else {
    Result<void> written = write_files(step.script.embedded_files, "Task.File", symbols, paths);
    if (!written) return refuse(written.error());
    if (step.script.on_run) {
      action = resolve_action(*step.script.on_run, symbols, kTaskNotifyPeriod, std::nullopt);
    }
  }
  if (!action) return refuse(action.error());
  return run(*action, nullptr);
}

Result<ActionOutcome> Session::exit() {
  if (entered_.empty()) return fail(ErrorCode::kInvalidArgument, "no environment to exit");
  Entered& entered = entered_.back();
  const Environment& environment = entered.environment;
  const std::string what = "environment " + printable(environment.name);
  Result<ActionOutcome> outcome = ActionOutcome{};
  if (environment.script && environment.script->on_exit) {
    Symbols symbols = base_symbols();
    Result<void> written =
        write_files(environment.script->embedded_files, "Env.File", symbols, entered.file_paths);
    Result<ResolvedAction> action = fail(ErrorCode::kInternal, "");
    if (written) {
      action = resolve_action(*environment.script->on_exit, symbols, kEnvironmentNotifyPeriod,
                              kExitTimeout);
    } else {
      action = fail(written.error());
    }
    if (action) {
      outcome = run(*action, nullptr, true);
    } else {
      failed_ = true;
      outcome = fail(action.error().code, what + ": " + action.error().reason);
    }
  }
  entered_.pop_back();
  return outcome;
}

std::vector<Result<ActionOutcome>> Session::exit_all() {
  std::vector<Result<ActionOutcome>> outcomes;
  while (!entered_.empty()) outcomes.push_back(exit());
  return outcomes;
}

size_t Session::environments_entered() const {
  return entered_.size();
}

void Session::cancel() {
  std::lock_guard lock(mutex_);
  failed_ = true;
  if (!running_) return;
  cancel_requested_ = true;
  const uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof one);
}

}  // namespace farmhand::openjd
