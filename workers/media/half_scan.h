// half_scan: loops over every half-float value of a frame that must run at
// vector speed (half_scan.cpp is built at -O3: at the project's -O2, GCC
// leaves them scalar, and one scalar pass over a 2K frame's 6.6 M values
// costs more than a tenth of an H.264 movie's own CPU).
#pragma once

#include <cstddef>
#include <cstdint>

namespace farmhand::media {

// True when none of `count` half bit patterns is NaN or Inf (all five
// exponent bits set).
[[nodiscard]] bool all_finite_halves(const uint16_t* values, size_t count);

}  // namespace farmhand::media
