#include "daemon/hooks.h"

#include <algorithm>
#include <ctime>

#include <fmt/format.h>

namespace farmhand::daemon {

namespace {

std::string iso_time(int64_t unix_ms) {
  const std::time_t secs = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, unix_ms % 1000);
}

void fill_delivery(const core::HookDelivery& d, wire::HookDeliveryInfo& out) {
  out.set_delivery_id(d.id);
  out.set_event(d.event);
  out.set_job_id(d.job);
  out.set_created_unix_ms(d.created_unix_ms);
  out.set_attempts(d.attempts);
  out.set_next_attempt_unix_ms(d.next_unix_ms);
  out.set_last_error(d.last_error);
}

}  // namespace

Hooks::Hooks(const common::Config& config, const Clock& clock, const Farm& farm,
             spdlog::logger& log)
    : config_(config), clock_(clock), farm_(farm), log_(log), hooks_(config.hooks) {
  set_policies();
  if (!hooks_.empty()) sender_ = std::make_unique<HookSender>(hooks_);
}

void Hooks::set_policies() {
  for (const common::Hook& hook : hooks_) {
    core::HookPolicy policy;
    policy.backoff_base = hook.backoff_base;
    policy.backoff_max = hook.backoff_max;
    policy.give_up_after = hook.give_up_after;
    outbox_.set_policy(hook.name, policy);
  }
}

Hooks::~Hooks() = default;

Result<void> Hooks::restore(Store& store) {
  outbox_.clear();
  set_policies();
  uint64_t orphans = 0;
  auto known = [&](const std::string& name) {
    return std::any_of(hooks_.begin(), hooks_.end(),
                       [&](const common::Hook& h) { return h.name == name; });
  };
  uint64_t max_seq = 0;
  auto ok = store.load_hook_deliveries(
      [&](core::HookDelivery&& d) {
        max_seq = std::max(max_seq, d.seq);
        if (!known(d.hook)) {
          if (!d.failed) ++orphans;
          return;
        }
        outbox_.add(std::move(d));
      },
      [&](const std::string& hook, uint64_t delivered) { outbox_.set_delivered(hook, delivered); });
  if (!ok) return ok;
  next_seq_ = max_seq + 1;
  if (orphans > 0) {
    log_.warn("hook deliveries kept for hooks no longer configured deliveries={}", orphans);
  }
  if (outbox_.pending_size() > 0) {
    log_.info("hook deliveries pending deliveries={}", outbox_.pending_size());
  }
  return {};
}

nlohmann::json Hooks::describe_job(const Farm& farm, core::JobId job) {
  nlohmann::json out;
  out["id"] = job;
  auto view = farm.scheduler->job(job);
  if (view) {
    out["state"] = std::string(core::job_state_name(view->state));
    nlohmann::json tasks;
    tasks["total"] = view->task_count;
    for (int i = 0; i < core::kTaskStateCount; ++i) {
      const auto state = static_cast<core::TaskState>(i);
      if (state == core::TaskState::kBackoff) continue;
      tasks[std::string(core::task_state_name(state))] = view->counts[i];
    }
    out["tasks"] = tasks;
  }
  if (const JobRecord* record = farm.jobs.find(job)) {
    const wire::JobSpec& spec = record->spec;
    out["name"] = spec.name();
    out["kind"] = spec.kind();
    out["user"] = spec.submitted_by();
    out["project"] = spec.project();
    out["frames"] = spec.frames();
    nlohmann::json labels = nlohmann::json::object();
    for (const auto& [k, v] : spec.labels()) labels[k] = v;
    out["labels"] = labels;
    out["submitted_unix_ms"] = record->submitted_unix_ms;
    if (record->started_unix_ms) out["started_unix_ms"] = record->started_unix_ms;
    if (record->finished_unix_ms) out["finished_unix_ms"] = record->finished_unix_ms;
  }
  return out;
}

