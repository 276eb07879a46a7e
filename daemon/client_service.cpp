#include "daemon/client_service.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <limits>
#include <unordered_map>

#include <fmt/format.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/wire_format_lite.h>

#include "common/wire.h"
#include "daemon/hooks.h"
#include "daemon/media_jobs.h"

namespace farmhand::daemon {

namespace {

constexpr uint32_t kDefaultTaskPage = 100;
constexpr uint32_t kMaxTaskPage = 10'000;
constexpr uint64_t kMaxTaskStates = 1'000'000;
constexpr size_t kMaxRunningShown = 100;
constexpr size_t kMaxPoolBytes = 256;

std::string megabytes(size_t bytes) {
  return fmt::format("{:.1f} MB", static_cast<double>(bytes) / (1024.0 * 1024.0));
}

bool is_write(const wire::ClientRequest& request) {
  const auto body = request.body_case();
  return body == wire::ClientRequest::kSubmit || body == wire::ClientRequest::kSubmitOpenjd ||
         body == wire::ClientRequest::kAction || body == wire::ClientRequest::kPublish ||
         body == wire::ClientRequest::kWorkerControl || body == wire::ClientRequest::kJobSet ||
         (body == wire::ClientRequest::kLimits && request.limits().has_set());
}

constexpr size_t kMaxActionKeyBytes = 256;
// A resent action comes within seconds or minutes (a lost reply, a retried
// script); a week covers a broker that was down over a weekend.
constexpr int64_t kActionKeyRetentionMs = 7LL * 24 * 3600 * 1000;

// FNV-1a over the message serialized deterministically (map order); never 0.
uint64_t fingerprint(const google::protobuf::Message& message, uint64_t salt) {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream out(&stream);
    out.SetSerializationDeterministic(true);
    message.SerializeToCodedStream(&out);
  }
  uint64_t h = 0xcbf29ce484222325ULL ^ salt;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h == 0 ? 1 : h;
}

// The idempotency key of an action request and a fingerprint of the request
// without it (its kind included, so a key is never taken for another kind of
// action); nullopt for requests that are no action or carry no key.
std::optional<std::pair<std::string, uint64_t>> action_key(const wire::ClientRequest& request) {
  auto keyed = [&](const auto& body) -> std::optional<std::pair<std::string, uint64_t>> {
    if (body.idempotency_key().empty()) return std::nullopt;
    auto copy = body;
    copy.clear_idempotency_key();
    return std::make_pair(body.idempotency_key(),
                          fingerprint(copy, static_cast<uint64_t>(request.body_case())));
  };
  switch (request.body_case()) {
    case wire::ClientRequest::kAction:
      return keyed(request.action());
    case wire::ClientRequest::kJobSet:
      return keyed(request.job_set());
    case wire::ClientRequest::kWorkerControl:
      return keyed(request.worker_control());
    case wire::ClientRequest::kLimits:
      if (request.limits().has_set()) return keyed(request.limits().set());
      return std::nullopt;
    case wire::ClientRequest::kSubmitOpenjd: {
      // Its jobs share the key, so it is the submit's (a resend from another
      // shell is the same submit: who sent it is left out).
      const wire::JobSpec& options = request.submit_openjd().options();
      if (options.idempotency_key().empty()) return std::nullopt;
      wire::SubmitOpenJdRequest copy = request.submit_openjd();
      copy.mutable_options()->clear_idempotency_key();
      copy.mutable_options()->clear_submitted_by();
      copy.mutable_options()->clear_submitted_from();
      return std::make_pair(options.idempotency_key(),
                            fingerprint(copy, static_cast<uint64_t>(request.body_case())));
    }
    default:
      return std::nullopt;
  }
}

}  // namespace

int64_t action_key_retention_ms() {
  return kActionKeyRetentionMs;
}

uint64_t peek_request_id(const void* data, size_t size) {
  using google::protobuf::internal::WireFormatLite;
  google::protobuf::io::CodedInputStream in(static_cast<const uint8_t*>(data),
                                            static_cast<int>(std::min<size_t>(size, INT32_MAX)));
  // Fields come in number order: request_id (2) is at the front when present.
  for (int fields = 0; fields < 4; ++fields) {
    const uint32_t tag = in.ReadTag();
    if (tag == 0) return 0;
    if (WireFormatLite::GetTagFieldNumber(tag) == 2 &&
        WireFormatLite::GetTagWireType(tag) == WireFormatLite::WIRETYPE_VARINT) {
      uint64_t id = 0;
      return in.ReadVarint64(&id) ? id : 0;
    }
    if (!WireFormatLite::SkipField(&in, tag)) return 0;
  }
  return 0;
}

