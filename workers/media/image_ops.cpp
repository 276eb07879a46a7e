// Image operations: read the displayed picture, resample, colour, write.
//
// The pipeline, and why it is shaped this way (a thumbnail must cost little
// more than decoding R,G,B):
//   1. Open the first subimage (a multi-part multi-view EXR: its default
//      view's part) and pick R,G,B(,A) by name. Read only that
//      channel range, as half when stored as half (else float: OIIO's half
//      -> float conversion cost more than the resample), and only the
//      scanlines of the data window that fall inside the display window (none
//      at all when the windows are disjoint: the picture is then black).
//   2. Resample the display window straight from that buffer to the output
//      size with a separable triangle filter (our own: OIIO's resize costs
//      75 ms for 2048 -> 256, longer than the decode). The filter places the
//      data window in the display window on the fly: pixels outside the data
//      window are black, data outside the display window is never sampled,
//      pixel aspect is a different x and y scale. No display-size canvas is
//      ever built. Resampling happens in linear light, before any colour
//      conversion.
//   3. NaN/Inf: when the (small) result holds a non-finite value, the source
//      is repaired with OIIO's fixNonFinite(BOX3), as `oiiotool --fixnan box3`
//      does, and resampled again. Clean images never pay a full-size pass.
//   4. Colour conversion on the small result (linear -> sRGB, or OCIO's
//      scene_linear -> default display/view), then a last pass that turns
//      any remaining NaN/Inf into finite values.
//   5. Write to a hidden temporary file in the target's directory and rename (output_file.h).
#include "workers/media/image_ops.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <string_view>
#include <system_error>
#include <utility>

#include <Imath/half.h>
#include <OpenEXR/ImfChannelList.h>
#include <OpenEXR/ImfHeader.h>
#include <OpenEXR/ImfRgbaFile.h>
#include <OpenEXR/ImfStandardAttributes.h>
#include <OpenImageIO/color.h>
#include <OpenImageIO/imagebuf.h>
#include <OpenImageIO/imagebufalgo.h>
#include <OpenImageIO/imageio.h>
#include <OpenImageIO/parallel.h>
#include <unistd.h>

#include "workers/media/half_scan.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace farmhand::media {
namespace {

namespace fs = std::filesystem;

// Largest output side we agree to produce; a hostile header must not make us
// allocate terabytes (the media process also has a memory cap).
constexpr int64_t kMaxOutputSide = 32768;
constexpr int64_t kMaxOutputPixels = int64_t{1} << 28;
// Largest source buffer we read: 2^30 floats (4 GiB).
constexpr int64_t kMaxSourceFloats = int64_t{1} << 30;
// Largest finite half: what +Inf or a too-large float becomes in an EXR output.
constexpr float kHalfMax = 65504.0f;
constexpr int kJpegQuality = 90;

// The first non-empty line of an OIIO error text (which may span lines).
std::string first_line(const std::string& text) {
  size_t begin = 0;
  while (begin < text.size()) {
    size_t end = text.find('\n', begin);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(begin, end - begin);
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
    size_t lead = 0;
    while (lead < line.size() && std::isspace(static_cast<unsigned char>(line[lead]))) ++lead;
    line.erase(0, lead);
    if (!line.empty()) return line;
    begin = end + 1;
  }
  return "unknown error";
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// ---------------------------------------------------------------------------
// Output formats.

enum class Format { kJpeg, kPng, kTiff, kDpx, kExr };

struct FormatInfo {
  Format format;
  const char* oiio_name;  // ImageOutput::create() accepts a format name
  bool display_referred;  // sRGB / OCIO display; false: scene-linear half
  bool keeps_alpha;
};

std::optional<FormatInfo> format_from_name(std::string_view name) {
  std::string n = lower(name);
  if (!n.empty() && n.front() == '.') n.erase(0, 1);
  if (n == "jpg" || n == "jpeg") return FormatInfo{Format::kJpeg, "jpeg", true, false};
  if (n == "png") return FormatInfo{Format::kPng, "png", true, true};
  if (n == "tif" || n == "tiff") return FormatInfo{Format::kTiff, "tiff", true, true};
  if (n == "dpx") return FormatInfo{Format::kDpx, "dpx", true, false};
  if (n == "exr") return FormatInfo{Format::kExr, "openexr", false, true};
  return std::nullopt;
}

Result<FormatInfo> output_format(const std::string& output, const std::string& forced) {
  if (output.empty()) return fail(ErrorCode::kInvalidArgument, "no output file given");
  if (!forced.empty()) {
    auto f = format_from_name(forced);
    if (!f) {
      return fail(ErrorCode::kInvalidArgument,
                  "unsupported output format " + forced + " for " + output);
    }
    return *f;
  }
  auto f = format_from_name(fs::path(output).extension().string());
  if (!f) return fail(ErrorCode::kInvalidArgument, "unsupported output format: " + output);
  return *f;
}

// ---------------------------------------------------------------------------
// Geometry of the displayed picture.

struct Window {
  int64_t x = 0, y = 0, w = 0, h = 0;
};

struct Size {
  int64_t w = 0, h = 0;
};

// The displayed shape: the display window with pixel aspect applied. Like
// `oiiotool --pixelaspect` and the OpenEXR DisplayWindow README, non-square
// pixels scale the picture up, never down: aspect > 1 widens, aspect < 1
// makes it taller, so no resolution is thrown away at full size.
struct Displayed {
  double w = 0;  // exact, for fitting
  double h = 0;

  Size size() const {
    return {std::max<int64_t>(1, std::llround(w)), std::max<int64_t>(1, std::llround(h))};
  }
};

Displayed displayed(const Window& full, double aspect) {
  if (aspect >= 1.0) return {static_cast<double>(full.w) * aspect, static_cast<double>(full.h)};
  return {static_cast<double>(full.w), static_cast<double>(full.h) / aspect};
}

int64_t round_at_least_1(double v) {
  return std::max<int64_t>(1, std::llround(v));
}

// Fits the displayed shape inside box_w x box_h keeping its aspect; a zero
// side is free (only the other one is fixed); 0 x 0 is the displayed size.
// Halves round up (2048x1556 at 256 wide -> 256x195), as oiiotool does.
Size fit(const Displayed& d, int64_t box_w, int64_t box_h) {
  const double ratio = d.w / d.h;
  if (box_w <= 0 && box_h <= 0) return d.size();
  if (box_h <= 0) return {box_w, round_at_least_1(static_cast<double>(box_w) / ratio)};
  if (box_w <= 0) return {round_at_least_1(static_cast<double>(box_h) * ratio), box_h};
  if (static_cast<double>(box_w) / static_cast<double>(box_h) > ratio) {
    return {std::min(box_w, round_at_least_1(static_cast<double>(box_h) * ratio)), box_h};
  }
  return {box_w, std::min(box_h, round_at_least_1(static_cast<double>(box_w) / ratio))};
}

Result<Size> checked_size(Size s, const std::string& what) {
  if (s.w < 1 || s.h < 1 || s.w > kMaxOutputSide || s.h > kMaxOutputSide ||
      s.w * s.h > kMaxOutputPixels) {
    return fail(ErrorCode::kInvalidArgument, "output size " + std::to_string(s.w) + "x" +
                                                 std::to_string(s.h) + " out of range for " + what);
  }
  return s;
}

// Parses a non-negative integer that is the whole of `text`.
std::optional<int64_t> parse_uint(std::string_view text) {
  if (text.empty() || text.size() > 9) return std::nullopt;
  int64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  return v;
}

// "" (displayed size), "WxH" (exactly), "W" / "Wx0" / "0xH" (one side, keep
// aspect) or "N%" of the displayed size.
Result<Size> parse_resize(const std::string& spec, const Displayed& d, const std::string& output) {
  auto bad = [&] {
    return fail(ErrorCode::kInvalidArgument, "invalid resize \"" + spec + "\" for " + output);
  };
  if (spec.empty()) return checked_size(d.size(), output);
  if (spec.back() == '%') {
    std::string number = spec.substr(0, spec.size() - 1);
    char* end = nullptr;
    errno = 0;
    double pct = std::strtod(number.c_str(), &end);
    if (number.empty() || end != number.c_str() + number.size() || errno != 0 ||
        !std::isfinite(pct) || pct <= 0.0 || pct > 10000.0) {
      return bad();
    }
    return checked_size({round_at_least_1(d.w * pct / 100.0), round_at_least_1(d.h * pct / 100.0)},
                        output);
  }
  size_t x = spec.find_first_of("xX");
  std::optional<int64_t> w = parse_uint(std::string_view(spec).substr(0, x));
  std::optional<int64_t> h = x == std::string::npos
                                 ? std::optional<int64_t>(0)
                                 : parse_uint(std::string_view(spec).substr(x + 1));
  if (!w || !h || (*w == 0 && *h == 0)) return bad();
  if (*w > 0 && *h > 0) return checked_size({*w, *h}, output);
  return checked_size(fit(d, *w, *h), output);
}

// ---------------------------------------------------------------------------
// Reading.

// The scanlines of the data window that lie inside the display window, with
// the chosen channels in order (gray or R,G,B, then A when kept).
// A 3x3 matrix, row-major: out = M * in.
using Matrix3 = std::array<double, 9>;

Matrix3 multiply(const Matrix3& a, const Matrix3& b) {
  Matrix3 m{};
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 3; ++c) {
      for (int k = 0; k < 3; ++k) m[r * 3 + c] += a[r * 3 + k] * b[k * 3 + c];
    }
  }
  return m;
}

