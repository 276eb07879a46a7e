#include "workers/worker.h"

#include <algorithm>
#include <filesystem>
#include <random>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "common/byte_size.h"
#include "common/logging.h"
#include "common/media_kinds.h"
#include "common/wire.h"
#include "workers/host_resources.h"

namespace farmhand::worker {

namespace {

constexpr size_t kLogTailBytes = 64 * 1024;
// Results kept for an absent broker; beyond this the oldest are dropped (the
// broker then reruns those tasks: at least once, never lost silently).
constexpr size_t kMaxUnackedResults = 100'000;
constexpr auto kFirstReconnectDelay = std::chrono::seconds(1);
// A broker acknowledges a result after its next commit, within milliseconds;
// only a result it has not acknowledged by then is worth an fsync (a noop task
// takes microseconds). A worker killed inside this window reruns the task.
constexpr auto kSaveResultAfter = std::chrono::milliseconds(250);
// ZMQ_IMMEDIATE refuses a send until the connection is up: Ready is tried
// again after this, doubling up to kMaxReadyRetry (or the heartbeat interval),
// so a returning broker hears from us within a quarter second of the connection
// and an absent one costs a few wake-ups a second.
constexpr auto kFirstReadyRetry = std::chrono::milliseconds(20);
constexpr auto kMaxReadyRetry = std::chrono::milliseconds(250);
// Broker messages are small; a bigger one is not from our broker.
constexpr int64_t kMaxBrokerMessageBytes = 16 << 20;

std::string hostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "unknown";
  return buf;
}

std::string new_instance_id() {
  std::random_device random;
  uint64_t high = (uint64_t{random()} << 32) | random();
  uint64_t low = (uint64_t{random()} << 32) | random();
  return fmt::format("{:016x}{:016x}", high, low);
}

}  // namespace

Worker::Worker(Options options)
    : options_(std::move(options)),
      log_(common::logger("worker")),
      context_(1),
      cgroups_(options_.cgroups ? TaskCgroups::probe()
                                : TaskCgroups::disabled("turned off by --no-cgroups")),
      runner_(std::chrono::seconds(2), common::real_spawner(), std::chrono::seconds(1),
              cgroups_.get()),
      media_(MediaRunner::Options{options_.media_binary, options_.media_memory_mb, 1}),
      openjd_(OpenJdRunner::Options{
          options_.work_dir, std::chrono::seconds(60), {{"FARMHAND_WORKER", options_.name}}}),
      instance_(new_instance_id()),
      result_store_(options_.work_dir),
      heartbeat_interval_(options_.heartbeat_interval) {
  const HostResources detected = detect_host_resources(TaskCgroups::Sources{});
  if (options_.cores == 0) {
    options_.cores = detected.cores;
    log_->debug("cores detected cores={} from=\"{}\"", detected.cores, detected.cores_from);
  }
  if (!options_.gpus) {
    options_.gpus = detect_gpus();
    log_->debug("gpus detected gpus={} from=\"/proc/driver/nvidia/gpus\"", *options_.gpus);
  }
  gpu_busy_.assign(*options_.gpus, false);
  if (options_.memory_bytes == 0) {
    options_.memory_bytes = detected.memory_bytes;
    log_->debug("memory detected memory={} from=\"{}\"",
                common::format_byte_size(detected.memory_bytes), detected.memory_from);
  }
}

Worker::~Worker() {
  if (signal_fd_ >= 0) close(signal_fd_);
}

void Worker::connect() {
  socket_ = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::dealer);
  socket_->set(zmq::sockopt::linger, 0);
  // Queue nothing for a broker that is not there: Ready and results are sent
  // again after the reconnect anyway, and stale heartbeats would only pile up.
  socket_->set(zmq::sockopt::immediate, 1);
  socket_->set(zmq::sockopt::maxmsgsize, kMaxBrokerMessageBytes);
  socket_->set(zmq::sockopt::reconnect_ivl, 100);
  socket_->set(zmq::sockopt::reconnect_ivl_max, 2000);
  if (!options_.curve_server_key.empty()) {
    socket_->set(zmq::sockopt::curve_serverkey, options_.curve_server_key);
    socket_->set(zmq::sockopt::curve_publickey, options_.curve_public_key);
    socket_->set(zmq::sockopt::curve_secretkey, options_.curve_secret_key);
  }
  socket_->connect(options_.broker);
  ready_retry_delay_ = kFirstReadyRetry;
}

