// Yuv420Writer: the movie fast path's half R,G,B -> BT.709 4:2:0, against the
// definition computed in double precision and against swscale.
#include "workers/media/yuv420.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <vector>

#include <Imath/half.h>
#include <gtest/gtest.h>

extern "C" {
#include <libavutil/pixfmt.h>
#include <libswscale/swscale.h>
}

namespace farmhand::media {
namespace {

struct Planes {
  uint32_t width;
  uint32_t height;
  std::vector<uint8_t> y, u, v;

  Planes(uint32_t w, uint32_t h)
      : width(w),
        height(h),
        y(size_t{w} * h, 0xAA),
        u(size_t{w / 2} * (h / 2), 0xAA),
        v(size_t{w / 2} * (h / 2), 0xAA) {}

  Yuv420Planes view() {
    return Yuv420Planes{y.data(),
                        u.data(),
                        v.data(),
                        static_cast<int>(width),
                        static_cast<int>(width / 2),
                        static_cast<int>(width / 2)};
  }
};

// A HalfFrame of `width` x `height` whose data covers columns [x0, x1) and
// rows [y0, y1), with `extra` more columns stored left of the display window.
HalfFrame make_frame(uint32_t width, uint32_t height, uint32_t x0, uint32_t x1, uint32_t y0,
                     uint32_t y1, uint32_t extra, const std::vector<float>& values) {
  HalfFrame frame;
  frame.width = width;
  frame.height = height;
  frame.x0 = x0;
  frame.x1 = x1;
  frame.y0 = y0;
  frame.y1 = y1;
  frame.stride = size_t{x1 - x0} + extra;
  frame.offset = size_t{extra} * 3;
  frame.rgb.resize(frame.stride * (y1 - y0) * 3);
  for (size_t i = 0; i < frame.rgb.size(); ++i) {
    frame.rgb[i] = Imath::half(values[i % values.size()]).bits();
  }
  return frame;
}

// The display-referred 16-bit value of channel c at display pixel (x, y).
int shown(const HalfFrame& frame, uint32_t x, uint32_t y, int c) {
  if (y < frame.y0 || y >= frame.y1 || x < frame.x0 || x >= frame.x1) return 0;
  return srgb16_of_half()[frame.row(y)[(x - frame.x0) * 3 + c]];
}

constexpr double kKr = 0.2126;
constexpr double kKb = 0.0722;
constexpr double kKg = 1 - kKr - kKb;

TEST(Yuv420Test, MatchesTheBt709DefinitionAndItsChromaFilterWithinOneCode) {
  std::mt19937 random(7);
  std::uniform_real_distribution<float> value(-0.1f, 1.4f);
  std::vector<float> values(4099);
  for (float& v : values) v = value(random);
  // Data inset from every edge (black around it), 2 stored columns left of
  // the display window, a data window wider than the movie (cropped), and a
  // movie of one row pair (the filter's edges on both sides).
  for (const HalfFrame& frame :
       {make_frame(38, 22, 3, 33, 5, 19, 2, values), make_frame(38, 22, 0, 38, 0, 22, 0, values),
        make_frame(38, 22, 7, 60, 1, 22, 0, values), make_frame(6, 2, 1, 5, 0, 2, 0, values)}) {
    Planes out(frame.width, frame.height);
    Yuv420Writer writer;
    ASSERT_TRUE(writer.write(frame, frame.width, frame.height, out.view()));
    int worst = 0;
    double bias = 0;
    for (uint32_t y = 0; y < frame.height; ++y) {
      for (uint32_t x = 0; x < frame.width; ++x) {
        const double luma = 16 + 219 *
                                     (kKr * shown(frame, x, y, 0) + kKg * shown(frame, x, y, 1) +
                                      kKb * shown(frame, x, y, 2)) /
                                     65535.0;
        worst = std::max(worst, std::abs(out.y[y * frame.width + x] - int(std::lround(luma))));
        bias += out.y[y * frame.width + x] - luma;
      }
    }
    for (uint32_t cy = 0; cy < frame.height / 2; ++cy) {
      for (uint32_t cx = 0; cx < frame.width / 2; ++cx) {
        // [1 3 3 1] / 8 across and down around the block, edges repeated.
        double mean[3] = {0, 0, 0};
        const int weights[4] = {1, 3, 3, 1};
        for (int c = 0; c < 3; ++c) {
          for (int dy = 0; dy < 4; ++dy) {
            for (int dx = 0; dx < 4; ++dx) {
              const int64_t sy = std::clamp<int64_t>(int64_t{2 * cy} - 1 + dy, 0, frame.height - 1);
              const int64_t sx = std::clamp<int64_t>(int64_t{2 * cx} - 1 + dx, 0, frame.width - 1);
              mean[c] += weights[dy] * weights[dx] *
                         shown(frame, static_cast<uint32_t>(sx), static_cast<uint32_t>(sy), c) /
                         64.0 / 65535.0;
            }
          }
        }
        const double y = kKr * mean[0] + kKg * mean[1] + kKb * mean[2];
        const double cb = 128 + 224 * (mean[2] - y) / (2 * (1 - kKb));
        const double cr = 128 + 224 * (mean[0] - y) / (2 * (1 - kKr));
        const size_t at = size_t{cy} * (frame.width / 2) + cx;
        worst = std::max(worst, std::abs(out.u[at] - int(std::lround(cb))));
        worst = std::max(worst, std::abs(out.v[at] - int(std::lround(cr))));
      }
    }
    // Rounded, not truncated: no drift over the picture.
    EXPECT_LT(std::abs(bias) / (frame.width * frame.height), 0.1);
    EXPECT_LE(worst, 1) << "data " << frame.x0 << ".." << frame.x1 << " x " << frame.y0 << ".."
                        << frame.y1;
  }
}

TEST(Yuv420Test, BlackOutsideTheDataAndFullScaleWhiteInside) {
  const HalfFrame frame = make_frame(8, 4, 2, 6, 0, 4, 0, {1.0f});
  Planes out(8, 4);
  Yuv420Writer writer;
  ASSERT_TRUE(writer.write(frame, 8, 4, out.view()));
  for (uint32_t y = 0; y < 4; ++y) {
    for (uint32_t x = 0; x < 8; ++x) {
      EXPECT_EQ(out.y[y * 8 + x], (x >= 2 && x < 6) ? 235 : 16) << x << "," << y;
    }
  }
  for (uint8_t c : out.u) EXPECT_EQ(c, 128);
  for (uint8_t c : out.v) EXPECT_EQ(c, 128);
}

// Any NaN or Inf shown (any pixel, any channel) makes write() refuse the
// frame; one in data cropped away (right of the movie) does not.
TEST(Yuv420Test, RefusesAFrameShowingANanOrInf) {
  const std::vector<float> values = {0.5f, 0.25f, 1.0f, 0.0f, 0.75f};
  HalfFrame frame = make_frame(10, 6, 1, 14, 0, 6, 0, values);  // columns 10..13 cropped
  Planes out(10, 6);
  Yuv420Writer writer;
  ASSERT_TRUE(writer.write(frame, 10, 6, out.view()));
  for (uint16_t bad : {uint16_t{0x7c00}, uint16_t{0xfc00}, uint16_t{0x7e00}}) {
    for (uint32_t y = 0; y < 6; ++y) {
      for (uint32_t x = 1; x < 14; ++x) {
        for (int c = 0; c < 3; ++c) {
          HalfFrame planted = frame;
          const size_t at = planted.offset + (size_t{y} * planted.stride + (x - 1)) * 3 + c;
          planted.rgb[at] = bad;
          EXPECT_EQ(writer.write(planted, 10, 6, out.view()), x >= 10)
              << std::hex << bad << std::dec << " at " << x << "," << y << " channel " << c;
        }
      }
    }
  }
}

// The conversion it replaced: swscale from 16-bit planar R,G,B with the BT.709
// matrix into limited range. On a smooth picture (ramps, where the chroma
// filters -- swscale's bicubic, our [1 3 3 1] -- agree) the two match within
// one code of chroma and two of luma.
TEST(Yuv420Test, AgreesWithSwscaleOnASmoothPicture) {
  constexpr uint32_t kWidth = 256;
  constexpr uint32_t kHeight = 128;
  HalfFrame frame = make_frame(kWidth, kHeight, 0, kWidth, 0, kHeight, 0, {0.0f});
  for (uint32_t y = 0; y < kHeight; ++y) {
    for (uint32_t x = 0; x < kWidth; ++x) {
      uint16_t* px = frame.rgb.data() + (size_t{y} * kWidth + x) * 3;
      px[0] = Imath::half(0.02f + 0.9f * x / kWidth).bits();
      px[1] = Imath::half(0.05f + 0.8f * y / kHeight).bits();
      px[2] = Imath::half(0.6f - 0.5f * (x + y) / (kWidth + kHeight)).bits();
    }
  }
  Planes ours(kWidth, kHeight);
  Yuv420Writer writer;
  ASSERT_TRUE(writer.write(frame, kWidth, kHeight, ours.view()));

  std::vector<uint16_t> g(size_t{kWidth} * kHeight), b(g.size()), r(g.size());
  for (uint32_t y = 0; y < kHeight; ++y) {
    for (uint32_t x = 0; x < kWidth; ++x) {
      r[y * kWidth + x] = static_cast<uint16_t>(shown(frame, x, y, 0));
      g[y * kWidth + x] = static_cast<uint16_t>(shown(frame, x, y, 1));
      b[y * kWidth + x] = static_cast<uint16_t>(shown(frame, x, y, 2));
    }
  }
  SwsContext* sws =
      sws_getContext(kWidth, kHeight, AV_PIX_FMT_GBRP16, kWidth, kHeight, AV_PIX_FMT_YUV420P,
                     SWS_BICUBIC | SWS_ACCURATE_RND, nullptr, nullptr, nullptr);
  ASSERT_NE(sws, nullptr);
  const int* bt709 = sws_getCoefficients(SWS_CS_ITU709);
  ASSERT_GE(sws_setColorspaceDetails(sws, bt709, 1, bt709, 0, 0, 1 << 16, 1 << 16), 0);
  const uint8_t* in[4] = {reinterpret_cast<const uint8_t*>(g.data()),
                          reinterpret_cast<const uint8_t*>(b.data()),
                          reinterpret_cast<const uint8_t*>(r.data()), nullptr};
  const int in_strides[4] = {kWidth * 2, kWidth * 2, kWidth * 2, 0};
  Planes theirs(kWidth, kHeight);
  Yuv420Planes view = theirs.view();
  uint8_t* out[4] = {view.y, view.u, view.v, nullptr};
  const int out_strides[4] = {view.y_stride, view.u_stride, view.v_stride, 0};
  ASSERT_EQ(sws_scale(sws, in, in_strides, 0, kHeight, out, out_strides), int(kHeight));
  sws_freeContext(sws);

  auto worst = [](const std::vector<uint8_t>& one, const std::vector<uint8_t>& other, uint32_t w,
                  uint32_t h, uint32_t border) {
    int most = 0;
    for (uint32_t y = border; y + border < h; ++y) {
      for (uint32_t x = border; x + border < w; ++x) {
        most = std::max(most, std::abs(one[y * w + x] - other[y * w + x]));
      }
    }
    return most;
  };
  // swscale's 8-bit luma is dithered and runs about half a code above the
  // definition (measured on this picture: +0.57 on average; ours: 0.00).
  EXPECT_LE(worst(ours.y, theirs.y, kWidth, kHeight, 0), 2) << "y";
  EXPECT_LE(worst(ours.u, theirs.u, kWidth / 2, kHeight / 2, 2), 1) << "u";
  EXPECT_LE(worst(ours.v, theirs.v, kWidth / 2, kHeight / 2, 2), 1) << "v";
}

}  // namespace
}  // namespace farmhand::media
