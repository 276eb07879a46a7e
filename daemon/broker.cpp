#include "daemon/broker.h"

#include <algorithm>
#include <filesystem>

#include <fmt/format.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "common/logging.h"
#include "daemon/http/http_front.h"
#include "daemon/rules.h"
#include "daemon/store/sqlite_store.h"
#include "daemon/systemd_notify.h"

namespace farmhand::daemon {

namespace {

// Whether two configs' hooks send the same things the same way (where each
// was written in the file aside).
bool same_hooks(const std::vector<common::Hook>& a, const std::vector<common::Hook>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                    [](const common::Hook& x, const common::Hook& y) {
                      return x.name == y.name && x.url == y.url && x.events == y.events &&
                             x.secret == y.secret && x.timeout == y.timeout &&
                             x.backoff_base == y.backoff_base && x.backoff_max == y.backoff_max &&
                             x.give_up_after == y.give_up_after && x.ca_file == y.ca_file;
                    });
}

std::string hook_names(const std::vector<common::Hook>& hooks) {
  std::string out;
  for (const auto& hook : hooks) out += (out.empty() ? "" : ",") + hook.name;
  return out;
}

// Bounded work per turn keeps a flood on one socket from starving the other
// and from delaying the turn's commit (and so every acknowledgement). Worker
// messages are bounded by BrokerCore::turn_full.
constexpr int kMaxClientMessagesPerTurn = 2'000;

}  // namespace

Broker::Broker(Options options)
    : options_(std::move(options)),
      log_(common::logger("broker")),
      bad_(clock_, *log_),
      endpoints_(bad_),
      security_(options_.config, clock_, *log_) {}

Broker::~Broker() {
  http_.reset();  // its threads read the core's change feed
  core_.reset();  // joins a running backup before the store goes
  if (signal_fd_ >= 0) close(signal_fd_);
}

Result<void> Broker::start() {
  const auto& broker = options_.config.broker;
  // Locked for the broker's life: a second broker on this dir refuses to start.
  auto state_dir = StateDir::open(options_.state_dir);
  if (!state_dir) return fail(state_dir.error());
  state_dir_ = std::move(*state_dir);
  const std::string db_path = state_dir_->database_path();
  // The loop flushes the WAL itself, after a turn's Assigns have left.
  auto store = state_dir_->open_store(broker.sqlite_synchronous, SqliteStore::Flush::kByCaller);
  if (!store) return fail(store.error());
  store_ = std::move(*store);
  core_ = std::make_unique<BrokerCore>(options_.config, db_path, clock_, *store_, endpoints_,
                                       endpoints_, *log_);
  const auto t0 = clock_.steady();
  if (auto ok = core_->restore(); !ok) return ok;
  const auto restore_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(clock_.steady() - t0).count();

  // Local workers connect on an endpoint of their own in the state dir (mode
  // 0600, no CurveZMQ needed); only when its path is too long for a socket
  // address do they use the worker endpoint, with a key pair made for them.
  std::string local_endpoint;
  try {
    endpoints_.configure(broker);
    if (options_.local_workers > 0) {
      auto bound = endpoints_.bind_local_workers(state_dir_->path());
      if (bound) {
        local_endpoint = *bound;
      } else {
        log_->warn("local workers use the worker endpoint reason=\"{}\"", bound.error().reason);
      }
    }
    if (auto ok = security_.secure(endpoints_.context(), endpoints_.clients(), endpoints_.workers(),
                                   options_.local_workers > 0 && local_endpoint.empty(),
                                   state_dir_->path());
        !ok) {
      return ok;
    }
  } catch (const zmq::error_t& e) {
    return fail(ErrorCode::kUnavailable, fmt::format("cannot set up sockets: {}", e.what()));
  }
  if (auto ok = endpoints_.bind(broker); !ok) return ok;

  sigset_t signals;
  sigemptyset(&signals);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGCHLD}) sigaddset(&signals, s);
  sigprocmask(SIG_BLOCK, &signals, nullptr);
  signal_fd_ = signalfd(-1, &signals, SFD_NONBLOCK | SFD_CLOEXEC);
  if (signal_fd_ < 0) return fail(ErrorCode::kInternal, "cannot create signalfd");
  signal(SIGPIPE, SIG_IGN);
  // A file size limit (ulimit -f) is a failed write to report, not a reason to die.
  signal(SIGXFSZ, SIG_IGN);

  if (auto ok = start_http(); !ok) return ok;

  if (options_.local_workers > 0) {
    Supervisor::Options sup;
    sup.worker_binary = options_.worker_binary;
    sup.broker_endpoint = local_endpoint.empty() ? broker.worker_endpoint : local_endpoint;
    sup.state_dir = options_.state_dir;
    sup.count = options_.local_workers;
    sup.slots = options_.config.local_workers.slots;
    sup.interactive_slots = options_.config.local_workers.interactive_slots;
    sup.tags = options_.config.local_workers.tags;
    sup.cores = options_.config.local_workers.cores;
    sup.memory = options_.config.local_workers.memory;
    sup.log_level = options_.config.log_level;
    sup.env = security_.local_worker_env();
    supervisor_ = std::make_unique<Supervisor>(sup);
    supervisor_->maintain(clock_.steady());
  }
  if (auto ok = core_->publish().start_watching(); !ok) {
    // A publish folder not mounted yet must not keep the whole farm down: the
    // broker serves, and tries the watched folders again every few seconds.
    log_->error("watched folders not started, retrying every {} s: {}",
                PublishIntake::kWatchRetry.count(), ok.error().reason);
    core_->publish().retry_watching_later();
  }
  log_->info(
      "broker started clients={} workers={} state_dir={} jobs={} restore_ms={} local_workers={} "
      "local_workers_endpoint={}",
      broker.client_endpoint, broker.worker_endpoint, options_.state_dir, core_->farm().jobs.size(),
      restore_ms, options_.local_workers, local_endpoint.empty() ? "-" : local_endpoint);
  return {};
}