std::optional<Matrix3> inverse(const Matrix3& m) {
  const double det = m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6]) +
                     m[2] * (m[3] * m[7] - m[4] * m[6]);
  if (!std::isfinite(det) || std::abs(det) < 1e-12) return std::nullopt;
  const double d = 1.0 / det;
  return Matrix3{(m[4] * m[8] - m[5] * m[7]) * d, (m[2] * m[7] - m[1] * m[8]) * d,
                 (m[1] * m[5] - m[2] * m[4]) * d, (m[5] * m[6] - m[3] * m[8]) * d,
                 (m[0] * m[8] - m[2] * m[6]) * d, (m[2] * m[3] - m[0] * m[5]) * d,
                 (m[3] * m[7] - m[4] * m[6]) * d, (m[1] * m[6] - m[0] * m[7]) * d,
                 (m[0] * m[4] - m[1] * m[3]) * d};
}

// RGB -> XYZ for primaries and white given as CIE xy (OpenEXR's
// chromaticities: red x y, green x y, blue x y, white x y), white at Y = 1.
std::optional<Matrix3> rgb_to_xyz(const std::array<double, 8>& c) {
  for (int i = 1; i < 8; i += 2) {
    // ACES AP0's blue has a negative y: only zero is meaningless.
    if (!(std::abs(c[i]) > 1e-6) || !std::isfinite(c[i - 1])) return std::nullopt;
  }
  auto xyz = [](double x, double y) { return std::array<double, 3>{x / y, 1.0, (1 - x - y) / y}; };
  const auto r = xyz(c[0], c[1]), g = xyz(c[2], c[3]), b = xyz(c[4], c[5]), w = xyz(c[6], c[7]);
  const Matrix3 p{r[0], g[0], b[0], r[1], g[1], b[1], r[2], g[2], b[2]};
  auto inv = inverse(p);
  if (!inv) return std::nullopt;
  const Matrix3& i = *inv;
  const double s[3] = {i[0] * w[0] + i[1] * w[1] + i[2] * w[2],
                       i[3] * w[0] + i[4] * w[1] + i[5] * w[2],
                       i[6] * w[0] + i[7] * w[1] + i[8] * w[2]};
  return Matrix3{p[0] * s[0], p[1] * s[1], p[2] * s[2], p[3] * s[0], p[4] * s[1],
                 p[5] * s[2], p[6] * s[0], p[7] * s[1], p[8] * s[2]};
}

constexpr std::array<double, 8> kRec709 = {0.64, 0.33, 0.30, 0.60, 0.15, 0.06, 0.3127, 0.3290};

// The matrix taking linear RGB of `file` primaries to Rec.709/sRGB primaries,
// white adapted to D65 with the Bradford transform (as OpenEXR's and OCIO's
// tools do); none when the file's are Rec.709's already or make no sense.
std::optional<Matrix3> to_rec709(const std::array<double, 8>& file) {
  bool same = true;
  for (size_t i = 0; i < 8; ++i) same = same && std::abs(file[i] - kRec709[i]) < 1e-3;
  if (same) return std::nullopt;
  auto from = rgb_to_xyz(file);
  auto to = rgb_to_xyz(kRec709);
  if (!from || !to) return std::nullopt;
  auto to_inverse = inverse(*to);
  if (!to_inverse) return std::nullopt;
  Matrix3 adapt{1, 0, 0, 0, 1, 0, 0, 0, 1};
  if (std::abs(file[6] - kRec709[6]) > 1e-4 || std::abs(file[7] - kRec709[7]) > 1e-4) {
    const Matrix3 bradford{0.8951, 0.2664, -0.1614, -0.7502, 1.7135,
                           0.0367, 0.0389, -0.0685, 1.0296};
    auto bradford_inverse = inverse(bradford);
    auto white = [](double x, double y) {
      return std::array<double, 3>{x / y, 1.0, (1 - x - y) / y};
    };
    const auto ws = white(file[6], file[7]);
    const auto wd = white(kRec709[6], kRec709[7]);
    auto cone = [&](const std::array<double, 3>& w) {
      return std::array<double, 3>{bradford[0] * w[0] + bradford[1] * w[1] + bradford[2] * w[2],
                                   bradford[3] * w[0] + bradford[4] * w[1] + bradford[5] * w[2],
                                   bradford[6] * w[0] + bradford[7] * w[1] + bradford[8] * w[2]};
    };
    const auto cs = cone(ws);
    const auto cd = cone(wd);
    if (!bradford_inverse) return std::nullopt;
    const Matrix3 scale{cd[0] / cs[0], 0, 0, 0, cd[1] / cs[1], 0, 0, 0, cd[2] / cs[2]};
    adapt = multiply(*bradford_inverse, multiply(scale, bradford));
  }
  return multiply(*to_inverse, multiply(adapt, *from));
}

// A file's chromaticities attribute, when it has one of 8 finite floats.
std::optional<std::array<double, 8>> chromaticities_of(const OIIO::ImageSpec& spec) {
  const OIIO::ParamValue* p = spec.find_attribute("chromaticities");
  if (p == nullptr || p->type().basetype != OIIO::TypeDesc::FLOAT ||
      p->type().numelements() * p->type().aggregate != 8) {
    return std::nullopt;
  }
  const float* v = static_cast<const float*>(p->data());
  std::array<double, 8> out{};
  for (int i = 0; i < 8; ++i) {
    if (!std::isfinite(v[i])) return std::nullopt;
    out[static_cast<size_t>(i)] = v[i];
  }
  return out;
}

struct Source {
  Window data;  // the rows held: x, w of the data window; y, h of the rows read
  Window full;  // display window
  double aspect = 1.0;
  int channels = 0;               // in `pixels`: 1 (gray), 2 (gray+A), 3 (RGB) or 4 (RGBA)
  bool display_referred = false;  // oiio:ColorSpace says sRGB: do not convert again
  // Linear RGB in other primaries than Rec.709 (an EXR's chromaticities:
  // ACES AP0/AP1, XYZ...): the matrix to Rec.709, applied before display when
  // no OCIO config says otherwise.
  std::optional<Matrix3> primaries;
  // For the task's log: the file's data window size, its channel count and
  // the channels read ("R,G,B").
  int64_t file_width = 0;
  int64_t file_height = 0;
  int file_channels = 0;
  std::string channels_read;
  // data.w * data.h * channels values: `halves` (IEEE half bits) when every
  // wanted channel is stored as half, else `pixels`. Halves are read as
  // stored: OIIO's half -> float conversion cost more than the resample.
  bool is_half = false;
  std::vector<float> pixels;
  std::vector<uint16_t> halves;

  bool empty() const { return is_half ? halves.empty() : pixels.empty(); }
};

// Half -> float for n values. With F16C, 8 at a time; else Imath's table.
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx,f16c"))) void halves_to_floats_f16c(const uint16_t* in, float* out,
                                                               size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i));
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(h));
  }
  for (; i < n; ++i) out[i] = imath_half_to_float(in[i]);
}
#endif

void halves_to_floats(const uint16_t* in, float* out, size_t n) {
#if defined(__x86_64__) && defined(__GNUC__)
  static const bool f16c = __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx");
  if (f16c) {
    halves_to_floats_f16c(in, out, n);
    return;
  }
#endif
  for (size_t i = 0; i < n; ++i) out[i] = imath_half_to_float(in[i]);
}

// Keeps channels wanted[c] - chbegin of every pixel, in place: pixel p's output
// never lies past its input, and each pixel is read whole before it is written.
template <typename T>
void compact_channels(std::vector<T>& values, int64_t pixels, int nread,
                      const std::vector<int>& wanted, int chbegin) {
  const int k = static_cast<int>(wanted.size());
  T* p = values.data();
  T px[4];
  for (int64_t i = 0; i < pixels; ++i) {
    for (int c = 0; c < k; ++c) px[c] = p[i * nread + (wanted[c] - chbegin)];
    for (int c = 0; c < k; ++c) p[i * k + c] = px[c];
  }
  values.resize(static_cast<size_t>(pixels * k));
  values.shrink_to_fit();
}

struct ChannelPick {
  std::vector<int> color;  // 1 (gray) or 3 (R,G,B) channel indices
  int alpha = -1;
};

int channel_index(const OIIO::ImageSpec& spec, const std::string& name) {
  for (int i = 0; i < spec.nchannels; ++i) {
    if (spec.channel_name(i) == name) return i;
  }
  return -1;
}

