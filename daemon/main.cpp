// farmhandd: the broker. Parses flags, loads the config, wires the Broker, runs.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include <CLI/CLI.hpp>
#include <unistd.h>

#include "common/config.h"
#include "common/logging.h"
#include "daemon/broker.h"
#include "daemon/endpoint_security.h"
#include "daemon/rules.h"
#include "daemon/systemd_notify.h"

namespace {

// The durable default: the system state dir for root (the service), else the
// user's XDG state dir. FARMHAND_STATE_DIR overrides both.
std::string default_state_dir() {
  if (const char* env = std::getenv("FARMHAND_STATE_DIR"); env && *env) return env;
  if (geteuid() == 0) return "/var/lib/farmhand";
  if (const char* xdg = std::getenv("XDG_STATE_HOME"); xdg && *xdg) {
    return std::string(xdg) + "/farmhand";
  }
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "/tmp") + "/.local/state/farmhand";
}

std::string sibling_binary(const std::string& name) {
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return name;
  return (self.parent_path() / name).string();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"farmhandd: the farmhand broker"};
  std::string config_path;
  std::string check_config;
  std::string state_dir;
  int local_workers = -2;
  std::string log_level;
  bool print_worker_key = false;
  std::string http;
  app.add_option("--config", config_path, "config file (default: embedded defaults)");
  app.add_option("--check-config", check_config, "validate a config file and exit");
  app.add_option("--state-dir", state_dir, "where the SQLite state lives");
  app.add_option("--local-workers", local_workers,
                 "local workers to spawn and supervise (default: number of cores)")
      ->check(CLI::Range(0, 1024));
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error");
  app.add_option("--http", http,
                 "HTTP front (API, /metrics): HOST:PORT or off (default http.listen, "
                 "127.0.0.1:7680)")
      ->check([](const std::string& text) {
        auto ok = farmhand::common::check_http_listen(text);
        return ok ? std::string() : ok.error().reason;
      });
  app.add_flag("--print-worker-key", print_worker_key,
               "print the worker endpoint's CURVE public key (for --curve-server-key) and exit");
  CLI11_PARSE(app, argc, argv);

  using farmhand::common::load_config_file;
  if (!check_config.empty()) {
    auto config = load_config_file(check_config);
    if (!config) {
      std::fprintf(stderr, "%s\n", config.error().reason.c_str());
      return 1;
    }
    if (auto rules = farmhand::daemon::check_rule_jobs(*config, check_config); !rules) {
      std::fprintf(stderr, "%s\n", rules.error().reason.c_str());
      return 1;
    }
    if (auto plain = farmhand::daemon::check_plain_endpoints(config->broker); !plain) {
      std::fprintf(stderr, "%s: %s\n", check_config.c_str(), plain.error().reason.c_str());
      return 1;
    }
    std::printf("%s: ok\n", check_config.c_str());
    return 0;
  }
  farmhand::common::Config config;
  if (!config_path.empty()) {
    auto loaded = load_config_file(config_path);
    if (!loaded) {
      std::fprintf(stderr, "farmhandd: %s\n", loaded.error().reason.c_str());
      return 1;
    }
    if (auto rules = farmhand::daemon::check_rule_jobs(*loaded, config_path); !rules) {
      std::fprintf(stderr, "farmhandd: %s\n", rules.error().reason.c_str());
      return 1;
    }
    config = std::move(*loaded);
  }
  if (!log_level.empty()) config.log_level = log_level;
  if (!http.empty()) {
    config.http.listen = http;
    config.http.listen_given = true;
  }
  farmhand::common::setup_logging(config.log_level);

  farmhand::daemon::Broker::Options options;
  options.state_dir = !state_dir.empty()                 ? state_dir
                      : !config.broker.state_dir.empty() ? config.broker.state_dir
                                                         : default_state_dir();
  if (print_worker_key) {
    auto key = farmhand::daemon::worker_endpoint_public_key(config, options.state_dir);
    if (!key) {
      std::fprintf(stderr, "farmhandd: %s\n", key.error().reason.c_str());
      return 1;
    }
    std::printf("%s\n", key->c_str());
    return 0;
  }
  int count = local_workers != -2 ? local_workers : config.local_workers.count;
  if (count < 0) count = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  options.local_workers = count;
  options.worker_binary = config.local_workers.worker_binary.empty()
                              ? sibling_binary("farmhand-worker")
                              : config.local_workers.worker_binary;
  // Under systemd (Type=notify) these reach the service manager; elsewhere they are no-ops.
  namespace sd = farmhand::daemon::systemd;
  std::string serving = "serving clients on " + config.broker.client_endpoint + ", workers on " +
                        config.broker.worker_endpoint;
  options.config = std::move(config);
  // SIGHUP reloads rules from it; absolute, so a relative --config survives a chdir.
  if (!config_path.empty()) options.config_path = std::filesystem::absolute(config_path).string();
  try {
    farmhand::daemon::Broker broker(std::move(options));
    if (auto ok = broker.start(); !ok) {
      sd::notify_status("start failed: " + ok.error().reason);
      std::fprintf(stderr, "farmhandd: %s\n", ok.error().reason.c_str());
      return 1;
    }
    sd::notify_status(serving);
    sd::notify_ready();
    auto ran = broker.run();
    sd::notify_stopping();
    if (!ran) {
      sd::notify_status("failed: " + ran.error().reason);
      std::fprintf(stderr, "farmhandd: %s\n", ran.error().reason.c_str());
      return 1;
    }
  } catch (const std::exception& e) {
    sd::notify_stopping();
    std::fprintf(stderr, "farmhandd: fatal: %s\n", e.what());
    return 1;
  }
  return 0;
}
