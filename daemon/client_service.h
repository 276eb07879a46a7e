// ClientService: the broker's side of the client protocol (proto/PROTOCOL.md):
// decodes a request, answers reads (status, ls, workers, logs, events, health)
// from the Farm and the broker's HealthSource, and hands writes to their
// component (submit to JobIntake, publish to PublishIntake, backup to
// OnlineBackup; job actions it does itself).
//
// Owns the held status requests (long-polled `watch`/`--wait`). Every reply is
// staged in the Turn: writes are acknowledged only once committed, and reads
// then never overtake them. While the store cannot write, writes are refused
// at once with the store's error and reads are answered as usual.
// Not thread-safe: the event loop owns it.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "farmhand.pb.h"
#include <spdlog/spdlog.h>

#include "common/config.h"
#include "daemon/bad_messages.h"
#include "daemon/clock.h"
#include "daemon/farm.h"
#include "daemon/job_intake.h"
#include "daemon/online_backup.h"
#include "daemon/publish_intake.h"
#include "daemon/store/store.h"
#include "daemon/turn.h"
#include "daemon/worker_link.h"

namespace farmhand::daemon {

class Hooks;

// The broker's own state that `farmhand admin health` reports, read-only.
// BrokerCore implements it.
class HealthSource {
 public:
  virtual ~HealthSource() = default;
  // Empty while the state store writes; else why it does not (one line).
  virtual std::optional<Error> store_failure() const = 0;
  // Commits that failed since the broker started.
  virtual uint64_t failed_commits() const = 0;
  // While the store cannot write: when it is tried again.
  virtual std::optional<Clock::SteadyTime> next_store_probe() const = 0;
};

class ClientService {
 public:
  // What the service hands requests to, and what it reports on.
  struct Parts {
    JobIntake& intake;
    PublishIntake& publish;
    OnlineBackup& backup;
    WorkerLink& link;
    Store& store;
    const HealthSource& health;
    const Hooks* hooks = nullptr;  // `farmhand hooks`; none: no hook is listed
  };

  ClientService(const common::Config& config, const Clock& clock, Farm& farm, Parts parts,
                ClientPort& clients, BadMessages& bad, spdlog::logger& log)
      : config_(config),
        clock_(clock),
        farm_(farm),
        parts_(parts),
        clients_(clients),
        bad_(bad),
        log_(log),
        started_(clock.steady()) {}

  // One request. `size` may exceed the configured limit (up to what the socket
  // admits): such a request is answered with its size, not parsed.
  void on_message(const std::string& routing_id, bool req_envelope, const void* data, size_t size,
                  Turn& turn, const std::string& peer = {});

  // Answers held status requests whose job changed or whose wait ran out (all
  // of them when `all`) into `out`, the turn's replies. Called after the
  // turn's commit; the answers leave with the turn's other mail.
  void answer_status_waiters(bool all, std::vector<PendingReply>& out);
  std::optional<Clock::SteadyTime> next_deadline() const;

  // Set while the store cannot write: writes are refused with this error.
  void refuse_writes(std::optional<Error> why) { refuse_writes_ = std::move(why); }

  void set_stopping() { stopping_ = true; }

 private:
  void status(const wire::StatusRequest& request, wire::ClientReply& reply) const;
  // Each task of the reply's page: who runs or ran it and when (the running
  // attempt from the scheduler, else the last stored one), and its last
  // attempt's use, from the store.
  void fill_last_attempts(core::JobId id, wire::StatusReply& status) const;
  bool hold_status(const PendingReply& pending, const wire::StatusRequest& request);
  uint64_t job_version(core::JobId id) const;
  void list(const wire::ListRequest& request, wire::ClientReply& reply) const;
  // `peer`: who asked (the CURVE key's name, or "http:USER"), for the log.
  void action(const wire::JobActionRequest& request, wire::ClientReply& reply, Turn& turn,
              const std::string& peer);
  void workers(wire::ClientReply& reply) const;
  void fill_workers(wire::WorkersReply& out) const;
  void job_set(const wire::JobSetRequest& request, wire::ClientReply& reply, Turn& turn);
  void control_worker(const wire::WorkerControlRequest& request, wire::ClientReply& reply,
                      Turn& turn);
  void logs(const wire::LogsRequest& request, wire::ClientReply& reply) const;
  void health(wire::ClientReply& reply) const;
  // An action whose idempotency key (key, fingerprint) was seen: answers it
  // from the stored reply, or refuses a key used for another request. False
  // for a new key.
  bool replay_action(const std::pair<std::string, uint64_t>& key, wire::ClientReply& reply) const;
  // Stores an action's reply under its key, in the turn's batch (with its effect).
  void remember_action(const std::pair<std::string, uint64_t>& key, const wire::ClientReply& reply,
                       Turn& turn);
  // Lists the limits, after applying a `set` (staged in the turn's batch).
  void limits(const wire::LimitsRequest& request, wire::ClientReply& reply, Turn& turn);
  // Why the job's queued tasks wait, when the broker can tell; "" otherwise.
  std::string waiting_reason(core::JobId id) const;

  struct StatusWaiter {
    PendingReply pending;  // routing, with the request id set
    wire::StatusRequest request;
    Clock::SteadyTime deadline;
  };

  static constexpr size_t kMaxStatusWaiters = 1024;
  static constexpr uint32_t kMaxStatusWaitMs = 60'000;

  const common::Config& config_;
  const Clock& clock_;
  Farm& farm_;
  Parts parts_;
  ClientPort& clients_;
  BadMessages& bad_;
  spdlog::logger& log_;
  std::vector<StatusWaiter> status_waiters_;
  std::optional<Error> refuse_writes_;
  bool stopping_ = false;
  Clock::SteadyTime started_;  // for the uptime health reports
};

// How long the broker keeps an action's reply under its idempotency key.
int64_t action_key_retention_ms();

// The request id of a serialized ClientRequest, read without parsing the rest
// (for answering a request too large to parse); 0 when none is found.
uint64_t peek_request_id(const void* data, size_t size);

}  // namespace farmhand::daemon