void Worker::send(const wire::WorkerMessage& msg) {
  // Refused: the broker does not know us, and anything but Ready would only
  // draw a Reconnect. Results wait in unacked_ for the next Welcome.
  // (send_ready() sends directly.)
  if (socket_ && !refused_) common::send_one(*socket_, msg);
}

void Worker::send_ready() {
  wire::WorkerMessage msg;
  auto* ready = msg.mutable_ready();
  ready->set_version(common::kProtocolVersion);
  ready->set_name(options_.name);
  ready->set_slots(options_.slots);
  ready->set_interactive_slots(options_.interactive_slots);
  for (const auto& tag : options_.tags) ready->add_tags(tag);
  for (const auto& [id, task] : runs_) *ready->add_running() = task.ref;
  // A finished task whose result is not acknowledged still holds its lease.
  for (const auto& [key, unacked] : unacked_) *ready->add_running() = unacked.result.ref();
  ready->set_host(hostname());
  ready->set_pid(static_cast<uint32_t>(getpid()));
  ready->set_instance(instance_);
  ready->set_cores(options_.cores);
  ready->set_memory_bytes(options_.memory_bytes);
  ready->set_gpus(static_cast<uint32_t>(gpu_busy_.size()));
  ready->set_isolation(isolation());
  // With ZMQ_IMMEDIATE the send fails until the connection is up; try again
  // shortly rather than wait a heartbeat for the broker to ask, backing off so
  // that a broker that stays away costs no CPU.
  ready_pending_ = !(socket_ && common::send_one(*socket_, msg));
  if (ready_pending_) {
    auto now = Clock::now();
    ready_retry_at_ = now + ready_retry_delay_;
    ready_retry_delay_ = std::min({ready_retry_delay_ * 2, heartbeat_interval_, kMaxReadyRetry});
  }
}

void Worker::back_off(Clock::time_point now) {
  reconnect_at_ = now + reconnect_delay_;
  reconnect_delay_ = std::min(reconnect_delay_ * 2, options_.max_reconnect_delay);
}

void Worker::restore_results() {
  auto loaded = result_store_.load();
  if (!loaded) {
    log_->error("saved results not read reason=\"{}\"", loaded.error().reason);
    return;
  }
  for (const auto& dropped : loaded->dropped) {
    log_->warn("saved result dropped reason=\"{}\"", dropped);
  }
  for (auto& result : loaded->results) {
    Key key{result.ref().job_id(), result.ref().task(), result.ref().lease()};
    std::string log_path =
        fmt::format("{}/job{}-task{}-attempt{}.log", options_.work_dir, result.ref().job_id(),
                    result.ref().task(), result.attempt());
    std::error_code ec;
    if (std::filesystem::exists(log_path, ec)) logs_to_remove_[key] = log_path;
    unacked_[key] = Unacked{std::move(result), true};
  }
  if (!unacked_.empty()) {
    log_->info("saved results restored count={} work_dir={}", unacked_.size(), options_.work_dir);
  }
}

void Worker::drop_settled_from_to_save() {
  // Acks come in the order of the results, so the acknowledged ones gather at
  // the front: dropping them keeps the front (which poll_timeout() wakes for)
  // the oldest result still waiting, and an idle worker sleeps. Left there, each
  // would wake the worker kSaveResultAfter after its task ended, for nothing.
  while (!to_save_.empty()) {
    auto it = unacked_.find(to_save_.front().second);
    if (it != unacked_.end() && !it->second.saved) break;
    to_save_.pop_front();
  }
}

