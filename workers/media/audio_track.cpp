#include "workers/media/audio_track.h"

#include <algorithm>
#include <cstring>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavutil/audio_fifo.h>
#include <libavutil/channel_layout.h>
#include <libavutil/mathematics.h>
#include <libavutil/samplefmt.h>
#include <libswresample/swresample.h>
}

#include "workers/media/av_util.h"

namespace farmhand::media {

namespace {

struct InputDeleter {
  void operator()(AVFormatContext* context) const { avformat_close_input(&context); }
};

struct SwrDeleter {
  void operator()(SwrContext* context) const { swr_free(&context); }
};

struct FifoDeleter {
  void operator()(AVAudioFifo* fifo) const { av_audio_fifo_free(fifo); }
};

// Which encoder a container and video codec take, and in what form.
struct AudioCodec {
  const char* encoder;
  AVSampleFormat format;
  int rate;          // 0: the source's
  bool stereo;       // downmix or upmix to two channels; else the source's layout
  bool fixed_frame;  // the encoder takes frames of exactly frame_size samples
};

AudioCodec audio_codec_for(const char* muxer_name, const std::string& video_codec,
                           const AVCodecParameters& source) {
  const std::string muxer = muxer_name;
  if (muxer == "webm") return {"libopus", AV_SAMPLE_FMT_FLT, 48000, true, true};
  if (muxer == "mov" && (video_codec == "prores" || video_codec == "dnxhr")) {
    // Editorial's PCM: 16-bit sources stay 16-bit, the rest 24-bit.
    const bool sixteen = source.bits_per_raw_sample == 16 || source.format == AV_SAMPLE_FMT_S16 ||
                         source.format == AV_SAMPLE_FMT_S16P;
    return sixteen ? AudioCodec{"pcm_s16le", AV_SAMPLE_FMT_S16, 0, false, false}
                   : AudioCodec{"pcm_s24le", AV_SAMPLE_FMT_S32, 0, false, false};
  }
  return {"aac", AV_SAMPLE_FMT_FLTP, 0, true, true};
}

// The rates AAC takes (ISO 14496-3); any other source rate goes to 48 kHz.
int aac_rate(int rate) {
  for (int known :
       {96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000}) {
    if (rate == known) return rate;
  }
  return 48000;
}

}  // namespace

struct AudioTrack::State {
  std::string path;
  std::unique_ptr<AVFormatContext, InputDeleter> input;
  int input_stream = -1;
  CodecContextPtr decoder;
  CodecContextPtr encoder;
  std::unique_ptr<SwrContext, SwrDeleter> resampler;
  std::unique_ptr<AVAudioFifo, FifoDeleter> fifo;
  AVFormatContext* muxer = nullptr;
  AVStream* stream = nullptr;
  AVRational frame_rate{24, 1};
  AudioCodec codec{};
  int frame_size = 1024;  // samples per encoded frame
  int64_t written = 0;    // samples sent to the encoder (the track's time, in samples)
  int64_t silence = 0;    // samples of silence still to come before the sound
  int64_t skip = 0;       // samples of the sound still to cut from its start
  bool source_ended = false;
  FramePtr decoded;
  FramePtr frame;
  PacketPtr in_packet;
  PacketPtr out_packet;

  Result<void> error(const std::string& what, int code) const {
    return fail(ErrorCode::kCorrupt, "cannot read sound " + path + ": " + what +
                                         (code < 0 ? ": " + av_error_text(code) : ""));
  }

  Result<void> encode_error(int code) const {
    return fail(ErrorCode::kInternal,
                std::string("audio encoder ") + codec.encoder + " failed: " + av_error_text(code));
  }

  // The sample the track has when the movie has shown `frames` pictures.
  int64_t samples_at(uint64_t frames) const {
    return av_rescale_q(static_cast<int64_t>(frames), av_inv_q(frame_rate),
                        AVRational{1, encoder->sample_rate});
  }

