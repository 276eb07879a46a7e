// half_scan: see half_scan.h.
#include "workers/media/half_scan.h"

namespace farmhand::media {

// (h & 0x7c00) + 0x0400 reaches bit 15 only when all five exponent bits are
// set, so an OR of it over all values says whether any is NaN or Inf. Blocks
// of a fixed length give the vectoriser a loop without an epilogue.
bool all_finite_halves(const uint16_t* values, size_t count) {
  constexpr size_t kBlock = 64;
  uint16_t seen = 0;
  size_t i = 0;
  for (; i + kBlock <= count; i += kBlock) {
    uint16_t block = 0;
    for (size_t k = 0; k < kBlock; ++k) {
      block |= static_cast<uint16_t>((values[i + k] & 0x7c00U) + 0x0400U);
    }
    seen |= block;
  }
  for (; i < count; ++i) seen |= static_cast<uint16_t>((values[i] & 0x7c00U) + 0x0400U);
  return (seen & 0x8000U) == 0;
}

}  // namespace farmhand::media
