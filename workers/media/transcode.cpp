// Transcode: decode pool, bounded reorder buffer, swscale and the libav encoder/muxer.
//
// Shape of one call:
//   1. The calling thread validates the options, finds the first readable frame
//      (stat only), opens the temporary output and starts the DecodePool.
//   2. It decodes the first readable frame itself: its displayed size, fitted
//      to max_width and rounded down to even, is the movie's size. Meanwhile
//      the pool's threads already read the next frames (at their displayed
//      size; with max_width they wait for the size, which sets the fit).
//   3. The pool's `decode_threads` threads claim frames in order, at most
//      `decode_ahead` past the next frame the encoder wants, and convert each
//      with swscale (one context per thread) to the encoder's pixel format.
//      The usual frame (half R,G,B, square pixels, no OCIO, no NaN/Inf, the
//      movie's size) takes the fast path: read_half_frame into a per-thread
//      buffer, then a 64K-entry half -> sRGB table straight into swscale's
//      planar input, no float copy or resample (decode and colour of a
//      2048x1080 frame went from ~190 to ~75 ms of CPU); for 4:2:0 codecs
//      the table and the BT.709 matrix run in one pass (yuv420.h, no
//      swscale). Other frames go through read_display_image. Output frames
//      come from a buffer pool.
//      Finished frames wait in slot `index % decode_ahead`, so memory holds at
//      most `decode_ahead` frames whatever the length of the sequence.
//   4. The calling thread takes the frames in order, applies the missing-frame
//      policy, encodes (libx264, prores_ks and dnxhd run their own threads),
//      muxes into the temporary file and renames it over the output once the
//      trailer is written.
//
// Colour: the DisplayImage is display-referred (sRGB-encoded, full range). It is
// converted with the BT.709 matrix to limited ("tv") range, and the stream is
// tagged BT.709 for primaries, transfer and matrix. The transfer tag is the
// review-movie convention (ShotGrid, RV, browsers, QuickTime): players show a
// bt709-tagged movie with the display's own curve, which is what the sRGB-encoded
// values were made for. Tagging iec61966-2-1 would describe the curve more
// exactly, but QuickTime and several review tools ignore it or fall back to
// untagged handling, so the same pixels would look different from player to
// player.
#include "workers/media/transcode.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <exception>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <unistd.h>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libavutil/opt.h>
#include <libavutil/rational.h>
#include <libswscale/swscale.h>
}

#include <OpenImageIO/imageio.h>

#include "common/review_codecs.h"
#include "workers/media/audio_track.h"
#include "workers/media/av_util.h"
#include "workers/media/image_ops.h"
#include "workers/media/movie_muxer.h"
#include "workers/media/yuv420.h"

namespace farmhand::media {
namespace {

// While a movie's frames are read in parallel, a whole file per decode
// thread, OpenEXR's own worker threads only hand each file's blocks back and
// forth: reading each file on its caller's thread (OIIO's exr_threads 1) saved
// 0.7 % of an H.264 movie's CPU. The setting is process-wide: farmhand-media
// serves one request at a time, and the old value is back once the pool is
// gone (thumbnails of one big frame still use OpenEXR's threads).
class SerialExrReads {
 public:
  explicit SerialExrReads(bool parallel_frames) : active_(parallel_frames) {
    if (!active_) return;
    OIIO::getattribute("exr_threads", previous_);
    OIIO::attribute("exr_threads", 1);
  }

  ~SerialExrReads() {
    if (active_) OIIO::attribute("exr_threads", previous_);
  }

  SerialExrReads(const SerialExrReads&) = delete;
  SerialExrReads& operator=(const SerialExrReads&) = delete;