  // Decodes more of the sound into the FIFO (converted); false at its end.
  Result<bool> decode_more() {
    while (!source_ended) {
      int result = avcodec_receive_frame(decoder.get(), decoded.get());
      if (result == 0) {
        Result<void> put = convert(decoded.get());
        av_frame_unref(decoded.get());
        if (!put) return fail(put.error());
        return true;
      }
      if (result == AVERROR_EOF) {
        source_ended = true;
        // What the resampler still holds.
        if (Result<void> rest = convert(nullptr); !rest) return fail(rest.error());
        return false;
      }
      if (result != AVERROR(EAGAIN)) return fail(error("cannot decode", result).error());
      result = av_read_frame(input.get(), in_packet.get());
      if (result == AVERROR_EOF) {
        avcodec_send_packet(decoder.get(), nullptr);  // drain
        continue;
      }
      if (result < 0) return fail(error("cannot read", result).error());
      if (in_packet->stream_index == input_stream) {
        result = avcodec_send_packet(decoder.get(), in_packet.get());
        if (result < 0 && result != AVERROR(EAGAIN)) {
          av_packet_unref(in_packet.get());
          return fail(error("cannot decode", result).error());
        }
      }
      av_packet_unref(in_packet.get());
    }
    return false;
  }

  // Converts `source` (nullptr: the resampler's rest) into the FIFO, cutting
  // what a negative offset skips.
  Result<void> convert(const AVFrame* source) {
    const int in_samples = source ? source->nb_samples : 0;
    const int room = swr_get_out_samples(resampler.get(), in_samples);
    if (room <= 0) return {};
    uint8_t** planes = nullptr;
    int result = av_samples_alloc_array_and_samples(
        &planes, nullptr, encoder->ch_layout.nb_channels, room, encoder->sample_fmt, 0);
    if (result < 0) return fail(ErrorCode::kInternal, "out of memory converting sound");
    const int made = swr_convert(
        resampler.get(), planes, room,
        source ? const_cast<const uint8_t**>(source->extended_data) : nullptr, in_samples);
    int start = 0;
    if (made > 0 && skip > 0) {
      start = static_cast<int>(std::min<int64_t>(skip, made));
      skip -= start;
    }
    if (made > start) {
      // Past the cut: shift the planes' pointers by `start` samples.
      const int bytes = av_get_bytes_per_sample(encoder->sample_fmt);
      const bool planar = av_sample_fmt_is_planar(encoder->sample_fmt);
      const int count = planar ? encoder->ch_layout.nb_channels : 1;
      const int step = planar ? bytes : bytes * encoder->ch_layout.nb_channels;
      uint8_t* shifted[AV_NUM_DATA_POINTERS] = {};
      for (int p = 0; p < count && p < AV_NUM_DATA_POINTERS; ++p) {
        shifted[p] = planes[p] + static_cast<ptrdiff_t>(start) * step;
      }
      result = av_audio_fifo_write(fifo.get(), reinterpret_cast<void**>(shifted), made - start);
    }
    av_freep(&planes[0]);
    av_freep(&planes);
    if (made < 0) return error("cannot convert", made);
    if (result < 0) return fail(ErrorCode::kInternal, "out of memory buffering sound");
    return {};
  }

  // Sends one frame of `count` samples: silence first, then the sound, then
  // silence once it has ended.
  Result<void> send_frame(int count) {
    frame->nb_samples = count;
    frame->format = encoder->sample_fmt;
    frame->sample_rate = encoder->sample_rate;
    if (int result = av_channel_layout_copy(&frame->ch_layout, &encoder->ch_layout); result < 0) {
      return encode_error(result);
    }
    if (int result = av_frame_get_buffer(frame.get(), 0); result < 0) return encode_error(result);
    av_samples_set_silence(frame->extended_data, 0, count, encoder->ch_layout.nb_channels,
                           encoder->sample_fmt);
    int at = 0;
    if (silence > 0) {
      const int quiet = static_cast<int>(std::min<int64_t>(silence, count));
      silence -= quiet;
      at = quiet;
    }
    while (at < count) {
      if (av_audio_fifo_size(fifo.get()) == 0) {
        Result<bool> more = decode_more();
        if (!more) return fail(more.error());
        if (!*more && av_audio_fifo_size(fifo.get()) == 0) break;  // the sound ended: silence
        continue;
      }
      const bool planar = av_sample_fmt_is_planar(encoder->sample_fmt);
      const int bytes = av_get_bytes_per_sample(encoder->sample_fmt);
      const int step = planar ? bytes : bytes * encoder->ch_layout.nb_channels;
      const int planes = planar ? encoder->ch_layout.nb_channels : 1;
      uint8_t* into[AV_NUM_DATA_POINTERS] = {};
      for (int p = 0; p < planes && p < AV_NUM_DATA_POINTERS; ++p) {
        into[p] = frame->extended_data[p] + static_cast<ptrdiff_t>(at) * step;
      }
      const int read = av_audio_fifo_read(fifo.get(), reinterpret_cast<void**>(into), count - at);
      if (read <= 0) break;
      at += read;
    }
    frame->pts = written;
    written += count;
    const int result = avcodec_send_frame(encoder.get(), frame.get());
    av_frame_unref(frame.get());
    if (result < 0) return encode_error(result);
    return drain();
  }