void Hooks::on_event(const std::string& event, core::JobId job, nlohmann::json subject,
                     Batch& batch) {
  const int64_t now = clock_.unix_ms();
  std::optional<nlohmann::json> job_json;
  for (const common::Hook& hook : hooks_) {
    if (std::find(hook.events.begin(), hook.events.end(), event) == hook.events.end()) continue;
    if (job != 0 && !job_json) job_json = describe_job(farm_, job);
    core::HookDelivery d;
    d.id = fmt::format("{:016x}{:016x}", rng_(), rng_());
    d.seq = next_seq_++;
    d.hook = hook.name;
    d.event = event;
    d.job = job;
    d.created_unix_ms = now;
    d.next_unix_ms = now;
    nlohmann::json body = subject.is_object() ? subject : nlohmann::json::object();
    body["event"] = event;
    body["delivery_id"] = d.id;
    body["hook"] = hook.name;
    body["time"] = iso_time(now);
    body["time_unix_ms"] = now;
    if (job_json) body["job"] = *job_json;
    d.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    batch.hook_deliveries.push_back(d);
    outbox_.add(std::move(d));
  }
}

void Hooks::take_outcomes(Batch& batch) {
  if (!sender_) return;
  for (HookOutcome& outcome : sender_->take_outcomes()) {
    if (outcome.delivered) {
      std::string hook;
      if (outbox_.delivered(outcome.delivery_id, &hook) == core::HookOutbox::Outcome::kDelivered) {
        log_.debug("hook delivered hook={} delivery={}", hook, outcome.delivery_id);
        batch.hooks_delivered.emplace_back(hook, outcome.delivery_id);
      }
      continue;
    }
    core::HookDelivery changed;
    switch (
        outbox_.attempt_failed(outcome.delivery_id, outcome.error, clock_.unix_ms(), &changed)) {
      case core::HookOutbox::Outcome::kRetry:
        log_.warn(
            "hook delivery failed hook={} delivery={} event={} job={} attempt={} "
            "reason=\"{}\" retry_in_ms={}",
            changed.hook, changed.id, changed.event, changed.job, changed.attempts,
            changed.last_error, changed.next_unix_ms - clock_.unix_ms());
        batch.hook_deliveries.push_back(std::move(changed));
        break;
      case core::HookOutbox::Outcome::kGaveUp:
        log_.error(
            "hook delivery given up hook={} delivery={} event={} job={} attempts={} "
            "reason=\"{}\"",
            changed.hook, changed.id, changed.event, changed.job, changed.attempts,
            changed.last_error);
        batch.hook_deliveries.push_back(std::move(changed));
        break;
      default:
        break;
    }
  }
}

Result<void> Hooks::reload(Store& store) {
  sender_.reset();  // joins its threads: nothing of the old hooks is sent after this
  hooks_ = config_.hooks;
  auto ok = restore(store);
  if (!hooks_.empty()) sender_ = std::make_unique<HookSender>(hooks_);
  return ok;
}

void Hooks::send_due() {
  if (!sender_) return;
  for (core::HookDelivery& d : outbox_.take_due(clock_.unix_ms())) {
    sender_->send(HookRequest{d.id, d.hook, d.event, std::move(d.body)});
  }
}

std::optional<Clock::SteadyTime> Hooks::next_deadline() const {
  auto next = outbox_.next_due();
  if (!next) return std::nullopt;
  const int64_t wait = std::max<int64_t>(0, *next - clock_.unix_ms());
  return clock_.steady() + std::chrono::milliseconds(wait);
}

void Hooks::fill(wire::HooksReply& reply) const {
  for (const common::Hook& hook : hooks_) {
    auto* out = reply.add_hooks();
    out->set_name(hook.name);
    out->set_url(hook.url);
    for (const auto& e : hook.events) out->add_events(e);
    const auto counts = outbox_.counts(hook.name);
    out->set_pending(counts.pending);
    out->set_delivered(counts.delivered);
    out->set_failed(counts.failed);
    if (counts.oldest_pending)
      fill_delivery(*counts.oldest_pending, *out->mutable_oldest_pending());
    if (counts.last_failed) fill_delivery(*counts.last_failed, *out->mutable_last_failed());
  }
}

}  // namespace farmhand::daemon
