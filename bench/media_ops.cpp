// farmhand_bench_media_ops: farmhand's media operations in one warm process,
// without the farm around them (bench/README.md, "Media"). Separates the cost of
// the image work from the cost of submit -> worker -> media process -> done.
//
//   farmhand_bench_media_ops thumbnail FILE OUT.jpg [REPS]
//
// Runs make_thumbnail (256 px wide) REPS times (after one warm-up call) and
// prints key=value lines: the median and every repetition in ms.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "workers/media/image_ops.h"

namespace {

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

int thumbnail(const std::string& input, const std::string& output, int reps) {
  farmhand::media::ThumbnailOptions options;
  options.input = input;
  options.output = output;
  options.width = 256;
  std::vector<double> ms;
  for (int i = -1; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    auto done = farmhand::media::make_thumbnail(options);
    if (!done) {
      std::fprintf(stderr, "thumbnail %s: %s\n", input.c_str(), done.error().reason.c_str());
      return 1;
    }
    if (i < 0) continue;  // warm-up: OIIO plugin load, colour config
    ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::printf("thumbnail_ms=%.1f\n", median(ms));
  std::printf("thumbnail_runs_ms=");
  for (size_t i = 0; i < ms.size(); ++i) std::printf("%s%.1f", i ? "," : "", ms[i]);
  std::printf("\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "thumbnail" && argc >= 4) {
    return thumbnail(argv[2], argv[3], argc > 4 ? std::max(1, std::atoi(argv[4])) : 5);
  }
  std::fprintf(stderr, "usage: %s thumbnail FILE OUT.jpg [REPS]\n", argv[0]);
  return 2;
}
