#include "daemon/broker_core.h"

#include <algorithm>
#include <random>

#include <fmt/format.h>

#include "daemon/rules.h"

namespace farmhand::daemon {

namespace {

constexpr size_t kMaxForgetPerSweep = 10'000;  // per turn: turns stay short
constexpr std::chrono::milliseconds kFirstProbe{250};
constexpr std::chrono::milliseconds kMaxProbeBackoff{30'000};
constexpr std::chrono::seconds kRelapseWindow{60};

}  // namespace

core::Scheduler::Options scheduler_options(const common::BrokerConfig& broker) {
  core::Scheduler::Options so;
  so.lease_ttl = broker.lease_ttl;
  so.heartbeat_interval = broker.heartbeat_interval;
  so.heartbeat_liveness = broker.heartbeat_liveness;
  so.backoff_base = broker.retry_backoff_base;
  so.backoff_max = broker.retry_backoff_max;
  so.default_max_attempts = broker.default_max_attempts;
  so.rename_duplicates = broker.rename_duplicate_workers;
  so.block_after_failures = broker.block_after_failures;
  so.timeout_grace = std::max<core::Millis>(core::Millis(5000), 2 * broker.heartbeat_interval);
  so.seed = std::random_device{}();
  return so;
}

BrokerCore::BrokerCore(const common::Config& config, const std::string& db_path, const Clock& clock,
                       Store& store, ClientPort& clients, WorkerPort& workers, spdlog::logger& log)
    : config_(config),
      clock_(clock),
      store_(store),
      client_port_(clients),
      worker_port_(workers),
      log_(log),
      bad_(clock, log),
      farm_(scheduler_options(config.broker)),
      hooks_(config, clock, farm_, log),
      intake_(config, clock, farm_, log),
      publish_(config, clock, farm_, intake_, log),
      backup_(db_path, config, clock, clients, log),
      link_(config, clock, farm_, workers, clients, bad_, metrics_, log),
      clients_(config, clock, farm_, {intake_, publish_, backup_, link_, store, *this, &hooks_},
               clients, bad_, log) {}

Result<void> BrokerCore::restore() {
  Farm fresh(farm_.scheduler_options);
  if (auto ok = fresh.restore(store_, clock_, 2 * config_.broker.heartbeat_interval, log_,
                              turn_.batch, config_.limits);
      !ok) {
    return ok;
  }
  farm_ = std::move(fresh);
  farm_.scheduler->set_shares(config_.shares);
  board_.rebuild();
  return hooks_.restore(store_);
}

Result<void> BrokerCore::reload_hooks() {
  if (failure_ || fatal_) {
    return fail(ErrorCode::kUnavailable, "the store cannot write; the hooks in force stay");
  }
  return hooks_.reload(store_);
}

void BrokerCore::reload_shares() {
  farm_.scheduler->set_shares(config_.shares);
  changed_ = true;
  log_.info("shares set projects={}", config_.shares.size());
}

void BrokerCore::reload_limits(const std::map<std::string, uint32_t>& before) {
  if (failure_ || fatal_) return;  // the store is restored with the new config when it writes
  changed_ = true;
  for (const auto& [name, capacity] : config_.limits) {
    auto it = before.find(name);
    if (it != before.end() && it->second == capacity) continue;
    farm_.scheduler->set_limit(name, capacity);
    turn_.batch.limits.push_back(LimitRow{name, capacity});
    log_.info("limit set name={} capacity={} source=config", name, capacity);
  }
}

bool BrokerCore::at_rest() const {
  return !fatal_ && !changed_ && commits_ == flushed_ && turn_.batch.empty() &&
         turn_.replies.empty() && turn_.worker_mail.empty() && turn_.acks.empty() &&
         turn_.new_jobs.empty() && farm_.scheduler->outbox_empty();
}

void BrokerCore::on_client(const std::string& routing_id, bool req_envelope, const void* data,
                           size_t size, const std::string& peer) {
  const bool rest = at_rest();
  clients_.on_message(routing_id, req_envelope, data, size, turn_, peer);
  if (!rest) return;
  // A read, or a write refused before it changed anything, leaves memory as
  // durable as it found it: the reply need not wait for this turn's flush.
  const bool unchanged =
      turn_.batch.empty() && turn_.worker_mail.empty() && turn_.acks.empty() &&
      turn_.new_jobs.empty() && farm_.scheduler->outbox_empty() &&
      std::none_of(turn_.replies.begin(), turn_.replies.end(),
                   [](const PendingReply& pending) { return acknowledges_write(pending.reply); });
  if (!unchanged) {
    changed_ = true;
    return;
  }
  for (const PendingReply& pending : turn_.replies) client_port_.send(pending);
  turn_.replies.clear();
}

bool BrokerCore::turn_full() const {
  return worker_messages_ >= kMaxWorkerMessagesPerTurn ||
         (worker_messages_ > 0 && clock_.steady() - first_worker_message_ >= kWorkerTurnBudget);
}

void BrokerCore::on_worker(const std::string& routing_id, const void* data, size_t size) {
  // While the store cannot write, workers are not heard: what they would say
  // changes state that could not be kept. They keep running and keep their
  // results, and introduce themselves again once the store is back; their
  // heartbeats are answered so that they do not count the broker lost and
  // back off for long.
  if (worker_messages_++ == 0) first_worker_message_ = clock_.steady();
  changed_ = true;
  if (failure_) return link_.on_message_while_paused(routing_id, data, size);
  try {
    link_.on_message(routing_id, data, size, turn_);
  } catch (const std::exception& e) {
    log_.error("worker message failed reason=\"{}\"", e.what());
  }
}

void BrokerCore::end_turn() {
  if (fatal_) return;
  if (failure_) {
    probe_store();
  } else {
    hooks_.take_outcomes(turn_.batch);
    if (!stopping_) publish_.poll(turn_);
    if (config_.broker.keep_finished.count() > 0 && !stopping_ &&
        clock_.steady() >= next_retention_sweep_) {
      forget_finished();
    }
    if (!stopping_ && clock_.steady() >= next_key_sweep_) forget_action_keys();
    const core::Millis now = clock_.millis();
    farm_.scheduler->tick(now);
    // The jobs submitted in this turn go into this turn's commit, and an Assign
    // leaves only after it: their tasks may be dispatched now, with no second
    // turn and commit between a submit and its first Assign.
    for (core::JobId id : turn_.new_jobs) farm_.scheduler->committed(id);
    more_to_dispatch_ = false;
    if (!stopping_) {
      std::vector<core::Dispatch> dispatches =
          farm_.scheduler->dispatch(now, kMaxDispatchesPerTurn);
      more_to_dispatch_ = dispatches.size() >= kMaxDispatchesPerTurn;
      link_.assign(dispatches, turn_);
    }
  }
  take_outbox();
  commit();
  clients_.answer_status_waiters(/*all=*/false, turn_.replies);
  post();
  link_.answer_log_queries(/*all=*/false);
  if (!failure_ && !fatal_) link_.send_heartbeats();
  // Only what is committed and flushed leaves (a delivery of an undone turn
  // would announce what did not happen).
  if (!failure_ && !fatal_ && !stopping_) hooks_.send_due();
  metrics_.set_bad_messages(bad_.count());
  if (clock_.steady() >= next_metrics_refresh_) {
    next_metrics_refresh_ = clock_.steady() + kMetricsRefresh;
    metrics_.refresh(*farm_.scheduler);
  }
  // Everything of the turn is flushed (or undone): memory is at rest again.
  changed_ = false;
  worker_messages_ = 0;
}

void BrokerCore::shutdown() {
  stopping_ = true;
  feed_.close();
  clients_.set_stopping();
  if (fatal_) return;
  if (!failure_) {
    const core::Millis now = clock_.millis();
    for (const auto& worker : farm_.scheduler->workers()) {
      farm_.scheduler->worker_gone(worker.id, now);
    }
  }
  take_outbox();
  commit();
  clients_.answer_status_waiters(/*all=*/true, turn_.replies);
  post();
  link_.answer_log_queries(/*all=*/true);
}

Clock::SteadyTime BrokerCore::next_deadline() const {
  const auto now = clock_.steady();
  Clock::SteadyTime next = now + config_.broker.heartbeat_interval;
  if (failure_) return std::min(next, probe_at_);
  if (more_to_dispatch_) return now;
  if (auto at = farm_.scheduler->next_deadline()) {
    next = std::min(next, now + (*at - clock_.millis()));
  }
  for (auto at : {publish_.next_deadline(), clients_.next_deadline(), link_.next_deadline(),
                  hooks_.next_deadline(), board_.next_publish(), feed_.next_publish()}) {
    if (at) next = std::min(next, *at);
  }
  return next;
}

void BrokerCore::take_outbox() {
  core::Outbox out = farm_.scheduler->take_outbox();
  link_.cancel(out.cancels, turn_);
  for (const auto& n : out.notices) {
    using Kind = core::Notice::Kind;
    switch (n.kind) {
      case Kind::kJobFinished:
        log_.info("job finished job={} state={}", n.job, core::job_state_name(n.job_state));
        if (const JobRecord* record = farm_.jobs.find(n.job);
            record && record->finished_unix_ms == 0) {
          farm_.jobs.set_finished(n.job, clock_.unix_ms(), turn_.batch);
        }
        if (n.job_state == core::JobState::kSucceeded) farm_event("job.succeeded", n.job, {});
        if (n.job_state == core::JobState::kFailed) farm_event("job.failed", n.job, {});
        if (n.job_state == core::JobState::kCancelled) farm_event("job.cancelled", n.job, {});
        break;
      case Kind::kTaskFailed:
        log_.warn("task failed job={} task={} attempt={} reason=\"{}\"", n.job, n.task, n.attempt,
                  n.reason);
        farm_event("task.failed", n.job,
                   {{"task",
                     {{"index", n.task},
                      {"attempt", n.attempt},
                      {"worker", n.worker},
                      {"error", n.reason}}}});
        break;
      case Kind::kTaskDead:
        log_.warn("task dead job={} task={} attempt={} reason=\"{}\"", n.job, n.task, n.attempt,
                  n.reason);
        farm_event("task.dead", n.job,
                   {{"task",
                     {{"index", n.task},
                      {"attempt", n.attempt},
                      {"worker", n.worker},
                      {"error", n.reason}}}});
        break;
      case Kind::kLeaseExpired:
        log_.warn("lease expired job={} task={} attempt={} worker={}", n.job, n.task, n.attempt,
                  n.worker);
        break;
      case Kind::kWorkerLost:
        feed_.note_worker(n.worker,
                          n.lost_cause == core::WorkerLostCause::kDisconnected
                              ? std::string("left")
                              : "lost: " + std::string(core::worker_lost_cause_name(n.lost_cause)));
        if (n.lost_cause == core::WorkerLostCause::kDisconnected) {
          log_.info("worker left worker={}", n.worker);
        } else {
          log_.warn("worker lost worker={} reason={}", n.worker,
                    core::worker_lost_cause_name(n.lost_cause));
          if (!stopping_) {
            farm_event("worker.lost", 0,
                       {{"worker",
                         {{"name", n.worker},
                          {"reason", std::string(core::worker_lost_cause_name(n.lost_cause))}}}});
          }
        }
        break;
      case Kind::kWorkerJoined:
        feed_.note_worker(n.worker, "joined");
        log_.info("worker joined worker={}{}", n.worker, n.again ? " again" : "");
        if (!n.again) farm_event("worker.joined", 0, {{"worker", {{"name", n.worker}}}});
        break;
      case Kind::kWorkerBlocked:
        log_.warn("worker blocked for job job={} worker={} reason=\"{}\"{}", n.job, n.worker,
                  n.reason,
                  n.every_worker_blocked
                      ? fmt::format(" note=\"every live worker that serves the job is blocked: "
                                    "it waits; farmhand job unblock {}\"",
                                    n.job)
                      : std::string{});
        break;
    }
  }
  // Publishes accepted in this turn: their jobs are made and staged.
  for (const EventRow& row : turn_.batch.events) {
    if (!hooks_.enabled()) break;
    const wire::EventInfo* event = farm_.events.find(row.event_id);
    if (!event) continue;
    nlohmann::json publish;
    publish["event_id"] = event->event_id();
    publish["path"] = event->path();
    publish["source"] = event->source();
    nlohmann::json meta = nlohmann::json::object();
    for (const auto& [k, v] : event->meta()) meta[k] = v;
    publish["meta"] = meta;
    publish["job_ids"] = std::vector<uint64_t>(event->job_ids().begin(), event->job_ids().end());
    publish["rules"] = std::vector<std::string>(event->rules().begin(), event->rules().end());
    publish["warnings"] =
        std::vector<std::string>(event->warnings().begin(), event->warnings().end());
    hooks_.on_event("publish.processed", 0, {{"publish", publish}}, turn_.batch);
  }
  for (auto& change : out.tasks) turn_.batch.task_changes.push_back(std::move(change));
  for (auto& change : out.blocks) turn_.batch.blocks.push_back(std::move(change));
  for (auto& change : out.jobs) turn_.batch.job_changes.push_back(change);
  // Specs the scheduler changed itself (a memory request grown after an OOM,
  // chunks cut again to a target runtime).
  for (core::JobId id : out.specs) {
    const JobRecord* record = farm_.jobs.find(id);
    const core::JobSpec* spec = farm_.scheduler->job_spec(id);
    if (!record || !spec) continue;
    wire::JobSpec changed = record->spec;
    bool differs = false;
    if (changed.memory_bytes() != spec->memory) {
      log_.info("memory request raised job={} from={} to={} reason=\"out of memory\"", id,
                changed.memory_bytes(), spec->memory);
      changed.set_memory_bytes(spec->memory);
      differs = true;
    }
    if (!same_chunk_runs(changed, *spec)) {
      set_chunk_runs(changed, *spec);
      auto view = farm_.scheduler->job(id);
      log_.info("chunks cut again job={} target_s={} chunk_frames={} tasks={}", id,
                spec->chunk_target_s, spec->chunk_now, view ? view->task_count : 0);
      differs = true;
    }
    if (!differs) continue;
    turn_.batch.spec_changes.push_back(SpecChange{id, changed.SerializeAsString()});
    farm_.jobs.set_spec(id, std::move(changed));
  }
}

void BrokerCore::farm_event(const std::string& event, core::JobId job, nlohmann::json subject) {
  hooks_.on_event(event, job, std::move(subject), turn_.batch);
  if (job != 0) run_event_rules(event, job);
}

void BrokerCore::run_event_rules(const std::string& event, core::JobId job) {
  const JobRecord* record = farm_.jobs.find(job);
  if (!record || stopping_) return;
  std::map<std::string, std::string> labels(record->spec.labels().begin(),
                                            record->spec.labels().end());
  // A job an event rule made does not set off event rules itself: a tracker
  // update that fails must not make another one, and so on for ever.
  if (labels.count(std::string(kEventRuleLabel)) != 0) return;
  for (const common::Rule& rule : config_.rules) {
    if (!event_rule_matches(rule, event, labels)) continue;
    const std::string state =
        farm_.scheduler->job(job)
            ? std::string(core::job_state_name(farm_.scheduler->job(job)->state))
            : std::string();
    std::vector<PlannedJob> plan = plan_event_rule(rule, event, job, record->spec, state);
    std::vector<core::JobId> made(plan.size(), 0);
    for (size_t i = 0; i < plan.size(); ++i) {
      PlannedJob& planned = plan[i];
      const std::string where =
          fmt::format("rule={} rule_job={} event={} job={}", rule.name, planned.name, event, job);
      bool upstream_missing = !planned.error.empty();
      for (size_t up : planned.after) {
        if (made[up] == 0) upstream_missing = true;
        planned.spec.add_after(made[up]);
      }
      if (planned.after_frames) {
        if (made[*planned.after_frames] == 0) upstream_missing = true;
        planned.spec.set_after_frames(made[*planned.after_frames]);
      }
      if (upstream_missing) {
        log_.warn("event rule job not made {} reason=\"{}\"", where,
                  planned.error.empty() ? "an upstream job was not made" : planned.error);
        continue;
      }
      if (planned.spec.project().empty()) planned.spec.set_project(record->spec.project());
      auto id = intake_.create_job(std::move(planned.spec), turn_);
      if (!id) {
        log_.warn("event rule job not made {} reason=\"{}\"", where, id.error().reason);
        continue;
      }
      made[i] = *id;
      log_.info("event rule job made {} made_job={}", where, *id);
    }
  }
}

void BrokerCore::commit() {
  if (turn_.batch.empty()) return;
  const auto started = clock_.steady();
  if (auto ok = store_.commit(turn_.batch); !ok) {
    metrics_.store_commit_failed();
    return undo_turn(ok.error());
  }
  metrics_.store_committed(seconds_since(started));
  feed_.note(turn_.batch);
  board_.note(turn_.batch);
  for (const EventRow& row : turn_.batch.events) {
    if (const wire::EventInfo* event = farm_.events.find(row.event_id)) {
      metrics_.publish_accepted(row.received_unix_ms,
                                {event->job_ids().begin(), event->job_ids().end()});
    }
  }
  turn_.batch.clear();
  ++commits_;
  // Jobs submitted while stopping or in shutdown() were not dispatchable yet.
  for (core::JobId id : turn_.new_jobs) farm_.scheduler->committed(id);
}

double BrokerCore::seconds_since(Clock::SteadyTime start) const {
  return std::chrono::duration<double>(clock_.steady() - start).count();
}

void BrokerCore::post() {
  // Assign and Cancel leave as soon as the commit that decided them is written:
  // from then on it survives farmhandd being killed, and the workers run their
  // tasks while the flush below waits for the disk. (Should the host lose
  // power before the flush ends, the workers report what they run when they
  // reconnect, and the scheduler adopts it before it dispatches anything.)
  for (const auto& [rid, msg] : turn_.worker_mail) {
    if (!worker_port_.send(rid, msg) && msg.has_assign()) {
      log_.warn("dispatch not delivered job={} task={}", msg.assign().ref().job_id(),
                msg.assign().ref().task());
    }
  }
  // Replies and result acks acknowledge: they leave once the commit is durable.
  // Reads too, so that none shows what is not yet durable.
  if (commits_ > flushed_) {
    const auto started = clock_.steady();
    if (auto ok = store_.flush(); !ok) {
      metrics_.store_flush_failed();
      return flush_failed(ok.error());
    }
    metrics_.store_flushed(seconds_since(started));
    flushed_ = commits_;
  }
  // Durable now: the job lists may show it, before a reply says it is done.
  board_.publish_if_due(farm_, clock_.steady(), clock_.unix_ms());
  for (const auto& pending : turn_.replies) client_port_.send(pending);
  for (auto& [rid, ack] : turn_.acks) {
    wire::BrokerMessage msg;
    *msg.mutable_ack() = std::move(ack);
    worker_port_.send(rid, msg);
  }
  turn_.clear();
  // Durable now: the live stream may show it (with the board's summaries).
  feed_.publish_if_due(clock_.steady(), board_);
}

void BrokerCore::flush_failed(const Error& cause) {
  fatal_ = cause;
  log_.critical(
      "{}; what was written since the last good flush may not be on disk, so farmhandd stops "
      "and must be restarted on what the disk holds (systemd does)",
      cause.reason);
  // No result ack leaves, and every reply is this error: a write may or may
  // not have been kept, and a read may show it.
  const Error error{ErrorCode::kIo,
                    cause.reason + "; the outcome is unknown, ask again once farmhandd is back"};
  for (PendingReply& pending : turn_.replies) {
    pending.reply.clear_body();
    set_error(pending.reply, error);
    client_port_.send(pending);
  }
  turn_.clear();
}

void BrokerCore::undo_turn(const Error& cause) {
  ++failed_commits_;
  const Error error{ErrorCode::kIo, "state store write failed: " + cause.reason};
  log_.error("{}; the turn is undone, writes are refused until the store writes again",
             error.reason);
  // Nothing of this turn may be acknowledged: clients get the error, workers get
  // neither Assign, Cancel nor ack (they keep their results and send them again).
  for (auto& pending : turn_.replies) {
    if (acknowledges_write(pending.reply)) {
      pending.reply.clear_body();
      set_error(pending.reply, error);
    }
    client_port_.send(pending);
  }
  turn_.clear();
  // Memory goes back to what is on disk.
  if (auto ok = restore(); !ok) {
    log_.error("state store unreadable after a failed write reason=\"{}\"", ok.error().reason);
  }
  link_.reset_sessions();
  failure_ = error;
  clients_.refuse_writes(error);
  // A store that fails again soon after it came back (a disk with a few bytes
  // free) is probed ever less often, not every quarter second.
  const bool relapse = clock_.steady() - recovered_at_ < kRelapseWindow;
  probe_backoff_ = relapse ? std::min(probe_backoff_ * 2, kMaxProbeBackoff) : kFirstProbe;
  probe_at_ = clock_.steady() + probe_backoff_;
}

void BrokerCore::probe_store() {
  if (clock_.steady() < probe_at_) return;
  if (auto ok = store_.check_writable(); !ok) {
    probe_backoff_ = std::min(probe_backoff_ * 2, kMaxProbeBackoff);
    probe_at_ = clock_.steady() + probe_backoff_;
    log_.warn("state store still cannot write reason=\"{}\" retry_in_ms={}", ok.error().reason,
              probe_backoff_.count());
    return;
  }
  // Restored afresh: running tasks wait a few beats for their workers, who are
  // asked to introduce themselves again (and resend what was not acknowledged).
  if (auto ok = restore(); !ok) {
    probe_at_ = clock_.steady() + probe_backoff_;
    log_.error("state store unreadable reason=\"{}\"", ok.error().reason);
    return;
  }
  link_.reset_sessions();
  recovered_at_ = clock_.steady();
  failure_.reset();
  clients_.refuse_writes(std::nullopt);
  log_.info("state store writes again; serving");
}

void BrokerCore::forget_action_keys() {
  next_key_sweep_ = clock_.steady() + std::chrono::seconds(60);
  const int64_t cutoff = clock_.unix_ms() - action_key_retention_ms();
  const size_t forgotten = std::erase_if(
      farm_.action_keys, [&](const auto& entry) { return entry.second.stored_unix_ms < cutoff; });
  if (forgotten == 0) return;
  turn_.batch.forget_action_keys_before = cutoff;
  log_.info("action keys forgotten keys={}", forgotten);
}

void BrokerCore::forget_finished() {
  const auto keep = config_.broker.keep_finished;
  const auto sweep_every = std::clamp<std::chrono::milliseconds>(keep / 10, std::chrono::seconds(1),
                                                                 std::chrono::seconds(60));
  next_retention_sweep_ = clock_.steady() + sweep_every;
  const int64_t cutoff = clock_.unix_ms() - keep.count();

  // Newest first: a dependant goes before the job it depends on, so a whole
  // finished chain goes in one sweep.
  size_t jobs = 0;
  const std::vector<core::JobId> ids = farm_.scheduler->job_ids();
  for (auto it = ids.rbegin(); it != ids.rend(); ++it) {
    if (jobs == kMaxForgetPerSweep) {
      next_retention_sweep_ = clock_.steady();  // the rest next turn
      break;
    }
    const JobRecord* record = farm_.jobs.find(*it);
    if (!record || record->finished_unix_ms == 0 || record->finished_unix_ms > cutoff ||
        !farm_.scheduler->forget(*it)) {
      continue;
    }
    link_.forget_progress(*it);
    farm_.jobs.erase(*it);
    turn_.batch.forgotten_jobs.push_back(*it);
    ++jobs;
  }

  // Events, once old and with every job gone (new, uncommitted ones are never old).
  const size_t events = farm_.events.erase_if([&](const wire::EventInfo& event) {
    if (event.received_unix_ms() > cutoff) return false;
    for (uint64_t job : event.job_ids()) {
      if (farm_.scheduler->job(job)) return false;
    }
    turn_.batch.forgotten_events.push_back(event.event_id());
    return true;
  });
  if (jobs > 0 || events > 0) {
    log_.info("finished work forgotten jobs={} events={} keep_finished_days={:g}", jobs, events,
              static_cast<double>(keep.count()) / 86'400'000.0);
  }
}

}  // namespace farmhand::daemon
