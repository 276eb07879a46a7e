#include "workers/openjd_runner.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "openjd/path_mapping.h"
#include "openjd/session.h"
#include "openjd/wire_source.h"
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/eventfd.h>
#include <unistd.h>

namespace farmhand::worker {

namespace {

// A status message is cut to this (the broker shows at most as much).
constexpr size_t kMaxStatusBytes = 256;

// The task the broker cut: `chunk` as the step's CHUNK[INT] parameter, the
// others as given, in the step's order; nothing unless the step has a task
// with those other values.
std::optional<openjd::TaskParameters> chunk_task(
    const openjd::CreatedStep& step, const std::string& chunk,
    const google::protobuf::RepeatedPtrField<wire::OpenJdParam>& others) {
  if (!step.chunked_parameter || step.tasks.empty()) return std::nullopt;
  openjd::TaskParameters task;
  for (const auto& [name, value] : step.tasks.front()) {
    if (name == *step.chunked_parameter) {
      task.emplace_back(name, chunk);
      continue;
    }
    auto given = std::find_if(others.begin(), others.end(),
                              [&](const wire::OpenJdParam& p) { return p.name() == name; });
    if (given == others.end()) return std::nullopt;
    task.emplace_back(name, given->value());
  }
  if (static_cast<size_t>(others.size()) + 1 != task.size()) return std::nullopt;
  const bool known = std::any_of(step.tasks.begin(), step.tasks.end(), [&](const auto& row) {
    if (row.size() != task.size()) return false;
    for (size_t i = 0; i < row.size(); ++i) {
      if (row[i].first != task[i].first) return false;
      if (row[i].first != *step.chunked_parameter && row[i].second != task[i].second) return false;
    }
    return true;
  });
  if (!known) return std::nullopt;
  return task;
}

// The file `name` is on `path` (a PATH value), resolved through symlinks.
std::optional<std::string> resolve_on_path(const std::string& name, const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (name.find('/') != std::string::npos) {
    fs::path real = fs::canonical(name, ec);
    return ec ? std::nullopt : std::optional<std::string>(real.string());
  }
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find(':', start);
    if (end == std::string::npos) end = path.size();
    const std::string dir = path.substr(start, end - start);
    start = end + 1;
    if (dir.empty()) continue;
    const fs::path candidate = fs::path(dir) / name;
    if (access(candidate.c_str(), X_OK) == 0 && fs::is_regular_file(candidate, ec)) {
      fs::path real = fs::canonical(candidate, ec);
      if (!ec) return real.string();
    }
  }
  return std::nullopt;
}

std::string worker_path() {
  const char* path = std::getenv("PATH");
  return path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
}

}  // namespace

// Records the process groups sessions start, so that the worker's stray
// reaper leaves their leaders to the session that waits for them. The reaper
// asks under the same mutex a spawn holds, so a leader that ends at once is
// known before anyone can see it end.
class OpenJdRunner::RecordingSpawner : public common::Spawner {
 public:
  Result<pid_t> spawn(const common::SpawnSpec& spec) override {
    std::lock_guard lock(mutex_);
    Result<pid_t> pid = real_.spawn(spec);
    if (pid) groups_.insert(*pid);
    return pid;
  }

  Result<std::optional<int>> try_wait(pid_t pid) override {
    auto status = real_.try_wait(pid);
    forget_if_done(pid, status && !status->has_value());
    return status;
  }

  Result<std::optional<common::Reaped>> try_reap(pid_t pid) override {
    auto reaped = real_.try_reap(pid);
    forget_if_done(pid, reaped && !reaped->has_value());
    return reaped;
  }

  Result<std::optional<common::Reaped>> try_reap_group(pid_t group) override {
    return real_.try_reap_group(group);
  }

  Result<int> wait(pid_t pid) override {
    auto status = real_.wait(pid);
    forget_if_done(pid, false);
    return status;
  }

  void signal(pid_t pid, int sig) override { real_.signal(pid, sig); }

  void signal_group(pid_t leader, int sig) override { real_.signal_group(leader, sig); }

