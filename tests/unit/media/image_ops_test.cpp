// image_ops: thumbnails, conversions and display images checked against
// oiiotool renditions of the same files (the oracle), built the way TOOLCHAIN.md
// says a correct reference must be: the data window placed in the display
// window (--croptofull --origin --fullsize) before --resize, and pixel aspect
// applied by resizing to the displayed size. The reference uses the same
// triangle filter as image_ops, so differences are rounding, not filtering.
#include "workers/media/image_ops.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "tests/support/full_disk.h"
#include "tests/support/ocio_configs.h"
#include "tests/support/oracles.h"
#include "tests/support/temp_dir.h"
#include <Imath/half.h>
#include <OpenEXR/ImfChannelList.h>
#include <OpenEXR/ImfFrameBuffer.h>
#include <OpenEXR/ImfHeader.h>
#include <OpenEXR/ImfMultiPartOutputFile.h>
#include <OpenEXR/ImfMultiView.h>
#include <OpenEXR/ImfOutputPart.h>
#include <OpenEXR/ImfPartType.h>
#include <OpenEXR/ImfRgbaFile.h>
#include <OpenEXR/ImfStandardAttributes.h>
#include <OpenEXR/ImfTiledRgbaFile.h>
#include <OpenImageIO/imagebuf.h>
#include <OpenImageIO/imagebufalgo.h>
#include <OpenImageIO/imageio.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "workers/media/review_overlay.h"

