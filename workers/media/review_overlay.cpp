#include "workers/media/review_overlay.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <ctime>

#include <OpenImageIO/imagebuf.h>
#include <OpenImageIO/imagebufalgo.h>
#include <fmt/format.h>

#include "common/review_codecs.h"

extern "C" {
#include <libavfilter/avfilter.h>
#include <libavfilter/buffersink.h>
#include <libavfilter/buffersrc.h>
#include <libavutil/opt.h>
}

namespace farmhand::media {

namespace {

constexpr std::array<const char*, 6> kPositions = {"top-left",    "top",    "top-right",
                                                   "bottom-left", "bottom", "bottom-right"};

struct GraphDeleter {
  void operator()(AVFilterGraph* graph) const { avfilter_graph_free(&graph); }
};

}  // namespace

std::string smpte_timecode(int64_t frame, double fps) {
  const int64_t base = std::max<int64_t>(1, std::llround(fps));
  const int64_t count = std::max<int64_t>(0, frame);
  const int64_t frames = count % base;
  const int64_t seconds = count / base;
  return fmt::format("{:02}:{:02}:{:02}:{:02}", seconds / 3600 % 24, seconds / 60 % 60,
                     seconds % 60, frames);
}

Result<std::string> expand_review_text(const std::string& text, const ReviewValues& values,
                                       int64_t frame) {
  std::string out;
  out.reserve(text.size() + 16);
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if ((c == '{' || c == '}') && i + 1 < text.size() && text[i + 1] == c) {
      out += c;  // {{ and }}
      ++i;
      continue;
    }
    if (c == '}') {
      return fail(ErrorCode::kInvalidArgument, "burn-in '" + text + "': a '}' without its '{'");
    }
    if (c != '{') {
      out += c;
      continue;
    }
    const size_t end = text.find('}', i);
    if (end == std::string::npos) {
      return fail(ErrorCode::kInvalidArgument, "burn-in '" + text + "': a '{' without its '}'");
    }
    const std::string name = text.substr(i + 1, end - i - 1);
    if (name == "frame") {
      out += std::to_string(frame);
    } else if (name == "timecode") {
      out += smpte_timecode(frame, values.fps);
    } else if (name == "first") {
      out += std::to_string(values.first);
    } else if (name == "last") {
      out += std::to_string(values.last);
    } else if (name == "fps") {
      out += fmt::format("{:g}", values.fps);
    } else if (auto it = values.values.find(name); it != values.values.end()) {
      out += it->second;
    } else {
      return fail(ErrorCode::kInvalidArgument,
                  "burn-in '" + text + "': no value for {" + name + "}");
    }
    i = end;
  }
  return out;
}

Result<std::vector<BurnIn>> burn_ins_of(const std::vector<std::string>& written) {
  std::vector<BurnIn> out;
  for (const std::string& one : written) {
    auto spec = common::parse_burn_in(one, out.size());
    if (!spec) return fail(spec.error());
    BurnIn burn;
    burn.text = spec->text;
    burn.position = spec->position;
    out.push_back(std::move(burn));
  }
  return out;
}

Result<void> check_burn_in_position(const std::string& position) {
  if (std::find(kPositions.begin(), kPositions.end(), position) != kPositions.end()) return {};
  return fail(ErrorCode::kInvalidArgument,
              "unknown burn-in position '" + position +
                  "' (top-left, top, top-right, bottom-left, bottom, bottom-right)");
}

struct BurnInPainter::Graph {
  std::unique_ptr<AVFilterGraph, GraphDeleter> graph;
  AVFilterContext* source = nullptr;
  AVFilterContext* sink = nullptr;
  std::vector<AVFilterContext*> texts;  // one drawtext per burn-in
  std::vector<BurnIn> burn_ins;
  FramePtr out;
};

BurnInPainter::BurnInPainter(std::unique_ptr<Graph> graph) : graph_(std::move(graph)) {}

BurnInPainter::~BurnInPainter() = default;

