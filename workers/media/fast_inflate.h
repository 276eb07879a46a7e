// fast_inflate: zlib's uncompress() served by libdeflate inside farmhand-media
// (see fast_inflate.cpp for why and how). The definition of uncompress itself
// is extern "C" and reached by symbol lookup, not through this header.
#pragma once

#include <cstdint>

namespace farmhand::media {

// uncompress() calls this process has made through libdeflate (every call,
// whatever its outcome). For tests and debug logs.
uint64_t fast_inflate_calls() noexcept;

// Of those, the calls libdeflate did not complete (not enough room, bad or
// truncated data) and that were handed to zlib's own uncompress2().
uint64_t fast_inflate_zlib_fallbacks() noexcept;

}  // namespace farmhand::media
