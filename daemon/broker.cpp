#include "daemon/broker.h"

#include <algorithm>
#include <filesystem>

#include <fmt/format.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "common/command_template.h"
#include "common/logging.h"
#include "common/wire.h"
#include "daemon/media_jobs.h"
#include "daemon/systemd_notify.h"

namespace farmhand::daemon {

namespace {

using SteadyClock = std::chrono::steady_clock;

// Bounded work per turn keeps a flood on one socket from starving the other
// and from delaying the turn's commit (and so every acknowledgement).
constexpr int kMaxWorkerMessagesPerTurn = 20'000;
constexpr int kMaxClientMessagesPerTurn = 2'000;
constexpr size_t kMaxLabels = 64;
constexpr size_t kMaxLabelBytes = 4096;
constexpr uint32_t kDefaultTaskPage = 100;
constexpr uint32_t kMaxTaskPage = 10'000;
constexpr size_t kMaxRunningShown = 100;
constexpr size_t kMaxLogTailBytes = 64 * 1024;
// A task in the interactive lane covers at most this many frames (10 s at 24 fps).
constexpr uint32_t kMaxInteractiveTaskFrames = 240;

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

std::optional<core::TaskState> from_wire(wire::TaskState s) {
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

// The scheduler's view of a submitted spec. Shared by submit and restore, so a
// restored job is exactly the job that was accepted.
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
  return out;
}

}  // namespace

void set_error(wire::ClientReply& reply, const Error& error) {
  reply.set_ok(false);
  reply.set_error(error.reason);
  reply.set_error_code(std::string(error_code_name(error.code)));
}

int64_t unix_ms_now() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Broker::Broker(Options options)
    : options_(std::move(options)),
      log_(common::logger("broker")),
      origin_(SteadyClock::now()),
      context_(1),
      clients_(context_, zmq::socket_type::router),
      workers_(context_, zmq::socket_type::router) {}

Broker::~Broker() {
  if (backup_) {
    if (backup_->thread.joinable()) backup_->thread.join();
    if (backup_->event_fd >= 0) close(backup_->event_fd);
  }
  if (signal_fd_ >= 0) close(signal_fd_);
}

core::Millis Broker::now_ms() const {
  // Offset by one second so that "time zero" never looks like a real deadline.
  return std::chrono::duration_cast<core::Millis>(SteadyClock::now() - origin_) +
         core::Millis(1000);
}

Result<void> Broker::start() {
  const auto& broker = options_.config.broker;
  auto state_dir = StateDir::open(options_.state_dir);
  if (!state_dir) return fail(state_dir.error());
  state_dir_ = std::move(*state_dir);
  db_path_ = state_dir_->database_path();
  auto store = state_dir_->open_store(broker.sqlite_synchronous);
  if (!store) return fail(store.error());
  store_ = std::move(*store);

  core::Scheduler::Options so;
  so.lease_ttl = broker.lease_ttl;
  so.heartbeat_interval = broker.heartbeat_interval;
  so.heartbeat_liveness = broker.heartbeat_liveness;
  so.backoff_base = broker.retry_backoff_base;
  so.backoff_max = broker.retry_backoff_max;
  so.default_max_attempts = broker.default_max_attempts;
  so.timeout_grace = std::max<core::Millis>(core::Millis(5000), 2 * broker.heartbeat_interval);
  so.seed = std::random_device{}();
  scheduler_ = std::make_unique<core::Scheduler>(so);

  auto t0 = SteadyClock::now();
  if (auto ok = restore(); !ok) return ok;
  auto restore_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - t0).count();

  try {
    for (auto* sock : {&clients_, &workers_}) {
      sock->set(zmq::sockopt::linger, 0);
      // Queued replies to a vanished client must not grow without bound.
      sock->set(zmq::sockopt::sndhwm, 100'000);
      sock->set(zmq::sockopt::rcvhwm, 100'000);
    }
    // libzmq refuses (and disconnects) peers that send more than this, before we see a byte.
    clients_.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(broker.max_client_message_bytes));
    workers_.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(broker.max_worker_message_bytes));
    if (auto secured = secure_endpoints(); !secured) return secured;
    clients_.bind(broker.client_endpoint);
    workers_.bind(broker.worker_endpoint);
  } catch (const zmq::error_t& e) {
    return fail(ErrorCode::kUnavailable,
                fmt::format("cannot bind {} / {}: {}", broker.client_endpoint,
                            broker.worker_endpoint, e.what()));
  }

  sigset_t signals;
  sigemptyset(&signals);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGCHLD}) sigaddset(&signals, s);
  sigprocmask(SIG_BLOCK, &signals, nullptr);
  signal_fd_ = signalfd(-1, &signals, SFD_NONBLOCK | SFD_CLOEXEC);
  if (signal_fd_ < 0) return fail(ErrorCode::kInternal, "cannot create signalfd");
  signal(SIGPIPE, SIG_IGN);

  if (options_.local_workers > 0) {
    Supervisor::Options sup;
    sup.worker_binary = options_.worker_binary;
    sup.broker_endpoint = broker.worker_endpoint;
    sup.count = options_.local_workers;
    sup.slots = options_.config.local_workers.slots;
    sup.interactive_slots = options_.config.local_workers.interactive_slots;
    sup.tags = options_.config.local_workers.tags;
    sup.log_level = options_.config.log_level;
    if (local_worker_key_) {
      sup.env = {"FARMHAND_CURVE_SERVER_KEY=" + curve_server_public_,
                 "FARMHAND_CURVE_SECRET_KEY=" + local_worker_key_->secret_key};
    }
    supervisor_ = std::make_unique<Supervisor>(sup);
    supervisor_->maintain(SteadyClock::now());
  }
  if (auto ok = start_watching(); !ok) {
    // A publish folder not mounted yet must not keep the whole farm down: the
    // broker serves, and tries the watched folders again every few seconds.
    log_->error("watched folders not started, retrying every {} s: {}", kWatchRetry.count(),
                ok.error().reason);
    watch_retry_at_ = SteadyClock::now() + kWatchRetry;
  }
  log_->info(
      "broker started clients={} workers={} state_dir={} jobs={} restore_ms={} local_workers={}",
      broker.client_endpoint, broker.worker_endpoint, options_.state_dir, extras_.size(),
      restore_ms, options_.local_workers);
  return {};
}

