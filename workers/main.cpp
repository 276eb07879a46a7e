// farmhand-worker: runs tasks the broker leases to it. Parses flags, wires the Worker, runs.
#include <cstdio>
#include <filesystem>
#include <sstream>

#include <CLI/CLI.hpp>
#include <unistd.h>

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
  CLI11_PARSE(app, argc, argv);
  farmhand::common::setup_logging(log_level);

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
