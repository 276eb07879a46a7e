#include "workers/media/movie_join.h"

#include <charconv>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <system_error>
#include <unordered_map>

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/mathematics.h>
}

#include "workers/media/audio_track.h"
#include "workers/media/av_util.h"
#include "workers/media/movie_muxer.h"

namespace farmhand::media {

namespace {

struct Segment {
  std::string name;
  int64_t first = 0;
  int64_t last = 0;
};

// "seg.1001.1060.mp4" -> 1001, 1060 when the extension is `ext` (".mp4").
std::optional<Segment> parse_segment_name(const std::string& name, const std::string& ext) {
  if (name.rfind("seg.", 0) != 0 || name.size() <= 4 + ext.size() || lower_extension(name) != ext) {
    return std::nullopt;
  }
  const char* at = name.data() + 4;
  const char* end = name.data() + name.size() - ext.size();
  Segment segment;
  segment.name = name;
  auto first = std::from_chars(at, end, segment.first);
  if (first.ec != std::errc() || first.ptr == end || *first.ptr != '.') return std::nullopt;
  auto last = std::from_chars(first.ptr + 1, end, segment.last);
  if (last.ec != std::errc() || last.ptr != end) return std::nullopt;
  return segment;
}

struct InputDeleter {
  void operator()(AVFormatContext* context) const { avformat_close_input(&context); }
};

using InputPtr = std::unique_ptr<AVFormatContext, InputDeleter>;

struct ParametersDeleter {
  void operator()(AVCodecParameters* parameters) const { avcodec_parameters_free(&parameters); }
};

struct OpenSegment {
  InputPtr input;
  AVStream* video = nullptr;
};

Result<OpenSegment> open_segment(const std::string& path) {
  AVFormatContext* raw = nullptr;
  if (const int opened = avformat_open_input(&raw, path.c_str(), nullptr, nullptr); opened < 0) {
    return fail(ErrorCode::kIo, "cannot read segment " + path + ": " + av_error_text(opened));
  }
  OpenSegment segment;
  segment.input.reset(raw);
  for (unsigned i = 0; i < raw->nb_streams; ++i) {
    if (raw->streams[i]->codecpar->codec_type == AVMEDIA_TYPE_VIDEO) {
      segment.video = raw->streams[i];
      break;
    }
  }
  if (!segment.video) {
    return fail(ErrorCode::kCorrupt, "segment " + path + " has no video stream");
  }
  return segment;
}

// What must be the same in every segment for a copy to play as one stream.
std::string mismatch(const AVCodecParameters& a, const AVCodecParameters& b) {
  if (a.codec_id != b.codec_id) {
    return std::string("is ") + avcodec_get_name(b.codec_id) + ", the movie " +
           avcodec_get_name(a.codec_id);
  }
  if (a.width != b.width || a.height != b.height) {
    return "is " + std::to_string(b.width) + "x" + std::to_string(b.height) + ", the movie " +
           std::to_string(a.width) + "x" + std::to_string(a.height) +
           ": the sequence changes size; encode it without --segments";
  }
  if (a.format != b.format || a.color_range != b.color_range ||
      a.color_primaries != b.color_primaries || a.color_trc != b.color_trc ||
      a.color_space != b.color_space) {
    return "has another pixel format or colour tags than the movie";
  }
  if (a.extradata_size != b.extradata_size ||
      (a.extradata_size > 0 && std::memcmp(a.extradata, b.extradata, a.extradata_size) != 0)) {
    return "has other codec parameter sets than the movie";
  }
  return {};
}

// What the join writes in the movie's comment: the folder it joined, so that
// a join run again after its segments went (killed before its result reached
// the broker) knows its movie.
std::string joined_note(const std::string& segment_dir) {
  return "joined from " + std::filesystem::path(segment_dir).filename().string();
}

// The movie at `output` was joined from `segment_dir`.
bool already_joined(const JoinOptions& options) {
  AVFormatContext* raw = nullptr;
  if (avformat_open_input(&raw, options.output.c_str(), nullptr, nullptr) < 0) return false;
  InputPtr movie(raw);
  const AVDictionaryEntry* comment = av_dict_get(movie->metadata, "comment", nullptr, 0);
  return comment != nullptr &&
         std::string(comment->value).find(joined_note(options.segment_dir)) != std::string::npos;
}

// The segments in movie order, covering `frames` exactly.
Result<std::vector<Segment>> find_segments(const JoinOptions& options, const std::string& ext) {
  DIR* dir = ::opendir(options.segment_dir.c_str());
  if (!dir) {
    return fail(ErrorCode::kNotFound, "cannot read the segment folder " + options.segment_dir +
                                          ": " + std::strerror(errno));
  }
  std::map<int64_t, Segment> by_first;
  std::string duplicate;
  while (const dirent* entry = ::readdir(dir)) {
    auto segment = parse_segment_name(entry->d_name, ext);
    if (!segment) continue;
    if (!by_first.emplace(segment->first, *segment).second) duplicate = entry->d_name;
  }
  ::closedir(dir);
  if (!duplicate.empty()) {
    return fail(ErrorCode::kCorrupt,
                "two segments start where " + duplicate + " does in " + options.segment_dir);
  }
  std::unordered_map<int64_t, size_t> position;
  for (size_t i = 0; i < options.frames.size(); ++i) position.emplace(options.frames[i], i);
  std::vector<Segment> chain;
  for (size_t at = 0; at < options.frames.size();) {
    auto it = by_first.find(options.frames[at]);
    if (it == by_first.end()) {
      return fail(ErrorCode::kNotFound, "the segment starting at frame " +
                                            std::to_string(options.frames[at]) +
                                            " is missing from " + options.segment_dir);
    }
    auto end = position.find(it->second.last);
    if (end == position.end() || end->second < at) {
      return fail(ErrorCode::kCorrupt, "segment " + it->second.name + " ends outside the movie");
    }
    chain.push_back(it->second);
    at = end->second + 1;
  }
  return chain;
}

}  // namespace

Result<JoinReport> join_segments(const JoinOptions& options) {
  const auto began = std::chrono::steady_clock::now();
  if (options.frames.empty()) return fail(ErrorCode::kInvalidArgument, "no frames to join");
  if (!(options.fps > 0 && options.fps <= 1000)) {
    return fail(ErrorCode::kInvalidArgument, "frame rate out of range (0, 1000]");
  }
  const std::string ext = lower_extension(options.output);
  if (ext != ".mov" && ext != ".mp4" && ext != ".webm") {
    return fail(ErrorCode::kInvalidArgument,
                "output " + options.output + " must end in .mov, .mp4 or .webm");
  }

  struct stat folder {};

  if (::lstat(options.segment_dir.c_str(), &folder) != 0 && errno == ENOENT &&
      already_joined(options)) {
    JoinReport done;
    done.already_joined = true;
    return done;
  }
  auto chain = find_segments(options, ext);
  if (!chain) return fail(chain.error());
  std::unordered_map<int64_t, size_t> position;
  for (size_t i = 0; i < options.frames.size(); ++i) position.emplace(options.frames[i], i);

  // Each segment is checked before the movie is begun, and read after: one
  // open at a time but the first (a long streamed movie has thousands).
  OpenSegment first;
  std::unique_ptr<AVCodecParameters, ParametersDeleter> baseline;
  std::vector<std::string> reads;
  for (const Segment& segment : *chain) {
    const std::string path = options.segment_dir + "/" + segment.name;
    auto opened = open_segment(path);
    if (!opened) return fail(opened.error());
    reads.push_back(path);
    if (baseline) {
      const std::string wrong = mismatch(*baseline, *opened->video->codecpar);
      if (!wrong.empty()) return fail(ErrorCode::kCorrupt, "segment " + segment.name + " " + wrong);
    } else {
      // What the others must match: the first as its container describes it.
      baseline.reset(avcodec_parameters_alloc());
      if (!baseline || avcodec_parameters_copy(baseline.get(), opened->video->codecpar) < 0) {
        return fail(ErrorCode::kInternal, "out of memory copying codec parameters");
      }
      // The first segment models the movie's stream: DNxHR's profile, which
      // picks its tag in a MOV, only its pictures say.
      const bool dnxhd = opened->video->codecpar->codec_id == AV_CODEC_ID_DNXHD;
      if (const int found = dnxhd ? avformat_find_stream_info(opened->input.get(), nullptr) : 0;
          found < 0) {
        return fail(ErrorCode::kCorrupt,
                    "cannot read segment " + path + ": " + av_error_text(found));
      }
      first = std::move(*opened);
    }
  }
  if (!options.audio.empty()) reads.push_back(options.audio);

  auto file = OutputFile::create(options.output, options.place);
  if (!file) return fail(file.error());
  Muxer muxer(options.output, std::move(*file));
  if (Result<void> made = muxer.allocate(ext.c_str() + 1); !made) return fail(made.error());
  if (Result<void> opened = muxer.open(); !opened) return fail(opened.error());
  const AVRational rate = frame_rate(options.fps);
  const AVRational frame_units = av_inv_q(rate);
  AVStream* stream = avformat_new_stream(muxer.context(), nullptr);
  if (!stream) return fail(ErrorCode::kInternal, "cannot add a video stream");
  const AVStream& model = *first.video;
  if (avcodec_parameters_copy(stream->codecpar, model.codecpar) < 0) {
    return fail(ErrorCode::kInternal, "cannot copy the segments' codec parameters");
  }
  if (ext == ".webm") stream->codecpar->codec_tag = 0;
  stream->time_base = frame_units;
  stream->avg_frame_rate = rate;
  // Review movies have square pixels (a MOV of DNxHR reads back without saying so).
  if (stream->codecpar->sample_aspect_ratio.num == 0)
    stream->codecpar->sample_aspect_ratio = {1, 1};
  stream->sample_aspect_ratio = stream->codecpar->sample_aspect_ratio;
  // The colour transform and what made the pictures, as the segments say.
  av_dict_copy(&muxer.context()->metadata, first.input->metadata, 0);
  av_dict_set(&muxer.context()->metadata, "encoder", nullptr, 0);
  {
    const AVDictionaryEntry* colour = av_dict_get(muxer.context()->metadata, "comment", nullptr, 0);
    const std::string note = (colour ? std::string(colour->value) + "; " : std::string()) +
                             joined_note(options.segment_dir);
    av_dict_set(&muxer.context()->metadata, "comment", note.c_str(), 0);
  }
  av_dict_copy(&stream->metadata, model.metadata, 0);
  std::unique_ptr<AudioTrack> audio;
  if (!options.audio.empty()) {
    auto opened = AudioTrack::open(options.audio, options.audio_offset + (options.slate ? 1 : 0),
                                   rate, options.codec, muxer.context());
    if (!opened) return fail(opened.error());
    audio = std::move(*opened);
  }
  AVDictionary* header_options = nullptr;
  if (ext == ".mp4" || ext == ".mov") av_dict_set(&header_options, "movflags", "+faststart", 0);
  const int header = avformat_write_header(muxer.context(), &header_options);
  av_dict_free(&header_options);
  if (header < 0) return muxer.write_error(header);

  JoinReport report;
  report.width = static_cast<uint32_t>(model.codecpar->width);
  report.height = static_cast<uint32_t>(model.codecpar->height);
  PacketPtr packet(av_packet_alloc());
  if (!packet) return fail(ErrorCode::kInternal, "out of memory allocating a packet");
  int64_t base = 0;  // pictures before this segment
  int64_t last_dts = INT64_MIN;
  for (size_t k = 0; k < chain->size(); ++k) {
    const Segment& named = (*chain)[k];
    OpenSegment current = std::move(first);
    if (k > 0) {
      auto opened = open_segment(reads[k]);
      if (!opened) return fail(opened.error());
      current = std::move(*opened);
    }
    AVFormatContext* input = current.input.get();
    const AVStream* video = current.video;
    const int64_t pictures =
        static_cast<int64_t>(position.at(named.last) - position.at(named.first) + 1) +
        (k == 0 && options.slate ? 1 : 0);
    int64_t first_pts = AV_NOPTS_VALUE;
    int64_t seen = -1;  // the last picture's place in the segment
    for (;;) {
      const int got = av_read_frame(input, packet.get());
      if (got == AVERROR_EOF) break;
      if (got < 0) {
        return fail(ErrorCode::kCorrupt,
                    "cannot read segment " + named.name + ": " + av_error_text(got));
      }
      if (packet->stream_index != video->index) {
        av_packet_unref(packet.get());
        continue;
      }
      if (packet->pts == AV_NOPTS_VALUE) packet->pts = packet->dts;
      if (packet->dts == AV_NOPTS_VALUE) packet->dts = packet->pts;
      if (packet->pts == AV_NOPTS_VALUE) {
        return fail(ErrorCode::kCorrupt, "segment " + named.name + " has a packet without a time");
      }
      if (first_pts == AV_NOPTS_VALUE) first_pts = packet->dts;
      // In the movie's frames from the segment's start: the segment's own
      // time base (a container may keep milliseconds) rounds back exactly.
      const int64_t pts = av_rescale_q_rnd(packet->pts - first_pts, video->time_base, frame_units,
                                           AV_ROUND_NEAR_INF);
      const int64_t dts = av_rescale_q_rnd(packet->dts - first_pts, video->time_base, frame_units,
                                           AV_ROUND_NEAR_INF);
      if (pts < 0 || pts >= pictures) {
        return fail(ErrorCode::kCorrupt, "segment " + named.name + " has a picture at " +
                                             std::to_string(pts) + ", beyond its " +
                                             std::to_string(pictures));
      }
      packet->pts = av_rescale_q(base + pts, frame_units, stream->time_base);
      packet->dts = av_rescale_q(base + dts, frame_units, stream->time_base);
      packet->duration = av_rescale_q(1, frame_units, stream->time_base);
      if (packet->dts <= last_dts) {
        return fail(ErrorCode::kCorrupt,
                    "segment " + named.name + " overlaps the one before it in time");
      }
      last_dts = packet->dts;
      seen = std::max(seen, pts);
      packet->stream_index = stream->index;
      packet->pos = -1;
      if (const int wrote = av_interleaved_write_frame(muxer.context(), packet.get()); wrote < 0) {
        return muxer.write_error(wrote);
      }
      ++report.packets;
      if (audio) {
        if (Result<void> sound = audio->write_until(static_cast<uint64_t>(base + seen + 1));
            !sound) {
          return fail(sound.error());
        }
      }
    }
    if (seen + 1 != pictures) {
      return fail(ErrorCode::kCorrupt, "segment " + named.name + " has " +
                                           std::to_string(seen + 1) + " pictures, not " +
                                           std::to_string(pictures));
    }
    base += pictures;
  }
  report.segments = chain->size();
  report.pictures = static_cast<uint64_t>(base);
  if (audio) {
    if (Result<void> sound = audio->finish(report.pictures); !sound) return fail(sound.error());
    report.audio_encoder = audio->encoder_name();
  }
  if (const int result = av_write_trailer(muxer.context()); result < 0) {
    return muxer.write_error(result);
  }
  if (Result<void> committed = muxer.commit(reads); !committed) return fail(committed.error());
  std::error_code ec;
  const auto bytes = std::filesystem::file_size(options.output, ec);
  report.output_bytes = ec ? 0 : static_cast<uint64_t>(bytes);
  if (options.remove_segments) {
    // The movie is in place: the segments and their folder go (a folder that
    // is now a symlink is left alone, and so is anything else in it).
    struct stat st {};

    if (::lstat(options.segment_dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
      for (const Segment& segment : *chain) {
        (void)::unlink((options.segment_dir + "/" + segment.name).c_str());
      }
      (void)::rmdir(options.segment_dir.c_str());
    }
  }
  report.time = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::steady_clock::now() - began);
  return report;
}

}  // namespace farmhand::media
