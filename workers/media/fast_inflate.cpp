// fast_inflate: zlib's uncompress(), defined here and served by libdeflate.
//
// Why: inflating OpenEXR's ZIP/ZIPS blocks (and the zlib parts of PXR24 and
// DWAA/DWAB) with zlib was ~45% of the CPU of an EXR decode; libdeflate
// inflates the same streams 2-3x faster. Debian 12's libOpenEXR-3_1 and
// libOpenEXRCore-3_1 call zlib's one-shot uncompress() for every block.
//
// How: ELF symbol interposition. libOpenEXR's reference to `uncompress` is
// resolved at run time in the global lookup scope, which starts with the
// executable; an executable that defines and exports `uncompress` therefore
// wins over libz.so, for every library in the process. workers/media/
// CMakeLists.txt makes each executable that links farmhand_media pull this
// file in (-u uncompress: a static library member is otherwise linked only if
// referenced) and export the symbol (--export-dynamic-symbol). Check with
// `nm -D bin/farmhand-media | grep uncompress` (" T uncompress") and
// `LD_DEBUG=bindings bin/farmhand-media thumbnail x.exr y.jpg 2>&1 | grep uncompress`.
// Only decompression changes: compress() and everything else stay zlib's.
//
// Contract: zlib's, exactly. libdeflate answers the calls it completes
// (Z_OK, *destLen = bytes written). Anything else -- not enough room, bad or
// truncated data, no decompressor -- is handed to zlib's own uncompress2(),
// which is what zlib's uncompress() is, so the errors, *destLen on error and
// the partial output zlib documents for Z_BUF_ERROR are zlib's. Damaged files
// are rare; decoding their bad block twice costs nothing that matters.
// One difference: on success, libdeflate may have written scratch bytes in
// dest beyond *destLen (zlib leaves them alone); no zlib caller relies on that.
#include "workers/media/fast_inflate.h"

#include <atomic>
#include <cstddef>

#include <libdeflate.h>
#include <zlib.h>

namespace {

std::atomic<uint64_t> g_calls{0};
std::atomic<uint64_t> g_fallbacks{0};

// One decompressor per thread (libdeflate's are not thread-safe), allocated
// on first use. A plain pointer, valid for the thread's whole life; the Reaper
// frees it at thread exit, after which (a destructor that inflates) this
// thread falls back to zlib.
thread_local libdeflate_decompressor* t_decompressor = nullptr;
thread_local bool t_reaped = false;

struct Reaper {
  Reaper() = default;
  Reaper(const Reaper&) = delete;
  Reaper& operator=(const Reaper&) = delete;

  ~Reaper() {
    libdeflate_free_decompressor(t_decompressor);
    t_decompressor = nullptr;
    t_reaped = true;
  }
};

thread_local Reaper t_reaper;

libdeflate_decompressor* thread_decompressor() {
  if (t_decompressor == nullptr && !t_reaped) {
    t_decompressor = libdeflate_alloc_decompressor();
    // Touching the thread_local constructs it and registers its destructor.
    [[maybe_unused]] Reaper* reaper = &t_reaper;
  }
  return t_decompressor;
}

}  // namespace

extern "C" int uncompress(Bytef* dest, uLongf* destLen, const Bytef* source, uLong sourceLen) {
  g_calls.fetch_add(1, std::memory_order_relaxed);
  if (libdeflate_decompressor* decompressor = thread_decompressor(); decompressor != nullptr) {
    size_t written = 0;
    if (libdeflate_zlib_decompress(decompressor, source, sourceLen, dest, *destLen, &written) ==
        LIBDEFLATE_SUCCESS) {
      *destLen = written;
      return Z_OK;
    }
  }
  g_fallbacks.fetch_add(1, std::memory_order_relaxed);
  uLong source_len = sourceLen;
  return uncompress2(dest, destLen, source, &source_len);
}

namespace farmhand::media {

uint64_t fast_inflate_calls() noexcept {
  return g_calls.load(std::memory_order_relaxed);
}

uint64_t fast_inflate_zlib_fallbacks() noexcept {
  return g_fallbacks.load(std::memory_order_relaxed);
}

}  // namespace farmhand::media