void ClientService::on_message(const std::string& routing_id, bool req_envelope, const void* data,
                               size_t size, Turn& turn, const std::string& peer) {
  wire::ClientRequest request;
  wire::ClientReply reply;
  const size_t limit = config_.broker.max_client_message_bytes;
  if (size > limit) {
    // Answered, not dropped: the client learns why instead of timing out.
    reply.set_request_id(peek_request_id(data, size));
    const std::string why =
        fmt::format("request too large: {} over {}", megabytes(size), megabytes(limit));
    bad_.note("client", why);
    set_error(reply, Error{ErrorCode::kInvalidArgument, why});
    turn.replies.push_back({routing_id, req_envelope, std::move(reply)});
    return;
  }
  if (auto ok = common::parse_message(data, size, limit, request); !ok) {
    bad_.note("client", ok.error().reason);
    set_error(reply, ok.error());
    turn.replies.push_back({routing_id, req_envelope, std::move(reply)});
    return;
  }
  reply.set_request_id(request.request_id());
  reply.set_ok(true);
  try {
    if (request.version() != common::kProtocolVersion) {
      set_error(reply, Error{ErrorCode::kInvalidArgument,
                             fmt::format("protocol version {} not supported (broker speaks {})",
                                         request.version(), common::kProtocolVersion)});
    } else if (refuse_writes_ && is_write(request)) {
      set_error(reply, *refuse_writes_);
    } else if (auto key = action_key(request); key && replay_action(*key, reply)) {
      // A resent action: answered as the first time, nothing done again.
      if (reply.has_submit_openjd()) reply.mutable_submit_openjd()->set_duplicate(true);
    } else {
      switch (request.body_case()) {
        case wire::ClientRequest::kSubmit:
          parts_.intake.submit(request.submit(), reply, turn, peer);
          break;
        case wire::ClientRequest::kSubmitOpenjd:
          parts_.intake.submit_openjd(request.submit_openjd(), reply, turn, peer);
          break;
        case wire::ClientRequest::kStatus:
          status(request.status(), reply);
          if (hold_status({routing_id, req_envelope, reply}, request.status())) return;
          break;
        case wire::ClientRequest::kList:
          list(request.list(), reply);
          break;
        case wire::ClientRequest::kAction:
          action(request.action(), reply, turn, peer);
          break;
        case wire::ClientRequest::kWorkers:
          workers(reply);
          break;
        case wire::ClientRequest::kLogs:
          logs(request.logs(), reply);
          // Running tasks' logs so far come from their workers; answered then.
          if (parts_.link.ask_running_logs({routing_id, req_envelope, reply}, request.logs(),
                                           stopping_)) {
            return;
          }
          break;
        case wire::ClientRequest::kPublish:
          parts_.publish.publish(request.publish(), reply, turn);
          break;
        case wire::ClientRequest::kEvents:
          parts_.publish.events(request.events(), reply);
          break;
        case wire::ClientRequest::kHealth:
          health(reply);
          break;
        case wire::ClientRequest::kHooks:
          reply.mutable_hooks();
          if (parts_.hooks) parts_.hooks->fill(*reply.mutable_hooks());
          break;
        case wire::ClientRequest::kLimits:
          limits(request.limits(), reply, turn);
          break;
        case wire::ClientRequest::kWorkerControl:
          control_worker(request.worker_control(), reply, turn);
          break;
        case wire::ClientRequest::kJobSet:
          job_set(request.job_set(), reply, turn);
          break;
        case wire::ClientRequest::kBackup: {
          // Answered when the copy is done, from its own thread's completion.
          PendingReply pending{routing_id, req_envelope, reply};
          if (parts_.backup.start(pending, request.backup())) return;
          reply = std::move(pending.reply);
          break;
        }
        default:
          bad_.note("client", "request without a body");
          set_error(reply, Error{ErrorCode::kInvalidArgument, "request without a body"});
      }
      if (key && reply.ok()) remember_action(*key, reply, turn);
    }
  } catch (const std::exception& e) {
    log_.error("client request failed reason=\"{}\"", e.what());
    set_error(reply, Error{ErrorCode::kInternal, fmt::format("internal error: {}", e.what())});
  }
  turn.replies.push_back({routing_id, req_envelope, std::move(reply)});
}

// ------------------------------------------------------------------ idempotency keys

bool ClientService::replay_action(const std::pair<std::string, uint64_t>& key,
                                  wire::ClientReply& reply) const {
  if (key.first.size() > kMaxActionKeyBytes) {
    set_error(reply,
              Error{ErrorCode::kInvalidArgument,
                    fmt::format("idempotency key longer than {} bytes", kMaxActionKeyBytes)});
    return true;
  }
  auto it = farm_.action_keys.find(key.first);
  if (it == farm_.action_keys.end()) return false;
  if (it->second.fingerprint != key.second) {
    set_error(reply, Error{ErrorCode::kInvalidArgument,
                           fmt::format("idempotency key '{}' was used for another request; use a "
                                       "new key for a new action",
                                       printable(key.first, 64))});
    return true;
  }
  const uint64_t request_id = reply.request_id();
  if (!reply.ParseFromString(it->second.reply)) {
    set_error(reply, Error{ErrorCode::kInternal, "stored reply for idempotency key unreadable"});
  }
  reply.set_request_id(request_id);
  log_.info("action repeated key=\"{}\"", printable(key.first, 64));
  return true;
}

