// Image sequences: sequence patterns (fileseq syntax), frame numbers in file names, and
// grouping a directory's files into sequences (like `lsseq`).
//
// Pattern syntax (ARCHITECTURE.md, fileseq conventions), in the file name only:
//   shot.####.exr      a run of N '#' is N digits ("####" = 4, as Nuke and lsseq write it),
//   shot.#.exr         but a lone '#' is 4 digits (fileseq's "#")
//   shot.@@@.exr       '@' is one digit each
//   shot.%04d.exr      printf; "%d" is unpadded; "%4d" is read as "%04d", as fileseq does
//   shot.$F4.exr       Houdini; "$F" is unpadded
//   shot.1001-1100#.exr, shot.1-10x2@@@.exr, shot.1-10%04d.exr
//                      a frame set written just before the padding (FrameSet syntax)
// The last padding token in the name is the frame number; text after it (".exr", "_bty.exr") is
// the suffix. A name with no padding token is a single file, not a sequence. '#' and '@' are not
// mixed in one token ("@@#" is refused rather than guessed).
//
// Padding and negative frames follow printf "%0Nd", Python's zfill and fileseq: the width counts
// the sign, so frame -12 at padding 4 is "-012" and "-0012" is padding 5. An unpadded pattern
// has padding 1 ("$F", "%d", "@"): the number takes the digits it needs.
//
// In a file name on disk, the frame number is the last run of digits before the extension (the
// last ".xxx" part, unless it is all digits, so "a.0001" is frame 1), with a '-' sign only when
// it directly follows a '.' or '_' ("a.-005.exr" is -5; "a-005.exr" is 5 with prefix "a-"). A
// number written with a leading zero ("0012", "-012") fits only its own width; one without
// ("1001", "10000", "-5") fits any padding up to its width. So a.1.exr and a.0001.exr are two
// sequences, while a.10000.exr joins a.0001.exr ... a.9999.exr, as in fileseq and lsseq. Numbers
// that fit no zero-padded width form one sequence padded to the narrowest of them (1001-1100 is
// "####", 8-11 is "@"). A run of more than 18 digits is not a frame number.
//
// Must not: stat each file while scanning (d_type is enough; only links and file systems that
// give no type are asked), follow into subdirectories, or list hidden files.
//
// Pure value types and functions except scan_directory, which reads one directory. All are
// thread-compatible: safe to call concurrently on distinct objects, and on shared const ones.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/frame_set.h"
#include "common/result.h"

namespace farmhand::common {

// How to write a pattern's padding.
enum class PaddingStyle {
  kHash,     // "####" for padding 4 ("#" after a frame set), "@" x N for any other padding
  kPrintf,   // "%04d"; "%d" for padding 1
  kHoudini,  // "$F4"; "$F" for padding 1
};

// A parsed sequence pattern, or a single file when padding == 0.
struct SequencePattern {
  std::string dir;     // up to and including the last '/'; empty for a bare name
  std::string prefix;  // the name before the frame number; the whole name for a single file
  int padding = 0;     // digits of the frame number, sign included; 0: a single file
  std::string suffix;  // the name after the frame number, extension included
  std::optional<FrameSet> frames;            // a frame set written in the pattern, if any
  PaddingStyle style = PaddingStyle::kHash;  // how the padding was written

  // Parses a pattern or a plain path. Errors (kInvalidArgument) name the bad part:
  // "mixed # and @ padding '@@#' in shot.@@#.exr", "padding '%099d' over 19 digits in ...".
  [[nodiscard]] static Result<SequencePattern> parse(std::string_view path);

  bool is_single_file() const { return padding == 0; }

  // The file name part: "shot.####.exr", "shot.1001-1100#.exr" (with `frames`), or the name of
  // a single file. Parses back to the same prefix, padding, suffix and frames.
  std::string name(PaddingStyle as) const;

  std::string name() const { return name(style); }

  // dir + name().
  std::string to_string(PaddingStyle as) const;

  std::string to_string() const { return to_string(style); }

  bool operator==(const SequencePattern&) const = default;
};

// `frame` written at `padding` digits, sign included: (-12, 4) -> "-012", (7, 4) -> "0007",
// (12345, 4) -> "12345". A padding of 0 or 1 writes the number unpadded.
std::string format_frame_number(int64_t frame, int padding);

// The path of `frame` in the sequence: dir + prefix + number + suffix. A single file's path
// whatever the frame.
std::string format_frame(const SequencePattern& pattern, int64_t frame);

// The frame number found in a file name (rules in the header comment); views into the name.
struct FrameInName {
  std::string_view prefix;
  std::string_view suffix;
  int64_t frame = 0;
  int width = 0;             // characters of the number, sign included
  bool zero_padded = false;  // written with a leading zero: it fits only padding == width

  // Whether format_frame_number(frame, padding) writes exactly this number.
  bool fits(int padding) const { return zero_padded ? padding == width : padding <= width; }
};

// nullopt when the name has no frame number (or one over 18 digits).
std::optional<FrameInName> parse_frame_in_name(std::string_view name);

// The frames missing from `present` between its smallest and largest frame, ascending and
// compact ("1012,1050-1052"). Fails when they would be more than FrameSet::kMaxFrames frames,
// or too scattered to list (over 10 million ranges).
[[nodiscard]] Result<FrameSet> find_missing(const FrameSet& present);

// One group of files found on disk: a sequence, or a single file.
struct Sequence {
  SequencePattern pattern;  // dir is the scanned directory; frames is unset
  FrameSet frames;          // frames present on disk, ascending; empty for a single file
  // Frames absent between first() and last(); nullopt when find_missing cannot list them (a
  // stray number such as 1234567890 in a 4-digit sequence); missing_count() still counts them.
  std::optional<FrameSet> missing;

  bool is_single_file() const { return pattern.is_single_file(); }

  uint64_t count() const { return frames.size(); }

  // Smallest and largest frame; not for single files.
  int64_t first() const { return frames.frame_at(0); }

  int64_t last() const { return frames.frame_at(frames.size() - 1); }

  uint64_t missing_count() const;
};

// The sequences and single files directly inside `dir` (not recursive), sorted by prefix, then
// suffix, then padding. Hidden files (".name") and directories are skipped. A directory that
// cannot be read is an error "cannot read DIR: <strerror>" (kNotFound when it does not exist).
[[nodiscard]] Result<std::vector<Sequence>> scan_directory(const std::string& dir);

}  // namespace farmhand::common
