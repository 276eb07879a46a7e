#include "common/frame_set.h"

#include <algorithm>
#include <array>
#include <cstddef>
#include <limits>
#include <numeric>
#include <utility>

namespace farmhand::common {

namespace {

// Exact progression arithmetic needs products of two 64-bit values.
__extension__ using Int128 = __int128;

constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();

// Overlapping items are first resolved exactly, by intersecting progressions; this bounds the
// pair checks and split ranges that may take before we fall back to expanding frames.
constexpr uint64_t kExactBudget = uint64_t{1} << 18;

// Most frames an overlapping group may list to be resolved by expansion: at worst (a sparse
// group) 8 bytes a frame, so ~160 MB.
constexpr uint64_t kExpandLimit = 20'000'000;

// Most ranges a set may take. Scattered frames cost ~50 bytes a range with the index, so
// "1-100000000:3" (67M ranges) would need 4 GB; this caps a set near 500 MB.
constexpr size_t kMaxRanges = 10'000'000;

Error too_many_ranges() {
  return Error{ErrorCode::kInvalidArgument,
               "frame set needs more than " + std::to_string(kMaxRanges) + " ranges"};
}

uint64_t magnitude(int64_t value) {
  return value < 0 ? 0 - static_cast<uint64_t>(value) : static_cast<uint64_t>(value);
}

// |a - b| without overflow.
uint64_t distance(int64_t a, int64_t b) {
  return a >= b ? static_cast<uint64_t>(a) - static_cast<uint64_t>(b)
                : static_cast<uint64_t>(b) - static_cast<uint64_t>(a);
}

int64_t range_min(const FrameRange& range) {
  return range.step < 0 ? range.last() : range.first;
}

int64_t range_max(const FrameRange& range) {
  return range.step < 0 ? range.first : range.last();
}

int64_t element(const FrameRange& range, uint64_t index) {
  return range.first + range.step * static_cast<int64_t>(index);
}

// The positions [begin, end) of `range`, which must be non-empty.
FrameRange sub_range(const FrameRange& range, uint64_t begin, uint64_t end) {
  const uint64_t count = end - begin;
  return FrameRange{element(range, begin), count == 1 ? 1 : range.step, count};
}

// The frame after range.last(), or false if it does not fit int64 (or if the range's span would
// no longer fit, which FrameRange::last() relies on).
bool next_after(const FrameRange& range, int64_t* next) {
  int64_t offset = 0;
  return !__builtin_mul_overflow(range.step, static_cast<int64_t>(range.count), &offset) &&
         !__builtin_add_overflow(range.first, offset, next);
}

// Turns a sequence of frames into the canonical list of ranges. Reading left to right, each
// range is the longest progression starting at its first frame, kept when it has three or more
// frames or two adjacent ones; otherwise the frame stands alone. Because the result depends only
// on the frame sequence, operator== compares sets however they were written, and "5,1-10"
// stays "5,1-4,6-10" rather than pairing 5 with 1.
class RangeBuilder {
 public:
  // Past `max_ranges` ranges the builder sets overflowed() and ignores further frames.
  explicit RangeBuilder(size_t max_ranges = std::numeric_limits<size_t>::max())
      : max_ranges_(max_ranges) {}

  bool overflowed() const { return overflowed_; }

  void add(const FrameRange& piece) {
    if (overflowed_) return;
    uint64_t i = 0;
    while (i < piece.count) {
      if (i >= 1 && cur_.count >= 2 && cur_.step == piece.step) {
        // cur_ ends at piece[i - 1] with the piece's step, so it takes the rest in bulk, as far
        // as its span still fits int64.
        const uint64_t fit = static_cast<uint64_t>(kInt64Max) / magnitude(piece.step) + 1;
        const uint64_t take = fit > cur_.count ? std::min(piece.count - i, fit - cur_.count) : 0;
        if (take > 0) {
          cur_.count += take;
          i += take;
          continue;
        }
      }
      add_frame(element(piece, i));
      ++i;
    }
  }