namespace farmhand::media {
namespace {

namespace fs = std::filesystem;

std::string data_file(const std::string& relative) {
  return e2e::data_dir() + "/" + relative;
}

std::string display_window(int n) {
  char name[32];
  std::snprintf(name, sizeof(name), "DisplayWindow/t%02d.exr", n);
  return data_file(name);
}

std::string beachball(const char* kind, int frame) {
  char name[48];
  std::snprintf(name, sizeof(name), "Beachball/%s.%04d.exr", kind, frame);
  return data_file(name);
}

using TempDir = farmhand::testing_support::TempDir;

std::string quoted(const std::string& text) {
  return "'" + text + "'";
}

// Runs a shell command; its exit status (-1 if it did not exit).
int run(const std::string& command) {
  const int status = std::system(command.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// oiiotool arguments that read `input` (channels `channels`) and render its
// displayed picture at `size` ("WxH") with a triangle filter, in linear light.
// The last --croptofull: for some sizes (2048x1556 -> 320x240) --resize
// rounds the data window one row larger than the display window.
std::string displayed_reference(const std::string& input, const std::string& channels,
                                const std::string& size) {
  return " " + quoted(input) + " --ch " + channels +
         " --croptofull --origin +0+0 --fullsize '{TOP.width}x{TOP.height}+0+0'" +
         " --resize:filter=triangle " + size + " --croptofull";
}

// ... then to sRGB (colour unpremultiplied first, as image_ops does for
// outputs with alpha) and into a 16-bit TIFF, so the reference itself is not
// quantised to 8 bits.
std::string srgb_output(const std::string& path) {
  return " --colorconvert:unpremult=1 linear sRGB -d uint16 -o " + quoted(path);
}

void oiiotool(const std::string& args) {
  ASSERT_EQ(run("oiiotool" + args), 0) << "oiiotool" << args;
}

struct Tolerance {
  float fail = 0.0f;          // a pixel fails when a channel differs by more than this
  double fail_percent = 0.0;  // at most this share of pixels may fail
  float hard_fail = 0.0f;     // and no channel may differ by more than this
};

// Our outputs are 8-bit; the references 16-bit. The same filter makes the
// difference one 8-bit level plus rounding, everywhere.
constexpr Tolerance kEightBit{0.005f, 0.0, 0.005f};
// With alpha, 8-bit straight colour re-premultiplied on reading loses a
// little more where alpha is small.
constexpr Tolerance kEightBitAlpha{0.005f, 1.0, 0.01f};
// JPEG at quality 90 (4:2:0 chroma) moves sharp coloured edges by up to ~0.19.
constexpr Tolerance kJpeg{0.05f, 2.0, 0.25f};
// EXR half vs the float reference: half precision, relative to values up to ~20.
constexpr Tolerance kHalf{0.01f, 0.1, 0.05f};

// The first subimage of a file as float pixels. Read through ImageInput, not
// ImageBuf(path): ImageBuf goes through OIIO's shared ImageCache, which keeps
// the size of a file rewritten under the same name within one second and then
// overruns its buffer.
OIIO::ImageBuf load(const std::string& path) {
  auto in = OIIO::ImageInput::open(path);
  if (!in) return {};
  OIIO::ImageSpec spec = in->spec();
  spec.set_format(OIIO::TypeFloat);
  OIIO::ImageBuf buf(spec);
  if (!in->read_image(0, 0, 0, spec.nchannels, OIIO::TypeFloat, buf.localpixels())) return {};
  return buf;
}

// Compares the first `channels` channels of two image files of equal size,
// the way `idiff -fail F -failpercent P -hardfail H` does.
::testing::AssertionResult images_match(const std::string& ours, const std::string& reference,
                                        int channels, Tolerance tol) {
  OIIO::ImageBuf a = load(ours);
  OIIO::ImageBuf b = load(reference);
  if (!a.initialized() || !b.initialized()) {
    return ::testing::AssertionFailure() << "cannot read " << ours << " or " << reference;
  }
  if (a.spec().width != b.spec().width || a.spec().height != b.spec().height) {
    return ::testing::AssertionFailure()
           << ours << " is " << a.spec().width << "x" << a.spec().height << ", reference is "
           << b.spec().width << "x" << b.spec().height;
  }
  if (a.nchannels() < channels || b.nchannels() < channels) {
    return ::testing::AssertionFailure() << "fewer than " << channels << " channels";
  }
  OIIO::ROI roi = a.roi();
  roi.chbegin = 0;
  roi.chend = channels;
  const auto r = OIIO::ImageBufAlgo::compare(a, b, tol.fail, tol.fail, roi);
  const double pixels = static_cast<double>(roi.npixels());
  const double percent = 100.0 * static_cast<double>(r.nfail) / pixels;
  // (`error` is also set when some pixels fail, so it alone decides nothing.)
  if ((r.error && r.nfail == 0) || percent > tol.fail_percent || r.maxerror > tol.hard_fail) {
    return ::testing::AssertionFailure()
           << ours << " vs " << reference << ": " << percent << "% of pixels over " << tol.fail
           << ", max error " << r.maxerror << " at (" << r.maxx << "," << r.maxy << ") channel "
           << r.maxc;
  }
  return ::testing::AssertionSuccess();
}

OIIO::ImageSpec spec_of(const std::string& path) {
  auto in = OIIO::ImageInput::open(path);
  if (!in) {
    OIIO::geterror();  // not left pending for the code under test
    return {};
  }
  return in->spec();
}

bool all_finite(const std::string& path) {
  OIIO::ImageBuf buf = load(path);
  if (!buf.initialized()) return false;
  const auto stats = OIIO::ImageBufAlgo::computePixelStats(buf);
  for (size_t c = 0; c < stats.nancount.size(); ++c) {
    if (stats.nancount[c] != 0 || stats.infcount[c] != 0) return false;
  }
  return true;
}

std::string write_ocio_config(const TempDir& dir, const std::string& view_space) {
  return testing_support::write_one_display_config(dir.path(), view_space);
}

// The expected thumbnail size at 256 wide for each DisplayWindow file:
// the display window (with pixel aspect) fitted, halves rounded up.
struct DisplayCase {
  int n;
  int height;  // at width 256
};

constexpr std::array<DisplayCase, 16> kDisplayCases{{
    {1, 192},   // 400x300, display = data
    {2, 192},   // 400x300 at 1,1
    {3, 194},   // 370x280
    {4, 194},   // 370x280
    {5, 196},   // 340x260
    {6, 192},   // 402x302 at -1,-1
    {7, 197},   // 481x371 at -40,-40
    {8, 205},   // 501x401, data at 30,40
    {9, 384},   // 200x300, disjoint: black
    {10, 768},  // 100x300 at -100,0, disjoint: black
    {11, 128},  // 400x200, disjoint: black
    {12, 64},   // 400x100 at 0,-100, disjoint: black
    {13, 256},  // 101x101, one shared pixel
    {14, 256},  // 101x101 at -100,-100, one shared pixel
    {15, 132},  // 481x371, aspect 1.5: displayed 721.5x371
    {16, 296},  // 481x371, aspect 0.667: displayed 481x556.5
}};

TEST(ImageOpsTest, ThumbnailShowsTheDisplayWindowOfEveryDisplayWindowFile) {
  TempDir dir;
  // One oiiotool run renders every reference (it costs 0.4 s to start).
  std::string args;
  for (const DisplayCase& c : kDisplayCases) {
    args += displayed_reference(display_window(c.n), "R,G,B", "256x" + std::to_string(c.height)) +
            srgb_output(dir.file("ref" + std::to_string(c.n) + ".tif"));
  }
  oiiotool(args);
  for (const DisplayCase& c : kDisplayCases) {
    SCOPED_TRACE("t" + std::to_string(c.n));
    const std::string out = dir.file("t" + std::to_string(c.n) + ".png");
    auto info = make_thumbnail({display_window(c.n), out, 256, 0, ""});
    ASSERT_TRUE(info.has_value()) << info.error().reason;
    EXPECT_EQ(info->width, 256u);
    EXPECT_EQ(info->height, static_cast<uint32_t>(c.height));
    EXPECT_EQ(info->channels, 3);
    EXPECT_TRUE(images_match(out, dir.file("ref" + std::to_string(c.n) + ".tif"), 3, kEightBit));
  }
}

TEST(ImageOpsTest, ThumbnailOfDisjointWindowsIsAllBlack) {
  TempDir dir;
  for (int n : {9, 10, 11, 12}) {
    SCOPED_TRACE("t" + std::to_string(n));
    const std::string out = dir.file("t.png");
    ASSERT_TRUE(make_thumbnail({display_window(n), out, 64, 0, ""}).has_value());
    OIIO::ImageBuf buf = load(out);
    const auto stats = OIIO::ImageBufAlgo::computePixelStats(buf);
    ASSERT_EQ(stats.max.size(), 3u);
    for (float m : stats.max) EXPECT_EQ(m, 0.0f);
  }
}

TEST(ImageOpsTest, SinglepartAndMultipartBeachballGiveTheSameThumbnail) {
  TempDir dir;
  const std::string single = dir.file("single.png");
  const std::string multi = dir.file("multi.png");
  auto a = make_thumbnail({beachball("singlepart", 1), single, 256, 0, ""});
  auto b = make_thumbnail({beachball("multipart", 1), multi, 256, 0, ""});
  ASSERT_TRUE(a.has_value()) << a.error().reason;
  ASSERT_TRUE(b.has_value()) << b.error().reason;
  // 2048x1556 at 256 wide: 194.5 rows, rounded half up like oiiotool's --resize 256x0.
  EXPECT_EQ(a->width, 256u);
  EXPECT_EQ(a->height, 195u);
  EXPECT_EQ(b->width, 256u);
  EXPECT_EQ(b->height, 195u);
  EXPECT_TRUE(images_match(single, multi, 3, {0.0f, 0.0, 0.0f}));
}

TEST(ImageOpsTest, ThumbnailAndConvertSayWhatTheyReadAndWroteForTheTasksLog) {
  TempDir dir;
  const std::string out = dir.file("thumb.jpg");
  auto thumb = make_thumbnail({beachball("singlepart", 1), out, 256, 0, ""});
  ASSERT_TRUE(thumb.has_value()) << thumb.error().reason;
  EXPECT_EQ(thumb->input_width, 2048u);
  EXPECT_EQ(thumb->input_height, 1556u);
  EXPECT_EQ(thumb->data_width, 911u);  // frame 1's data window (TOOLCHAIN.md)
  EXPECT_EQ(thumb->data_height, 876u);
  EXPECT_EQ(thumb->input_channels, 20);
  EXPECT_EQ(thumb->channels_read, "R,G,B");
  EXPECT_EQ(thumb->format, "jpeg");
  EXPECT_EQ(thumb->output_bytes, std::filesystem::file_size(out));
  EXPECT_GT(thumb->read_time.count(), 0);
  EXPECT_GT(thumb->write_time.count(), 0);

  ConvertOptions convert;
  convert.input = beachball("singlepart", 1);
  convert.output = dir.file("proxy.png");
  convert.resize = "50%";
  auto proxy = convert_frame(convert);
  ASSERT_TRUE(proxy.has_value()) << proxy.error().reason;
  EXPECT_EQ(proxy->channels_read, "R,G,B,A");  // png keeps alpha
  EXPECT_EQ(proxy->format, "png");
  EXPECT_EQ(proxy->width, 1024u);
  EXPECT_EQ(proxy->output_bytes, std::filesystem::file_size(convert.output));
}

TEST(ImageOpsTest, BeachballThumbnailPassesIdiffAgainstOiiotool) {
  TempDir dir;
  const std::string out = dir.file("thumb.jpg");
  const std::string ref = dir.file("ref.tif");
  oiiotool(displayed_reference(beachball("singlepart", 1), "R,G,B", "256x195") + srgb_output(ref));
  ASSERT_TRUE(make_thumbnail({beachball("singlepart", 1), out, 256, 0, ""}).has_value());
  // The CLI oracle itself, with the JPEG tolerance (kJpeg); warnings at the
  // same thresholds, so that exit status 0 means within tolerance.
  EXPECT_EQ(run("idiff -q -fail 0.05 -failpercent 2 -hardfail 0.25 -warn 0.05 -warnpercent 2 "
                "-hardwarn 0.25 " +
                quoted(out) + " " + quoted(ref)),
            0);
}

TEST(ImageOpsTest, DataPastTheDisplayWindowEdgeIsCroppedAway) {
  TempDir dir;
  // Frames 7 and 8: the ball runs past the display window's right edge.
  for (int frame : {7, 8}) {
    SCOPED_TRACE(frame);
    const std::string out = dir.file("thumb.png");
    const std::string ref = dir.file("ref.tif");
    oiiotool(displayed_reference(beachball("singlepart", frame), "R,G,B", "256x195") +
             srgb_output(ref));
    auto info = make_thumbnail({beachball("singlepart", frame), out, 256, 0, ""});
    ASSERT_TRUE(info.has_value()) << info.error().reason;
    EXPECT_EQ(info->width, 256u);
    EXPECT_EQ(info->height, 195u);
    EXPECT_TRUE(images_match(out, ref, 3, kEightBit));
  }
}

TEST(ImageOpsTest, NanAndInfPixelsAreRepairedLikeOiiotoolFixnanBox3) {
  TempDir dir;
  const std::string input = data_file("TestImages/BrightRingsNanInf.exr");
  // Full size, so a single poisoned pixel would show.
  oiiotool(" " + quoted(input) + " --fixnan box3 -d float -o " + quoted(dir.file("ref.exr")) +
           srgb_output(dir.file("ref.tif")) + " " + quoted(input) +
           " --fixnan box3 --resize:filter=triangle 256x256" + srgb_output(dir.file("ref256.tif")));

  auto png = convert_frame({input, dir.file("full.png"), "", "", ""});
  ASSERT_TRUE(png.has_value()) << png.error().reason;
  EXPECT_TRUE(images_match(dir.file("full.png"), dir.file("ref.tif"), 3, kEightBit));

  auto exr = convert_frame({input, dir.file("full.exr"), "", "", ""});
  ASSERT_TRUE(exr.has_value()) << exr.error().reason;
  EXPECT_TRUE(all_finite(dir.file("full.exr")));
  EXPECT_TRUE(images_match(dir.file("full.exr"), dir.file("ref.exr"), 3, kHalf));

  auto thumb = make_thumbnail({input, dir.file("thumb.png"), 256, 0, ""});
  ASSERT_TRUE(thumb.has_value()) << thumb.error().reason;
  EXPECT_TRUE(images_match(dir.file("thumb.png"), dir.file("ref256.tif"), 3, kEightBit));

  auto half = convert_frame({input, dir.file("half.exr"), "", "50%", ""});
  ASSERT_TRUE(half.has_value()) << half.error().reason;
  EXPECT_TRUE(all_finite(dir.file("half.exr")));
}

TEST(ImageOpsTest, ThumbnailFitsInsideAWideBoxByHeight) {
  TempDir dir;
  const std::string out = dir.file("wide.png");
  auto info = make_thumbnail({beachball("multipart", 1), out, 512, 100, ""});
  ASSERT_TRUE(info.has_value()) << info.error().reason;
  // 100 rows * 2048 / 1556 = 131.6 columns.
  EXPECT_EQ(info->width, 132u);
  EXPECT_EQ(info->height, 100u);
  EXPECT_EQ(spec_of(out).width, 132);
  EXPECT_EQ(spec_of(out).height, 100);
  const std::string ref = dir.file("ref.tif");
  oiiotool(displayed_reference(beachball("multipart", 1), "R,G,B", "132x100") + srgb_output(ref));
  EXPECT_TRUE(images_match(out, ref, 3, kEightBit));
}

TEST(ImageOpsTest, ThumbnailFitsInsideATallBoxByWidth) {
  TempDir dir;
  const std::string out = dir.file("tall.png");
  auto info = make_thumbnail({beachball("multipart", 1), out, 100, 512, ""});
  ASSERT_TRUE(info.has_value()) << info.error().reason;
  // 100 columns * 1556 / 2048 = 75.98 rows.
  EXPECT_EQ(info->width, 100u);
  EXPECT_EQ(info->height, 76u);
  EXPECT_EQ(spec_of(out).height, 76);
  // The pixel aspect counts when fitting: t16 is taller than its pixels.
  auto tall = make_thumbnail({display_window(16), out, 1000, 100, ""});
  ASSERT_TRUE(tall.has_value()) << tall.error().reason;
  EXPECT_EQ(tall->width, 86u);  // 100 * 481 / 556.5
  EXPECT_EQ(tall->height, 100u);
}

struct ConvertCase {
  const char* extension;
  int channels;                   // in the output file
  OIIO::TypeDesc::BASETYPE type;  // as stored
  const char* reference;          // prefix of the reference file
  Tolerance tolerance;
};

TEST(ImageOpsTest, ConvertWritesEveryFormatResizedByPercentAndBySize) {
  TempDir dir;
  const std::string input = beachball("singlepart", 1);
  // References at 50% (1024x778) and at exactly 320x240: linear with alpha,
  // sRGB with alpha, and sRGB without (what an output that drops alpha shows:
  // the premultiplied colour, i.e. the picture over black).
  std::string args;
  for (const std::string size : {"1024x778", "320x240"}) {
    args +=
        displayed_reference(input, "R,G,B,A", size) + " -d float -o " +
        quoted(dir.file("lin-" + size + ".exr")) + srgb_output(dir.file("rgba-" + size + ".tif")) +
        displayed_reference(input, "R,G,B", size) + srgb_output(dir.file("rgb-" + size + ".tif"));
  }
  oiiotool(args);
  const ConvertCase cases[] = {
      {"jpg", 3, OIIO::TypeDesc::UINT8, "rgb-", kJpeg},
      {"png", 4, OIIO::TypeDesc::UINT8, "rgba-", kEightBitAlpha},
      {"tif", 4, OIIO::TypeDesc::UINT8, "rgba-", kEightBitAlpha},
      {"dpx", 3, OIIO::TypeDesc::UINT16, "rgb-", {0.002f, 0.0, 0.002f}},
      {"exr", 4, OIIO::TypeDesc::HALF, "lin-", kHalf},
  };
  for (const std::string resize : {"50%", "320x240"}) {
    const uint32_t width = resize == "50%" ? 1024 : 320;
    const uint32_t height = resize == "50%" ? 778 : 240;
    const std::string size = std::to_string(width) + "x" + std::to_string(height);
    for (const ConvertCase& c : cases) {
      SCOPED_TRACE(std::string(c.extension) + " " + resize);
      const std::string out = dir.file("out-" + resize + "." + c.extension);
      auto info = convert_frame({input, out, "", resize, ""});
      ASSERT_TRUE(info.has_value()) << info.error().reason;
      EXPECT_EQ(info->width, width);
      EXPECT_EQ(info->height, height);
      EXPECT_EQ(info->channels, c.channels);
      const OIIO::ImageSpec spec = spec_of(out);
      EXPECT_EQ(spec.width, static_cast<int>(width));
      EXPECT_EQ(spec.height, static_cast<int>(height));
      EXPECT_EQ(spec.nchannels, c.channels);
      EXPECT_EQ(static_cast<int>(spec.format.basetype), static_cast<int>(c.type));
      if (std::string(c.extension) == "dpx") {
        EXPECT_EQ(spec.get_int_attribute("oiio:BitsPerSample"), 10);
      }
      const std::string ref =
          dir.file(c.reference + size + (c.reference[0] == 'l' ? ".exr" : ".tif"));
      EXPECT_TRUE(images_match(out, ref, c.channels, c.tolerance));
    }
  }
}

TEST(ImageOpsTest, ConvertAtFullSizeShowsTheDisplayWindowWithPixelAspect) {
  TempDir dir;
  // t07: 481x371 display window at -40,-40. t15: the same with pixel aspect
  // 1.5, shown 722 wide; t16: aspect 0.667, shown 557 tall.
  oiiotool(displayed_reference(display_window(7), "R,G,B", "481x371") +
           srgb_output(dir.file("ref7.tif")) +
           displayed_reference(display_window(15), "R,G,B", "722x371") +
           srgb_output(dir.file("ref15.tif")) +
           displayed_reference(display_window(16), "R,G,B", "481x556") +
           srgb_output(dir.file("ref16.tif")));

  const struct {
    int n;
    uint32_t width, height;
  } cases[] = {{7, 481, 371}, {15, 722, 371}, {16, 481, 556}};

  for (const auto& c : cases) {
    SCOPED_TRACE(c.n);
    const std::string out = dir.file("full" + std::to_string(c.n) + ".tif");
    auto info = convert_frame({display_window(c.n), out, "", "", ""});
    ASSERT_TRUE(info.has_value()) << info.error().reason;
    EXPECT_EQ(info->width, c.width);
    EXPECT_EQ(info->height, c.height);
    EXPECT_TRUE(images_match(out, dir.file("ref" + std::to_string(c.n) + ".tif"), 3, kEightBit));
  }
}

TEST(ImageOpsTest, ConvertFormatOptionChoosesTheWriterWhateverTheExtension) {
  TempDir dir;
  const std::string out = dir.file("frame.img");
  auto info = convert_frame({display_window(1), out, "png", "25%", ""});
  ASSERT_TRUE(info.has_value()) << info.error().reason;
  auto in = OIIO::ImageInput::open(out);
  ASSERT_TRUE(in);
  EXPECT_STREQ(in->format_name(), "png");
  EXPECT_EQ(in->spec().width, 100);
  EXPECT_EQ(in->spec().height, 75);
}

// A contact sheet: every cell where the layout puts it, its label drawn in its
// strip (text where configured, nothing elsewhere), a missing frame grey with
// an amber label, the slots past the last cell empty.
TEST(ImageOpsTest, AContactSheetIsAGridOfLabelledCellsWithMissingFramesShown) {
  TempDir dir;
  ContactSheetOptions options;
  for (int frame = 1; frame <= 8; ++frame) {
    options.frames.push_back(frame == 4 ? dir.file("gone.0004.exr")
                                        : beachball("singlepart", frame));
    options.frame_numbers.push_back(1000 + frame);
  }
  options.output = dir.file("sheet.png");
  options.columns = 3;
  options.cell_width = 140;
  options.title = "sh010 comp v003";
  auto made = make_contact_sheet(options);
  ASSERT_TRUE(made) << made.error().reason;

  // The layout of image_ops.h.
  const int cell_w = 140, font = 140 / 14, gap = 4;
  const int font_px = std::max(11, font), label_h = font_px + font_px / 2, title_h = 2 * font_px;
  const int cell_h = static_cast<int>(std::lround(140.0 * 1556 / 2048));  // the beachball's shape
  const int width = gap + 3 * (cell_w + gap);
  const int height = title_h + gap + 3 * (cell_h + label_h + gap);
  OIIO::ImageBuf sheet = load(options.output);
  ASSERT_EQ(sheet.spec().width, width);
  ASSERT_EQ(sheet.spec().height, height);
  EXPECT_EQ(made->width, static_cast<uint32_t>(width));

  // The brightest value and the largest R-B difference in a box.
  auto brightest = [&](int x0, int y0, int w, int h) {
    float most = 0.0f;
    for (int y = y0; y < y0 + h; ++y) {
      for (int x = x0; x < x0 + w; ++x) {
        for (int c = 0; c < 3; ++c) most = std::max(most, sheet.getchannel(x, y, 0, c));
      }
    }
    return most;
  };
  auto amber = [&](int x0, int y0, int w, int h) {
    float most = 0.0f;
    for (int y = y0; y < y0 + h; ++y) {
      for (int x = x0; x < x0 + w; ++x) {
        most = std::max(most, sheet.getchannel(x, y, 0, 0) - sheet.getchannel(x, y, 0, 2));
      }
    }
    return most;
  };
  for (int i = 0; i < 9; ++i) {
    SCOPED_TRACE("cell " + std::to_string(i));
    const int x0 = gap + i % 3 * (cell_w + gap);
    const int y0 = title_h + gap + i / 3 * (cell_h + label_h + gap);
    const int strip = y0 + cell_h;
    if (i == 8) {  // past the last frame: background only, no text
      EXPECT_NEAR(brightest(x0, y0, cell_w, cell_h + label_h), 0.08f, 0.01f);
      continue;
    }
    if (i == 3) {  // frame 1004 is missing
      EXPECT_NEAR(sheet.getchannel(x0 + cell_w / 2, y0 + cell_h / 2, 0, 1), 0.25f, 0.01f);
      EXPECT_GT(amber(x0, strip, cell_w, label_h), 0.5f) << "an amber label";
    } else {
      EXPECT_GT(brightest(x0 + cell_w / 4, y0, cell_w / 2, cell_h), 0.5f) << "the beachball";
      EXPECT_GT(brightest(x0, strip, cell_w / 3, label_h), 0.7f) << "the frame number";
      EXPECT_LT(amber(x0, strip, cell_w, label_h), 0.1f) << "a white label";
    }
    EXPECT_LT(brightest(x0 + cell_w * 2 / 3, strip, cell_w / 3, label_h), 0.05f)
        << "nothing drawn past a label of 4 digits";
  }
  EXPECT_GT(brightest(gap, 0, width / 2, title_h), 0.7f) << "the title";
  EXPECT_LT(brightest(width * 3 / 4, 0, width / 4, title_h), 0.1f) << "nothing past the title";
}

TEST(ImageOpsTest, AContactSheetOfOnlyMissingFramesOrAnUnreadableOneFails) {
  TempDir dir;
  ContactSheetOptions options;
  options.frames = {dir.file("a.0001.exr"), dir.file("a.0002.exr")};
  options.frame_numbers = {1, 2};
  options.output = dir.file("sheet.jpg");
  auto none = make_contact_sheet(options);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().reason, "no readable frames");
  std::ofstream(dir.file("a.0002.exr")) << "not an image";
  options.frames[0] = beachball("singlepart", 1);
  auto bad = make_contact_sheet(options);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().reason.find(dir.file("a.0002.exr")), std::string::npos)
      << bad.error().reason;
  EXPECT_FALSE(fs::exists(options.output));
}

// An EXR whose chromaticities are not Rec.709's (an ACES plate, AP0) is
// converted to the output's primaries, with the white adapted, as OpenEXR's
// own tools do: not shown washed out. Without the attribute, Rec.709.
TEST(ImageOpsTest, AnAcesPlateIsShownInTheOutputsPrimariesNotWashedOut) {
  TempDir dir;
  auto plate = [&](const std::string& name, const float* rgb, const float* chromaticities) {
    OIIO::ImageSpec spec(32, 32, 3, OIIO::TypeDesc::HALF);
    if (chromaticities != nullptr) {
      spec.attribute("chromaticities", OIIO::TypeDesc(OIIO::TypeDesc::FLOAT, 8), chromaticities);
    }
    OIIO::ImageBuf buf(spec);
    OIIO::ImageBufAlgo::fill(buf, {rgb, 3});
    const std::string path = dir.file(name);
    EXPECT_TRUE(buf.write(path)) << buf.geterror();
    return path;
  };
  auto shown = [&](const std::string& input) {
    ThumbnailOptions options;
    options.input = input;
    options.output = input + ".png";
    options.width = 8;
    auto made = make_thumbnail(options);
    EXPECT_TRUE(made) << (made ? "" : made.error().reason);
    OIIO::ImageBuf out = load(options.output);
    return std::array<float, 3>{out.getchannel(4, 4, 0, 0), out.getchannel(4, 4, 0, 1),
                                out.getchannel(4, 4, 0, 2)};
  };
  const float ap0[8] = {0.7347f, 0.2653f, 0.0f, 1.0f, 0.0001f, -0.0770f, 0.32168f, 0.33767f};
  const float ap1[8] = {0.713f, 0.293f, 0.165f, 0.830f, 0.128f, 0.044f, 0.32168f, 0.33767f};
  const float red[3] = {0.18f, 0.0f, 0.0f};
  const float grey[3] = {0.18f, 0.18f, 0.18f};
  auto srgb = [](double linear) {
    return linear <= 0.0031308 ? 12.92 * linear : 1.055 * std::pow(linear, 1 / 2.4) - 0.055;
  };
  // ACES2065-1 red 0.18 is Rec.709 (0.454, -0.050, -0.003): brighter and clipped.
  const auto aces_red = shown(plate("ap0-red.exr", red, ap0));
  EXPECT_NEAR(aces_red[0], srgb(0.18 * 2.5217), 0.02);
  EXPECT_NEAR(aces_red[1], 0.0f, 0.02);
  EXPECT_NEAR(aces_red[2], 0.0f, 0.02);
  // ACEScg (AP1) red: Rec.709 (0.297, -0.025, -0.004).
  EXPECT_NEAR(shown(plate("ap1-red.exr", red, ap1))[0], srgb(0.18 * 1.7051), 0.02);
  // Grey stays grey: the D60 white is adapted to D65.
  for (float value : shown(plate("ap0-grey.exr", grey, ap0))) {
    EXPECT_NEAR(value, srgb(0.18), 0.02);
  }
  // No chromaticities: Rec.709 as it is.
  EXPECT_NEAR(shown(plate("plain-red.exr", red, nullptr))[0], srgb(0.18), 0.02);
}

// Every kind of EXR a pipeline meets shows its whole picture: a mip-mapped
// texture at its full level, a lat-long environment as it is, a cube map as
// the full strip of its six faces, a multi-view file in its default view
// (one part with every view, or a part per view), a rip-mapped file at its full level.
TEST(ImageOpsTest, TexturesEnvironmentsAndMultiViewFilesShowTheirWholePicture) {
  TempDir dir;
  // The colour of a thumbnail's pixel, as 8-bit values.
  auto at = [](const OIIO::ImageBuf& image, int x, int y) {
    std::array<int, 3> rgb{};
    for (int c = 0; c < 3; ++c) {
      rgb[static_cast<size_t>(c)] =
          static_cast<int>(std::lround(image.getchannel(x, y, 0, c) * 255));
    }
    return rgb;
  };
  auto thumbnail = [&](const std::string& input, uint32_t width) {
    ThumbnailOptions options;
    options.input = input;
    options.output = input + ".png";
    options.width = width;
    auto made = make_thumbnail(options);
    EXPECT_TRUE(made) << input << ": " << (made ? "" : made.error().reason);
    return load(options.output);
  };
  const std::array<int, 3> red{255, 0, 0}, blue{0, 0, 255};

  // Mip-mapped (maketx): the full 256x128 level, red left and blue right.
  const std::string source = dir.file("halves.exr");
  oiiotool(
      " --pattern constant:color=1,0,0 128x128 3 --pattern constant:color=0,0,1 128x128 3 "
      "--mosaic 2x1 -d half -o " +
      quoted(source));
  ASSERT_EQ(run("maketx " + quoted(source) + " -o " + quoted(dir.file("mip.exr"))), 0);
  ASSERT_EQ(run("maketx --envlatl " + quoted(source) + " -o " + quoted(dir.file("latl.exr"))), 0);
  for (const char* name : {"mip.exr", "latl.exr"}) {
    SCOPED_TRACE(name);
    OIIO::ImageBuf shown = thumbnail(dir.file(name), 64);
    EXPECT_EQ(shown.spec().width, 64);
    EXPECT_EQ(shown.spec().height, 32) << "the full level's shape";
    EXPECT_EQ(at(shown, 8, 16), red);
    EXPECT_EQ(at(shown, 56, 16), blue);
  }

  // A cube map (OpenEXR's envmap attribute): six faces of 32x32 stacked, each
  // its own grey; shown as the whole strip, 1 wide by 6 high.
  const std::string cube = dir.file("cube.exr");
  {
    Imf::Header header(32, 192);
    Imf::addEnvmap(header, Imf::ENVMAP_CUBE);
    Imf::RgbaOutputFile out(cube.c_str(), header, Imf::WRITE_RGB);
    std::vector<Imf::Rgba> pixels(32 * 192);
    for (int y = 0; y < 192; ++y) {
      const float value = static_cast<float>(y / 32 + 1) / 8.0f;  // faces 1/8 .. 6/8
      for (int x = 0; x < 32; ++x)
        pixels[static_cast<size_t>(y * 32 + x)] = Imf::Rgba(value, value, value, 1);
    }
    out.setFrameBuffer(pixels.data(), 1, 32);
    out.writePixels(192);
  }
  OIIO::ImageBuf strip = thumbnail(cube, 16);
  EXPECT_EQ(strip.spec().width, 16);
  EXPECT_EQ(strip.spec().height, 96) << "all six faces";
  int previous = -1;
  for (int face = 0; face < 6; ++face) {
    const int grey = at(strip, 8, face * 16 + 8)[0];
    EXPECT_GT(grey, previous) << "face " << face << " is there, in order";
    previous = grey;
  }

  // Multi-view: the default view's channels (R, G, B: red), not another's (left.*: blue).
  const std::string views = dir.file("views.exr");
  oiiotool(
      " --pattern constant:color=1,0,0 64x32 3 --pattern constant:color=0,0,1 64x32 3 "
      "--chappend --chnames R,G,B,left.R,left.G,left.B -d half -o " +
      quoted(views));
  EXPECT_EQ(at(thumbnail(views, 32), 16, 8), red);

  // Rip-mapped (OpenEXR's RIPMAP_LEVELS, every x and y level): the full
  // 256x128 level, red left and blue right, not a squeezed one.
  const std::string rip = dir.file("rip.exr");
  {
    Imf::TiledRgbaOutputFile out(rip.c_str(), 256, 128, 32, 32, Imf::RIPMAP_LEVELS, Imf::ROUND_DOWN,
                                 Imf::WRITE_RGB);
    for (int ly = 0; ly < out.numYLevels(); ++ly) {
      for (int lx = 0; lx < out.numXLevels(); ++lx) {
        const int w = out.levelWidth(lx);
        const int h = out.levelHeight(ly);
        std::vector<Imf::Rgba> pixels(static_cast<size_t>(w * h));
        for (int y = 0; y < h; ++y) {
          for (int x = 0; x < w; ++x) {
            pixels[static_cast<size_t>(y * w + x)] =
                x < w / 2 ? Imf::Rgba(1, 0, 0, 1) : Imf::Rgba(0, 0, 1, 1);
          }
        }
        out.setFrameBuffer(pixels.data(), 1, static_cast<size_t>(w));
        out.writeTiles(0, out.numXTiles(lx) - 1, 0, out.numYTiles(ly) - 1, lx, ly);
      }
    }
  }
  OIIO::ImageBuf ripped = thumbnail(rip, 64);
  EXPECT_EQ(ripped.spec().width, 64);
  EXPECT_EQ(ripped.spec().height, 32) << "the full level's shape";
  EXPECT_EQ(at(ripped, 8, 16), red);
  EXPECT_EQ(at(ripped, 56, 16), blue);

  // Multi-part multi-view (OpenEXR 2): a part per view, each naming its view;
  // the file's multiView list puts "left" first, so left is the default view
  // (red), though the right view (blue) is the first part.
  const std::string parts = dir.file("parts.exr");
  {
    std::vector<Imf::Header> headers;
    for (const char* view : {"right", "left"}) {
      Imf::Header header(64, 32);
      for (const char* channel : {"R", "G", "B"}) {
        header.channels().insert(channel, Imf::Channel(Imf::HALF));
      }
      header.setName(view);
      header.setType(Imf::SCANLINEIMAGE);
      header.setView(view);
      Imf::addMultiView(header, Imf::StringVector{"left", "right"});
      headers.push_back(header);
    }
    Imf::MultiPartOutputFile out(parts.c_str(), headers.data(), static_cast<int>(headers.size()));
    for (int part = 0; part < 2; ++part) {
      const bool left = part == 1;
      std::vector<half> r(64 * 32, half(left ? 1.0f : 0.0f));
      std::vector<half> g(64 * 32, half(0.0f));
      std::vector<half> b(64 * 32, half(left ? 0.0f : 1.0f));
      Imf::FrameBuffer frame;
      for (auto [name, plane] : {std::pair{"R", &r}, std::pair{"G", &g}, std::pair{"B", &b}}) {
        frame.insert(name, Imf::Slice(Imf::HALF, reinterpret_cast<char*>(plane->data()),
                                      sizeof(half), sizeof(half) * 64));
      }
      Imf::OutputPart writer(out, part);
      writer.setFrameBuffer(frame);
      writer.writePixels(32);
    }
  }
  EXPECT_EQ(at(thumbnail(parts, 32), 16, 8), red) << "the default view, left";
}

// A proxy's burn-ins: drawn by OpenImageIO where configured, with the frame's
// number and the job's values; the rest of the picture is untouched.
TEST(ImageOpsTest, ProxyBurnInsAreDrawnWhereConfiguredAndNowhereElse) {
  TempDir dir;
  OIIO::ImageBuf grey(OIIO::ImageSpec(320, 240, 3, OIIO::TypeDesc::HALF));
  const float value[3] = {0.18f, 0.18f, 0.18f};
  OIIO::ImageBufAlgo::fill(grey, value);
  const std::string input = dir.file("grey.1017.exr");
  ASSERT_TRUE(grey.write(input)) << grey.geterror();
  ConvertOptions plain;
  plain.input = input;
  plain.output = dir.file("plain.png");
  ASSERT_TRUE(convert_frame(plain));
  ConvertOptions burned = plain;
  burned.output = dir.file("burned.png");
  ReviewValues values;
  values.values = {{"shot", "sh010"}};
  const std::vector<BurnIn> burns = {BurnIn{"{shot} {frame}", "top-right", 0, "yellow"}};
  burned.overlay = [&](OIIO::ImageBuf& picture) {
    return draw_burn_ins(picture, burns, "", values, 1017);
  };
  auto made = convert_frame(burned);
  ASSERT_TRUE(made) << made.error().reason;
  OIIO::ImageBuf a = load(plain.output);
  OIIO::ImageBuf b = load(burned.output);
  int changed_top_right = 0, changed_elsewhere = 0, yellow = 0;
  for (int y = 0; y < 240; ++y) {
    for (int x = 0; x < 320; ++x) {
      const bool differs = std::abs(a.getchannel(x, y, 0, 0) - b.getchannel(x, y, 0, 0)) > 0.02f;
      const bool corner = x >= 200 && y < 40;
      (corner ? changed_top_right : changed_elsewhere) += differs ? 1 : 0;
      if (b.getchannel(x, y, 0, 0) > 0.8f && b.getchannel(x, y, 0, 2) < 0.3f) ++yellow;
    }
  }
  EXPECT_GT(changed_top_right, 100) << "the box and the text, top right";
  EXPECT_EQ(changed_elsewhere, 0);
  EXPECT_GT(yellow, 30) << "yellow text";
  EXPECT_FALSE(draw_burn_ins(b, {BurnIn{"{seq}", "top", 0, "white"}}, "", values, 1))
      << "a name without a value is an error";
}

TEST(ImageOpsTest, ConvertRejectsAMalformedResize) {
  TempDir dir;
  for (const char* resize : {"abc", "0x0", "-5%", "10x", "x10", "100000x10", "%"}) {
    SCOPED_TRACE(resize);
    auto info = convert_frame({display_window(1), dir.file("out.png"), "", resize, ""});
    ASSERT_FALSE(info.has_value());
    EXPECT_EQ(info.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(info.error().reason.find(dir.file("out.png")), std::string::npos)
        << info.error().reason;
  }
  EXPECT_TRUE(dir.entries().empty());
}

TEST(ImageOpsTest, UnsupportedOutputFormatIsAnInvalidArgument) {
  TempDir dir;
  auto thumb = make_thumbnail({display_window(1), dir.file("out.gif"), 256, 0, ""});
  ASSERT_FALSE(thumb.has_value());
  EXPECT_EQ(thumb.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(thumb.error().reason, "unsupported output format: " + dir.file("out.gif"));
  auto convert = convert_frame({display_window(1), dir.file("out.png"), "bmp", "", ""});
  ASSERT_FALSE(convert.has_value());
  EXPECT_EQ(convert.error().code, ErrorCode::kInvalidArgument);
  auto zero = make_thumbnail({display_window(1), dir.file("out.png"), 0, 0, ""});
  ASSERT_FALSE(zero.has_value());
  EXPECT_EQ(zero.error().code, ErrorCode::kInvalidArgument);
}

TEST(ImageOpsTest, MissingInputIsNotFoundNamingTheFile) {
  TempDir dir;
  const std::string missing = dir.file("nope.0001.exr");
  auto thumb = make_thumbnail({missing, dir.file("out.jpg"), 256, 0, ""});
  ASSERT_FALSE(thumb.has_value());
  EXPECT_EQ(thumb.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(thumb.error().reason, "no such file " + missing);
  auto image = read_display_image(missing, 0, 0, ColourChoice{});
  ASSERT_FALSE(image.has_value());
  EXPECT_EQ(image.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(image.error().reason, "no such file " + missing);
}

TEST(ImageOpsTest, TextFileNamedExrIsNotAnImageAndLeavesNothingBehind) {
  TempDir dir;
  const std::string fake = dir.file("fake.exr");
  std::ofstream(fake) << "this is not an image\n";
  auto thumb = make_thumbnail({fake, dir.file("out.jpg"), 256, 0, ""});
  ASSERT_FALSE(thumb.has_value());
  EXPECT_EQ(thumb.error().code, ErrorCode::kCorrupt);
  EXPECT_EQ(thumb.error().reason, "not an image: " + fake);
  auto convert = convert_frame({fake, dir.file("out.exr"), "", "", ""});
  ASSERT_FALSE(convert.has_value());
  EXPECT_EQ(convert.error().code, ErrorCode::kCorrupt);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"fake.exr"});
}

TEST(ImageOpsTest, TruncatedExrIsCorruptWithOneLineReason) {
  TempDir dir;
  const std::string cut = dir.file("cut.exr");
  fs::copy_file(beachball("multipart", 1), cut);
  fs::resize_file(cut, fs::file_size(cut) / 2);
  auto thumb = make_thumbnail({cut, dir.file("out.jpg"), 256, 0, ""});
  ASSERT_FALSE(thumb.has_value());
  EXPECT_EQ(thumb.error().code, ErrorCode::kCorrupt);
  EXPECT_EQ(thumb.error().reason.rfind("cannot read " + cut + ": ", 0), 0u) << thumb.error().reason;
  EXPECT_EQ(thumb.error().reason.find('\n'), std::string::npos);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"cut.exr"});
}

TEST(ImageOpsTest, DamagedExrHeaderIsCorruptWithOpenExrReasonEvenWithoutExtension) {
  TempDir dir;
  // The first 64 bytes of an OpenEXR file: magic and a cut-off header.
  std::ifstream in(display_window(1), std::ios::binary);
  std::string head(64, '\0');
  in.read(head.data(), static_cast<std::streamsize>(head.size()));
  for (const std::string name : {"frame.exr", "frame"}) {
    SCOPED_TRACE(name);
    const std::string damaged = dir.file(name);
    std::ofstream(damaged, std::ios::binary) << head;
    auto thumb = make_thumbnail({damaged, dir.file("out.jpg"), 64, 0, ""});
    ASSERT_FALSE(thumb.has_value());
    EXPECT_EQ(thumb.error().code, ErrorCode::kCorrupt);
    EXPECT_EQ(thumb.error().reason.rfind("cannot read " + damaged + ": ", 0), 0u)
        << thumb.error().reason;
    EXPECT_EQ(thumb.error().reason.find("could not find a format reader"), std::string::npos)
        << thumb.error().reason;
    EXPECT_EQ(thumb.error().reason.find('\n'), std::string::npos);
  }
  EXPECT_FALSE(fs::exists(dir.file("out.jpg")));
}

TEST(ImageOpsTest, FailedWriteLeavesNoTemporaryFileBehind) {
  TempDir dir;
  // The target is a non-empty directory: the data is written, the rename fails.
  const std::string target = dir.file("thumb.jpg");
  fs::create_directory(target);
  std::ofstream((fs::path(target) / "keep").string()) << "x";
  auto thumb = make_thumbnail({display_window(1), target, 64, 0, ""});
  ASSERT_FALSE(thumb.has_value());
  EXPECT_EQ(thumb.error().code, ErrorCode::kIo);
  EXPECT_EQ(thumb.error().reason.rfind("cannot write " + target + ": ", 0), 0u)
      << thumb.error().reason;
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"thumb.jpg"});
  // And an output directory that does not exist.
  const std::string nowhere = dir.file("missing/thumb.jpg");
  auto missing = make_thumbnail({display_window(1), nowhere, 64, 0, ""});
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code, ErrorCode::kIo);
  EXPECT_EQ(missing.error().reason.rfind("cannot write " + nowhere + ": ", 0), 0u);
}

