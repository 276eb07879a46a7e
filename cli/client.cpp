#include "cli/client.h"

#include <algorithm>
#include <cstdlib>
#include <thread>
#include <utility>

#include <fmt/format.h>
#include <pwd.h>
#include <unistd.h>

#include "common/wire.h"

namespace farmhand::cli {

namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// Resend no sooner than this: a live broker answers in milliseconds, while one
// that restarts (systemd, supervisor) is back within a second or two.
constexpr milliseconds kMinResendAfter{1000};
// Pause after a try that failed at once, so a broken endpoint is not hammered.
constexpr milliseconds kMinTry{100};

std::string body_name(wire::ClientReply::BodyCase body) {
  const auto* field = wire::ClientReply::descriptor()->FindFieldByNumber(static_cast<int>(body));
  return field != nullptr ? field->name() : "no";
}

// Unwraps the body a request kind expects; a reply with another body means the
// broker and this client disagree about the protocol.
template <typename Body>
Result<Body> body_of(Result<wire::ClientReply> reply, wire::ClientReply::BodyCase expected,
                     const Body& (wire::ClientReply::*get)() const) {
  if (!reply) return fail(std::move(reply.error()));
  if (reply->body_case() != expected) {
    return fail(ErrorCode::kCorrupt,
                fmt::format("unexpected reply from broker ({} body for a {} request)",
                            body_name(reply->body_case()), body_name(expected)));
  }
  return ((*reply).*get)();
}

}  // namespace

Client::Client(std::string endpoint, std::chrono::milliseconds timeout,
               std::optional<common::CurveClientKeys> curve)
    : ctx_(1),
      endpoint_(std::move(endpoint)),
      curve_(std::move(curve)),
      timeout_(timeout),
      rng_(std::random_device{}()) {}

std::string Client::random_key() {
  std::random_device device;
  std::string key;
  for (int i = 0; i < 4; ++i) key += fmt::format("{:08x}", static_cast<uint32_t>(device()));
  return key;
}

std::string Client::unreachable_reason(milliseconds waited) const {
  // {:g}: "5 s" for the default, "1.5 s" rather than a rounded "2 s".
  return fmt::format("broker unreachable at {} (no reply within {:g} s)", endpoint_,
                     static_cast<double>(waited.count()) / 1000);
}

Result<wire::ClientReply> Client::call(wire::ClientRequest& request, milliseconds timeout,
                                       Resend resend) {
  request.set_version(common::kProtocolVersion);
  // Zero would look like an unset field on the wire.
  uint64_t id = 0;
  while (id == 0) id = rng_();
  request.set_request_id(id);

  // Two tries within the timeout when resending; a broker that needs more than
  // half of it to answer is answered by the resend instead (dedup or a re-read).
  const milliseconds per_try =
      resend == Resend::kYes ? std::max(kMinResendAfter, timeout / 2) : timeout;
  const auto deadline = Clock::now() + timeout;
  wire::ClientReply reply;
  while (true) {
    const auto started = Clock::now();
    const auto remaining = std::chrono::duration_cast<milliseconds>(deadline - started);
    if (remaining <= milliseconds(0))
      return fail(ErrorCode::kUnavailable, unreachable_reason(timeout));
    reply.Clear();
    auto done = common::request_reply(ctx_, endpoint_, request, reply, std::min(remaining, per_try),
                                      256u << 20, curve_ ? &*curve_ : nullptr);
    if (done) break;
    if (done.error().code != ErrorCode::kUnavailable) return fail(std::move(done.error()));
    if (resend == Resend::kNo) return fail(ErrorCode::kUnavailable, unreachable_reason(timeout));
    // A try that failed without waiting (no send) must not spin until the deadline.
    if (Clock::now() - started < kMinTry) std::this_thread::sleep_for(kMinTry);
  }

  if (reply.request_id() != id) {
    return fail(ErrorCode::kCorrupt,
                fmt::format("broker answered request {} instead of {}", reply.request_id(), id));
  }
  if (!reply.ok()) {
    std::string reason = reply.error().empty() ? "broker refused the request" : reply.error();
    return fail(error_code_from_name(reply.error_code()), std::move(reason));
  }
  return reply;
}

