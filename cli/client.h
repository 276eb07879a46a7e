// Client: the `farmhand` command's side of the client <-> broker protocol.
//
// One method per request kind. Each builds a ClientRequest (protocol version,
// random request id), does DEALER round trips through common::request_reply and
// checks that the reply answers this request with the expected body. A reply with
// ok=false becomes an Error carrying the broker's one-line reason and code; no
// reply within the timeout is ErrorCode::kUnavailable, "broker unreachable at
// tcp://... (no reply within N s)". Nothing here prints or exits.
//
// Requests that are safe to repeat are resent within the timeout (Lazy Pirate,
// ZeroMQ guide ch. 4): a request the broker took in but never answered because
// it restarted is asked again instead of waited on. Reads are safe; a submit is,
// because it always carries an idempotency key (generated when the spec has
// none), and so is every action (job actions, job set, worker control, limit
// set): each carries a key, random unless given, and the broker answers a
// repeated key with its first reply instead of acting again.
//
// Not thread-safe: one Client per thread. It owns its ZeroMQ context.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <string>

#include "farmhand.pb.h"
#include <zmq.hpp>

#include "common/curve.h"
#include "common/result.h"

namespace farmhand::cli {

class Client {
 public:
  // `endpoint` is a ZeroMQ endpoint such as tcp://127.0.0.1:7600; `timeout`
  // bounds the wait for each reply, resends included.
  Client(std::string endpoint, std::chrono::milliseconds timeout,
         std::optional<common::CurveClientKeys> curve = std::nullopt);

  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  const std::string& endpoint() const { return endpoint_; }

  std::chrono::milliseconds timeout() const { return timeout_; }

  // "broker unreachable at <endpoint> (no reply within N s)".
  std::string unreachable_reason(std::chrono::milliseconds waited) const;

  // Submits a job. Fills spec.idempotency_key with a random key when empty.
  [[nodiscard]] Result<wire::SubmitReply> submit(wire::JobSpec spec);
  // One job per step of an Open Job Description template; an idempotency key
  // (its own random one when options has none) makes resends harmless.
  [[nodiscard]] Result<wire::SubmitOpenJdReply> submit_openjd(wire::SubmitOpenJdRequest request);

  // A job's status; `timeout` overrides the client's reply timeout for this call.
  [[nodiscard]] Result<wire::StatusReply> status(
      const wire::StatusRequest& request,
      std::optional<std::chrono::milliseconds> timeout = std::nullopt);

  [[nodiscard]] Result<wire::ListReply> list(const wire::ListRequest& request);

  // Cancel, retry, pause, resume or unblock a job (`worker`: UNBLOCK only that one).
  [[nodiscard]] Result<wire::JobActionReply> act(uint64_t job_id,
                                                 wire::JobActionRequest::Action action,
                                                 const std::string& worker = {},
                                                 const std::string& key = {});
  // Any job action, task-level ones (tasks, frames, state, fail) included.
  // Fills idempotency_key with a random key when empty.
  [[nodiscard]] Result<wire::JobActionReply> act(wire::JobActionRequest request);

  // Changes a job live (`farmhand job set`). Fills idempotency_key when empty.
  [[nodiscard]] Result<wire::JobActionReply> job_set(wire::JobSetRequest request);

  [[nodiscard]] Result<wire::WorkersReply> workers();

  // The broker's own health: whether its state store writes, uptime, counts.
  [[nodiscard]] Result<wire::HealthReply> health();

  // Enables, disables or drains a worker by name; every worker after the change.
  [[nodiscard]] Result<wire::WorkersReply> control_worker(const std::string& name,
                                                          wire::WorkerControlRequest::Action action,
                                                          const std::string& reason,
                                                          const std::string& key = {});

  // The limits, after setting `set` (name, capacity) when given.
  [[nodiscard]] Result<wire::LimitsReply> limits(
      const std::optional<std::pair<std::string, uint32_t>>& set = std::nullopt,
      const std::string& key = {});

  // Task logs of a job: one task's, or every task's with a log when `task` is empty.
  [[nodiscard]] Result<wire::LogsReply> logs(uint64_t job_id, std::optional<uint64_t> task);

  // Publishes a path. Fills request.event_id with a random id when empty, so a
  // resend after a lost reply cannot publish twice; the reply says which id.
  [[nodiscard]] Result<wire::PublishReply> publish(wire::PublishRequest request);

  [[nodiscard]] Result<wire::EventsReply> events(const wire::EventsRequest& request);

  // The webhooks and their outbox: pending, delivered and failed deliveries.
  [[nodiscard]] Result<wire::HooksReply> hooks();

  // An online copy of the broker's state to `path` on the broker's host. Waits
  // for the copy, at least an hour whatever the reply timeout.
  [[nodiscard]] Result<wire::BackupReply> backup(const std::string& path, bool force = false);

  // Who submits, for JobSpec.submitted_by / submitted_from.
  static std::string login_name();
  static std::string host_name();

  // 128 random bits as 32 hex digits, for idempotency keys.
  static std::string random_key();

 private:
  enum class Resend { kNo, kYes };

  // Round trips until a reply or `timeout`; checks the request id and maps
  // ok=false to an Error.
  Result<wire::ClientReply> call(wire::ClientRequest& request, std::chrono::milliseconds timeout,
                                 Resend resend);

  zmq::context_t ctx_;
  std::string endpoint_;
  std::optional<common::CurveClientKeys> curve_;  // CurveZMQ to the client port
  std::chrono::milliseconds timeout_;
  std::mt19937_64 rng_;
};

}  // namespace farmhand::cli