TEST(ImageOpsTest, OutputIsReplacedByRenameNotRewrittenInPlace) {
  TempDir dir;
  const std::string target = dir.file("thumb.jpg");
  const std::string link = dir.file("old-link");
  std::ofstream(target) << "old thumbnail";
  fs::create_hard_link(target, link);
  auto thumb = make_thumbnail({display_window(1), target, 64, 0, ""});
  ASSERT_TRUE(thumb.has_value()) << thumb.error().reason;
  // A rename gives the name a new inode; the old one (still linked) is untouched.
  std::string old_content;
  std::getline(std::ifstream(link), old_content);
  EXPECT_EQ(old_content, "old thumbnail");
  EXPECT_EQ(fs::hard_link_count(target), 1u);
  EXPECT_EQ(spec_of(target).width, 64);
  EXPECT_EQ(dir.entries(), (std::vector<std::string>{"old-link", "thumb.jpg"}));
}

TEST(ImageOpsTest, DisplayImageIsSixteenBitSrgbOfTheDisplayedPicture) {
  TempDir dir;
  oiiotool(displayed_reference(display_window(15), "R,G,B", "722x371") +
           srgb_output(dir.file("ref.tif")));
  auto image = read_display_image(display_window(15), 0, 0, ColourChoice{});
  ASSERT_TRUE(image.has_value()) << image.error().reason;
  ASSERT_EQ(image->width, 722u);
  ASSERT_EQ(image->height, 371u);
  ASSERT_EQ(image->rgb.size(), size_t{722} * 371 * 3);
  // Written out as a 16-bit TIFF, it must match the reference to 16-bit precision.
  OIIO::ImageSpec spec(722, 371, 3, OIIO::TypeUInt16);
  OIIO::ImageBuf buf(spec, image->rgb.data());
  ASSERT_TRUE(buf.write(dir.file("ours.tif")));
  EXPECT_TRUE(images_match(dir.file("ours.tif"), dir.file("ref.tif"), 3, {0.0005f, 0.0, 0.001f}));
}

