// Yuv420Writer: see yuv420.h.
#include "workers/media/yuv420.h"

#include <algorithm>

namespace farmhand::media {

namespace {

// Fixed point: a coefficient c of a 16-bit value v is round(c * scale / 65535
// * 2^shift), so that (sum of coefficient * value + offset) >> shift is the
// 8-bit code value.
constexpr int32_t fixed(double c, double scale, int shift) {
  const double v = c * scale / 65535.0 * static_cast<double>(int64_t{1} << shift);
  return v >= 0 ? static_cast<int32_t>(v + 0.5) : -static_cast<int32_t>(-v + 0.5);
}

// BT.709: Kr = 0.2126, Kb = 0.0722. Luma spans 219 codes above 16, chroma
// 224 around 128.
constexpr double kKr = 0.2126;
constexpr double kKb = 0.0722;
constexpr double kKg = 1.0 - kKr - kKb;

// Luma of one pixel: at most 219 << 22 plus the offset, well inside int32.
constexpr int kLumaShift = 22;
constexpr int32_t kYR = fixed(kKr, 219, kLumaShift);
constexpr int32_t kYG = fixed(kKg, 219, kLumaShift);
constexpr int32_t kYB = fixed(kKb, 219, kLumaShift);
constexpr int32_t kYOffset = (16 << kLumaShift) + (1 << (kLumaShift - 1));

// Chroma of the sum of a 2x2 block (4 values, up to 262140): coefficients at
// 2^20, so the sum's four shifts the result to 2^22; |sum| stays under 2^30.
constexpr int kChromaShift = 22;
constexpr int kChromaScale = 20;
constexpr int32_t kUR = fixed(-kKr / (2 * (1 - kKb)), 224, kChromaScale);
constexpr int32_t kUG = fixed(-kKg / (2 * (1 - kKb)), 224, kChromaScale);
constexpr int32_t kUB = fixed(0.5, 224, kChromaScale);
constexpr int32_t kVR = fixed(0.5, 224, kChromaScale);
constexpr int32_t kVG = fixed(-kKg / (2 * (1 - kKr)), 224, kChromaScale);
constexpr int32_t kVB = fixed(-kKb / (2 * (1 - kKr)), 224, kChromaScale);
constexpr int32_t kCOffset = (128 << kChromaShift) + (1 << (kChromaShift - 1));

// The two loops below are kept apart from the lookups, with restrict-qualified
// pointers, so that GCC vectorises them (-O3, workers/media/CMakeLists.txt):
// uint8_t stores may alias anything, and without __restrict it gives up.
void luma_row(const uint16_t* __restrict red, const uint16_t* __restrict green,
              const uint16_t* __restrict blue, uint8_t* __restrict out, uint32_t width) {
  for (uint32_t x = 0; x < width; ++x) {
    const int32_t y = (kYR * red[x] + kYG * green[x] + kYB * blue[x] + kYOffset) >> kLumaShift;
    out[x] = static_cast<uint8_t>(std::min(y, 235));
  }
}

void chroma_row(const uint16_t* __restrict r0, const uint16_t* __restrict g0,
                const uint16_t* __restrict b0, const uint16_t* __restrict r1,
                const uint16_t* __restrict g1, const uint16_t* __restrict b1,
                uint8_t* __restrict cb, uint8_t* __restrict cr, uint32_t pairs) {
  for (uint32_t i = 0; i < pairs; ++i) {
    const int32_t r = int32_t{r0[2 * i]} + r0[2 * i + 1] + r1[2 * i] + r1[2 * i + 1];
    const int32_t g = int32_t{g0[2 * i]} + g0[2 * i + 1] + g1[2 * i] + g1[2 * i + 1];
    const int32_t b = int32_t{b0[2 * i]} + b0[2 * i + 1] + b1[2 * i] + b1[2 * i + 1];
    const int32_t u = (kUR * r + kUG * g + kUB * b + kCOffset) >> kChromaShift;
    const int32_t v = (kVR * r + kVG * g + kVB * b + kCOffset) >> kChromaShift;
    cb[i] = static_cast<uint8_t>(std::clamp(u, 16, 240));
    cr[i] = static_cast<uint8_t>(std::clamp(v, 16, 240));
  }
}

}  // namespace

void Yuv420Writer::look_up(const HalfFrame& image, uint32_t y, uint32_t width,
                           uint16_t* __restrict red, uint16_t* __restrict green,
                           uint16_t* __restrict blue) const {
  // Data columns [x0, x1) of the movie; black (0) left and right of them.
  const uint32_t x0 = std::min(image.x0, width);
  const uint32_t x1 = std::max(x0, std::min(image.x1, width));
  if (y < image.y0 || y >= image.y1 || x0 == x1) {
    std::fill_n(red, width, 0);
    std::fill_n(green, width, 0);
    std::fill_n(blue, width, 0);
    return;
  }
  std::fill_n(red, x0, 0);
  std::fill_n(green, x0, 0);
  std::fill_n(blue, x0, 0);
  std::fill_n(red + x1, width - x1, 0);
  std::fill_n(green + x1, width - x1, 0);
  std::fill_n(blue + x1, width - x1, 0);
  const uint16_t* table = srgb16_of_half();
  const uint16_t* from = image.row(y);
  for (uint32_t x = 0; x < x1 - x0; ++x) {
    red[x0 + x] = table[from[3 * x]];
    green[x0 + x] = table[from[3 * x + 1]];
    blue[x0 + x] = table[from[3 * x + 2]];
  }
}

void Yuv420Writer::write(const HalfFrame& image, uint32_t width, uint32_t height,
                         const Yuv420Planes& planes) {
  rows_.resize(size_t{width} * 6);
  uint16_t* r0 = rows_.data();
  uint16_t* g0 = r0 + width;
  uint16_t* b0 = g0 + width;
  uint16_t* r1 = b0 + width;
  uint16_t* g1 = r1 + width;
  uint16_t* b1 = g1 + width;
  for (uint32_t y = 0; y + 1 < height; y += 2) {
    look_up(image, y, width, r0, g0, b0);
    look_up(image, y + 1, width, r1, g1, b1);
    uint8_t* top = planes.y + ptrdiff_t{planes.y_stride} * y;
    luma_row(r0, g0, b0, top, width);
    luma_row(r1, g1, b1, top + planes.y_stride, width);
    chroma_row(r0, g0, b0, r1, g1, b1, planes.u + ptrdiff_t{planes.u_stride} * (y / 2),
               planes.v + ptrdiff_t{planes.v_stride} * (y / 2), width / 2);
  }
}

}  // namespace farmhand::media