 private:
  bool active_;
  int previous_ = 0;
};

struct SwsDeleter {
  void operator()(SwsContext* context) const { sws_freeContext(context); }
};

using SwsPtr = std::unique_ptr<SwsContext, SwsDeleter>;

// What each `codec` option maps to in libavcodec (common/review_codecs.h
// lists the codecs, their containers and crf ranges).
struct CodecSpec {
  const char* encoder;
  AVPixelFormat pixel_format;
};

Result<CodecSpec> codec_spec(const std::string& codec) {
  if (codec == "h264") return CodecSpec{"libx264", AV_PIX_FMT_YUV420P};
  if (codec == "h265") return CodecSpec{"libx265", AV_PIX_FMT_YUV420P};
  if (codec == "vp9") return CodecSpec{"libvpx-vp9", AV_PIX_FMT_YUV420P};
  if (codec == "av1") {
    // SVT-AV1 where the build has it (Debian 12's does), else libaom.
    return CodecSpec{avcodec_find_encoder_by_name("libsvtav1") ? "libsvtav1" : "libaom-av1",
                     AV_PIX_FMT_YUV420P};
  }
  if (codec == "prores") return CodecSpec{"prores_ks", AV_PIX_FMT_YUV422P10LE};
  if (codec == "dnxhr") return CodecSpec{"dnxhd", AV_PIX_FMT_YUV422P};
  return fail(common::review_codec(codec).error());
}

bool is_x264_preset(const std::string& preset) {
  for (const char* known : {"ultrafast", "superfast", "veryfast", "faster", "fast", "medium",
                            "slow", "slower", "veryslow", "placebo"}) {
    if (preset == known) return true;
  }
  return false;
}

// yuv420p subsamples chroma 2x2, so both dimensions must be even.
uint32_t even_down(uint32_t value) {
  return std::max<uint32_t>(2, value & ~1u);
}

// A missing frame is an empty path or a file that does not exist; anything
// else (unreadable, corrupt) is an error of its own, reported by the decoder.
bool frame_missing(const std::string& path) {
  if (path.empty()) return true;
  std::error_code error;  // ENOENT and ENOTDIR are not_found; other errors are the decoder's
  return std::filesystem::status(path, error).type() == std::filesystem::file_type::not_found;
}

// read_display_image's reason names the file in the usual case; make sure it does.
Error read_error(const std::string& path, Error error) {
  if (error.reason.find(path) == std::string::npos) {
    error.reason = "cannot read " + path + ": " + error.reason;
  }
  return error;
}

// Within the rounding the converter absorbs (crop or stretch by up to 2 pixels).
bool near_size(uint32_t image_width, uint32_t image_height, uint32_t width, uint32_t height) {
  return std::abs(int64_t{width} - image_width) <= 2 &&
         std::abs(int64_t{height} - image_height) <= 2;
}

bool near_size(const DisplayImage& image, uint32_t width, uint32_t height) {
  return near_size(image.width, image.height, width, height);
}

// The fast path crops a HalfFrame by up to 2 pixels, never stretches it.
bool fast_size(const HalfFrame& image, uint32_t width, uint32_t height) {
  return image.width >= width && image.height >= height && image.width - width <= 2 &&
         image.height - height <= 2;
}

void tag_bt709(AVFrame* frame) {
  frame->color_primaries = AVCOL_PRI_BT709;
  frame->color_trc = AVCOL_TRC_BT709;
  frame->colorspace = AVCOL_SPC_BT709;
  frame->color_range = AVCOL_RANGE_MPEG;
}

Result<FramePtr> allocate_frame(uint32_t width, uint32_t height, AVPixelFormat format) {
  FramePtr frame(av_frame_alloc());
  if (!frame) return fail(ErrorCode::kInternal, "out of memory allocating a video frame");
  frame->format = format;
  frame->width = static_cast<int>(width);
  frame->height = static_cast<int>(height);
  tag_bt709(frame.get());
  const int result = av_frame_get_buffer(frame.get(), 0);
  if (result < 0) {
    return fail(ErrorCode::kInternal, "cannot allocate a " + std::to_string(width) + "x" +
                                          std::to_string(height) +
                                          " video frame: " + av_error_text(result));
  }
  return frame;
}

Result<FramePtr> black_frame(uint32_t width, uint32_t height, AVPixelFormat format) {
  Result<FramePtr> frame = allocate_frame(width, height, format);
  if (!frame) return frame;
  uint8_t* data[4] = {};
  ptrdiff_t linesize[4] = {};
  for (int plane = 0; plane < 4; ++plane) {
    data[plane] = (*frame)->data[plane];
    linesize[plane] = (*frame)->linesize[plane];
  }
  const int result = av_image_fill_black(data, linesize, format, AVCOL_RANGE_MPEG,
                                         static_cast<int>(width), static_cast<int>(height));
  if (result < 0) return fail(ErrorCode::kInternal, "cannot fill a black frame");
  return frame;
}

// Video frames of the movie's size and format, their buffers recycled through
// an AVBufferPool: a fresh multi-megabyte allocation per frame costs page
// faults (zeroing by the kernel) in every frame. A buffer returns to the pool
// when the last reference to it (encoder, hold-frame copy) is dropped, so the
// pool holds no more buffers than there are frames in flight. Thread-safe.
class FramePool {
 public:
  FramePool(uint32_t width, uint32_t height, AVPixelFormat format)
      : width_(width), height_(height), format_(format) {
    const int size =
        av_image_get_buffer_size(format, static_cast<int>(width), static_cast<int>(height), kAlign);
    if (size > 0) pool_ = av_buffer_pool_init(static_cast<size_t>(size) + kPadding, nullptr);
  }

  ~FramePool() { av_buffer_pool_uninit(&pool_); }  // frees once every buffer is back

  FramePool(const FramePool&) = delete;
  FramePool& operator=(const FramePool&) = delete;

  Result<FramePtr> get() {
    if (!pool_) return allocate_frame(width_, height_, format_);
    FramePtr frame(av_frame_alloc());
    if (!frame) return fail(ErrorCode::kInternal, "out of memory allocating a video frame");
    frame->format = format_;
    frame->width = static_cast<int>(width_);
    frame->height = static_cast<int>(height_);
    tag_bt709(frame.get());
    frame->buf[0] = av_buffer_pool_get(pool_);
    if (!frame->buf[0]) return fail(ErrorCode::kInternal, "out of memory allocating a video frame");
    if (av_image_fill_arrays(frame->data, frame->linesize, frame->buf[0]->data, format_,
                             frame->width, frame->height, kAlign) < 0) {
      return fail(ErrorCode::kInternal, "cannot lay out a video frame");
    }
    return frame;
  }

 private:
  static constexpr int kAlign = 64;       // SIMD loads in swscale and the encoders
  static constexpr size_t kPadding = 64;  // readers may overrun a row end by a vector

  uint32_t width_;
  uint32_t height_;
  AVPixelFormat format_;
  AVBufferPool* pool_ = nullptr;
};

// Converts DisplayImages (RGB48, sRGB-encoded, full range) to the encoder's
// format and size: BT.709 matrix, limited range. One per thread: a SwsContext
// must not be shared.
class Converter {
 public:
  Converter(uint32_t width, uint32_t height, AVPixelFormat format, FramePool& frames)
      : width_(width), height_(height), format_(format), frames_(frames) {}

  // A HalfFrame (read_half_frame, NonFinite::kCallerScans) whose displayed
  // size is the movie's or up to 2 pixels larger (cropped): each value goes
  // through the linear -> sRGB table straight into the planes swscale reads
  // (for 4:2:0, through Yuv420Writer into the frame). No float copy, no
  // resample. A null frame when a value shown is NaN or Inf: the caller then
  // takes the general path, which repairs them.
  Result<FramePtr> convert(const HalfFrame& image) {
    if (format_ == AV_PIX_FMT_YUV420P && width_ % 2 == 0 && height_ % 2 == 0) {
      Result<FramePtr> frame = frames_.get();
      if (!frame) return frame;
      AVFrame* out = frame->get();
      if (!yuv420_.write(image, width_, height_,
                         Yuv420Planes{out->data[0], out->data[1], out->data[2], out->linesize[0],
                                      out->linesize[1], out->linesize[2]})) {
        return FramePtr();
      }
      return frame;
    }
    if (!context_ || context_width_ != width_ || context_height_ != height_) {
      Result<void> made = make_context(width_, height_);
      if (!made) return fail(made.error());
    }
    Result<FramePtr> frame = frames_.get();
    if (!frame) return frame;
    const Strip strip = make_strip(width_);
    uint16_t* green = strip.green;
    uint16_t* blue = strip.blue;
    uint16_t* red = strip.red;
    const uint8_t* const* planes = strip.planes;
    const int* strides = strip.strides;
    for (uint32_t top = 0; top < height_; top += kStripRows) {
      const uint32_t rows = std::min(kStripRows, height_ - top);
      for (uint32_t row = 0; row < rows; ++row) {
        const size_t at = size_t{row} * width_;
        if (!srgb16_row(image, top + row, width_, red + at, green + at, blue + at)) {
          return FramePtr();
        }
      }
      sws_scale(context_.get(), planes, strides, static_cast<int>(top), static_cast<int>(rows),
                (*frame)->data, (*frame)->linesize);
    }
    return frame;
  }

