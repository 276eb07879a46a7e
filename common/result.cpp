#include "common/result.h"

#include <cstdio>
#include <cstdlib>

namespace farmhand {

namespace {

struct CodeName {
  ErrorCode code;
  std::string_view name;
};

constexpr CodeName kCodeNames[] = {
    {ErrorCode::kInvalidArgument, "invalid_argument"},
    {ErrorCode::kNotFound, "not_found"},
    {ErrorCode::kCorrupt, "corrupt"},
    {ErrorCode::kIo, "io"},
    {ErrorCode::kTimeout, "timeout"},
    {ErrorCode::kCrashed, "crashed"},
    {ErrorCode::kCancelled, "cancelled"},
    {ErrorCode::kUnavailable, "unavailable"},
    {ErrorCode::kInternal, "internal"},
};

}  // namespace

std::string_view error_code_name(ErrorCode code) {
  for (const auto& entry : kCodeNames) {
    if (entry.code == code) return entry.name;
  }
  return "internal";
}

ErrorCode error_code_from_name(std::string_view name) {
  for (const auto& entry : kCodeNames) {
    if (entry.name == name) return entry.code;
  }
  return ErrorCode::kInternal;
}

std::string printable(std::string_view text, size_t max_bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (i == max_bytes) {
      out += "...";
      break;
    }
    const auto byte = static_cast<unsigned char>(text[i]);
    if (byte < 0x20 || byte == 0x7f) {
      out += "\\x";
      out += kHex[byte >> 4];
      out += kHex[byte & 0xf];
    } else {
      out += text[i];
    }
  }
  return out;
}

void check_failed(const char* expr, const char* file, int line) {
  std::fprintf(stderr, "farmhand: invariant broken: %s at %s:%d\n", expr, file, line);
  std::fflush(stderr);
  std::abort();
}

}  // namespace farmhand
