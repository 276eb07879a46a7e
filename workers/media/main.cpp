// farmhand-media: the worker's media process. `serve` runs requests from the
// worker on fd 3 (see workers/media_runner.h); `thumbnail` and `transcode` are
// one-shots for scripts and benchmarks (bench/media.sh measures the peak RSS of
// a `transcode` run). It runs under a memory cap so that a hostile file
// that asks for 47 GB ends this process, not the host.
#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>

extern "C" {
#include <libavutil/log.h>
}
#include <malloc.h>
#include <stdlib.h>
#include <sys/resource.h>

#include "common/frame_set.h"
#include "common/sequence.h"
#include "workers/media/image_ops.h"
#include "workers/media/server.h"
#include "workers/media/transcode.h"

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
  auto* movie = app.add_subcommand("transcode", "make one review movie");
  std::string pattern;
  std::string frame_set;
  std::string missing = "hold";
  farmhand::media::TranscodeOptions movie_options;
  movie->add_option("PATTERN", pattern, "input sequence, e.g. shot.####.exr")->required();
  movie->add_option("OUTPUT", movie_options.output, ".mov, .mp4 or .webm")->required();
  movie->add_option("--frames", frame_set, "frame set, e.g. 1-100")->required();
  movie->add_option("--codec", movie_options.codec, "h264 | h265 | vp9 | av1 | prores | dnxhr");
  movie->add_option("--fps", movie_options.fps);
  movie->add_option("--crf", movie_options.crf);
  movie->add_option("--missing", missing, "hold | black | fail");
  movie->add_option("--max-width", movie_options.max_width);
  movie->add_option("--audio", movie_options.audio, "a sound file muxed beside the pictures");
  movie->add_option("--audio-offset", movie_options.audio_offset, "frames (negative: cut)");
  std::vector<std::string> burn_ins;
  std::vector<std::string> meta;
  movie->add_option("--burn-in", burn_ins, "[POSITION=]TEXT, e.g. 'top-right={timecode}'");
  movie->add_flag("--slate", movie_options.slate, "a slate frame before the first picture");
  movie->add_option("--meta", meta, "k=v: a value for the burn-ins and the slate");
  movie->add_option("--font", movie_options.font, "a TrueType font");
  movie->add_option("--decode-threads", movie_options.decode_threads);
  movie->add_option("--decode-ahead", movie_options.decode_ahead);
  CLI11_PARSE(app, argc, argv);

  // Every frame read allocates and frees large buffers inside OpenImageIO and
  // OpenEXR. With glibc's defaults they go back to the kernel and return as
  // fresh zeroed pages, ~3,000 page faults per 2048x1080 frame and ~5% of a
  // transcode's CPU. Keep them in one heap instead (measured: per-thread arenas
  // and thresholds of 32 MiB or less still unmap them). The working set is the
  // same every frame, so memory still does not grow with sequence length. Set
  // before any thread starts.
  mallopt(M_ARENA_MAX, 1);
  // SVT-AV1 prints its whole configuration to stdout at info level, once per
  // movie: warnings and errors only (a level set by the user stands).
  setenv("SVT_LOG", "2", 0);
  mallopt(M_MMAP_THRESHOLD, 64 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
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
  if (movie->parsed()) {
    auto input = farmhand::common::SequencePattern::parse(pattern);
    auto frames = farmhand::common::FrameSet::parse(frame_set);
    if (!input || !frames) {
      std::fprintf(stderr, "farmhand-media: %s\n",
                   (!input ? input.error() : frames.error()).reason.c_str());
      return 2;
    }
    for (uint64_t i = 0; i < frames->size(); ++i) {
      movie_options.frames.push_back(farmhand::common::format_frame(*input, frames->frame_at(i)));
      movie_options.frame_numbers.push_back(frames->frame_at(i));
    }
    auto burns = farmhand::media::burn_ins_of(burn_ins);
    if (!burns) {
      std::fprintf(stderr, "farmhand-media: %s\n", burns.error().reason.c_str());
      return 2;
    }
    movie_options.burn_ins = std::move(*burns);
    for (const std::string& kv : meta) {
      const size_t eq = kv.find('=');
      if (eq == std::string::npos) continue;
      movie_options.values[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    movie_options.missing = missing == "fail"    ? farmhand::media::MissingFramePolicy::kFail
                            : missing == "black" ? farmhand::media::MissingFramePolicy::kBlack
                                                 : farmhand::media::MissingFramePolicy::kHold;
    auto done = farmhand::media::transcode(movie_options);
    if (!done) {
      std::fprintf(stderr, "farmhand-media: %s\n", done.error().reason.c_str());
      return 1;
    }
    std::printf("%ux%u frames=%llu missing=%llu\n", done->width, done->height,
                static_cast<unsigned long long>(done->frames_written),
                static_cast<unsigned long long>(done->frames_missing));
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
