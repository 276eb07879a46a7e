// Yuv420Writer: the movie's fast path from half R,G,B to 8-bit BT.709 4:2:0
// (yuv420p: H.264, H.265, VP9, AV1) in one pass over the frame.
//
// Why not swscale: it cannot read half floats, so the values went through the
// linear -> sRGB table into a 16-bit R,G,B copy first, and swscale then read
// that copy again (3.5 ms per 2K frame, a tenth of the decode and colour work
// of an H.264 movie). Here each row pair is looked up into a buffer that stays
// in the L1 cache and converted straight into the planes.
//
// Conversion: Y' = 16 + 219 (0.2126 R' + 0.7152 G' + 0.0722 B'), rounded
// (swscale dithers, and ran half a code higher); Cb, Cr = 128 + 224 (...) of
// R', G', B' low-passed by [1 3 3 1] / 8 across and down, centred on each 2x2
// block: the chroma sits at the centre of its block, as with swscale's
// default, and the filter removes what would alias (a plain 2x2 mean kept
// enough of it to make libx264's output 6 % larger and its work heavier on
// noisy frames). Edges repeat their outermost row and column. The hand-written
// arithmetic is only the matrix and the filter; the curve is still OIIO's
// (srgb16_of_half).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "workers/media/image_ops.h"

namespace farmhand::media {

struct Yuv420Planes {
  uint8_t* y = nullptr;
  uint8_t* u = nullptr;
  uint8_t* v = nullptr;
  int y_stride = 0;  // bytes per row
  int u_stride = 0;
  int v_stride = 0;
};

class Yuv420Writer {
 public:
  // Writes `image` shown at width x height (both even; data right of or
  // below that is cropped, the display window's rows and columns without data
  // are black) into `planes` (width x height luma, width/2 x height/2 chroma).
  // False, with the planes part-written, when a value shown is NaN or Inf
  // (the frame then takes the general path, which repairs them): the scan
  // rides on the lookups, so the frame is read once.
  [[nodiscard]] bool write(const HalfFrame& image, uint32_t width, uint32_t height,
                           const Yuv420Planes& planes);

 private:
  // One row of sRGB-encoded 16-bit values, planar: red, green, blue.
  // Row y of the image looked up (R, G and B planes of `width` values),
  // clamped to the last row; each row is looked up once, into a ring.
  const uint16_t* row(const HalfFrame& image, uint32_t y, uint32_t width, uint32_t height,
                      int channel);

  static constexpr uint32_t kRing = 4;  // rows y - 1 .. y + 2 of the chroma filter
  std::vector<uint16_t> rows_;          // kRing rows of R, G, B planes
  uint32_t looked_up_[kRing] = {};      // the image row held in each ring slot
  bool finite_ = true;                  // no NaN or Inf looked up in this frame
  std::vector<int32_t> vertical_;       // one filtered row, padded by a column each side
  std::vector<float> filtered_;         // chroma-resolution R, G, B of a row pair
};

}  // namespace farmhand::media