// R,G,B by name; else "<layer>.R/G/B" of a conventional default layer
// (rgba, beauty, rgb, color, in that order) or, failing those, of the first
// layer that has all three; else the first three channels; a one- or
// two-channel image is gray.
ChannelPick pick_channels(const OIIO::ImageSpec& spec) {
  ChannelPick pick;
  auto try_layer = [&](const std::string& prefix) {
    int r = channel_index(spec, prefix + "R");
    int g = channel_index(spec, prefix + "G");
    int b = channel_index(spec, prefix + "B");
    if (r < 0 || g < 0 || b < 0) return false;
    pick.color = {r, g, b};
    pick.alpha = channel_index(spec, prefix + "A");
    return true;
  };
  if (try_layer("")) return pick;
  std::vector<std::string> layers;  // prefixes with an R channel, in file order
  for (int i = 0; i < spec.nchannels; ++i) {
    std::string name = spec.channel_name(i);
    if (name.size() > 2 && name.compare(name.size() - 2, 2, ".R") == 0) {
      layers.push_back(name.substr(0, name.size() - 1));
    }
  }
  for (const char* preferred : {"rgba.", "beauty.", "rgb.", "color.", "colour."}) {
    for (const std::string& layer : layers) {
      if (lower(layer) == preferred && try_layer(layer)) return pick;
    }
  }
  for (const std::string& layer : layers) {
    if (try_layer(layer)) return pick;
  }
  if (spec.nchannels >= 3) {
    pick.color = {0, 1, 2};
    pick.alpha = spec.alpha_channel >= 3 ? spec.alpha_channel : -1;
  } else {
    pick.color = {0};
    pick.alpha = spec.alpha_channel == 1 ? 1 : -1;
  }
  return pick;
}

// Why no reader opened `path`. A file that starts like an OpenEXR file, or
// that the reader for its extension recognises, is a damaged image (with
// OpenEXR's own reason: without a known extension OIIO only says it found no
// reader); anything else is not an image at all.
Error open_error(const std::string& path, const std::string& oiio_error) {
  unsigned char magic[4] = {};
  if (FILE* f = std::fopen(path.c_str(), "rb")) {
    const size_t n = std::fread(magic, 1, sizeof(magic), f);
    std::fclose(f);
    if (n == sizeof(magic) && magic[0] == 0x76 && magic[1] == 0x2f && magic[2] == 0x31 &&
        magic[3] == 0x01) {
      auto exr = OIIO::ImageInput::create("openexr");
      OIIO::ImageSpec spec;
      std::string why = oiio_error;
      if (exr && !exr->open(path, spec)) why = exr->geterror();
      return {ErrorCode::kCorrupt, "cannot read " + path + ": " + first_line(why)};
    }
  }
  auto probe = OIIO::ImageInput::create(path);
  OIIO::geterror();
  if (probe && probe->valid_file(path)) {
    return {ErrorCode::kCorrupt, "cannot read " + path + ": " + first_line(oiio_error)};
  }
  return {ErrorCode::kCorrupt, "not an image: " + path};
}

// Whether the channels are OpenEXR luminance/chroma (Y with RY and/or BY, no
// R,G,B): they must be converted to RGB, not shown as three raw channels.
bool is_luminance_chroma(const OIIO::ImageSpec& spec) {
  return channel_index(spec, "Y") >= 0 &&
         (channel_index(spec, "RY") >= 0 || channel_index(spec, "BY") >= 0) &&
         channel_index(spec, "R") < 0 && channel_index(spec, "G") < 0 &&
         channel_index(spec, "B") < 0;
}

// An OpenEXR luminance/chroma image (chroma usually subsampled 2x2, which
// OIIO refuses) read through OpenEXR's RgbaInputFile, which reconstructs RGB
// with the file's chromaticities. Same rows as read_source: those of the data
// window inside the display window, as half R,G,B(,A).
Result<Source> read_luminance_chroma(const std::string& path, bool want_alpha) {
  Imf::RgbaInputFile file(path.c_str());
  const Imath::Box2i dw = file.dataWindow();
  const Imath::Box2i dispw = file.displayWindow();
  Source src;
  src.full = {dispw.min.x, dispw.min.y, int64_t{dispw.max.x} - dispw.min.x + 1,
              int64_t{dispw.max.y} - dispw.min.y + 1};
  if (Imf::hasChromaticities(file.header())) {
    const Imf::Chromaticities& c = Imf::chromaticities(file.header());
    src.primaries = to_rec709(
        {c.red.x, c.red.y, c.green.x, c.green.y, c.blue.x, c.blue.y, c.white.x, c.white.y});
  }
  const int64_t width = int64_t{dw.max.x} - dw.min.x + 1;
  const int64_t height = int64_t{dw.max.y} - dw.min.y + 1;
  if (width <= 0 || height <= 0 || src.full.w <= 0 || src.full.h <= 0) {
    return fail(ErrorCode::kCorrupt, "cannot read " + path + ": unsupported image dimensions");
  }
  const float aspect = file.pixelAspectRatio();
  src.aspect = (std::isfinite(aspect) && aspect >= 0.01f && aspect <= 100.0f) ? aspect : 1.0;
  const bool alpha = want_alpha && (file.channels() & Imf::WRITE_A) != 0;
  src.channels = alpha ? 4 : 3;
  src.is_half = true;
  src.file_width = width;
  src.file_height = height;
  const Imf::ChannelList& stored = file.header().channels();
  for (auto it = stored.begin(); it != stored.end(); ++it) ++src.file_channels;
  src.channels_read = alpha ? "Y,RY,BY,A" : "Y,RY,BY";
  const int64_t y0 = std::max<int64_t>(dw.min.y, src.full.y);
  const int64_t y1 = std::min<int64_t>(dw.max.y + int64_t{1}, src.full.y + src.full.h);
  const int64_t x0 = std::max<int64_t>(dw.min.x, src.full.x);
  const int64_t x1 = std::min<int64_t>(dw.max.x + int64_t{1}, src.full.x + src.full.w);
  if (y1 <= y0 || x1 <= x0) {
    src.data = {dw.min.x, y0, width, 0};
    return src;
  }
  src.data = {dw.min.x, y0, width, y1 - y0};
  if (src.data.w * src.data.h * src.channels > kMaxSourceFloats) {
    return fail(ErrorCode::kCorrupt, "cannot read " + path + ": image too large");
  }
  src.halves.resize(static_cast<size_t>(src.data.w * src.data.h * src.channels));
  // A band of rows at a time: the Rgba staging buffer stays small.
  constexpr int64_t kBand = 64;
  std::vector<Imf::Rgba> band(static_cast<size_t>(width * kBand));
  uint16_t* out = src.halves.data();
  for (int64_t top = y0; top < y1; top += kBand) {
    const int64_t bottom = std::min(top + kBand, y1);
    // Row `top` lands at band[0]: the frame buffer's origin is pixel (0, 0).
    file.setFrameBuffer(band.data() - dw.min.x - top * width, 1, static_cast<size_t>(width));
    file.readPixels(static_cast<int>(top), static_cast<int>(bottom - 1));
    for (int64_t i = 0; i < (bottom - top) * width; ++i) {
      const Imf::Rgba& px = band[static_cast<size_t>(i)];
      *out++ = px.r.bits();
      *out++ = px.g.bits();
      *out++ = px.b.bits();
      if (alpha) *out++ = px.a.bits();
    }
  }
  return src;
}

// The subimage a file shows: for a multi-part multi-view EXR (a part per
// view, each naming its `view`), the part of the default view, the first of
// the multiView list; else the first subimage. Leaves `in` on it.
int shown_subimage(OIIO::ImageInput& in) {
  const OIIO::ParamValue* views = in.spec().find_attribute("multiView");
  const std::string first_view = in.spec().get_string_attribute("view");
  if (views == nullptr || first_view.empty() || views->type().basetype != OIIO::TypeDesc::STRING ||
      views->nvalues() < 1) {
    return 0;
  }
  const std::string wanted = static_cast<const OIIO::ustring*>(views->data())[0].string();
  if (wanted.empty() || wanted == first_view) return 0;
  for (int sub = 1; sub < 64 && in.seek_subimage(sub, 0); ++sub) {
    if (in.spec().get_string_attribute("view") == wanted) return sub;
  }
  in.seek_subimage(0, 0);
  return 0;
}