void Worker::save_results(Clock::time_point now, bool all) {
  std::vector<const wire::TaskResult*> due;
  std::vector<Unacked*> saving;
  while (!to_save_.empty() && (all || to_save_.front().first + kSaveResultAfter <= now)) {
    auto it = unacked_.find(to_save_.front().second);
    to_save_.pop_front();
    if (it == unacked_.end() || it->second.saved) continue;
    due.push_back(&it->second.result);
    saving.push_back(&it->second);
  }
  drop_settled_from_to_save();
  if (due.empty()) return;
  // Marked saved even on failure: files written before it are removed on ack.
  for (Unacked* u : saving) u->saved = true;
  if (auto ok = result_store_.save(due); !ok) {
    log_->error("results not saved count={} reason=\"{}\"", due.size(), ok.error().reason);
  }
}

Result<void> Worker::run() {
  auto lock = WorkDirLock::acquire(options_.work_dir);
  if (!lock) return fail(lock.error());
  work_dir_lock_ = std::move(*lock);
  restore_results();
  sigset_t signals;
  sigemptyset(&signals);
  for (int s : {SIGTERM, SIGINT, SIGCHLD}) sigaddset(&signals, s);
  sigprocmask(SIG_BLOCK, &signals, nullptr);
  signal_fd_ = signalfd(-1, &signals, SFD_NONBLOCK | SFD_CLOEXEC);
  if (signal_fd_ < 0) return fail(ErrorCode::kInternal, "cannot create signalfd");
  signal(SIGPIPE, SIG_IGN);
  // Orphans of a task's processes come to us, not init: reaped, and counted
  // in the task's use.
  if (auto ok = become_child_subreaper(); !ok) {
    log_->warn("task usage misses orphans reason=\"{}\"", ok.error().reason);
  }

  try {
    connect();
  } catch (const zmq::error_t& e) {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("cannot connect to {}: {}", options_.broker, e.what()));
  }
  if (!options_.media_binary.empty() && access(options_.media_binary.c_str(), X_OK) == 0) {
    media_.warm_up();
  } else {
    log_->warn("media processing unavailable binary={}", options_.media_binary);
  }
  auto now = Clock::now();
  broker_seen_ = now;
  send_ready();
  log_->info("worker started worker={} broker={} slots={} instance={} work_dir={}", options_.name,
             options_.broker, options_.slots, instance_, options_.work_dir);
  log_->info(
      "task isolation worker={} cores={} memory=\"{}\" isolation=\"{}\" cgroup={}{}", options_.name,
      options_.cores, common::format_byte_size(options_.memory_bytes), isolation(),
      cgroups_->enabled() ? cgroups_->subtree() : "none",
      cgroups_->memory_note().empty() ? "" : fmt::format(" note=\"{}\"", cgroups_->memory_note()));

  while (!stopping_) {
    now = Clock::now();
    std::vector<zmq::pollitem_t> items = {
        {socket_->handle(), 0, ZMQ_POLLIN, 0},
        {nullptr, signal_fd_, ZMQ_POLLIN, 0},
    };
    for (int fd : media_.fds()) items.push_back({nullptr, fd, ZMQ_POLLIN, 0});
    items.push_back({nullptr, openjd_.wake_fd(), ZMQ_POLLIN, 0});
    try {
      zmq::poll(items.data(), items.size(), poll_timeout(now));
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) return fail(ErrorCode::kInternal, e.what());
    }
    now = Clock::now();
    if (items[1].revents & ZMQ_POLLIN) {
      signalfd_siginfo info;
      while (read(signal_fd_, &info, sizeof(info)) == sizeof(info)) {
        if (info.ssi_signo == SIGTERM || info.ssi_signo == SIGINT) stopping_ = true;
      }
    }
    // Drain everything waiting: a burst of assignments is one wake-up.
    for (int n = 0; n < 10'000; ++n) {
      zmq::message_t frame;
      try {
        if (!socket_->recv(frame, zmq::recv_flags::dontwait)) break;
      } catch (const zmq::error_t&) {
        break;
      }
      broker_seen_ = now;
      wire::BrokerMessage msg;
      if (auto ok = common::parse_message(frame.data(), frame.size(), kMaxBrokerMessageBytes, msg);
          !ok) {
        log_->warn("bad message dropped reason=\"{}\"", ok.error().reason);
        continue;
      }
      handle(msg, now);
    }
    for (const auto& outcome : runner_.poll(Clock::now())) {
      finish(outcome.id, outcome.succeeded, outcome.error, outcome.elapsed, outcome.usage,
             outcome.out_of_memory);
    }
    for (const auto& outcome : media_.poll(Clock::now())) {
      finish(outcome.id, outcome.succeeded, outcome.error, outcome.elapsed, outcome.usage);
    }
    for (const auto& outcome : openjd_.poll(Clock::now())) {
      finish(outcome.id, outcome.succeeded, outcome.error, outcome.elapsed, outcome.usage);
    }
    // Adopted orphans that left their task's group: no run owns them.
    reap_strays([this](pid_t pid, pid_t pgid) {
      return media_.owns(pid) || runner_.owns_group(pgid) || runner_.owns_group(pid) ||
             openjd_.owns_group(pgid) || openjd_.owns_group(pid);
    });
    send_progress();
    now = Clock::now();
    save_results(now, false);
    if (refused_) {
      // No session: only Ready, once per backoff period, until a Welcome.
      if (now >= reconnect_at_) {
        send_ready();
        ready_pending_ = false;
        back_off(now);
      }
      continue;
    }
    if (ready_pending_ && now >= ready_retry_at_) send_ready();
    if (now - broker_seen_ > heartbeat_interval_ * options_.liveness && now >= reconnect_at_) {
      // The broker went quiet: start over on a fresh socket, as Paranoid Pirate does.
      log_->warn("broker lost broker={} reconnect_in_ms={}", options_.broker,
                 reconnect_delay_.count());
      connect();
      send_ready();
      broker_seen_ = now;
      back_off(now);
    }
    if (now - last_beat_ >= heartbeat_interval_) {
      last_beat_ = now;
      wire::WorkerMessage beat;
      beat.mutable_heartbeat();
      send(beat);
    }
    if (!runs_.empty() && now - last_renew_ >= lease_ttl_ / 3) {
      last_renew_ = now;
      renew_leases();
    }
  }
  shutdown();
  return {};
}