  Result<FramePtr> convert(const DisplayImage& image) {
    const int64_t dw = int64_t{width_} - image.width;
    const int64_t dh = int64_t{height_} - image.height;
    // Up to 2 pixels of difference is rounding (odd sizes, the fit's
    // rounding): crop when the image is larger, stretch when it is smaller.
    // Anything else (a frame shaped differently from the first) is
    // letterboxed, not distorted.
    const DisplayImage* source = &image;
    DisplayImage canvas;
    uint32_t source_width = image.width;
    uint32_t source_height = image.height;
    if (dw <= 0 && dh <= 0 && dw >= -2 && dh >= -2) {
      source_width = width_;
      source_height = height_;
    } else if (std::abs(dw) > 2 || std::abs(dh) > 2) {
      canvas = letterbox(image);
      source = &canvas;
      source_width = width_;
      source_height = height_;
    }
    if (!context_ || source_width != context_width_ || source_height != context_height_) {
      Result<void> made = make_context(source_width, source_height);
      if (!made) return fail(made.error());
    }
    Result<FramePtr> frame = frames_.get();
    if (!frame) return frame;
    // swscale 6 has no fast path for packed RGB48 input: its C reader looks
    // up the pixel format per pixel, ~5x slower than planar GBRP16 with the
    // same values and coefficients. So the rows are split into planes a
    // strip at a time (a cache-sized buffer) and fed to swscale as slices.
    const Strip strip = make_strip(source_width);
    uint16_t* green = strip.green;
    uint16_t* blue = strip.blue;
    uint16_t* red = strip.red;
    const uint8_t* const* planes = strip.planes;
    const int* strides = strip.strides;
    for (uint32_t top = 0; top < source_height; top += kStripRows) {
      const uint32_t rows = std::min(kStripRows, source_height - top);
      for (uint32_t row = 0; row < rows; ++row) {
        const uint16_t* from = source->rgb.data() + size_t{top + row} * source->width * 3;
        const size_t at = size_t{row} * source_width;
        for (uint32_t x = 0; x < source_width; ++x) {
          red[at + x] = from[3 * x];
          green[at + x] = from[3 * x + 1];
          blue[at + x] = from[3 * x + 2];
        }
      }
      sws_scale(context_.get(), planes, strides, static_cast<int>(top), static_cast<int>(rows),
                (*frame)->data, (*frame)->linesize);
    }
    return frame;
  }

 private:
  Result<void> make_context(uint32_t source_width, uint32_t source_height) {
    // Bicubic only matters when stretching by a pixel or two; ACCURATE_RND
    // keeps the 16-bit -> 8/10-bit rounding unbiased.
    context_.reset(sws_getContext(static_cast<int>(source_width), static_cast<int>(source_height),
                                  AV_PIX_FMT_GBRP16, static_cast<int>(width_),
                                  static_cast<int>(height_), format_,
                                  SWS_BICUBIC | SWS_ACCURATE_RND, nullptr, nullptr, nullptr));
    if (!context_) {
      return fail(ErrorCode::kInternal,
                  "cannot convert gbrp16 to " + std::string(av_get_pix_fmt_name(format_)));
    }
    const int* bt709 = sws_getCoefficients(SWS_CS_ITU709);
    // Source full range (RGB), destination limited range ("tv"), BT.709
    // matrix; brightness 0, contrast and saturation 1.0 in 16.16 fixed point.
    if (sws_setColorspaceDetails(context_.get(), bt709, 1, bt709, 0, 0, 1 << 16, 1 << 16) < 0) {
      return fail(ErrorCode::kInternal,
                  "cannot set bt.709 conversion to " + std::string(av_get_pix_fmt_name(format_)));
    }
    context_width_ = source_width;
    context_height_ = source_height;
    return {};
  }

  // The image centred on a black canvas of the movie's size (cropped where larger).
  DisplayImage letterbox(const DisplayImage& image) const {
    DisplayImage canvas;
    canvas.width = width_;
    canvas.height = height_;
    canvas.rgb.assign(size_t{width_} * height_ * 3, 0);
    const uint32_t copy_width = std::min(width_, image.width);
    const uint32_t copy_height = std::min(height_, image.height);
    const uint32_t to_x = (width_ - copy_width) / 2;
    const uint32_t to_y = (height_ - copy_height) / 2;
    const uint32_t from_x = (image.width - copy_width) / 2;
    const uint32_t from_y = (image.height - copy_height) / 2;
    for (uint32_t y = 0; y < copy_height; ++y) {
      const uint16_t* from = image.rgb.data() + (size_t{from_y + y} * image.width + from_x) * 3;
      uint16_t* to = canvas.rgb.data() + (size_t{to_y + y} * width_ + to_x) * 3;
      std::copy(from, from + size_t{copy_width} * 3, to);
    }
    return canvas;
  }

  static constexpr uint32_t kStripRows = 32;

  // strip_ as swscale's GBRP16 input: G, B and R planes of kStripRows rows of `width`.
  struct Strip {
    uint16_t* green;
    uint16_t* blue;
    uint16_t* red;
    const uint8_t* planes[4];
    int strides[4];
  };

  Strip make_strip(uint32_t width) {
    const size_t plane = size_t{width} * kStripRows;
    strip_.resize(plane * 3);
    Strip out{};
    out.green = strip_.data();
    out.blue = out.green + plane;
    out.red = out.blue + plane;
    out.planes[0] = reinterpret_cast<const uint8_t*>(out.green);
    out.planes[1] = reinterpret_cast<const uint8_t*>(out.blue);
    out.planes[2] = reinterpret_cast<const uint8_t*>(out.red);
    const int stride = static_cast<int>(width * sizeof(uint16_t));
    for (int i = 0; i < 3; ++i) out.strides[i] = stride;
    return out;
  }