Result<Source> read_source(const std::string& path, bool want_alpha) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return fail(ErrorCode::kNotFound, "no such file " + path);
  if (fs::is_directory(path, ec)) return fail(ErrorCode::kCorrupt, "not an image: " + path);

  auto in = OIIO::ImageInput::open(path);
  if (!in) {
    const std::string why = OIIO::geterror();
    // OIIO refuses subsampled channels, which in an EXR means luminance/chroma.
    if (why.find("Subsampled channels") != std::string::npos) {
      return read_luminance_chroma(path, want_alpha);
    }
    return fail(open_error(path, why));
  }
  const int sub = shown_subimage(*in);
  const OIIO::ImageSpec& spec = in->spec();
  if (spec.deep) return fail(ErrorCode::kCorrupt, "cannot read " + path + ": deep image");
  if (is_luminance_chroma(spec) && in->format_name() == std::string_view("openexr")) {
    in.reset();
    return read_luminance_chroma(path, want_alpha);
  }
  if (spec.width <= 0 || spec.height <= 0 || spec.depth > 1 || spec.nchannels <= 0) {
    return fail(ErrorCode::kCorrupt, "cannot read " + path + ": unsupported image dimensions");
  }

  Source src;
  src.full = {spec.full_x, spec.full_y, spec.full_width, spec.full_height};
  if (src.full.w <= 0 || src.full.h <= 0) src.full = {spec.x, spec.y, spec.width, spec.height};
  float aspect = spec.get_float_attribute("PixelAspectRatio", 1.0f);
  // A hostile or absent aspect must not produce absurd sizes: treat as square.
  src.aspect = (std::isfinite(aspect) && aspect >= 0.01f && aspect <= 100.0f) ? aspect : 1.0;
  src.display_referred = lower(spec.get_string_attribute("oiio:ColorSpace")) == "srgb";
  if (auto chroma = chromaticities_of(spec); chroma && !src.display_referred) {
    src.primaries = to_rec709(*chroma);
  }

  ChannelPick pick = pick_channels(spec);
  std::vector<int> wanted = pick.color;
  if (want_alpha && pick.alpha >= 0) wanted.push_back(pick.alpha);
  src.channels = static_cast<int>(wanted.size());
  src.file_width = spec.width;
  src.file_height = spec.height;
  src.file_channels = spec.nchannels;
  for (int c : wanted) {
    if (!src.channels_read.empty()) src.channels_read += ',';
    src.channels_read += spec.channel_name(c);
  }
  const int chbegin = *std::min_element(wanted.begin(), wanted.end());
  const int chend = *std::max_element(wanted.begin(), wanted.end()) + 1;
  const int nread = chend - chbegin;

  // Rows of the data window inside the display window; none when the windows
  // do not overlap (the picture is then all background).
  const int64_t y0 = std::max<int64_t>(spec.y, src.full.y);
  const int64_t y1 = std::min<int64_t>(int64_t{spec.y} + spec.height, src.full.y + src.full.h);
  const int64_t x0 = std::max<int64_t>(spec.x, src.full.x);
  const int64_t x1 = std::min<int64_t>(int64_t{spec.x} + spec.width, src.full.x + src.full.w);
  if (y1 <= y0 || x1 <= x0) {
    src.data = {spec.x, y0, spec.width, 0};
    return src;
  }
  // Tiled files are read whole: their rows come in tiles anyway.
  const bool whole = spec.tile_width > 0 || (y0 == spec.y && y1 == int64_t{spec.y} + spec.height);
  src.data = whole ? Window{spec.x, spec.y, spec.width, spec.height}
                   : Window{spec.x, y0, spec.width, y1 - y0};
  const int64_t floats = src.data.w * src.data.h * nread;
  if (floats > kMaxSourceFloats) {
    return fail(ErrorCode::kCorrupt, "cannot read " + path + ": image too large");
  }
  src.is_half = true;
  for (int c : wanted) src.is_half = src.is_half && spec.channelformat(c) == OIIO::TypeHalf;
  void* buffer = nullptr;
  if (src.is_half) {
    src.halves.resize(static_cast<size_t>(floats));
    buffer = src.halves.data();
  } else {
    src.pixels.resize(static_cast<size_t>(floats));
    buffer = src.pixels.data();
  }
  const OIIO::TypeDesc type = src.is_half ? OIIO::TypeHalf : OIIO::TypeFloat;
  bool ok = whole ? in->read_image(sub, 0, chbegin, chend, type, buffer)
                  : in->read_scanlines(sub, 0, static_cast<int>(y0), static_cast<int>(y1), 0,
                                       chbegin, chend, type, buffer);
  if (!ok) {
    std::string err = in->geterror();
    if (err.empty()) err = OIIO::geterror();
    return fail(ErrorCode::kCorrupt, "cannot read " + path + ": " + first_line(err));
  }

  // Compact to the wanted channels, in order, when the range holds others
  // (or holds them in another order).
  bool identity = nread == src.channels;
  for (int c = 0; identity && c < src.channels; ++c) identity = wanted[c] == chbegin + c;
  if (!identity) {
    const int64_t n = src.data.w * src.data.h;
    if (src.is_half) {
      compact_channels(src.halves, n, nread, wanted, chbegin);
    } else {
      compact_channels(src.pixels, n, nread, wanted, chbegin);
    }
  }
  return src;
}

// ---------------------------------------------------------------------------
// Resampling.

// The taps of a triangle filter along one axis: for output sample i, the
// weights of source samples [first[i], first[i] + count[i]) (indices into the
// rows/columns held). Taps past the display window's edge take the edge
// sample, as OIIO's resize does (WrapClamp), so edges neither darken nor
// ring; samples outside the data window are left out (black).
struct Taps {
  std::vector<int64_t> first;
  std::vector<int64_t> count;
  std::vector<int64_t> offset;  // into weights
  std::vector<float> weights;
};

Taps make_taps(int64_t out_n, int64_t full_origin, int64_t full_n, int64_t data_origin,
               int64_t data_n) {
  Taps taps;
  taps.first.resize(out_n);
  taps.count.resize(out_n);
  taps.offset.resize(out_n);
  const double scale = static_cast<double>(full_n) / static_cast<double>(out_n);
  // Shrinking: the triangle spans one output pixel each side (scale source
  // pixels); enlarging: one source pixel each side (bilinear).
  const double radius = std::max(1.0, scale);
  const int64_t full_end = full_origin + full_n;
  const int64_t data_end = data_origin + data_n;
  std::vector<double> w;
  for (int64_t i = 0; i < out_n; ++i) {
    const double center = static_cast<double>(full_origin) + (static_cast<double>(i) + 0.5) * scale;
    const int64_t lo = static_cast<int64_t>(std::floor(center - radius - 0.5));
    const int64_t hi = static_cast<int64_t>(std::ceil(center + radius - 0.5));
    const int64_t clo = std::clamp(lo, full_origin, full_end - 1);
    const int64_t chi = std::clamp(hi, full_origin, full_end - 1);
    double total = 0.0;
    w.assign(static_cast<size_t>(chi - clo + 1), 0.0);
    for (int64_t j = lo; j <= hi; ++j) {
      double v = 1.0 - std::abs(static_cast<double>(j) + 0.5 - center) / radius;
      if (v > 0.0) {
        w[static_cast<size_t>(std::clamp(j, full_origin, full_end - 1) - clo)] += v;
        total += v;
      }
    }
    taps.offset[i] = static_cast<int64_t>(taps.weights.size());
    int64_t first = -1, count = 0;
    for (int64_t j = std::max(clo, data_origin); j <= std::min(chi, data_end - 1); ++j) {
      double v = w[static_cast<size_t>(j - clo)];
      if (v <= 0.0 && count == 0) continue;
      if (first < 0) first = j - data_origin;
      taps.weights.push_back(static_cast<float>(v / total));
      ++count;
    }
    while (count > 0 && taps.weights.back() <= 0.0f) {
      taps.weights.pop_back();
      --count;
    }
    taps.first[i] = first < 0 ? 0 : first;
    taps.count[i] = count;
  }
  return taps;
}

// The displayed picture at out.w x out.h, float, `channels` interleaved.
struct Picture {
  int64_t width = 0;
  int64_t height = 0;
  int channels = 0;
  std::vector<float> pixels;
  std::optional<Matrix3> primaries;  // the source's (Source::primaries)
};

template <int N>
void resample_rows(const Source& src, const Taps& xt, const Taps& yt, int64_t col0, int64_t ncols,
                   Picture& out) {
  const int64_t src_stride = src.data.w * N;
  OIIO::parallel_for_range(int64_t{0}, out.height, [&](int64_t ybegin, int64_t yend) {
    std::vector<float> row(static_cast<size_t>(ncols * N));
    std::vector<float> converted(src.is_half ? static_cast<size_t>(ncols * N) : 0);
    for (int64_t y = ybegin; y < yend; ++y) {
      const int64_t ny = yt.count[y];
      if (ny == 0) continue;  // all black: the output starts zeroed
      // Vertical pass over the useful columns: contiguous, vectorisable.
      std::fill(row.begin(), row.end(), 0.0f);
      const float* wy = &yt.weights[yt.offset[y]];
      for (int64_t k = 0; k < ny; ++k) {
        const float wk = wy[k];
        const size_t at = static_cast<size_t>((yt.first[y] + k) * src_stride + col0 * N);
        const float* s = nullptr;
        if (src.is_half) {
          halves_to_floats(&src.halves[at], converted.data(), converted.size());
          s = converted.data();
        } else {
          s = &src.pixels[at];
        }
        float* r = row.data();
        for (int64_t i = 0; i < ncols * N; ++i) r[i] += wk * s[i];
      }
      // Horizontal pass into the output row.
      float* o = &out.pixels[y * out.width * N];
      for (int64_t x = 0; x < out.width; ++x) {
        const int64_t nx = xt.count[x];
        if (nx == 0) continue;
        const float* wx = &xt.weights[xt.offset[x]];
        const float* s = &row[(xt.first[x] - col0) * N];
        float acc[N] = {};
        for (int64_t k = 0; k < nx; ++k) {
          for (int c = 0; c < N; ++c) acc[c] += wx[k] * s[k * N + c];
        }
        for (int c = 0; c < N; ++c) o[x * N + c] = acc[c];
      }
    }
  });
}