Result<void> Broker::restore() {
  Error failure;
  bool failed = false;
  auto ok = store_->load(
      [&](JobRow&& row) {
        wire::JobSpec spec;
        if (!spec.ParseFromString(row.spec)) {
          log_->error("job skipped at restore job={} reason=\"unreadable spec\"", row.id);
          return;
        }
        auto core_spec = to_core_spec(spec);
        if (!core_spec) {
          log_->error("job skipped at restore job={} reason=\"{}\"", row.id,
                      core_spec.error().reason);
          return;
        }
        if (auto r =
                scheduler_->restore_job(row.id, std::move(*core_spec), row.paused, row.cancelled);
            !r) {
          failed = true;
          failure = r.error();
          return;
        }
        if (!row.idempotency_key.empty()) idempotency_keys_[row.idempotency_key] = row.id;
        extras_[row.id] = JobExtra{std::move(spec), row.submitted_unix_ms, row.finished_unix_ms};
      },
      [&](TaskRow&& row) {
        scheduler_->restore_task(row.job, row.task, row.state, row.attempts, row.lease, row.worker,
                                 row.error);
      });
  if (!ok) return ok;
  if (failed) return fail(failure);
  if (auto events = restore_events(); !events) return events;
  core::Millis now = now_ms();
  scheduler_->finish_restore(now);
  // Jobs that finished before the store recorded finish times count from now.
  for (auto& [id, extra] : extras_) {
    if (extra.finished_unix_ms != 0) continue;
    auto view = scheduler_->job(id);
    if (view &&
        (view->state == core::JobState::kSucceeded || view->state == core::JobState::kFailed ||
         view->state == core::JobState::kCancelled)) {
      note_finished(id, unix_ms_now());
    }
  }
  // Give workers that outlived us a few beats to report what they still run
  // before their tasks are handed to someone else.
  if (!extras_.empty()) {
    scheduler_->hold_dispatch_until(now + 2 * options_.config.broker.heartbeat_interval);
  }
  return {};
}

std::chrono::milliseconds Broker::poll_timeout() const {
  if (redispatch_) return core::Millis(0);
  auto now = now_ms();
  core::Millis timeout = options_.config.broker.heartbeat_interval;
  if (auto next = scheduler_->next_deadline()) timeout = std::min(timeout, *next - now);
  if (supervisor_) {
    if (auto next = supervisor_->next_deadline()) {
      timeout =
          std::min(timeout, std::chrono::duration_cast<core::Millis>(*next - SteadyClock::now()));
    }
  }
  if (watch_retry_at_) {
    timeout = std::min(
        timeout, std::chrono::duration_cast<core::Millis>(*watch_retry_at_ - SteadyClock::now()));
  }
  if (watcher_) {
    if (auto next = watcher_->next_deadline()) {
      timeout =
          std::min(timeout, std::chrono::duration_cast<core::Millis>(*next - SteadyClock::now()) +
                                core::Millis(1));
    }
  }
  if (auto interval = systemd::watchdog_interval()) {
    timeout = std::min(timeout, std::chrono::duration_cast<core::Millis>(
                                    last_watchdog_ + *interval - SteadyClock::now()));
  }
  for (const auto& query : log_queries_) {
    timeout = std::min(
        timeout, std::chrono::duration_cast<core::Millis>(query.deadline - SteadyClock::now()) +
                     core::Millis(1));
  }
  for (const auto& waiter : status_waiters_) {
    timeout = std::min(
        timeout, std::chrono::duration_cast<core::Millis>(waiter.deadline - SteadyClock::now()) +
                     core::Millis(1));
  }
  auto next_beat = last_heartbeat_ + options_.config.broker.heartbeat_interval;
  timeout =
      std::min(timeout, std::chrono::duration_cast<core::Millis>(next_beat - SteadyClock::now()));
  return std::clamp(timeout, core::Millis(0), core::Millis(1000));
}

Result<void> Broker::run() {
  while (!stopping_) turn();
  log_->info("broker stopping");
  // Running tasks go back to the queue without using an attempt: nobody failed.
  for (const auto& worker : scheduler_->workers()) scheduler_->worker_gone(worker.id, now_ms());
  apply_outbox();
  commit_and_acknowledge();
  answer_status_waiters(/*all=*/true);
  answer_log_queries(/*all=*/true);
  if (supervisor_) supervisor_->stop(std::chrono::seconds(5));
  log_->info("broker stopped");
  return {};
}

