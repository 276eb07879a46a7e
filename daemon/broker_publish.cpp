// The broker's publish intake: publish events, their rules, watched folders,
// the online backup and config reload. Part of Broker (see broker.h).
#include <algorithm>
#include <filesystem>
#include <random>

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/config.h"
#include "common/path_template.h"
#include "daemon/backup.h"
#include "daemon/broker.h"
#include "daemon/media_jobs.h"
#include "daemon/rules.h"
#include "daemon/systemd_notify.h"

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

void Broker::handle_publish(const wire::PublishRequest& request, wire::ClientReply& reply) {
  auto reject = [&](ErrorCode code, std::string reason) {
    set_error(reply, Error{code, std::move(reason)});
  };
  const std::string& id_given = request.event_id();
  if (id_given.size() > kMaxEventIdBytes || !printable_id(id_given)) {
    return reject(ErrorCode::kInvalidArgument, "event id must be at most 256 printable bytes");
  }
  if (!id_given.empty()) {
    if (auto it = event_index_.find(id_given); it != event_index_.end()) {
      fill_publish_reply(events_[it->second], true, *reply.mutable_publish());
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
  if (auto ok = check_allowed_root("path", request.path(), options_.config.broker.allowed_roots);
      !ok) {
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
    event_id = fmt::format("ev-{}-{:08x}", unix_ms_now(), static_cast<uint32_t>(rng()));
  }
  event.set_event_id(event_id);
  event.set_path(request.path());
  event.mutable_meta()->insert(request.meta().begin(), request.meta().end());
  event.set_source(request.source().empty() ? "client" : request.source());
  event.set_received_unix_ms(unix_ms_now());

  std::set<std::string> matched;
  for (const PublishItem& item : *items) {
    for (const common::Rule& rule : options_.config.rules) {
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
        if (upstream_missing) {
          event.add_warnings(fmt::format("{}: not created, an upstream job was not", where));
          continue;
        }
        const common::FrameSet* on_disk =
            job.input_is_item && item.frames ? &*item.frames : nullptr;
        auto id = create_job(std::move(job.spec), on_disk);
        if (!id) {
          event.add_warnings(fmt::format("{}: {}", where, id.error().reason));
          continue;
        }
        made[i] = *id;
        event.add_job_ids(*id);
      }
    }
  }
  // Job problems are worth a warning in the log; a publish no rule wants is routine.
  for (const auto& warning : event.warnings()) {
    log_->warn("publish event={} warning=\"{}\"", printable(event_id), printable(warning, 500));
  }
  if (matched.empty())
    event.add_warnings(fmt::format("no rule matched {}", printable(request.path(), 300)));
  log_->info("publish accepted event={} path={} source={} jobs={} rules={}", printable(event_id),
             printable(request.path(), 300), printable(event.source()), event.job_ids_size(),
             event.rules_size());

  EventRow row;
  row.event_id = event_id;
  row.received_unix_ms = event.received_unix_ms();
  row.info = event.SerializeAsString();
  batch_.events.push_back(std::move(row));
  fill_publish_reply(event, false, *reply.mutable_publish());
  event_index_[event_id] = events_.size();
  events_.push_back(std::move(event));
  ++uncommitted_events_;
}

void Broker::add_event(const wire::EventInfo& event, wire::EventsReply& out) const {
  wire::EventInfo* copy = out.add_events();
  *copy = event;
  for (uint64_t id : event.job_ids()) {
    wire::JobSummary summary;
    fill_summary(id, summary);
    copy->add_job_states(summary.state());
  }
}

void Broker::handle_events(const wire::EventsRequest& request, wire::ClientReply& reply) {
  auto* out = reply.mutable_events();
  if (!request.event_id().empty()) {
    auto it = event_index_.find(request.event_id());
    if (it == event_index_.end()) {
      set_error(reply, Error{ErrorCode::kNotFound,
                             fmt::format("unknown event {}", printable(request.event_id()))});
      return;
    }
    add_event(events_[it->second], *out);
    return;
  }
  uint32_t limit =
      request.limit() == 0 ? kDefaultEventsShown : std::min(request.limit(), kMaxEventsShown);
  for (size_t n = 0; n < events_.size() && n < limit; ++n) {
    add_event(events_[events_.size() - 1 - n], *out);
  }
}

Result<void> Broker::restore_events() {
  return store_->load_events([&](EventRow&& row) {
    wire::EventInfo event;
    if (!event.ParseFromString(row.info)) {
      log_->error("event skipped at restore event={} reason=\"unreadable\"", row.event_id);
      return;
    }
    if (event.source().rfind("watch:", 0) == 0) watch_published_.insert(event.path());
    event_index_[event.event_id()] = events_.size();
    events_.push_back(std::move(event));
  });
}

// ------------------------------------------------------------------ watched folders

Result<void> Broker::start_watching() {
  watcher_.reset();
  if (options_.config.watch.empty()) return {};
  std::vector<WatchSpec> specs;
  for (const common::WatchFolder& folder : options_.config.watch) {
    WatchSpec spec;
    spec.dir = folder.path;
    spec.recursive = folder.recursive;
    spec.settle = folder.settle;
    spec.include = folder.include;
    specs.push_back(std::move(spec));
  }
  auto watcher = FolderWatcher::create(std::move(specs), std::chrono::steady_clock::now());
  if (!watcher) return fail(watcher.error());
  watcher_ = std::move(*watcher);
  for (const common::WatchFolder& folder : options_.config.watch) {
    log_->info("watching folder={} settle_s={} recursive={}", folder.path,
               static_cast<double>(folder.settle.count()) / 1000.0, folder.recursive);
  }
  return {};
}

void Broker::publish_settled() {
  for (const SettledSequence& settled : watcher_->take_settled(std::chrono::steady_clock::now())) {
    if (settled.watch >= options_.config.watch.size()) continue;
    const common::WatchFolder& folder = options_.config.watch[settled.watch];
    bool seen = watch_published_.count(settled.pattern) != 0;
    if (seen && !folder.republish) {
      log_->info("watch skipped path={} reason=\"published before; republish is off\"",
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
    handle_publish(request, reply);
    if (!reply.ok()) {
      log_->warn("watch publish failed path={} reason=\"{}\"", settled.pattern, reply.error());
      continue;
    }
    watch_published_.insert(settled.pattern);
  }
}

// ------------------------------------------------------------------ backup

bool Broker::handle_backup(const std::string& routing_id, bool req_envelope,
                           const wire::BackupRequest& request, wire::ClientReply& reply) {
  const std::string& target = request.path();
  const BackupPolicy policy{options_.state_dir, options_.config.broker.backup_dir,
                            options_.config.broker.allowed_roots, request.force()};
  if (auto ok = check_backup_target(target, policy); !ok) {
    set_error(reply, ok.error());
    return false;
  }
  if (backup_) {
    set_error(reply, Error{ErrorCode::kUnavailable, "a backup is already running"});
    return false;
  }
  auto backup = std::make_unique<Backup>();
  backup->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (backup->event_fd < 0) {
    set_error(reply, Error{ErrorCode::kInternal, "cannot create eventfd"});
    return false;
  }
  backup->reply = PendingReply{routing_id, req_envelope, reply};
  backup->target = target;
  backup->started = std::chrono::steady_clock::now();
  Backup* b = backup.get();
  std::string source = db_path_;
  // Its own connection on its own thread: WAL lets the loop keep committing meanwhile.
  backup->thread = std::thread([b, source, policy] {
    b->result = backup_database(source, b->target, policy);
    uint64_t one = 1;
    (void)!write(b->event_fd, &one, sizeof one);
  });
  backup_ = std::move(backup);
  log_->info("backup started target={}", target);
  return true;
}

void Broker::finish_backup() {
  uint64_t count = 0;
  if (read(backup_->event_fd, &count, sizeof count) != sizeof count) return;
  backup_->thread.join();
  close(backup_->event_fd);
  PendingReply pending = std::move(backup_->reply);
  double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - backup_->started).count();
  if (backup_->result) {
    pending.reply.mutable_backup()->set_bytes(*backup_->result);
    pending.reply.mutable_backup()->set_elapsed_s(elapsed);
    log_->info("backup done target={} bytes={} elapsed_s={:.3f}", backup_->target, *backup_->result,
               elapsed);
  } else {
    set_error(pending.reply, backup_->result.error());
    log_->error("backup failed target={} reason=\"{}\"", backup_->target,
                backup_->result.error().reason);
  }
  backup_.reset();
  send_reply(pending);
}

// ------------------------------------------------------------------ reload

void Broker::reload_config() {
  if (options_.config_path.empty()) {
    log_->warn("sighup: no --config file to reload; running on the embedded defaults");
    return;
  }
  systemd::notify_reloading();
  auto loaded = common::load_config_file(options_.config_path);
  Result<void> checked = loaded ? check_rule_jobs(*loaded, options_.config_path) : Result<void>{};
  if (!loaded || !checked) {
    const std::string& reason = !loaded ? loaded.error().reason : checked.error().reason;
    for (size_t start = 0; start < reason.size();) {
      size_t end = reason.find('\n', start);
      if (end == std::string::npos) end = reason.size();
      log_->error("config reload refused, the old rules stay: {}",
                  reason.substr(start, end - start));
      start = end + 1;
    }
    systemd::notify_ready();
    return;
  }
  common::Config previous = options_.config;
  options_.config.rules = loaded->rules;
  options_.config.commands = loaded->commands;
  options_.config.watch = loaded->watch;
  if (auto ok = start_watching(); !ok) {
    log_->error("config reload refused, the old rules stay: {}", ok.error().reason);
    options_.config = std::move(previous);
    if (auto again = start_watching(); !again) {
      log_->error("watched folders stopped, retrying: {}", again.error().reason);
      watch_retry_at_ = std::chrono::steady_clock::now() + kWatchRetry;
    }
    systemd::notify_ready();
    return;
  }
  watch_retry_at_.reset();
  if (zap_) {
    const auto& broker = options_.config.broker;
    for (const auto& [domain, who, secured] :
         {std::tuple{ZapHandler::kWorkers, "worker", !broker.worker_curve_secret_key_file.empty()},
          std::tuple{ZapHandler::kClients, "client",
                     !broker.client_curve_secret_key_file.empty()}}) {
      if (!secured) continue;
      if (auto keys = load_authorized_keys(domain); keys) {
        log_->info("authorised {} keys reloaded keys={}", who, *keys);
      } else {
        log_->error("authorised {} keys not reloaded, the old ones stay: {}", who,
                    keys.error().reason);
      }
    }
  }
  log_->info(
      "config reloaded file={} rules={} commands={} watched_folders={} "
      "note=\"broker and local_workers settings take effect at restart\"",
      options_.config_path, options_.config.rules.size(), options_.config.commands.size(),
      options_.config.watch.size());
  systemd::notify_ready();
}

}  // namespace farmhand::daemon