  uint32_t width_;
  uint32_t height_;
  AVPixelFormat format_;
  FramePool& frames_;
  Yuv420Writer yuv420_;  // the fast path's 4:2:0 (no swscale)
  SwsPtr context_;
  std::vector<uint16_t> strip_;  // G, B and R planes of kStripRows rows
  uint32_t context_width_ = 0;
  uint32_t context_height_ = 0;
};

// Serializes calls of the `reading` callback (decode threads and the calling thread).
class ReadingNotifier {
 public:
  explicit ReadingNotifier(const std::function<void(const std::string&)>& reading)
      : reading_(reading) {}

  void notify(const std::string& path) {
    if (!reading_) return;
    std::lock_guard<std::mutex> lock(mutex_);
    reading_(path);
  }

 private:
  const std::function<void(const std::string&)>& reading_;
  std::mutex mutex_;
};

// One frame on its way to the encoder.
struct Slot {
  // kFirst: the first readable frame, which the calling thread decodes itself.
  enum class State { kEmpty, kFrame, kMissing, kError, kFirst };
  State state = State::kEmpty;
  FramePtr frame;
  Error error;
};

// The movie's size and how frames are read to reach it.
struct Geometry {
  uint32_t width = 0;
  uint32_t height = 0;
  // Read frames fitted inside width x height. Otherwise they are read at their
  // displayed size, which is the movie's give or take an odd pixel: asking
  // read_display_image for a no-op fit would cost a resample.
  bool fit = false;
};

// Decode threads and the bounded reorder buffer between them and the encoder.
//
// Frames are claimed in order, frame i only while i < taken + ahead, and wait
// in slot i % ahead until take(i); so at most `ahead` frames are decoded or
// decoding ahead of the encoder. The first readable frame is the calling
// thread's (it sets the movie's size): the pool skips it but counts it in the
// window. Until set_geometry(), threads read frames at their displayed size
// (or, with max_width, wait) and hold them; converting needs the size.
class DecodePool {
 public:
  DecodePool(const TranscodeOptions& options, const ColourChoice& colour, size_t first,
             AVPixelFormat format, ReadingNotifier& reading)
      : options_(options),
        colour_(colour),
        first_(first),
        format_(format),
        reading_(reading),
        total_(options.frames.size()),
        ahead_(static_cast<size_t>(options.decode_ahead)),
        slots_(ahead_) {}

  ~DecodePool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    slot_free_.notify_all();
    geometry_set_.notify_all();
    for (std::thread& thread : threads_) thread.join();
  }

  DecodePool(const DecodePool&) = delete;
  DecodePool& operator=(const DecodePool&) = delete;

  // May throw std::system_error (thread creation); transcode() catches it.
  void start(size_t thread_count) {
    for (size_t i = 0; i < thread_count; ++i) threads_.emplace_back([this] { run(); });
  }

  void set_geometry(const Geometry& geometry) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      frames_.emplace(geometry.width, geometry.height, format_);
      geometry_ = geometry;
    }
    geometry_set_.notify_all();
  }

  // The movie's frame buffers; after set_geometry().
  FramePool& frames() { return *frames_; }

  // Blocks until frame `index`, which must be the next in order, is ready.
  Slot take(size_t index) {
    Slot slot;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      if (index == first_) {
        slot.state = Slot::State::kFirst;
      } else {
        Slot& waiting = slots_[index % ahead_];
        slot_ready_.wait(lock, [&] { return waiting.state != Slot::State::kEmpty; });
        slot = std::move(waiting);
        waiting = Slot();
      }
      taken_ = index + 1;
    }
    slot_free_.notify_all();
    return slot;
  }

  size_t peak_ahead() {
    std::lock_guard<std::mutex> lock(mutex_);
    return peak_ahead_;
  }

  // Time the decode threads spent reading and converting frames, summed.
  std::chrono::microseconds decode_time() {
    std::lock_guard<std::mutex> lock(mutex_);
    return decode_time_;
  }

  size_t thread_count() const { return threads_.size(); }

 private:
  void run() {
    std::optional<Converter> converter;
    HalfFrame half;  // this thread's read buffer, reused frame to frame
    for (;;) {
      size_t index = 0;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        slot_free_.wait(lock, [&] {
          return stop_ || next_unclaimed() >= total_ || next_unclaimed() < taken_ + ahead_;
        });
        if (stop_ || next_unclaimed() >= total_) return;
        index = next_unclaimed();
        next_claim_ = index + 1;
        // The frames from taken_ up to this one, and the calling thread's
        // first frame if it lies beyond them.
        const size_t ahead = next_claim_ - taken_ + (first_ >= next_claim_ ? 1 : 0);
        peak_ahead_ = std::max(peak_ahead_, ahead);
      }
      const auto began = std::chrono::steady_clock::now();
      std::optional<Slot> slot = decode(index, converter, half);
      if (!slot) return;  // stopped
      const auto took = std::chrono::steady_clock::now() - began;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        slots_[index % ahead_] = std::move(*slot);
        decode_time_ += std::chrono::duration_cast<std::chrono::microseconds>(took);
      }
      slot_ready_.notify_all();
    }
  }

  // The next frame to decode: the first readable one is the calling thread's.
  // Requires mutex_.
  size_t next_unclaimed() const { return next_claim_ == first_ ? next_claim_ + 1 : next_claim_; }

  // Blocks until the size is known; nullopt if the pool is stopping.
  std::optional<Geometry> wait_geometry() {
    std::unique_lock<std::mutex> lock(mutex_);
    geometry_set_.wait(lock, [&] { return stop_ || geometry_.has_value(); });
    if (stop_) return std::nullopt;
    return geometry_;
  }

  static Slot error_slot(Error error) {
    Slot slot;
    slot.state = Slot::State::kError;
    slot.error = std::move(error);
    return slot;
  }

  std::optional<Slot> decode(size_t index, std::optional<Converter>& converter, HalfFrame& half) {
    const std::string& path = options_.frames[index];
    try {
      if (frame_missing(path)) {
        Slot slot;
        slot.state = Slot::State::kMissing;
        return slot;
      }
      // With max_width the fit depends on the first frame's size; without it
      // the displayed size is what every frame is read at, so start at once.
      std::optional<Geometry> geometry;
      if (options_.max_width != 0) {
        geometry = wait_geometry();
        if (!geometry) return std::nullopt;
      }
      const bool fit = geometry && geometry->fit;
      reading_.notify(path);
      if (!fit && read_half_frame(path, colour_, half, NonFinite::kCallerScans)) {
        if (!geometry) {
          geometry = wait_geometry();
          if (!geometry) return std::nullopt;
        }
        if (!geometry->fit && fast_size(half, geometry->width, geometry->height)) {
          if (!converter) converter.emplace(geometry->width, geometry->height, format_, frames());
          Result<FramePtr> frame = converter->convert(half);
          if (!frame) return error_slot(std::move(frame.error()));
          if (*frame) {
            Slot slot;
            slot.state = Slot::State::kFrame;
            slot.frame = std::move(*frame);
            return slot;
          }
        }
        // Shaped differently from the first frame, or holding NaN or Inf:
        // the general path.
        reading_.notify(path);
      }
      Result<DisplayImage> image =
          read_display_image(path, fit ? geometry->width : 0, fit ? geometry->height : 0, colour_);
      if (!image) return error_slot(read_error(path, std::move(image.error())));
      if (!geometry) {
        geometry = wait_geometry();
        if (!geometry) return std::nullopt;
      }
      // A frame whose displayed size differs from the first one's is read
      // again, fitted.
      if (!near_size(*image, geometry->width, geometry->height)) {
        reading_.notify(path);
        image = read_display_image(path, geometry->width, geometry->height, colour_);
        if (!image) return error_slot(read_error(path, std::move(image.error())));
      }
      if (!converter) converter.emplace(geometry->width, geometry->height, format_, frames());
      Result<FramePtr> frame = converter->convert(*image);
      if (!frame) return error_slot(std::move(frame.error()));
      Slot slot;
      slot.state = Slot::State::kFrame;
      slot.frame = std::move(*frame);
      return slot;
    } catch (const std::exception& e) {
      return error_slot(Error{ErrorCode::kInternal, "decoding " + path + " failed: " + e.what()});
    } catch (...) {
      return error_slot(Error{ErrorCode::kInternal, "decoding " + path + " failed"});
    }
  }

  const TranscodeOptions& options_;
  const ColourChoice colour_;
  const size_t first_;
  const AVPixelFormat format_;
  ReadingNotifier& reading_;
  const size_t total_;
  const size_t ahead_;

  std::mutex mutex_;
  std::condition_variable slot_ready_;    // the encoder waits for its next frame
  std::condition_variable slot_free_;     // decode threads wait for room ahead
  std::condition_variable geometry_set_;  // decode threads wait for the movie's size
  std::optional<Geometry> geometry_;
  std::optional<FramePool> frames_;
  std::vector<Slot> slots_;
  size_t next_claim_ = 0;
  size_t taken_ = 0;
  size_t peak_ahead_ = 0;
  std::chrono::microseconds decode_time_{0};
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