std::chrono::milliseconds Worker::poll_timeout(Clock::time_point now) const {
  Clock::time_point next = now + std::chrono::seconds(1);
  if (refused_) {
    next = std::min(next, reconnect_at_);
  } else {
    next = std::min(next, last_beat_ + heartbeat_interval_);
    // The broker counts as lost after `liveness` beats, but the fresh socket
    // waits for the backoff: wake for whichever comes later. (Waking at the
    // earlier one turned the whole backoff into a busy loop.)
    next = std::min(
        next, std::max(broker_seen_ + heartbeat_interval_ * options_.liveness, reconnect_at_));
    if (!runs_.empty()) next = std::min(next, last_renew_ + lease_ttl_ / 3);
    if (ready_pending_) next = std::min(next, ready_retry_at_);
  }
  if (auto deadline = runner_.next_deadline()) next = std::min(next, *deadline);
  if (auto deadline = media_.next_deadline()) next = std::min(next, *deadline);
  if (auto deadline = openjd_.next_deadline()) next = std::min(next, *deadline);
  if (!to_save_.empty()) next = std::min(next, to_save_.front().first + kSaveResultAfter);
  // Rounded up: a deadline less than a millisecond away must not make a 0 ms poll loop.
  auto timeout = std::chrono::ceil<std::chrono::milliseconds>(next - now);
  return std::clamp(timeout, std::chrono::milliseconds(0), std::chrono::milliseconds(1000));
}