  bool owns(pid_t group) const {
    std::lock_guard lock(mutex_);
    return groups_.count(group) != 0;
  }

 private:
  void forget_if_done(pid_t pid, bool still_running) {
    if (still_running) return;
    std::lock_guard lock(mutex_);
    groups_.erase(pid);
  }

  common::Spawner& real_ = common::real_spawner();
  mutable std::mutex mutex_;
  std::set<pid_t> groups_;
};

// A session and what it has entered.
struct OpenJdRunner::Pooled {
  uint64_t key = 0;    // OpenJdTask.session_key: the submission's first job
  std::string source;  // the serialized OpenJdSource it was made from
  openjd::CreatedJob created;
  std::unique_ptr<openjd::Session> session;
  bool entered = false;  // the job's environments
  std::string step;      // whose environments are entered
  size_t step_environments = 0;
  Clock::time_point idle_since{};
  // Where the session's actions write: the running task's log (or nothing).
  std::shared_ptr<std::mutex> sink_mutex = std::make_shared<std::mutex>();
  std::shared_ptr<std::ofstream> sink;
  std::shared_ptr<std::function<void(const std::string&)>> on_line;
};

struct OpenJdRunner::Running {
  uint64_t id = 0;
  wire::Assign assign;
  std::string log_path;
  Clock::time_point started{};
  Clock::time_point deadline = Clock::time_point::max();
  std::unique_ptr<Pooled> pooled;  // while the thread runs in it
  openjd::Session* session = nullptr;
  std::optional<Error> cancel_reason;
  std::thread thread;
  bool done = false;
};

OpenJdRunner::OpenJdRunner(Options options)
    : options_(std::move(options)),
      wake_fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)),
      spawner_(std::make_unique<RecordingSpawner>()) {}

OpenJdRunner::~OpenJdRunner() {
  {
    std::lock_guard lock(mutex_);
    for (auto& [id, run] : running_) {
      if (run->session != nullptr) run->session->cancel();
    }
  }
  for (auto& [id, run] : running_) {
    if (run->thread.joinable()) run->thread.join();
  }
  for (auto& [job, pooled] : idle_) {
    if (pooled->session) (void)pooled->session->exit_all();
  }
  for (auto& closer : closers_) {
    if (closer.thread.joinable()) closer.thread.join();
  }
  if (wake_fd_ >= 0) close(wake_fd_);
}

void OpenJdRunner::wake() {
  const uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof one);
}

