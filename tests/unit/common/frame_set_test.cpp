#include "common/frame_set.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

namespace farmhand::common {
namespace {

using Frames = std::vector<int64_t>;

FrameSet parse_ok(std::string_view text) {
  Result<FrameSet> set = FrameSet::parse(text);
  if (!set) {
    ADD_FAILURE() << "parse('" << text << "') failed: " << set.error().reason;
    return FrameSet();
  }
  return *set;
}

Frames frames_of(const FrameSet& set) {
  Frames frames;
  for (uint64_t i = 0; i < set.size(); ++i) frames.push_back(set.frame_at(i));
  return frames;
}

Frames frames_of(std::string_view text) {
  return frames_of(parse_ok(text));
}

Frames iota_frames(int64_t first, int64_t last, int64_t step) {
  Frames frames;
  for (int64_t f = first; step > 0 ? f <= last : f >= last; f += step) frames.push_back(f);
  return frames;
}

// A deliberately naive fileseq expander: the oracle the property tests compare against.
Frames reference_frames(const std::string& text) {
  Frames out;
  std::set<int64_t> seen;
  auto emit = [&](int64_t frame) {
    if (seen.insert(frame).second) out.push_back(frame);
  };
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    const std::string item = text.substr(start, comma - start);
    start = comma + 1;
    size_t dash = item.find('-', 1);
    if (dash == std::string::npos) {
      emit(std::stoll(item));
      continue;
    }
    const size_t mod = item.find_first_of("xy:");
    const int64_t from = std::stoll(item.substr(0, dash));
    const int64_t to =
        std::stoll(item.substr(dash + 1, mod == std::string::npos ? mod : mod - dash - 1));
    const char kind = mod == std::string::npos ? 'x' : item[mod];
    const int64_t step = mod == std::string::npos ? 1 : std::stoll(item.substr(mod + 1));
    const int64_t direction = to >= from ? 1 : -1;
    const int64_t span = (to - from) * direction;
    if (kind == 'x') {
      for (int64_t o = 0; o <= span; o += step) emit(from + direction * o);
    } else if (kind == 'y') {
      for (int64_t o = 0; o <= span; ++o) {
        if (o % step != 0) emit(from + direction * o);
      }
    } else {
      for (int64_t s = step; s >= 1; --s) {
        for (int64_t o = 0; o <= span; o += s) emit(from + direction * o);
      }
    }
  }
  return out;
}

// Canonical form: ranges of three or more frames, adjacent pairs, or single frames with step 1.
void expect_canonical(const FrameSet& set) {
  for (const FrameRange& range : set.ranges()) {
    ASSERT_GE(range.count, 1u);
    if (range.count == 1) {
      EXPECT_EQ(range.step, 1);
    } else if (range.count == 2) {
      EXPECT_TRUE(range.step == 1 || range.step == -1) << range.first << " step " << range.step;
    } else {
      EXPECT_NE(range.step, 0);
    }
  }
}

// Every frame is found at its own position, and nearby frames that are absent are not found.
void expect_index_consistent(const FrameSet& set, int64_t probe_lo, int64_t probe_hi) {
  const Frames frames = frames_of(set);
  std::set<int64_t> present(frames.begin(), frames.end());
  ASSERT_EQ(present.size(), frames.size()) << "repeated frame in " << set.to_string();
  for (uint64_t i = 0; i < frames.size(); ++i) {
    ASSERT_EQ(set.index_of(frames[i]), i) << "frame " << frames[i] << " of " << set.to_string();
  }
  for (int64_t f = probe_lo; f <= probe_hi; ++f) {
    if (!present.count(f)) {
      EXPECT_FALSE(set.index_of(f).has_value()) << "frame " << f << " of " << set.to_string();
      EXPECT_FALSE(set.contains(f));
    }
  }
}

std::string random_item(std::mt19937& rng, int64_t bound, int64_t max_step) {
  std::uniform_int_distribution<int64_t> value(-bound, bound);
  std::uniform_int_distribution<int64_t> step(1, max_step);
  std::uniform_int_distribution<int> kind(0, 4);
  const int64_t from = value(rng);
  const int64_t to = value(rng);
  switch (kind(rng)) {
    case 0:
      return std::to_string(from);
    case 1:
      return std::to_string(from) + "-" + std::to_string(to);
    case 2:
      return std::to_string(from) + "-" + std::to_string(to) + "x" + std::to_string(step(rng));
    case 3:
      return std::to_string(from) + "-" + std::to_string(to) + "y" + std::to_string(step(rng));
    default:
      return std::to_string(from) + "-" + std::to_string(to) + ":" + std::to_string(step(rng));
  }
}

std::string random_set(std::mt19937& rng, int items, int64_t bound, int64_t max_step) {
  std::string text;
  for (int i = 0; i < items; ++i) {
    if (i > 0) text += ",";
    text += random_item(rng, bound, max_step);
  }
  return text;
}

// Parses `text` and checks it against the oracle: frames, indexing, round trip and slices.
void check_against_reference(const std::string& text, std::mt19937& rng) {
  SCOPED_TRACE(text);
  const Frames expected = reference_frames(text);
  Result<FrameSet> set = FrameSet::parse(text);
  if (expected.empty()) {
    ASSERT_FALSE(set.has_value());
    EXPECT_NE(set.error().reason.find("lists no frames"), std::string::npos);
    return;
  }
  ASSERT_TRUE(set.has_value()) << set.error().reason;
  ASSERT_EQ(frames_of(*set), expected);
  expect_canonical(*set);
  const auto [lo, hi] = std::minmax_element(expected.begin(), expected.end());
  expect_index_consistent(*set, *lo - 3, *hi + 3);
  // Ranges are canonical: the same frames given one at a time build an equal set.
  std::vector<FrameRange> singles;
  for (int64_t frame : expected) singles.push_back({frame, 1, 1});
  const Result<FrameSet> from_singles = FrameSet::from_ranges(singles);
  ASSERT_TRUE(from_singles.has_value());
  EXPECT_EQ(*from_singles, *set);
  const Result<FrameSet> reparsed = FrameSet::parse(set->to_string());
  ASSERT_TRUE(reparsed.has_value()) << set->to_string();
  EXPECT_EQ(*reparsed, *set) << set->to_string();
  std::uniform_int_distribution<uint64_t> position(0, set->size());
  const uint64_t first = position(rng);
  const uint64_t count = position(rng);
  const FrameSet part = set->slice(first, count);
  const uint64_t end = std::min<uint64_t>(first + count, set->size());
  EXPECT_EQ(frames_of(part), Frames(expected.begin() + static_cast<ptrdiff_t>(first),
                                    expected.begin() + static_cast<ptrdiff_t>(end)));
  expect_canonical(part);
}

void expect_parse_error(std::string_view text, std::string_view reason) {
  const Result<FrameSet> set = FrameSet::parse(text);
  ASSERT_FALSE(set.has_value()) << "'" << text << "' parsed as " << set->to_string();
  EXPECT_EQ(set.error().code, ErrorCode::kInvalidArgument) << text;
  EXPECT_EQ(set.error().reason, reason) << text;
}

TEST(FrameSetTest, SingleFrameParsesToOneFrame) {
  EXPECT_EQ(frames_of("7"), (Frames{7}));
  EXPECT_EQ(frames_of("-3"), (Frames{-3}));
  EXPECT_EQ(frames_of("0"), (Frames{0}));
}

TEST(FrameSetTest, CommaSeparatedItemsIgnoreSurroundingWhitespace) {
  EXPECT_EQ(frames_of(" 1 ,\t5 , 9-11 \n"), (Frames{1, 5, 9, 10, 11}));
}

TEST(FrameSetTest, AscendingRangeListsEveryFrame) {
  const FrameSet set = parse_ok("1-100");
  EXPECT_EQ(frames_of(set), iota_frames(1, 100, 1));
  EXPECT_EQ(set.ranges(), (std::vector<FrameRange>{{1, 1, 100}}));
}

TEST(FrameSetTest, DescendingRangeKeepsDescendingOrder) {
  EXPECT_EQ(frames_of("10-1"), iota_frames(10, 1, -1));
  EXPECT_EQ(parse_ok("10-1").ranges(), (std::vector<FrameRange>{{10, -1, 10}}));
}

TEST(FrameSetTest, StepRangeListsEveryNthFrame) {
  EXPECT_EQ(frames_of("1-100x2"), iota_frames(1, 99, 2));
  EXPECT_EQ(frames_of("1-10x3"), (Frames{1, 4, 7, 10}));
  EXPECT_EQ(frames_of("1-10x20"), (Frames{1}));
}

TEST(FrameSetTest, DescendingStepRangeStepsInTheRangeDirection) {
  EXPECT_EQ(frames_of("10-1x2"), (Frames{10, 8, 6, 4, 2}));
}

TEST(FrameSetTest, FillRangeListsTheFramesTheStepSkips) {
  EXPECT_EQ(frames_of("1-100y2"), iota_frames(2, 100, 2));
  EXPECT_EQ(frames_of("1-10y3"), (Frames{2, 3, 5, 6, 8, 9}));
  EXPECT_EQ(frames_of("10-1y3"), (Frames{9, 8, 6, 5, 3, 2}));
}

TEST(FrameSetTest, StaggeredRangeListsEachStepOnce) {
  EXPECT_EQ(frames_of("1-10:3"), (Frames{1, 4, 7, 10, 3, 5, 9, 2, 6, 8}));
  EXPECT_EQ(frames_of("10-1:3"), (Frames{10, 7, 4, 1, 8, 6, 2, 9, 5, 3}));
  EXPECT_EQ(frames_of("1-3:5"), (Frames{1, 3, 2}));
  EXPECT_EQ(parse_ok("1-10:1"), parse_ok("1-10"));
}

TEST(FrameSetTest, NegativeRangesParse) {
  EXPECT_EQ(frames_of("-10--1"), iota_frames(-10, -1, 1));
  EXPECT_EQ(frames_of("-5-5"), iota_frames(-5, 5, 1));
  EXPECT_EQ(frames_of("-5--10"), iota_frames(-5, -10, -1));
  EXPECT_EQ(frames_of("-1--9x4"), (Frames{-1, -5, -9}));
}

TEST(FrameSetTest, LaterRepeatsOfAFrameAreDropped) {
  EXPECT_EQ(frames_of("1-5,3-8"), iota_frames(1, 8, 1));
  EXPECT_EQ(frames_of("5,1-10"), (Frames{5, 1, 2, 3, 4, 6, 7, 8, 9, 10}));
  EXPECT_EQ(frames_of("1-10,1-10"), iota_frames(1, 10, 1));
  EXPECT_EQ(frames_of("1-20x2,1-20x3"), (Frames{1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 4, 10, 16}));
  EXPECT_EQ(frames_of("10-1,3,12"), (Frames{10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 12}));
}

TEST(FrameSetTest, InterleavedStepRangesKeepTheirOrder) {
  const FrameSet set = parse_ok("1-100x2,2-100x2");
  Frames expected = iota_frames(1, 99, 2);
  const Frames evens = iota_frames(2, 100, 2);
  expected.insert(expected.end(), evens.begin(), evens.end());
  EXPECT_EQ(frames_of(set), expected);
  EXPECT_EQ(set.ranges().size(), 2u);
  expect_index_consistent(set, -5, 105);
}

TEST(FrameSetTest, SingleFramesMergeIntoProgressions) {
  EXPECT_EQ(parse_ok("1,2,3").ranges(), (std::vector<FrameRange>{{1, 1, 3}}));
  EXPECT_EQ(parse_ok("1,3,5").ranges(), (std::vector<FrameRange>{{1, 2, 3}}));
  EXPECT_EQ(parse_ok("1-3,4-6"), parse_ok("1-6"));
  EXPECT_EQ(parse_ok("1,100,101,102").to_string(), "1,100-102");
  EXPECT_EQ(parse_ok("5,1-10").to_string(), "5,1-4,6-10");
}

TEST(FrameSetTest, EqualityComparesFrameOrder) {
  EXPECT_EQ(parse_ok("1-4,5"), parse_ok("1,2-5"));
  EXPECT_NE(parse_ok("1-6"), parse_ok("6-1"));
  EXPECT_NE(parse_ok("1,5"), parse_ok("5,1"));
}

TEST(FrameSetTest, ToStringWritesCompactFileseqText) {
  const std::vector<std::pair<std::string, std::string>> cases = {{"1-100", "1-100"},
                                                                  {"1-100x2", "1-99x2"},
                                                                  {"10-1", "10-1"},
                                                                  {"10-1x2", "10-2x2"},
                                                                  {"5", "5"},
                                                                  {"1-10,20-30", "1-10,20-30"},
                                                                  {"-10--1", "-10--1"},
                                                                  {"1,5", "1,5"},
                                                                  {"1-5x4", "1,5"},
                                                                  {"1-2", "1-2"},
                                                                  {"2,1", "2-1"},
                                                                  {"1-10:3", "1-10x3,3,5,9,2,6,8"},
                                                                  {"-1,-3,-5", "-1--5x2"}};
  for (const auto& [text, expected] : cases) {
    EXPECT_EQ(parse_ok(text).to_string(), expected) << text;
  }
  EXPECT_EQ(FrameSet().to_string(), "");
}

TEST(FrameSetTest, ToStringParsesBackToAnEqualSet) {
  for (const char* text :
       {"1-100", "1-100x2", "10-1", "10-1x2", "1-100y2", "1-100y3", "1-100:3", "-10--1", "-5-5",
        "-5--10", "1,5", "5,1-10", "1-100x2,2-100x2", "1-10,20-30", "3,1,2", "1-100x7,50-1:4",
        "-9223372036854775808,9223372036854775807",
        "-4000000000000000000-4000000000000000000x2000000000000000000"}) {
    const FrameSet set = parse_ok(text);
    const Result<FrameSet> again = FrameSet::parse(set.to_string());
    ASSERT_TRUE(again.has_value()) << text << " -> " << set.to_string();
    EXPECT_EQ(*again, set) << text << " -> " << set.to_string();
    EXPECT_EQ(frames_of(*again), frames_of(set)) << text;
  }
}

TEST(FrameSetTest, MalformedItemsAreRejectedWithTheItem) {
  expect_parse_error("", "empty frame set");
  expect_parse_error("  \t", "empty frame set");
  for (const char* item : {"1-",
                           "a",
                           "1-10x0",
                           "1-10x",
                           "--5",
                           "1--",
                           "1-10x-2",
                           "9999999999999999999999",
                           "1-10y0",
                           "1-10:0",
                           "1-10:-1",
                           "1-10z2",
                           "1 - 10",
                           "+5",
                           "1-10x2x2",
                           "5x2",
                           "1.5",
                           "1-10x 2",
                           "9223372036854775808",
                           "-9223372036854775809",
                           "1-99999999999999999999999"}) {
    expect_parse_error(item, "bad frame set item '" + std::string(item) + "'");
  }
  expect_parse_error("1,,2", "bad frame set item ''");
  expect_parse_error("1-10,", "bad frame set item ''");
  expect_parse_error("1-10, x ,3", "bad frame set item 'x'");
}

TEST(FrameSetTest, Int64ExtremesAreFramesButWiderSpansAreRejected) {
  EXPECT_EQ(frames_of("9223372036854775807"), (Frames{std::numeric_limits<int64_t>::max()}));
  EXPECT_EQ(frames_of("-9223372036854775808"), (Frames{std::numeric_limits<int64_t>::min()}));
  // A span wider than int64 cannot be a FrameRange.
  expect_parse_error("-9223372036854775808-9223372036854775807",
                     "bad frame set item '-9223372036854775808-9223372036854775807'");
  const FrameSet ends = parse_ok("-9223372036854775808,0,9223372036854775807");
  EXPECT_EQ(ends.size(), 3u);
  EXPECT_EQ(ends.index_of(std::numeric_limits<int64_t>::max()), 2u);
  expect_index_consistent(ends, -3, 3);
  const FrameSet top = parse_ok("9223372036854775800-9223372036854775807");
  EXPECT_EQ(top.size(), 8u);
  EXPECT_EQ(top.index_of(std::numeric_limits<int64_t>::max()), 7u);
}

TEST(FrameSetTest, FillRangeWithStepOneListsNoFrames) {
  expect_parse_error("1-10y1", "frame set '1-10y1' lists no frames");
  EXPECT_EQ(frames_of("1-10y1,5"), (Frames{5}));
}

TEST(FrameSetTest, MillionFrameRangeIsStoredAsOneRange) {
  const FrameSet set = parse_ok("1-1000000");
  EXPECT_EQ(set.size(), 1'000'000u);
  EXPECT_EQ(set.ranges(), (std::vector<FrameRange>{{1, 1, 1'000'000}}));
  EXPECT_EQ(set.frame_at(999'999), 1'000'000);
  EXPECT_EQ(set.index_of(123'456), 123'455u);
  EXPECT_FALSE(set.contains(0));
  EXPECT_EQ(set.to_string(), "1-1000000");
}

TEST(FrameSetTest, SetAtTheFrameLimitIsOneRange) {
  const FrameSet set = parse_ok("1-100000000");
  EXPECT_EQ(set.size(), FrameSet::kMaxFrames);
  EXPECT_EQ(set.ranges().size(), 1u);
}

TEST(FrameSetTest, SetOverTheFrameLimitIsRefusedBeforeExpanding) {
  // Would take gigabytes if anything were expanded before the check.
  expect_parse_error("1-1000000000", "frame set of 1000000000 frames over the limit of 100000000");
  expect_parse_error("1-1000000000:7",
                     "frame set of 1000000000 frames over the limit of 100000000");
  expect_parse_error("1-1000000000y3", "frame set of 666666666 frames over the limit of 100000000");
  expect_parse_error("0-9223372036854775807",
                     "frame set of 9223372036854775808 frames over the limit of 100000000");
  // Repeats count too: the limit is checked on frames as listed.
  expect_parse_error("1-60000000,1-60000000",
                     "frame set of 120000000 frames over the limit of 100000000");
}

TEST(FrameSetTest, SetNeedingTooManyRangesIsRefused) {
  // Within the frame limit, but 33M two-frame ranges would take gigabytes.
  expect_parse_error("1-100000000y3", "frame set needs more than 10000000 ranges");
}

TEST(FrameSetTest, LargeOverlappingRangesResolveWithoutExpanding) {
  const FrameSet set = parse_ok("1-50000000,25000000-70000000");
  EXPECT_EQ(set.size(), 70'000'000u);
  EXPECT_EQ(set.ranges(), (std::vector<FrameRange>{{1, 1, 70'000'000}}));
  const FrameSet inside = parse_ok("1-50000000,20000000-30000000x7,90000000-80000000");
  EXPECT_EQ(inside.size(), 60'000'001u);
  EXPECT_EQ(inside.to_string(), "1-50000000,90000000-80000000");
}

TEST(FrameSetTest, LargeInterleavedRangesAreNotExpanded) {
  const FrameSet set = parse_ok("1-100000000x2,2-100000000x2");
  EXPECT_EQ(set.size(), 100'000'000u);
  EXPECT_EQ(set.ranges(), (std::vector<FrameRange>{{1, 2, 50'000'000}, {2, 2, 50'000'000}}));
  EXPECT_EQ(set.index_of(99'999'999), 49'999'999u);
  EXPECT_EQ(set.index_of(100'000'000), 99'999'999u);
  EXPECT_EQ(set.index_of(2), 50'000'000u);
  EXPECT_FALSE(set.contains(100'000'001));
  const FrameSet thirds = parse_ok("1-3000000x3,1-3000000x2");
  EXPECT_EQ(thirds.size(), 1'000'000u + 1'500'000u - 500'000u);
  EXPECT_EQ(thirds.index_of(3), 1'000'000u);
  EXPECT_EQ(thirds.index_of(7), 2u);
  EXPECT_FALSE(thirds.contains(2));
}

TEST(FrameSetTest, HeavilyOverlappingDenseSetsStillDropRepeats) {
  // Too many pieces for exact progression arithmetic; resolved over a bitmap instead.
  const std::string text = "1-100000y3,1-100000,50000-150000x2";
  const FrameSet set = parse_ok(text);
  EXPECT_EQ(frames_of(set), reference_frames(text));
  expect_canonical(set);
}

TEST(FrameSetTest, HeavilyOverlappingSparseSetsStillDropRepeats) {
  // Frames a billion apart: resolved over a sorted list of frames rather than a bitmap.
  constexpr int64_t kGap = 1'000'000'007;
  std::vector<FrameRange> ranges;
  Frames expected;
  for (int64_t i = 0; i < 2000; ++i) {
    ranges.push_back({i * kGap + i % 7, 1, 1});
    expected.push_back(i * kGap + i % 7);
  }
  ranges.push_back({0, kGap, 2000});
  for (int64_t i = 0; i < 2000; ++i) {
    if (i % 7 != 0) expected.push_back(i * kGap);
  }
  const Result<FrameSet> set = FrameSet::from_ranges(ranges);
  ASSERT_TRUE(set.has_value()) << set.error().reason;
  EXPECT_EQ(frames_of(*set), expected);
  expect_canonical(*set);
}

TEST(FrameSetTest, OverlapTooLargeToResolveIsAnError) {
  expect_parse_error("1-30000000y3,1-30000000", "overlapping frame ranges too large to resolve");
}

TEST(FrameSetTest, LargeFillRangeIndexesEveryFrame) {
  const FrameSet set = parse_ok("1-1000000y3");
  EXPECT_EQ(set.size(), 666'666u);
  EXPECT_EQ(set.ranges().size(), 333'333u);
  for (uint64_t i = 0; i < set.size(); ++i) {
    ASSERT_EQ(set.index_of(set.frame_at(i)), i);
  }
  for (int64_t f = 1; f <= 1'000'000; f += 3) ASSERT_FALSE(set.contains(f)) << f;
  EXPECT_EQ(set.frame_at(0), 2);
  EXPECT_EQ(set.frame_at(666'665), 999'999);
  EXPECT_FALSE(set.contains(1'000'001));
}

TEST(FrameSetTest, WideRangeOverManySmallOnesIndexesEveryFrame) {
  // The leading 1-1000000x3 spans every later range, so prefix maxima alone would scan them all.
  const FrameSet set = parse_ok("1-1000000:3");
  EXPECT_EQ(set.size(), 1'000'000u);
  EXPECT_GT(set.ranges().size(), 300'000u);
  for (uint64_t i = 0; i < set.size(); i += 7) {
    ASSERT_EQ(set.index_of(set.frame_at(i)), i);
  }
  EXPECT_EQ(set.index_of(1'000'000), 333'333u);
  EXPECT_FALSE(set.contains(0));
  EXPECT_FALSE(set.contains(1'000'001));
}

TEST(FrameSetTest, IndexOfAndFrameAtAgreeOnAssortedSets) {
  for (const char* text :
       {"1-100", "100-1", "1-100x3,2-100x3,3-100x3", "100-1x3,99-1x3", "1-50y4,50-1y4", "1-40:5",
        "40-1:5", "-20-20x2,20--20x2", "7,3,9,1-5", "1-10,100-90,50-60x5,-5"}) {
    SCOPED_TRACE(text);
    const FrameSet set = parse_ok(text);
    expect_canonical(set);
    expect_index_consistent(set, -30, 130);
  }
}

TEST(FrameSetTest, RandomSetsMatchANaiveExpansion) {
  std::mt19937 rng(20240611);
  for (int round = 0; round < 1500; ++round) {
    check_against_reference(random_set(rng, 1 + round % 6, 25, 5), rng);
  }
}

TEST(FrameSetTest, RandomWideSetsMatchANaiveExpansion) {
  std::mt19937 rng(7);
  for (int round = 0; round < 100; ++round) {
    check_against_reference(random_set(rng, 2 + round % 12, 3000, 60), rng);
  }
}

TEST(FrameSetTest, SliceOfOneRangeIsOneRange) {
  const FrameSet set = parse_ok("1-1000000");
  const FrameSet part = set.slice(10, 100);
  EXPECT_EQ(part.ranges(), (std::vector<FrameRange>{{11, 1, 100}}));
  EXPECT_EQ(parse_ok("100-1x3").slice(1, 5).to_string(), "97-85x3");
}

TEST(FrameSetTest, SliceCrossesRangesInSetOrder) {
  const FrameSet set = parse_ok("1-5,20-10x5,7");
  EXPECT_EQ(frames_of(set.slice(3, 4)), (Frames{4, 5, 20, 15}));
  EXPECT_EQ(frames_of(set.slice(4, 100)), (Frames{5, 20, 15, 10, 7}));
  EXPECT_EQ(set.slice(0, set.size()), set);
}

TEST(FrameSetTest, SliceIsClampedToTheSet) {
  const FrameSet set = parse_ok("1-10");
  EXPECT_EQ(set.slice(8, 100).to_string(), "9-10");
  EXPECT_TRUE(set.slice(10, 5).empty());
  EXPECT_TRUE(set.slice(3, 0).empty());
  EXPECT_TRUE(set.slice(std::numeric_limits<uint64_t>::max(), 2).empty());
  EXPECT_EQ(set.slice(2, std::numeric_limits<uint64_t>::max()).size(), 8u);
}

TEST(FrameSetTest, SliceOfAProgressionKeepsOnlyCanonicalRanges) {
  // Two frames of a x4 progression are written as two single frames, as parse would give.
  const FrameSet part = parse_ok("1-100x4").slice(3, 2);
  EXPECT_EQ(part.to_string(), "13,17");
  EXPECT_EQ(part, parse_ok("13,17"));
  expect_canonical(part);
}

TEST(FrameSetTest, SlicesCoverTheSetInOrder) {
  const FrameSet set = parse_ok("1-1000:4,2000-1500x3");
  Frames joined;
  for (uint64_t first = 0; first < set.size(); first += 37) {
    const Frames part = frames_of(set.slice(first, 37));
    joined.insert(joined.end(), part.begin(), part.end());
  }
  EXPECT_EQ(joined, frames_of(set));
}

TEST(FrameSetTest, RangeBuildsConsecutiveFrames) {
  EXPECT_EQ(FrameSet::range(10, 5).to_string(), "10-14");
  EXPECT_EQ(FrameSet::range(-2, 1).to_string(), "-2");
  EXPECT_TRUE(FrameSet::range(10, 0).empty());
  EXPECT_EQ(FrameSet::range(1, 100), parse_ok("1-100"));
}

TEST(FrameSetTest, FromRangesDropsLaterRepeats) {
  const Result<FrameSet> set =
      FrameSet::from_ranges({{1, 1, 10}, {5, 1, 10}, {30, -2, 3}, {26, 7, 1}, {0, 3, 0}});
  ASSERT_TRUE(set.has_value()) << set.error().reason;
  EXPECT_EQ(set->to_string(), "1-14,30-26x2");
  const Result<FrameSet> empty = FrameSet::from_ranges({});
  ASSERT_TRUE(empty.has_value());
  EXPECT_TRUE(empty->empty());
  EXPECT_EQ(empty->size(), 0u);
  EXPECT_FALSE(empty->contains(0));
}

TEST(FrameSetTest, FromRangesTreatsAStepOfASingleFrameAsOne) {
  const Result<FrameSet> set = FrameSet::from_ranges({{4, 0, 1}});
  ASSERT_TRUE(set.has_value()) << set.error().reason;
  EXPECT_EQ(set->ranges(), (std::vector<FrameRange>{{4, 1, 1}}));
}

TEST(FrameSetTest, FromRangesRejectsBadRanges) {
  const Result<FrameSet> zero_step = FrameSet::from_ranges({{1, 0, 3}});
  ASSERT_FALSE(zero_step.has_value());
  EXPECT_EQ(zero_step.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(zero_step.error().reason, "bad frame range first=1 step=0 count=3");
  const Result<FrameSet> overflow =
      FrameSet::from_ranges({{std::numeric_limits<int64_t>::max() - 1, 1, 3}});
  ASSERT_FALSE(overflow.has_value());
  EXPECT_EQ(overflow.error().code, ErrorCode::kInvalidArgument);
  const Result<FrameSet> too_many =
      FrameSet::from_ranges({{1, 1, 60'000'000}, {1, -1, 60'000'000}});
  ASSERT_FALSE(too_many.has_value());
  EXPECT_EQ(too_many.error().reason, "frame set of 120000000 frames over the limit of 100000000");
}

TEST(FrameSetTest, DefaultSetIsEmpty) {
  const FrameSet set;
  EXPECT_TRUE(set.empty());
  EXPECT_EQ(set.size(), 0u);
  EXPECT_FALSE(set.index_of(1).has_value());
  EXPECT_TRUE(set.slice(0, 10).empty());
  EXPECT_EQ(set, FrameSet::range(5, 0));
}

}  // namespace
}  // namespace farmhand::common