void ClientService::remember_action(const std::pair<std::string, uint64_t>& key,
                                    const wire::ClientReply& reply, Turn& turn) {
  ActionKeyRow row;
  row.key = key.first;
  row.fingerprint = key.second;
  wire::ClientReply stored = reply;
  stored.clear_request_id();
  row.reply = stored.SerializeAsString();
  row.stored_unix_ms = clock_.unix_ms();
  turn.batch.action_keys.push_back(row);
  farm_.action_keys[key.first] = std::move(row);
}

// ------------------------------------------------------------------ status

void ClientService::status(const wire::StatusRequest& request, wire::ClientReply& reply) const {
  const core::Scheduler& scheduler = *farm_.scheduler;
  core::JobId id = request.job_id();
  if (!scheduler.job(id)) {
    return set_error(reply, Error{ErrorCode::kNotFound, fmt::format("unknown job {}", id)});
  }
  auto* status = reply.mutable_status();
  fill_summary(farm_, id, *status->mutable_job());
  const core::Millis now = clock_.millis();
  const int64_t unix_now = clock_.unix_ms();
  for (const auto& r : scheduler.running_tasks(id, kMaxRunningShown)) {
    auto* t = status->add_running();
    t->set_index(r.task);
    t->set_state(wire::TASK_RUNNING);
    t->set_frames(scheduler.task_frames(id, r.task).to_string());
    t->set_attempts(r.attempt);
    t->set_worker(r.worker);
    t->set_running_s(static_cast<double>((now - r.started).count()) / 1000.0);
    t->set_started_unix_ms(unix_now - (now - r.started).count());
    t->set_elapsed_s(t->running_s());
    if (auto p = parts_.link.progress(id, r.task)) {
      t->set_progress_done(p->done);
      t->set_progress_total(p->total);
      t->set_status_message(p->status);
    }
  }
  for (const auto& e : scheduler.last_errors(id)) {
    auto* t = status->add_last_errors();
    t->set_index(e.task);
    t->set_state(to_wire(e.state));
    t->set_frames(scheduler.task_frames(id, e.task).to_string());
    t->set_attempts(e.attempts);
    t->set_error(e.error);
  }
  status->set_waiting_reason(waiting_reason(id));
  for (const core::WorkerBlock& block : scheduler.blocked_workers(id)) {
    auto* b = status->add_blocked();
    b->set_worker(block.worker);
    b->set_failures(block.failures);
    b->set_reason(block.reason);
  }
  status->set_version(job_version(id));
  if (request.tasks()) {
    uint32_t limit = request.tasks_limit() == 0 ? kDefaultTaskPage
                                                : std::min(request.tasks_limit(), kMaxTaskPage);
    std::optional<core::TaskState> filter;
    if (request.tasks_state() != wire::TASK_STATE_UNSPECIFIED) {
      filter = task_state_from_wire(request.tasks_state());
    }
    for (const auto& v : scheduler.tasks(id, request.tasks_offset(), limit, filter)) {
      auto* t = status->add_tasks();
      t->set_index(v.task);
      t->set_state(to_wire(v.state));
      t->set_frames(scheduler.task_frames(id, v.task).to_string());
      t->set_attempts(v.attempts);
      t->set_error(v.error);
    }
    fill_last_attempts(id, *status);
  }
  if (request.task_states()) {
    const uint64_t limit = request.tasks_limit() == 0
                               ? kMaxTaskStates
                               : std::min<uint64_t>(request.tasks_limit(), kMaxTaskStates);
    std::vector<core::TaskState> states;
    scheduler.task_states(id, request.tasks_offset(), limit, states);
    std::string letters(states.size(), '?');
    for (size_t i = 0; i < states.size(); ++i) letters[i] = task_state_letter(states[i]);
    status->set_task_states(std::move(letters));
  }
}

