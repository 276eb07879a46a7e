// fast_inflate: the uncompress() this executable defines (libdeflate) keeps
// zlib's contract, checked against zlib's own uncompress2() -- which is what
// libz's uncompress() is, and which is not interposed -- and OpenEXR files
// decoded through OpenImageIO in this process go through it and give the
// pixels that oiiotool (a separate process, stock zlib) decodes.
#include "workers/media/fast_inflate.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/oracles.h"
#include "tests/support/temp_dir.h"
#include <OpenImageIO/imageio.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <zlib.h>

namespace farmhand::media {
namespace {

namespace fs = std::filesystem;

using Bytes = std::vector<Bytef>;

std::string data_file(const std::string& relative) {
  return e2e::data_dir() + "/" + relative;
}

// `size` bytes that deflate well (short repeats with some noise), or random bytes.
Bytes sample(size_t size, bool compressible, uint32_t seed = 1) {
  std::mt19937 rng(seed);
  Bytes data(size);
  for (size_t i = 0; i < size; ++i) {
    data[i] = compressible ? static_cast<Bytef>((i % 251) ^ ((rng() % 16) == 0 ? rng() : 0))
                           : static_cast<Bytef>(rng());
  }
  return data;
}

// zlib's compress() of `data`.
Bytes deflated(const Bytes& data) {
  uLongf size = compressBound(data.size());
  Bytes out(size);
  EXPECT_EQ(compress(out.data(), &size, data.data(), data.size()), Z_OK);
  out.resize(size);
  return out;
}

// Room to spare when a test wants Z_DATA_ERROR rather than zlib's Z_BUF_ERROR
// for a damaged stream that decodes past the original size.
constexpr size_t kSpare = 4;

struct Outcome {
  int code = Z_OK;
  uLongf dest_len = 0;
  Bytes dest;  // the first dest_len bytes written
};

// Inflates `source` into a buffer of `capacity` bytes with `inflate`
// (uncompress, or zlib's uncompress2 as the reference).
template <typename Inflate>
Outcome run_inflate(Inflate inflate, const Bytes& source, size_t capacity) {
  Bytes dest(capacity + 1, 0xA5);  // +1: never hand out data() of an empty vector
  Outcome out;
  out.dest_len = capacity;
  out.code = inflate(dest.data(), &out.dest_len, source.data(), source.size());
  dest.resize(std::min<size_t>(out.dest_len, capacity));
  out.dest = std::move(dest);
  return out;
}

Outcome ours(const Bytes& source, size_t capacity) {
  return run_inflate(uncompress, source, capacity);
}

Outcome zlibs(const Bytes& source, size_t capacity) {
  return run_inflate([](Bytef* dest, uLongf* dest_len, const Bytef* src,
                        uLong src_len) { return uncompress2(dest, dest_len, src, &src_len); },
                     source, capacity);
}

// Same code, same *destLen, same bytes written.
void expect_like_zlib(const Bytes& source, size_t capacity, const std::string& what) {
  const Outcome a = ours(source, capacity);
  const Outcome b = zlibs(source, capacity);
  EXPECT_EQ(a.code, b.code) << what;
  EXPECT_EQ(a.dest_len, b.dest_len) << what;
  EXPECT_TRUE(a.dest == b.dest) << what << ": different bytes written";
}

TEST(FastInflateTest, RoundTripsZlibCompressAtEverySizeThroughLibdeflate) {
  for (const size_t size : {size_t{0}, size_t{1}, size_t{100}, size_t{65543}, size_t{1} << 20}) {
    for (const bool compressible : {true, false}) {
      const Bytes data = sample(size, compressible);
      const Bytes z = deflated(data);
      const uint64_t calls = fast_inflate_calls();
      const uint64_t fallbacks = fast_inflate_zlib_fallbacks();
      // Exactly the right room, and more than enough.
      for (const size_t capacity : {size, size + 4096}) {
        const Outcome out = ours(z, capacity);
        ASSERT_EQ(out.code, Z_OK) << size << " bytes, room for " << capacity;
        ASSERT_EQ(out.dest_len, size) << size << " bytes, room for " << capacity;
        EXPECT_TRUE(out.dest == data) << size << " bytes, room for " << capacity;
      }
      EXPECT_EQ(fast_inflate_calls() - calls, 2u);
      EXPECT_EQ(fast_inflate_zlib_fallbacks() - fallbacks, 0u) << "libdeflate did not finish";
    }
  }
}

TEST(FastInflateTest, EmptyStreamFitsAZeroByteBufferEvenANullOne) {
  const Bytes z = deflated({});
  uLongf dest_len = 0;
  EXPECT_EQ(uncompress(nullptr, &dest_len, z.data(), z.size()), Z_OK);
  EXPECT_EQ(dest_len, 0u);
}

TEST(FastInflateTest, TooLittleRoomIsBufErrorWithTheBufferFilledLikeZlib) {
  const Bytes data = sample(200000, true);
  const Bytes z = deflated(data);
  for (const size_t capacity : {size_t{0}, size_t{1}, size_t{4096}, data.size() - 1}) {
    const Outcome out = ours(z, capacity);
    if (capacity > 0) {
      // zlib.h: "uncompress() will fill the output buffer with the uncompressed
      // data up to that point".
      EXPECT_EQ(out.code, Z_BUF_ERROR) << "room for " << capacity;
      EXPECT_EQ(out.dest_len, capacity);
      EXPECT_TRUE(std::equal(out.dest.begin(), out.dest.end(), data.begin()));
    }
    expect_like_zlib(z, capacity, "room for " + std::to_string(capacity));
  }
}

TEST(FastInflateTest, TruncatedStreamIsDataErrorLikeZlib) {
  const Bytes data = sample(300000, true);
  const Bytes z = deflated(data);
  for (const size_t keep :
       {size_t{0}, size_t{1}, size_t{2}, size_t{10}, z.size() / 2, z.size() - 5, z.size() - 1}) {
    const Bytes cut(z.begin(), z.begin() + static_cast<std::ptrdiff_t>(keep));
    const std::string what = std::to_string(keep) + " of " + std::to_string(z.size()) + " bytes";
    const uint64_t fallbacks = fast_inflate_zlib_fallbacks();
    const Outcome out = ours(cut, kSpare * data.size());
    EXPECT_EQ(out.code, Z_DATA_ERROR) << what;
    EXPECT_EQ(fast_inflate_zlib_fallbacks() - fallbacks, 1u) << what;
    expect_like_zlib(cut, kSpare * data.size(), what);
    // With exactly the room the whole stream needs, zlib cannot tell input that
    // ends early from output that needs more room once the buffer is full: it
    // says Z_BUF_ERROR for a stream cut in its last bytes. So must we.
    expect_like_zlib(cut, data.size(), what + ", exact room");
  }
}

TEST(FastInflateTest, CorruptedStreamIsDataErrorLikeZlib) {
  const Bytes data = sample(300000, true);
  const Bytes z = deflated(data);

  struct Damage {
    size_t at;
    Bytef xor_with;
    const char* what;
  };

  const Damage damages[] = {
      {0, 0x01, "header method"},       {0, 0x80, "window size"},
      {1, 0x01, "header check bits"},   {1, 0x02, "header check bits"},
      {2, 0xFF, "first block header"},  {z.size() / 2, 0x55, "middle"},
      {z.size() - 1, 0x01, "Adler-32"}, {z.size() - 4, 0x80, "Adler-32"},
  };
  for (const Damage& d : damages) {
    Bytes bad = z;
    bad[d.at] ^= d.xor_with;
    const Outcome out = ours(bad, kSpare * data.size());
    EXPECT_EQ(out.code, Z_DATA_ERROR) << d.what;
    expect_like_zlib(bad, kSpare * data.size(), d.what);
    expect_like_zlib(bad, data.size(), std::string(d.what) + ", exact room");
  }
  // A valid header asking for a preset dictionary (FDICT, with its check bits
  // fixed): zlib's Z_NEED_DICT, which uncompress() reports as Z_DATA_ERROR.
  Bytes dict = z;
  dict[1] = static_cast<Bytef>((dict[1] | 0x20) & 0xE0);
  dict[1] = static_cast<Bytef>(dict[1] + (31 - (dict[0] * 256 + dict[1]) % 31) % 31);
  ASSERT_EQ((dict[0] * 256 + dict[1]) % 31, 0);
  EXPECT_EQ(ours(dict, kSpare * data.size()).code, Z_DATA_ERROR);
  expect_like_zlib(dict, kSpare * data.size(), "preset dictionary");
  // Bytes after the end of the stream are ignored, as zlib ignores them.
  Bytes trailing = z;
  trailing.insert(trailing.end(), {1, 2, 3, 4, 5});
  const Outcome out = ours(trailing, data.size());
  EXPECT_EQ(out.code, Z_OK);
  EXPECT_TRUE(out.dest == data);
  expect_like_zlib(trailing, data.size(), "trailing bytes");
}

TEST(FastInflateTest, RandomDamageAlwaysGivesZlibsAnswer) {
  const Bytes data = sample(20000, true, 7);
  const Bytes z = deflated(data);
  std::mt19937 rng(42);
  for (int i = 0; i < 2000; ++i) {
    Bytes bad = z;
    const int flips = 1 + static_cast<int>(rng() % 3);
    for (int f = 0; f < flips; ++f) bad[rng() % bad.size()] ^= static_cast<Bytef>(1 + rng() % 255);
    if (rng() % 4 == 0) bad.resize(rng() % bad.size());
    const size_t capacity = rng() % 8 == 0 ? rng() % data.size() : data.size();
    expect_like_zlib(bad, capacity, "case " + std::to_string(i));
    if (HasFailure()) return;
  }
}

TEST(FastInflateTest, ThreadsInflateConcurrentlyWithTheirOwnDecompressors) {
  const Bytes data = sample(1 << 18, true);
  const Bytes z = deflated(data);
  constexpr int kThreads = 4;
  constexpr int kCalls = 50;
  const uint64_t calls = fast_inflate_calls();
  std::vector<int> good(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kCalls; ++i) {
        Bytes dest(data.size());
        uLongf dest_len = dest.size();
        if (uncompress(dest.data(), &dest_len, z.data(), z.size()) == Z_OK && dest == data) {
          ++good[static_cast<size_t>(t)];
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(good, std::vector<int>(kThreads, kCalls));
  EXPECT_EQ(fast_inflate_calls() - calls, uint64_t{kThreads * kCalls});
}

// Native pixels of every subimage of a file, and its shape.
struct Pixels {
  std::vector<std::string> shape;
  std::vector<unsigned char> bytes;
};

Pixels read_native(const std::string& path) {
  Pixels out;
  auto in = OIIO::ImageInput::open(path);
  if (!in) return out;
  for (int subimage = 0; in->seek_subimage(subimage, 0); ++subimage) {
    const OIIO::ImageSpec& spec = in->spec();
    std::string shape = std::to_string(spec.x) + "," + std::to_string(spec.y) + " " +
                        std::to_string(spec.width) + "x" + std::to_string(spec.height);
    for (int c = 0; c < spec.nchannels; ++c) {
      shape += " " + std::string(spec.channel_name(c)) + ":" + spec.channelformat(c).c_str();
    }
    std::vector<unsigned char> bytes(spec.image_bytes(true));
    if (!in->read_image(subimage, 0, 0, spec.nchannels, OIIO::TypeUnknown, bytes.data())) {
      return {};
    }
    out.shape.push_back(shape);
    out.bytes.insert(out.bytes.end(), bytes.begin(), bytes.end());
  }
  return out;
}

std::string compression_of(const std::string& path) {
  auto in = OIIO::ImageInput::open(path);
  return in ? std::string(in->spec().get_string_attribute("compression")) : std::string();
}

// Each file, decoded here (through libdeflate), gives bit for bit the pixels of
// an uncompressed copy that oiiotool -- another process, linking stock zlib --
// wrote; reading that copy inflates nothing.
TEST(FastInflateTest, ZipExrDecodedThroughOiioInflatesHereAndMatchesOiiotool) {
  farmhand::testing_support::TempDir dir;

  const struct {
    const char* file;
    const char* compression;
  } cases[] = {
      {"TestImages/BrightRings.exr", "zip"},        // ZIP, 16 scanlines a block
      {"TestImages/BrightRingsNanInf.exr", "zip"},  // NaN and Inf halves
      {"Beachball/singlepart.0001.exr", "zips"},    // ZIPS, 20 channels
      {"Beachball/multipart.0001.exr", "zips"},     // 10 parts
      {"TestImages/GammaChart.exr", "pxr24"},       // PXR24 inflates too
  };

  for (const auto& c : cases) {
    SCOPED_TRACE(c.file);
    const std::string path = data_file(c.file);
    ASSERT_EQ(compression_of(path), c.compression);
    const std::string copy = dir.file("copy.exr");
    const int status = std::system(
        ("oiiotool -a '" + path + "' --compression none -o '" + copy + "' >/dev/null").c_str());
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "oiiotool failed";
    ASSERT_EQ(compression_of(copy), "none");

    const uint64_t before_copy = fast_inflate_calls();
    const Pixels reference = read_native(copy);
    EXPECT_EQ(fast_inflate_calls(), before_copy) << "an uncompressed file inflated something";

    const uint64_t calls = fast_inflate_calls();
    const uint64_t fallbacks = fast_inflate_zlib_fallbacks();
    const Pixels decoded = read_native(path);
    EXPECT_GT(fast_inflate_calls(), calls) << "OpenEXR did not call this process's uncompress";
    EXPECT_EQ(fast_inflate_zlib_fallbacks(), fallbacks);

    ASSERT_FALSE(decoded.bytes.empty());
    EXPECT_EQ(decoded.shape, reference.shape);
    EXPECT_TRUE(decoded.bytes == reference.bytes) << "pixels differ";
  }
}

}  // namespace
}  // namespace farmhand::media
