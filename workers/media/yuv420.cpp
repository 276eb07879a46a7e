// Yuv420Writer: see yuv420.h.
#include "workers/media/yuv420.h"

#include <algorithm>
#include <cmath>

namespace farmhand::media {

namespace {

// BT.709: Kr = 0.2126, Kb = 0.0722. Luma spans 219 codes above 16, chroma
// 224 around 128.
constexpr double kKr = 0.2126;
constexpr double kKb = 0.0722;
constexpr double kKg = 1.0 - kKr - kKb;

// Luma in 16-bit fixed point, 8 fractional bits: each 16-bit value times its
// coefficient, high half (what SSE2's pmulhuw does for 8 values at once; GCC
// finds it in the loop below), summed. k = c * 219 * 256 * 65536 / 65535, so
// the sum is at most 219 << 8 and never overflows; the three truncations cost
// under 0.012 of a code.
constexpr uint16_t luma_coefficient(double c) {
  return static_cast<uint16_t>(c * 219.0 * 256.0 * 65536.0 / 65535.0 + 0.5);
}

constexpr uint16_t kYR = luma_coefficient(kKr);
constexpr uint16_t kYG = luma_coefficient(kKg);
constexpr uint16_t kYB = luma_coefficient(kKb);
static_assert(uint32_t{kYR} + kYG + kYB <= 65535);

// Chroma comes from filtered sums of 64 weights (below), in float: exact for
// sums under 2^24, and SSE2 multiplies 4 floats at once but no 32-bit ints.
constexpr float kChromaUnit = 224.0f / (65535.0f * 64.0f);
constexpr float kUR = static_cast<float>(-kKr / (2 * (1 - kKb))) * kChromaUnit;
constexpr float kUG = static_cast<float>(-kKg / (2 * (1 - kKb))) * kChromaUnit;
constexpr float kUB = 0.5f * kChromaUnit;
constexpr float kVR = 0.5f * kChromaUnit;
constexpr float kVG = static_cast<float>(-kKg / (2 * (1 - kKr))) * kChromaUnit;
constexpr float kVB = static_cast<float>(-kKb / (2 * (1 - kKr))) * kChromaUnit;

// The loops below are kept apart from the lookups, with restrict-qualified
// pointers, so that GCC vectorises them (-O3, workers/media/CMakeLists.txt):
// uint8_t stores may alias anything, and without __restrict it gives up.
void luma_row(const uint16_t* __restrict red, const uint16_t* __restrict green,
              const uint16_t* __restrict blue, uint8_t* __restrict out, uint32_t width) {
  for (uint32_t x = 0; x < width; ++x) {
    const auto high = [](uint16_t value, uint16_t k) {
      return static_cast<uint16_t>((uint32_t{value} * k) >> 16);
    };
    const uint16_t sum =
        static_cast<uint16_t>(high(red[x], kYR) + high(green[x], kYG) + high(blue[x], kYB));
    out[x] = static_cast<uint8_t>(16 + ((sum + 128) >> 8));
  }
}

// Vertical [1 3 3 1] of four rows into `out` (sums of 8 weights).
void vertical(const uint16_t* __restrict above, const uint16_t* __restrict top,
              const uint16_t* __restrict bottom, const uint16_t* __restrict below,
              int32_t* __restrict out, uint32_t width) {
  for (uint32_t x = 0; x < width; ++x) {
    out[x] = int32_t{above[x]} + 3 * (int32_t{top[x]} + bottom[x]) + below[x];
  }
}

// Horizontal [1 3 3 1] of a vertical sum around columns 2i and 2i + 1 (sums
// of 64 weights); `padded` has one column repeated left and right.
void horizontal(const int32_t* __restrict padded, float* __restrict out, uint32_t pairs) {
  for (uint32_t i = 0; i < pairs; ++i) {
    const int32_t* at = padded + 2 * i;  // columns 2i - 1 .. 2i + 2
    out[i] = static_cast<float>(at[0] + 3 * (at[1] + at[2]) + at[3]);
  }
}

void chroma_row(const float* __restrict red, const float* __restrict green,
                const float* __restrict blue, uint8_t* __restrict cb, uint8_t* __restrict cr,
                uint32_t pairs) {
  for (uint32_t i = 0; i < pairs; ++i) {
    const float u = 128.5f + kUR * red[i] + kUG * green[i] + kUB * blue[i];
    const float v = 128.5f + kVR * red[i] + kVG * green[i] + kVB * blue[i];
    cb[i] = static_cast<uint8_t>(std::clamp(u, 16.0f, 240.0f));  // truncation: + 0.5 rounds
    cr[i] = static_cast<uint8_t>(std::clamp(v, 16.0f, 240.0f));
  }
}

}  // namespace

const uint16_t* Yuv420Writer::row(const HalfFrame& image, uint32_t y, uint32_t width,
                                  uint32_t height, int channel) {
  y = std::min(y, height - 1);
  uint16_t* slot = rows_.data() + size_t{y % kRing} * 3 * width;
  if (looked_up_[y % kRing] != y) {
    if (!srgb16_row(image, y, width, slot, slot + width, slot + 2 * size_t{width})) finite_ = false;
    looked_up_[y % kRing] = y;
  }
  return slot + size_t(channel) * width;
}

bool Yuv420Writer::write(const HalfFrame& image, uint32_t width, uint32_t height,
                         const Yuv420Planes& planes) {
  finite_ = true;
  const uint32_t pairs = width / 2;
  rows_.resize(size_t{kRing} * 3 * width);
  std::fill(std::begin(looked_up_), std::end(looked_up_), UINT32_MAX);
  vertical_.resize(size_t{width} + 2);
  filtered_.resize(size_t{pairs} * 3);
  for (uint32_t y = 0; y + 1 < height; y += 2) {
    // Rows y - 1 .. y + 2 (repeated at the top and bottom edges) for chroma.
    const uint32_t above = y == 0 ? 0 : y - 1;
    for (int c = 0; c < 3; ++c) {
      const uint16_t* a = row(image, above, width, height, c);
      const uint16_t* t = row(image, y, width, height, c);
      const uint16_t* b = row(image, y + 1, width, height, c);
      const uint16_t* d = row(image, y + 2, width, height, c);
      vertical(a, t, b, d, vertical_.data() + 1, width);
      vertical_[0] = vertical_[1];
      vertical_[size_t{width} + 1] = vertical_[width];
      horizontal(vertical_.data(), filtered_.data() + size_t(c) * pairs, pairs);
    }
    const uint16_t* top[3];
    const uint16_t* bottom[3];
    for (int c = 0; c < 3; ++c) {
      top[c] = row(image, y, width, height, c);
      bottom[c] = row(image, y + 1, width, height, c);
    }
    uint8_t* luma = planes.y + ptrdiff_t{planes.y_stride} * y;
    luma_row(top[0], top[1], top[2], luma, width);
    luma_row(bottom[0], bottom[1], bottom[2], luma + planes.y_stride, width);
    chroma_row(filtered_.data(), filtered_.data() + pairs, filtered_.data() + 2 * size_t{pairs},
               planes.u + ptrdiff_t{planes.u_stride} * (y / 2),
               planes.v + ptrdiff_t{planes.v_stride} * (y / 2), pairs);
    if (!finite_) return false;
  }
  return finite_;
}

}  // namespace farmhand::media