Result<void> OpenJdRunner::start(uint64_t id, const wire::Assign& assign, Clock::time_point now,
                                 const std::string& log_path) {
  const wire::OpenJdTask& task = assign.openjd();
  if (geteuid() == 0 && !task.allow_root()) {
    return fail(ErrorCode::kInvalidArgument,
                "this worker runs as root, and the farm's openjd.allow_root is off: Open Job "
                "Description sessions run only as an ordinary user");
  }
  auto run = std::make_unique<Running>();
  run->id = id;
  run->assign = assign;
  run->log_path = log_path;
  run->started = now;
  if (assign.timeout_s() > 0) run->deadline = now + std::chrono::seconds(assign.timeout_s());
  const uint64_t key = task.session_key() != 0 ? task.session_key() : assign.ref().job_id();
  // The same template and values, and the same environment from the worker
  // (the GPUs it was given): a session is shared only then.
  std::string source = task.source().SerializeAsString();
  const std::map<std::string, std::string> extra_env(assign.env().begin(), assign.env().end());
  for (const auto& [name, value] : extra_env) source += '\0' + name + '=' + value;
  {
    std::lock_guard lock(mutex_);
    // A session of this submission left idle by an earlier task, if any (made
    // from the very same template and values).
    auto [first, last] = idle_.equal_range(key);
    for (auto it = first; it != last; ++it) {
      if (it->second->source != source) continue;
      run->pooled = std::move(it->second);
      idle_.erase(it);
      break;
    }
  }
  if (!run->pooled) {
    auto created =
        openjd::create_job(openjd::job_source(task.source()), /*max_tasks_per_step=*/1'000'000);
    if (!created) {
      return fail(ErrorCode::kInvalidArgument,
                  fmt::format("the job cannot be made on this worker: {}", created.error().reason));
    }
    auto pooled = std::make_unique<Pooled>();
    pooled->key = key;
    pooled->source = source;
    pooled->created = std::move(*created);
    pooled->on_line = std::make_shared<std::function<void(const std::string&)>>();
    openjd::SessionOptions session;
    const std::string root = options_.work_dir + "/openjd";
    std::error_code ec;
    std::filesystem::create_directories(root, ec);
    session.root_dir = root;
    session.job_parameters = pooled->created.job.parameters;
    for (const auto& rule : task.path_mapping()) {
      session.path_mapping_rules.push_back({rule.source_path_format() == "WINDOWS"
                                                ? openjd::PathFormat::kWindows
                                                : openjd::PathFormat::kPosix,
                                            rule.source_path(), rule.destination_path()});
    }
    const auto& names = pooled->created.job_template.extensions.names;
    session.redacted_env_vars =
        std::find(names.begin(), names.end(), "REDACTED_ENV_VARS") != names.end();
    session.env = options_.env;
    session.env["FARMHAND_JOB_ID"] = std::to_string(assign.ref().job_id());
    for (const auto& [name, value] : extra_env) session.env[name] = value;
    if (!task.any_executable()) {
      // What each allowed name is on the worker's own PATH, resolved.
      std::set<std::string> allowed;
      const std::string path = worker_path();
      for (const std::string& name : task.executables()) {
        if (auto real = resolve_on_path(name, path)) allowed.insert(*real);
      }
      session.allow_program = [allowed](const std::string& program) -> std::optional<std::string> {
        std::error_code canon_ec;
        const std::string real = std::filesystem::canonical(program, canon_ec).string();
        if (!canon_ec && allowed.count(real) != 0) return std::nullopt;
        return std::string(
            "not one of the programs this farm lets templates run "
            "(openjd.executables)");
      };
    }
    auto sink_mutex = pooled->sink_mutex;
    auto on_line = pooled->on_line;
    session.log = [sink_mutex, on_line](const std::string& line) {
      std::lock_guard lock(*sink_mutex);
      if (*on_line) (*on_line)(line);
    };
    session.spawner = spawner_.get();
    auto made = openjd::Session::create(std::move(session));
    if (!made) return fail(made.error());
    pooled->session = std::move(*made);
    run->pooled = std::move(pooled);
  }
  Running* raw = run.get();
  {
    std::lock_guard lock(mutex_);
    raw->session = raw->pooled->session.get();
    running_[id] = std::move(run);
  }
  raw->thread = std::thread([this, id] { run_task(id); });
  return {};
}