Result<std::unique_ptr<BurnInPainter>> BurnInPainter::open(const std::vector<BurnIn>& burn_ins,
                                                           const std::string& font, int width,
                                                           int height, AVPixelFormat format,
                                                           AVRational time_base) {
  auto failed = [](const std::string& what, int code) {
    return fail(ErrorCode::kInternal,
                "cannot set up the burn-ins: " + what + ": " + av_error_text(code));
  };
  auto g = std::make_unique<Graph>();
  g->burn_ins = burn_ins;
  g->graph.reset(avfilter_graph_alloc());
  g->out.reset(av_frame_alloc());
  if (!g->graph || !g->out) return fail(ErrorCode::kInternal, "out of memory for the burn-ins");
  g->graph->nb_threads = 1;  // the encoder has the cores
  const std::string source_args =
      fmt::format("video_size={}x{}:pix_fmt={}:time_base={}/{}:pixel_aspect=1/1", width, height,
                  static_cast<int>(format), time_base.num, time_base.den);
  int result = avfilter_graph_create_filter(&g->source, avfilter_get_by_name("buffer"), "in",
                                            source_args.c_str(), nullptr, g->graph.get());
  if (result < 0) return failed("buffer", result);
  result = avfilter_graph_create_filter(&g->sink, avfilter_get_by_name("buffersink"), "out",
                                        nullptr, nullptr, g->graph.get());
  if (result < 0) return failed("buffersink", result);
  const AVPixelFormat formats[] = {format, AV_PIX_FMT_NONE};
  result =
      av_opt_set_int_list(g->sink, "pix_fmts", formats, AV_PIX_FMT_NONE, AV_OPT_SEARCH_CHILDREN);
  if (result < 0) return failed("buffersink formats", result);
  const AVFilter* drawtext = avfilter_get_by_name("drawtext");
  if (!drawtext) return fail(ErrorCode::kInternal, "this libavfilter has no drawtext");
  AVFilterContext* previous = g->source;
  const int margin = std::max(4, height / 40);
  for (size_t i = 0; i < burn_ins.size(); ++i) {
    const BurnIn& burn = burn_ins[i];
    if (auto ok = check_burn_in_position(burn.position); !ok) return fail(ok.error());
    const int size = burn.size > 0 ? burn.size : std::max(10, height / 28);
    const bool top = burn.position.rfind("top", 0) == 0;
    const bool left = burn.position.find("left") != std::string::npos;
    const bool right = burn.position.find("right") != std::string::npos;
    const std::string x = left    ? std::to_string(margin)
                          : right ? fmt::format("w-tw-{}", margin)
                                  : "(w-tw)/2";
    const std::string y = top ? std::to_string(margin) : fmt::format("h-th-{}", margin);
    auto rgb = common::burn_in_rgb(burn.colour.empty() ? "white" : burn.colour);
    if (!rgb) return fail(rgb.error());
    const std::string colour_text =
        fmt::format("0x{:02x}{:02x}{:02x}", (*rgb)[0], (*rgb)[1], (*rgb)[2]);
    AVFilterContext* text =
        avfilter_graph_alloc_filter(g->graph.get(), drawtext, fmt::format("burn{}", i).c_str());
    if (!text) return fail(ErrorCode::kInternal, "out of memory for a burn-in");
    // Options set one by one: no text is ever parsed as filter syntax.
    const std::vector<std::pair<const char*, std::string>> options = {
        {"fontfile", font.empty() ? kReviewFont : font},
        {"text", " "},
        {"expansion", "none"},
        {"fontsize", std::to_string(size)},
        {"fontcolor", colour_text},
        {"box", "1"},
        {"boxcolor", "black@0.6"},
        {"boxborderw", std::to_string(std::max(2, size / 4))},
        {"x", x},
        {"y", y}};
    for (const auto& [name, value] : options) {
      result = av_opt_set(text->priv, name, value.c_str(), 0);
      if (result < 0) return failed(std::string("drawtext ") + name, result);
    }
    result = avfilter_init_str(text, nullptr);
    if (result < 0) {
      return fail(ErrorCode::kInvalidArgument, "cannot draw burn-ins with font " +
                                                   (font.empty() ? kReviewFont : font) + ": " +
                                                   av_error_text(result));
    }
    result = avfilter_link(previous, 0, text, 0);
    if (result < 0) return failed("link", result);
    g->texts.push_back(text);
    previous = text;
  }
  result = avfilter_link(previous, 0, g->sink, 0);
  if (result < 0) return failed("link", result);
  result = avfilter_graph_config(g->graph.get(), nullptr);
  if (result < 0) return failed("graph", result);
  return std::unique_ptr<BurnInPainter>(new BurnInPainter(std::move(g)));
}