std::string Client::login_name() {
  // The account the process runs as, as ps shows it; $USER only when it has no name.
  if (const passwd* pw = getpwuid(geteuid()); pw && pw->pw_name) return pw->pw_name;
  if (const char* user = std::getenv("USER")) return user;
  return std::to_string(geteuid());
}

std::string Client::host_name() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0) return {};
  return name;
}

Result<wire::SubmitReply> Client::submit(wire::JobSpec spec) {
  const bool own_key = spec.idempotency_key().empty();
  if (own_key) spec.set_idempotency_key(random_key());
  if (spec.submitted_by().empty()) spec.set_submitted_by(login_name());
  if (spec.submitted_from().empty()) spec.set_submitted_from(host_name());
  wire::ClientRequest request;
  *request.mutable_submit()->mutable_spec() = std::move(spec);
  auto reply = body_of(call(request, timeout_, Resend::kYes), wire::ClientReply::kSubmit,
                       &wire::ClientReply::submit);
  // A fresh random key can only have been seen in our own earlier try: for the
  // user this job is new.
  if (reply && own_key) reply->set_duplicate(false);
  return reply;
}

Result<wire::SubmitOpenJdReply> Client::submit_openjd(wire::SubmitOpenJdRequest body) {
  wire::JobSpec& options = *body.mutable_options();
  const bool own_key = options.idempotency_key().empty();
  if (own_key) options.set_idempotency_key(random_key());
  if (options.submitted_by().empty()) options.set_submitted_by(login_name());
  if (options.submitted_from().empty()) options.set_submitted_from(host_name());
  wire::ClientRequest request;
  *request.mutable_submit_openjd() = std::move(body);
  auto reply = body_of(call(request, timeout_, Resend::kYes), wire::ClientReply::kSubmitOpenjd,
                       &wire::ClientReply::submit_openjd);
  if (reply && own_key) reply->set_duplicate(false);
  return reply;
}

Result<wire::StatusReply> Client::status(const wire::StatusRequest& status,
                                         std::optional<std::chrono::milliseconds> timeout) {
  wire::ClientRequest request;
  *request.mutable_status() = status;
  // A long poll is held by the broker for up to wait_ms: a resend within that
  // time would only park a second copy, so it gets one try of wait + timeout.
  if (status.wait_ms() > 0) {
    return body_of(
        call(request, milliseconds(status.wait_ms()) + timeout.value_or(timeout_), Resend::kNo),
        wire::ClientReply::kStatus, &wire::ClientReply::status);
  }
  return body_of(call(request, timeout.value_or(timeout_), Resend::kYes),
                 wire::ClientReply::kStatus, &wire::ClientReply::status);
}

Result<wire::ListReply> Client::list(const wire::ListRequest& list) {
  wire::ClientRequest request;
  *request.mutable_list() = list;
  return body_of(call(request, timeout_, Resend::kYes), wire::ClientReply::kList,
                 &wire::ClientReply::list);
}

Result<wire::JobActionReply> Client::act(uint64_t job_id, wire::JobActionRequest::Action action,
                                         const std::string& worker, const std::string& key) {
  wire::JobActionRequest body;
  body.set_job_id(job_id);
  body.set_action(action);
  body.set_worker(worker);
  body.set_idempotency_key(key);
  return act(std::move(body));
}

Result<wire::JobActionReply> Client::act(wire::JobActionRequest action) {
  if (action.idempotency_key().empty()) action.set_idempotency_key(random_key());
  wire::ClientRequest request;
  *request.mutable_action() = std::move(action);
  // The key makes a resend safe: the broker answers it without acting twice.
  return body_of(call(request, timeout_, Resend::kYes), wire::ClientReply::kAction,
                 &wire::ClientReply::action);
}