void ClientService::fill_last_attempts(core::JobId id, wire::StatusReply& status) const {
  if (status.tasks().empty()) return;
  core::TaskIndex first = std::numeric_limits<core::TaskIndex>::max();
  core::TaskIndex last = 0;
  for (const auto& t : status.tasks()) {
    first = std::min(first, static_cast<core::TaskIndex>(t.index()));
    last = std::max(last, static_cast<core::TaskIndex>(t.index()));
  }
  // Who runs or ran each task, and when: a running task's current attempt from
  // the scheduler, the others' last stored attempt.
  const core::Millis now = clock_.millis();
  const int64_t unix_now = clock_.unix_ms();
  std::unordered_map<core::TaskIndex, core::RunningTask> running;
  for (const auto& t : status.tasks()) {
    if (t.state() != wire::TASK_RUNNING) continue;
    for (auto& r : farm_.scheduler->running_tasks(id, std::numeric_limits<size_t>::max())) {
      running.emplace(r.task, std::move(r));
    }
    break;
  }
  auto attempts = parts_.store.last_attempts(id, first, last);
  if (!attempts) {
    log_.warn("attempts not read job={} reason=\"{}\"", id, attempts.error().reason);
  }
  std::unordered_map<core::TaskIndex, const LogRow*> last_of;
  if (attempts) {
    for (const LogRow& row : *attempts) last_of[row.task] = &row;
  }
  for (auto& t : *status.mutable_tasks()) {
    const auto task = static_cast<core::TaskIndex>(t.index());
    if (auto r = running.find(task); r != running.end()) {
      const core::Millis ran = now - r->second.started;
      t.set_worker(r->second.worker);
      t.set_started_unix_ms(unix_now - ran.count());
      t.set_elapsed_s(static_cast<double>(ran.count()) / 1000.0);
      t.set_running_s(t.elapsed_s());
    } else if (auto l = last_of.find(task); l != last_of.end()) {
      const LogRow& row = *l->second;
      t.set_worker(row.worker);
      t.set_started_unix_ms(row.started_unix_ms);
      if (row.started_unix_ms != 0 && row.finished_unix_ms >= row.started_unix_ms) {
        t.set_elapsed_s(static_cast<double>(row.finished_unix_ms - row.started_unix_ms) / 1000.0);
      }
    }
  }
  auto rows = parts_.store.last_attempt_stats(id, first, last);
  if (!rows) {
    // The page is still worth showing; the use is then unknown.
    log_.warn("attempt usage not read job={} reason=\"{}\"", id, rows.error().reason);
    return;
  }
  std::unordered_map<core::TaskIndex, const LogRow*> by_task;
  for (const LogRow& row : *rows) by_task[row.task] = &row;
  for (auto& t : *status.mutable_tasks()) {
    auto it = by_task.find(static_cast<core::TaskIndex>(t.index()));
    if (it != by_task.end() && it->second->stats) {
      to_wire(*it->second->stats, *t.mutable_last_attempt());
    }
  }
}

uint64_t ClientService::job_version(core::JobId id) const {
  // FNV-1a over the fields a follower shows: state, task counts, the running
  // tasks with their attempt, worker and progress, and the recent errors.
  uint64_t h = 0xcbf29ce484222325ULL;
  auto mix = [&h](uint64_t v) {
    for (int i = 0; i < 8; ++i, v >>= 8) {
      h ^= v & 0xff;
      h *= 0x100000001b3ULL;
    }
  };
  const core::Scheduler& scheduler = *farm_.scheduler;
  auto view = scheduler.job(id);
  if (!view) return 1;
  mix(static_cast<uint64_t>(view->state));
  mix((view->paused ? 1 : 0) | (view->cancelled ? 2 : 0));
  for (uint64_t count : view->counts) mix(count);
  for (const auto& r : scheduler.running_tasks(id, kMaxRunningShown)) {
    mix(r.task);
    mix(r.attempt);
    mix(std::hash<std::string>{}(r.worker));
    if (auto p = parts_.link.progress(id, r.task)) {
      mix(p->done);
      mix(p->total);
      mix(std::hash<std::string>{}(p->status));
    }
  }
  for (const auto& e : scheduler.last_errors(id)) {
    mix(e.task);
    mix(e.attempts);
    mix(static_cast<uint64_t>(e.state));
  }
  mix(std::hash<std::string>{}(waiting_reason(id)));
  for (const core::WorkerBlock& block : scheduler.blocked_workers(id)) {
    mix(std::hash<std::string>{}(block.worker));
  }
  return h == 0 ? 1 : h;
}

std::string ClientService::waiting_reason(core::JobId id) const {
  const core::Scheduler& scheduler = *farm_.scheduler;
  auto view = scheduler.job(id);
  const core::JobSpec* spec = scheduler.job_spec(id);
  if (!view || !spec || view->paused || is_finished(view->state) ||
      view->counts[static_cast<size_t>(core::TaskState::kQueued)] == 0) {
    return "";
  }
  if (auto pool = unserved_pool(scheduler, spec->pool)) return *pool;
  const core::JobHold hold = scheduler.hold(id);
  switch (hold.kind) {
    case core::JobHold::Kind::kLimit:
      if (!hold.capacity) {
        return fmt::format("limit '{}' is not configured; the job waits until it is", hold.limit);
      }
      return fmt::format("waiting for limit '{}': {} of {} in use", hold.limit, hold.in_use,
                         *hold.capacity);
    case core::JobHold::Kind::kMaxRunning:
      return fmt::format("at its max running: {} of {} tasks running", hold.in_use,
                         hold.capacity.value_or(0));
    case core::JobHold::Kind::kBlocked:
      return fmt::format(
          "every live worker that serves the job is blocked after failing it ({}); "
          "`farmhand job unblock {}` lets them try again",
          fmt::join(hold.workers, ", "), id);
    case core::JobHold::Kind::kUnsatisfiable:
      return unsatisfiable_request(id, *spec, hold);
    case core::JobHold::Kind::kTags:
      return no_worker_has_tags(hold);
    case core::JobHold::Kind::kNone:
      break;
  }
  return "";
}