void Worker::handle(const wire::BrokerMessage& msg, Clock::time_point now) {
  switch (msg.body_case()) {
    case wire::BrokerMessage::kWelcome:
      if (msg.welcome().heartbeat_ms() > 0) {
        heartbeat_interval_ = std::chrono::milliseconds(msg.welcome().heartbeat_ms());
      }
      if (msg.welcome().lease_ttl_ms() > 0) {
        lease_ttl_ = std::chrono::milliseconds(msg.welcome().lease_ttl_ms());
      }
      reconnect_delay_ = kFirstReconnectDelay;
      reconnect_at_ = now;
      refused_ = false;
      last_refusal_.clear();
      log_->info("worker registered worker={} broker={} unacked_results={}", options_.name,
                 options_.broker, unacked_.size());
      for (const auto& [key, unacked] : unacked_) {
        wire::WorkerMessage out;
        *out.mutable_result() = unacked.result;
        send(out);
      }
      break;
    case wire::BrokerMessage::kHeartbeat:
      break;
    case wire::BrokerMessage::kReconnect:
      if (!refused_) send_ready();
      break;
    case wire::BrokerMessage::kRefused:
      // Someone must act (e.g. give this worker its own --name): say so once,
      // not at every retry.
      if (msg.refused().reason() != last_refusal_) {
        last_refusal_ = msg.refused().reason();
        log_->error("refused by broker: {}", common::valid_utf8(last_refusal_));
      }
      refused_ = true;
      ready_pending_ = false;
      reconnect_at_ = now + reconnect_delay_;
      break;
    case wire::BrokerMessage::kAssign:
      start_task(msg.assign(), now);
      break;
    case wire::BrokerMessage::kCancel: {
      const auto& ref = msg.cancel().ref();
      for (const auto& [id, task] : runs_) {
        if (task.ref.job_id() == ref.job_id() && task.ref.task() == ref.task() &&
            task.ref.lease() == ref.lease()) {
          log_->info("task cancel job={} task={} reason=\"{}\"", ref.job_id(), ref.task(),
                     msg.cancel().reason());
          if (task.media) {
            media_.cancel(id);
          } else if (task.openjd) {
            openjd_.cancel(id);
          } else {
            runner_.cancel(id, now);
          }
          break;
        }
      }
      break;
    }
    case wire::BrokerMessage::kLog: {
      // The log so far of a task we run (a media task's too: the lines its
      // media process wrote so far).
      const auto& ask = msg.log();
      wire::WorkerMessage out;
      auto* reply = out.mutable_log();
      reply->set_request_id(ask.request_id());
      reply->set_job_id(ask.job_id());
      reply->set_task(ask.task());
      for (const auto& [id, task] : runs_) {
        if (task.ref.job_id() != ask.job_id() || task.ref.task() != ask.task()) continue;
        reply->set_running(true);
        if (!task.log_path.empty()) {
          reply->set_text(read_log_tail(
              task.log_path,
              std::min<size_t>(ask.max_bytes() ? ask.max_bytes() : kLogTailBytes, kLogTailBytes)));
        }
        break;
      }
      send(out);
      break;
    }
    case wire::BrokerMessage::kAck:
      for (const auto& ref : msg.ack().tasks()) {
        Key key{ref.job_id(), ref.task(), ref.lease()};
        if (auto u = unacked_.find(key); u != unacked_.end()) {
          if (u->second.saved) result_store_.remove(ref);
          unacked_.erase(u);
        }
        if (auto it = logs_to_remove_.find(key); it != logs_to_remove_.end()) {
          std::error_code ec;
          std::filesystem::remove(it->second, ec);
          logs_to_remove_.erase(it);
        }
      }
      drop_settled_from_to_save();
      break;
    default:
      log_->warn("bad message dropped reason=\"unknown body\"");
  }
}