namespace {

// Where the monitor's files are: http.web_dir, else installed beside the
// binary (PREFIX/bin/farmhandd -> PREFIX/share/farmhand/web), else the source
// tree this binary was built from.
std::string web_dir(const common::HttpConfig& http) {
  if (!http.web_dir.empty()) return http.web_dir;
  std::error_code ec;
  const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const auto installed = self.parent_path().parent_path() / "share" / "farmhand" / "web";
    if (std::filesystem::is_regular_file(installed / "index.html", ec)) return installed.string();
  }
  return FARMHAND_SOURCE_WEB_DIR;
}

}  // namespace

Result<void> Broker::start_http() {
  const common::HttpConfig& http = options_.config.http;
  if (http.listen == "off") {
    log_->info("http off");
    return {};
  }
  auto listen = common::parse_http_listen(http.listen);
  if (!listen) return fail(listen.error());
  HttpFront::Options options;
  options.config = http;
  options.listen = *listen;
  options.feed = &core_->feed();
  options.board = &core_->board();
  Metrics& metrics = core_->metrics();
  options.metrics = [&metrics] { return metrics.text(); };
  options.count_request = [&metrics](const std::string& route, int status) {
    metrics.count_http_request(route, status);
  };
  options.web_dir = web_dir(http);
  auto front = HttpFront::start(endpoints_.context(), std::move(options));
  if (!front) {
    // The default address is best effort (another farmhandd on this host may
    // hold it); one the config or --http asked for must be served.
    if (http.listen_given) return fail(front.error());
    log_->warn(
        "http not started reason=\"{}\" note=\"set http.listen or --http to choose "
        "another address, or off\"",
        front.error().reason);
    return {};
  }
  http_ = std::move(*front);
  core_->board().enable();  // kept only while someone may read it
  log_->info("http listening url={} read={} tokens={}", http_->url(), http.read,
             http.tokens_file.empty() ? "none" : http.tokens_file);
  return {};
}

Result<void> Broker::run() {
  while (!stopping_ && !core_->fatal()) turn();
  log_->info("broker stopping");
  core_->shutdown();
  if (supervisor_) supervisor_->stop(std::chrono::seconds(5));
  if (const auto& fatal = core_->fatal()) return fail(*fatal);
  log_->info("broker stopped");
  return {};
}