// The output container, written to a temporary file in the output's directory
// and renamed by commit(); destroyed uncommitted, it closes and removes the
// temporary file (output_file.h).
Result<void> validate(const TranscodeOptions& options) {
  if (options.frames.empty()) return fail(ErrorCode::kInvalidArgument, "no frames to encode");
  if (!options.frame_numbers.empty() && options.frame_numbers.size() != options.frames.size()) {
    return fail(ErrorCode::kInvalidArgument,
                "frame_numbers has " + std::to_string(options.frame_numbers.size()) +
                    " entries for " + std::to_string(options.frames.size()) + " frames");
  }
  const std::string ext = lower_extension(options.output);
  if (ext != ".mov" && ext != ".mp4" && ext != ".webm") {
    return fail(ErrorCode::kInvalidArgument,
                "output " + options.output + " must end in .mov, .mp4 or .webm");
  }
  Result<common::ReviewCodec> codec = common::review_codec(options.codec);
  if (!codec) return fail(codec.error());
  if (auto fits = common::check_review_container(*codec, ext.substr(1), options.output); !fits) {
    return fail(fits.error());
  }
  if (!(options.fps > 0 && options.fps <= 1000)) {
    return fail(ErrorCode::kInvalidArgument,
                "frame rate " + std::to_string(options.fps) + " out of range (0, 1000]");
  }
  if (codec->crf_max != 0 && (options.crf < -1 || options.crf > codec->crf_max)) {
    return fail(
        ErrorCode::kInvalidArgument,
        "crf " + std::to_string(options.crf) + " out of range 0-" + std::to_string(codec->crf_max));
  }
  if ((options.codec == "h264" || options.codec == "h265") && !is_x264_preset(options.preset)) {
    return fail(ErrorCode::kInvalidArgument, "unknown x264/x265 preset " + options.preset);
  }
  if (options.gop < 1) return fail(ErrorCode::kInvalidArgument, "gop must be at least 1");
  for (const BurnIn& burn : options.burn_ins) {
    if (auto ok = check_burn_in_position(burn.position); !ok) return fail(ok.error());
    ReviewValues probe;
    probe.values = options.values;
    probe.values.emplace("date", "");
    if (auto ok = expand_review_text(burn.text, probe, 0); !ok) return fail(ok.error());
  }
  if (options.decode_ahead < 1) {
    return fail(ErrorCode::kInvalidArgument, "decode_ahead must be at least 1");
  }
  if (options.decode_threads < 0) {
    return fail(ErrorCode::kInvalidArgument, "decode_threads must not be negative");
  }
  return {};
}

std::string frame_label(const TranscodeOptions& options, size_t index) {
  return std::to_string(options.frame_numbers.empty() ? static_cast<int64_t>(index) + 1
                                                      : options.frame_numbers[index]);
}