// The movie encoder's fast path against read_display_image, value by value.
void expect_half_frame_matches_display_image(const std::string& path) {
  HalfFrame frame;
  ASSERT_TRUE(read_half_frame(path, ColourChoice{}, frame)) << path;
  auto image = read_display_image(path, 0, 0, ColourChoice{});
  ASSERT_TRUE(image.has_value()) << image.error().reason;
  ASSERT_EQ(frame.width, image->width);
  ASSERT_EQ(frame.height, image->height);
  const uint16_t* table = srgb16_of_half();
  int worst = 0;
  for (uint32_t y = 0; y < frame.height; ++y) {
    for (uint32_t x = 0; x < frame.width; ++x) {
      for (int c = 0; c < 3; ++c) {
        const bool inside = y >= frame.y0 && y < frame.y1 && x >= frame.x0 && x < frame.x1;
        const int fast = inside ? table[frame.row(y)[(x - frame.x0) * 3 + c]] : 0;
        const int general = image->rgb[(size_t{y} * frame.width + x) * 3 + c];
        worst = std::max(worst, std::abs(fast - general));
      }
    }
  }
  EXPECT_LE(worst, 1) << path;
}

TEST(ImageOpsTest, HalfFrameThroughTheSrgbTableEqualsTheDisplayImage) {
  // Frame 1: a small data window inside the display window (black around it);
  // frame 7: data past the display window's right edge (cropped).
  expect_half_frame_matches_display_image(beachball("singlepart", 1));
  expect_half_frame_matches_display_image(beachball("singlepart", 7));
}

