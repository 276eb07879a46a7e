#include "daemon/worker_link.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "common/wire.h"
#include "daemon/job_kinds.h"

namespace farmhand::daemon {

void WorkerLink::on_message(const std::string& routing_id, const void* data, size_t size,
                            Turn& turn, bool accept_results) {
  wire::WorkerMessage msg;
  if (auto ok = common::parse_message(data, size, config_.broker.max_worker_message_bytes, msg);
      !ok) {
    bad_.note("worker", ok.error().reason);
    return;
  }
  if (msg.body_case() == wire::WorkerMessage::kReady) return on_ready(routing_id, msg.ready());
  core::Scheduler& scheduler = *farm_.scheduler;
  auto peer_it = peers_.find(routing_id);
  if (peer_it == peers_.end() || !scheduler.knows_worker(peer_it->second.id)) {
    // A worker from before our restart, or one we forgot: it must introduce itself.
    wire::BrokerMessage reconnect;
    reconnect.mutable_reconnect();
    workers_.send(routing_id, reconnect);
    return;
  }
  const core::Millis now = clock_.millis();
  const core::WorkerId worker = peer_it->second.id;
  scheduler.worker_seen(worker, now);
  switch (msg.body_case()) {
    case wire::WorkerMessage::kHeartbeat:
      break;
    case wire::WorkerMessage::kRenew:
      for (const auto& r : msg.renew().tasks()) {
        core::TaskRef ref{r.job_id(), static_cast<core::TaskIndex>(r.task()), r.lease()};
        if (!scheduler.renew_lease(worker, ref, now)) {
          wire::BrokerMessage cancel;
          *cancel.mutable_cancel()->mutable_ref() = r;
          cancel.mutable_cancel()->set_reason("lease no longer held");
          turn.worker_mail.emplace_back(routing_id, std::move(cancel));
        }
      }
      break;
    case wire::WorkerMessage::kResult:
      if (accept_results) on_result(routing_id, worker, msg.result(), turn);
      break;
    case wire::WorkerMessage::kLog:
      on_log_reply(msg.log());
      break;
    case wire::WorkerMessage::kProgress: {
      // From the lease's holder only: a stale or forged report (another
      // worker's task, a job that does not exist) is dropped, so it can
      // neither show nor grow the map.
      const auto& p = msg.progress();
      const core::TaskRef ref{p.ref().job_id(), static_cast<core::TaskIndex>(p.ref().task()),
                              p.ref().lease()};
      if (p.ref().task() <= std::numeric_limits<core::TaskIndex>::max() &&
          scheduler.holds_lease(worker, ref)) {
        progress_[{ref.job, ref.task}] = {worker, ref.lease, std::min(p.done(), p.total()),
                                          p.total(), printable(p.status(), kMaxStatusBytes)};
      }
      break;
    }
    case wire::WorkerMessage::kDisconnect:
      scheduler.worker_gone(worker, now);
      routes_.erase(worker);
      peers_.erase(peer_it);
      break;
    default:
      bad_.note("worker", "message without a body");
  }
}

void WorkerLink::on_message_while_paused(const std::string& routing_id, const void* data,
                                         size_t size) {
  wire::WorkerMessage msg;
  if (!common::parse_message(data, size, config_.broker.max_worker_message_bytes, msg)) return;
  if (msg.body_case() != wire::WorkerMessage::kHeartbeat) return;
  wire::BrokerMessage reconnect;
  reconnect.mutable_reconnect();
  workers_.send(routing_id, reconnect);
}

void WorkerLink::on_ready(const std::string& routing_id, const wire::Ready& ready) {
  if (ready.version() != common::kProtocolVersion) {
    bad_.note("worker", fmt::format("protocol version {} from worker {}", ready.version(),
                                    printable(ready.name(), 64)));
    return;
  }
  if (ready.name().empty() || ready.name().size() > 256) {
    bad_.note("worker", "ready without a usable name");
    return;
  }
  core::Scheduler& scheduler = *farm_.scheduler;
  if (auto old = peers_.find(routing_id); old != peers_.end()) routes_.erase(old->second.id);
  Peer peer;
  peer.id = next_worker_id_++;
  peer.host = ready.host().substr(0, 256);
  peer.pid = ready.pid();
  peers_[routing_id] = peer;
  routes_[peer.id] = routing_id;
  core::WorkerSpec spec;
  spec.name = ready.name();
  spec.instance = ready.instance().substr(0, 64);
  spec.host = peer.host;
  spec.isolation = ready.isolation().substr(0, 512);
  spec.slots = std::clamp<uint32_t>(ready.slots(), 1, 4096);
  spec.interactive_slots = std::min<uint32_t>(ready.interactive_slots(), 64);
  for (const auto& tag : ready.tags()) spec.tags.push_back(tag);
  spec.cores = ready.cores();
  spec.gpus = ready.gpus();
  spec.memory = ready.memory_bytes();
  std::vector<core::TaskRef> running;
  for (const auto& r : ready.running()) {
    running.push_back({r.job_id(), static_cast<core::TaskIndex>(r.task()), r.lease()});
  }
  const core::WorkerReadyVerdict verdict =
      scheduler.worker_ready(peer.id, std::move(spec), running, clock_.millis());
  // Forget sessions the scheduler dropped (the same worker's earlier connection,
  // or this one when it was refused): only those, not every peer per Ready.
  for (core::WorkerId old : verdict.replaced) forget_session(old);
  if (!verdict.accepted) forget_session(peer.id);
  if (!verdict.accepted) {
    // A second live worker under a name in use (a cloned host): refused, never
    // allowed to evict the first. It retries with its backoff.
    log_.warn("worker refused worker={} host={} reason=\"{}\"", printable(ready.name()),
              printable(peer.host), verdict.refusal);
    wire::BrokerMessage refused;
    refused.mutable_refused()->set_reason(verdict.refusal);
    workers_.send(routing_id, refused);
    return;
  }
  if (verdict.name != ready.name()) {
    log_.info("worker renamed worker={} as={} reason=\"name in use by a live worker\"",
              printable(ready.name()), printable(verdict.name));
  }
  wire::BrokerMessage welcome;
  welcome.mutable_welcome()->set_heartbeat_ms(
      static_cast<uint32_t>(config_.broker.heartbeat_interval.count()));
  welcome.mutable_welcome()->set_lease_ttl_ms(
      static_cast<uint32_t>(config_.broker.lease_ttl.count()));
  workers_.send(routing_id, welcome);
}

void WorkerLink::forget_session(core::WorkerId id) {
  auto route = routes_.find(id);
  if (route == routes_.end()) return;
  // The routing id may already serve a newer session (a reconnect on one socket).
  if (auto it = peers_.find(route->second); it != peers_.end() && it->second.id == id) {
    peers_.erase(it);
  }
  routes_.erase(route);
}

void WorkerLink::on_result(const std::string& routing_id, core::WorkerId worker,
                           const wire::TaskResult& result, Turn& turn) {
  core::Scheduler& scheduler = *farm_.scheduler;
  core::TaskRef ref{result.ref().job_id(), static_cast<core::TaskIndex>(result.ref().task()),
                    result.ref().lease()};
  Error error{error_code_from_name(result.error_code()), result.error().substr(0, 1024)};
  core::TaskOutcome outcome;
  outcome.out_of_memory = result.out_of_memory();
  outcome.peak_memory = result.stats().peak_rss_bytes();
  auto verdict =
      scheduler.task_result(worker, ref, result.succeeded(), error, clock_.millis(), outcome);
  progress_.erase({ref.job, ref.task});
  std::optional<double> run_s;
  if (verdict == core::ResultVerdict::kAccepted) {
    run_s = result.has_stats() ? result.stats().wall_s() : result.elapsed_s();
    if (!std::isfinite(*run_s) || *run_s < 0) run_s = 0.0;
  }
  const core::JobSpec* spec = scheduler.job_spec(ref.job);
  metrics_.task_result(verdict == core::ResultVerdict::kStale ? ResultOutcome::kStale
                       : result.succeeded()                   ? ResultOutcome::kSucceeded
                                                              : ResultOutcome::kFailed,
                       spec ? find_job_kind(spec->kind) : nullptr, run_s, ref.job,
                       clock_.unix_ms());
  // A noop task (no log, no error, not measured) leaves no row: a million of them write
  // nothing.
  if (verdict == core::ResultVerdict::kAccepted &&
      (!result.log_tail().empty() || !result.error().empty() || result.has_stats())) {
    LogRow row;
    row.job = ref.job;
    row.task = ref.task;
    row.attempt = result.attempt();
    row.worker = scheduler.worker_name(worker);
    row.error = error.reason;
    const std::string& tail = result.log_tail();
    row.text = tail.substr(tail.size() > kMaxLogTailBytes ? tail.size() - kMaxLogTailBytes : 0);
    if (result.has_stats()) {
      row.stats = attempt_stats(result.stats());
      farm_.jobs.add_usage(ref.job, *row.stats);
    }
    // Its end is now, as the broker sees it; its start that minus how long the
    // worker says it ran (its measured wall time, else its elapsed time).
    row.finished_unix_ms = clock_.unix_ms();
    double ran_s = row.stats ? row.stats->wall_s : result.elapsed_s();
    if (!std::isfinite(ran_s) || ran_s < 0) ran_s = 0;
    row.started_unix_ms =
        row.finished_unix_ms - static_cast<int64_t>(std::min(ran_s, 1e9) * 1000.0);
    turn.batch.logs.push_back(std::move(row));
  }
  // Acknowledged after the commit: a stale result too, so the worker stops sending it.
  *turn.acks[routing_id].add_tasks() = result.ref();
}

void WorkerLink::assign(const std::vector<core::Dispatch>& dispatches, Turn& turn) {
  core::Scheduler& scheduler = *farm_.scheduler;
  const core::Millis now = clock_.millis();
  const int64_t unix_now = clock_.unix_ms();
  for (const auto& d : dispatches) {
    auto route = routes_.find(d.worker);
    const core::JobSpec* spec = scheduler.job_spec(d.job);
    const JobRecord* record = farm_.jobs.find(d.job);
    const JobKind* kind = spec ? find_job_kind(spec->kind) : nullptr;
    if (route == routes_.end() || !spec || !record || !kind) continue;
    wire::BrokerMessage msg;
    auto* assign = msg.mutable_assign();
    assign->mutable_ref()->set_job_id(d.job);
    assign->mutable_ref()->set_task(d.task);
    assign->mutable_ref()->set_lease(d.lease);
    assign->set_attempt(d.attempt);
    assign->set_kind(spec->kind);
    assign->set_timeout_s(static_cast<uint32_t>(spec->timeout.count()));
    assign->set_lease_ttl_ms(static_cast<uint32_t>(config_.broker.lease_ttl.count()));
    assign->set_memory_limit_bytes(spec->memory);
    assign->set_cores(spec->cores);
    assign->set_gpus(spec->gpus);
    common::FrameSet frames = scheduler.task_frames(d.job, d.task);
    if (auto ok = kind->assign(record->spec, frames, config_, *assign); !ok) {
      scheduler.task_result(d.worker, {d.job, d.task, d.lease}, false, ok.error(), now);
      continue;
    }
    assign->set_frames(frames.to_string());
    if (record->started_unix_ms == 0) farm_.jobs.set_started(d.job, unix_now, turn.batch);
    // A first attempt waited since the job was submitted (a retry's wait is not known).
    metrics_.task_dispatched(
        kind, d.attempt == 1
                  ? std::optional<double>(
                        static_cast<double>(unix_now - record->submitted_unix_ms) / 1000.0)
                  : std::nullopt);
    if (log_.should_log(spdlog::level::debug)) {
      log_.debug("task dispatched job={} task={} attempt={} worker={} lease={:x}", d.job, d.task,
                 d.attempt, scheduler.worker_name(d.worker), d.lease);
    }
    turn.worker_mail.emplace_back(route->second, std::move(msg));
  }
}

void WorkerLink::cancel(const std::vector<core::CancelOrder>& cancels, Turn& turn) {
  for (const auto& order : cancels) {
    auto route = routes_.find(order.worker);
    if (route == routes_.end()) continue;
    wire::BrokerMessage msg;
    auto* c = msg.mutable_cancel();
    c->mutable_ref()->set_job_id(order.ref.job);
    c->mutable_ref()->set_task(order.ref.task);
    c->mutable_ref()->set_lease(order.ref.lease);
    c->set_reason(order.reason);
    turn.worker_mail.emplace_back(route->second, std::move(msg));
  }
}

void WorkerLink::send_heartbeats() {
  if (beat_next_ >= beat_round_.size()) {
    const auto now = clock_.steady();
    if (now - last_heartbeat_ < config_.broker.heartbeat_interval) return;
    last_heartbeat_ = now;
    const core::Scheduler& scheduler = *farm_.scheduler;
    std::erase_if(routes_, [&](const auto& route) {
      if (scheduler.knows_worker(route.first)) return false;
      if (auto it = peers_.find(route.second); it != peers_.end() && it->second.id == route.first) {
        peers_.erase(it);
      }
      return true;
    });
    beat_round_.clear();
    beat_next_ = 0;
    for (const auto& [rid, peer] : peers_) beat_round_.push_back(rid);
  }
  wire::BrokerMessage beat;
  beat.mutable_heartbeat();
  const size_t end = std::min(beat_round_.size(), beat_next_ + kBeatsPerTurn);
  for (; beat_next_ < end; ++beat_next_) {
    // A session that left meanwhile is skipped (its routing id may not be reused yet).
    if (peers_.count(beat_round_[beat_next_])) workers_.send(beat_round_[beat_next_], beat);
  }
}

void WorkerLink::reset_sessions() {
  wire::BrokerMessage reconnect;
  reconnect.mutable_reconnect();
  for (const auto& [rid, peer] : peers_) workers_.send(rid, reconnect);
  peers_.clear();
  routes_.clear();
  progress_.clear();
}

std::optional<Clock::SteadyTime> WorkerLink::next_deadline() const {
  if (beat_next_ < beat_round_.size()) return clock_.steady();  // the round goes on
  Clock::SteadyTime next = last_heartbeat_ + config_.broker.heartbeat_interval;
  for (const auto& query : log_queries_) next = std::min(next, query.deadline);
  return next;
}

const WorkerLink::Peer* WorkerLink::peer(core::WorkerId id) const {
  auto route = routes_.find(id);
  if (route == routes_.end()) return nullptr;
  auto it = peers_.find(route->second);
  return it == peers_.end() ? nullptr : &it->second;
}

std::optional<WorkerLink::TaskProgress> WorkerLink::progress(core::JobId job,
                                                             core::TaskIndex task) const {
  auto it = progress_.find({job, task});
  if (it == progress_.end()) return std::nullopt;
  const Progress& p = it->second;
  // A report of an earlier attempt is not this one's.
  if (!farm_.scheduler->holds_lease(p.worker, {job, task, p.lease})) return std::nullopt;
  return TaskProgress{p.done, p.total, p.status};
}

void WorkerLink::forget_progress(core::JobId job) {
  progress_.erase(progress_.lower_bound({job, 0}), progress_.lower_bound({job + 1, 0}));
}

// ------------------------------------------------------------------ logs of running tasks

bool WorkerLink::ask_running_logs(const PendingReply& pending, const wire::LogsRequest& request,
                                  bool stopping) {
  if (!pending.reply.ok() || stopping || log_queries_.size() >= kMaxLogQueries) return false;
  const core::Scheduler& scheduler = *farm_.scheduler;
  // Which worker session runs what, by worker name.
  std::unordered_map<std::string, const std::string*> route_of;
  for (const auto& [rid, p] : peers_) route_of[scheduler.worker_name(p.id)] = &rid;
  LogQuery query;
  query.pending = pending;
  query.deadline = clock_.steady() + kLogQueryTimeout;
  for (const auto& r : scheduler.running_tasks(request.job_id(), kMaxRunningLogs)) {
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
    if (!workers_.send(*route->second, ask)) continue;
    query.asked[id] = {request.job_id(), r.task, r.attempt, r.worker};
  }
  if (query.asked.empty()) return false;
  log_queries_.push_back(std::move(query));
  return true;
}

void WorkerLink::on_log_reply(const wire::LogReply& log) {
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
      clients_.send(it->pending);
      log_queries_.erase(it);
    }
    return;
  }
}

void WorkerLink::answer_log_queries(bool all) {
  const auto now = clock_.steady();
  std::erase_if(log_queries_, [&](LogQuery& query) {
    if (!all && now < query.deadline) return false;
    clients_.send(query.pending);  // what came in time; silent workers' tasks are left out
    return true;
  });
}

}  // namespace farmhand::daemon