void Worker::start_task(const wire::Assign& assign, Clock::time_point now) {
  if (assign.kind() == "noop") {
    uint64_t id = next_run_id_++;
    runs_[id] = Task{assign.ref(), assign.attempt(), {}};
    finish(id, true, std::nullopt, std::chrono::milliseconds(0));
    return;
  }
  if (common::is_media_kind(assign.kind())) {
    uint64_t id = next_run_id_++;
    // Its log (what it read and wrote, timings) goes where a command's output goes.
    std::string log_path =
        fmt::format("{}/job{}-task{}-attempt{}.log", options_.work_dir, assign.ref().job_id(),
                    assign.ref().task(), assign.attempt());
    runs_[id] = Task{assign.ref(), assign.attempt(), log_path, true};
    if (runs_.size() == 1) last_renew_ = now;
    auto ok = media_.start(id, assign.media_request(), std::chrono::seconds(assign.timeout_s()),
                           now, log_path);
    if (!ok) finish(id, false, ok.error(), std::chrono::milliseconds(0));
    return;
  }
  if (assign.kind() == "openjd" && assign.has_openjd()) {
    uint64_t id = next_run_id_++;
    std::string log_path =
        fmt::format("{}/job{}-task{}-attempt{}.log", options_.work_dir, assign.ref().job_id(),
                    assign.ref().task(), assign.attempt());
    Task task{assign.ref(), assign.attempt(), log_path};
    task.openjd = true;
    // Its session's actions are told their GPUs (a session is shared only by
    // tasks given the same ones).
    wire::Assign given = assign;
    std::map<std::string, std::string> env;
    task.gpus = take_gpus(assign.gpus(), env);
    given.mutable_env()->insert(env.begin(), env.end());
    runs_[id] = task;
    if (runs_.size() == 1) last_renew_ = now;
    log_->debug("openjd task started job={} task={} step=\"{}\"", assign.ref().job_id(),
                assign.ref().task(), assign.openjd().step());
    if (auto ok = openjd_.start(id, given, now, log_path); !ok) {
      finish(id, false, ok.error(), std::chrono::milliseconds(0));
    }
    return;
  }
  uint64_t id = next_run_id_++;
  Task task{assign.ref(), assign.attempt(),
            fmt::format("{}/job{}-task{}-attempt{}.log", options_.work_dir, assign.ref().job_id(),
                        assign.ref().task(), assign.attempt())};
  runs_[id] = task;
  if (assign.kind() != "command" || assign.commands_size() == 0) {
    finish(id, false,
           Error{ErrorCode::kInvalidArgument,
                 fmt::format("this worker cannot run '{}' tasks", assign.kind())},
           std::chrono::milliseconds(0));
    return;
  }
  RunSpec spec;
  spec.id = id;
  for (const auto& argv : assign.commands()) {
    spec.commands.emplace_back(argv.args().begin(), argv.args().end());
  }
  spec.env.insert(assign.env().begin(), assign.env().end());
  // Where and what the task is, for render wrappers and logs (as Deadline's and
  // OpenCue's tasks see theirs).
  spec.env["FARMHAND_JOB_ID"] = std::to_string(assign.ref().job_id());
  spec.env["FARMHAND_TASK"] = std::to_string(assign.ref().task());
  spec.env["FARMHAND_ATTEMPT"] = std::to_string(assign.attempt());
  spec.env["FARMHAND_FRAMES"] = assign.frames();
  spec.env["FARMHAND_WORKER"] = options_.name;
  // The threads a renderer should use (`-t $FARMHAND_CORES`): what the task booked.
  if (assign.cores() > 0) spec.env["FARMHAND_CORES"] = std::to_string(assign.cores());
  runs_[id].gpus = take_gpus(assign.gpus(), spec.env);
  spec.log_path = task.log_path;
  spec.timeout = std::chrono::seconds(assign.timeout_s());
  if (options_.enforce_memory) spec.memory_limit = assign.memory_limit_bytes();
  log_->debug("task started job={} task={} attempt={}", assign.ref().job_id(), assign.ref().task(),
              assign.attempt());
  if (auto ok = runner_.start(std::move(spec), now); !ok) {
    finish(id, false, ok.error(), std::chrono::milliseconds(0));
  }
  if (runs_.size() == 1) last_renew_ = now;
}

