// CHUNK[INT] chunking and the canonical range expression of a set of integers.
#include "openjd/chunks.h"

#include <cstdint>
#include <numeric>
#include <vector>

#include <gtest/gtest.h>

namespace farmhand::openjd {
namespace {

std::vector<int64_t> span(int64_t first, int64_t last) {
  std::vector<int64_t> out(static_cast<size_t>(last - first + 1));
  std::iota(out.begin(), out.end(), first);
  return out;
}

using Chunks = std::vector<std::string>;

TEST(ChunksTest, ChunksAreBalancedSoTheLastIsNoStraggler) {
  EXPECT_EQ(contiguous_chunks(5, span(1, 12)), (Chunks{"1-4", "5-8", "9-12"}));
  EXPECT_EQ(contiguous_chunks(3, span(1, 8)), (Chunks{"1-3", "4-6", "7-8"}));
  EXPECT_EQ(contiguous_chunks(5, span(1, 10)), (Chunks{"1-5", "6-10"}));
  EXPECT_EQ(contiguous_chunks(100, span(1, 5)), (Chunks{"1-5"}));
  EXPECT_EQ(contiguous_chunks(1, span(7, 9)), (Chunks{"7-7", "8-8", "9-9"}));
  // 10 values in chunks of 4: 3 chunks of 4, 3, 3; the larger first.
  EXPECT_EQ(chunk_sizes(4, 10), (std::vector<uint64_t>{4, 3, 3}));
  // 11 in chunks of 3: 4 chunks, the 3 larger ones spread out.
  EXPECT_EQ(chunk_sizes(3, 11), (std::vector<uint64_t>{3, 3, 3, 2}));
  EXPECT_EQ(chunk_sizes(6, 26), (std::vector<uint64_t>{6, 5, 5, 5, 5}));
  for (uint64_t count = 1; count <= 200; ++count) {
    for (uint64_t size = 1; size <= 30; ++size) {
      const auto sizes = chunk_sizes(size, count);
      EXPECT_EQ(sizes.size(), (count + size - 1) / size);
      EXPECT_EQ(std::accumulate(sizes.begin(), sizes.end(), uint64_t{0}), count);
      for (uint64_t s : sizes) {
        EXPECT_LE(s, size);
        EXPECT_GE(s + 1, count / sizes.size() + 1);
      }
    }
  }
}

TEST(ChunksTest, ContiguousChunksNeverSpanAGap) {
  std::vector<int64_t> values = span(1, 3);
  for (int64_t v : span(10, 14)) values.push_back(v);
  values.push_back(20);
  EXPECT_EQ(contiguous_chunks(4, values), (Chunks{"1-3", "10-12", "13-14", "20-20"}));
  EXPECT_EQ(contiguous_chunks(2, {-3, -2, -1, 0, 1}), (Chunks{"-3--2", "-1-0", "1-1"}));
}

TEST(ChunksTest, NoncontiguousChunksAreRangeExpressions) {
  EXPECT_EQ(noncontiguous_chunks(3, span(1, 8)), (Chunks{"1-3", "4-6", "7,8"}));
  EXPECT_EQ(noncontiguous_chunks(5, span(1, 10)), (Chunks{"1-5", "6-10"}));
  EXPECT_EQ(noncontiguous_chunks(4, {1, 3, 5, 7, 20, 21, 22, 40}), (Chunks{"1-7:2", "20-22,40"}));
}

TEST(ChunksTest, ARangeExpressionIsCanonicalOverTheWholeInt64Range) {
  EXPECT_EQ(range_expression_of({5}), "5");
  EXPECT_EQ(range_expression_of({7, 8}), "7,8");
  EXPECT_EQ(range_expression_of({1, 2, 3, 4, 5}), "1-5");
  EXPECT_EQ(range_expression_of({1, 3, 5, 7}), "1-7:2");
  EXPECT_EQ(range_expression_of({1, 2, 3, 10, 12, 14}), "1-3,10-14:2");
  EXPECT_EQ(range_expression_of({1, 2, 4}), "1,2,4");
  EXPECT_EQ(range_expression_of({INT64_MIN, 0, INT64_MAX}),
            "-9223372036854775808,0,9223372036854775807");
  EXPECT_EQ(range_expression_of({INT64_MIN, INT64_MAX}),
            "-9223372036854775808,9223372036854775807");
  EXPECT_EQ(contiguous_chunks(2, {INT64_MAX - 2, INT64_MAX - 1, INT64_MAX}),
            (Chunks{"9223372036854775805-9223372036854775806",
                    "9223372036854775807-9223372036854775807"}));
}

}  // namespace
}  // namespace farmhand::openjd