Picture resample(const Source& src, Size size) {
  Picture out;
  out.width = size.w;
  out.height = size.h;
  out.channels = src.channels;
  out.pixels.assign(static_cast<size_t>(size.w * size.h * src.channels), 0.0f);
  if (src.data.h == 0 || src.empty()) return out;
  Taps xt = make_taps(size.w, src.full.x, src.full.w, src.data.x, src.data.w);
  Taps yt = make_taps(size.h, src.full.y, src.full.h, src.data.y, src.data.h);
  // The columns any output pixel reads: the vertical pass does only those.
  int64_t col0 = src.data.w, col1 = 0;
  for (int64_t x = 0; x < size.w; ++x) {
    if (xt.count[x] == 0) continue;
    col0 = std::min(col0, xt.first[x]);
    col1 = std::max(col1, xt.first[x] + xt.count[x]);
  }
  if (col1 <= col0) return out;
  switch (src.channels) {
    case 1:
      resample_rows<1>(src, xt, yt, col0, col1 - col0, out);
      break;
    case 2:
      resample_rows<2>(src, xt, yt, col0, col1 - col0, out);
      break;
    case 3:
      resample_rows<3>(src, xt, yt, col0, col1 - col0, out);
      break;
    default:
      resample_rows<4>(src, xt, yt, col0, col1 - col0, out);
      break;
  }
  return out;
}

bool all_finite(const std::vector<float>& v) {
  // Branch-free so it vectorises; one pass over a small output.
  bool finite = true;
  for (float f : v) finite &= std::isfinite(f);
  return finite;
}

// Repairs NaN/Inf in the source like `oiiotool --fixnan box3`: each bad value
// becomes the mean of the finite values around it.
void fix_source(Source& src) {
  OIIO::ImageSpec spec(static_cast<int>(src.data.w), static_cast<int>(src.data.h), src.channels,
                       src.is_half ? OIIO::TypeHalf : OIIO::TypeFloat);
  spec.x = static_cast<int>(src.data.x);
  spec.y = static_cast<int>(src.data.y);
  OIIO::ImageBuf buf(spec, src.is_half ? static_cast<void*>(src.halves.data())
                                       : static_cast<void*>(src.pixels.data()));
  OIIO::ImageBufAlgo::fixNonFinite(buf, buf, OIIO::ImageBufAlgo::NONFINITE_BOX3);
}

// Last line of defence: NaN and -Inf become 0, +Inf and anything above
// `high` become `high`.
void sanitize(Picture& pic, float high) {
  for (float& f : pic.pixels) {
    if (std::isnan(f)) {
      f = 0.0f;
    } else if (f > high) {
      f = high;
    } else if (f < -high) {
      f = f == -std::numeric_limits<float>::infinity() ? 0.0f : -high;
    }
  }
}

// Gray sources become R=G=B (alpha stays last).
void expand_gray(Picture& pic) {
  if (pic.channels > 2) return;
  const int k = pic.channels;
  const int n = k + 2;
  const int64_t count = pic.width * pic.height;
  std::vector<float> rgb(static_cast<size_t>(count * n));
  for (int64_t i = 0; i < count; ++i) {
    const float g = pic.pixels[i * k];
    rgb[i * n] = rgb[i * n + 1] = rgb[i * n + 2] = g;
    if (k == 2) rgb[i * n + 3] = pic.pixels[i * k + 1];
  }
  pic.pixels = std::move(rgb);
  pic.channels = n;
}

Result<Picture> render(Source& src, Size size) {
  Picture pic = resample(src, size);
  if (!all_finite(pic.pixels)) {
    fix_source(src);
    pic = resample(src, size);
  }
  expand_gray(pic);
  pic.primaries = src.primaries;
  return pic;
}

// ---------------------------------------------------------------------------
// Colour.

// ColorConfigs are heavy (an OCIO config parse); keep one per config path.
// OIIO caches the processors each one creates.
std::shared_ptr<OIIO::ColorConfig> color_config(const std::string& path, std::string* error) {
  static std::mutex mu;
  static std::map<std::string, std::shared_ptr<OIIO::ColorConfig>> configs;
  std::lock_guard<std::mutex> lock(mu);
  auto it = configs.find(path);
  if (it != configs.end()) return it->second;
  auto config = std::make_shared<OIIO::ColorConfig>(path);
  // Without a path OIIO complains that there is no config and falls back to
  // its built-in one, which is what we want.
  if (path.empty()) {
    config->geterror();
  } else if (config->has_error()) {
    *error = first_line(config->geterror());
    return nullptr;
  }
  configs.emplace(path, config);
  return config;
}

enum class Direction { kToDisplay, kToLinear };

// The OCIO config a choice means: the one given, else $OCIO, else "" (OIIO's built-in).
std::string config_path(const ColourChoice& colour) {
  if (!colour.config.empty()) return colour.config;
  const char* env = std::getenv("OCIO");
  return env != nullptr ? env : "";
}

bool built_in(const ColourChoice& colour) {
  return config_path(colour).empty();
}

struct DisplayView {
  std::shared_ptr<OIIO::ColorConfig> config;
  std::string path;
  std::string display;
  std::string view;
};

// The config, display and view a choice resolves to; errors name what is
// missing and what there is.
Result<DisplayView> resolve_display(const ColourChoice& colour) {
  DisplayView out;
  out.path = config_path(colour);
  std::string error;
  // An empty path is OIIO's built-in config ($OCIO unset here).
  out.config = color_config(out.path, &error);
  if (!out.config) {
    return fail(ErrorCode::kInvalidArgument, "cannot load ocio config " + out.path + ": " + error);
  }
  if (out.path.empty()) {
    if (!colour.display.empty() || !colour.view.empty() || !colour.look.empty()) {
      return fail(ErrorCode::kInvalidArgument,
                  "display, view and look need an OCIO config (--ocio, or $OCIO on the worker)");
    }
    return out;
  }
  const OIIO::ColorConfig& config = *out.config;
  auto list = [](int count, const std::function<const char*(int)>& name) {
    std::string names;
    for (int i = 0; i < count; ++i) {
      if (const char* n = name(i)) names += (names.empty() ? "" : ", ") + std::string(n);
    }
    return names;
  };
  auto has_display = [&](const std::string& want) {
    for (int i = 0; i < config.getNumDisplays(); ++i) {
      const char* name = config.getDisplayNameByIndex(i);
      if (name != nullptr && want == name) return true;
    }
    return false;
  };
  if (!colour.display.empty()) {
    if (!has_display(colour.display)) {
      return fail(ErrorCode::kInvalidArgument,
                  "no display '" + colour.display + "' in ocio config " + out.path + " (" +
                      list(config.getNumDisplays(),
                           [&](int i) { return config.getDisplayNameByIndex(i); }) +
                      ")");
    }
    out.display = colour.display;
  } else if (colour.web && has_display("sRGB")) {
    out.display = "sRGB";  // a browser shows sRGB
  } else {
    const char* display = config.getDefaultDisplayName();
    out.display = display != nullptr ? display : "";
  }
  const int views = config.getNumViews(out.display);
  if (!colour.view.empty()) {
    bool found = false;
    for (int i = 0; i < views; ++i) {
      const char* name = config.getViewNameByIndex(out.display, i);
      found = found || (name != nullptr && colour.view == name);
    }
    if (!found) {
      return fail(
          ErrorCode::kInvalidArgument,
          "no view '" + colour.view + "' for display " + out.display + " in ocio config " +
              out.path + " (" +
              list(views, [&](int i) { return config.getViewNameByIndex(out.display, i); }) + ")");
    }
    out.view = colour.view;
  } else {
    const char* view = config.getDefaultViewName(out.display);
    out.view = view != nullptr ? view : "";
  }
  return out;
}

// Linear -> display: OIIO's built-in linear -> sRGB, or with an OCIO config
// scene_linear -> the chosen (else default) display, view and look.
Result<OIIO::ColorProcessorHandle> color_processor(const ColourChoice& colour, Direction dir) {
  auto chosen = resolve_display(colour);
  if (!chosen) return fail(chosen.error());
  OIIO::ColorConfig& config = *chosen->config;
  const std::string& path = chosen->path;
  OIIO::ColorProcessorHandle proc;
  if (dir == Direction::kToLinear) {
    proc = config.createColorProcessor("sRGB", path.empty() ? "linear" : "scene_linear");
  } else if (path.empty()) {
    proc = config.createColorProcessor("linear", "sRGB");
  } else {
    // The look is a step of its own (look_processor): OIIO 2.4's display
    // transform does not apply the looks it is given.
    proc = config.createDisplayTransform(chosen->display, chosen->view, "scene_linear");
  }
  if (!proc) {
    std::string why = first_line(config.geterror());
    return fail(ErrorCode::kInvalidArgument, "no display transform in ocio config " +
                                                 (path.empty() ? "(built-in)" : path) + ": " + why);
  }
  return proc;
}

