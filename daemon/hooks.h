// Hooks: farm events out to the pipeline as webhooks, at least once.
//
// A farm event (job.succeeded, task.dead, publish.processed, ...) that a hook
// names becomes a delivery: its JSON body is built once, and it is staged in
// the turn's batch, so it is written in the same transaction as the change
// that caused it and survives farmhandd being killed. Once the turn is
// committed and flushed, send_due() hands what is due to the HookSender, whose
// threads POST it; their outcomes come back through a queue (fd() becomes
// readable) and take_outcomes() stages "delivered", or the attempt, its error
// and the next try, in the next turn's batch. Ordering, backoff and giving up
// are the HookOutbox's (daemon/core/hook_outbox.h). After a restart every
// delivery not acknowledged is sent again, with the same delivery id.
// Not thread-safe: the loop owns it (the sender has threads of its own).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>

#include "farmhand.pb.h"
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "common/config.h"
#include "common/result.h"
#include "daemon/clock.h"
#include "daemon/core/hook_outbox.h"
#include "daemon/farm.h"
#include "daemon/hook_sender.h"
#include "daemon/store/store.h"

namespace farmhand::daemon {

class Hooks {
 public:
  Hooks(const common::Config& config, const Clock& clock, const Farm& farm, spdlog::logger& log);
  ~Hooks();

  bool enabled() const { return !hooks_.empty(); }

  // Loads the outbox from the store (at start, and after a failed commit).
  [[nodiscard]] Result<void> restore(Store& store);

  // The config's hooks changed (SIGHUP), between turns: the sender starts again
  // with them and the outbox is loaded again from the store. Deliveries of a
  // hook removed stay in the store, as at a restart, and go out if it comes
  // back; POSTs under way are cut off and sent again, with the same delivery id.
  [[nodiscard]] Result<void> reload(Store& store);

  // A farm event. `subject` holds what is not the job ("task", "worker",
  // "publish"); `job` (0: none) is described from the Farm as it is now.
  void on_event(const std::string& event, core::JobId job, nlohmann::json subject, Batch& batch);

  // Outcomes of attempts, staged in `batch`.
  void take_outcomes(Batch& batch);
  // After the commit: the deliveries due now go to the sender.
  void send_due();

  int fd() const { return sender_ ? sender_->fd() : -1; }

  void on_readable() {
    if (sender_) sender_->on_readable();
  }

  std::optional<Clock::SteadyTime> next_deadline() const;

  void fill(wire::HooksReply& reply) const;

  // The job as hook bodies and event rules describe it.
  static nlohmann::json describe_job(const Farm& farm, core::JobId job);

 private:
  // Each configured hook's backoff and give-up age, into the outbox.
  void set_policies();
  const common::Config& config_;
  const Clock& clock_;
  const Farm& farm_;
  spdlog::logger& log_;
  std::vector<common::Hook> hooks_;  // config_.hooks as at start or the last reload
  core::HookOutbox outbox_;
  std::unique_ptr<HookSender> sender_;
  std::mt19937_64 rng_{std::random_device{}()};
  uint64_t next_seq_ = 1;
};

}  // namespace farmhand::daemon