void ClientService::limits(const wire::LimitsRequest& request, wire::ClientReply& reply,
                           Turn& turn) {
  core::Scheduler& scheduler = *farm_.scheduler;
  if (request.has_set()) {
    const std::string& name = request.set().name();
    if (!common::valid_limit_name(name)) {
      return set_error(reply, Error{ErrorCode::kInvalidArgument,
                                    fmt::format("limit name '{}' must be 1 to 64 letters, digits, "
                                                "'_', '-' or '.'",
                                                printable(name))});
    }
    scheduler.set_limit(name, request.set().capacity());
    turn.batch.limits.push_back(LimitRow{name, request.set().capacity()});
    log_.info("limit set name={} capacity={}", name, request.set().capacity());
    reply.mutable_limits()->set_set(true);
  }
  auto* out = reply.mutable_limits();
  for (const core::LimitView& limit : scheduler.limits()) {
    auto* info = out->add_limits();
    info->set_name(limit.name);
    info->set_configured(limit.capacity.has_value());
    info->set_capacity(limit.capacity.value_or(0));
    info->set_in_use(limit.in_use);
    info->set_waiting_jobs(limit.waiting_jobs);
  }
  out->set_shares_configured(!config_.shares.empty());
  for (const core::ShareView& share : scheduler.shares()) {
    auto* info = out->add_shares();
    info->set_project(share.project);
    info->set_weight(share.weight);
    info->set_running(share.running);
    info->set_queued_jobs(share.queued_jobs);
    info->set_configured(share.named);
  }
}

bool ClientService::hold_status(const PendingReply& pending, const wire::StatusRequest& request) {
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
      clock_.steady() + std::chrono::milliseconds(std::min(request.wait_ms(), kMaxStatusWaitMs));
  status_waiters_.push_back(std::move(waiter));
  return true;
}

void ClientService::answer_status_waiters(bool all, std::vector<PendingReply>& out) {
  if (status_waiters_.empty()) return;
  const auto now = clock_.steady();
  std::erase_if(status_waiters_, [&](StatusWaiter& waiter) {
    if (!all && now < waiter.deadline &&
        job_version(waiter.request.job_id()) == waiter.request.seen_version()) {
      return false;
    }
    PendingReply& pending = waiter.pending;
    pending.reply.set_ok(true);
    status(waiter.request, pending.reply);
    out.push_back(std::move(pending));
    return true;
  });
}

std::optional<Clock::SteadyTime> ClientService::next_deadline() const {
  std::optional<Clock::SteadyTime> next;
  for (const auto& waiter : status_waiters_) {
    // A millisecond late, so the wait has surely run out when we look.
    auto at = waiter.deadline + std::chrono::milliseconds(1);
    if (!next || at < *next) next = at;
  }
  return next;
}

// ------------------------------------------------------------------ ls, actions, workers, logs

void ClientService::list(const wire::ListRequest& request, wire::ClientReply& reply) const {
  const core::Scheduler& scheduler = *farm_.scheduler;
  const uint32_t limit = request.limit() == 0 ? 1000 : request.limit();
  const std::string needle = ascii_lower(request.name_contains());
  auto ids = scheduler.job_ids();
  std::vector<core::JobId> shown;
  uint64_t matched = 0;
  for (auto it = ids.rbegin(); it != ids.rend(); ++it) {
    const JobRecord* record = farm_.jobs.find(*it);
    auto view = scheduler.job(*it);
    if (!record || !view) continue;
    const wire::JobSpec& spec = record->spec;
    const std::string name = job_display_name(spec);
    if (!job_matches(request, needle,
                     {to_wire(view->state), spec.submitted_by(), spec.project(),
                      record->submitted_unix_ms, spec.labels(), name})) {
      continue;
    }
    if (matched++ < request.offset()) continue;
    if (shown.size() < limit) shown.push_back(*it);
  }
  auto* out = reply.mutable_list();
  // A page holds the newest matches (the next page older ones), in id order.
  for (auto it = shown.rbegin(); it != shown.rend(); ++it)
    fill_summary(farm_, *it, *out->add_jobs());
  out->set_matched(matched);
  const uint64_t next = request.offset() + shown.size();
  out->set_next_offset(next < matched ? next : 0);
}