Result<CodecContextPtr> open_encoder(const TranscodeOptions& options, const CodecSpec& spec,
                                     uint32_t width, uint32_t height, AVRational rate,
                                     bool global_header) {
  const AVCodec* codec = avcodec_find_encoder_by_name(spec.encoder);
  if (!codec)
    return fail(ErrorCode::kInternal, std::string("encoder ") + spec.encoder + " not available");
  CodecContextPtr context(avcodec_alloc_context3(codec));
  if (!context) return fail(ErrorCode::kInternal, "out of memory allocating an encoder");
  context->width = static_cast<int>(width);
  context->height = static_cast<int>(height);
  context->pix_fmt = spec.pixel_format;
  context->sample_aspect_ratio = AVRational{1, 1};
  context->time_base = av_inv_q(rate);
  context->framerate = rate;
  context->gop_size = options.gop;
  context->max_b_frames = 0;
  context->color_primaries = AVCOL_PRI_BT709;
  context->color_trc = AVCOL_TRC_BT709;
  context->colorspace = AVCOL_SPC_BT709;
  context->color_range = AVCOL_RANGE_MPEG;
  context->thread_count = 0;  // the encoder picks (libx264: its own frame threads)
  if (global_header) context->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;

  std::vector<std::pair<const char*, std::string>> private_options;
  Result<common::ReviewCodec> table = common::review_codec(options.codec);
  const std::string crf =
      std::to_string(options.crf >= 0 ? options.crf : (table ? table->crf_default : 0));
  if (options.codec == "h264") {
    private_options = {{"preset", options.preset}, {"profile", "high"}, {"crf", crf}};
  } else if (options.codec == "h265") {
    // The colour tags go into the stream's VUI as well (players read them there).
    private_options = {{"preset", options.preset},
                       {"crf", crf},
                       {"x265-params",
                        "log-level=error:colorprim=bt709:transfer=bt709:"
                        "colormatrix=bt709:range=limited"}};
  } else if (options.codec == "vp9") {
    // Constant quality (crf with no bit-rate cap); "good" at cpu-used 5 with
    // row threads: a review encode, not an archive one.
    context->bit_rate = 0;
    private_options = {{"crf", crf}, {"deadline", "good"}, {"cpu-used", "5"}, {"row-mt", "1"}};
  } else if (options.codec == "av1") {
    if (std::string(spec.encoder) == "libsvtav1") {
      private_options = {{"crf", crf}, {"preset", "10"}};
    } else {
      private_options = {{"crf", crf}, {"cpu-used", "8"}, {"row-mt", "1"}, {"usage", "realtime"}};
    }
  } else if (options.codec == "prores") {
    private_options = {{"profile", "hq"}};  // prores_ks profile 3: 422 HQ
  } else {
    private_options = {{"profile", "dnxhr_hq"}};
  }
  for (const auto& [name, value] : private_options) {
    const int result = av_opt_set(context->priv_data, name, value.c_str(), 0);
    if (result < 0) {
      return fail(ErrorCode::kInternal, std::string("cannot set ") + spec.encoder + " option " +
                                            name + "=" + value + ": " + av_error_text(result));
    }
  }
  const int result = avcodec_open2(context.get(), codec, nullptr);
  if (result < 0) {
    return fail(ErrorCode::kInternal, std::string("cannot open encoder ") + spec.encoder + " at " +
                                          std::to_string(width) + "x" + std::to_string(height) +
                                          ": " + av_error_text(result));
  }
  return context;
}

// Sends one frame (nullptr: flush) and writes every packet the encoder has ready.
Result<void> encode(AVCodecContext* encoder, const char* encoder_name, AVFrame* frame, Muxer& muxer,
                    AVStream* stream, AVPacket* packet) {
  int result = avcodec_send_frame(encoder, frame);
  if (result < 0) {
    return fail(ErrorCode::kInternal,
                std::string("encoder ") + encoder_name + " failed: " + av_error_text(result));
  }
  for (;;) {
    result = avcodec_receive_packet(encoder, packet);
    if (result == AVERROR(EAGAIN) || result == AVERROR_EOF) return {};
    if (result < 0) {
      return fail(ErrorCode::kInternal,
                  std::string("encoder ") + encoder_name + " failed: " + av_error_text(result));
    }
    // Every frame lasts one tick of 1/fps; without a duration the muxer
    // would end the movie at the start of its last frame.
    if (packet->duration == 0) packet->duration = 1;
    av_packet_rescale_ts(packet, encoder->time_base, stream->time_base);
    packet->stream_index = stream->index;
    result = av_interleaved_write_frame(muxer.context(), packet);
    if (result < 0) return muxer.write_error(result);
  }
}

