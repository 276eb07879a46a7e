// Image operations of the media process: thumbnails and frame conversion.
//
// OpenImageIO does the reading, colour conversion and writing; resizing is
// our own separable filter (OIIO's resize costs more than the decode). Only
// what is needed is read: the R,G,B(,A) channels of the first subimage (the
// default layer of the first part), never every AOV of a 50-channel EXR.
// Pictures are shown as they were meant to be seen: the data window placed in
// the display window (black outside it), non-square pixel aspect applied.
// Scene-linear input goes to display (sRGB, or through OpenColorIO when an
// OCIO config is given) for 8-bit outputs; NaN and Inf never reach an output.
// Outputs are written to a temporary file in the target's directory and
// renamed, never over a file the task reads (workers/media/output_file.h).
//
// Sizes: pixel aspect scales the picture up, never down (aspect > 1 widens,
// < 1 makes it taller), as `oiiotool --pixelaspect` does. Fitted sizes round
// halves up (2048x1556 at 256 wide -> 256x195) and may enlarge small images.
// Resizing uses a triangle filter, in linear light, before colour conversion.
//
// These functions may abort inside OpenEXR on hostile files: callers run them
// in a child process (the media process), never in the worker or broker.
// Thread-safe: no shared state beyond OIIO's own caches, a mutex-guarded
// cache of loaded colour configs (one per OCIO config path) and the immutable
// half -> sRGB table.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <OpenImageIO/imagebuf.h>

#include "common/result.h"
#include "workers/media/output_file.h"

namespace farmhand::media {

// How scene-linear pictures are shown. Without an OCIO config (none given,
// no $OCIO): OIIO's built-in linear -> sRGB, after converting other EXR
// primaries to Rec.709; display, view and look then need a config. With one:
// its scene_linear through display and view (the config's defaults when
// empty; "sRGB" first for web outputs when the config has such a display)
// and the look, if any.
struct ColourChoice {
  std::string config{};
  std::string display{};
  std::string view{};
  std::string look{};
  bool web = false;
};

struct ThumbnailOptions {
  std::string input;   // one image file
  std::string output;  // .jpg, .png, .tif... (format from the extension)
  // The displayed picture is fitted inside width x height keeping its aspect;
  // height 0 fixes only the width. The output's size is the fitted size.
  // Thumbnails are opaque R,G,B whatever the format (alpha is not read).
  uint32_t width = 256;
  uint32_t height = 0;
  ColourChoice colour;
  OutputPlace place = {};  // where the broker placed `output`; empty: its parent as written
};

// What one image operation read and wrote, and how long each step took (the
// task's log says it).
struct ImageInfo {
  uint32_t width = 0;  // the output picture
  uint32_t height = 0;
  int channels = 0;
  // The input: displayed size (display window times pixel aspect), the data
  // window's size, the file's channel count and those read ("R,G,B").
  uint32_t input_width = 0;
  uint32_t input_height = 0;
  uint32_t data_width = 0;
  uint32_t data_height = 0;
  int input_channels = 0;
  std::string channels_read;
  std::string format;         // what was written: "jpeg", "png", "tiff", "dpx", "openexr"
  uint64_t output_bytes = 0;  // the output file's size
  std::chrono::microseconds read_time{0};     // open and decode
  std::chrono::microseconds process_time{0};  // resample and colour
  std::chrono::microseconds write_time{0};    // encode, write and rename
};

[[nodiscard]] Result<ImageInfo> make_thumbnail(const ThumbnailOptions& options);

struct ConvertOptions {
  std::string input;   // one image file
  std::string output;  // target file; format from its extension unless `format` is set
  // jpg|png|tif|dpx|exr or empty. Chooses the writer (and the colour
  // encoding); the output path is used as given, whatever its extension.
  std::string format;
  // "" (full size), "WxH" (exactly), "W" (width, keep aspect), or "N%".
  std::string resize;
  ColourChoice colour;
  OutputPlace place = {};  // where the broker placed `output`; empty: its parent as written
  // The task's other inputs: the output never replaces one of them (nor `input`).
  std::vector<std::string> task_inputs = {};
  // Drawn on the finished picture (R,G,B float, display-referred for 8-bit
  // outputs) before it is written: a proxy's burn-ins (review_overlay.h).
  std::function<Result<void>(OIIO::ImageBuf& picture)> overlay = {};
};

// Converts one frame: the displayed picture (display window, pixel aspect),
// optionally resized; display-referred (sRGB) for jpg/png/tif/dpx, linear
// half-float for exr. Alpha is kept for png/tif/exr when the input has one;
// jpg and dpx (10-bit) hold the picture over black. JPEG quality is 90.
[[nodiscard]] Result<ImageInfo> convert_frame(const ConvertOptions& options);

// The displayed picture of one image for the movie encoder: display window and
// pixel aspect applied, R,G,B of the first subimage, converted to display
// (sRGB or OCIO), NaN/Inf removed, fitted inside fit_width x fit_height when
// those are non-zero (0 x 0: the displayed size; one zero side: the other side
// fixed), as 16-bit RGB (AV_PIX_FMT_RGB48).
// A contact sheet: a grid of labelled thumbnails of a sequence's frames (the
// caller picks them, e.g. every Nth), as one display-referred image.
struct ContactSheetOptions {
  std::vector<std::string> frames;     // one path per cell, in order
  std::vector<int64_t> frame_numbers;  // the labels ("1001"), one per frame
  std::string output;                  // .jpg, .png, .tif (format from the extension)
  uint32_t columns = 5;                // cells per row (fewer frames: one row of them)
  // Each cell is cell_width wide and as tall as the first readable frame's
  // displayed aspect makes it; every frame is fitted inside it, centred.
  uint32_t cell_width = 320;
  std::string title;  // drawn above the grid (e.g. the sequence's name); empty: none
  std::string font;   // a TrueType font; empty: DejaVu Sans (fonts-dejavu-core)
  ColourChoice colour;
  OutputPlace place = {};
};

// Layout: a gap of max(4, cell_width / 40) pixels around every cell; under
// each cell a black strip 1.5 font sizes tall holds its label, the font size
// being cell_width / 14 (11-48 px); a title row of two font sizes on top. The
// background is dark grey (0.08), a cell black behind its picture.
// Frames that do not exist are grey (0.25) cells labelled "1012 missing"; a frame
// that exists but cannot be read fails the sheet naming it. Labels are drawn
// with OpenImageIO's text rendering (FreeType) on a dark strip under each
// cell, so they read over any picture.
[[nodiscard]] Result<ImageInfo> make_contact_sheet(const ContactSheetOptions& options);

// The display transform linear pictures get (for a movie's metadata):
// "sRGB (OpenImageIO built-in)" or "OCIO /studio/config.ocio: display sRGB,
// view ACES 1.0 SDR-video"; an error when the config cannot be read.
[[nodiscard]] Result<std::string> display_transform_name(const ColourChoice& colour);

struct DisplayImage {
  uint32_t width = 0;
  uint32_t height = 0;
  std::vector<uint16_t> rgb;  // width * height * 3, row-major, top row first
};

[[nodiscard]] Result<DisplayImage> read_display_image(const std::string& path, uint32_t fit_width,
                                                      uint32_t fit_height,
                                                      const ColourChoice& colour);

// The movie encoder's fast path: R,G,B of the first subimage exactly as stored
// (half floats), with where they lie in the display window. Shown through
// srgb16_of_half() it is the same picture read_display_image gives at the
// displayed size (within one 16-bit step), without the float copies, the
// resample and the colour pass. The buffer is reused from call to call.
struct HalfFrame {
  uint32_t width = 0;  // the display window's size (square pixels)
  uint32_t height = 0;
  // Columns [x0, x1) and rows [y0, y1) of the display window hold data; the
  // rest is black (zero).
  uint32_t x0 = 0, x1 = 0, y0 = 0, y1 = 0;
  size_t stride = 0;          // pixels per row in `rgb`
  size_t offset = 0;          // values before display pixel (x0, y0) in `rgb`
  std::vector<uint16_t> rgb;  // half bits, R,G,B interleaved