  void add_frame(int64_t frame) {
    if (overflowed_) return;
    if (cur_.count == 0) {
      cur_ = FrameRange{frame, 1, 1};
      return;
    }
    if (cur_.count == 1) {
      int64_t step = 0;
      if (__builtin_sub_overflow(frame, cur_.first, &step)) {
        emit(cur_);
        cur_ = FrameRange{frame, 1, 1};
        return;
      }
      FARMHAND_CHECK(step != 0);
      cur_.step = step;
      cur_.count = 2;
      return;
    }
    int64_t next = 0;
    if (next_after(cur_, &next) && next == frame) {
      ++cur_.count;
      return;
    }
    if (cur_.count >= 3 || cur_.step == 1 || cur_.step == -1) {
      emit(cur_);
      cur_ = FrameRange{frame, 1, 1};
      return;
    }
    // A pair with a wide step is not worth a range: its first frame stands alone and its second
    // may start a progression with `frame`.
    const int64_t second = cur_.last();
    emit(FrameRange{cur_.first, 1, 1});
    cur_ = FrameRange{second, 1, 1};
    add_frame(frame);
  }

  std::vector<FrameRange> finish() {
    if (cur_.count == 2 && cur_.step != 1 && cur_.step != -1) {
      emit(FrameRange{cur_.first, 1, 1});
      emit(FrameRange{cur_.last(), 1, 1});
    } else if (cur_.count > 0) {
      emit(cur_);
    }
    cur_ = FrameRange{0, 1, 0};
    return std::move(out_);
  }

 private:
  void emit(const FrameRange& range) {
    if (out_.size() >= max_ranges_) {
      overflowed_ = true;
      return;
    }
    out_.push_back(range);
  }

  std::vector<FrameRange> out_;
  FrameRange cur_{0, 1, 0};
  size_t max_ranges_;
  bool overflowed_ = false;
};

// One parsed item, or one range given to from_ranges, before repeats are dropped.
struct Item {
  enum class Kind { kProgression, kFill, kStagger };