namespace {

bool is_task_action(wire::JobActionRequest::Action action) {
  return action == wire::JobActionRequest::RETRY || action == wire::JobActionRequest::KILL ||
         action == wire::JobActionRequest::SKIP || action == wire::JobActionRequest::REQUEUE;
}

// The tasks a task-level action names, or why the request cannot say.
Result<core::TaskSelection> task_selection(const wire::JobActionRequest& request) {
  core::TaskSelection selection;
  const bool any = !request.tasks().empty() || !request.frames().empty() ||
                   request.state() != wire::TASK_STATE_UNSPECIFIED;
  if (any && !is_task_action(request.action())) {
    return fail(ErrorCode::kInvalidArgument,
                "tasks, frames and state select tasks for retry, kill, skip and requeue only");
  }
  if (!request.tasks().empty()) {
    auto set = common::FrameSet::parse(request.tasks());
    if (!set) return fail(ErrorCode::kInvalidArgument, "bad task set: " + set.error().reason);
    selection.tasks = std::move(*set);
  }
  if (!request.frames().empty()) {
    auto set = common::FrameSet::parse(request.frames());
    if (!set) return fail(ErrorCode::kInvalidArgument, "bad frame set: " + set.error().reason);
    selection.frames = std::move(*set);
  }
  if (request.state() != wire::TASK_STATE_UNSPECIFIED) {
    selection.state = task_state_from_wire(request.state());
    if (!selection.state) {
      return fail(ErrorCode::kInvalidArgument,
                  fmt::format("unknown task state {}", static_cast<int>(request.state())));
    }
  }
  return selection;
}

}  // namespace

void ClientService::action(const wire::JobActionRequest& request, wire::ClientReply& reply,
                           Turn& turn, const std::string& peer) {
  core::Scheduler& scheduler = *farm_.scheduler;
  const core::Millis now = clock_.millis();
  auto selection = task_selection(request);
  if (!selection) return set_error(reply, selection.error());
  if (request.fail() && request.action() != wire::JobActionRequest::KILL) {
    return set_error(reply, Error{ErrorCode::kInvalidArgument, "fail is for kill only"});
  }
  Result<uint64_t> changed = fail(ErrorCode::kInvalidArgument, "unknown action");
  const char* verb = "";
  switch (request.action()) {
    case wire::JobActionRequest::CANCEL:
      changed = scheduler.cancel(request.job_id(), now);
      verb = "cancelled";
      break;
    case wire::JobActionRequest::RETRY:
      changed = scheduler.retry_tasks(request.job_id(), *selection, now);
      verb = "retried";
      break;
    case wire::JobActionRequest::KILL:
      changed = scheduler.kill_tasks(request.job_id(), *selection, request.fail(),
                                     "killed by farmhand kill", now);
      verb = request.fail() ? "killed (failed)" : "killed";
      break;
    case wire::JobActionRequest::SKIP:
      changed = scheduler.skip_tasks(request.job_id(), *selection, now);
      verb = "skipped";
      break;
    case wire::JobActionRequest::REQUEUE:
      changed = scheduler.requeue(request.job_id(), *selection, now);
      verb = "requeued";
      break;
    case wire::JobActionRequest::PAUSE:
      changed = scheduler.pause(request.job_id(), now);
      verb = "paused";
      break;
    case wire::JobActionRequest::RESUME:
      changed = scheduler.resume(request.job_id(), now);
      verb = "resumed";
      break;
    case wire::JobActionRequest::UNBLOCK:
      changed = scheduler.unblock(request.job_id(), request.worker());
      verb = "unblocked";
      break;
    default:
      break;
  }
  if (!changed) return set_error(reply, changed.error());
  // A movie in segments is one movie to the user: cancelling, pausing or
  // resuming its join (the id `submit` printed) does the same to its segments.
  if (const JobRecord* join = farm_.jobs.find(request.job_id());
      join && is_movie_join(join->spec) && join->spec.after_size() == 1) {
    const core::JobId segments = join->spec.after(0);
    Result<uint64_t> also = 0;
    if (request.action() == wire::JobActionRequest::CANCEL) {
      also = scheduler.cancel(segments, now);
    } else if (request.action() == wire::JobActionRequest::PAUSE) {
      also = scheduler.pause(segments, now);
    } else if (request.action() == wire::JobActionRequest::RESUME) {
      also = scheduler.resume(segments, now);
    }
    if (also) *changed += *also;  // else already finished (or not paused): nothing to do
  }
  auto view = scheduler.job(request.job_id());
  const JobRecord* record = farm_.jobs.find(request.job_id());
  if (record && record->finished_unix_ms != 0 && view && !is_finished(view->state)) {
    farm_.jobs.set_finished(request.job_id(), 0, turn.batch);  // a retry reopened it
  }
  reply.mutable_action()->set_state(view ? to_wire(view->state) : wire::JOB_STATE_UNSPECIFIED);
  reply.mutable_action()->set_tasks_changed(*changed);
  log_.info("job {} job={} tasks={}{}", verb, request.job_id(), *changed,
            peer.empty() ? std::string() : " by=" + printable(peer));
}

