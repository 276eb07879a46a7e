#include "common/byte_size.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <iterator>

#include <fmt/format.h>

namespace farmhand::common {

Result<uint64_t> parse_byte_size(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return fail(ErrorCode::kInvalidArgument, fmt::format("size '{}': {}", text, why));
  };
  size_t end = 0;
  while (end < text.size() &&
         (std::isdigit(static_cast<unsigned char>(text[end])) != 0 || text[end] == '.')) {
    ++end;
  }
  if (end == 0) return bad("expected a number, e.g. 8G or 512M");
  double number = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + end, number);
  if (ec != std::errc() || ptr != text.data() + end) return bad("malformed number");
  std::string unit;
  for (char c : text.substr(end)) {
    if (c != ' ') unit += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  // "G", "GB", "GIB" all mean GiB.
  if (unit.size() > 1 && unit.back() == 'B') unit.pop_back();
  if (unit.size() > 1 && unit.back() == 'I') unit.pop_back();
  int shift = 0;
  if (unit.empty() || unit == "B") {
    shift = 0;
  } else if (unit == "K") {
    shift = 10;
  } else if (unit == "M") {
    shift = 20;
  } else if (unit == "G") {
    shift = 30;
  } else if (unit == "T") {
    shift = 40;
  } else {
    return bad(fmt::format("unknown unit '{}' (use K, M, G or T)", text.substr(end)));
  }
  double bytes = std::ldexp(number, shift);
  if (!(bytes < 1.8e19)) return bad("too large");
  if (shift == 0 && bytes != std::floor(bytes)) return bad("a fraction of a byte");
  return static_cast<uint64_t>(std::llround(bytes));
}

std::string format_byte_size(uint64_t bytes) {
  if (bytes < 1024) return fmt::format("{} B", bytes);
  constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
  double value = static_cast<double>(bytes) / 1024;
  size_t unit = 0;
  while (value >= 1024 && unit + 1 < std::size(kUnits)) {
    value /= 1024;
    ++unit;
  }
  return fmt::format("{:.1f} {}", value, kUnits[unit]);
}

}  // namespace farmhand::common