// The look, scene_linear to scene_linear, applied before the display transform.
Result<OIIO::ColorProcessorHandle> look_processor(const ColourChoice& colour) {
  auto chosen = resolve_display(colour);
  if (!chosen) return fail(chosen.error());
  OIIO::ColorConfig& config = *chosen->config;
  std::string looks;
  bool known = false;
  for (int i = 0; i < config.getNumLooks(); ++i) {
    if (const char* name = config.getLookNameByIndex(i)) {
      looks += (looks.empty() ? "" : ", ") + std::string(name);
      known = known || colour.look == name;
    }
  }
  OIIO::ColorProcessorHandle proc;
  if (known) proc = config.createLookTransform(colour.look, "scene_linear", "scene_linear");
  if (!proc) {
    config.geterror();
    return fail(ErrorCode::kInvalidArgument, "no look '" + colour.look + "' in ocio config " +
                                                 chosen->path + " (" + looks + ")");
  }
  return proc;
}

// Brings the picture to the output's encoding: display for 8/10/16-bit
// outputs, scene-linear for EXR. Display-referred (sRGB) sources are left
// alone for display outputs.
Result<void> to_output_colour(Picture& pic, bool display_output, bool source_display_referred,
                              const ColourChoice& colour) {
  // Other primaries than Rec.709 go to Rec.709 first, unless an OCIO config
  // (given or $OCIO) decides what the linear values mean.
  if (pic.primaries && built_in(colour) && pic.channels >= 3) {
    const Matrix3& m = *pic.primaries;
    const size_t step = static_cast<size_t>(pic.channels);
    for (size_t i = 0; i + 2 < pic.pixels.size(); i += step) {
      const double r = pic.pixels[i], g = pic.pixels[i + 1], b = pic.pixels[i + 2];
      pic.pixels[i] = static_cast<float>(m[0] * r + m[1] * g + m[2] * b);
      pic.pixels[i + 1] = static_cast<float>(m[3] * r + m[4] * g + m[5] * b);
      pic.pixels[i + 2] = static_cast<float>(m[6] * r + m[7] * g + m[8] * b);
    }
    pic.primaries.reset();
  }
  if (display_output != source_display_referred) {
    auto proc =
        color_processor(colour, display_output ? Direction::kToDisplay : Direction::kToLinear);
    if (!proc) return fail(proc.error());
    OIIO::ImageSpec spec(static_cast<int>(pic.width), static_cast<int>(pic.height), pic.channels,
                         OIIO::TypeFloat);
    OIIO::ImageBuf buf(spec, pic.pixels.data());
    if (display_output && !colour.look.empty()) {
      auto look = look_processor(colour);
      if (!look) return fail(look.error());
      if (!OIIO::ImageBufAlgo::colorconvert(buf, buf, look->get(), /*unpremult=*/true)) {
        return fail(ErrorCode::kInternal, "look failed: " + first_line(buf.geterror()));
      }
    }
    // Premultiplied input: unpremultiply around the transform.
    if (!OIIO::ImageBufAlgo::colorconvert(buf, buf, proc->get(), /*unpremult=*/true)) {
      return fail(ErrorCode::kInternal, "colour conversion failed: " + first_line(buf.geterror()));
    }
  }
  sanitize(pic, display_output ? 1.0f : kHalfMax);
  return {};
}

// ---------------------------------------------------------------------------
// Writing.

// The files an output must never replace: the input, the OCIO config and the
// task's other inputs.
std::vector<std::string> reads_of(const std::string& input, const ColourChoice& colour,
                                  const std::vector<std::string>& task_inputs) {
  std::vector<std::string> reads = task_inputs;
  reads.push_back(input);
  if (!colour.config.empty()) reads.push_back(colour.config);
  return reads;
}

// Writes through a temporary file in the output's directory (see output_file.h).
Result<void> write_picture(const Picture& pic, const std::string& output, const FormatInfo& fmt,
                           const OutputPlace& place, const std::vector<std::string>& reads) {
  OIIO::TypeDesc type = OIIO::TypeUInt8;
  if (fmt.format == Format::kExr) type = OIIO::TypeHalf;
  if (fmt.format == Format::kDpx) type = OIIO::TypeUInt16;
  OIIO::ImageSpec spec(static_cast<int>(pic.width), static_cast<int>(pic.height), pic.channels,
                       type);
  spec.attribute("oiio:ColorSpace", fmt.display_referred ? "sRGB" : "Linear");
  if (fmt.format == Format::kJpeg) {
    spec.attribute("Compression", "jpeg:" + std::to_string(kJpegQuality));
  }
  if (fmt.format == Format::kDpx) spec.attribute("oiio:BitsPerSample", 10);
  if (fmt.format == Format::kExr) spec.attribute("compression", "zip");

  auto file = OutputFile::create(output, place);
  if (!file) return fail(file.error());
  const std::string& tmp = file->write_path();
  // OIIO's messages name the temporary path: the user knows the output.
  auto write_fail = [&](std::string why) {
    if (std::string full = file->full_disk(); !full.empty()) why = full;
    for (size_t at = why.find(tmp); at != std::string::npos; at = why.find(tmp, at)) {
      why.replace(at, tmp.size(), output);
      at += output.size();
    }
    return fail(ErrorCode::kIo, "cannot write " + output + ": " + first_line(why));
  };
  auto out = OIIO::ImageOutput::create(fmt.oiio_name);
  if (!out) return write_fail(OIIO::geterror());
  if (!out->open(tmp, spec)) return write_fail(out->geterror());
  if (!out->write_image(OIIO::TypeFloat, pic.pixels.data())) {
    std::string err = out->geterror();
    out->close();
    return write_fail(err);
  }
  if (!out->close()) return write_fail(out->geterror());
  out.reset();
  return file->commit(reads);
}

// Runs `body`, turning an escaping exception into an Error naming `path`.
template <typename F>
auto guarded(const std::string& path, F&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return fail(ErrorCode::kCorrupt, "cannot read " + path + ": out of memory");
  } catch (const std::exception& e) {
    return fail(ErrorCode::kInternal,
                "image operation failed on " + path + ": " + first_line(e.what()));
  } catch (...) {
    return fail(ErrorCode::kInternal, "image operation failed on " + path);
  }
}

using StepClock = std::chrono::steady_clock;

std::chrono::microseconds since(StepClock::time_point& start) {
  const auto now = StepClock::now();
  const auto took = std::chrono::duration_cast<std::chrono::microseconds>(now - start);
  start = now;
  return took;
}

// What was read (before the picture is made from it).
ImageInfo input_info(const Source& src) {
  ImageInfo info;
  const Size d = displayed(src.full, src.aspect).size();
  info.input_width = static_cast<uint32_t>(d.w);
  info.input_height = static_cast<uint32_t>(d.h);
  info.data_width = static_cast<uint32_t>(src.file_width);
  info.data_height = static_cast<uint32_t>(src.file_height);
  info.input_channels = src.file_channels;
  info.channels_read = src.channels_read;
  return info;
}

void add_output_info(ImageInfo& info, const Picture& pic, const FormatInfo& fmt,
                     const std::string& output) {
  info.width = static_cast<uint32_t>(pic.width);
  info.height = static_cast<uint32_t>(pic.height);
  info.channels = pic.channels;
  info.format = fmt.oiio_name;
  std::error_code ec;
  const auto bytes = fs::file_size(output, ec);
  info.output_bytes = ec ? 0 : static_cast<uint64_t>(bytes);
}

}  // namespace

Result<ImageInfo> make_thumbnail(const ThumbnailOptions& options) {
  return guarded(options.input, [&]() -> Result<ImageInfo> {
    auto fmt = output_format(options.output, "");
    if (!fmt) return fail(fmt.error());
    if (options.width == 0 || options.width > kMaxOutputSide || options.height > kMaxOutputSide) {
      return fail(ErrorCode::kInvalidArgument,
                  "invalid thumbnail size " + std::to_string(options.width) + "x" +
                      std::to_string(options.height) + " for " + options.output);
    }
    // Thumbnails are opaque: alpha is never read.
    auto step = StepClock::now();
    auto src = read_source(options.input, /*want_alpha=*/false);
    if (!src) return fail(src.error());
    ImageInfo info = input_info(*src);
    info.read_time = since(step);
    Size size = fit(displayed(src->full, src->aspect), options.width, options.height);
    auto pic = render(*src, size);
    if (!pic) return fail(pic.error());
    auto colour =
        to_output_colour(*pic, fmt->display_referred, src->display_referred, options.colour);
    if (!colour) return fail(colour.error());
    info.process_time = since(step);
    auto written = write_picture(*pic, options.output, *fmt, options.place,
                                 reads_of(options.input, options.colour, {}));
    if (!written) return fail(written.error());
    info.write_time = since(step);
    add_output_info(info, *pic, *fmt, options.output);
    return info;
  });
}