TEST(ImageOpsTest, HalfFrameLeavesNanAndInfToTheGeneralPath) {
  HalfFrame frame;
  EXPECT_FALSE(
      read_half_frame(data_file("TestImages/BrightRingsNanInf.exr"), ColourChoice{}, frame));
}

// One NaN or Inf anywhere -- any pixel, any channel, in the last values of a
// row whose length is no multiple of 4 -- sends the frame the general way;
// the largest finite halves, denormals and -0 do not.
TEST(ImageOpsTest, HalfFrameFindsEveryNonFiniteValue) {
  TempDir dir;
  constexpr int kWidth = 5;
  constexpr int kHeight = 3;
  const uint16_t finite[] = {0x7bff, 0xfbff, 0x0001, 0x8000, 0x3c00, 0x0000};
  std::vector<uint16_t> pixels(size_t{kWidth} * kHeight * 3);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = finite[i % std::size(finite)];
  auto write = [&](const std::vector<uint16_t>& values, const std::string& path) {
    OIIO::ImageBuf buf(OIIO::ImageSpec(kWidth, kHeight, 3, OIIO::TypeHalf),
                       const_cast<uint16_t*>(values.data()));
    ASSERT_TRUE(buf.write(path)) << buf.geterror();
  };
  const std::string clean = dir.file("clean.exr");
  write(pixels, clean);
  HalfFrame frame;
  EXPECT_TRUE(read_half_frame(clean, ColourChoice{}, frame));
  for (uint16_t bad : {uint16_t{0x7c00}, uint16_t{0xfc00}, uint16_t{0x7e00}, uint16_t{0xfe01}}) {
    for (size_t at = 0; at < pixels.size(); ++at) {
      std::vector<uint16_t> planted = pixels;
      planted[at] = bad;
      const std::string path = dir.file("bad.exr");
      write(planted, path);
      EXPECT_FALSE(read_half_frame(path, ColourChoice{}, frame))
          << std::hex << bad << " at value " << std::dec << at;
    }
  }
}