void Broker::turn() {
  auto deadline = core_->next_deadline();
  if (supervisor_) {
    if (auto next = supervisor_->next_deadline()) deadline = std::min(deadline, *next);
  }
  if (auto interval = systemd::watchdog_interval()) {
    deadline = std::min(deadline, last_watchdog_ + *interval);
  }
  const auto timeout = std::clamp(clock_.until(deadline), core::Millis(0), core::Millis(1000));
  zmq::pollitem_t items[] = {
      {endpoints_.clients().handle(), 0, ZMQ_POLLIN, 0},
      {endpoints_.workers().handle(), 0, ZMQ_POLLIN, 0},
      {nullptr, signal_fd_, ZMQ_POLLIN, 0},
      {nullptr, core_->publish().watch_fd(), ZMQ_POLLIN, 0},
      {nullptr, core_->backup_fd(), ZMQ_POLLIN, 0},
      {endpoints_.has_local_workers() ? endpoints_.local_workers().handle() : nullptr, -1,
       ZMQ_POLLIN, 0},
      {nullptr, core_->hooks_fd(), ZMQ_POLLIN, 0},
      // An HTTP request wakes the loop as a client's does (not the next timeout).
      {endpoints_.http().handle(), 0, ZMQ_POLLIN, 0},
  };
  try {
    zmq::poll(items, 8, timeout);
  } catch (const zmq::error_t& e) {
    if (e.num() != EINTR) log_->error("poll failed reason=\"{}\"", e.what());
  }
  if (items[2].revents & ZMQ_POLLIN) on_signals();
  if (items[4].fd >= 0 && (items[4].revents & ZMQ_POLLIN)) core_->on_backup_done();
  if (items[6].fd >= 0 && (items[6].revents & ZMQ_POLLIN)) core_->on_hooks_readable();
  if (items[3].fd >= 0 && (items[3].revents & ZMQ_POLLIN)) core_->publish().on_watch_readable();
  // Clients first: a read that comes before anything else of the turn is
  // answered at once, from state the last turn flushed (BrokerCore::on_client).
  endpoints_.drain_clients(
      kMaxClientMessagesPerTurn,
      [&](const std::string& rid, bool req_envelope, const void* data, size_t size,
          const std::string& peer) { core_->on_client(rid, req_envelope, data, size, peer); });
  endpoints_.drain_workers([&] { return core_->turn_full(); },
                           [&](const std::string& rid, const void* data, size_t size) {
                             core_->on_worker(rid, data, size);
                           });
  if (auto interval = systemd::watchdog_interval();
      interval && clock_.steady() - last_watchdog_ >= *interval) {
    last_watchdog_ = clock_.steady();
    systemd::notify_watchdog();
  }
  security_.log_refusals();
  if (!stopping_) core_->end_turn();
  if (core_->fatal()) return;  // run() stops
  report_health();
  if (supervisor_ && !stopping_) supervisor_->maintain(clock_.steady());
}

void Broker::on_signals() {
  signalfd_siginfo info;
  bool reload = false;
  while (read(signal_fd_, &info, sizeof(info)) == sizeof(info)) {
    if (info.ssi_signo == SIGTERM || info.ssi_signo == SIGINT) {
      log_->info("signal received signal={}", info.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
      if (!stopping_) systemd::notify_stopping();
      stopping_ = true;
    } else if (info.ssi_signo == SIGHUP) {
      reload = true;
    }
  }
  if (reload && !stopping_) reload_config();
}

void Broker::report_health() {
  auto failure = core_->store_failure();
  std::string health = failure ? failure->reason + "; writes refused, retrying" : "";
  if (health == health_) return;
  health_ = std::move(health);
  systemd::notify_status(health_.empty()
                             ? "serving clients on " + options_.config.broker.client_endpoint +
                                   ", workers on " + options_.config.broker.worker_endpoint
                             : health_);
}

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
  options_.config.limits = loaded->limits;
  options_.config.shares = loaded->shares;
  PublishIntake& publish = core_->publish();
  if (auto ok = publish.start_watching(); !ok) {
    log_->error("config reload refused, the old rules stay: {}", ok.error().reason);
    options_.config = std::move(previous);
    if (auto again = publish.start_watching(); !again) {
      log_->error("watched folders stopped, retrying: {}", again.error().reason);
      publish.retry_watching_later();
    }
    systemd::notify_ready();
    return;
  }
  publish.cancel_retry();
  if (!same_hooks(previous.hooks, loaded->hooks)) {
    options_.config.hooks = loaded->hooks;
    if (auto ok = core_->reload_hooks(); ok) {
      log_->info("config reload: hooks reloaded before=\"{}\" after=\"{}\"",
                 hook_names(previous.hooks), hook_names(options_.config.hooks));
    } else {
      log_->error("config reload: hooks not reloaded, the old ones stay: {}", ok.error().reason);
      options_.config.hooks = previous.hooks;
      // Refused while the store cannot write (nothing changed); else back to the old ones.
      if (!core_->store_failure()) {
        if (auto again = core_->reload_hooks(); !again) {
          log_->error("hooks reloaded from the store in part: {}", again.error().reason);
        }
      }
    }
  }
  core_->reload_limits(previous.limits);
  if (previous.shares != options_.config.shares) core_->reload_shares();
  security_.reload_keys();
  log_->info(
      "config reloaded file={} rules={} commands={} watched_folders={} "
      "note=\"broker and local_workers settings take effect at restart\"",
      options_.config_path, options_.config.rules.size(), options_.config.commands.size(),
      options_.config.watch.size());
  systemd::notify_ready();
}

}  // namespace farmhand::daemon