void ClientService::job_set(const wire::JobSetRequest& request, wire::ClientReply& reply,
                            Turn& turn) {
  core::Scheduler& scheduler = *farm_.scheduler;
  const core::JobId id = request.job_id();
  const JobRecord* record = farm_.jobs.find(id);
  if (!record || !scheduler.job(id)) {
    return set_error(reply, Error{ErrorCode::kNotFound, fmt::format("unknown job {}", id)});
  }
  core::JobUpdate update;
  wire::JobSpec spec = record->spec;
  std::vector<std::string> changed;
  if (request.has_priority()) {
    update.priority = request.priority();
    spec.set_priority(request.priority());
    changed.push_back(fmt::format("priority={}", request.priority()));
  }
  if (request.has_max_running()) {
    update.max_running = request.max_running();
    spec.set_max_running(request.max_running());
    changed.push_back(fmt::format("max_running={}", request.max_running()));
  }
  if (request.has_pool()) {
    if (request.pool().size() > kMaxPoolBytes) {
      return set_error(reply, Error{ErrorCode::kInvalidArgument,
                                    fmt::format("pool name over {} bytes", kMaxPoolBytes)});
    }
    update.pool = request.pool();
    spec.set_pool(request.pool());
    changed.push_back(fmt::format("pool=\"{}\"", printable(request.pool())));
  }
  if (request.has_max_attempts()) {
    update.max_attempts = request.max_attempts();
    spec.set_max_attempts(request.max_attempts());
    changed.push_back(fmt::format("max_attempts={}", request.max_attempts()));
  }
  if (request.has_timeout_s()) {
    update.timeout = std::chrono::seconds(request.timeout_s());
    spec.set_timeout_s(request.timeout_s());
    changed.push_back(fmt::format("timeout_s={}", request.timeout_s()));
  }
  if (request.has_cores()) {
    update.cores = request.cores();
    spec.set_cores(request.cores());
    changed.push_back(fmt::format("cores={}", request.cores()));
  }
  if (request.has_gpus()) {
    update.gpus = request.gpus();
    spec.set_gpus(request.gpus());
    changed.push_back(fmt::format("gpus={}", request.gpus()));
  }
  if (request.has_memory_bytes()) {
    update.memory = request.memory_bytes();
    spec.set_memory_bytes(request.memory_bytes());
    changed.push_back(fmt::format("memory={}", request.memory_bytes()));
  }
  if (request.has_memory_retry_factor()) {
    const double factor = request.memory_retry_factor();
    if (!valid_memory_retry_factor(factor)) {
      return set_error(reply, Error{ErrorCode::kInvalidArgument,
                                    fmt::format("memory retry factor {} is not 0 or between 1 "
                                                "and 16",
                                                factor)});
    }
    update.memory_retry_factor = factor;
    spec.set_memory_retry_factor(factor);
    changed.push_back(fmt::format("memory_retry_factor={}", factor));
  }
  if (request.set_limits()) {
    update.limits = std::vector<std::string>(request.limits().begin(), request.limits().end());
    spec.mutable_limits()->CopyFrom(request.limits());
    changed.push_back(fmt::format("limits=\"{}\"",
                                  printable(fmt::format("{}", fmt::join(request.limits(), ",")))));
  }
  if (changed.empty()) {
    return set_error(reply, Error{ErrorCode::kInvalidArgument,
                                  "nothing to change: give --priority, --max-running, --pool, "
                                  "--max-attempts, --timeout, --limit, --cores, --gpus, --memory "
                                  "or --memory-retry-factor"});
  }
  if (auto ok = scheduler.update_job(id, update); !ok) return set_error(reply, ok.error());
  turn.batch.spec_changes.push_back(SpecChange{id, spec.SerializeAsString()});
  farm_.jobs.set_spec(id, std::move(spec));
  auto view = scheduler.job(id);
  reply.mutable_action()->set_state(view ? to_wire(view->state) : wire::JOB_STATE_UNSPECIFIED);
  log_.info("job changed job={} {}", id, fmt::join(changed, " "));
}

void ClientService::control_worker(const wire::WorkerControlRequest& request,
                                   wire::ClientReply& reply, Turn& turn) {
  core::Scheduler& scheduler = *farm_.scheduler;
  core::WorkerControl control;
  switch (request.action()) {
    case wire::WorkerControlRequest::ENABLE:
      control = core::WorkerControl::kEnabled;
      break;
    case wire::WorkerControlRequest::DISABLE:
      control = core::WorkerControl::kDisabled;
      break;
    case wire::WorkerControlRequest::DRAIN:
      control = core::WorkerControl::kDraining;
      break;
    default:
      return set_error(reply,
                       Error{ErrorCode::kInvalidArgument, "worker control without an action"});
  }
  if (!scheduler.knows_worker_name(request.name())) {
    return set_error(reply, Error{ErrorCode::kNotFound,
                                  fmt::format("unknown worker '{}' (`farmhand workers` lists them)",
                                              printable(request.name()))});
  }
  const std::string reason = request.reason().substr(0, 200);
  scheduler.control_worker(request.name(), control, reason);
  turn.batch.worker_controls.push_back(WorkerControlRow{request.name(), control, reason});
  log_.info("worker {} worker={} reason=\"{}\"", core::worker_control_name(control), request.name(),
            reason);
  fill_workers(*reply.mutable_worker_control());
}

