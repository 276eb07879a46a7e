#include "common/sequence.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <limits>
#include <memory>
#include <tuple>
#include <unordered_map>
#include <utility>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

namespace farmhand::common {

namespace {

// int64 holds every 18-digit number; a longer run of digits is a hash or an id, not a frame.
constexpr size_t kMaxFrameDigits = 18;

// 18 digits and a sign: wider padding could never be filled by a frame number.
constexpr int kMaxPadding = 19;

// fileseq's "#" on its own.
constexpr int kLoneHashPadding = 4;

// find_missing lists missing frames as ranges; past this many (the FrameSet's own range limit)
// it refuses instead of holding hundreds of megabytes of gaps.
constexpr size_t kMaxMissingRanges = 10'000'000;

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

bool is_separator(char c) {
  return c == '.' || c == '_';
}

// Characters a frame set written in a pattern may hold.
bool is_frame_set_char(char c) {
  return is_digit(c) || c == '-' || c == ',' || c == ':' || c == 'x' || c == 'y';
}

// A padding token found in a file name: [begin, end) and its width.
struct PaddingToken {
  size_t begin = 0;
  size_t end = 0;
  int padding = 0;
  PaddingStyle style = PaddingStyle::kHash;
};

// Reads the token starting at name[i], if one does. Errors for tokens that are clearly meant as
// padding but cannot be read as one.
Result<std::optional<PaddingToken>> token_at(std::string_view name, size_t i) {
  const char c = name[i];
  if (c == '#' || c == '@') {
    size_t end = i;
    size_t hashes = 0;
    while (end < name.size() && (name[end] == '#' || name[end] == '@')) {
      hashes += name[end] == '#' ? 1 : 0;
      ++end;
    }
    const size_t count = end - i;
    if (hashes != 0 && hashes != count) {
      return fail(ErrorCode::kInvalidArgument, "mixed # and @ padding '" +
                                                   std::string(name.substr(i, count)) + "' in " +
                                                   std::string(name));
    }
    int padding = count == 1 && hashes == 1 ? kLoneHashPadding : static_cast<int>(count);
    if (count > static_cast<size_t>(kMaxPadding)) padding = kMaxPadding + 1;
    return PaddingToken{i, end, padding, PaddingStyle::kHash};
  }
  if (c == '%' || (c == '$' && i + 1 < name.size() && name[i + 1] == 'F')) {
    // "%04d", "%4d", "%d"; "$F4", "$F". Anything else is a literal '%' or '$'.
    const size_t digits_begin = i + (c == '%' ? 1 : 2);
    size_t digits_end = digits_begin;
    while (digits_end < name.size() && is_digit(name[digits_end])) ++digits_end;
    size_t end = digits_end;
    if (c == '%') {
      if (end >= name.size() || name[end] != 'd') return std::optional<PaddingToken>();
      ++end;
    }
    int padding = 1;
    const std::string_view digits = name.substr(digits_begin, digits_end - digits_begin);
    if (!digits.empty()) {
      uint64_t value = 0;
      auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
      if (ec != std::errc() || value > static_cast<uint64_t>(kMaxPadding)) {
        value = kMaxPadding + 1;
      }
      // "%0d" and "$F0" pad nothing, like "%d".
      padding = std::max<int>(1, static_cast<int>(value));
    }
    return PaddingToken{i, end, padding, c == '%' ? PaddingStyle::kPrintf : PaddingStyle::kHoudini};
  }
  return std::optional<PaddingToken>();
}

// The frame set written just before `end` in `name`, as [begin, end), or begin == end if none.
// Greedy over frame set characters, then shortened from the left until it parses; a leading '-'
// counts only after a separator, as for frame numbers on disk ("shot-1-10#" is frames 1-10).
std::pair<size_t, std::optional<FrameSet>> frame_set_before(std::string_view name, size_t end) {
  size_t begin = end;
  while (begin > 0 && is_frame_set_char(name[begin - 1])) --begin;
  for (; begin < end; ++begin) {
    const char first = name[begin];
    if (!is_digit(first) && first != '-') continue;
    if (first == '-' && begin > 0 && !is_separator(name[begin - 1])) continue;
    auto frames = FrameSet::parse(name.substr(begin, end - begin));
    if (frames) return {begin, std::move(*frames)};
  }
  return {end, std::nullopt};
}

std::string padding_text(int padding, PaddingStyle style, bool after_frames) {
  switch (style) {
    case PaddingStyle::kPrintf:
      return padding <= 1 ? "%d" : "%0" + std::to_string(padding) + "d";
    case PaddingStyle::kHoudini:
      return padding <= 1 ? "$F" : "$F" + std::to_string(padding);
    case PaddingStyle::kHash:
      break;
  }
  // "####" is what Nuke and lsseq show for 4 digits; after a frame set fileseq's "1-100#" is
  // the familiar form. Other widths use '@', which every tool reads as one digit each.
  if (padding == kLoneHashPadding) return after_frames ? "#" : "####";
  return std::string(static_cast<size_t>(std::max(padding, 1)), '@');
}

uint64_t distance(int64_t a, int64_t b) {
  return a >= b ? static_cast<uint64_t>(a) - static_cast<uint64_t>(b)
                : static_cast<uint64_t>(b) - static_cast<uint64_t>(a);
}

// A range rewritten to run upwards: lo, lo + step, ..., step > 0.
struct Ascending {
  int64_t lo = 0;
  int64_t hi = 0;
  int64_t step = 1;
  uint64_t count = 0;
};

Ascending ascending(const FrameRange& range) {
  if (range.step < 0) return Ascending{range.last(), range.first, -range.step, range.count};
  return Ascending{range.first, range.last(), range.step, range.count};
}

// Consecutive runs of sorted, unique frames as step-1 ranges.
std::vector<FrameRange> runs_of(const std::vector<int64_t>& frames) {
  std::vector<FrameRange> runs;
  for (int64_t frame : frames) {
    if (!runs.empty() && runs.back().last() + 1 == frame) {
      ++runs.back().count;
    } else {
      runs.push_back(FrameRange{frame, 1, 1});
    }
  }
  return runs;
}

Error too_scattered(const FrameSet& present) {
  return Error{ErrorCode::kInvalidArgument,
               "missing frames of " + present.to_string() + " too scattered to list"};
}

// One file read from the directory: its frame number and how it was written.
struct Entry {
  int64_t frame = 0;
  int32_t width = 0;
  bool zero_padded = false;
};

// Files that share a prefix and suffix, before they are split by padding.
struct Group {
  std::string prefix;
  std::string suffix;
  std::vector<Entry> entries;
};

Sequence make_sequence(const std::string& dir, const Group& group, int padding,
                       std::vector<int64_t>& frames) {
  std::sort(frames.begin(), frames.end());
  frames.erase(std::unique(frames.begin(), frames.end()), frames.end());
  Sequence seq;
  seq.pattern.dir = dir;
  seq.pattern.prefix = group.prefix;
  seq.pattern.suffix = group.suffix;
  seq.pattern.padding = padding;
  // Ascending runs of distinct frames are already what from_ranges wants; it cannot fail on
  // fewer frames than a directory holds.
  auto set = FrameSet::from_ranges(runs_of(frames));
  FARMHAND_CHECK(set.has_value());
  seq.frames = std::move(*set);
  if (auto missing = find_missing(seq.frames)) seq.missing = std::move(*missing);
  return seq;
}

// Splits a group by padding: zero-padded numbers by their width, the others into the widest
// padding they fit, or into one unpadded sequence as wide as its narrowest number.
void split_group(const std::string& dir, const Group& group, std::vector<Sequence>& out) {
  std::vector<int> widths;
  for (const Entry& entry : group.entries) {
    if (entry.zero_padded) widths.push_back(entry.width);
  }
  std::sort(widths.begin(), widths.end());
  widths.erase(std::unique(widths.begin(), widths.end()), widths.end());

  std::vector<std::vector<int64_t>> by_width(widths.size());
  std::vector<int64_t> unpadded;
  int unpadded_width = std::numeric_limits<int>::max();
  for (const Entry& entry : group.entries) {
    auto it = std::upper_bound(widths.begin(), widths.end(), entry.width);
    if (entry.zero_padded) {
      by_width[static_cast<size_t>(it - widths.begin()) - 1].push_back(entry.frame);
    } else if (it != widths.begin()) {
      by_width[static_cast<size_t>(it - widths.begin()) - 1].push_back(entry.frame);
    } else {
      unpadded.push_back(entry.frame);
      unpadded_width = std::min(unpadded_width, entry.width);
    }
  }
  if (!unpadded.empty()) out.push_back(make_sequence(dir, group, unpadded_width, unpadded));
  for (size_t i = 0; i < widths.size(); ++i) {
    if (!by_width[i].empty()) out.push_back(make_sequence(dir, group, widths[i], by_width[i]));
  }
}

struct DirCloser {
  void operator()(DIR* d) const { closedir(d); }
};

Error unreadable(const std::string& dir, int error) {
  return Error{error == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIo,
               "cannot read " + dir + ": " + std::strerror(error)};
}

}  // namespace

// ---------------------------------------------------------------- patterns

Result<SequencePattern> SequencePattern::parse(std::string_view path) {
  SequencePattern pattern;
  const size_t slash = path.rfind('/');
  const size_t name_begin = slash == std::string_view::npos ? 0 : slash + 1;
  pattern.dir = std::string(path.substr(0, name_begin));
  const std::string_view name = path.substr(name_begin);
  if (name.empty()) {
    return fail(ErrorCode::kInvalidArgument, "no file name in '" + std::string(path) + "'");
  }

  std::optional<PaddingToken> last;
  for (size_t i = 0; i < name.size();) {
    auto token = token_at(name, i);
    if (!token) return fail(std::move(token.error()));
    if (*token) {
      last = **token;
      i = last->end;
    } else {
      ++i;
    }
  }
  if (!last) {
    pattern.prefix = std::string(name);
    return pattern;
  }
  if (last->padding > kMaxPadding) {
    return fail(ErrorCode::kInvalidArgument,
                "padding '" + std::string(name.substr(last->begin, last->end - last->begin)) +
                    "' over " + std::to_string(kMaxPadding) + " digits in " + std::string(name));
  }
  auto [frames_begin, frames] = frame_set_before(name, last->begin);
  pattern.prefix = std::string(name.substr(0, frames_begin));
  pattern.padding = last->padding;
  pattern.suffix = std::string(name.substr(last->end));
  pattern.frames = std::move(frames);
  pattern.style = last->style;
  return pattern;
}

std::string SequencePattern::name(PaddingStyle as) const {
  if (is_single_file()) return prefix;
  std::string out = prefix;
  if (frames) out += frames->to_string();
  out += padding_text(padding, as, frames.has_value());
  out += suffix;
  return out;
}

std::string SequencePattern::to_string(PaddingStyle as) const {
  return dir + name(as);
}

std::string format_frame_number(int64_t frame, int padding) {
  // Digits of |frame| in a buffer wide enough for any int64 and the widest padding.
  char digits[24];
  const uint64_t magnitude = distance(frame, 0);
  auto [end, ec] = std::to_chars(digits, digits + sizeof(digits), magnitude);
  const size_t digit_count = static_cast<size_t>(end - digits);
  const size_t sign = frame < 0 ? 1 : 0;
  const size_t width = static_cast<size_t>(std::clamp(padding, 0, kMaxPadding + 1));
  const size_t zeros = width > sign + digit_count ? width - sign - digit_count : 0;
  std::string out;
  out.reserve(sign + zeros + digit_count);
  if (sign) out += '-';
  out.append(zeros, '0');
  out.append(digits, digit_count);
  return out;
}

std::string format_frame(const SequencePattern& pattern, int64_t frame) {
  if (pattern.is_single_file()) return pattern.dir + pattern.prefix;
  return pattern.dir + pattern.prefix + format_frame_number(frame, pattern.padding) +
         pattern.suffix;
}

std::optional<FrameInName> parse_frame_in_name(std::string_view name) {
  // The extension is the last ".xxx" part unless it is all digits ("a.0001" has none).
  size_t stem_end = name.size();
  if (const size_t dot = name.rfind('.'); dot != std::string_view::npos && dot > 0) {
    const std::string_view ext = name.substr(dot + 1);
    if (!std::all_of(ext.begin(), ext.end(), is_digit)) stem_end = dot;
  }
  size_t end = stem_end;
  while (end > 0 && !is_digit(name[end - 1])) --end;
  if (end == 0) return std::nullopt;
  size_t begin = end;
  while (begin > 0 && is_digit(name[begin - 1])) --begin;
  const size_t digit_count = end - begin;
  if (digit_count > kMaxFrameDigits) return std::nullopt;

  int64_t value = 0;
  for (size_t i = begin; i < end; ++i) value = value * 10 + (name[i] - '0');
  // "-0" would not be written back as "-0", so it is 0 with a '-' in the prefix.
  const bool negative =
      value != 0 && begin >= 2 && name[begin - 1] == '-' && is_separator(name[begin - 2]);
  FrameInName found;
  found.frame = negative ? -value : value;
  found.width = static_cast<int>(digit_count) + (negative ? 1 : 0);
  found.zero_padded = digit_count > 1 && name[begin] == '0';
  found.prefix = name.substr(0, begin - (negative ? 1 : 0));
  found.suffix = name.substr(end);
  return found;
}

// ---------------------------------------------------------------- missing frames

Result<FrameSet> find_missing(const FrameSet& present) {
  if (present.size() < 2) return FrameSet();
  std::vector<Ascending> ranges;
  ranges.reserve(present.ranges().size());
  for (const FrameRange& range : present.ranges()) ranges.push_back(ascending(range));
  std::sort(ranges.begin(), ranges.end(),
            [](const Ascending& a, const Ascending& b) { return a.lo < b.lo; });

  // Frames in a set are distinct, so everything between the ends that is not present is
  // missing: count it before listing anything.
  int64_t lo = ranges.front().lo;
  int64_t hi = ranges.front().hi;
  for (const Ascending& range : ranges) hi = std::max(hi, range.hi);
  const uint64_t missing = distance(hi, lo) - (present.size() - 1);
  if (missing > FrameSet::kMaxFrames) {
    return fail(ErrorCode::kInvalidArgument, std::to_string(missing) +
                                                 " missing frames over the limit of " +
                                                 std::to_string(FrameSet::kMaxFrames));
  }
  if (missing == 0) return FrameSet();

  std::vector<FrameRange> gaps;
  auto add_gap = [&gaps](int64_t from, int64_t to) {
    if (from <= to) gaps.push_back(FrameRange{from, 1, distance(to, from) + 1});
  };
  std::vector<int64_t> frames;  // a cluster of interleaved progressions, expanded
  int64_t covered = lo;         // every frame up to here is accounted for
  for (size_t i = 0; i < ranges.size();) {
    // A cluster: ranges whose spans overlap. Only progressions with steps > 1 can interleave.
    size_t j = i + 1;
    int64_t cluster_hi = ranges[i].hi;
    while (j < ranges.size() && ranges[j].lo <= cluster_hi) {
      cluster_hi = std::max(cluster_hi, ranges[j].hi);
      ++j;
    }
    if (i > 0) add_gap(covered + 1, ranges[i].lo - 1);
    if (j == i + 1) {
      const Ascending& range = ranges[i];
      if (range.step == 2) {
        // The odd one out is itself a progression: "1-99x2" misses "2-98x2".
        gaps.push_back(FrameRange{range.lo + 1, 2, range.count - 1});
      } else if (range.step > 2) {
        if (gaps.size() + range.count > kMaxMissingRanges) return fail(too_scattered(present));
        for (uint64_t k = 0; k + 1 < range.count; ++k) {
          const int64_t frame = range.lo + range.step * static_cast<int64_t>(k);
          add_gap(frame + 1, frame + range.step - 1);
        }
      }
    } else {
      uint64_t total = 0;
      for (size_t k = i; k < j; ++k) total += ranges[k].count;
      if (gaps.size() + total > kMaxMissingRanges) return fail(too_scattered(present));
      frames.clear();
      frames.reserve(total);
      for (size_t k = i; k < j; ++k) {
        for (uint64_t n = 0; n < ranges[k].count; ++n) {
          frames.push_back(ranges[k].lo + ranges[k].step * static_cast<int64_t>(n));
        }
      }
      std::sort(frames.begin(), frames.end());
      for (size_t n = 0; n + 1 < frames.size(); ++n) add_gap(frames[n] + 1, frames[n + 1] - 1);
    }
    covered = cluster_hi;
    i = j;
  }
  return FrameSet::from_ranges(std::move(gaps));
}

uint64_t Sequence::missing_count() const {
  if (frames.size() < 2) return 0;
  return distance(last(), first()) - (frames.size() - 1);
}

// ---------------------------------------------------------------- scanning

Result<std::vector<Sequence>> scan_directory(const std::string& dir) {
  std::unique_ptr<DIR, DirCloser> handle(opendir(dir.c_str()));
  if (!handle) return fail(unreadable(dir, errno));
  const std::string dir_prefix = dir.empty() || dir.back() == '/' ? dir : dir + '/';
  const int dir_fd = dirfd(handle.get());

  std::vector<Group> groups;
  std::unordered_map<std::string, size_t> group_index;
  std::vector<std::string> single_files;
  std::string key;  // reused, so looking up a known group allocates nothing

  while (true) {
    errno = 0;
    const dirent* entry = readdir(handle.get());
    if (entry == nullptr) {
      if (errno != 0) return fail(unreadable(dir, errno));
      break;
    }
    const std::string_view name(entry->d_name);
    if (name.empty() || name.front() == '.') continue;
    if (entry->d_type == DT_DIR) continue;
    if (entry->d_type == DT_LNK || entry->d_type == DT_UNKNOWN) {
      // Only these need a look at the inode: a link may name a directory, and some file
      // systems give no type. A dangling link is listed, as ls lists it.
      struct stat st {};

      if (fstatat(dir_fd, entry->d_name, &st, 0) == 0 && S_ISDIR(st.st_mode)) continue;
    }

    const std::optional<FrameInName> frame = parse_frame_in_name(name);
    if (!frame) {
      single_files.emplace_back(name);
      continue;
    }
    // A file name holds no '\0', so it separates prefix and suffix unambiguously.
    key.assign(frame->prefix);
    key += '\0';
    key += frame->suffix;
    auto it = group_index.find(key);
    if (it == group_index.end()) {
      it = group_index.emplace(key, groups.size()).first;
      groups.push_back(Group{std::string(frame->prefix), std::string(frame->suffix), {}});
    }
    groups[it->second].entries.push_back(Entry{frame->frame, frame->width, frame->zero_padded});
  }

  std::vector<Sequence> out;
  out.reserve(groups.size() + single_files.size());
  for (const Group& group : groups) split_group(dir_prefix, group, out);
  for (std::string& name : single_files) {
    Sequence file;
    file.pattern.dir = dir_prefix;
    file.pattern.prefix = std::move(name);
    file.missing = FrameSet();
    out.push_back(std::move(file));
  }
  std::sort(out.begin(), out.end(), [](const Sequence& a, const Sequence& b) {
    return std::tie(a.pattern.prefix, a.pattern.suffix, a.pattern.padding) <
           std::tie(b.pattern.prefix, b.pattern.suffix, b.pattern.padding);
  });
  return out;
}

}  // namespace farmhand::common
