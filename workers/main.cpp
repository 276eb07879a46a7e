// farmhand-worker: runs tasks the broker leases to it. Parses flags, wires the Worker, runs.
#include <cstdio>
#include <filesystem>
#include <sstream>

#include <CLI/CLI.hpp>
#include <unistd.h>

#include "common/curve.h"
#include "common/logging.h"
#include "workers/worker.h"

int main(int argc, char** argv) {
  CLI::App app{"farmhand-worker: runs farmhand tasks leased by a broker"};
  farmhand::worker::Worker::Options options;
  std::string tags;
  std::string log_level = "info";
  options.broker = "tcp://127.0.0.1:7601";
  app.add_option("--broker", options.broker, "the broker's worker endpoint");
  app.add_option("--slots", options.slots, "tasks run at once")->check(CLI::Range(1, 4096));
  app.add_option("--interactive-slots", options.interactive_slots,
                 "extra slots reserved for short publish-driven media work (default 1)")
      ->check(CLI::Range(0, 64));
  app.add_option("--tags", tags, "comma-separated tags (pools this worker serves)");
  app.add_option("--name", options.name,
                 "stable worker name (default: host name); a restarted worker keeps it");
  app.add_option("--work-dir", options.work_dir, "where per-task logs are written");
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error");
  app.add_option("--media-binary", options.media_binary,
                 "farmhand-media (default: the one beside farmhand-worker)");
  app.add_option("--media-memory-mb", options.media_memory_mb,
                 "address-space cap of each media process, in MiB (default 4096)");
  std::string curve_server_key;
  std::string curve_key_file;
  app.add_option("--curve-server-key", curve_server_key,
                 "the broker's CURVE public key, or @FILE holding it (default "
                 "$FARMHAND_CURVE_SERVER_KEY): connect with CurveZMQ");
  app.add_option("--curve-key-file", curve_key_file,
                 "this worker's CURVE secret key file (`farmhand admin keygen`; default "
                 "$FARMHAND_CURVE_SECRET_KEY holds the key itself)");
  CLI11_PARSE(app, argc, argv);
  farmhand::common::setup_logging(log_level);

  // CurveZMQ: both keys or neither. The environment serves local workers,
  // whose broker hands them a key pair of its own.
  if (curve_server_key.empty()) {
    if (const char* env = std::getenv("FARMHAND_CURVE_SERVER_KEY")) curve_server_key = env;
  } else if (curve_server_key.front() == '@') {
    auto key = farmhand::common::read_curve_key_file(curve_server_key.substr(1));
    if (!key) {
      std::fprintf(stderr, "farmhand-worker: %s\n", key.error().reason.c_str());
      return 2;
    }
    curve_server_key = *key;
  }
  std::string curve_secret_key;
  if (!curve_key_file.empty()) {
    auto key = farmhand::common::read_curve_key_file(curve_key_file);
    if (!key) {
      std::fprintf(stderr, "farmhand-worker: %s\n", key.error().reason.c_str());
      return 2;
    }
    curve_secret_key = *key;
  } else if (const char* env = std::getenv("FARMHAND_CURVE_SECRET_KEY")) {
    curve_secret_key = env;
  }
  if (curve_server_key.empty() != curve_secret_key.empty()) {
    std::fprintf(stderr, "farmhand-worker: --curve-server-key and --curve-key-file go together\n");
    return 2;
  }
  if (!curve_server_key.empty()) {
    auto public_key = farmhand::common::curve_public_key(curve_secret_key);
    if (!farmhand::common::is_curve_key(curve_server_key) || !public_key) {
      std::fprintf(stderr, "farmhand-worker: malformed CURVE key (40 Z85 characters)\n");
      return 2;
    }
    options.curve_server_key = curve_server_key;
    options.curve_secret_key = curve_secret_key;
    options.curve_public_key = *public_key;
  }

  if (options.name.empty()) {
    char host[256] = {};
    gethostname(host, sizeof(host) - 1);
    options.name = host;
  }
  std::stringstream split(tags);
  for (std::string tag; std::getline(split, tag, ',');) {
    if (!tag.empty()) options.tags.push_back(tag);
  }
  if (options.media_binary.empty()) {
    std::error_code ec;
    auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
    if (!ec) options.media_binary = (self.parent_path() / "farmhand-media").string();
  }
  if (options.work_dir.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    options.work_dir = std::string(tmp && *tmp ? tmp : "/tmp") + "/farmhand-worker-" +
                       std::to_string(getuid()) + "/" + options.name;
  }
  try {
    farmhand::worker::Worker worker(std::move(options));
    if (auto ok = worker.run(); !ok) {
      std::fprintf(stderr, "farmhand-worker: %s\n", ok.error().reason.c_str());
      return 1;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "farmhand-worker: fatal: %s\n", e.what());
    return 1;
  }
  return 0;
}