Result<ImageInfo> convert_frame(const ConvertOptions& options) {
  return guarded(options.input, [&]() -> Result<ImageInfo> {
    auto fmt = output_format(options.output, options.format);
    if (!fmt) return fail(fmt.error());
    auto step = StepClock::now();
    auto src = read_source(options.input, fmt->keeps_alpha);
    if (!src) return fail(src.error());
    ImageInfo info = input_info(*src);
    info.read_time = since(step);
    auto size = parse_resize(options.resize, displayed(src->full, src->aspect), options.output);
    if (!size) return fail(size.error());
    auto pic = render(*src, *size);
    if (!pic) return fail(pic.error());
    auto colour =
        to_output_colour(*pic, fmt->display_referred, src->display_referred, options.colour);
    if (!colour) return fail(colour.error());
    if (options.overlay && pic->channels >= 3) {
      OIIO::ImageBuf canvas(
          OIIO::ImageSpec(static_cast<int>(pic->width), static_cast<int>(pic->height),
                          pic->channels, OIIO::TypeFloat),
          pic->pixels.data());
      if (auto drawn = options.overlay(canvas); !drawn) return fail(drawn.error());
    }
    info.process_time = since(step);
    auto written = write_picture(*pic, options.output, *fmt, options.place,
                                 reads_of(options.input, options.colour, options.task_inputs));
    if (!written) return fail(written.error());
    info.write_time = since(step);
    add_output_info(info, *pic, *fmt, options.output);
    return info;
  });
}

namespace {

constexpr const char* kDefaultFont = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

// One cell of a contact sheet: the frame's picture fitted in the cell, in
// display colour, or nothing when the frame is missing.
struct SheetCell {
  std::optional<Picture> picture;
  std::optional<Error> error;
};

// Draws `text` at (x, baseline y) of the sheet, in `colour`.
Result<void> draw_text(OIIO::ImageBuf& sheet, int x, int y, const std::string& text, int size,
                       const std::string& font, const float* colour) {
  if (!OIIO::ImageBufAlgo::render_text(sheet, x, y, text, size, font, {colour, 3})) {
    return fail(ErrorCode::kInternal,
                "cannot draw text with font " + font + ": " + first_line(sheet.geterror()));
  }
  return {};
}

}  // namespace

Result<ImageInfo> make_contact_sheet(const ContactSheetOptions& options) {
  return guarded(options.output, [&]() -> Result<ImageInfo> {
    auto fmt = output_format(options.output, "");
    if (!fmt) return fail(fmt.error());
    if (!fmt->display_referred) {
      return fail(ErrorCode::kInvalidArgument,
                  "a contact sheet is a display image: " + options.output + " (jpg, png, tif)");
    }
    const size_t count = options.frames.size();
    if (count == 0) return fail(ErrorCode::kInvalidArgument, "no frames for the contact sheet");
    if (options.frame_numbers.size() != count) {
      return fail(ErrorCode::kInvalidArgument, "one label per frame of the contact sheet");
    }
    if (options.columns == 0 || options.cell_width < 16 || options.cell_width > 4096) {
      return fail(ErrorCode::kInvalidArgument,
                  "contact sheet cells must be 16-4096 wide, in at least one column");
    }
    auto step = StepClock::now();
    // Every frame read at once (OIIO's threads), each fitted to the cell.
    std::vector<SheetCell> cells(count);
    std::atomic<int64_t> shape_w{0}, shape_h{0};  // the first readable frame's shape
    auto read_cell = [&](size_t i, int64_t box_w, int64_t box_h) {
      std::error_code ec;
      if (!fs::exists(options.frames[i], ec)) return;  // missing: a grey cell
      auto src = read_source(options.frames[i], /*want_alpha=*/false);
      if (!src) {
        cells[i].error = src.error();
        return;
      }
      const Displayed shown = displayed(src->full, src->aspect);
      if (box_h == 0) {
        shape_w = std::llround(shown.w);
        shape_h = std::llround(shown.h);
      }
      auto pic = render(*src, fit(shown, box_w, box_h));
      if (pic) {
        if (auto made = to_output_colour(*pic, true, src->display_referred, options.colour);
            !made) {
          cells[i].error = made.error();
          return;
        }
        cells[i].picture = std::move(*pic);
      } else {
        cells[i].error = pic.error();
      }
    };
    // The first readable frame sets the cells' shape.
    const int64_t cell_w = options.cell_width;
    size_t first = 0;
    for (; first < count; ++first) {
      read_cell(first, cell_w, 0);
      if (cells[first].error) return fail(*cells[first].error);
      if (cells[first].picture) break;
    }
    if (first == count) return fail(ErrorCode::kNotFound, "no readable frames");
    const int64_t cell_h = std::clamp<int64_t>(
        std::llround(static_cast<double>(cell_w) * static_cast<double>(shape_h.load()) /
                     static_cast<double>(std::max<int64_t>(1, shape_w.load()))),
        8, 4 * cell_w);
    OIIO::parallel_for(first + 1, count, [&](size_t i) { read_cell(i, cell_w, cell_h); });
    for (size_t i = 0; i < count; ++i) {
      if (cells[i].error) return fail(*cells[i].error);
    }
    ImageInfo info;
    info.read_time = since(step);

    // The grid: a gap around every cell, a label strip under each, a title row.
    const int64_t columns = std::min<int64_t>(options.columns, static_cast<int64_t>(count));
    const int64_t rows = (static_cast<int64_t>(count) + columns - 1) / columns;
    const int font_size = static_cast<int>(std::clamp<int64_t>(cell_w / 14, 11, 48));
    const int64_t gap = std::max<int64_t>(4, cell_w / 40);
    const int64_t label_h = font_size + font_size / 2;
    const int64_t title_h = options.title.empty() ? 0 : font_size * 2;
    const int64_t width = gap + columns * (cell_w + gap);
    const int64_t height = title_h + gap + rows * (cell_h + label_h + gap);
    auto checked = checked_size({width, height}, options.output);
    if (!checked) return fail(checked.error());
    Picture sheet;
    sheet.width = width;
    sheet.height = height;
    sheet.channels = 3;
    sheet.pixels.assign(static_cast<size_t>(width * height * 3), 0.08f);  // dark grey
    auto fill = [&](int64_t x0, int64_t y0, int64_t w, int64_t h, float value) {
      for (int64_t y = y0; y < y0 + h; ++y) {
        std::fill_n(&sheet.pixels[static_cast<size_t>((y * width + x0) * 3)], w * 3, value);
      }
    };
    for (size_t i = 0; i < count; ++i) {
      const int64_t x0 = gap + static_cast<int64_t>(i) % columns * (cell_w + gap);
      const int64_t y0 =
          title_h + gap + static_cast<int64_t>(i) / columns * (cell_h + label_h + gap);
      fill(x0, y0, cell_w, cell_h, cells[i].picture ? 0.0f : 0.25f);  // black, or grey: missing
      if (const auto& pic = cells[i].picture) {
        const int64_t px = x0 + (cell_w - pic->width) / 2;
        const int64_t py = y0 + (cell_h - pic->height) / 2;
        for (int64_t y = 0; y < pic->height; ++y) {
          std::copy_n(&pic->pixels[static_cast<size_t>(y * pic->width * pic->channels)],
                      pic->width * 3,
                      &sheet.pixels[static_cast<size_t>(((py + y) * width + px) * 3)]);
        }
      }
      fill(x0, y0 + cell_h, cell_w, label_h, 0.0f);  // the label's backing strip
    }
    // Labels and title, drawn into the sheet's pixels in place.
    const std::string font = options.font.empty() ? kDefaultFont : options.font;
    OIIO::ImageBuf canvas(
        OIIO::ImageSpec(static_cast<int>(width), static_cast<int>(height), 3, OIIO::TypeFloat),
        sheet.pixels.data());
    const float white[3] = {0.92f, 0.92f, 0.92f};
    const float amber[3] = {1.0f, 0.65f, 0.1f};
    for (size_t i = 0; i < count; ++i) {
      const int64_t x0 = gap + static_cast<int64_t>(i) % columns * (cell_w + gap);
      const int64_t y0 =
          title_h + gap + static_cast<int64_t>(i) / columns * (cell_h + label_h + gap);
      const bool missing = !cells[i].picture;
      const std::string label =
          std::to_string(options.frame_numbers[i]) + (missing ? " missing" : "");
      if (auto drawn = draw_text(canvas, static_cast<int>(x0 + font_size / 3),
                                 static_cast<int>(y0 + cell_h + font_size), label, font_size, font,
                                 missing ? amber : white);
          !drawn) {
        return fail(drawn.error());
      }
    }
    if (!options.title.empty()) {
      if (auto drawn = draw_text(canvas, static_cast<int>(gap), static_cast<int>(font_size * 3 / 2),
                                 options.title, font_size, font, white);
          !drawn) {
        return fail(drawn.error());
      }
    }
    info.process_time = since(step);
    std::vector<std::string> reads = options.frames;
    if (!options.colour.config.empty()) reads.push_back(options.colour.config);
    if (!options.font.empty()) reads.push_back(options.font);
    auto written = write_picture(sheet, options.output, *fmt, options.place, reads);
    if (!written) return fail(written.error());
    info.write_time = since(step);
    add_output_info(info, sheet, *fmt, options.output);
    return info;
  });
}

Result<std::string> display_transform_name(const ColourChoice& colour) {
  auto chosen = resolve_display(colour);
  if (!chosen) return fail(chosen.error());
  if (chosen->path.empty()) return std::string("sRGB (OpenImageIO built-in)");
  return "OCIO " + chosen->path + ": display " + chosen->display + ", view " + chosen->view +
         (colour.look.empty() ? "" : ", look " + colour.look);
}