  // Display row y (y0 <= y < y1), from its pixel x0.
  const uint16_t* row(uint32_t y) const {
    return rgb.data() + offset + size_t{y - y0} * stride * 3;
  }
};

// Reads `path` into `frame` when the fast path shows it as read_display_image
// would: R,G,B stored as half in scanlines (tiled files take the general
// path), square pixels, scene-linear (not tagged sRGB), OIIO's built-in
// linear -> sRGB (no `ocio_config`, no $OCIO) and no NaN or Inf (those are
// repaired from their neighbours, which the general path does).
// False when it does not apply or the file cannot be read: the caller then
// uses read_display_image, which reports any error. Never throws.
// With NonFinite::kCallerScans the frame is not scanned for NaN and Inf: the
// caller's own pass over every value must do it (the movie's converter looks
// each value up anyway; a separate scan read the frame from memory again).
enum class NonFinite { kRefuse, kCallerScans };
[[nodiscard]] bool read_half_frame(const std::string& path, const ColourChoice& colour,
                                   HalfFrame& frame, NonFinite non_finite = NonFinite::kRefuse);

// Display row y of `frame`, `width` columns wide, through srgb16_of_half()
// into three planes: black (0) where the display window has no data, data
// right of `width` cropped. False when a value looked up is NaN or Inf (the
// row is still written): with NonFinite::kCallerScans this is the scan. The
// fast path's one pass over a movie frame's values (transcode.cpp, yuv420.cpp).
[[nodiscard]] bool srgb16_row(const HalfFrame& frame, uint32_t y, uint32_t width, uint16_t* red,
                              uint16_t* green, uint16_t* blue);

// Linear -> sRGB display (OIIO's built-in transform), clamped to [0, 1], as
// 16-bit values for every half bit pattern: table[h]. NaN and -Inf give 0,
// +Inf 65535. Built once; thread-safe.
const uint16_t* srgb16_of_half();

}  // namespace farmhand::media
