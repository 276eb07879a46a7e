// AudioTrack: a sound file (WAV, AIFF, FLAC: whatever libavformat reads)
// muxed beside a review movie's pictures, decoded with libavcodec, converted
// with libswresample and encoded for the container: AAC in MP4 and in a MOV of
// H.264/H.265, PCM (24-bit, or 16-bit from a 16-bit source) in a MOV of
// ProRes/DNxHR, Opus in WebM.
//
// The track lasts exactly as long as the pictures: `offset_frames` (of the
// movie's rate) delays the sound (positive: silence first) or starts into it
// (negative: its beginning is cut); a sound shorter than the pictures ends in
// silence, a longer one is cut at the last picture. So a movie never ends
// before its pictures because of its sound, and the two streams end together.
//
// Memory does not grow with the sound's length: it is decoded as the movie is
// encoded, a packet at a time, into a FIFO of at most about one frame's worth
// of samples.
//
// Use: open() before the muxer's header is written (it adds the stream), then
// write_until() after each picture, then finish() before the trailer. Errors
// name the sound file: "cannot read sound /p/a.wav: Invalid data found ...".
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/result.h"

extern "C" {
#include <libavformat/avformat.h>
#include <libavutil/rational.h>
}

namespace farmhand::media {

class AudioTrack {
 public:
  // Opens `path` and adds an audio stream to `muxer` (whose format, "mp4",
  // "mov" or "webm", and video codec choose the encoder).
  [[nodiscard]] static Result<std::unique_ptr<AudioTrack>> open(const std::string& path,
                                                                int64_t offset_frames,
                                                                AVRational frame_rate,
                                                                const std::string& video_codec,
                                                                AVFormatContext* muxer);
  ~AudioTrack();
  AudioTrack(const AudioTrack&) = delete;
  AudioTrack& operator=(const AudioTrack&) = delete;

  // Encodes and writes the sound up to the end of picture `frames` (that is,
  // frames / rate seconds in).
  [[nodiscard]] Result<void> write_until(uint64_t frames);
  // Writes the rest up to the end of the last picture and flushes the encoder.
  [[nodiscard]] Result<void> finish(uint64_t frames);

  const char* encoder_name() const;
  int sample_rate() const;
  int channels() const;

 private:
  struct State;
  explicit AudioTrack(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace farmhand::media