  // Writes every packet the encoder has ready.
  Result<void> drain() {
    for (;;) {
      int result = avcodec_receive_packet(encoder.get(), out_packet.get());
      if (result == AVERROR(EAGAIN) || result == AVERROR_EOF) return {};
      if (result < 0) return encode_error(result);
      av_packet_rescale_ts(out_packet.get(), encoder->time_base, stream->time_base);
      out_packet->stream_index = stream->index;
      result = av_interleaved_write_frame(muxer, out_packet.get());
      if (result < 0) {
        return fail(ErrorCode::kIo,
                    std::string("cannot write the sound: ") + av_error_text(result));
      }
    }
  }

  // Encodes up to sample `end` of the track.
  Result<void> encode_until(int64_t end, bool last) {
    while (written < end) {
      const int64_t left = end - written;
      if (codec.fixed_frame && left < frame_size && !last) return {};  // waits for a whole frame
      const int count = static_cast<int>(std::min<int64_t>(left, frame_size));
      if (Result<void> sent = send_frame(count); !sent) return sent;
    }
    return {};
  }
};

AudioTrack::AudioTrack(std::unique_ptr<State> state) : state_(std::move(state)) {}

AudioTrack::~AudioTrack() = default;

Result<std::unique_ptr<AudioTrack>> AudioTrack::open(const std::string& path, int64_t offset_frames,
                                                     AVRational frame_rate,
                                                     const std::string& video_codec,
                                                     AVFormatContext* muxer) {
  auto state = std::make_unique<State>();
  state->path = path;
  state->muxer = muxer;
  state->frame_rate = frame_rate;
  AVFormatContext* input = nullptr;
  int result = avformat_open_input(&input, path.c_str(), nullptr, nullptr);
  if (result < 0) return fail(state->error("cannot open", result).error());
  state->input.reset(input);
  result = avformat_find_stream_info(input, nullptr);
  if (result < 0) return fail(state->error("cannot find its streams", result).error());
  const AVCodec* decoder = nullptr;
  result = av_find_best_stream(input, AVMEDIA_TYPE_AUDIO, -1, -1, &decoder, 0);
  if (result < 0 || decoder == nullptr) {
    return fail(state->error("no sound in it", 0).error());
  }
  state->input_stream = result;
  const AVCodecParameters& source = *input->streams[result]->codecpar;
  if (source.sample_rate <= 0 || source.ch_layout.nb_channels <= 0) {
    return fail(state->error("no sample rate or channels", 0).error());
  }
  state->decoder.reset(avcodec_alloc_context3(decoder));
  if (!state->decoder) return fail(ErrorCode::kInternal, "out of memory opening a decoder");
  avcodec_parameters_to_context(state->decoder.get(), &source);
  result = avcodec_open2(state->decoder.get(), decoder, nullptr);
  if (result < 0) return fail(state->error("cannot decode", result).error());
  if (state->decoder->ch_layout.order == AV_CHANNEL_ORDER_UNSPEC) {
    const int channels = state->decoder->ch_layout.nb_channels;
    av_channel_layout_uninit(&state->decoder->ch_layout);
    av_channel_layout_default(&state->decoder->ch_layout, channels);
  }

  state->codec = audio_codec_for(muxer->oformat->name, video_codec, source);
  const AVCodec* encoder = avcodec_find_encoder_by_name(state->codec.encoder);
  if (!encoder) {
    return fail(ErrorCode::kInternal,
                std::string("audio encoder ") + state->codec.encoder + " not available");
  }
  state->encoder.reset(avcodec_alloc_context3(encoder));
  if (!state->encoder) return fail(ErrorCode::kInternal, "out of memory opening an encoder");
  AVCodecContext& out = *state->encoder;
  out.sample_fmt = state->codec.format;
  out.sample_rate = state->codec.rate != 0                       ? state->codec.rate
                    : std::string(state->codec.encoder) == "aac" ? aac_rate(source.sample_rate)
                                                                 : source.sample_rate;
  if (state->codec.stereo) {
    av_channel_layout_default(&out.ch_layout, 2);
  } else {
    av_channel_layout_copy(&out.ch_layout, &state->decoder->ch_layout);
  }
  out.time_base = AVRational{1, out.sample_rate};
  if (std::string(state->codec.encoder) == "aac") out.bit_rate = 192'000;
  if (std::string(state->codec.encoder) == "libopus") out.bit_rate = 128'000;
  if (muxer->oformat->flags & AVFMT_GLOBALHEADER) out.flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
  result = avcodec_open2(&out, encoder, nullptr);
  if (result < 0) {
    return fail(ErrorCode::kInternal, std::string("cannot open audio encoder ") +
                                          state->codec.encoder + ": " + av_error_text(result));
  }
  state->frame_size = out.frame_size > 0 ? out.frame_size : 1024;
  state->codec.fixed_frame =
      state->codec.fixed_frame && !(encoder->capabilities & AV_CODEC_CAP_VARIABLE_FRAME_SIZE);

  SwrContext* resampler = nullptr;
  result = swr_alloc_set_opts2(&resampler, &out.ch_layout, out.sample_fmt, out.sample_rate,
                               &state->decoder->ch_layout, state->decoder->sample_fmt,
                               state->decoder->sample_rate, 0, nullptr);
  state->resampler.reset(resampler);
  if (result < 0 || swr_init(resampler) < 0) {
    return fail(state->error("cannot convert its samples", result).error());
  }
  state->fifo.reset(
      av_audio_fifo_alloc(out.sample_fmt, out.ch_layout.nb_channels, state->frame_size * 2));
  state->decoded.reset(av_frame_alloc());
  state->frame.reset(av_frame_alloc());
  state->in_packet.reset(av_packet_alloc());
  state->out_packet.reset(av_packet_alloc());
  if (!state->fifo || !state->decoded || !state->frame || !state->in_packet || !state->out_packet) {
    return fail(ErrorCode::kInternal, "out of memory opening the sound");
  }
  const int64_t offset = av_rescale_q(offset_frames, av_inv_q(frame_rate), out.time_base);
  if (offset > 0) state->silence = offset;
  if (offset < 0) state->skip = -offset;

  state->stream = avformat_new_stream(muxer, nullptr);
  if (!state->stream) return fail(ErrorCode::kInternal, "cannot add an audio stream");
  state->stream->time_base = out.time_base;
  if (avcodec_parameters_from_context(state->stream->codecpar, &out) < 0) {
    return fail(ErrorCode::kInternal, "cannot copy audio encoder parameters");
  }
  return std::unique_ptr<AudioTrack>(new AudioTrack(std::move(state)));
}

Result<void> AudioTrack::write_until(uint64_t frames) {
  return state_->encode_until(state_->samples_at(frames), false);
}

Result<void> AudioTrack::finish(uint64_t frames) {
  if (Result<void> rest = state_->encode_until(state_->samples_at(frames), true); !rest) {
    return rest;
  }
  if (int result = avcodec_send_frame(state_->encoder.get(), nullptr); result < 0) {
    return state_->encode_error(result);
  }
  return state_->drain();
}

const char* AudioTrack::encoder_name() const {
  return state_->codec.encoder;
}

int AudioTrack::sample_rate() const {
  return state_->encoder->sample_rate;
}

int AudioTrack::channels() const {
  return state_->encoder->ch_layout.nb_channels;
}

}  // namespace farmhand::media