void Worker::finish(uint64_t run_id, bool succeeded, const std::optional<Error>& error,
                    std::chrono::milliseconds elapsed, const std::optional<TaskUsage>& usage,
                    bool out_of_memory) {
  auto it = runs_.find(run_id);
  if (it == runs_.end()) return;
  Task task = std::move(it->second);
  runs_.erase(it);
  for (uint32_t gpu : task.gpus) {
    if (gpu < gpu_busy_.size()) gpu_busy_[gpu] = false;
  }
  wire::WorkerMessage msg;
  auto* result = msg.mutable_result();
  *result->mutable_ref() = task.ref;
  result->set_attempt(task.attempt);
  result->set_succeeded(succeeded);
  if (error) {
    result->set_error(common::valid_utf8(error->reason));
    result->set_error_code(std::string(error_code_name(error->code)));
  }
  if (!task.log_path.empty()) result->set_log_tail(read_log_tail(task.log_path, kLogTailBytes));
  result->set_elapsed_s(static_cast<double>(elapsed.count()) / 1000.0);
  result->set_out_of_memory(out_of_memory);
  if (usage) {
    auto seconds = [](std::chrono::microseconds us) {
      return static_cast<double>(us.count()) / 1e6;
    };
    auto* stats = result->mutable_stats();
    stats->set_wall_s(seconds(usage->wall));
    stats->set_cpu_user_s(seconds(usage->cpu_user));
    stats->set_cpu_system_s(seconds(usage->cpu_system));
    stats->set_peak_rss_bytes(usage->peak_rss_bytes);
    if (usage->exit_code) stats->set_exit_code(*usage->exit_code);
    if (usage->exit_signal != 0) stats->set_exit_signal(signal_name(usage->exit_signal));
  }
  if (!succeeded) {
    log_->info("task failed job={} task={} attempt={} reason=\"{}\"", task.ref.job_id(),
               task.ref.task(), task.attempt, error ? error->reason : "");
  }
  Key key{task.ref.job_id(), task.ref.task(), task.ref.lease()};
  if (unacked_.size() >= kMaxUnackedResults) {
    if (unacked_.begin()->second.saved) result_store_.remove(unacked_.begin()->second.result.ref());
    unacked_.erase(unacked_.begin());
  }
  unacked_[key] = Unacked{*result, false};
  to_save_.emplace_back(Clock::now(), key);
  if (!task.log_path.empty()) logs_to_remove_[key] = task.log_path;
  send(msg);
}

void Worker::send_progress() {
  auto send_each = [this](const auto& reports) {
    for (const auto& p : reports) {
      auto it = runs_.find(p.id);
      if (it == runs_.end()) continue;
      wire::WorkerMessage msg;
      *msg.mutable_progress()->mutable_ref() = it->second.ref;
      msg.mutable_progress()->set_done(p.done);
      msg.mutable_progress()->set_total(p.total);
      msg.mutable_progress()->set_status(p.status);
      send(msg);
    }
  };
  send_each(media_.take_progress());
  send_each(openjd_.take_progress());
}

std::vector<uint32_t> Worker::take_gpus(uint32_t count, std::map<std::string, std::string>& env) {
  std::vector<uint32_t> taken;
  if (count == 0) return taken;
  for (uint32_t gpu = 0; gpu < gpu_busy_.size() && taken.size() < count; ++gpu) {
    if (gpu_busy_[gpu]) continue;
    gpu_busy_[gpu] = true;
    taken.push_back(gpu);
  }
  if (taken.size() < count) {
    log_->warn("task given fewer GPUs than it asked for asked={} given={}", count, taken.size());
  }
  env["FARMHAND_GPUS"] = std::to_string(taken.size());
  env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID";
  env["CUDA_VISIBLE_DEVICES"] = fmt::format("{}", fmt::join(taken, ","));
  return taken;
}

void Worker::renew_leases() {
  wire::WorkerMessage msg;
  for (const auto& [id, task] : runs_) *msg.mutable_renew()->add_tasks() = task.ref;
  send(msg);
}

void Worker::shutdown() {
  log_->info("worker stopping worker={} running={}", options_.name, runs_.size());
  // What the broker has not acknowledged yet is resent by the next process.
  save_results(Clock::now(), true);
  auto now = Clock::now();
  for (const auto& [id, task] : runs_) {
    if (task.media) {
      media_.cancel(id);
    } else if (task.openjd) {
      openjd_.cancel(id);
    } else {
      runner_.cancel(id, now);
    }
  }
  auto deadline = now + std::chrono::seconds(5);
  while (runner_.running() > 0 && Clock::now() < deadline) {
    runner_.poll(Clock::now());
    // Children die within the kill grace; poll the runner until they are reaped.
    usleep(10'000);
  }
  wire::WorkerMessage bye;
  bye.mutable_disconnect();
  send(bye);
  // Give the goodbye a moment to leave the socket before the context closes it.
  socket_->set(zmq::sockopt::linger, 500);
  socket_.reset();
}

}  // namespace farmhand::worker