void OpenJdRunner::run_task(uint64_t id) {
  Running* run = nullptr;
  {
    std::lock_guard lock(mutex_);
    run = running_.at(id).get();
  }
  Pooled& pooled = *run->pooled;
  const wire::Assign& assign = run->assign;
  auto log = std::make_shared<std::ofstream>(run->log_path, std::ios::trunc);
  {
    std::lock_guard lock(*pooled.sink_mutex);
    // The task's latest word: percent done and status message.
    auto latest = std::make_shared<OpenJdProgress>(OpenJdProgress{id, 0, 100, {}});
    *pooled.on_line = [this, log, latest](const std::string& line) {
      *log << line << '\n' << std::flush;
      // openjd_progress: N (percent) and openjd_status: MESSAGE, as the
      // session reports them at the end of their lines.
      constexpr std::string_view kProgress = "openjd_progress:";
      constexpr std::string_view kStatus = "openjd_status:";
      if (line.rfind(kProgress, 0) == 0) {
        const double percent = std::strtod(line.c_str() + kProgress.size(), nullptr);
        if (!(percent >= 0 && percent <= 100)) return;
        latest->done = static_cast<uint64_t>(percent);
      } else if (line.rfind(kStatus, 0) == 0) {
        std::string_view message = std::string_view(line).substr(kStatus.size());
        while (!message.empty() && message.front() == ' ') message.remove_prefix(1);
        latest->status = std::string(message.substr(0, kMaxStatusBytes));
      } else {
        return;
      }
      std::lock_guard progress_lock(mutex_);
      progress_.push_back(*latest);
      wake();
    };
  }
  std::optional<Error> error;
  TaskUsage usage;
  bool ran = false;
  auto failed = [&](const std::string& what, const Result<openjd::ActionOutcome>& outcome) {
    if (outcome) {
      ran = true;
      usage.cpu_user += outcome->usage.user;
      usage.cpu_system += outcome->usage.system;
      usage.peak_rss_bytes = std::max(usage.peak_rss_bytes, outcome->usage.max_rss_bytes);
      usage.exit_code = outcome->exit_code;
      usage.exit_signal = outcome->signal;
    }
    if (!outcome) {
      error =
          Error{ErrorCode::kInvalidArgument, fmt::format("{}: {}", what, outcome.error().reason)};
    } else if (!outcome->succeeded()) {
      error = Error{outcome->result == openjd::ActionResult::kTimedOut ? ErrorCode::kTimeout
                                                                       : ErrorCode::kCrashed,
                    fmt::format("{}: {}", what, outcome->reason)};
    }
    return error.has_value();
  };
  const openjd::Job& job = pooled.created.job;
  const openjd::JobTemplate& tmpl = pooled.created.job_template;
  const auto step_it = std::find_if(tmpl.steps.begin(), tmpl.steps.end(), [&](const auto& s) {
    return s.name == assign.openjd().step();
  });
  const auto created_it = std::find_if(job.steps.begin(), job.steps.end(), [&](const auto& s) {
    return s.name == assign.openjd().step();
  });
  // The task: the broker's cut of the chunked parameter (adaptive chunks), or
  // the step's task of the same index.
  openjd::TaskParameters task;
  const std::string& chunk = assign.openjd().chunk();
  if (step_it == tmpl.steps.end() || created_it == job.steps.end()) {
    error = Error{ErrorCode::kInvalidArgument,
                  fmt::format("the template has no step {}", assign.openjd().step())};
  } else if (!chunk.empty()) {
    if (auto cut = chunk_task(*created_it, chunk, assign.openjd().task_parameters())) {
      task = std::move(*cut);
    } else {
      error = Error{ErrorCode::kInvalidArgument,
                    fmt::format("step {} has no task with chunk {} and those parameters",
                                assign.openjd().step(), chunk)};
    }
  } else if (assign.ref().task() >= created_it->tasks.size()) {
    error = Error{ErrorCode::kInvalidArgument,
                  fmt::format("the template has no task {} of step {}", assign.ref().task(),
                              assign.openjd().step())};
  } else {
    task = created_it->tasks[assign.ref().task()];
  }
  if (!error && !pooled.entered) {
    pooled.entered = true;
    for (const auto& env : pooled.created.environments) {
      if (failed(fmt::format("environment {}", env.environment.name),
                 pooled.session->enter(env.environment))) {
        break;
      }
    }
    if (!error) {
      for (const auto& env : tmpl.job_environments) {
        if (failed(fmt::format("environment {}", env.name), pooled.session->enter(env))) break;
      }
    }
  }
  // Another step of the same job: its environments replace the last step's.
  if (!error && pooled.step != step_it->name) {
    for (; pooled.step_environments > 0 && !error; --pooled.step_environments) {
      failed(fmt::format("step {}'s environment", pooled.step), pooled.session->exit());
    }
    pooled.step = step_it->name;
    for (const auto& env : step_it->step_environments) {
      if (error) break;
      ++pooled.step_environments;  // exited even when its onEnter fails
      failed(fmt::format("environment {}", env.name), pooled.session->enter(env));
    }
  }
  if (!error) {
    failed(fmt::format("step {}", step_it->name), pooled.session->run_task(*step_it, task));
  }
  {
    std::lock_guard lock(*pooled.sink_mutex);
    *pooled.on_line = nullptr;
  }
  std::lock_guard lock(mutex_);
  if (run->cancel_reason) error = run->cancel_reason;
  run->done = true;
  const auto elapsed =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - run->started);
  usage.wall = elapsed;
  ended_.push_back({id, !error.has_value(), error, elapsed,
                    ran ? std::optional<TaskUsage>(usage) : std::nullopt});
  wake();
}

