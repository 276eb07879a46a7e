#include "common/stream_framing.h"

#include <cstring>

#include <errno.h>
#include <fmt/format.h>
#include <sys/socket.h>
#include <unistd.h>

namespace farmhand::common {

namespace {

Result<void> write_all(int fd, const char* data, size_t size) {
  while (size > 0) {
    // MSG_NOSIGNAL: a peer that died (a crashed decoder) must give EPIPE, not kill
    // us with SIGPIPE. Plain write() for what is not a socket (a pipe, a file).
    ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0 && errno == ENOTSOCK) n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(ErrorCode::kIo, fmt::format("write failed: {}", std::strerror(errno)));
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return {};
}

// Reads exactly `size` bytes; false on end of file before the first byte.
Result<bool> read_all(int fd, char* data, size_t size) {
  size_t got = 0;
  while (got < size) {
    ssize_t n = ::read(fd, data + got, size - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(ErrorCode::kIo, fmt::format("read failed: {}", std::strerror(errno)));
    }
    if (n == 0) {
      if (got == 0) return false;
      return fail(ErrorCode::kCorrupt, "stream ended inside a frame");
    }
    got += static_cast<size_t>(n);
  }
  return true;
}

uint32_t decode_length(const char* p) {
  return static_cast<uint32_t>(static_cast<unsigned char>(p[0])) |
         static_cast<uint32_t>(static_cast<unsigned char>(p[1])) << 8 |
         static_cast<uint32_t>(static_cast<unsigned char>(p[2])) << 16 |
         static_cast<uint32_t>(static_cast<unsigned char>(p[3])) << 24;
}

}  // namespace

Result<void> write_framed(int fd, const google::protobuf::MessageLite& msg) {
  std::string out(4, '\0');
  size_t size = msg.ByteSizeLong();
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>((size >> (8 * i)) & 0xff);
  msg.AppendToString(&out);
  return write_all(fd, out.data(), out.size());
}

Result<bool> read_framed(int fd, google::protobuf::MessageLite& msg, size_t max_bytes) {
  char header[4];
  auto got = read_all(fd, header, 4);
  if (!got || !*got) return got;
  uint32_t size = decode_length(header);
  if (size > max_bytes) {
    return fail(ErrorCode::kCorrupt,
                fmt::format("frame of {} bytes over the {}-byte limit", size, max_bytes));
  }
  std::string payload(size, '\0');
  auto body = read_all(fd, payload.data(), size);
  if (!body) return fail(body.error());
  if (!*body && size > 0) return fail(ErrorCode::kCorrupt, "stream ended inside a frame");
  if (!msg.ParseFromString(payload)) {
    return fail(ErrorCode::kCorrupt, fmt::format("malformed message ({} bytes)", size));
  }
  return true;
}

bool FrameReader::feed(int fd) {
  char chunk[65536];
  for (;;) {
    ssize_t n = ::recv(fd, chunk, sizeof(chunk), MSG_DONTWAIT);
    if (n > 0) {
      buffer_.append(chunk, static_cast<size_t>(n));
      if (buffer_.size() >= 4 && decode_length(buffer_.data()) > max_bytes_) return false;
      continue;
    }
    if (n == 0) return false;
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK;
  }
}

std::optional<std::string> FrameReader::next() {
  if (buffer_.size() < 4) return std::nullopt;
  uint32_t size = decode_length(buffer_.data());
  if (buffer_.size() < 4 + size) return std::nullopt;
  std::string payload = buffer_.substr(4, size);
  buffer_.erase(0, 4 + size);
  return payload;
}

}  // namespace farmhand::common