void ClientService::workers(wire::ClientReply& reply) const {
  fill_workers(*reply.mutable_workers());
}

void ClientService::fill_workers(wire::WorkersReply& workers_reply) const {
  const core::Scheduler& scheduler = *farm_.scheduler;
  const core::Millis now = clock_.millis();
  auto* out = &workers_reply;
  for (const auto& w : scheduler.workers()) {
    auto* info = out->add_workers();
    info->set_name(w.spec.name);
    info->set_slots(w.spec.slots);
    info->set_interactive_slots(w.spec.interactive_slots);
    for (const auto& tag : w.spec.tags) info->add_tags(tag);
    info->set_alive(w.alive);
    info->set_control(std::string(core::worker_control_name(w.control)));
    info->set_control_reason(w.control_reason);
    info->set_cores(w.spec.cores);
    info->set_memory_bytes(w.spec.memory);
    info->set_cores_used(w.cores_used);
    info->set_gpus(w.spec.gpus);
    info->set_gpus_used(w.gpus_used);
    info->set_memory_used_bytes(w.memory_used);
    info->set_isolation(w.spec.isolation);
    info->set_last_beat_s(static_cast<double>((now - w.last_seen).count()) / 1000.0);
    if (const WorkerLink::Peer* peer = parts_.link.peer(w.id)) {
      info->set_host(peer->host);
      info->set_pid(peer->pid);
    }
    for (const auto& ref : w.running) {
      auto* t = info->add_running();
      t->set_index(ref.task);
      t->set_state(wire::TASK_RUNNING);
      t->set_job_id(ref.job);
      t->set_frames(scheduler.task_frames(ref.job, ref.task).to_string());
    }
  }
}

void ClientService::logs(const wire::LogsRequest& request, wire::ClientReply& reply) const {
  if (!farm_.scheduler->job(request.job_id())) {
    return set_error(reply,
                     Error{ErrorCode::kNotFound, fmt::format("unknown job {}", request.job_id())});
  }
  std::optional<core::TaskIndex> task;
  if (request.task() >= 0) task = static_cast<core::TaskIndex>(request.task());
  auto rows = parts_.store.logs(request.job_id(), task);
  if (!rows) return set_error(reply, rows.error());
  reply.mutable_logs();  // the body, even when no task has a log yet
  for (const auto& row : *rows) {
    auto* log = reply.mutable_logs()->add_logs();
    log->set_task(row.task);
    log->set_attempt(row.attempt);
    log->set_worker(row.worker);
    log->set_text(row.text);
    log->set_error(row.error);
    if (row.stats) to_wire(*row.stats, *log->mutable_stats());
  }
}

// ------------------------------------------------------------------ health

void ClientService::health(wire::ClientReply& reply) const {
  auto* out = reply.mutable_health();
  const std::optional<Error> failure = parts_.health.store_failure();
  out->set_store_writes(!failure);
  if (failure) out->set_store_error(failure->reason);
  if (auto probe = parts_.health.next_store_probe(); failure && probe) {
    out->set_store_retry_in_s(
        std::max(0.0, std::chrono::duration<double>(*probe - clock_.steady()).count()));
  }
  out->set_uptime_s(std::chrono::duration<double>(clock_.steady() - started_).count());
  out->set_failed_commits(parts_.health.failed_commits());
  out->set_held_status_requests(static_cast<uint32_t>(status_waiters_.size()));

  const core::Scheduler& scheduler = *farm_.scheduler;
  constexpr size_t kJobStates = static_cast<size_t>(core::JobState::kCancelled) + 1;
  std::array<uint64_t, kJobStates> jobs{};
  std::array<uint64_t, core::kTaskStateCount> tasks{};
  for (core::JobId id : scheduler.job_ids()) {
    auto view = scheduler.job(id);
    if (!view) continue;
    ++jobs[static_cast<size_t>(view->state)];
    for (size_t s = 0; s < tasks.size(); ++s) tasks[s] += view->counts[s];
  }
  // Every state, zeros included, so a script reads .jobs.failed without a default.
  for (size_t s = 0; s < kJobStates; ++s) {
    (*out->mutable_jobs())[std::string(core::job_state_name(static_cast<core::JobState>(s)))] =
        jobs[s];
  }
  for (size_t s = 0; s <= static_cast<size_t>(core::TaskState::kCancelled); ++s) {
    (*out->mutable_tasks())[std::string(core::task_state_name(static_cast<core::TaskState>(s)))] =
        tasks[s];
  }
  for (const auto& worker : scheduler.workers()) {
    if (worker.alive) {
      out->set_workers_alive(out->workers_alive() + 1);
    } else {
      out->set_workers_silent(out->workers_silent() + 1);
    }
  }
}

}  // namespace farmhand::daemon
