// Length-prefixed protobuf messages on a stream file descriptor (a pipe or a
// socketpair): a 4-byte little-endian length, then the message. Used between
// the worker and its media processes, where ZeroMQ would be overkill and a
// plain fd lets the worker notice a crashed child as end-of-file.
//
// Sizes are checked before parsing. Not thread-safe: one reader and one
// writer per fd (callers serialize writers).
#pragma once

#include <cstddef>
#include <optional>
#include <string>

#include <google/protobuf/message_lite.h>

#include "common/result.h"

namespace farmhand::common {

// Writes one framed message, retrying on EINTR and short writes (blocking fd).
[[nodiscard]] Result<void> write_framed(int fd, const google::protobuf::MessageLite& msg);

// Reads one framed message from a blocking fd. nullopt-like false on a clean
// end of file before a frame starts.
[[nodiscard]] Result<bool> read_framed(int fd, google::protobuf::MessageLite& msg,
                                       size_t max_bytes);

// Incremental reader for a stream socket: feed() reads what is there without
// blocking (MSG_DONTWAIT, so the socket itself may stay blocking for writes),
// next() pops complete frames.
class FrameReader {
 public:
  explicit FrameReader(size_t max_bytes) : max_bytes_(max_bytes) {}

  // Reads everything available. False when the peer closed the fd or sent a
  // frame over the limit (then the stream is unusable).
  bool feed(int fd);

  // The next complete frame's payload, if any.
  std::optional<std::string> next();

 private:
  std::string buffer_;
  size_t max_bytes_;
};

}  // namespace farmhand::common