TEST(ImageOpsTest, HalfFrameLeavesOcioConfigsToTheGeneralPath) {
  HalfFrame frame;
  EXPECT_FALSE(
      read_half_frame(beachball("singlepart", 1), ColourChoice{"/nonexistent/config.ocio"}, frame));
}

TEST(ImageOpsTest, SrgbTableFollowsTheSrgbCurveAndClampsNonFiniteValues) {
  const uint16_t* table = srgb16_of_half();
  auto at = [&](float v) { return table[Imath::half(v).bits()]; };
  EXPECT_EQ(at(0.0f), 0);
  EXPECT_EQ(at(1.0f), 65535);
  EXPECT_EQ(at(-0.5f), 0);
  EXPECT_EQ(at(8.0f), 65535);
  EXPECT_NEAR(at(0.18f), std::lround((1.055 * std::pow(0.18, 1 / 2.4) - 0.055) * 65535), 40);
  EXPECT_EQ(table[0x7c00], 65535);  // +Inf
  EXPECT_EQ(table[0xfc00], 0);      // -Inf
  EXPECT_EQ(table[0x7e00], 0);      // NaN
}

TEST(ImageOpsTest, DisplayImageFitsInsideTheRequestedBox) {
  auto box = read_display_image(beachball("multipart", 1), 128, 128, ColourChoice{});
  ASSERT_TRUE(box.has_value()) << box.error().reason;
  EXPECT_EQ(box->width, 128u);
  EXPECT_EQ(box->height, 97u);  // 128 * 1556 / 2048 = 97.25
  EXPECT_EQ(box->rgb.size(), size_t{128} * 97 * 3);
  auto by_height = read_display_image(beachball("multipart", 1), 0, 100, ColourChoice{});
  ASSERT_TRUE(by_height.has_value()) << by_height.error().reason;
  EXPECT_EQ(by_height->width, 132u);
  EXPECT_EQ(by_height->height, 100u);
  auto by_width = read_display_image(beachball("multipart", 1), 200, 0, ColourChoice{});
  ASSERT_TRUE(by_width.has_value()) << by_width.error().reason;
  EXPECT_EQ(by_width->width, 200u);
  EXPECT_EQ(by_width->height, 152u);  // 151.95
}

