#include "common/byte_size.h"

#include <array>
#include <cctype>
#include <cmath>
#include <limits>

#include <fmt/format.h>

namespace farmhand::common {

namespace {

constexpr std::string_view kUnits = "KMGTP";

char lower(char c) {
  return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
}

}  // namespace

Result<uint64_t> parse_byte_size(std::string_view text) {
  auto bad = [&] {
    return fail(ErrorCode::kInvalidArgument,
                "bad size '" + printable(text) +
                    "' (expected bytes or a number with K, M, G, T or P, e.g. 512M)");
  };
  auto too_large = [&] {
    return fail(ErrorCode::kInvalidArgument, "size '" + printable(text) + "' is too large");
  };
  size_t at = 0;
  uint64_t whole = 0;
  size_t whole_digits = 0;
  for (; at < text.size() && std::isdigit(static_cast<unsigned char>(text[at])); ++at) {
    const uint64_t digit = static_cast<uint64_t>(text[at] - '0');
    if (whole > (std::numeric_limits<uint64_t>::max() - digit) / 10) return too_large();
    whole = whole * 10 + digit;
    ++whole_digits;
  }
  // The fraction's digits, as a number over 10^fraction_digits; digits past
  // the 18th cannot change a result rounded down to bytes below 2^60.
  uint64_t fraction = 0;
  uint64_t fraction_scale = 1;
  size_t fraction_digits = 0;
  if (at < text.size() && text[at] == '.') {
    ++at;
    for (; at < text.size() && std::isdigit(static_cast<unsigned char>(text[at])); ++at) {
      if (fraction_digits < 18) {
        fraction = fraction * 10 + static_cast<uint64_t>(text[at] - '0');
        fraction_scale *= 10;
      }
      ++fraction_digits;
    }
    if (fraction_digits == 0) return bad();
  }
  if (whole_digits == 0) return bad();

  uint64_t multiplier = 1;
  std::string_view suffix = text.substr(at);
  if (!suffix.empty()) {
    const size_t unit = kUnits.find(static_cast<char>(std::toupper(suffix[0])));
    if (unit == std::string_view::npos) {
      if (!(suffix.size() == 1 && lower(suffix[0]) == 'b')) return bad();
    } else {
      multiplier = uint64_t{1} << (10 * (unit + 1));
      suffix.remove_prefix(1);
      const bool plain = suffix.empty();
      const bool b = suffix.size() == 1 && lower(suffix[0]) == 'b';
      const bool ib = suffix.size() == 2 && lower(suffix[0]) == 'i' && lower(suffix[1]) == 'b';
      if (!plain && !b && !ib) return bad();
    }
  }
  if (fraction_digits > 0 && multiplier == 1) return bad();
  if (whole > std::numeric_limits<uint64_t>::max() / multiplier) return too_large();
  uint64_t bytes = whole * multiplier;
  // multiplier <= 2^50 and fraction < fraction_scale: long double's 64-bit
  // mantissa holds the product's whole part exactly enough to round down.
  const auto extra = static_cast<uint64_t>(static_cast<long double>(multiplier) *
                                           static_cast<long double>(fraction) /
                                           static_cast<long double>(fraction_scale));
  if (bytes > std::numeric_limits<uint64_t>::max() - extra) return too_large();
  return bytes + extra;
}

std::string format_byte_size(uint64_t bytes) {
  static constexpr std::array<const char*, 6> kNames = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return fmt::format("{} B", bytes);
  size_t unit = 0;
  double value = static_cast<double>(bytes) / 1024.0;
  // Rounded to one decimal first, so 1023.96 MiB reads "1 GiB", not "1024 MiB".
  while (unit + 1 < kNames.size() && std::round(value * 10.0) / 10.0 >= 1024.0) {
    value /= 1024.0;
    ++unit;
  }
  std::string text = fmt::format("{:.1f}", value);
  if (text.size() > 2 && text.compare(text.size() - 2, 2, ".0") == 0) text.resize(text.size() - 2);
  return text + " " + kNames[unit];
}

}  // namespace farmhand::common