Result<TranscodeReport> run_transcode(const TranscodeOptions& options,
                                      const std::function<void(uint64_t, uint64_t)>& progress,
                                      const std::function<void(const std::string&)>& reading) {
  if (Result<void> valid = validate(options); !valid) return fail(valid.error());
  Result<CodecSpec> spec = codec_spec(options.codec);
  if (!spec) return fail(spec.error());
  const AVRational rate = frame_rate(options.fps);
  ReadingNotifier notifier(reading);

  // The first readable frame sets the movie's size.
  size_t first = options.frames.size();
  for (size_t i = 0; i < options.frames.size(); ++i) {
    if (!frame_missing(options.frames[i])) {
      first = i;
      break;
    }
    if (options.missing == MissingFramePolicy::kFail) {
      return fail(ErrorCode::kNotFound, "missing frame " + frame_label(options, i));
    }
  }
  if (first == options.frames.size()) {
    return fail(ErrorCode::kNotFound, "no readable frames");
  }
  const std::string ext = lower_extension(options.output);
  auto file = OutputFile::create(options.output, options.place);
  if (!file) return fail(file.error());
  Muxer muxer(options.output, std::move(*file));
  if (Result<void> made = muxer.allocate(ext.c_str() + 1); !made) {
    return fail(made.error());
  }
  if (Result<void> opened = muxer.open(); !opened) return fail(opened.error());

  // Decoding starts now; the calling thread reads the first readable frame
  // meanwhile, and its displayed size sets the movie's.
  const size_t cores = std::max(1u, std::thread::hardware_concurrency());
  const size_t wanted =
      options.decode_threads > 0 ? static_cast<size_t>(options.decode_threads) : cores;
  // Web codecs prefer an OCIO config's sRGB display (browsers show sRGB).
  ColourChoice colour = options.colour;
  if (auto table = common::review_codec(options.codec); table && table->web) colour.web = true;
  const size_t decode_threads =
      std::min({wanted, static_cast<size_t>(options.decode_ahead), options.frames.size()});
  SerialExrReads serial_exr_reads(decode_threads > 1);  // outlives the pool
  DecodePool pool(options, colour, first, spec->pixel_format, notifier);
  pool.start(decode_threads);

  const auto first_began = std::chrono::steady_clock::now();
  notifier.notify(options.frames[first]);
  HalfFrame first_half;
  bool first_fast =
      read_half_frame(options.frames[first], colour, first_half, NonFinite::kCallerScans);
  Result<DisplayImage> first_image = DisplayImage();
  if (!first_fast) {
    first_image = read_display_image(options.frames[first], 0, 0, colour);
    if (!first_image) return fail(read_error(options.frames[first], first_image.error()));
  }
  const uint32_t shown_width = first_fast ? first_half.width : first_image->width;
  const uint32_t shown_height = first_fast ? first_half.height : first_image->height;
  if (shown_width == 0 || shown_height == 0) {
    return fail(ErrorCode::kCorrupt, "cannot read " + options.frames[first] + ": empty picture");
  }
  Geometry geometry;
  geometry.width = shown_width;
  geometry.height = shown_height;
  if (options.max_width != 0 && geometry.width > options.max_width) {
    geometry.height = static_cast<uint32_t>(
        std::lround(static_cast<double>(geometry.height) * options.max_width / geometry.width));
    geometry.width = options.max_width;
    geometry.fit = true;
  }
  geometry.width = even_down(geometry.width);
  geometry.height = even_down(geometry.height);
  geometry.fit =
      geometry.fit || !near_size(shown_width, shown_height, geometry.width, geometry.height);
  pool.set_geometry(geometry);
  if (geometry.fit) {
    first_fast = false;
    notifier.notify(options.frames[first]);
    first_image =
        read_display_image(options.frames[first], geometry.width, geometry.height, colour);
    if (!first_image) return fail(read_error(options.frames[first], first_image.error()));
  } else if (first_fast && !fast_size(first_half, geometry.width, geometry.height)) {
    first_fast = false;  // a 1-pixel side, stretched to 2: the general path
    notifier.notify(options.frames[first]);
    first_image = read_display_image(options.frames[first], 0, 0, colour);
    if (!first_image) return fail(read_error(options.frames[first], first_image.error()));
  }
  const uint32_t width = geometry.width;
  const uint32_t height = geometry.height;
  FramePtr first_frame;
  {
    Converter converter(width, height, spec->pixel_format, pool.frames());
    Result<FramePtr> converted =
        first_fast ? converter.convert(first_half) : converter.convert(*first_image);
    if (!converted) return fail(converted.error());
    if (!*converted) {  // NaN or Inf: the general path, which repairs them
      notifier.notify(options.frames[first]);
      first_image = read_display_image(options.frames[first], 0, 0, colour);
      if (!first_image) return fail(read_error(options.frames[first], first_image.error()));
      converted = converter.convert(*first_image);
      if (!converted) return fail(converted.error());
    }
    first_frame = std::move(*converted);
    first_image = DisplayImage();
    first_half = HalfFrame();
  }
  const auto first_took = std::chrono::steady_clock::now() - first_began;
  const bool global_header = (muxer.context()->oformat->flags & AVFMT_GLOBALHEADER) != 0;
  Result<CodecContextPtr> encoder =
      open_encoder(options, *spec, width, height, rate, global_header);
  if (!encoder) return fail(encoder.error());
  AVStream* stream = avformat_new_stream(muxer.context(), nullptr);
  if (!stream) return fail(ErrorCode::kInternal, "cannot add a video stream");
  stream->time_base = (*encoder)->time_base;
  stream->avg_frame_rate = rate;
  if (avcodec_parameters_from_context(stream->codecpar, encoder->get()) < 0) {
    return fail(ErrorCode::kInternal, "cannot copy encoder parameters");
  }
  std::unique_ptr<AudioTrack> audio;
  if (!options.audio.empty()) {
    auto opened =
        // After the slate, if any: the sound belongs to the pictures.
        AudioTrack::open(options.audio, options.audio_offset + (options.slate ? 1 : 0), rate,
                         options.codec, muxer.context());
    if (!opened) return fail(opened.error());
    audio = std::move(*opened);
  }
  // HEVC as hvc1 (parameter sets in the sample description): what Apple's
  // players and browsers take; ffmpeg's default hev1 they refuse.
  if (options.codec == "h265") stream->codecpar->codec_tag = MKTAG('h', 'v', 'c', '1');
  // MP4 and MOV with their index first (+faststart): a browser or review tool
  // plays before the whole file has come. The muxer rewrites the file at the
  // trailer, reading it back by its path (the temporary file's /proc path).
  // What the pictures were made for, for review tools and people: the
  // display transform (and the primaries' conversion, see image_ops.h).
  if (Result<std::string> shown = display_transform_name(colour); shown) {
    const bool built_in = shown->rfind("sRGB (OpenImageIO", 0) == 0;
    av_dict_set(
        &muxer.context()->metadata, "comment",
        ("farmhand colour: linear -> " + *shown +
         (built_in ? "; EXR primaries other than Rec.709 converted" : "") + "; tagged BT.709")
            .c_str(),
        0);
  }
  AVDictionary* header_options = nullptr;
  if (options.faststart && (ext == ".mp4" || ext == ".mov")) {
    av_dict_set(&header_options, "movflags", "+faststart", 0);
  }
  const int header = avformat_write_header(muxer.context(), &header_options);
  av_dict_free(&header_options);
  if (header < 0) return muxer.write_error(header);

  const uint64_t total = options.frames.size();
  ReviewValues review;
  review.values = options.values;
  review.fps = options.fps;
  review.first = options.frame_numbers.empty() ? 1 : options.frame_numbers.front();
  review.last =
      options.frame_numbers.empty() ? static_cast<int64_t>(total) : options.frame_numbers.back();
  const bool segment = options.movie.frames > 0;
  if (segment) {
    review.first = options.movie.first;
    review.last = options.movie.last;
  }
  if (review.values.count("date") == 0) {
    const std::time_t now = std::time(nullptr);
    std::tm day{};
    localtime_r(&now, &day);
    char text[16];
    std::strftime(text, sizeof(text), "%Y-%m-%d", &day);
    review.values["date"] = text;
  }
  std::unique_ptr<BurnInPainter> painter;
  if (!options.burn_ins.empty()) {
    auto opened =
        BurnInPainter::open(options.burn_ins, options.font, static_cast<int>(width),
                            static_cast<int>(height), spec->pixel_format, (*encoder)->time_base);
    if (!opened) return fail(opened.error());
    painter = std::move(*opened);
  }
  const int64_t lead = options.slate ? 1 : 0;  // pictures start after the slate
  PacketPtr packet(av_packet_alloc());
  if (!packet) return fail(ErrorCode::kInternal, "out of memory allocating a packet");
  TranscodeReport report;
  report.width = width;
  report.height = height;
  report.input_width = shown_width;
  report.input_height = shown_height;
  report.encoder = spec->encoder;
  report.decode_threads = static_cast<uint32_t>(pool.thread_count());
  using std::chrono::microseconds;
  auto step = std::chrono::steady_clock::now();
  auto lap = [&step] {
    const auto now = std::chrono::steady_clock::now();
    const auto took = std::chrono::duration_cast<microseconds>(now - step);
    step = now;
    return took;
  };
  if (options.slate) {
    // The slate: the job's fields and a poster (the middle frame when it is
    // there, else the first readable one), as frame 0.
    SlateOptions slate;
    auto value = [&](const char* key) {
      auto it = review.values.find(key);
      return it == review.values.end() ? std::string() : it->second;
    };
    slate.title = value("shot");
    for (const char* key : {"shot", "version", "artist", "task"}) {
      if (!value(key).empty()) slate.fields.emplace_back(key, value(key));
    }
    slate.fields.emplace_back(
        "frames", std::to_string(review.first) + "-" + std::to_string(review.last) + " (" +
                      std::to_string(segment ? options.movie.frames : total) + ")");
    char fps[32];
    std::snprintf(fps, sizeof(fps), "%g", options.fps);
    slate.fields.emplace_back("fps", fps);
    slate.fields.emplace_back("date", value("date"));
    slate.fields.emplace_back("codec", options.codec);
    const std::string& middle =
        segment && !options.movie.poster.empty() ? options.movie.poster : options.frames[total / 2];
    slate.poster = frame_missing(middle) ? options.frames[first] : middle;
    slate.font = options.font;
    slate.colour = colour;
    notifier.notify(slate.poster);
    Result<DisplayImage> card = make_slate(slate, width, height);
    if (!card) return fail(card.error());
    Converter converter(width, height, spec->pixel_format, pool.frames());
    Result<FramePtr> slate_frame = converter.convert(*card);
    if (!slate_frame) return fail(slate_frame.error());
    (*slate_frame)->pts = 0;
    (*slate_frame)->pict_type = AV_PICTURE_TYPE_NONE;
    if (Result<void> sent =
            encode(encoder->get(), spec->encoder, slate_frame->get(), muxer, stream, packet.get());
        !sent) {
      return fail(sent.error());
    }
    report.slate = true;
  }
  FramePtr last_good;  // kHold only: a reference to the previous good frame
  FramePtr black;
  for (size_t i = 0; i < total; ++i) {
    lap();
    Slot slot = pool.take(i);
    report.wait_time += lap();
    FramePtr frame;
    if (slot.state == Slot::State::kError) return fail(std::move(slot.error));
    if (slot.state == Slot::State::kFirst) {
      frame = std::move(first_frame);
    } else if (slot.state == Slot::State::kFrame) {
      frame = std::move(slot.frame);
    } else if (options.missing == MissingFramePolicy::kFail) {
      return fail(ErrorCode::kNotFound, "missing frame " + frame_label(options, i));
    } else {
      ++report.frames_missing;
      if (report.missing_frames.size() < TranscodeReport::kMissingListed) {
        report.missing_frames.push_back(frame_label(options, i));
      }
      if (options.missing == MissingFramePolicy::kHold && last_good) {
        frame.reset(av_frame_clone(last_good.get()));
      } else {
        if (!black) {
          Result<FramePtr> made = black_frame(width, height, spec->pixel_format);
          if (!made) return fail(made.error());
          black = std::move(*made);
        }
        frame.reset(av_frame_clone(black.get()));
      }
    }
    if (!frame) return fail(ErrorCode::kInternal, "out of memory copying a video frame");
    if (options.missing == MissingFramePolicy::kHold &&
        (slot.state == Slot::State::kFrame || slot.state == Slot::State::kFirst)) {
      last_good.reset(av_frame_clone(frame.get()));
    }
    frame->pts = static_cast<int64_t>(i) + lead;
    frame->pict_type = AV_PICTURE_TYPE_NONE;
    if (painter) {
      const int64_t number =
          options.frame_numbers.empty() ? static_cast<int64_t>(i) + 1 : options.frame_numbers[i];
      Result<FramePtr> painted = painter->paint(std::move(frame), review, number);
      if (!painted) return fail(painted.error());
      frame = std::move(*painted);
    }
    if (Result<void> sent =
            encode(encoder->get(), spec->encoder, frame.get(), muxer, stream, packet.get());
        !sent) {
      return fail(sent.error());
    }
    if (audio) {
      if (Result<void> sound = audio->write_until(i + 1 + static_cast<uint64_t>(lead)); !sound) {
        return fail(sound.error());
      }
    }
    report.encode_time += lap();
    ++report.frames_written;
    if (progress) progress(report.frames_written, total);
  }
  report.peak_frames_ahead = static_cast<uint32_t>(pool.peak_ahead());
  report.decode_time = pool.decode_time() + std::chrono::duration_cast<microseconds>(first_took);
  lap();

  if (Result<void> flushed =
          encode(encoder->get(), spec->encoder, nullptr, muxer, stream, packet.get());
      !flushed) {
    return fail(flushed.error());
  }
  if (audio) {
    if (Result<void> sound = audio->finish(total + static_cast<uint64_t>(lead)); !sound) {
      return fail(sound.error());
    }
    report.audio_encoder = audio->encoder_name();
  }
  if (const int result = av_write_trailer(muxer.context()); result < 0) {
    return muxer.write_error(result);
  }
  std::vector<std::string> reads = options.frames;
  if (!colour.config.empty()) reads.push_back(colour.config);
  if (!options.audio.empty()) reads.push_back(options.audio);
  if (Result<void> committed = muxer.commit(reads); !committed) return fail(committed.error());
  report.encode_time += lap();  // the flush, the trailer and the rename
  std::error_code ec;
  const auto bytes = std::filesystem::file_size(options.output, ec);
  report.output_bytes = ec ? 0 : static_cast<uint64_t>(bytes);
  return report;
}

}  // namespace

Result<TranscodeReport> transcode(
    const TranscodeOptions& options,
    const std::function<void(uint64_t done, uint64_t total)>& progress,
    const std::function<void(const std::string& path)>& reading) {
  try {
    return run_transcode(options, progress, reading);
  } catch (const std::exception& e) {
    return fail(ErrorCode::kInternal, "transcode to " + options.output + " failed: " + e.what());
  } catch (...) {
    return fail(ErrorCode::kInternal, "transcode to " + options.output + " failed");
  }
}

}  // namespace farmhand::media
