// farmhand-media: the worker's media process. `serve` runs requests from the
// worker on fd 3 (see workers/media_runner.h); `thumbnail` is a one-shot for
// scripts and benchmarks. It runs under a memory cap so that a hostile file
// that asks for 47 GB ends this process, not the host.
#include <cstdio>

#include <CLI/CLI.hpp>

extern "C" {
#include <libavutil/log.h>
}
#include <sys/resource.h>

#include "workers/media/image_ops.h"
#include "workers/media/server.h"

int main(int argc, char** argv) {
  CLI::App app{"farmhand-media: image and movie work for farmhand-worker"};
  uint64_t memory_mb = 0;
  app.add_option("--memory-mb", memory_mb, "address-space cap (0: none)");
  app.require_subcommand(1);
  auto* serve = app.add_subcommand("serve", "serve the worker's requests on fd 3");
  auto* thumb = app.add_subcommand("thumbnail", "make one thumbnail");
  farmhand::media::ThumbnailOptions options;
  thumb->add_option("INPUT", options.input)->required();
  thumb->add_option("OUTPUT", options.output)->required();
  thumb->add_option("--width", options.width);
  thumb->add_option("--height", options.height);
  CLI11_PARSE(app, argc, argv);

  // libx264 and friends chat on stderr, which is the worker's log: errors only.
  av_log_set_level(AV_LOG_ERROR);
  if (memory_mb > 0) {
    rlimit limit{memory_mb << 20, memory_mb << 20};
    setrlimit(RLIMIT_AS, &limit);
  }
  if (serve->parsed()) {
    farmhand::media::MediaServer server(3, 3);
    auto ok = server.serve();
    if (!ok) {
      std::fprintf(stderr, "farmhand-media: %s\n", ok.error().reason.c_str());
      return 1;
    }
    return 0;
  }
  auto ok = farmhand::media::make_thumbnail(options);
  if (!ok) {
    std::fprintf(stderr, "farmhand-media: %s\n", ok.error().reason.c_str());
    return 1;
  }
  std::printf("%ux%u\n", ok->width, ok->height);
  return 0;
}
