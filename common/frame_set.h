// FrameSet: an ordered set of unique frame numbers in fileseq syntax, stored compactly.
//
// Syntax (fileseq conventions): comma-separated items, each one of
//   "7", "-3"                single frames (negative frames allowed)
//   "1-100"                  a range (descending "10-1" is kept in that order)
//   "1-100x2"                every 2nd frame: 1,3,...,99
//   "1-100y2"                the frames "1-100x2" leaves out: 2,4,...,100
//   "1-100:2"                staggered: 1-100x2, then the rest of 1-100x1
//   "-10--1", "-5-5"         ranges with negative ends
// Whitespace around items is ignored. A frame repeated by a later item is
// dropped (first occurrence wins, as in fileseq).
//
// Storage is a list of arithmetic progressions, so "1-1000000" is one range, not
// a million integers. Indexing (frame_at, index_of) is O(log ranges).
//
// Value type; not thread-safe for concurrent mutation, safe to share const.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace farmhand::common {

// One arithmetic progression: first, first+step, ..., count values. step != 0
// unless count == 1 (then step is 1).
struct FrameRange {
  int64_t first = 0;
  int64_t step = 1;
  uint64_t count = 0;

  int64_t last() const { return first + step * static_cast<int64_t>(count - 1); }

  bool operator==(const FrameRange&) const = default;
};

class FrameSet {
 public:
  // Most frames a set may hold; larger inputs are refused rather than stored.
  static constexpr uint64_t kMaxFrames = 100'000'000;

  FrameSet() = default;

  // Parses fileseq syntax. Errors are one line naming the bad item, e.g.
  // "bad frame set item '1-x'"; an empty string is an error ("empty frame set").
  [[nodiscard]] static Result<FrameSet> parse(std::string_view text);

  // A set of `count` consecutive frames starting at `first`.
  static FrameSet range(int64_t first, uint64_t count);

  // Builds from ranges given in order; later duplicates are dropped.
  [[nodiscard]] static Result<FrameSet> from_ranges(std::vector<FrameRange> ranges);

  uint64_t size() const { return size_; }

  bool empty() const { return size_ == 0; }

  // The frame at position `index` (0-based, in set order). index < size().
  int64_t frame_at(uint64_t index) const;

  // The position of `frame` in set order, or nullopt if absent.
  std::optional<uint64_t> index_of(int64_t frame) const;

  bool contains(int64_t frame) const { return index_of(frame).has_value(); }

  // The sub-set at positions [first_index, first_index + count), clamped to size().
  FrameSet slice(uint64_t first_index, uint64_t count) const;

  // Compact fileseq text: "1-100", "1-99x2", "1-10,20-30", "5".
  std::string to_string() const;

  const std::vector<FrameRange>& ranges() const { return ranges_; }

  bool operator==(const FrameSet& other) const { return ranges_ == other.ranges_; }

 private:
  std::vector<FrameRange> ranges_;   // in set order
  std::vector<uint64_t> offsets_;    // offsets_[i] = index of ranges_[i].first
  std::vector<uint32_t> by_min_;     // range indices sorted by their smallest frame
  std::vector<int64_t> prefix_max_;  // running max of largest frame over by_min_
  // Max tree of largest frames over by_min_ (leaves from max_tree_.size() / 2); built only when
  // range spans overlap, so index_of can skip ranges a wide one shadows in prefix_max_.
  std::vector<int64_t> max_tree_;
  uint64_t size_ = 0;

  // Takes ranges already in canonical form (see RangeBuilder in frame_set.cpp) and indexes them.
  static FrameSet adopt(std::vector<FrameRange> ranges);

  void rebuild_index();
};

}  // namespace farmhand::common
