// Review overlays: burn-ins drawn on every frame of a review movie, and the
// slate frame before its first picture.
//
// Text comes from templates: {frame} (the frame's number), {timecode} (that
// number as SMPTE non-drop HH:MM:SS:FF at the movie's nominal rate: 23.976 is
// 24), {first}, {last}, {fps}, {date} (YYYY-MM-DD, the day the movie was made)
// and any value the job was given ({shot}, {version}, {artist}: the publish's
// meta, or `--meta k=v`); `{{` and `}}` are braces. An unknown name fails the
// movie before it starts ("burn-in '{shto}': no value for {shto}").
//
// Burn-ins are drawn by libavfilter's drawtext (FreeType) on the encoder's
// frames: white text on a half-transparent black box, at a corner or an edge
// centre (top-left, top, top-right, bottom-left, bottom, bottom-right), the
// font size a 28th of the movie's height unless given. The slate is an image
// drawn with OpenImageIO's text rendering: the title, one line per field and
// a poster frame of the sequence, at the movie's size.
// Fonts: DejaVu Sans from fonts-dejavu-core unless one is configured.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"
#include "workers/media/av_util.h"
#include "workers/media/image_ops.h"

extern "C" {
#include <libavutil/pixfmt.h>
#include <libavutil/rational.h>
}

namespace farmhand::media {

inline constexpr const char* kReviewFont = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

struct BurnIn {
  std::string text;  // a template
  std::string position =
      "bottom-left";             // top-left | top | top-right | bottom-left | bottom | bottom-right
  int size = 0;                  // font size in pixels; 0: the movie's height / 28
  std::string colour = "white";  // #RRGGBB or a name (common::burn_in_rgb)
};

// The values a template reads, besides the per-frame ones.
struct ReviewValues {
  std::map<std::string, std::string> values;  // shot, version, artist, date...
  int64_t first = 0;
  int64_t last = 0;
  double fps = 24.0;
};

// Burn-ins as written ("[POSITION=]TEXT", common/review_codecs.h), in order.
[[nodiscard]] Result<std::vector<BurnIn>> burn_ins_of(const std::vector<std::string>& written);

// Expands `text` for frame `frame`; errors name the template.
[[nodiscard]] Result<std::string> expand_review_text(const std::string& text,
                                                     const ReviewValues& values, int64_t frame);

// "01:00:41:17": `frame` frames at the nominal rate of `fps`, non-drop.
std::string smpte_timecode(int64_t frame, double fps);

// A position's name is one of the six; else "unknown burn-in position 'left'".
[[nodiscard]] Result<void> check_burn_in_position(const std::string& position);

// The burn-ins of one movie: a libavfilter graph of one drawtext per burn-in,
// fed the encoder's frames (any pixel format the encoder takes) in order.
class BurnInPainter {
 public:
  [[nodiscard]] static Result<std::unique_ptr<BurnInPainter>> open(
      const std::vector<BurnIn>& burn_ins, const std::string& font, int width, int height,
      AVPixelFormat format, AVRational time_base);
  ~BurnInPainter();
  BurnInPainter(const BurnInPainter&) = delete;
  BurnInPainter& operator=(const BurnInPainter&) = delete;

  // Draws the burn-ins, their text for frame `frame`, on `picture`.
  [[nodiscard]] Result<FramePtr> paint(FramePtr picture, const ReviewValues& values, int64_t frame);

 private:
  struct Graph;
  explicit BurnInPainter(std::unique_ptr<Graph> graph);
  std::unique_ptr<Graph> graph_;
};

// Draws burn-ins with OpenImageIO's text rendering on a display-referred
// picture (a proxy): the same layout as BurnInPainter's (margin a 40th of the
// height, size a 28th unless given, colour, a black box at 60%).
[[nodiscard]] Result<void> draw_burn_ins(OIIO::ImageBuf& picture,
                                         const std::vector<BurnIn>& burn_ins,
                                         const std::string& font, const ReviewValues& values,
                                         int64_t frame);

// A slate's fields, top to bottom ("shot", "sh010"), and its poster frame.
struct SlateOptions {
  std::string title;  // large, at the top (e.g. the shot); empty: none
  std::vector<std::pair<std::string, std::string>> fields;
  std::string poster;  // an image of the sequence shown beside the fields; empty: none
  std::string font;    // empty: kReviewFont
  ColourChoice colour;
};

// The slate at width x height, as the movie encoder's input (16-bit sRGB).
[[nodiscard]] Result<DisplayImage> make_slate(const SlateOptions& options, uint32_t width,
                                              uint32_t height);

}  // namespace farmhand::media