TEST(ImageOpsTest, OcioConfigDisplayViewIsApplied) {
  TempDir dir;
  const std::string srgb_config = write_ocio_config(dir, "srgb");
  const std::string linear_config = write_ocio_config(dir, "linear");
  const std::string input = display_window(3);
  ASSERT_TRUE(make_thumbnail({input, dir.file("builtin.png"), 128, 0, ""}).has_value());
  auto srgb = make_thumbnail({input, dir.file("srgb.png"), 128, 0, srgb_config});
  ASSERT_TRUE(srgb.has_value()) << srgb.error().reason;
  auto linear = make_thumbnail({input, dir.file("linear.png"), 128, 0, linear_config});
  ASSERT_TRUE(linear.has_value()) << linear.error().reason;
  // The config's sRGB view agrees with OIIO's built-in sRGB; its linear view does not.
  EXPECT_TRUE(images_match(dir.file("srgb.png"), dir.file("builtin.png"), 3, kEightBit));
  EXPECT_FALSE(images_match(dir.file("linear.png"), dir.file("builtin.png"), 3, kJpeg));
  // Linear through the config equals no conversion at all.
  oiiotool(displayed_reference(input, "R,G,B", "128x97") + " -d uint16 -o " +
           quoted(dir.file("raw.tif")));
  EXPECT_TRUE(images_match(dir.file("linear.png"), dir.file("raw.tif"), 3, kEightBit));
}

// A job chooses the OCIO display, view and look; a name the config lacks is
// refused listing what it has; without a config they are refused.
TEST(ImageOpsTest, TheChosenOcioDisplayViewAndLookAreApplied) {
  TempDir dir;
  const std::string config = testing_support::write_two_display_config(dir.path());
  const std::string input = display_window(3);
  auto thumb = [&](const std::string& name, const ColourChoice& colour) {
    ThumbnailOptions options;
    options.input = input;
    options.output = dir.file(name);
    options.width = 128;
    options.colour = colour;
    return make_thumbnail(options);
  };
  ASSERT_TRUE(thumb("builtin.png", {}));
  ASSERT_TRUE(thumb("default.png", {config}));
  ASSERT_TRUE(thumb("srgb.png", {config, "sRGB"}));
  ASSERT_TRUE(thumb("raw.png", {config, "sRGB", "raw"}));
  ASSERT_TRUE(thumb("half.png", {config, "sRGB", "raw", "half"}));
  ASSERT_TRUE(thumb("web.png", {config, "", "", "", /*web=*/true}));
  // The default display (monitor) shows linear; sRGB's default view the curve.
  EXPECT_FALSE(images_match(dir.file("default.png"), dir.file("builtin.png"), 3, kJpeg));
  EXPECT_TRUE(images_match(dir.file("srgb.png"), dir.file("builtin.png"), 3, kEightBit));
  EXPECT_TRUE(images_match(dir.file("raw.png"), dir.file("default.png"), 3, kEightBit));
  EXPECT_TRUE(images_match(dir.file("web.png"), dir.file("srgb.png"), 3, kEightBit))
      << "a web output prefers the sRGB display";
  // The look halves the light: the brightest pixel is about half as bright.
  OIIO::ImageBuf raw = load(dir.file("raw.png"));
  OIIO::ImageBuf half = load(dir.file("half.png"));
  const auto raw_max = OIIO::ImageBufAlgo::computePixelStats(raw).max;
  const auto half_max = OIIO::ImageBufAlgo::computePixelStats(half).max;
  ASSERT_GT(raw_max[0], 0.2f);
  EXPECT_NEAR(half_max[0], raw_max[0] / 2, 0.02f);

  auto unknown = thumb("x.png", {config, "P3"});
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().reason,
            "no display 'P3' in ocio config " + config + " (monitor, sRGB)");
  auto no_view = thumb("x.png", {config, "sRGB", "ACES"});
  ASSERT_FALSE(no_view);
  EXPECT_EQ(no_view.error().reason,
            "no view 'ACES' for display sRGB in ocio config " + config + " (standard, raw)");
  auto no_look = thumb("x.png", {config, "sRGB", "", "film"});
  ASSERT_FALSE(no_look);
  EXPECT_EQ(no_look.error().reason, "no look 'film' in ocio config " + config + " (half)");
  auto no_config = thumb("x.png", {"", "sRGB"});
  ASSERT_FALSE(no_config);
  EXPECT_EQ(no_config.error().reason,
            "display, view and look need an OCIO config (--ocio, or $OCIO on the worker)");
  EXPECT_FALSE(fs::exists(dir.file("x.png")));
}

TEST(ImageOpsTest, OcioEnvironmentVariableIsUsedWhenNoConfigIsGiven) {
  TempDir dir;
  const std::string linear_config = write_ocio_config(dir, "linear");
  const std::string input = display_window(3);
  ASSERT_TRUE(make_thumbnail({input, dir.file("explicit.png"), 128, 0, linear_config}).has_value());
  ::setenv("OCIO", linear_config.c_str(), 1);
  auto env = make_thumbnail({input, dir.file("env.png"), 128, 0, ""});
  ::unsetenv("OCIO");
  ASSERT_TRUE(env.has_value()) << env.error().reason;
  EXPECT_TRUE(images_match(dir.file("env.png"), dir.file("explicit.png"), 3, {0.0f, 0.0, 0.0f}));
}

