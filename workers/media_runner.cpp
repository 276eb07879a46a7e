#include "workers/media_runner.h"

#include <algorithm>
#include <cstring>

#include "media.pb.h"
#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/logging.h"

namespace farmhand::worker {

namespace {

// Events are small (paths and counters); anything bigger is a broken child.
constexpr size_t kMaxEventBytes = 1 << 20;

std::string basename_of(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::chrono::microseconds minus_floor0(std::chrono::microseconds a, std::chrono::microseconds b) {
  return a > b ? a - b : std::chrono::microseconds(0);
}

}  // namespace

MediaRunner::MediaRunner(Options options, common::Spawner& spawner)
    : options_(std::move(options)), spawner_(spawner) {}

MediaRunner::~MediaRunner() {
  for (auto& child : children_) {
    if (child->pid > 0) kill_and_reap(*child);
    if (child->fd >= 0) close(child->fd);
    close_log(*child);
  }
}

void MediaRunner::kill_and_reap(Child& child) {
  spawner_.signal(child.pid, SIGKILL);
  (void)spawner_.wait(child.pid);
}

Result<void> MediaRunner::spawn() {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    return fail(ErrorCode::kInternal, fmt::format("socketpair failed: {}", std::strerror(errno)));
  }
  common::SpawnSpec spec;
  spec.argv = {options_.binary, "--memory-mb", std::to_string(options_.memory_mb), "serve"};
  // stderr stays the worker's: it is where the media process logs.
  spec.stdin_fd = common::StdioFd::null();
  spec.stdout_fd = common::StdioFd::null();
  spec.extra_fds = {{3, sv[1]}};
  spec.parent_death_signal = SIGKILL;
  // From exec on, so the cap also covers loading the media libraries; the
  // process sets it again itself (--memory-mb), as it does when run by hand.
  if (options_.memory_mb > 0) {
    spec.limits.push_back({RLIMIT_AS, options_.memory_mb << 20});
  }
  Result<pid_t> pid = spawner_.spawn(spec);
  if (!pid) {
    close(sv[0]);
    close(sv[1]);
    return fail(pid.error());
  }
  close(sv[1]);
  auto child = std::make_unique<Child>();
  child->pid = *pid;
  child->fd = sv[0];
  child->reader = std::make_unique<common::FrameReader>(kMaxEventBytes);
  children_.push_back(std::move(child));
  return {};
}

void MediaRunner::warm_up() {
  size_t idle = 0;
  for (const auto& child : children_) idle += !child->task.has_value();
  while (idle < options_.warm) {
    if (!spawn()) break;
    ++idle;
  }
}

Result<void> MediaRunner::start(uint64_t id, const std::string& request,
                                std::chrono::seconds timeout, Clock::time_point now,
                                const std::string& log_path) {
  media::Request message;
  if (!message.ParseFromString(request)) {
    return fail(ErrorCode::kInvalidArgument, "malformed media request");
  }
  message.set_id(id);
  Child* chosen = nullptr;
  for (auto& child : children_) {
    if (!child->task) {
      chosen = child.get();
      break;
    }
  }
  if (!chosen) {
    if (auto ok = spawn(); !ok) return ok;
    chosen = children_.back().get();
  }
  if (auto ok = common::write_framed(chosen->fd, message); !ok) {
    // The idle child died under us: reap it and try once on a fresh one.
    kill_and_reap(*chosen);
    close(chosen->fd);
    children_.erase(std::find_if(children_.begin(), children_.end(),
                                 [&](const auto& c) { return c.get() == chosen; }));
    if (auto spawned = spawn(); !spawned) return spawned;
    chosen = children_.back().get();
    if (auto again = common::write_framed(chosen->fd, message); !again) return again;
  }
  chosen->task = id;
  // The task's share of a reused child: CPU from here, and a peak that forgets
  // earlier tasks.
  chosen->cpu_at_start = process_cpu(chosen->pid).value_or(CpuTimes{});
  (void)reset_peak_rss(chosen->pid);
  chosen->reading.clear();
  chosen->started = now;
  chosen->deadline = timeout.count() > 0 ? now + timeout : Clock::time_point::max();
  chosen->kill_reason.reset();
  if (!log_path.empty()) {
    chosen->log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (chosen->log_fd < 0) {
      // The task still runs; only its log is lost.
      common::logger("worker")->warn("task log not opened path={} reason=\"{}\"", log_path,
                                     std::strerror(errno));
    }
  }
  return {};
}

void MediaRunner::close_log(Child& child) {
  if (child.log_fd >= 0) close(child.log_fd);
  child.log_fd = -1;
}

void MediaRunner::write_log(Child& child, const std::string& text) {
  size_t at = 0;
  while (child.log_fd >= 0 && at < text.size()) {
    ssize_t n = ::write(child.log_fd, text.data() + at, text.size() - at);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      close_log(child);  // a full disk: the rest of the log is lost, not the task
      break;
    }
    at += static_cast<size_t>(n);
  }
}

void MediaRunner::cancel(uint64_t id) {
  for (auto& child : children_) {
    if (child->task == id && child->pid > 0) {
      child->kill_reason = Error{ErrorCode::kCancelled, "cancelled"};
      spawner_.signal(child->pid, SIGKILL);
    }
  }
}

void MediaRunner::finish(Child& child, bool succeeded, std::optional<Error> error,
                         Clock::time_point now, TaskUsage usage) {
  if (!child.task) return;
  usage.wall = std::chrono::duration_cast<std::chrono::microseconds>(now - child.started);
  outcomes_.push_back({*child.task, succeeded, std::move(error),
                       std::chrono::duration_cast<std::chrono::milliseconds>(now - child.started),
                       usage});
  child.task.reset();
  child.reading.clear();
  close_log(child);
}