void OpenJdRunner::cancel(uint64_t id) {
  std::lock_guard lock(mutex_);
  auto it = running_.find(id);
  if (it == running_.end() || it->second->done) return;
  if (!it->second->cancel_reason)
    it->second->cancel_reason = Error{ErrorCode::kCancelled, "cancelled"};
  it->second->session->cancel();
}

void OpenJdRunner::close_session(std::unique_ptr<Pooled> pooled) {
  // onExit actions block: on a thread of their own, joined by poll() or at the end.
  auto done = std::make_shared<std::atomic<bool>>(false);
  std::thread thread([pooled = std::shared_ptr<Pooled>(std::move(pooled)), done, this] {
    (void)pooled->session->exit_all();
    done->store(true);
    wake();
  });
  closers_.push_back({std::move(thread), std::move(done)});
}

std::vector<OpenJdOutcome> OpenJdRunner::poll(Clock::time_point now) {
  uint64_t drained = 0;
  while (read(wake_fd_, &drained, sizeof drained) > 0) {
  }
  std::vector<OpenJdOutcome> out;
  std::vector<std::unique_ptr<Running>> finished;
  {
    std::lock_guard lock(mutex_);
    for (auto& [id, run] : running_) {
      if (!run->done && now >= run->deadline && !run->cancel_reason) {
        run->cancel_reason = Error{ErrorCode::kTimeout,
                                   fmt::format("timed out after {} s", run->assign.timeout_s())};
        run->session->cancel();
      }
    }
    out = std::move(ended_);
    ended_.clear();
    for (const OpenJdOutcome& outcome : out) {
      auto it = running_.find(outcome.id);
      if (it == running_.end()) continue;
      finished.push_back(std::move(it->second));
      running_.erase(it);
    }
  }
  for (auto& run : finished) {
    if (run->thread.joinable()) run->thread.join();
    std::unique_ptr<Pooled> pooled = std::move(run->pooled);
    if (pooled->session->failed()) {
      close_session(std::move(pooled));
    } else {
      pooled->idle_since = now;
      std::lock_guard lock(mutex_);
      idle_.emplace(pooled->key, std::move(pooled));
    }
  }
  // Sessions idle too long are closed.
  std::vector<std::unique_ptr<Pooled>> stale;
  {
    std::lock_guard lock(mutex_);
    for (auto it = idle_.begin(); it != idle_.end();) {
      if (now - it->second->idle_since >= options_.idle_session) {
        stale.push_back(std::move(it->second));
        it = idle_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& pooled : stale) close_session(std::move(pooled));
  // A finished thread keeps its stack until joined: a worker that runs for
  // weeks closes many sessions.
  std::erase_if(closers_, [](Closer& closer) {
    if (!closer.done->load()) return false;
    closer.thread.join();
    return true;
  });
  return out;
}

std::vector<OpenJdProgress> OpenJdRunner::take_progress() {
  std::lock_guard lock(mutex_);
  return std::exchange(progress_, {});
}

std::optional<OpenJdRunner::Clock::time_point> OpenJdRunner::next_deadline() const {
  std::lock_guard lock(mutex_);
  std::optional<Clock::time_point> next;
  for (const auto& [id, run] : running_) {
    if (run->deadline != Clock::time_point::max()) {
      next = next ? std::min(*next, run->deadline) : run->deadline;
    }
  }
  for (const auto& [job, pooled] : idle_) {
    const auto at = pooled->idle_since + options_.idle_session;
    next = next ? std::min(*next, at) : at;
  }
  return next;
}

size_t OpenJdRunner::running() const {
  std::lock_guard lock(mutex_);
  return running_.size();
}

size_t OpenJdRunner::idle_sessions() const {
  std::lock_guard lock(mutex_);
  return idle_.size();
}

bool OpenJdRunner::owns_group(pid_t pgid) const {
  return spawner_->owns(pgid);
}

}  // namespace farmhand::worker