Result<wire::JobActionReply> Client::job_set(wire::JobSetRequest job_set) {
  if (job_set.idempotency_key().empty()) job_set.set_idempotency_key(random_key());
  wire::ClientRequest request;
  *request.mutable_job_set() = std::move(job_set);
  return body_of(call(request, timeout_, Resend::kYes), wire::ClientReply::kAction,
                 &wire::ClientReply::action);
}

Result<wire::WorkersReply> Client::workers() {
  wire::ClientRequest request;
  request.mutable_workers();
  return body_of(call(request, timeout_, Resend::kYes), wire::ClientReply::kWorkers,
                 &wire::ClientReply::workers);
}

Result<wire::WorkersReply> Client::control_worker(const std::string& name,
                                                  wire::WorkerControlRequest::Action action,
                                                  const std::string& reason,
                                                  const std::string& key) {
  wire::ClientRequest request;
  auto* body = request.mutable_worker_control();
  body->set_name(name);
  body->set_action(action);
  body->set_reason(reason);
  body->set_idempotency_key(key.empty() ? random_key() : key);
  // Setting the same control twice is harmless: safe to resend.
  return body_of(call(request, timeout_, Resend::kYes), wire::ClientReply::kWorkerControl,
                 &wire::ClientReply::worker_control);
}

Result<wire::LimitsReply> Client::limits(const std::optional<std::pair<std::string, uint32_t>>& set,
                                         const std::string& key) {
  wire::ClientRequest request;
  auto* body = request.mutable_limits();
  if (set) {
    body->mutable_set()->set_name(set->first);
    body->mutable_set()->set_capacity(set->second);
    body->mutable_set()->set_idempotency_key(key.empty() ? random_key() : key);
  }
  // A resent set sets the same value: safe to resend.
  return body_of(call(request, timeout_, Resend::kYes), wire::ClientReply::kLimits,
                 &wire::ClientReply::limits);
}

Result<wire::HooksReply> Client::hooks() {
  wire::ClientRequest request;
  request.mutable_hooks();
  return body_of(call(request, timeout_, Resend::kYes), wire::ClientReply::kHooks,
                 &wire::ClientReply::hooks);
}

Result<wire::HealthReply> Client::health() {
  wire::ClientRequest request;
  request.mutable_health();
  return body_of(call(request, timeout_, Resend::kYes), wire::ClientReply::kHealth,
                 &wire::ClientReply::health);
}

Result<wire::LogsReply> Client::logs(uint64_t job_id, std::optional<uint64_t> task) {
  wire::ClientRequest request;
  request.mutable_logs()->set_job_id(job_id);
  request.mutable_logs()->set_task(task ? static_cast<int64_t>(*task) : -1);
  return body_of(call(request, timeout_, Resend::kYes), wire::ClientReply::kLogs,
                 &wire::ClientReply::logs);
}

Result<wire::PublishReply> Client::publish(wire::PublishRequest publish) {
  const bool own_id = publish.event_id().empty();
  if (own_id) publish.set_event_id("cli-" + random_key());
  if (publish.source().empty()) publish.set_source("cli");
  wire::ClientRequest request;
  *request.mutable_publish() = std::move(publish);
  auto reply = body_of(call(request, timeout_, Resend::kYes), wire::ClientReply::kPublish,
                       &wire::ClientReply::publish);
  // A fresh random id can only have been seen in our own earlier try.
  if (reply && own_id) reply->set_duplicate(false);
  return reply;
}

Result<wire::EventsReply> Client::events(const wire::EventsRequest& events) {
  wire::ClientRequest request;
  *request.mutable_events() = events;
  return body_of(call(request, timeout_, Resend::kYes), wire::ClientReply::kEvents,
                 &wire::ClientReply::events);
}

Result<wire::BackupReply> Client::backup(const std::string& path, bool force) {
  wire::ClientRequest request;
  request.mutable_backup()->set_path(path);
  request.mutable_backup()->set_force(force);
  return body_of(
      call(request, std::max(timeout_, std::chrono::milliseconds(3'600'000)), Resend::kNo),
      wire::ClientReply::kBackup, &wire::ClientReply::backup);
}

}  // namespace farmhand::cli
