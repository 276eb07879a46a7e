#include "workers/media/server.h"

#include <filesystem>

#include "media.pb.h"
#include <fmt/format.h>
#include <sys/stat.h>

#include "common/frame_set.h"
#include "common/sequence.h"
#include "common/stream_framing.h"
#include "common/wire.h"
#include "workers/media/image_ops.h"
#include "workers/media/movie_join.h"
#include "workers/media/task_log.h"
#include "workers/media/transcode.h"

namespace farmhand::media {

namespace {

// Every frame's path of a sequence, and its number, in order.
void frame_paths(const common::SequencePattern& input, const common::FrameSet& frames,
                 std::vector<std::string>& paths, std::vector<int64_t>& numbers) {
  paths.reserve(frames.size());
  numbers.reserve(frames.size());
  for (uint64_t i = 0; i < frames.size(); ++i) {
    paths.push_back(common::format_frame(input, frames.frame_at(i)));
    numbers.push_back(frames.frame_at(i));
  }
}

// A request's OCIO choice (every media request has the same four fields).
template <typename Body>
ColourChoice colour_of(const Body& body) {
  ColourChoice colour;
  colour.config = body.ocio();
  colour.display = body.display();
  colour.view = body.view();
  colour.look = body.look();
  return colour;
}

// Requests are small: patterns and frame sets, never pixel data.
constexpr size_t kMaxRequestBytes = 16 << 20;

// A request from a broker that resolves no output place: make the output's
// folder as before (outputs land in new folders more often than not).
Result<void> make_parent_dir(const OutputPlace& place, const std::string& path) {
  if (!place.root.empty()) return {};  // OutputFile makes it beneath the root
  std::error_code ec;
  auto parent = std::filesystem::path(path).parent_path();
  if (parent.empty()) return {};
  std::filesystem::create_directories(parent, ec);
  if (ec) {
    return fail(ErrorCode::kIo, fmt::format("cannot create {}: {}", parent.string(), ec.message()));
  }
  return {};
}

bool file_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

MissingFramePolicy missing_policy(const std::string& name) {
  if (name == "fail") return MissingFramePolicy::kFail;
  if (name == "black") return MissingFramePolicy::kBlack;
  return MissingFramePolicy::kHold;
}

// A transcode of one segment of `movie` (movie_join.h): the movie's span and
// poster for the templates and the slate (which only the first segment has),
// the index left for the join to write, and with the hold policy a missing
// first picture held from the last frame before the segment that exists.
Result<void> as_segment(const common::SequencePattern& input, const common::FrameSet& movie,
                        const common::FrameSet& frames, TranscodeOptions& options) {
  if (movie.empty() || frames.empty()) {
    return fail(ErrorCode::kInvalidArgument, "a movie segment without frames");
  }
  options.movie.first = movie.frame_at(0);
  options.movie.last = movie.frame_at(movie.size() - 1);
  options.movie.frames = movie.size();
  options.movie.poster = common::format_frame(input, movie.frame_at(movie.size() / 2));
  options.faststart = false;
  options.audio.clear();  // the join muxes the sound
  options.slate = options.slate && frames.frame_at(0) == options.movie.first;
  if (options.missing != MissingFramePolicy::kHold || file_exists(options.frames.front())) {
    return {};
  }
  std::string held;
  for (uint64_t i = movie.size(); i-- > 0;) {
    const int64_t frame = movie.frame_at(i);
    if (frame >= frames.frame_at(0)) continue;
    std::string path = common::format_frame(input, frame);
    if (file_exists(path)) {
      held = std::move(path);
      break;
    }
  }
  if (held.empty()) return {};
  for (std::string& path : options.frames) {
    if (file_exists(path)) break;
    path = held;
  }
  return {};
}

}  // namespace

void MediaServer::send_reading(uint64_t id, const std::string& path) {
  Event event;
  event.set_id(id);
  event.set_reading(path);
  std::lock_guard<std::mutex> lock(write_mutex_);
  (void)common::write_framed(out_fd_, event);
}

void MediaServer::send_log(uint64_t id, const std::string& text) {
  if (text.empty()) return;
  Event event;
  event.set_id(id);
  event.set_log(text);
  std::lock_guard<std::mutex> lock(write_mutex_);
  (void)common::write_framed(out_fd_, event);
}

void MediaServer::send_progress(uint64_t id, uint64_t done, uint64_t total) {
  Event event;
  event.set_id(id);
  event.mutable_progress()->set_done(done);
  event.mutable_progress()->set_total(total);
  std::lock_guard<std::mutex> lock(write_mutex_);
  (void)common::write_framed(out_fd_, event);
}

Result<void> MediaServer::handle(const Request& request) {
  const uint64_t id = request.id();
  const OutputPlace place{request.output_root(), request.output_dir()};
  switch (request.body_case()) {
    case Request::kThumbnail: {
      const Thumbnail& t = request.thumbnail();
      ThumbnailOptions options;
      options.input = t.input();
      options.output = t.output();
      options.width = t.width();
      options.height = t.height();
      options.colour = colour_of(t);
      options.place = place;
      if (!file_exists(options.input)) {
        return fail(ErrorCode::kNotFound, fmt::format("no such file {}", options.input));
      }
      if (auto ok = make_parent_dir(place, options.output); !ok) return ok;
      send_reading(id, options.input);
      auto done = make_thumbnail(options);
      if (!done) return fail(done.error());
      send_log(id, thumbnail_log(options.input, options.output, *done));
      send_progress(id, 1, 1);
      return {};
    }
    case Request::kConvert: {
      const Convert& c = request.convert();
      auto input = common::SequencePattern::parse(c.input_pattern());
      if (!input) return fail(input.error());
      auto output = common::SequencePattern::parse(c.output_pattern());
      if (!output) return fail(output.error());
      auto frames = common::FrameSet::parse(c.frames());
      if (!frames) return fail(frames.error());
      std::vector<std::string> task_inputs;
      task_inputs.reserve(frames->size());
      for (uint64_t i = 0; i < frames->size(); ++i) {
        task_inputs.push_back(common::format_frame(*input, frames->frame_at(i)));
      }
      // The frames listed so far stay in the log when one fails.
      FrameLog log;
      auto failed = [&](Error error) {
        send_log(id, log.finish());
        return fail(std::move(error));
      };
      // A proxy's burn-ins, drawn by OpenImageIO (review_overlay.h).
      auto burns = burn_ins_of({c.burn_in().begin(), c.burn_in().end()});
      if (!burns) return fail(burns.error());
      for (BurnIn& burn : *burns) {
        burn.size = static_cast<int>(c.text_size());
        if (!c.text_colour().empty()) burn.colour = c.text_colour();
      }
      ReviewValues review;
      review.values = {c.values().begin(), c.values().end()};
      review.first = c.has_sequence_first() ? c.sequence_first()
                     : frames->empty()      ? 0
                                            : frames->frame_at(0);
      review.last = c.has_sequence_last() ? c.sequence_last()
                    : frames->empty()     ? 0
                                          : frames->frame_at(frames->size() - 1);
      for (uint64_t i = 0; i < frames->size(); ++i) {
        int64_t frame = frames->frame_at(i);
        ConvertOptions options;
        options.place = place;
        options.task_inputs = task_inputs;
        options.input = common::format_frame(*input, frame);
        options.output = common::format_frame(*output, frame);
        options.format = c.format();
        options.resize = c.resize();
        options.colour = colour_of(c);
        if (!burns->empty()) {
          options.overlay = [&, frame](OIIO::ImageBuf& picture) {
            return draw_burn_ins(picture, *burns, c.font(), review, frame);
          };
        }
        if (!file_exists(options.input)) {
          return failed(Error{ErrorCode::kNotFound, fmt::format("missing frame {}", frame)});
        }
        if (auto ok = make_parent_dir(place, options.output); !ok) return failed(ok.error());
        send_reading(id, options.input);
        auto done = convert_frame(options);
        if (!done) return failed(done.error());
        send_log(id,
                 log.add(convert_frame_line(frame, options.input, options.output, *done), *done));
        send_progress(id, i + 1, frames->size());
      }
      send_log(id, log.finish());
      return {};
    }
    case Request::kContactSheet: {
      const ContactSheet& c = request.contact_sheet();
      auto input = common::SequencePattern::parse(c.input_pattern());
      if (!input) return fail(input.error());
      auto frames = common::FrameSet::parse(c.frames());
      if (!frames) return fail(frames.error());
      ContactSheetOptions options;
      frame_paths(*input, *frames, options.frames, options.frame_numbers);
      options.output = c.output();
      options.columns = c.columns() > 0 ? c.columns() : options.columns;
      options.cell_width = c.cell_width() > 0 ? c.cell_width() : options.cell_width;
      options.title = c.title();
      options.colour = colour_of(c);
      options.place = place;
      if (auto ok = make_parent_dir(place, options.output); !ok) return ok;
      send_reading(id, c.input_pattern());
      auto done = make_contact_sheet(options);
      if (!done) return fail(done.error());
      send_log(
          id, fmt::format("contact sheet of {} frames of {} ({} columns): wrote {}: {} {}x{}\n",
                          options.frames.size(), c.input_pattern(), options.columns, options.output,
                          done->format, done->width, done->height));
      send_progress(id, 1, 1);
      return {};
    }
    case Request::kTranscode: {
      const Transcode& t = request.transcode();
      auto input = common::SequencePattern::parse(t.input_pattern());
      if (!input) return fail(input.error());
      auto frames = common::FrameSet::parse(t.frames());
      if (!frames) return fail(frames.error());
      TranscodeOptions options;
      frame_paths(*input, *frames, options.frames, options.frame_numbers);
      options.output = t.output();
      options.place = place;
      if (auto ok = make_parent_dir(place, options.output); !ok) return ok;
      if (!t.codec().empty()) options.codec = t.codec();
      if (t.fps() > 0) options.fps = t.fps();
      if (t.has_crf()) options.crf = t.crf();
      options.missing = missing_policy(t.missing());
      options.max_width = t.max_width();
      options.colour = colour_of(t);
      options.audio = t.audio();
      options.audio_offset = t.audio_offset();
      auto burns = burn_ins_of({t.burn_in().begin(), t.burn_in().end()});
      if (!burns) return fail(burns.error());
      options.burn_ins = std::move(*burns);
      for (BurnIn& burn : options.burn_ins) {
        burn.size = static_cast<int>(t.text_size());
        if (!t.text_colour().empty()) burn.colour = t.text_colour();
      }
      options.slate = t.slate();
      options.font = t.font();
      options.values = {t.values().begin(), t.values().end()};
      if (!t.movie_frames().empty()) {
        auto movie = common::FrameSet::parse(t.movie_frames());
        if (!movie) return fail(movie.error());
        if (auto ok = as_segment(*input, *movie, *frames, options); !ok) return ok;
      }
      auto done = transcode(
          options, [&](uint64_t d, uint64_t total) { send_progress(id, d, total); },
          [&](const std::string& path) { send_reading(id, path); });
      if (!done) return fail(done.error());
      send_log(id, transcode_log(t.input_pattern(), t.frames(), options.output, options.fps,
                                 t.missing(), *done));
      return {};
    }
    case Request::kJoin: {
      const Join& j = request.join();
      auto frames = common::FrameSet::parse(j.frames());
      if (!frames) return fail(frames.error());
      JoinOptions options;
      options.segment_dir = j.segment_dir();
      options.frames.reserve(frames->size());
      for (uint64_t i = 0; i < frames->size(); ++i) options.frames.push_back(frames->frame_at(i));
      options.output = j.output();
      options.place = place;
      if (!j.codec().empty()) options.codec = j.codec();
      if (j.fps() > 0) options.fps = j.fps();
      options.slate = j.slate();
      options.audio = j.audio();
      options.audio_offset = j.audio_offset();
      if (auto ok = make_parent_dir(place, options.output); !ok) return ok;
      send_reading(id, options.segment_dir);
      auto done = join_segments(options);
      if (!done) return fail(done.error());
      if (done->already_joined) {
        send_log(id, fmt::format("{} was joined from {} already (its segments are gone)\n",
                                 options.output, options.segment_dir));
        send_progress(id, 1, 1);
        return {};
      }
      send_log(id, fmt::format("joined {} segments of {} ({} pictures, {} packets, {}x{}{}{}) into "
                               "{}: {} bytes in {:.3f} s\n",
                               done->segments, options.segment_dir, done->pictures, done->packets,
                               done->width, done->height, done->audio_encoder.empty() ? "" : ", ",
                               done->audio_encoder, options.output, done->output_bytes,
                               static_cast<double>(done->time.count()) / 1e6));
      send_progress(id, 1, 1);
      return {};
    }
    default:
      return fail(ErrorCode::kInvalidArgument, "media request without a body");
  }
}

Result<void> MediaServer::serve() {
  for (;;) {
    Request request;
    auto got = common::read_framed(in_fd_, request, kMaxRequestBytes);
    if (!got) return fail(got.error());
    if (!*got) return {};  // the worker closed its end: time to go
    Result<void> outcome;
    try {
      outcome = handle(request);
    } catch (const std::exception& e) {
      outcome = fail(ErrorCode::kInternal, fmt::format("internal error: {}", e.what()));
    }
    Event event;
    event.set_id(request.id());
    auto* done = event.mutable_done();
    done->set_ok(outcome.has_value());
    if (!outcome) {
      done->set_error(common::valid_utf8(outcome.error().reason));
      done->set_error_code(std::string(error_code_name(outcome.error().code)));
    }
    std::lock_guard<std::mutex> lock(write_mutex_);
    if (auto ok = common::write_framed(out_fd_, event); !ok) return ok;
  }
}

}  // namespace farmhand::media