Result<DisplayImage> read_display_image(const std::string& path, uint32_t fit_width,
                                        uint32_t fit_height, const ColourChoice& colour) {
  return guarded(path, [&]() -> Result<DisplayImage> {
    if (fit_width > kMaxOutputSide || fit_height > kMaxOutputSide) {
      return fail(ErrorCode::kInvalidArgument, "invalid fit size " + std::to_string(fit_width) +
                                                   "x" + std::to_string(fit_height) + " for " +
                                                   path);
    }
    auto src = read_source(path, /*want_alpha=*/false);
    if (!src) return fail(src.error());
    auto size = checked_size(fit(displayed(src->full, src->aspect), fit_width, fit_height), path);
    if (!size) return fail(size.error());
    auto pic = render(*src, *size);
    if (!pic) return fail(pic.error());
    auto shown = to_output_colour(*pic, /*display_output=*/true, src->display_referred, colour);
    if (!shown) return fail(shown.error());
    DisplayImage image;
    image.width = static_cast<uint32_t>(pic->width);
    image.height = static_cast<uint32_t>(pic->height);
    image.rgb.resize(pic->pixels.size());
    for (size_t i = 0; i < pic->pixels.size(); ++i) {
      image.rgb[i] =
          static_cast<uint16_t>(std::clamp(pic->pixels[i], 0.0f, 1.0f) * 65535.0f + 0.5f);
    }
    return image;
  });
}

bool read_half_frame(const std::string& path, const ColourChoice& colour, HalfFrame& frame,
                     NonFinite non_finite) {
  try {
    if (!built_in(colour) || !colour.display.empty() || !colour.view.empty() ||
        !colour.look.empty()) {
      return false;
    }
    auto in = OIIO::ImageInput::open(path);
    if (!in) {
      OIIO::geterror();  // read_display_image will say why
      return false;
    }
    const OIIO::ImageSpec& spec = in->spec();
    if (spec.deep || spec.width <= 0 || spec.height <= 0 || spec.depth > 1 || spec.nchannels <= 0) {
      return false;
    }
    Window full{spec.full_x, spec.full_y, spec.full_width, spec.full_height};
    if (full.w <= 0 || full.h <= 0) full = {spec.x, spec.y, spec.width, spec.height};
    if (full.w > kMaxOutputSide || full.h > kMaxOutputSide) return false;
    if (spec.get_float_attribute("PixelAspectRatio", 1.0f) != 1.0f) return false;
    if (lower(spec.get_string_attribute("oiio:ColorSpace")) == "srgb") return false;
    if (is_luminance_chroma(spec)) return false;  // read_source converts it to RGB
    if (shown_subimage(*in) != 0) return false;   // read_source reads the default view's part
    if (auto chroma = chromaticities_of(spec); chroma && to_rec709(*chroma)) return false;
    const ChannelPick pick = pick_channels(spec);
    if (pick.color.size() != 3) return false;
    for (int c : pick.color) {
      if (spec.channelformat(c) != OIIO::TypeHalf) return false;
    }
    const int64_t y0 = std::max<int64_t>(spec.y, full.y);
    const int64_t y1 = std::min<int64_t>(int64_t{spec.y} + spec.height, full.y + full.h);
    const int64_t x0 = std::max<int64_t>(spec.x, full.x);
    const int64_t x1 = std::min<int64_t>(int64_t{spec.x} + spec.width, full.x + full.w);
    frame.width = static_cast<uint32_t>(full.w);
    frame.height = static_cast<uint32_t>(full.h);
    if (y1 <= y0 || x1 <= x0) {  // disjoint windows: all black
      frame.x0 = frame.x1 = frame.y0 = frame.y1 = 0;
      frame.stride = frame.offset = 0;
      return true;
    }
    if (spec.tile_width > 0) return false;  // tiles come whole: the general path crops them
    const int chbegin = *std::min_element(pick.color.begin(), pick.color.end());
    const int chend = *std::max_element(pick.color.begin(), pick.color.end()) + 1;
    const int nread = chend - chbegin;
    const int64_t values = int64_t{spec.width} * (y1 - y0) * nread;
    if (values > kMaxSourceFloats) return false;
    frame.rgb.resize(static_cast<size_t>(values));
    // All channels read are half: the native read fills frame.rgb directly
    // (read_scanlines would read into a buffer of its own and copy).
    bool native = true;
    for (int c = chbegin; c < chend; ++c) native &= spec.channelformat(c) == OIIO::TypeHalf;
    const bool read =
        native ? in->read_native_scanlines(0, 0, static_cast<int>(y0), static_cast<int>(y1), 0,
                                           chbegin, chend, frame.rgb.data())
               : in->read_scanlines(0, 0, static_cast<int>(y0), static_cast<int>(y1), 0, chbegin,
                                    chend, OIIO::TypeHalf, frame.rgb.data());
    if (!read) {
      in->geterror();
      return false;
    }
    bool identity = nread == 3;
    for (int c = 0; identity && c < 3; ++c) identity = pick.color[c] == chbegin + c;
    if (!identity) {
      compact_channels(frame.rgb, int64_t{spec.width} * (y1 - y0), nread, pick.color, chbegin);
    }
    // NaN and Inf go the general way, which repairs them from their neighbours.
    if (non_finite == NonFinite::kRefuse &&
        !all_finite_halves(frame.rgb.data(), frame.rgb.size())) {
      return false;
    }
    frame.stride = static_cast<size_t>(spec.width);
    frame.x0 = static_cast<uint32_t>(x0 - full.x);
    frame.x1 = static_cast<uint32_t>(x1 - full.x);
    frame.y0 = static_cast<uint32_t>(y0 - full.y);
    frame.y1 = static_cast<uint32_t>(y1 - full.y);
    frame.offset = static_cast<size_t>(x0 - spec.x) * 3;  // data columns left of the display
    return true;
  } catch (...) {
    return false;
  }
}

bool srgb16_row(const HalfFrame& frame, uint32_t y, uint32_t width, uint16_t* __restrict red,
                uint16_t* __restrict green, uint16_t* __restrict blue) {
  // __restrict: the planes never overlap the frame or the table; without it
  // GCC loads the row and table pointers again after every store.
  // Data columns [x0, x1) of the movie; black (0) left and right of them.
  const uint32_t x0 = std::min(frame.x0, width);
  const uint32_t x1 = std::max(x0, std::min(frame.x1, width));
  if (y < frame.y0 || y >= frame.y1 || x0 == x1) {
    std::fill_n(red, width, 0);
    std::fill_n(green, width, 0);
    std::fill_n(blue, width, 0);
    return true;
  }
  std::fill_n(red, x0, 0);
  std::fill_n(green, x0, 0);
  std::fill_n(blue, x0, 0);
  std::fill_n(red + x1, width - x1, 0);
  std::fill_n(green + x1, width - x1, 0);
  std::fill_n(blue + x1, width - x1, 0);
  const uint16_t* table = srgb16_of_half();
  const uint16_t* from = frame.row(y);
  // The row's scan first, vectorised: it also brings the row into the cache
  // for the lookups (the decoded frame is not in the cache by now: a scan of
  // the whole frame after the read cost a pass over memory of its own).
  const bool finite = all_finite_halves(from, size_t{x1 - x0} * 3);
  for (uint32_t x = 0; x < x1 - x0; ++x) {
    red[x0 + x] = table[from[3 * x]];
    green[x0 + x] = table[from[3 * x + 1]];
    blue[x0 + x] = table[from[3 * x + 2]];
  }
  return finite;
}

const uint16_t* srgb16_of_half() {
  static const std::vector<uint16_t> table = [] {
    // Through the very processor the general path uses, so both agree.
    constexpr int kValues = 65536;
    std::vector<float> linear(size_t{kValues} * 3);
    for (int h = 0; h < kValues; ++h) {
      const float v = imath_half_to_float(static_cast<uint16_t>(h));
      linear[size_t(h) * 3] = linear[size_t(h) * 3 + 1] = linear[size_t(h) * 3 + 2] = v;
    }
    std::string error;
    auto config = color_config("", &error);
    OIIO::ColorProcessorHandle proc;
    if (config) proc = config->createColorProcessor("linear", "sRGB");
    FARMHAND_CHECK(proc);
    OIIO::ImageSpec spec(kValues, 1, 3, OIIO::TypeFloat);
    OIIO::ImageBuf buf(spec, linear.data());
    FARMHAND_CHECK(OIIO::ImageBufAlgo::colorconvert(buf, buf, proc.get(), false));
    std::vector<uint16_t> out(kValues);
    for (int h = 0; h < kValues; ++h) {
      const float v = linear[size_t(h) * 3];
      const float in = imath_half_to_float(static_cast<uint16_t>(h));
      float clamped = std::isnan(v) || std::isnan(in) ? 0.0f : std::clamp(v, 0.0f, 1.0f);
      if (std::isinf(in)) clamped = in > 0 ? 1.0f : 0.0f;
      out[size_t(h)] = static_cast<uint16_t>(clamped * 65535.0f + 0.5f);
    }
    return out;
  }();
  return table.data();
}

}  // namespace farmhand::media
