// PublishIntake: publish events — from `farmhand publish`, the Python client
// and watched folders — and the jobs their rules make (daemon/rules.h).
//
// Owns the folder watcher and its retry timer. The accepted events themselves
// live in the Farm's EventBook (they are rebuilt from the store with it); an
// event is staged in the turn's batch and acknowledged after the commit, and
// deduplicated by its id. Not thread-safe: the event loop owns it.
#pragma once

#include <chrono>
#include <memory>
#include <optional>

#include "farmhand.pb.h"
#include <spdlog/spdlog.h>

#include "common/config.h"
#include "common/result.h"
#include "daemon/clock.h"
#include "daemon/farm.h"
#include "daemon/job_intake.h"
#include "daemon/turn.h"
#include "daemon/watcher.h"

namespace farmhand::daemon {

class PublishIntake {
 public:
  PublishIntake(const common::Config& config, const Clock& clock, Farm& farm, JobIntake& intake,
                spdlog::logger& log)
      : config_(config), clock_(clock), farm_(farm), intake_(intake), log_(log) {}

  void publish(const wire::PublishRequest& request, wire::ClientReply& reply, Turn& turn);
  void events(const wire::EventsRequest& request, wire::ClientReply& reply) const;

  // (Re)starts the watched folders of the config. On failure the broker keeps
  // serving and start_watching is tried again every kWatchRetry.
  [[nodiscard]] Result<void> start_watching();

  void retry_watching_later() { watch_retry_at_ = clock_.steady() + kWatchRetry; }

  void cancel_retry() { watch_retry_at_.reset(); }

  int watch_fd() const { return watcher_ ? watcher_->fd() : -1; }

  void on_watch_readable();
  // Retries a failed start when due, and publishes the sequences that settled.
  void poll(Turn& turn);
  std::optional<Clock::SteadyTime> next_deadline() const;

  static constexpr std::chrono::seconds kWatchRetry{10};

 private:
  void publish_settled(Turn& turn);

  const common::Config& config_;
  const Clock& clock_;
  Farm& farm_;
  JobIntake& intake_;
  spdlog::logger& log_;
  std::unique_ptr<FolderWatcher> watcher_;
  std::optional<Clock::SteadyTime> watch_retry_at_;  // after a failed start
};

}  // namespace farmhand::daemon