TEST(ImageOpsTest, UnreadableOcioConfigIsAnInvalidArgument) {
  TempDir dir;
  const std::string config = dir.file("broken.ocio");
  std::ofstream(config) << "not: [an ocio config\n";
  auto thumb = make_thumbnail({display_window(1), dir.file("out.png"), 64, 0, config});
  ASSERT_FALSE(thumb.has_value());
  EXPECT_EQ(thumb.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(thumb.error().reason.find(config), std::string::npos) << thumb.error().reason;
  EXPECT_EQ(thumb.error().reason.find('\n'), std::string::npos);
  EXPECT_FALSE(fs::exists(dir.file("out.png")));
}

TEST(ImageOpsTest, TiledInputGivesTheSameThumbnailAsScanlineInput) {
  TempDir dir;
  const std::string tiled = dir.file("tiled.exr");
  oiiotool(" " + quoted(display_window(8)) + " --tile 64 64 -o " + quoted(tiled));
  ASSERT_NE(spec_of(tiled).tile_width, 0);
  ASSERT_TRUE(make_thumbnail({display_window(8), dir.file("a.png"), 256, 0, ""}).has_value());
  auto info = make_thumbnail({tiled, dir.file("b.png"), 256, 0, ""});
  ASSERT_TRUE(info.has_value()) << info.error().reason;
  EXPECT_TRUE(images_match(dir.file("b.png"), dir.file("a.png"), 3, {0.0f, 0.0, 0.0f}));
}

TEST(ImageOpsTest, LayerPrefixedChannelsAreFoundByName) {
  TempDir dir;
  // "beauty.R" etc. after an unrelated layer that sorts first in the file.
  const std::string layered = dir.file("layered.exr");
  oiiotool(" " + quoted(display_window(5)) + " --dup --chnames aov.R,aov.G,aov.B --mulc 0.25" +
           " --swap --chnames beauty.R,beauty.G,beauty.B --chappend -o " + quoted(layered));
  ASSERT_TRUE(make_thumbnail({display_window(5), dir.file("a.png"), 128, 0, ""}).has_value());
  auto info = make_thumbnail({layered, dir.file("b.png"), 128, 0, ""});
  ASSERT_TRUE(info.has_value()) << info.error().reason;
  EXPECT_TRUE(images_match(dir.file("b.png"), dir.file("a.png"), 3, {0.0f, 0.0, 0.0f}));
}

TEST(ImageOpsTest, SingleChannelInputBecomesGrayRgb) {
  TempDir dir;
  const std::string gray = dir.file("gray.exr");
  oiiotool(" " + quoted(display_window(1)) + " --ch G -o " + quoted(gray));
  auto info = make_thumbnail({gray, dir.file("gray.png"), 64, 0, ""});
  ASSERT_TRUE(info.has_value()) << info.error().reason;
  EXPECT_EQ(info->channels, 3);
  OIIO::ImageBuf buf = load(dir.file("gray.png"));
  ASSERT_TRUE(buf.initialized());
  float px[3];
  buf.getpixel(10, 10, px, 3);
  EXPECT_EQ(px[0], px[1]);
  EXPECT_EQ(px[1], px[2]);
  EXPECT_GT(px[1], 0.0f);
}

// `input` rewritten by OpenEXR as luminance/chroma (Y, RY, BY subsampled 2x2,
// A), with its display window; the data window grows by transparent black
// columns/rows where needed to cover whole 2x2 blocks, as subsampling requires.
void write_luminance_chroma(const std::string& input, const std::string& output) {
  Imf::RgbaInputFile in(input.c_str());
  const Imath::Box2i dw = in.dataWindow();
  Imath::Box2i even = dw;
  even.min.x -= ((dw.min.x % 2) + 2) % 2;
  even.min.y -= ((dw.min.y % 2) + 2) % 2;
  even.max.x += (even.max.x - even.min.x + 1) % 2;  // and span whole 2x2 blocks
  even.max.y += (even.max.y - even.min.y + 1) % 2;
  const int64_t width = int64_t{even.max.x} - even.min.x + 1;
  const int64_t height = int64_t{even.max.y} - even.min.y + 1;
  std::vector<Imf::Rgba> pixels(static_cast<size_t>(width * height), Imf::Rgba(0, 0, 0, 0));
  Imf::Rgba* origin = pixels.data() - even.min.x - int64_t{even.min.y} * width;
  in.setFrameBuffer(origin, 1, static_cast<size_t>(width));
  in.readPixels(dw.min.y, dw.max.y);
  Imf::Header header(in.displayWindow(), even);
  Imf::RgbaOutputFile out(output.c_str(), header, Imf::WRITE_YCA);
  out.setFrameBuffer(origin, 1, static_cast<size_t>(width));
  out.writePixels(static_cast<int>(height));
}

TEST(ImageOpsTest, LuminanceChromaExrIsShownInRgbLikeItsRgbOriginal) {
  // OIIO refuses subsampled channels; OpenEXR's RgbaInputFile converts them.
  TempDir dir;
  const std::string yc = dir.file("yc.exr");
  write_luminance_chroma(beachball("singlepart", 3), yc);
  const OIIO::ImageSpec raw = spec_of(yc);  // OIIO cannot open it: an empty spec
  EXPECT_EQ(raw.nchannels, 0) << "OIIO now reads subsampled channels; this test is moot";
  auto info = make_thumbnail({yc, dir.file("yc.png"), 256, 0, ""});
  ASSERT_TRUE(info.has_value()) << info.error().reason;
  EXPECT_EQ(info->width, 256u);
  EXPECT_EQ(info->height, 195u);  // the 2048x1556 display window, not the data window
  ASSERT_TRUE(make_thumbnail({beachball("singlepart", 3), dir.file("rgb.png"), 256, 0, ""}));
  // Chroma at half resolution blurs colour edges a little.
  EXPECT_TRUE(images_match(dir.file("yc.png"), dir.file("rgb.png"), 3, {0.02f, 2.0, 0.15f}));

  // Proxies and movies take the same reader.
  auto converted = convert_frame({yc, dir.file("yc_half.png"), "", "50%", ""});
  ASSERT_TRUE(converted.has_value()) << converted.error().reason;
  EXPECT_EQ(converted->width, 1024u);
  auto frame = read_display_image(yc, 512, 0, ColourChoice{});
  ASSERT_TRUE(frame.has_value()) << frame.error().reason;
  HalfFrame half;
  EXPECT_FALSE(read_half_frame(yc, ColourChoice{}, half));
}

TEST(ImageOpsTest, SrgbInputIsNotConvertedTwice) {
  TempDir dir;
  // A display-referred PNG thumbnailed at its own size comes out unchanged.
  ASSERT_TRUE(convert_frame({display_window(1), dir.file("frame.png"), "", "", ""}).has_value());
  auto info = make_thumbnail({dir.file("frame.png"), dir.file("thumb.png"), 400, 0, ""});
  ASSERT_TRUE(info.has_value()) << info.error().reason;
  EXPECT_TRUE(images_match(dir.file("thumb.png"), dir.file("frame.png"), 3, {0.0f, 0.0, 0.0f}));
}

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

TEST(ImageOpsTest, ThumbnailOverItsOwnInputFailsAndLeavesTheInputUntouched) {
  TempDir dir;
  const std::string plate = dir.file("t.exr");
  fs::copy_file(beachball("singlepart", 1), plate);
  const std::string before = file_bytes(plate);
  auto made = make_thumbnail({plate, plate, 64, 0, ""});
  ASSERT_FALSE(made.has_value());
  EXPECT_EQ(made.error().reason, "output " + plate + " is the task's input " + plate +
                                     ": a job never overwrites what it reads");
  EXPECT_EQ(file_bytes(plate), before);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"t.exr"}) << "no temporary left";
}

TEST(ImageOpsTest, ConvertOverAnotherFrameOfItsTaskFailsAndLeavesThatFrameUntouched) {
  TempDir dir;
  fs::copy_file(beachball("singlepart", 1), dir.file("sb.0001.exr"));
  fs::copy_file(beachball("singlepart", 2), dir.file("sb.0002.exr"));
  const std::string before = file_bytes(dir.file("sb.0002.exr"));
  ConvertOptions options;
  options.input = dir.file("sb.0001.exr");
  options.output = dir.file("sb.0002.exr");
  options.resize = "10%";
  options.task_inputs = {dir.file("sb.0001.exr"), dir.file("sb.0002.exr")};
  auto converted = convert_frame(options);
  ASSERT_FALSE(converted.has_value());
  EXPECT_NE(converted.error().reason.find("is the task's input"), std::string::npos)
      << converted.error().reason;
  EXPECT_EQ(file_bytes(dir.file("sb.0002.exr")), before);
}

TEST(ImageOpsTest, ConvertThroughADirectorySwappedForASymlinkWritesNothingOutsideItsRoot) {
  TempDir root("fh-root");
  TempDir outside("fh-outside");
  fs::create_directory(root.file("proxy"));
  const std::string resolved = root.file("proxy");  // what the broker recorded at submit
  fs::remove(root.file("proxy"));
  fs::create_directory_symlink(outside.path(), root.file("proxy"));
  ConvertOptions options;
  options.input = beachball("singlepart", 1);
  options.output = root.file("proxy/sb.0001.jpg");
  options.resize = "10%";
  options.place = {root.path(), resolved};
  auto converted = convert_frame(options);
  ASSERT_FALSE(converted.has_value());
  EXPECT_EQ(converted.error().reason,
            "cannot write " + options.output + ": " + root.file("proxy") + " is a symlink");
  EXPECT_TRUE(outside.entries().empty());
}

TEST(ImageOpsTest, AFullDiskFailsNamingTheOutputAndLeavesNoTemporary) {
  TempDir dir;
  testing_support::FullDisk disk(dir);
  const std::string output = disk.path() + "/p.0008.exr";
  auto converted = convert_frame({beachball("singlepart", 8), output, "", "", ""});
  disk.release();
  ASSERT_FALSE(converted.has_value());
  EXPECT_EQ(converted.error().reason.rfind("cannot write " + output + ": ", 0), 0u)
      << converted.error().reason;
  EXPECT_NE(converted.error().reason.find(disk.reason()), std::string::npos)
      << converted.error().reason;
  EXPECT_EQ(converted.error().reason.find("/proc/self/fd"), std::string::npos)
      << converted.error().reason;
  EXPECT_TRUE(fs::is_empty(disk.path()));
}

}  // namespace
}  // namespace farmhand::media
