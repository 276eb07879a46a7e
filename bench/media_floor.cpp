// farmhand_bench_decode: the decode floors of the media benchmark (bench/README.md, "Media").
//
//   farmhand_bench_decode FILE [REPS]
//     A thumbnail's floor: in one warm process, opens FILE with OpenImageIO and reads
//     channels 0-2 (R,G,B) of subimage 0 as float, REPS times (a fresh ImageInput each
//     time, so the open is counted); prints the median and every repetition in ms. The
//     same read in the stored type (decode_stored_ms), interleaved, for reference.
//   farmhand_bench_decode --sequence THREADS FILE...
//     A movie's decode floor: reads R,G,B of every FILE in its stored type (the least
//     work a decoder can do), THREADS files at a time (each read also uses OpenEXR's own
//     threads), one buffer per thread; prints the wall time of the whole sequence in ms.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <OpenImageIO/imageio.h>

namespace {

int decode_sequence(int threads, const std::vector<std::string>& files) {
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      std::vector<char> pixels;
      for (size_t i = next++; i < files.size() && !failed; i = next++) {
        auto in = OIIO::ImageInput::open(files[i]);
        if (!in) {
          std::fprintf(stderr, "open %s: %s\n", files[i].c_str(), OIIO::geterror().c_str());
          failed = true;
          return;
        }
        const OIIO::ImageSpec& spec = in->spec();
        const int chend = std::min(3, spec.nchannels);
        pixels.resize(spec.image_pixels() * spec.format.size() * static_cast<size_t>(chend));
        if (!in->read_image(0, 0, 0, chend, spec.format, pixels.data())) {
          std::fprintf(stderr, "read %s: %s\n", files[i].c_str(), in->geterror().c_str());
          failed = true;
          return;
        }
      }
    });
  }
  for (std::thread& thread : pool) thread.join();
  if (failed) return 1;
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::printf("sequence_decode_ms=%.1f\n", ms);
  std::printf("sequence_frames=%zu\n", files.size());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 4 && std::strcmp(argv[1], "--sequence") == 0) {
    return decode_sequence(std::max(1, std::atoi(argv[2])),
                           std::vector<std::string>(argv + 3, argv + argc));
  }
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s FILE [REPS] | --sequence THREADS FILE...\n", argv[0]);
    return 2;
  }
  const std::string path = argv[1];
  const int reps = argc > 2 ? std::max(1, std::atoi(argv[2])) : 5;
  // Float (the floor's definition) and, interleaved, the stored type (half for
  // these files: no conversion, the least a reader can do), for reference.
  std::vector<double> ms[2];
  std::vector<float> pixels;
  for (int i = 0; i < reps; ++i) {
    for (int stored = 0; stored < 2; ++stored) {
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
      const OIIO::TypeDesc type = stored ? spec.format : OIIO::TypeDesc::FLOAT;
      if (!in->read_image(0, 0, 0, chend, type, pixels.data())) {
        std::fprintf(stderr, "read %s: %s\n", path.c_str(), in->geterror().c_str());
        return 1;
      }
      in->close();
      ms[stored].push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
  }
  for (int stored = 0; stored < 2; ++stored) {
    const char* key = stored ? "decode_stored" : "decode";
    std::vector<double> sorted = ms[stored];
    std::sort(sorted.begin(), sorted.end());
    const size_t n = sorted.size();
    const double median = n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
    std::printf("%s_ms=%.1f\n", key, median);
    std::printf("%s_runs_ms=", key);
    for (size_t i = 0; i < n; ++i) std::printf("%s%.1f", i ? "," : "", ms[stored][i]);
    std::printf("\n");
  }
  return 0;
}