void Broker::turn() {
  zmq::pollitem_t items[] = {
      {clients_.handle(), 0, ZMQ_POLLIN, 0},
      {workers_.handle(), 0, ZMQ_POLLIN, 0},
      {nullptr, signal_fd_, ZMQ_POLLIN, 0},
      {nullptr, watcher_ ? watcher_->fd() : -1, ZMQ_POLLIN, 0},
      {nullptr, backup_ ? backup_->event_fd : -1, ZMQ_POLLIN, 0},
  };
  try {
    zmq::poll(items, 5, poll_timeout());
  } catch (const zmq::error_t& e) {
    if (e.num() != EINTR) log_->error("poll failed reason=\"{}\"", e.what());
  }
  if (items[2].revents & ZMQ_POLLIN) {
    signalfd_siginfo info;
    bool reload = false;
    while (read(signal_fd_, &info, sizeof(info)) == sizeof(info)) {
      if (info.ssi_signo == SIGTERM || info.ssi_signo == SIGINT) {
        log_->info("signal received signal={}", info.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
        if (!stopping_) systemd::notify_stopping();
        stopping_ = true;
      } else if (info.ssi_signo == SIGHUP) {
        reload = true;
      }
    }
    if (reload && !stopping_) reload_config();
  }
  if (backup_ && (items[4].revents & ZMQ_POLLIN)) finish_backup();
  if (watcher_ && (items[3].revents & ZMQ_POLLIN)) watcher_->on_readable(SteadyClock::now());
  drain_workers();
  drain_clients();
  if (watch_retry_at_ && SteadyClock::now() >= *watch_retry_at_ && !stopping_) {
    if (auto ok = start_watching(); ok) {
      watch_retry_at_.reset();
    } else {
      watch_retry_at_ = SteadyClock::now() + kWatchRetry;
    }
  }
  if (watcher_ && !stopping_) publish_settled();
  if (auto interval = systemd::watchdog_interval();
      interval && SteadyClock::now() - last_watchdog_ >= *interval) {
    last_watchdog_ = SteadyClock::now();
    systemd::notify_watchdog();
  }
  if (zap_ && zap_->refused() != zap_refused_logged_ &&
      SteadyClock::now() - last_zap_log_ > std::chrono::seconds(10)) {
    last_zap_log_ = SteadyClock::now();
    zap_refused_logged_ = zap_->refused();
    log_->warn("connection refused reason=\"{}\" total_refused={}", zap_->last_refused(),
               zap_refused_logged_);
  }
  if (options_.config.broker.keep_finished.count() > 0 && !stopping_ &&
      SteadyClock::now() >= next_retention_sweep_) {
    forget_finished();
  }
  core::Millis now = now_ms();
  scheduler_->tick(now);
  redispatch_ = false;
  if (!stopping_) send_dispatches(scheduler_->dispatch(now));
  apply_outbox();
  commit_and_acknowledge();
  answer_status_waiters(/*all=*/false);
  answer_log_queries(/*all=*/false);
  send_heartbeats();
  if (supervisor_ && !stopping_) supervisor_->maintain(SteadyClock::now());
}

void Broker::note_bad_message(const char* socket, const std::string& reason) {
  ++bad_messages_;
  auto now = SteadyClock::now();
  // One line per burst: a hostile client must not be able to flood the journal.
  if (now - last_bad_log_ > std::chrono::seconds(10)) {
    last_bad_log_ = now;
    log_->warn("bad message dropped socket={} reason=\"{}\" total_dropped={}", socket, reason,
               bad_messages_);
  }
}

// ------------------------------------------------------------------ clients

void Broker::drain_clients() {
  for (int n = 0; n < kMaxClientMessagesPerTurn; ++n) {
    std::vector<zmq::message_t> frames;
    bool oversized = false;
    try {
      zmq::message_t frame;
      if (!clients_.recv(frame, zmq::recv_flags::dontwait)) return;
      frames.push_back(std::move(frame));
      while (frames.back().more() && frames.size() < 8) {
        zmq::message_t next;
        (void)clients_.recv(next, zmq::recv_flags::none);
        frames.push_back(std::move(next));
      }
      bool more = frames.back().more();
      while (more) {  // drain and drop the rest of an absurd multipart
        zmq::message_t rest;
        (void)clients_.recv(rest, zmq::recv_flags::none);
        more = rest.more();
        oversized = true;
      }
    } catch (const zmq::error_t& e) {
      note_bad_message("client", e.what());
      return;
    }
    // DEALER clients send [id, payload]; REQ clients [id, "", payload].
    if (oversized) {
      note_bad_message("client", "multipart message with too many frames");
    } else if (frames.size() == 2) {
      handle_client(frames[0].to_string(), false, frames[1]);
    } else if (frames.size() == 3 && frames[1].size() == 0) {
      handle_client(frames[0].to_string(), true, frames[2]);
    } else {
      note_bad_message("client", fmt::format("unexpected {}-frame message", frames.size()));
    }
  }
}

void Broker::handle_client(const std::string& routing_id, bool req_envelope,
                           const zmq::message_t& payload) {
  // Every reply waits for the end of the turn: writes must be committed before
  // they are acknowledged, and reads then never overtake them.
  wire::ClientRequest request;
  wire::ClientReply reply;
  if (auto ok = common::parse_message(payload.data(), payload.size(),
                                      options_.config.broker.max_client_message_bytes, request);
      !ok) {
    note_bad_message("client", ok.error().reason);
    set_error(reply, ok.error());
  } else {
    reply.set_request_id(request.request_id());
    reply.set_ok(true);
    try {
      if (request.version() != common::kProtocolVersion) {
        set_error(reply, Error{ErrorCode::kInvalidArgument,
                               fmt::format("protocol version {} not supported (broker speaks {})",
                                           request.version(), common::kProtocolVersion)});
      } else {
        switch (request.body_case()) {
          case wire::ClientRequest::kSubmit:
            handle_submit(request.submit(), reply);
            break;
          case wire::ClientRequest::kStatus:
            handle_status(request.status(), reply);
            if (hold_status({routing_id, req_envelope, reply}, request.status())) return;
            break;
          case wire::ClientRequest::kList:
            handle_list(request.list(), reply);
            break;
          case wire::ClientRequest::kAction:
            handle_action(request.action(), reply);
            break;
          case wire::ClientRequest::kWorkers:
            handle_workers(reply);
            break;
          case wire::ClientRequest::kLogs:
            handle_logs(request.logs(), reply);
            // Running tasks' logs so far come from their workers; answered then.
            if (ask_running_logs({routing_id, req_envelope, reply}, request.logs())) return;
            break;
          case wire::ClientRequest::kPublish:
            handle_publish(request.publish(), reply);
            break;
          case wire::ClientRequest::kEvents:
            handle_events(request.events(), reply);
            break;
          case wire::ClientRequest::kBackup:
            // Answered when the copy is done, from its own thread's completion.
            if (handle_backup(routing_id, req_envelope, request.backup(), reply)) return;
            break;
          default:
            note_bad_message("client", "request without a body");
            set_error(reply, Error{ErrorCode::kInvalidArgument, "request without a body"});
        }
      }
    } catch (const std::exception& e) {
      log_->error("client request failed reason=\"{}\"", e.what());
      set_error(reply, Error{ErrorCode::kInternal, fmt::format("internal error: {}", e.what())});
    }
  }
  pending_replies_.push_back({routing_id, req_envelope, std::move(reply)});
}

void Broker::handle_submit(const wire::SubmitRequest& request, wire::ClientReply& reply) {
  wire::JobSpec spec = request.spec();
  auto reject = [&](ErrorCode code, std::string reason) {
    set_error(reply, Error{code, std::move(reason)});
  };
  if (!spec.idempotency_key().empty()) {
    if (auto it = idempotency_keys_.find(spec.idempotency_key()); it != idempotency_keys_.end()) {
      reply.mutable_submit()->set_job_id(it->second);
      reply.mutable_submit()->set_duplicate(true);
      if (auto view = scheduler_->job(it->second)) {
        reply.mutable_submit()->set_task_count(view->task_count);
      }
      return;
    }
    if (spec.idempotency_key().size() > 256) {
      return reject(ErrorCode::kInvalidArgument, "idempotency key longer than 256 bytes");
    }
  }
  auto id = create_job(std::move(spec));
  if (!id) return reject(id.error().code, id.error().reason);
  auto view = scheduler_->job(*id);
  reply.mutable_submit()->set_job_id(*id);
  reply.mutable_submit()->set_task_count(view ? view->task_count : 0);
}

Result<core::JobId> Broker::create_job(wire::JobSpec spec, const common::FrameSet* on_disk) {
  auto reject = [](ErrorCode code, std::string reason) -> Result<core::JobId> {
    return fail(code, std::move(reason));
  };
  if (!spec.lane().empty() && spec.lane() != "batch" && spec.lane() != "interactive") {
    return reject(ErrorCode::kInvalidArgument,
                  fmt::format("unknown lane '{}' (batch, interactive)", printable(spec.lane())));
  }
  if (spec.lane() == "interactive" && !is_media_kind(spec.kind())) {
    return reject(ErrorCode::kInvalidArgument,
                  "only thumbnail, convert and transcode jobs may use the interactive lane");
  }
  if (spec.kind() == "noop") {
    if (spec.frames().empty()) {
      if (spec.tasks() == 0) return reject(ErrorCode::kInvalidArgument, "noop job needs --tasks N");
      spec.set_frames(fmt::format("1-{}", spec.tasks()));
    }
    if (!spec.command_template().empty() || spec.params_size() > 0) {
      return reject(ErrorCode::kInvalidArgument, "noop jobs take no template or params");
    }
  } else if (spec.kind() == "command") {
    if (spec.frames().empty())
      return reject(ErrorCode::kInvalidArgument, "command job needs --frames");
    auto it = options_.config.commands.find(spec.command_template());
    if (it == options_.config.commands.end()) {
      std::string known;
      for (const auto& [name, t] : options_.config.commands)
        known += (known.empty() ? "" : ", ") + name;
      return reject(ErrorCode::kInvalidArgument,
                    fmt::format("unknown command template '{}' (configured: {})",
                                spec.command_template(), known.empty() ? "none" : known));
    }
    std::map<std::string, std::string> params(spec.params().begin(), spec.params().end());
    auto validated = common::validate_params(it->second, params);
    if (!validated) return reject(validated.error().code, validated.error().reason);
    spec.mutable_params()->clear();
    for (const auto& [k, v] : *validated) (*spec.mutable_params())[k] = v;
  } else if (is_media_kind(spec.kind())) {
    if (!spec.command_template().empty()) {
      return reject(ErrorCode::kInvalidArgument, "media jobs take no command template");
    }
    if (auto ok = prepare_media_job(spec, on_disk); !ok) {
      return reject(ok.error().code, ok.error().reason);
    }
    if (auto ok = check_media_paths(spec, options_.config.broker.allowed_roots); !ok) {
      return reject(ok.error().code, ok.error().reason);
    }
  } else {
    return reject(
        ErrorCode::kInvalidArgument,
        fmt::format("unknown job kind '{}' (noop, command, thumbnail, convert, transcode)",
                    spec.kind()));
  }
  if (spec.labels_size() > static_cast<int>(kMaxLabels)) {
    return reject(ErrorCode::kInvalidArgument, fmt::format("more than {} labels", kMaxLabels));
  }
  for (const auto& [k, v] : spec.labels()) {
    if (k.empty() || k.size() + v.size() > kMaxLabelBytes) {
      return reject(ErrorCode::kInvalidArgument, fmt::format("bad label '{}'", k.substr(0, 64)));
    }
  }
  if (spec.name().size() > 256)
    return reject(ErrorCode::kInvalidArgument, "job name over 256 bytes");
  if (spec.chunk() == 0) spec.set_chunk(1);
  if (spec.lane() == "interactive" && spec.chunk() > kMaxInteractiveTaskFrames) {
    // The reserved slots are for short work: a long movie there would hold back
    // the thumbnails of every publish behind it. It runs in the batch lane.
    log_->info(
        "job moved to the batch lane kind={} name=\"{}\" reason=\"a task of {} frames is "
        "over the interactive lane's {}\"",
        spec.kind(), spec.name(), spec.chunk(), kMaxInteractiveTaskFrames);
    spec.set_lane("batch");
  }
  auto core_spec = to_core_spec(spec);
  if (!core_spec) return reject(core_spec.error().code, core_spec.error().reason);
  auto id = scheduler_->submit(std::move(*core_spec), now_ms(), /*durable=*/false);
  if (!id) return fail(id.error());
  uncommitted_jobs_.push_back(*id);

  JobRow row;
  row.id = *id;
  row.spec = spec.SerializeAsString();
  row.submitted_unix_ms = unix_ms_now();
  row.idempotency_key = spec.idempotency_key();
  batch_.new_jobs.push_back(std::move(row));
  if (!spec.idempotency_key().empty()) idempotency_keys_[spec.idempotency_key()] = *id;
  auto view = scheduler_->job(*id);
  log_->info("job accepted job={} kind={} tasks={} priority={} lane={}", *id, spec.kind(),
             view ? view->task_count : 0, spec.priority(),
             spec.lane().empty() ? "batch" : spec.lane());
  extras_[*id] = JobExtra{std::move(spec), unix_ms_now()};
  return *id;
}

void Broker::fill_summary(core::JobId id, wire::JobSummary& summary) const {
  auto view = scheduler_->job(id);
  const core::JobSpec* spec = scheduler_->job_spec(id);
  auto extra = extras_.find(id);
  if (!view || !spec || extra == extras_.end()) return;
  const wire::JobSpec& wspec = extra->second.spec;
  summary.set_id(id);
  summary.set_name(!wspec.name().empty() ? wspec.name()
                   : wspec.command_template().empty()
                       ? wspec.kind()
                       : wspec.kind() + " " + wspec.command_template());
  summary.set_kind(wspec.kind());
  summary.set_state(to_wire(view->state));
  summary.set_priority(spec->priority);
  summary.set_pool(spec->pool);
  summary.set_frames(spec->frames.to_string());
  summary.set_chunk(spec->chunk);
  summary.set_task_count(view->task_count);
  for (int i = 0; i < core::kTaskStateCount; ++i) {
    auto state = static_cast<core::TaskState>(i);
    if (state == core::TaskState::kBackoff) continue;
    (*summary.mutable_counts())[std::string(core::task_state_name(state))] = view->counts[i];
  }
  summary.set_submitted_unix_ms(extra->second.submitted_unix_ms);
  summary.mutable_labels()->insert(wspec.labels().begin(), wspec.labels().end());
  summary.set_max_attempts(spec->max_attempts);
  summary.set_timeout_s(static_cast<uint32_t>(spec->timeout.count()));
  for (core::JobId up : spec->after) summary.add_after(up);
  summary.set_after_frames(spec->after_frames);
  summary.set_lane(spec->interactive ? "interactive" : "batch");
  if (auto it = wspec.labels().find("event"); it != wspec.labels().end()) {
    summary.set_event_id(it->second);
  }
}

void Broker::handle_status(const wire::StatusRequest& request, wire::ClientReply& reply) {
  core::JobId id = request.job_id();
  if (!scheduler_->job(id)) {
    return set_error(reply, Error{ErrorCode::kNotFound, fmt::format("unknown job {}", id)});
  }
  auto* status = reply.mutable_status();
  fill_summary(id, *status->mutable_job());
  core::Millis now = now_ms();
  for (const auto& r : scheduler_->running_tasks(id, kMaxRunningShown)) {
    auto* t = status->add_running();
    t->set_index(r.task);
    t->set_state(wire::TASK_RUNNING);
    t->set_frames(scheduler_->task_frames(id, r.task).to_string());
    t->set_attempts(r.attempt);
    t->set_worker(r.worker);
    t->set_running_s(static_cast<double>((now - r.started).count()) / 1000.0);
    if (auto p = progress_.find({id, r.task}); p != progress_.end()) {
      t->set_progress_done(p->second.first);
      t->set_progress_total(p->second.second);
    }
  }
  for (const auto& e : scheduler_->last_errors(id)) {
    auto* t = status->add_last_errors();
    t->set_index(e.task);
    t->set_state(to_wire(e.state));
    t->set_frames(scheduler_->task_frames(id, e.task).to_string());
    t->set_attempts(e.attempts);
    t->set_error(e.error);
  }
  status->set_version(job_version(id));
  if (request.tasks()) {
    uint32_t limit = request.tasks_limit() == 0 ? kDefaultTaskPage
                                                : std::min(request.tasks_limit(), kMaxTaskPage);
    std::optional<core::TaskState> filter;
    if (request.tasks_state() != wire::TASK_STATE_UNSPECIFIED) {
      filter = from_wire(request.tasks_state());
    }
    for (const auto& v : scheduler_->tasks(id, request.tasks_offset(), limit, filter)) {
      auto* t = status->add_tasks();
      t->set_index(v.task);
      t->set_state(to_wire(v.state));
      t->set_frames(scheduler_->task_frames(id, v.task).to_string());
      t->set_attempts(v.attempts);
      t->set_error(v.error);
    }
  }
}

Result<void> Broker::secure_endpoints() {
  const auto& broker = options_.config.broker;
  const bool workers = !broker.worker_curve_secret_key_file.empty();
  const bool clients = !broker.client_curve_secret_key_file.empty();
  if (!workers && !clients) return {};
  if (!common::curve_available()) {
    return fail(ErrorCode::kInternal, "CurveZMQ is configured but libzmq has no CURVE support");
  }
  if (workers && options_.local_workers > 0) {
    auto pair = common::curve_keypair();
    if (!pair) return fail(pair.error());
    local_worker_key_ = *pair;
  }
  zap_ = std::make_unique<ZapHandler>(context_);
  if (auto ok = zap_->start(); !ok) return ok;
  // Each secured socket: its server key, and the keys its ZAP domain admits.
  auto secure = [&](zmq::socket_t& socket, const char* domain, const std::string& secret_file,
                    const std::string& keys_dir, std::string& server_public) -> Result<void> {
    auto secret = common::read_curve_key_file(secret_file);
    if (!secret) return fail(secret.error());
    auto public_key = common::curve_public_key(*secret);
    if (!public_key) {
      return fail(ErrorCode::kInvalidArgument,
                  fmt::format("{}: {}", secret_file, public_key.error().reason));
    }
    server_public = *public_key;
    auto admitted = load_authorized_keys(domain);
    if (!admitted) return fail(admitted.error());  // fail closed: no broker without its keys
    socket.set(zmq::sockopt::curve_server, true);
    socket.set(zmq::sockopt::curve_secretkey, *secret);
    socket.set(zmq::sockopt::zap_domain, domain);
    log_->info("{} endpoint secured with CurveZMQ server_key={} authorized_keys={} dir={}",
               domain == std::string_view(ZapHandler::kWorkers) ? "worker" : "client",
               server_public, *admitted, keys_dir);
    return {};
  };
  if (workers) {
    if (auto ok = secure(workers_, ZapHandler::kWorkers, broker.worker_curve_secret_key_file,
                         broker.worker_authorized_keys_dir, curve_server_public_);
        !ok) {
      return ok;
    }
  }
  if (clients) {
    std::string client_public;
    if (auto ok = secure(clients_, ZapHandler::kClients, broker.client_curve_secret_key_file,
                         broker.client_authorized_keys_dir, client_public);
        !ok) {
      return ok;
    }
  }
  return {};
}

Result<size_t> Broker::load_authorized_keys(const char* domain) {
  const bool workers = domain == std::string_view(ZapHandler::kWorkers);
  const std::string& dir = workers ? options_.config.broker.worker_authorized_keys_dir
                                   : options_.config.broker.client_authorized_keys_dir;
  size_t skipped = 0;
  auto keys = common::read_authorized_keys(dir, &skipped);
  if (!keys) return fail(keys.error());
  if (skipped > 0) {
    log_->warn("authorised keys: {} file(s) in {} hold no CURVE public key and were skipped",
               skipped, dir);
  }
  const size_t count = keys->size();
  if (workers && local_worker_key_) keys->insert(local_worker_key_->public_key);
  zap_->set_keys(domain, std::move(*keys));
  return count;
}

void Broker::note_finished(core::JobId id, int64_t unix_ms) {
  auto x = extras_.find(id);
  if (x == extras_.end()) return;
  x->second.finished_unix_ms = unix_ms;
  batch_.finished.emplace_back(id, unix_ms);
}

void Broker::forget_finished() {
  const auto keep = options_.config.broker.keep_finished;
  const auto sweep_every = std::clamp<std::chrono::milliseconds>(keep / 10, std::chrono::seconds(1),
                                                                 std::chrono::seconds(60));
  next_retention_sweep_ = SteadyClock::now() + sweep_every;
  const int64_t cutoff = unix_ms_now() - keep.count();

  // Newest first: a dependant goes before the job it depends on, so a whole
  // finished chain goes in one sweep.
  size_t jobs = 0;
  const std::vector<core::JobId> ids = scheduler_->job_ids();
  for (auto it = ids.rbegin(); it != ids.rend(); ++it) {
    if (jobs == kMaxForgetPerSweep) {
      next_retention_sweep_ = SteadyClock::now();  // the rest next turn
      break;
    }
    auto x = extras_.find(*it);
    if (x == extras_.end() || x->second.finished_unix_ms == 0 ||
        x->second.finished_unix_ms > cutoff || !scheduler_->forget(*it)) {
      continue;
    }
    if (auto key = idempotency_keys_.find(x->second.spec.idempotency_key());
        key != idempotency_keys_.end() && key->second == *it) {
      idempotency_keys_.erase(key);
    }
    progress_.erase(progress_.lower_bound({*it, 0}), progress_.lower_bound({*it + 1, 0}));
    extras_.erase(x);
    batch_.forgotten_jobs.push_back(*it);
    ++jobs;
  }

  // Events, once old and with every job gone (new, uncommitted ones are never old).
  const size_t before = events_.size();
  std::erase_if(events_, [&](const wire::EventInfo& event) {
    if (event.received_unix_ms() > cutoff) return false;
    for (uint64_t job : event.job_ids()) {
      if (scheduler_->job(job)) return false;
    }
    batch_.forgotten_events.push_back(event.event_id());
    return true;
  });
  const size_t events = before - events_.size();
  if (events > 0) {
    event_index_.clear();
    for (size_t i = 0; i < events_.size(); ++i) event_index_[events_[i].event_id()] = i;
  }
  if (jobs > 0 || events > 0) {
    log_->info("finished work forgotten jobs={} events={} keep_finished_days={:g}", jobs, events,
               static_cast<double>(keep.count()) / 86'400'000.0);
  }
}

uint64_t Broker::job_version(core::JobId id) const {
  // FNV-1a over the fields a follower shows: state, task counts, the running
  // tasks with their attempt, worker and progress, and the recent errors.
  uint64_t h = 0xcbf29ce484222325ULL;
  auto mix = [&h](uint64_t v) {
    for (int i = 0; i < 8; ++i, v >>= 8) {
      h ^= v & 0xff;
      h *= 0x100000001b3ULL;
    }
  };
  auto view = scheduler_->job(id);
  if (!view) return 1;
  mix(static_cast<uint64_t>(view->state));
  mix((view->paused ? 1 : 0) | (view->cancelled ? 2 : 0));
  for (uint64_t count : view->counts) mix(count);
  for (const auto& r : scheduler_->running_tasks(id, kMaxRunningShown)) {
    mix(r.task);
    mix(r.attempt);
    mix(std::hash<std::string>{}(r.worker));
    if (auto p = progress_.find({id, r.task}); p != progress_.end()) {
      mix(p->second.first);
      mix(p->second.second);
    }
  }
  for (const auto& e : scheduler_->last_errors(id)) {
    mix(e.task);
    mix(e.attempts);
    mix(static_cast<uint64_t>(e.state));
  }
  return h == 0 ? 1 : h;
}

bool Broker::hold_status(const PendingReply& pending, const wire::StatusRequest& request) {
  if (request.wait_ms() == 0 || request.seen_version() == 0 || stopping_) return false;
  const auto& reply = pending.reply;
  if (!reply.ok() || !reply.has_status()) return false;
  if (reply.status().version() != request.seen_version()) return false;
  // A finished job will not change by itself (a retry would be news, but nobody waits for it).
  const wire::JobState state = reply.status().job().state();
  if (state == wire::JOB_SUCCEEDED || state == wire::JOB_FAILED || state == wire::JOB_CANCELLED) {
    return false;
  }
  if (status_waiters_.size() >= kMaxStatusWaiters) return false;
  StatusWaiter waiter;
  waiter.pending.routing_id = pending.routing_id;
  waiter.pending.req_envelope = pending.req_envelope;
  waiter.pending.reply.set_request_id(reply.request_id());
  waiter.request = request;
  waiter.deadline =
      SteadyClock::now() + std::chrono::milliseconds(std::min(request.wait_ms(), kMaxStatusWaitMs));
  status_waiters_.push_back(std::move(waiter));
  return true;
}

void Broker::answer_status_waiters(bool all) {
  if (status_waiters_.empty()) return;
  const auto now = SteadyClock::now();
  std::erase_if(status_waiters_, [&](StatusWaiter& waiter) {
    if (!all && now < waiter.deadline &&
        job_version(waiter.request.job_id()) == waiter.request.seen_version()) {
      return false;
    }
    PendingReply& pending = waiter.pending;
    pending.reply.set_ok(true);
    handle_status(waiter.request, pending.reply);
    send_reply(pending);
    return true;
  });
}

void Broker::handle_list(const wire::ListRequest& request, wire::ClientReply& reply) {
  uint32_t limit = request.limit() == 0 ? 1000 : request.limit();
  auto ids = scheduler_->job_ids();
  std::vector<core::JobId> shown;
  for (auto it = ids.rbegin(); it != ids.rend() && shown.size() < limit; ++it) {
    if (request.state() != wire::JOB_STATE_UNSPECIFIED) {
      auto view = scheduler_->job(*it);
      if (!view || to_wire(view->state) != request.state()) continue;
    }
    shown.push_back(*it);
  }
  auto* list = reply.mutable_list();
  for (auto it = shown.rbegin(); it != shown.rend(); ++it) fill_summary(*it, *list->add_jobs());
}

void Broker::handle_action(const wire::JobActionRequest& request, wire::ClientReply& reply) {
  core::Millis now = now_ms();
  Result<uint64_t> changed = fail(ErrorCode::kInvalidArgument, "unknown action");
  const char* verb = "";
  switch (request.action()) {
    case wire::JobActionRequest::CANCEL:
      changed = scheduler_->cancel(request.job_id(), now);
      verb = "cancelled";
      break;
    case wire::JobActionRequest::RETRY:
      changed = scheduler_->retry(request.job_id(), now);
      verb = "retried";
      break;
    case wire::JobActionRequest::PAUSE:
      changed = scheduler_->pause(request.job_id(), now);
      verb = "paused";
      break;
    case wire::JobActionRequest::RESUME:
      changed = scheduler_->resume(request.job_id(), now);
      verb = "resumed";
      break;
    default:
      break;
  }
  if (!changed) return set_error(reply, changed.error());
  auto view = scheduler_->job(request.job_id());
  if (auto x = extras_.find(request.job_id()); x != extras_.end() && x->second.finished_unix_ms &&
                                               view && view->state != core::JobState::kSucceeded &&
                                               view->state != core::JobState::kFailed &&
                                               view->state != core::JobState::kCancelled) {
    note_finished(request.job_id(), 0);  // a retry reopened it
  }
  reply.mutable_action()->set_state(view ? to_wire(view->state) : wire::JOB_STATE_UNSPECIFIED);
  reply.mutable_action()->set_tasks_changed(*changed);
  log_->info("job {} job={} tasks={}", verb, request.job_id(), *changed);
}

void Broker::handle_workers(wire::ClientReply& reply) {
  core::Millis now = now_ms();
  auto* out = reply.mutable_workers();
  for (const auto& w : scheduler_->workers()) {
    auto* info = out->add_workers();
    info->set_name(w.spec.name);
    info->set_slots(w.spec.slots);
    info->set_interactive_slots(w.spec.interactive_slots);
    for (const auto& tag : w.spec.tags) info->add_tags(tag);
    info->set_alive(w.alive);
    info->set_last_beat_s(static_cast<double>((now - w.last_seen).count()) / 1000.0);
    if (auto route = routes_.find(w.id); route != routes_.end()) {
      if (auto peer = peers_.find(route->second); peer != peers_.end()) {
        info->set_host(peer->second.host);
        info->set_pid(peer->second.pid);
      }
    }
    for (const auto& ref : w.running) {
      auto* t = info->add_running();
      t->set_index(ref.task);
      t->set_state(wire::TASK_RUNNING);
      t->set_job_id(ref.job);
      t->set_frames(scheduler_->task_frames(ref.job, ref.task).to_string());
    }
  }
}

void Broker::handle_logs(const wire::LogsRequest& request, wire::ClientReply& reply) {
  if (!scheduler_->job(request.job_id())) {
    return set_error(reply,
                     Error{ErrorCode::kNotFound, fmt::format("unknown job {}", request.job_id())});
  }
  std::optional<core::TaskIndex> task;
  if (request.task() >= 0) task = static_cast<core::TaskIndex>(request.task());
  auto logs = store_->logs(request.job_id(), task);
  if (!logs) return set_error(reply, logs.error());
  reply.mutable_logs();  // the body, even when no task has a log yet
  for (const auto& row : *logs) {
    auto* log = reply.mutable_logs()->add_logs();
    log->set_task(row.task);
    log->set_attempt(row.attempt);
    log->set_worker(row.worker);
    log->set_text(row.text);
    log->set_error(row.error);
  }
}

bool Broker::ask_running_logs(const PendingReply& pending, const wire::LogsRequest& request) {
  if (!pending.reply.ok() || stopping_ || log_queries_.size() >= kMaxLogQueries) return false;
  // Which worker session runs what, by worker name.
  std::unordered_map<std::string, const std::string*> route_of;
  for (const auto& [rid, peer] : peers_) route_of[scheduler_->worker_name(peer.id)] = &rid;
  LogQuery query;
  query.pending = pending;
  query.deadline = SteadyClock::now() + kLogQueryTimeout;
  for (const auto& r : scheduler_->running_tasks(request.job_id(), kMaxRunningLogs)) {
    if (request.task() >= 0 && r.task != static_cast<uint64_t>(request.task())) continue;
    auto route = route_of.find(r.worker);
    if (route == route_of.end()) continue;
    const uint64_t id = ++next_log_request_;
    wire::BrokerMessage ask;
    auto* log = ask.mutable_log();
    log->set_request_id(id);
    log->set_job_id(request.job_id());
    log->set_task(r.task);
    log->set_max_bytes(static_cast<uint32_t>(kMaxLogTailBytes));
    if (!common::send_routed(workers_, *route->second, ask)) continue;
    query.asked[id] = {request.job_id(), r.task, r.attempt, r.worker};
  }
  if (query.asked.empty()) return false;
  log_queries_.push_back(std::move(query));
  return true;
}

void Broker::on_log_reply(const wire::LogReply& log) {
  for (auto it = log_queries_.begin(); it != log_queries_.end(); ++it) {
    auto asked = it->asked.find(log.request_id());
    if (asked == it->asked.end()) continue;
    // A worker answers only for what it was asked; anything else is ignored.
    if (log.running() && log.job_id() == asked->second.job && log.task() == asked->second.task) {
      auto* out = it->pending.reply.mutable_logs()->add_logs();
      out->set_task(asked->second.task);
      out->set_attempt(asked->second.attempt);
      out->set_worker(asked->second.worker);
      const std::string& text = log.text();
      out->set_text(
          text.substr(text.size() > kMaxLogTailBytes ? text.size() - kMaxLogTailBytes : 0));
      out->set_running(true);
    }
    it->asked.erase(asked);
    if (it->asked.empty()) {
      send_reply(it->pending);
      log_queries_.erase(it);
    }
    return;
  }
}

void Broker::answer_log_queries(bool all) {
  const auto now = SteadyClock::now();
  std::erase_if(log_queries_, [&](LogQuery& query) {
    if (!all && now < query.deadline) return false;
    send_reply(query.pending);  // what came in time; silent workers' tasks are left out
    return true;
  });
}

// ------------------------------------------------------------------ workers

void Broker::drain_workers() {
  for (int n = 0; n < kMaxWorkerMessagesPerTurn; ++n) {
    zmq::message_t id;
    zmq::message_t payload;
    try {
      if (!workers_.recv(id, zmq::recv_flags::dontwait)) return;
      if (!id.more()) {
        note_bad_message("worker", "message without payload");
        continue;
      }
      (void)workers_.recv(payload, zmq::recv_flags::none);
      bool extra = payload.more();
      while (payload.more()) {
        zmq::message_t rest;
        (void)workers_.recv(rest, zmq::recv_flags::none);
        if (!rest.more()) break;
      }
      if (extra) {
        note_bad_message("worker", "unexpected multipart message");
        continue;
      }
    } catch (const zmq::error_t& e) {
      note_bad_message("worker", e.what());
      return;
    }
    try {
      handle_worker(id.to_string(), payload);
    } catch (const std::exception& e) {
      log_->error("worker message failed reason=\"{}\"", e.what());
    }
  }
}

void Broker::handle_worker(const std::string& routing_id, const zmq::message_t& payload) {
  wire::WorkerMessage msg;
  if (auto ok = common::parse_message(payload.data(), payload.size(),
                                      options_.config.broker.max_worker_message_bytes, msg);
      !ok) {
    note_bad_message("worker", ok.error().reason);
    return;
  }
  core::Millis now = now_ms();
  if (msg.body_case() == wire::WorkerMessage::kReady) {
    const auto& ready = msg.ready();
    if (ready.version() != common::kProtocolVersion) {
      note_bad_message("worker", fmt::format("protocol version {} from worker {}", ready.version(),
                                             ready.name().substr(0, 64)));
      return;
    }
    if (ready.name().empty() || ready.name().size() > 256) {
      note_bad_message("worker", "ready without a usable name");
      return;
    }
    if (auto old = peers_.find(routing_id); old != peers_.end()) routes_.erase(old->second.id);
    WorkerPeer peer;
    peer.id = next_worker_id_++;
    peer.host = ready.host().substr(0, 256);
    peer.pid = ready.pid();
    peers_[routing_id] = peer;
    routes_[peer.id] = routing_id;
    core::WorkerSpec spec;
    spec.name = ready.name();
    spec.slots = std::clamp<uint32_t>(ready.slots(), 1, 4096);
    spec.interactive_slots = std::min<uint32_t>(ready.interactive_slots(), 64);
    for (const auto& tag : ready.tags()) spec.tags.push_back(tag);
    std::vector<core::TaskRef> running;
    for (const auto& r : ready.running()) {
      running.push_back({r.job_id(), static_cast<core::TaskIndex>(r.task()), r.lease()});
    }
    scheduler_->worker_ready(peer.id, std::move(spec), running, now);
    // Forget sessions the scheduler dropped (the same worker's earlier connection).
    for (auto it = routes_.begin(); it != routes_.end();) {
      if (!scheduler_->knows_worker(it->first)) {
        peers_.erase(it->second);
        it = routes_.erase(it);
      } else {
        ++it;
      }
    }
    wire::BrokerMessage welcome;
    welcome.mutable_welcome()->set_heartbeat_ms(
        static_cast<uint32_t>(options_.config.broker.heartbeat_interval.count()));
    welcome.mutable_welcome()->set_lease_ttl_ms(
        static_cast<uint32_t>(options_.config.broker.lease_ttl.count()));
    common::send_routed(workers_, routing_id, welcome);
    return;
  }
  auto peer_it = peers_.find(routing_id);
  if (peer_it == peers_.end() || !scheduler_->knows_worker(peer_it->second.id)) {
    // A worker from before our restart, or one we forgot: it must introduce itself.
    wire::BrokerMessage reconnect;
    reconnect.mutable_reconnect();
    common::send_routed(workers_, routing_id, reconnect);
    return;
  }
  core::WorkerId worker = peer_it->second.id;
  scheduler_->worker_seen(worker, now);
  switch (msg.body_case()) {
    case wire::WorkerMessage::kHeartbeat:
      break;
    case wire::WorkerMessage::kRenew:
      for (const auto& r : msg.renew().tasks()) {
        core::TaskRef ref{r.job_id(), static_cast<core::TaskIndex>(r.task()), r.lease()};
        if (!scheduler_->renew_lease(worker, ref, now)) {
          wire::BrokerMessage cancel;
          *cancel.mutable_cancel()->mutable_ref() = r;
          cancel.mutable_cancel()->set_reason("lease no longer held");
          common::send_routed(workers_, routing_id, cancel);
        }
      }
      break;
    case wire::WorkerMessage::kResult: {
      const auto& result = msg.result();
      core::TaskRef ref{result.ref().job_id(), static_cast<core::TaskIndex>(result.ref().task()),
                        result.ref().lease()};
      Error error{error_code_from_name(result.error_code()), result.error().substr(0, 1024)};
      auto verdict = scheduler_->task_result(worker, ref, result.succeeded(), error, now);
      progress_.erase({ref.job, ref.task});
      if (verdict == core::ResultVerdict::kAccepted &&
          (!result.log_tail().empty() || !result.error().empty())) {
        LogRow row;
        row.job = ref.job;
        row.task = ref.task;
        row.attempt = result.attempt();
        row.worker = scheduler_->worker_name(worker);
        row.error = error.reason;
        row.text = result.log_tail().substr(result.log_tail().size() > kMaxLogTailBytes
                                                ? result.log_tail().size() - kMaxLogTailBytes
                                                : 0);
        batch_.logs.push_back(std::move(row));
      }
      *pending_acks_[routing_id].add_tasks() = result.ref();
      break;
    }
    case wire::WorkerMessage::kLog:
      on_log_reply(msg.log());
      break;
    case wire::WorkerMessage::kProgress: {
      const auto& p = msg.progress();
      progress_[{p.ref().job_id(), p.ref().task()}] = {p.done(), p.total()};
      break;
    }
    case wire::WorkerMessage::kDisconnect:
      scheduler_->worker_gone(worker, now);
      routes_.erase(worker);
      peers_.erase(peer_it);
      break;
    default:
      note_bad_message("worker", "message without a body");
  }
}

void Broker::send_dispatches(const std::vector<core::Dispatch>& dispatches) {
  core::Millis now = now_ms();
  for (const auto& d : dispatches) {
    auto route = routes_.find(d.worker);
    const core::JobSpec* spec = scheduler_->job_spec(d.job);
    auto extra = extras_.find(d.job);
    if (route == routes_.end() || !spec || extra == extras_.end()) continue;
    wire::BrokerMessage msg;
    auto* assign = msg.mutable_assign();
    assign->mutable_ref()->set_job_id(d.job);
    assign->mutable_ref()->set_task(d.task);
    assign->mutable_ref()->set_lease(d.lease);
    assign->set_attempt(d.attempt);
    assign->set_kind(spec->kind);
    assign->set_timeout_s(static_cast<uint32_t>(spec->timeout.count()));
    assign->set_lease_ttl_ms(static_cast<uint32_t>(options_.config.broker.lease_ttl.count()));
    common::FrameSet frames = scheduler_->task_frames(d.job, d.task);
    if (spec->kind == "command") {
      const wire::JobSpec& wspec = extra->second.spec;
      auto tmpl = options_.config.commands.find(wspec.command_template());
      Result<std::vector<std::vector<std::string>>> argvs = fail(
          ErrorCode::kInvalidArgument,
          fmt::format("command template '{}' is no longer configured", wspec.command_template()));
      if (tmpl != options_.config.commands.end()) {
        std::map<std::string, std::string> params(wspec.params().begin(), wspec.params().end());
        argvs = common::expand_task(tmpl->second, params, {d.job, d.task, frames});
        assign->mutable_env()->insert(tmpl->second.env.begin(), tmpl->second.env.end());
      }
      if (!argvs) {
        scheduler_->task_result(d.worker, {d.job, d.task, d.lease}, false, argvs.error(), now);
        continue;
      }
      for (const auto& argv : *argvs) {
        auto* a = assign->add_commands();
        for (const auto& word : argv) a->add_args(word);
      }
    }
    if (is_media_kind(spec->kind)) {
      auto request = media_request(extra->second.spec, frames);
      if (!request) {
        scheduler_->task_result(d.worker, {d.job, d.task, d.lease}, false, request.error(), now);
        continue;
      }
      assign->set_media_request(std::move(*request));
      if (spec->timeout.count() == 0) {
        assign->set_timeout_s(static_cast<uint32_t>(
            default_media_timeout(extra->second.spec, frames.size()).count()));
      }
    }
    assign->set_frames(frames.to_string());
    if (!common::send_routed(workers_, route->second, msg)) {
      log_->warn("dispatch not delivered job={} task={} worker={}", d.job, d.task,
                 scheduler_->worker_name(d.worker));
    }
    if (log_->should_log(spdlog::level::debug)) {
      log_->debug("task dispatched job={} task={} attempt={} worker={} lease={:x}", d.job, d.task,
                  d.attempt, scheduler_->worker_name(d.worker), d.lease);
    }
  }
}

void Broker::apply_outbox() {
  core::Outbox out = scheduler_->take_outbox();
  for (const auto& cancel : out.cancels) {
    auto route = routes_.find(cancel.worker);
    if (route == routes_.end()) continue;
    wire::BrokerMessage msg;
    auto* c = msg.mutable_cancel();
    c->mutable_ref()->set_job_id(cancel.ref.job);
    c->mutable_ref()->set_task(cancel.ref.task);
    c->mutable_ref()->set_lease(cancel.ref.lease);
    c->set_reason(cancel.reason);
    common::send_routed(workers_, route->second, msg);
  }
  for (const auto& n : out.notices) {
    using Kind = core::Notice::Kind;
    switch (n.kind) {
      case Kind::kJobFinished:
        log_->info("job finished job={} state={}", n.job, core::job_state_name(n.job_state));
        if (auto x = extras_.find(n.job); x != extras_.end() && x->second.finished_unix_ms == 0) {
          note_finished(n.job, unix_ms_now());
        }
        break;
      case Kind::kTaskFailed:
        log_->warn("task failed job={} task={} attempt={} reason=\"{}\"", n.job, n.task, n.attempt,
                   n.reason);
        break;
      case Kind::kTaskDead:
        log_->warn("task dead job={} task={} attempt={} reason=\"{}\"", n.job, n.task, n.attempt,
                   n.reason);
        break;
      case Kind::kLeaseExpired:
        log_->warn("lease expired job={} task={} attempt={} worker={}", n.job, n.task, n.attempt,
                   n.worker);
        break;
      case Kind::kWorkerLost:
        if (n.reason == "disconnected") {
          log_->info("worker left worker={}", n.worker);
        } else {
          log_->warn("worker lost worker={} reason={}", n.worker, n.reason);
        }
        break;
      case Kind::kWorkerJoined:
        log_->info("worker joined worker={}{}", n.worker, n.reason.empty() ? "" : " again");
        break;
    }
  }
  for (auto& change : out.tasks) batch_.task_changes.push_back(std::move(change));
  for (auto& change : out.jobs) batch_.job_changes.push_back(change);
}

void Broker::commit_and_acknowledge() {
  if (!batch_.empty()) {
    auto ok = store_->commit(batch_);
    batch_.clear();
    if (ok) {
      for (core::JobId id : uncommitted_jobs_) scheduler_->committed(id);
      // Their tasks could not go out in this turn's dispatch (they were not durable
      // yet): the next turn must come at once, not at the next message or beat.
      if (!uncommitted_jobs_.empty()) redispatch_ = true;
    } else {
      // Nothing of this turn may be acknowledged: clients get the error, workers
      // get no ack and will send their results again, and the new jobs are
      // forgotten (none of their tasks was dispatched: they were not durable).
      log_->error("state commit failed reason=\"{}\"", ok.error().reason);
      for (auto it = uncommitted_jobs_.rbegin(); it != uncommitted_jobs_.rend(); ++it) {
        if (auto extra = extras_.find(*it); extra != extras_.end()) {
          idempotency_keys_.erase(extra->second.spec.idempotency_key());
          extras_.erase(extra);
        }
        scheduler_->abandon(*it);
      }
      for (size_t n = 0; n < uncommitted_events_ && !events_.empty(); ++n) {
        event_index_.erase(events_.back().event_id());
        events_.pop_back();
      }
      for (auto& pending : pending_replies_) {
        if (pending.reply.ok() && (pending.reply.has_submit() || pending.reply.has_action() ||
                                   pending.reply.has_publish())) {
          pending.reply.clear_body();
          set_error(pending.reply,
                    Error{ErrorCode::kIo, "state store write failed: " + ok.error().reason});
        }
      }
      pending_acks_.clear();
    }
  }
  uncommitted_jobs_.clear();
  uncommitted_events_ = 0;
  for (const auto& pending : pending_replies_) send_reply(pending);
  pending_replies_.clear();
  for (auto& [rid, ack] : pending_acks_) {
    wire::BrokerMessage msg;
    *msg.mutable_ack() = std::move(ack);
    common::send_routed(workers_, rid, msg);
  }
  pending_acks_.clear();
}

void Broker::send_reply(const PendingReply& pending) {
  if (!pending.req_envelope) {
    common::send_routed(clients_, pending.routing_id, pending.reply);
    return;
  }
  try {
    clients_.send(zmq::buffer(pending.routing_id),
                  zmq::send_flags::sndmore | zmq::send_flags::dontwait);
    clients_.send(zmq::message_t(), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
    clients_.send(common::to_zmq(pending.reply), zmq::send_flags::dontwait);
  } catch (const zmq::error_t&) {
    // The client is gone; nothing to tell it.
  }
}

void Broker::send_heartbeats() {
  auto now = SteadyClock::now();
  if (now - last_heartbeat_ < options_.config.broker.heartbeat_interval) return;
  last_heartbeat_ = now;
  wire::BrokerMessage beat;
  beat.mutable_heartbeat();
  for (const auto& [rid, peer] : peers_) common::send_routed(workers_, rid, beat);
}

}  // namespace farmhand::daemon