Result<FramePtr> BurnInPainter::paint(FramePtr picture, const ReviewValues& values, int64_t frame) {
  Graph& g = *graph_;
  for (size_t i = 0; i < g.texts.size(); ++i) {
    Result<std::string> text = expand_review_text(g.burn_ins[i].text, values, frame);
    if (!text) return fail(text.error());
    // drawtext draws nothing for an empty text and refuses none: a space.
    const int result = av_opt_set(g.texts[i]->priv, "text", text->empty() ? " " : text->c_str(), 0);
    if (result < 0) {
      return fail(ErrorCode::kInternal, "cannot set a burn-in's text: " + av_error_text(result));
    }
  }
  const int64_t pts = picture->pts;
  int result = av_buffersrc_add_frame_flags(g.source, picture.get(), AV_BUFFERSRC_FLAG_KEEP_REF);
  if (result < 0) {
    return fail(ErrorCode::kInternal, "cannot draw the burn-ins: " + av_error_text(result));
  }
  result = av_buffersink_get_frame(g.sink, g.out.get());
  if (result < 0) {
    return fail(ErrorCode::kInternal, "cannot draw the burn-ins: " + av_error_text(result));
  }
  FramePtr painted(av_frame_alloc());
  if (!painted) return fail(ErrorCode::kInternal, "out of memory drawing the burn-ins");
  av_frame_move_ref(painted.get(), g.out.get());
  painted->pts = pts;
  return painted;
}

Result<void> draw_burn_ins(OIIO::ImageBuf& picture, const std::vector<BurnIn>& burn_ins,
                           const std::string& font, const ReviewValues& values, int64_t frame) {
  const int w = picture.spec().width;
  const int h = picture.spec().height;
  const std::string face = font.empty() ? kReviewFont : font;
  const int margin = std::max(4, h / 40);
  for (const BurnIn& burn : burn_ins) {
    if (auto ok = check_burn_in_position(burn.position); !ok) return fail(ok.error());
    Result<std::string> text = expand_review_text(burn.text, values, frame);
    if (!text) return fail(text.error());
    if (text->empty()) continue;
    const int size = burn.size > 0 ? burn.size : std::max(10, h / 28);
    const OIIO::ROI extent = OIIO::ImageBufAlgo::text_size(*text, size, face);
    if (!extent.defined()) {
      return fail(ErrorCode::kInvalidArgument, "cannot draw burn-ins with font " + face);
    }
    const int tw = extent.width();
    const int th = extent.height();
    const bool top = burn.position.rfind("top", 0) == 0;
    const bool left = burn.position.find("left") != std::string::npos;
    const bool right = burn.position.find("right") != std::string::npos;
    const int x = left ? margin : right ? w - tw - margin : (w - tw) / 2;
    const int y = top ? margin : h - th - margin;
    // The box, then the text on it (its baseline below the box's top by the ascent).
    const int border = std::max(2, size / 4);
    const OIIO::ROI box(std::max(0, x - border), std::min(w, x + tw + border),
                        std::max(0, y - border), std::min(h, y + th + border), 0, 1, 0, 3);
    float shade[3] = {0.4f, 0.4f, 0.4f};
    OIIO::ImageBufAlgo::mul(picture, picture, shade, box);
    auto rgb = common::burn_in_rgb(burn.colour.empty() ? "white" : burn.colour);
    if (!rgb) return fail(rgb.error());
    const float colour[3] = {static_cast<float>((*rgb)[0]) / 255.0f,
                             static_cast<float>((*rgb)[1]) / 255.0f,
                             static_cast<float>((*rgb)[2]) / 255.0f};
    if (!OIIO::ImageBufAlgo::render_text(picture, x - extent.xbegin, y - extent.ybegin, *text, size,
                                         face, {colour, 3})) {
      return fail(ErrorCode::kInvalidArgument,
                  "cannot draw burn-ins with font " + face + ": " + picture.geterror());
    }
  }
  return {};
}