  Kind kind = Kind::kProgression;
  FrameRange progression;  // kProgression
  int64_t from = 0;        // kFill, kStagger: the range's ends as written
  int64_t to = 0;
  uint64_t modulus = 1;  // kFill: the y step; kStagger: the first (largest) step
  uint64_t count = 0;    // frames listed
  int64_t lo = 0;        // no frame of the item lies outside [lo, hi]
  int64_t hi = 0;
};

Item progression_item(const FrameRange& range) {
  Item item;
  item.progression = range;
  item.count = range.count;
  item.lo = range_min(range);
  item.hi = range_max(range);
  return item;
}

// Calls sink(FrameRange) for consecutive pieces of the item's frames, in set order. Items are
// generated only after the frame limit check, so spans of y and : items are at most kMaxFrames.
template <typename Sink>
void generate(const Item& item, Sink&& sink) {
  if (item.kind == Item::Kind::kProgression) {
    sink(item.progression);
    return;
  }
  const int64_t direction = item.to >= item.from ? 1 : -1;
  const uint64_t span = distance(item.to, item.from);
  auto frame_at_offset = [&](uint64_t offset) {
    return item.from + direction * static_cast<int64_t>(offset);
  };
  if (item.kind == Item::Kind::kFill) {
    const uint64_t k = item.modulus;
    if (k == 1) return;
    if (k == 2) {
      // The odd offsets: one progression, so "1-100000000y2" never goes frame by frame.
      const uint64_t count = (span + 1) / 2;
      if (count > 0) sink(FrameRange{frame_at_offset(1), count == 1 ? 1 : 2 * direction, count});
      return;
    }
    // Runs of k - 1 frames between the multiples of k.
    for (uint64_t start = 1; start <= span;) {
      const uint64_t length = std::min(k - 1, span - start + 1);
      sink(FrameRange{frame_at_offset(start), length == 1 ? 1 : direction, length});
      if (span - start < k) break;
      start += k;
    }
    return;
  }
  // Stagger: passes with steps modulus, modulus - 1, ..., 1, each listing the frames no earlier
  // pass listed. Steps above the span list only offset 0, as the pass with step == span does.
  std::vector<uint64_t> listed(span / 64 + 1);
  for (uint64_t step = std::max<uint64_t>(std::min(item.modulus, span), 1); step >= 1; --step) {
    for (uint64_t offset = 0; offset <= span; offset += step) {
      uint64_t& word = listed[offset / 64];
      const uint64_t bit = uint64_t{1} << (offset % 64);
      if (word & bit) continue;
      word |= bit;
      sink(FrameRange{frame_at_offset(offset), 1, 1});
    }
  }
}

std::optional<uint64_t> parse_digits(std::string_view text, size_t& pos) {
  const size_t begin = pos;
  uint64_t value = 0;
  while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
    const auto digit = static_cast<uint64_t>(text[pos] - '0');
    if (value > (std::numeric_limits<uint64_t>::max() - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
    ++pos;
  }
  if (pos == begin) return std::nullopt;
  return value;
}

std::optional<int64_t> parse_frame(std::string_view text, size_t& pos) {
  const bool negative = pos < text.size() && text[pos] == '-';
  if (negative) ++pos;
  const std::optional<uint64_t> digits = parse_digits(text, pos);
  if (!digits) return std::nullopt;
  const uint64_t limit = static_cast<uint64_t>(kInt64Max) + (negative ? 1 : 0);
  if (*digits > limit) return std::nullopt;
  return negative ? static_cast<int64_t>(0 - *digits) : static_cast<int64_t>(*digits);
}

std::optional<Item> parse_item(std::string_view text) {
  size_t pos = 0;
  const std::optional<int64_t> from = parse_frame(text, pos);
  if (!from) return std::nullopt;
  if (pos == text.size()) return progression_item(FrameRange{*from, 1, 1});
  if (text[pos] != '-') return std::nullopt;
  ++pos;
  const std::optional<int64_t> to = parse_frame(text, pos);
  if (!to) return std::nullopt;
  char kind = 'x';
  uint64_t step = 1;
  if (pos < text.size()) {
    kind = text[pos++];
    if (kind != 'x' && kind != 'y' && kind != ':') return std::nullopt;
    const std::optional<uint64_t> digits = parse_digits(text, pos);
    if (!digits || *digits == 0 || pos != text.size()) return std::nullopt;
    step = *digits;
  }
  // Keeping every span within int64 keeps FrameRange::last() and all offsets overflow-free.
  const uint64_t span = distance(*to, *from);
  if (span > static_cast<uint64_t>(kInt64Max)) return std::nullopt;
  const int64_t direction = *to >= *from ? 1 : -1;
  if (kind == 'x') {
    const uint64_t count = span / step + 1;
    return progression_item(
        FrameRange{*from, count == 1 ? 1 : direction * static_cast<int64_t>(step), count});
  }
  Item item;
  item.kind = kind == 'y' ? Item::Kind::kFill : Item::Kind::kStagger;
  item.from = *from;
  item.to = *to;
  item.modulus = step;
  item.count = kind == 'y' ? span - span / step : span + 1;
  item.lo = std::min(*from, *to);
  item.hi = std::max(*from, *to);
  return item;
}

std::string_view trim(std::string_view text) {
  constexpr std::string_view kSpace = " \t\r\n\f\v";
  const size_t begin = text.find_first_not_of(kSpace);
  if (begin == std::string_view::npos) return {};
  return text.substr(begin, text.find_last_not_of(kSpace) - begin + 1);
}

// Rounded division for b > 0.
Int128 floor_div(Int128 a, Int128 b) {
  Int128 quotient = a / b;
  if (a % b != 0 && a < 0) --quotient;
  return quotient;
}

Int128 ceil_div(Int128 a, Int128 b) {
  return -floor_div(-a, b);
}

// a mod m in [0, m), for m > 0.
Int128 mod(Int128 a, Int128 m) {
  const Int128 r = a % m;
  return r < 0 ? r + m : r;
}

Int128 gcd(Int128 a, Int128 b) {
  while (b != 0) a = std::exchange(b, a % b);
  return a;
}

// x with a * x = 1 (mod m), for coprime a and m > 1.
Int128 mod_inverse(Int128 a, Int128 m) {
  Int128 old_r = a;
  Int128 r = m;
  Int128 old_s = 1;
  Int128 s = 0;
  while (r != 0) {
    const Int128 q = old_r / r;
    old_r = std::exchange(r, old_r - q * r);
    old_s = std::exchange(s, old_s - q * s);
  }
  return mod(old_s, m);
}

// Appends the frames of `f` that are not in `q` to `out`, as progressions in f's order. The
// frames both hold form one progression over f's positions (first_hit, first_hit + period, ...),
// so what remains is a head, a tail and the runs between hits. Returns false, appending
// nothing, if that takes more ranges than `budget` allows; otherwise charges them to it.
bool subtract(const FrameRange& f, const FrameRange& q, std::vector<FrameRange>& out,
              uint64_t& budget) {
  const Int128 a = f.first;
  const Int128 s = f.count == 1 ? 1 : f.step;
  const Int128 n = f.count;
  const Int128 q_lo = range_min(q);
  const Int128 q_hi = range_max(q);
  const Int128 q_step = q.count == 1 ? 1 : static_cast<Int128>(magnitude(q.step));
  // Positions of f inside q's span.
  Int128 i_lo = s > 0 ? ceil_div(q_lo - a, s) : ceil_div(a - q_hi, -s);
  Int128 i_hi = s > 0 ? floor_div(q_hi - a, s) : floor_div(a - q_lo, -s);
  i_lo = std::max<Int128>(i_lo, 0);
  i_hi = std::min<Int128>(i_hi, n - 1);
  auto keep_whole = [&] {
    out.push_back(f);
    return true;
  };
  if (i_lo > i_hi) return keep_whole();
  // Of those, the ones on q's grid: a + i * s = q_lo (mod q_step), i.e. i = base (mod period).
  Int128 period = 1;
  Int128 base = 0;
  if (q_step > 1) {
    const Int128 s_mod = mod(s, q_step);
    const Int128 target = mod(q_lo - a, q_step);
    const Int128 g = gcd(s_mod, q_step);
    if (target % g != 0) return keep_whole();
    period = q_step / g;
    if (period > 1) base = mod((target / g) * mod_inverse(s_mod / g, period), period);
  }
  const Int128 first_hit = i_lo + mod(base - i_lo, period);
  if (first_hit > i_hi) return keep_whole();
  const Int128 hits = (i_hi - first_hit) / period + 1;
  const Int128 last_hit = first_hit + (hits - 1) * period;

  // Positions are below f.count here, and the period too when there are two hits or more.
  const auto head_end = static_cast<uint64_t>(first_hit);
  const auto tail_begin = static_cast<uint64_t>(last_hit) + 1;
  const auto gaps = static_cast<uint64_t>(hits - 1);
  const uint64_t step = gaps > 0 ? static_cast<uint64_t>(period) : 0;
  uint64_t pieces = (head_end > 0 ? 1 : 0) + (tail_begin < f.count ? 1 : 0);
  if (step == 2) pieces += 1;
  if (step >= 3) pieces += gaps;
  if (pieces > budget) return false;
  budget -= pieces;

  if (head_end > 0) out.push_back(sub_range(f, 0, head_end));
  if (step == 2) {
    // The frames between hits one apart form one progression of twice f's step.
    out.push_back(FrameRange{element(f, head_end + 1), gaps == 1 ? 1 : 2 * f.step, gaps});
  } else if (step >= 3) {
    for (uint64_t gap = 0; gap < gaps; ++gap) {
      out.push_back(sub_range(f, head_end + gap * step + 1, head_end + (gap + 1) * step));
    }
  }
  if (tail_begin < f.count) out.push_back(sub_range(f, tail_begin, f.count));
  return true;
}

// Drops repeats within a group of items whose spans overlap, exactly, with progression
// arithmetic. Returns false if that would exceed kExactBudget; `survivors` is then unspecified.
bool resolve_exactly(const std::vector<Item>& items, const std::vector<uint32_t>& group,
                     std::vector<std::vector<FrameRange>>& survivors) {
  uint64_t estimate = 0;
  for (uint32_t index : group) {
    const Item& item = items[index];
    const uint64_t span = distance(item.to, item.from);
    switch (item.kind) {
      case Item::Kind::kProgression:
        estimate += 1;
        break;
      case Item::Kind::kFill:
        estimate += item.modulus <= 2 ? 1 : span / item.modulus + 1;
        break;
      case Item::Kind::kStagger:
        estimate += item.modulus == 1 ? 1 : item.count;
        break;
    }
  }
  if (estimate > kExactBudget) return false;

  uint64_t budget = kExactBudget;
  std::vector<FrameRange> kept;  // frames of the group's earlier items, no repeats
  std::vector<FrameRange> next;
  for (uint32_t index : group) {
    const Item& item = items[index];
    RangeBuilder builder;
    generate(item, [&](const FrameRange& piece) { builder.add(piece); });
    std::vector<FrameRange> fragments = builder.finish();
    const size_t kept_before = kept.size();
    for (size_t k = 0; k < kept_before && !fragments.empty(); ++k) {
      const FrameRange& q = kept[k];
      if (budget < 1) return false;
      --budget;
      if (range_max(q) < item.lo || range_min(q) > item.hi) continue;
      next.clear();
      for (const FrameRange& f : fragments) {
        if (budget < 1) return false;
        --budget;
        if (range_max(q) < range_min(f) || range_min(q) > range_max(f)) {
          next.push_back(f);
        } else if (!subtract(f, q, next, budget)) {
          return false;
        }
      }
      std::swap(fragments, next);
    }
    kept.insert(kept.end(), fragments.begin(), fragments.end());
    survivors[index] = std::move(fragments);
  }
  return true;
}

// Drops repeats within a group of items whose spans overlap by listing their frames.
Result<void> resolve_by_expansion(const std::vector<Item>& items,
                                  const std::vector<uint32_t>& group,
                                  std::vector<std::vector<FrameRange>>& survivors) {
  uint64_t listed = 0;
  int64_t lo = items[group.front()].lo;
  int64_t hi = items[group.front()].hi;
  for (uint32_t index : group) {
    listed += items[index].count;
    lo = std::min(lo, items[index].lo);
    hi = std::max(hi, items[index].hi);
  }
  if (listed > kExpandLimit) {
    return fail(ErrorCode::kInvalidArgument, "overlapping frame ranges too large to resolve");
  }
  const uint64_t width = distance(hi, lo);
  auto each_frame = [&](uint32_t index, auto&& visit) {
    generate(items[index], [&](const FrameRange& piece) {
      for (uint64_t i = 0; i < piece.count; ++i) visit(element(piece, i));
    });
  };
  if (width / 64 <= listed) {
    // Dense enough for a bitmap over the span to cost no more than a list of the frames.
    std::vector<uint64_t> seen(width / 64 + 1);
    for (uint32_t index : group) {
      RangeBuilder builder(kMaxRanges);
      each_frame(index, [&](int64_t frame) {
        const uint64_t offset = distance(frame, lo);
        uint64_t& word = seen[offset / 64];
        const uint64_t bit = uint64_t{1} << (offset % 64);
        if (word & bit) return;
        word |= bit;
        builder.add_frame(frame);
      });
      survivors[index] = builder.finish();
      if (builder.overflowed()) return fail(too_many_ranges());
    }
    return {};
  }
  std::vector<int64_t> frames;
  frames.reserve(listed);
  for (uint32_t index : group) each_frame(index, [&](int64_t frame) { frames.push_back(frame); });
  std::sort(frames.begin(), frames.end());
  frames.erase(std::unique(frames.begin(), frames.end()), frames.end());
  std::vector<bool> seen(frames.size());
  for (uint32_t index : group) {
    RangeBuilder builder(kMaxRanges);
    each_frame(index, [&](int64_t frame) {
      const auto position = static_cast<size_t>(
          std::lower_bound(frames.begin(), frames.end(), frame) - frames.begin());
      if (seen[position]) return;
      seen[position] = true;
      builder.add_frame(frame);
    });
    survivors[index] = builder.finish();
    if (builder.overflowed()) return fail(too_many_ranges());
  }
  return {};
}

// The canonical ranges of the items' frames in order, later repeats dropped. Only items whose
// spans overlap can repeat a frame, so everything else streams straight into the result.
Result<std::vector<FrameRange>> resolve(const std::vector<Item>& items) {
  // Counted as listed, before repeats are dropped, so this runs before anything is expanded.
  uint64_t total = 0;
  for (const Item& item : items) {
    if (__builtin_add_overflow(total, item.count, &total)) {
      total = std::numeric_limits<uint64_t>::max();
    }
  }
  if (total > FrameSet::kMaxFrames) {
    return fail(ErrorCode::kInvalidArgument, "frame set of " + std::to_string(total) +
                                                 " frames over the limit of " +
                                                 std::to_string(FrameSet::kMaxFrames));
  }

  std::vector<uint32_t> by_lo;
  for (uint32_t i = 0; i < items.size(); ++i) {
    if (items[i].count > 0) by_lo.push_back(i);
  }
  std::sort(by_lo.begin(), by_lo.end(), [&](uint32_t a, uint32_t b) {
    return items[a].lo < items[b].lo || (items[a].lo == items[b].lo && a < b);
  });
  std::vector<std::vector<uint32_t>> groups;
  std::vector<bool> grouped(items.size());
  for (size_t begin = 0; begin < by_lo.size();) {
    int64_t hi = items[by_lo[begin]].hi;
    size_t end = begin + 1;
    while (end < by_lo.size() && items[by_lo[end]].lo <= hi) {
      hi = std::max(hi, items[by_lo[end]].hi);
      ++end;
    }
    if (end - begin > 1) {
      std::vector<uint32_t> group(by_lo.begin() + static_cast<ptrdiff_t>(begin),
                                  by_lo.begin() + static_cast<ptrdiff_t>(end));
      std::sort(group.begin(), group.end());  // back to set order: first occurrence wins
      for (uint32_t index : group) grouped[index] = true;
      groups.push_back(std::move(group));
    }
    begin = end;
  }

  std::vector<std::vector<FrameRange>> survivors(items.size());
  for (const std::vector<uint32_t>& group : groups) {
    if (resolve_exactly(items, group, survivors)) continue;
    Result<void> expanded = resolve_by_expansion(items, group, survivors);
    if (!expanded) return fail(expanded.error());
  }

  RangeBuilder builder(kMaxRanges);
  for (uint32_t i = 0; i < items.size() && !builder.overflowed(); ++i) {
    if (grouped[i]) {
      for (const FrameRange& piece : survivors[i]) builder.add(piece);
    } else if (items[i].count > 0) {
      generate(items[i], [&](const FrameRange& piece) { builder.add(piece); });
    }
  }
  std::vector<FrameRange> ranges = builder.finish();
  if (builder.overflowed()) return fail(too_many_ranges());
  return ranges;
}

}  // namespace

Result<FrameSet> FrameSet::parse(std::string_view text) {
  if (trim(text).empty()) return fail(ErrorCode::kInvalidArgument, "empty frame set");
  std::vector<Item> items;
  size_t start = 0;
  while (true) {
    const size_t comma = text.find(',', start);
    const std::string_view item_text =
        trim(text.substr(start, comma == std::string_view::npos ? comma : comma - start));
    std::optional<Item> item = parse_item(item_text);
    if (!item) {
      return fail(ErrorCode::kInvalidArgument,
                  "bad frame set item '" + std::string(item_text) + "'");
    }
    items.push_back(*item);
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  Result<std::vector<FrameRange>> ranges = resolve(items);
  if (!ranges) return fail(ranges.error());
  if (ranges->empty()) {
    // Only y items with nothing left ("1-10y1") get here; an empty set would not round-trip.
    return fail(ErrorCode::kInvalidArgument,
                "frame set '" + std::string(trim(text)) + "' lists no frames");
  }
  return adopt(std::move(*ranges));
}

FrameSet FrameSet::range(int64_t first, uint64_t count) {
  FARMHAND_CHECK(count <= kMaxFrames);
  if (count == 0) return FrameSet();
  int64_t last = 0;
  const bool overflow = __builtin_add_overflow(first, static_cast<int64_t>(count - 1), &last);
  FARMHAND_CHECK(!overflow);
  RangeBuilder builder;
  builder.add(FrameRange{first, 1, count});
  return adopt(builder.finish());
}

Result<FrameSet> FrameSet::from_ranges(std::vector<FrameRange> ranges) {
  std::vector<Item> items;
  items.reserve(ranges.size());
  for (FrameRange range : ranges) {
    if (range.count == 0) continue;
    if (range.count == 1) {
      range.step = 1;
    } else {
      int64_t offset = 0;
      int64_t last = 0;
      // The range's span must fit int64, as FrameRange::last() computes it there.
      if (range.step == 0 || range.count - 1 > static_cast<uint64_t>(kInt64Max) ||
          __builtin_mul_overflow(range.step, static_cast<int64_t>(range.count - 1), &offset) ||
          __builtin_add_overflow(range.first, offset, &last)) {
        return fail(ErrorCode::kInvalidArgument,
                    "bad frame range first=" + std::to_string(range.first) + " step=" +
                        std::to_string(range.step) + " count=" + std::to_string(range.count));
      }
    }
    items.push_back(progression_item(range));
  }
  Result<std::vector<FrameRange>> resolved = resolve(items);
  if (!resolved) return fail(resolved.error());
  return adopt(std::move(*resolved));
}

FrameSet FrameSet::adopt(std::vector<FrameRange> ranges) {
  FrameSet set;
  set.ranges_ = std::move(ranges);
  set.rebuild_index();
  return set;
}

void FrameSet::rebuild_index() {
  const size_t n = ranges_.size();
  FARMHAND_CHECK(n <= std::numeric_limits<uint32_t>::max());
  offsets_.resize(n);
  size_ = 0;
  for (size_t i = 0; i < n; ++i) {
    offsets_[i] = size_;
    size_ += ranges_[i].count;
  }
  by_min_.resize(n);
  std::iota(by_min_.begin(), by_min_.end(), 0);
  std::sort(by_min_.begin(), by_min_.end(), [&](uint32_t a, uint32_t b) {
    const int64_t min_a = range_min(ranges_[a]);
    const int64_t min_b = range_min(ranges_[b]);
    return min_a < min_b || (min_a == min_b && a < b);
  });
  prefix_max_.resize(n);
  bool overlapping = false;
  for (size_t j = 0; j < n; ++j) {
    const FrameRange& range = ranges_[by_min_[j]];
    if (j > 0 && range_min(range) <= prefix_max_[j - 1]) overlapping = true;
    prefix_max_[j] = j == 0 ? range_max(range) : std::max(prefix_max_[j - 1], range_max(range));
  }
  max_tree_.clear();
  if (!overlapping) return;
  size_t leaves = 1;
  while (leaves < n) leaves *= 2;
  max_tree_.assign(2 * leaves, std::numeric_limits<int64_t>::min());
  for (size_t j = 0; j < n; ++j) max_tree_[leaves + j] = range_max(ranges_[by_min_[j]]);
  for (size_t node = leaves - 1; node >= 1; --node) {
    max_tree_[node] = std::max(max_tree_[2 * node], max_tree_[2 * node + 1]);
  }
}

int64_t FrameSet::frame_at(uint64_t index) const {
  FARMHAND_CHECK(index < size_);
  const auto it = std::upper_bound(offsets_.begin(), offsets_.end(), index);
  const auto r = static_cast<size_t>(it - offsets_.begin()) - 1;
  return element(ranges_[r], index - offsets_[r]);
}

std::optional<uint64_t> FrameSet::index_of(int64_t frame) const {
  // Ranges whose smallest frame is <= frame are by_min_[0, end); one of them may hold it.
  const auto it =
      std::upper_bound(by_min_.begin(), by_min_.end(), frame,
                       [&](int64_t value, uint32_t r) { return value < range_min(ranges_[r]); });
  const auto end = static_cast<size_t>(it - by_min_.begin());
  if (end == 0 || prefix_max_[end - 1] < frame) return std::nullopt;

  auto position_in = [&](uint32_t r) -> std::optional<uint64_t> {
    const FrameRange& range = ranges_[r];
    if (frame < range_min(range) || frame > range_max(range)) return std::nullopt;
    const uint64_t offset = distance(frame, range.first);
    const uint64_t step = magnitude(range.step);
    if (offset % step != 0) return std::nullopt;
    return offsets_[r] + offset / step;
  };
  // Without overlapping spans the range with the largest smallest frame is the only candidate.
  if (max_tree_.empty()) return position_in(by_min_[end - 1]);

  // Otherwise visit, among by_min_[0, end), the ranges whose largest frame reaches `frame`,
  // skipping subtrees that do not; a frame lies in at most one range.
  struct Node {
    size_t index;
    size_t begin;
    size_t width;
  };

  std::array<Node, 2 * 64> stack;
  size_t depth = 0;
  stack[depth++] = Node{1, 0, max_tree_.size() / 2};
  while (depth > 0) {
    const Node node = stack[--depth];
    if (node.begin >= end || max_tree_[node.index] < frame) continue;
    if (node.width == 1) {
      if (std::optional<uint64_t> position = position_in(by_min_[node.begin])) return position;
      continue;
    }
    const size_t half = node.width / 2;
    stack[depth++] = Node{2 * node.index, node.begin, half};
    stack[depth++] = Node{2 * node.index + 1, node.begin + half, half};
  }
  return std::nullopt;
}

FrameSet FrameSet::slice(uint64_t first_index, uint64_t count) const {
  if (first_index >= size_ || count == 0) return FrameSet();
  const uint64_t end = first_index + std::min(count, size_ - first_index);
  auto r = static_cast<size_t>(std::upper_bound(offsets_.begin(), offsets_.end(), first_index) -
                               offsets_.begin() - 1);
  RangeBuilder builder;
  for (uint64_t position = first_index; position < end; ++r) {
    const uint64_t begin = position - offsets_[r];
    const uint64_t take = std::min(ranges_[r].count - begin, end - position);
    builder.add(sub_range(ranges_[r], begin, begin + take));
    position += take;
  }
  return adopt(builder.finish());
}

std::string FrameSet::to_string() const {
  std::string text;
  for (const FrameRange& range : ranges_) {
    if (!text.empty()) text += ',';
    text += std::to_string(range.first);
    if (range.count == 1) continue;
    // Canonical ranges never hold two frames a wide step apart, but "a,b" reads back the same.
    text += range.count == 2 && magnitude(range.step) != 1 ? ',' : '-';
    text += std::to_string(range.last());
    if (range.count > 2 && magnitude(range.step) != 1) {
      text += 'x';
      text += std::to_string(magnitude(range.step));
    }
  }
  return text;
}

}  // namespace farmhand::common
