// farmhand-worker: runs tasks the broker leases to it. Parses flags, wires the Worker, runs.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <sstream>

#include <CLI/CLI.hpp>
#include <unistd.h>

#include "common/byte_size.h"
#include "common/curve.h"
#include "common/logging.h"
#include "workers/host_resources.h"
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
  app.add_option("--work-dir", options.work_dir,
                 "per-task logs and unacknowledged results; locked, one worker per dir "
                 "(default $TMPDIR/farmhand-worker-UID/NAME)");
  uint64_t max_reconnect_delay_ms = 30'000;
  app.add_option("--max-reconnect-delay-ms", max_reconnect_delay_ms,
                 "cap of the backoff between attempts to reach a lost broker (default 30000)")
      ->check(CLI::Range(100, 3'600'000));
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error");
  app.add_option("--media-binary", options.media_binary,
                 "farmhand-media (default: the one beside farmhand-worker)");
  app.add_option("--media-memory-mb", options.media_memory_mb,
                 "address-space cap of each media process, in MiB (default 4096)");
  app.add_option("--gpus", options.gpus,
                 "GPUs this worker offers, numbered 0..N-1 for CUDA_VISIBLE_DEVICES (default: "
                 "the NVIDIA GPUs the driver lists)")
      ->check(CLI::Range(0, 1024));
  app.add_option("--cores", options.cores,
                 "cores this worker offers (default: detected from affinity and cgroup cpu.max)")
      ->check(CLI::Range(1, 1 << 20));
  std::string memory;
  app.add_option("--memory", memory,
                 "memory this worker offers, e.g. 64G, 512M, 1.5T (default: detected from "
                 "physical memory and cgroup memory.max)");
  bool no_enforce_memory = false;
  app.add_flag("--no-enforce-memory", no_enforce_memory,
               "do not kill tasks past their memory request (default: enforce, by memory.max "
               "or by sampling)");
  bool no_cgroups = false;
  app.add_flag("--no-cgroups", no_cgroups,
               "run tasks as process groups only, without a cgroup v2 per task");
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
  if (!memory.empty()) {
    auto bytes = farmhand::common::parse_byte_size(memory);
    if (!bytes || *bytes == 0) {
      std::fprintf(stderr, "farmhand-worker: --memory: %s\n",
                   bytes ? "size must be more than 0" : bytes.error().reason.c_str());
      return 2;
    }
    options.memory_bytes = *bytes;
  }
  options.enforce_memory = !no_enforce_memory;
  options.cgroups = !no_cgroups;
  options.max_reconnect_delay = std::chrono::milliseconds(max_reconnect_delay_ms);

  // CurveZMQ: both keys or neither. Flags name files; local workers get the
  // keys themselves in the environment from the broker that starts them.
  std::optional<farmhand::common::CurveClientKeys> curve;
  if (!curve_server_key.empty() || !curve_key_file.empty()) {
    auto keys = farmhand::common::curve_client_keys(curve_server_key, curve_key_file);
    if (!keys) {
      std::fprintf(stderr, "farmhand-worker: %s\n", keys.error().reason.c_str());
      return 2;
    }
    curve = *keys;
  } else if (const char* server = std::getenv("FARMHAND_CURVE_SERVER_KEY")) {
    const char* secret = std::getenv("FARMHAND_CURVE_SECRET_KEY");
    auto public_key = farmhand::common::curve_public_key(secret != nullptr ? secret : "");
    if (!farmhand::common::is_curve_key(server) || !public_key) {
      std::fprintf(stderr, "farmhand-worker: malformed CURVE keys in the environment\n");
      return 2;
    }
    curve = farmhand::common::CurveClientKeys{server, *public_key, secret};
  }
  if (curve) {
    options.curve_server_key = curve->server_key;
    options.curve_public_key = curve->public_key;
    options.curve_secret_key = curve->secret_key;
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
  farmhand::worker::add_host_tags(options.tags);
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