TaskUsage MediaRunner::live_usage(const Child& child) const {
  TaskUsage usage;
  if (auto cpu = process_cpu(child.pid)) {
    usage.cpu_user = minus_floor0(cpu->user, child.cpu_at_start.user);
    usage.cpu_system = minus_floor0(cpu->system, child.cpu_at_start.system);
  }
  usage.peak_rss_bytes = process_peak_rss(child.pid).value_or(0);
  return usage;
}

void MediaRunner::bury(Child& child, const common::Reaped& reaped, Clock::time_point now) {
  const int status = reaped.status;
  if (child.task) {
    Error error;
    std::string file =
        child.reading.empty() ? std::string() : " reading " + basename_of(child.reading);
    if (child.kill_reason) {
      error = *child.kill_reason;
    } else if (WIFSIGNALED(status)) {
      error = {ErrorCode::kCrashed,
               fmt::format("decoder crashed ({}){}", signal_name(WTERMSIG(status)), file)};
    } else {
      error = {ErrorCode::kCrashed,
               fmt::format("media process exited with code {}{}", WEXITSTATUS(status), file)};
    }
    common::logger("worker")->warn("media process died pid={} reason=\"{}\"", child.pid,
                                   error.reason);
    // wait4 counts the child's whole life: the task's share is what came after its start.
    TaskUsage usage;
    usage.cpu_user = minus_floor0(reaped.usage.user, child.cpu_at_start.user);
    usage.cpu_system = minus_floor0(reaped.usage.system, child.cpu_at_start.system);
    usage.peak_rss_bytes = reaped.usage.max_rss_bytes;
    if (WIFSIGNALED(status)) {
      usage.exit_signal = WTERMSIG(status);
    } else if (WIFEXITED(status)) {
      usage.exit_code = WEXITSTATUS(status);
    }
    finish(child, false, std::move(error), now, usage);
  }
  close(child.fd);
  child.fd = -1;
  child.pid = -1;
}

std::vector<MediaOutcome> MediaRunner::poll(Clock::time_point now) {
  for (auto& child : children_) {
    if (child->pid <= 0) continue;
    if (child->task && now >= child->deadline && !child->kill_reason) {
      auto limit =
          std::chrono::duration_cast<std::chrono::seconds>(child->deadline - child->started);
      child->kill_reason =
          Error{ErrorCode::kTimeout, fmt::format("timed out after {} s", limit.count())};
      spawner_.signal(child->pid, SIGKILL);
    }
    bool open = child->reader->feed(child->fd);
    while (auto frame = child->reader->next()) {
      media::Event event;
      if (!event.ParseFromString(*frame)) {
        open = false;
        break;
      }
      if (!child->task || event.id() != *child->task) continue;
      switch (event.body_case()) {
        case media::Event::kReading:
          child->reading = event.reading();
          break;
        case media::Event::kLog:
          write_log(*child, event.log());
          break;
        case media::Event::kProgress:
          progress_.push_back({*child->task, event.progress().done(), event.progress().total()});
          break;
        case media::Event::kDone: {
          std::optional<Error> error;
          if (!event.done().ok()) {
            error = Error{error_code_from_name(event.done().error_code()), event.done().error()};
          }
          finish(*child, event.done().ok(), std::move(error), now, live_usage(*child));
          break;
        }
        default:
          break;
      }
    }
    // A wait error means the child is not ours any more (someone reaped it):
    // bury it with a status of its own.
    auto reap = [&]() -> std::optional<common::Reaped> {
      Result<std::optional<common::Reaped>> reaped = spawner_.try_reap(child->pid);
      return reaped ? *reaped : common::Reaped{child->pid, SIGKILL, {}};
    };
    std::optional<common::Reaped> status = reap();
    if (!open && !status) {
      // The socket closed: the child is dying (give it a moment, so an abort is
      // reported as SIGABRT) or broken (then end it). Never block on a live child.
      for (int i = 0; i < 50 && !status; ++i) {
        usleep(2'000);
        status = reap();
      }
      if (!status) {
        spawner_.signal(child->pid, SIGKILL);
        Result<int> waited = spawner_.wait(child->pid);
        status = common::Reaped{child->pid, waited ? *waited : SIGKILL, {}};
      }
    }
    if (status) bury(*child, *status, now);
  }
  children_.erase(
      std::remove_if(children_.begin(), children_.end(), [](const auto& c) { return c->pid <= 0; }),
      children_.end());
  std::vector<MediaOutcome> out;
  out.swap(outcomes_);
  return out;
}

std::vector<MediaProgress> MediaRunner::take_progress() {
  std::vector<MediaProgress> out;
  out.swap(progress_);
  return out;
}

std::vector<int> MediaRunner::fds() const {
  std::vector<int> out;
  for (const auto& child : children_) {
    if (child->fd >= 0) out.push_back(child->fd);
  }
  return out;
}

std::optional<MediaRunner::Clock::time_point> MediaRunner::next_deadline() const {
  std::optional<Clock::time_point> next;
  for (const auto& child : children_) {
    if (child->task && child->deadline != Clock::time_point::max()) {
      if (!next || child->deadline < *next) next = child->deadline;
    }
  }
  return next;
}

bool MediaRunner::owns(pid_t pid) const {
  for (const auto& child : children_) {
    if (child->pid == pid) return true;
  }
  return false;
}

size_t MediaRunner::running() const {
  size_t n = 0;
  for (const auto& child : children_) n += child->task.has_value();
  return n;
}

}  // namespace farmhand::worker