Result<DisplayImage> make_slate(const SlateOptions& options, uint32_t width, uint32_t height) {
  const int w = static_cast<int>(width);
  const int h = static_cast<int>(height);
  OIIO::ImageBuf slate(OIIO::ImageSpec(w, h, 3, OIIO::TypeFloat));
  const float black[3] = {0.0f, 0.0f, 0.0f};
  OIIO::ImageBufAlgo::fill(slate, black);
  const std::string font = options.font.empty() ? kReviewFont : options.font;
  const float white[3] = {0.95f, 0.95f, 0.95f};
  const float grey[3] = {0.6f, 0.6f, 0.6f};
  const int margin = std::max(8, h / 16);
  const int title_size = std::max(12, h / 12);
  const int field_size = std::max(10, h / 26);
  auto draw = [&](int x, int y, const std::string& text, int size,
                  const float* colour) -> Result<void> {
    if (text.empty()) return {};
    if (!OIIO::ImageBufAlgo::render_text(slate, x, y, text, size, font, {colour, 3})) {
      return fail(ErrorCode::kInvalidArgument,
                  "cannot draw the slate with font " + font + ": " + slate.geterror());
    }
    return {};
  };
  int y = margin + title_size;
  if (auto ok = draw(margin, y, options.title, title_size, white); !ok) return fail(ok.error());
  y += title_size;
  const int label_width = field_size * 6;
  for (const auto& [label, value] : options.fields) {
    y += field_size * 3 / 2;
    if (y > h - margin) break;
    if (auto ok = draw(margin, y, label, field_size, grey); !ok) return fail(ok.error());
    if (auto ok = draw(margin + label_width, y, value, field_size, white); !ok) {
      return fail(ok.error());
    }
  }
  DisplayImage image;
  image.width = width;
  image.height = height;
  image.rgb.resize(static_cast<size_t>(width) * height * 3);
  std::vector<float> pixels(image.rgb.size());
  slate.get_pixels(OIIO::ROI(0, w, 0, h, 0, 1, 0, 3), OIIO::TypeFloat, pixels.data());
  for (size_t i = 0; i < pixels.size(); ++i) {
    image.rgb[i] = static_cast<uint16_t>(std::lround(std::clamp(pixels[i], 0.0f, 1.0f) * 65535.0f));
  }
  if (!options.poster.empty()) {
    // The poster in the right half, vertically centred, as the movie shows it.
    const uint32_t box_w = width / 2 - static_cast<uint32_t>(margin);
    const uint32_t box_h = height - 2 * static_cast<uint32_t>(margin);
    Result<DisplayImage> poster = read_display_image(options.poster, box_w, box_h, options.colour);
    if (!poster) return fail(poster.error());
    const uint32_t x0 = width / 2 + (box_w - std::min(box_w, poster->width)) / 2;
    const uint32_t y0 = (height - std::min(height, poster->height)) / 2;
    for (uint32_t py = 0; py < poster->height && y0 + py < height; ++py) {
      const size_t from = static_cast<size_t>(py) * poster->width * 3;
      const size_t to = (static_cast<size_t>(y0 + py) * width + x0) * 3;
      const size_t n = static_cast<size_t>(std::min(poster->width, width - x0)) * 3;
      std::copy_n(&poster->rgb[from], n, &image.rgb[to]);
    }
  }
  return image;
}

}  // namespace farmhand::media
