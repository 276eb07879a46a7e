#include "daemon/publish_intake.h"

#include <algorithm>
#include <random>
#include <set>

#include <fmt/format.h>

#include "common/config.h"
#include "daemon/media_jobs.h"
#include "daemon/rules.h"

namespace farmhand::daemon {

namespace {

constexpr size_t kMaxMetaEntries = 64;
constexpr size_t kMaxMetaValueBytes = 4096;
constexpr size_t kMaxEventIdBytes = 256;
constexpr size_t kMaxPublishItems = 1000;
constexpr uint32_t kDefaultEventsShown = 100;
constexpr uint32_t kMaxEventsShown = 10'000;

bool printable_id(const std::string& id) {
  return std::all_of(id.begin(), id.end(),
                     [](char c) { return static_cast<unsigned char>(c) >= 0x20 && c != 0x7f; });
}

// FNV-1a: a stable hash (unlike std::hash) for event ids derived from content.
uint64_t fnv1a(const std::string& text) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

void fill_publish_reply(const wire::EventInfo& event, bool duplicate, wire::PublishReply& out) {
  out.set_event_id(event.event_id());
  out.set_duplicate(duplicate);
  out.mutable_job_ids()->CopyFrom(event.job_ids());
  out.mutable_rules()->CopyFrom(event.rules());
  out.mutable_warnings()->CopyFrom(event.warnings());
}

}  // namespace

// ------------------------------------------------------------------ publish

void PublishIntake::publish(const wire::PublishRequest& request, wire::ClientReply& reply,
                            Turn& turn) {
  auto reject = [&](ErrorCode code, std::string reason) {
    set_error(reply, Error{code, std::move(reason)});
  };
  const std::string& id_given = request.event_id();
  if (id_given.size() > kMaxEventIdBytes || !printable_id(id_given)) {
    return reject(ErrorCode::kInvalidArgument, "event id must be at most 256 printable bytes");
  }
  if (!id_given.empty()) {
    if (const wire::EventInfo* seen = farm_.events.find(id_given)) {
      fill_publish_reply(*seen, true, *reply.mutable_publish());
      return;
    }
  }
  if (request.meta_size() > static_cast<int>(kMaxMetaEntries)) {
    return reject(ErrorCode::kInvalidArgument,
                  fmt::format("more than {} meta entries", kMaxMetaEntries));
  }
  std::map<std::string, std::string> meta;
  for (const auto& [key, value] : request.meta()) {
    if (!common::is_meta_key(key)) {
      return reject(ErrorCode::kInvalidArgument,
                    fmt::format("bad meta key '{}' (letters, digits, _ - . up to 128 bytes)",
                                printable(key)));
    }
    if (value.size() > kMaxMetaValueBytes) {
      return reject(ErrorCode::kInvalidArgument,
                    fmt::format("meta {} is over {} bytes", key, kMaxMetaValueBytes));
    }
    meta[key] = value;
  }
  if (request.source().size() > 4096) return reject(ErrorCode::kInvalidArgument, "bad source");
  if (auto ok = check_allowed_root("path", request.path(), config_.broker.allowed_roots); !ok) {
    return reject(ok.error().code, ok.error().reason);
  }
  auto items = resolve_publish(request.path());
  if (!items) return reject(items.error().code, items.error().reason);
  if (items->size() > kMaxPublishItems) {
    return reject(ErrorCode::kInvalidArgument,
                  fmt::format("{} holds {} sequences and files, over {}: publish them one by one",
                              printable(request.path(), 300), items->size(), kMaxPublishItems));
  }

  wire::EventInfo event;
  std::string event_id = id_given;
  if (event_id.empty()) {
    // Unique across restarts: the time plus a random part.
    static std::mt19937_64 rng{std::random_device{}()};
    event_id = fmt::format("ev-{}-{:08x}", clock_.unix_ms(), static_cast<uint32_t>(rng()));
  }
  event.set_event_id(event_id);
  event.set_path(request.path());
  event.mutable_meta()->insert(request.meta().begin(), request.meta().end());
  event.set_source(request.source().empty() ? "client" : request.source());
  event.set_received_unix_ms(clock_.unix_ms());

  std::set<std::string> matched;
  for (const PublishItem& item : *items) {
    for (const common::Rule& rule : config_.rules) {
      if (!rule_matches(rule, item, meta)) continue;
      if (matched.insert(rule.name).second) event.add_rules(rule.name);
      std::vector<PlannedJob> plan = plan_rule(rule, item, meta, event_id);
      std::vector<core::JobId> made(plan.size(), 0);
      for (size_t i = 0; i < plan.size(); ++i) {
        PlannedJob& job = plan[i];
        std::string where = fmt::format("rule {} job {} for {}", rule.name, job.name, item.path);
        if (!job.error.empty()) {
          event.add_warnings(fmt::format("{}: {}", where, job.error));
          continue;
        }
        bool upstream_missing = false;
        for (size_t up : job.after) {
          if (made[up] == 0) upstream_missing = true;
          job.spec.add_after(made[up]);
        }
        if (job.after_frames) {
          if (made[*job.after_frames] == 0) upstream_missing = true;
          job.spec.set_after_frames(made[*job.after_frames]);
        }
        if (upstream_missing) {
          event.add_warnings(fmt::format("{}: not created, an upstream job was not", where));
          continue;
        }
        const common::FrameSet* on_disk =
            job.input_is_item && item.frames ? &*item.frames : nullptr;
        // A publish names its project in its meta (as shotgunEvents' entities do).
        if (auto it = meta.find("project"); it != meta.end() && job.spec.project().empty()) {
          job.spec.set_project(it->second);
        }
        auto id = intake_.create_job(std::move(job.spec), turn, on_disk);
        if (!id) {
          event.add_warnings(fmt::format("{}: {}", where, id.error().reason));
          continue;
        }
        made[i] = *id;
        event.add_job_ids(*id);
        if (const core::JobSpec* made_spec = farm_.scheduler->job_spec(*id)) {
          if (auto warning = unserved_pool(*farm_.scheduler, made_spec->pool)) {
            event.add_warnings(fmt::format("{}: {}", where, *warning));
          }
        }
      }
    }
  }
  // Job problems are worth a warning in the log; a publish no rule wants is routine.
  for (const auto& warning : event.warnings()) {
    log_.warn("publish event={} warning=\"{}\"", printable(event_id), printable(warning, 500));
  }
  if (matched.empty())
    event.add_warnings(fmt::format("no rule matched {}", printable(request.path(), 300)));
  log_.info("publish accepted event={} path={} source={} jobs={} rules={}", printable(event_id),
            printable(request.path(), 300), printable(event.source()), event.job_ids_size(),
            event.rules_size());

  EventRow row;
  row.event_id = event_id;
  row.received_unix_ms = event.received_unix_ms();
  row.info = event.SerializeAsString();
  turn.batch.events.push_back(std::move(row));
  fill_publish_reply(event, false, *reply.mutable_publish());
  farm_.events.add(std::move(event));
}

void PublishIntake::events(const wire::EventsRequest& request, wire::ClientReply& reply) const {
  auto add_event = [&](const wire::EventInfo& event, wire::EventsReply& out) {
    wire::EventInfo* copy = out.add_events();
    *copy = event;
    for (uint64_t id : event.job_ids()) {
      wire::JobSummary summary;
      fill_summary(farm_, id, summary);
      copy->add_job_states(summary.state());
    }
  };
  auto* out = reply.mutable_events();
  if (!request.event_id().empty()) {
    const wire::EventInfo* event = farm_.events.find(request.event_id());
    if (!event) {
      set_error(reply, Error{ErrorCode::kNotFound,
                             fmt::format("unknown event {}", printable(request.event_id()))});
      return;
    }
    add_event(*event, *out);
    return;
  }
  uint32_t limit =
      request.limit() == 0 ? kDefaultEventsShown : std::min(request.limit(), kMaxEventsShown);
  const auto& all = farm_.events.all();
  for (size_t n = 0; n < all.size() && n < limit; ++n) add_event(all[all.size() - 1 - n], *out);
}

// ------------------------------------------------------------------ watched folders

Result<void> PublishIntake::start_watching() {
  watcher_.reset();
  if (config_.watch.empty()) return {};
  std::vector<WatchSpec> specs;
  for (const common::WatchFolder& folder : config_.watch) {
    WatchSpec spec;
    spec.dir = folder.path;
    spec.recursive = folder.recursive;
    spec.settle = folder.settle;
    spec.include = folder.include;
    specs.push_back(std::move(spec));
  }
  auto watcher = FolderWatcher::create(std::move(specs), clock_.steady());
  if (!watcher) return fail(watcher.error());
  watcher_ = std::move(*watcher);
  for (const common::WatchFolder& folder : config_.watch) {
    log_.info("watching folder={} settle_s={} recursive={}", folder.path,
              static_cast<double>(folder.settle.count()) / 1000.0, folder.recursive);
  }
  return {};
}

void PublishIntake::publish_settled(Turn& turn) {
  for (const SettledSequence& settled : watcher_->take_settled(clock_.steady())) {
    if (settled.watch >= config_.watch.size()) continue;
    const common::WatchFolder& folder = config_.watch[settled.watch];
    bool seen = farm_.events.watch_published().count(settled.pattern) != 0;
    if (seen && !folder.republish) {
      log_.info("watch skipped path={} reason=\"published before; republish is off\"",
                settled.pattern);
      continue;
    }
    wire::PublishRequest request;
    request.set_path(settled.pattern);
    request.mutable_meta()->insert(folder.meta.begin(), folder.meta.end());
    request.set_source("watch:" + folder.path);
    // The same content gets the same id, so a restart cannot publish it twice.
    request.set_event_id(fmt::format("watch-{:016x}", fnv1a(settled.signature)));
    wire::ClientReply reply;
    reply.set_ok(true);  // handle_publish only ever clears it
    publish(request, reply, turn);
    if (!reply.ok()) {
      log_.warn("watch publish failed path={} reason=\"{}\"", settled.pattern, reply.error());
      continue;
    }
    farm_.events.watch_published().insert(settled.pattern);
  }
}

void PublishIntake::on_watch_readable() {
  if (watcher_) watcher_->on_readable(clock_.steady());
}

void PublishIntake::poll(Turn& turn) {
  if (watch_retry_at_ && clock_.steady() >= *watch_retry_at_) {
    if (auto ok = start_watching(); ok) {
      watch_retry_at_.reset();
    } else {
      watch_retry_at_ = clock_.steady() + kWatchRetry;
    }
  }
  if (watcher_) publish_settled(turn);
}

std::optional<Clock::SteadyTime> PublishIntake::next_deadline() const {
  std::optional<Clock::SteadyTime> next = watch_retry_at_;
  if (watcher_) {
    if (auto settle = watcher_->next_deadline()) {
      // A millisecond late, so the sequence has surely settled when we look.
      auto at = *settle + std::chrono::milliseconds(1);
      if (!next || at < *next) next = at;
    }
  }
  return next;
}

}  // namespace farmhand::daemon
