// farmhand_bench_decode: the decode floor of a thumbnail (bench/README.md, "Media").
// In one warm process, opens FILE with OpenImageIO and reads channels 0-2 (R,G,B) of
// subimage 0 as float, REPS times (a fresh ImageInput each time, so the open is
// counted); prints key=value lines: the median and every repetition in ms.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <OpenImageIO/imageio.h>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s FILE [REPS]\n", argv[0]);
    return 2;
  }
  const std::string path = argv[1];
  const int reps = argc > 2 ? std::max(1, std::atoi(argv[2])) : 5;
  std::vector<double> ms;
  std::vector<float> pixels;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    auto in = OIIO::ImageInput::open(path);
    if (!in) {
      std::fprintf(stderr, "open %s: %s\n", path.c_str(), OIIO::geterror().c_str());
      return 1;
    }
    const OIIO::ImageSpec& spec = in->spec();
    const int chend = std::min(3, spec.nchannels);
    pixels.resize(static_cast<size_t>(spec.width) * static_cast<size_t>(spec.height) *
                  static_cast<size_t>(chend));
    if (!in->read_image(0, 0, 0, chend, OIIO::TypeDesc::FLOAT, pixels.data())) {
      std::fprintf(stderr, "read %s: %s\n", path.c_str(), in->geterror().c_str());
      return 1;
    }
    in->close();
    ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::vector<double> sorted = ms;
  std::sort(sorted.begin(), sorted.end());
  const size_t n = sorted.size();
  const double median = n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
  std::printf("decode_ms=%.1f\n", median);
  std::printf("decode_runs_ms=");
  for (size_t i = 0; i < ms.size(); ++i) std::printf("%s%.1f", i ? "," : "", ms[i]);
  std::printf("\n");
  return 0;
}
