#include "common/sequence.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

namespace farmhand::common {
namespace {

SequencePattern parse_ok(std::string_view text) {
  Result<SequencePattern> pattern = SequencePattern::parse(text);
  if (!pattern) {
    ADD_FAILURE() << "parse('" << text << "') failed: " << pattern.error().reason;
    return SequencePattern();
  }
  return *pattern;
}

FrameSet frames(std::string_view text) {
  Result<FrameSet> set = FrameSet::parse(text);
  EXPECT_TRUE(set) << text;
  return set ? *set : FrameSet();
}

std::string missing_text(const FrameSet& present) {
  Result<FrameSet> missing = find_missing(present);
  if (!missing) return "error: " + missing.error().reason;
  return missing->to_string();
}

// A scratch directory removed when the test ends; files are created empty.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "fh-seq-XXXXXX").string();
    path_ = ::mkdtemp(pattern.data());
  }

  ~TempDir() { std::filesystem::remove_all(path_); }

  const std::string& path() const { return path_; }

  void touch(const std::string& name) const {
    const std::string file = path_ + "/" + name;
    const int fd = ::open(file.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0) << file;
    ::close(fd);
  }

  void touch_frames(const std::string& prefix, int64_t first, int64_t last, int padding,
                    const std::string& suffix) const {
    for (int64_t frame = first; frame <= last; ++frame) {
      touch(prefix + format_frame_number(frame, padding) + suffix);
    }
  }

 private:
  std::string path_;
};

std::vector<Sequence> scan_ok(const std::string& dir) {
  Result<std::vector<Sequence>> found = scan_directory(dir);
  if (!found) {
    ADD_FAILURE() << "scan_directory(" << dir << ") failed: " << found.error().reason;
    return {};
  }
  return *found;
}

// "name frames [missing]" per sequence, the shape `seq ls` prints.
std::vector<std::string> summary(const std::vector<Sequence>& found) {
  std::vector<std::string> lines;
  for (const Sequence& seq : found) {
    std::string line = seq.pattern.name(PaddingStyle::kHash);
    if (!seq.is_single_file()) line += " " + seq.frames.to_string();
    if (seq.missing && !seq.missing->empty()) line += " missing " + seq.missing->to_string();
    lines.push_back(line);
  }
  return lines;
}

std::filesystem::path source_dir() {
  if (const char* dir = std::getenv("FARMHAND_SOURCE_DIR"); dir != nullptr && *dir != '\0') {
    return dir;
  }
  // Run by hand outside ctest: tests/unit/common/sequence_test.cpp -> the repository root.
  return std::filesystem::path(__FILE__).parent_path().parent_path().parent_path().parent_path();
}

// ---------------------------------------------------------------- pattern syntax

TEST(SequenceTest, HashRunIsOneDigitPerHash) {
  const SequencePattern p = parse_ok("/shows/abc/sh010/sh010_comp_v003.####.exr");
  EXPECT_EQ(p.dir, "/shows/abc/sh010/");
  EXPECT_EQ(p.prefix, "sh010_comp_v003.");
  EXPECT_EQ(p.padding, 4);
  EXPECT_EQ(p.suffix, ".exr");
  EXPECT_FALSE(p.frames.has_value());
  EXPECT_EQ(p.style, PaddingStyle::kHash);
  EXPECT_EQ(parse_ok("a.########.exr").padding, 8);
  EXPECT_EQ(parse_ok("a.##.exr").padding, 2);
}

TEST(SequenceTest, LoneHashIsFourDigitsAsInFileseq) {
  const SequencePattern p = parse_ok("shot.#.exr");
  EXPECT_EQ(p.prefix, "shot.");
  EXPECT_EQ(p.padding, 4);
  EXPECT_EQ(p.suffix, ".exr");
}

TEST(SequenceTest, AtSignIsOneDigitEach) {
  EXPECT_EQ(parse_ok("shot.@@@@.exr").padding, 4);
  EXPECT_EQ(parse_ok("shot.@@@.exr").padding, 3);
  EXPECT_EQ(parse_ok("shot.@.exr").padding, 1);
}

TEST(SequenceTest, PrintfPaddingIsReadWithItsWidth) {
  const SequencePattern p = parse_ok("renders/shot.%04d.exr");
  EXPECT_EQ(p.dir, "renders/");
  EXPECT_EQ(p.prefix, "shot.");
  EXPECT_EQ(p.padding, 4);
  EXPECT_EQ(p.suffix, ".exr");
  EXPECT_EQ(p.style, PaddingStyle::kPrintf);
  EXPECT_EQ(parse_ok("shot.%d.exr").padding, 1);
  EXPECT_EQ(parse_ok("shot.%4d.exr").padding, 4);  // fileseq reads %4d as %04d
  EXPECT_EQ(parse_ok("shot.%08d.exr").padding, 8);
}

TEST(SequenceTest, HoudiniPaddingIsReadWithItsWidth) {
  const SequencePattern p = parse_ok("$HIP/render/shot.$F4.exr");
  EXPECT_EQ(p.dir, "$HIP/render/");
  EXPECT_EQ(p.prefix, "shot.");
  EXPECT_EQ(p.padding, 4);
  EXPECT_EQ(p.suffix, ".exr");
  EXPECT_EQ(p.style, PaddingStyle::kHoudini);
  EXPECT_EQ(parse_ok("shot.$F.exr").padding, 1);
  EXPECT_EQ(format_frame(parse_ok("shot.$F.exr"), 7), "shot.7.exr");
}

TEST(SequenceTest, FrameSetBeforePaddingIsParsed) {
  const SequencePattern p = parse_ok("shot.1001-1100#.exr");
  EXPECT_EQ(p.prefix, "shot.");
  EXPECT_EQ(p.padding, 4);
  EXPECT_EQ(p.suffix, ".exr");
  ASSERT_TRUE(p.frames.has_value());
  EXPECT_EQ(p.frames->to_string(), "1001-1100");

  const SequencePattern q = parse_ok("shot.1-10x2@@@.exr");
  EXPECT_EQ(q.prefix, "shot.");
  EXPECT_EQ(q.padding, 3);
  ASSERT_TRUE(q.frames.has_value());
  EXPECT_EQ(q.frames->to_string(), "1-9x2");

  const SequencePattern r = parse_ok("shot.1-10,20-30%04d.exr");
  EXPECT_EQ(r.prefix, "shot.");
  ASSERT_TRUE(r.frames.has_value());
  EXPECT_EQ(r.frames->size(), 21u);
}

TEST(SequenceTest, NegativeFrameSetNeedsASeparatorBeforeItsSign) {
  const SequencePattern neg = parse_ok("shot.-10--1#.exr");
  EXPECT_EQ(neg.prefix, "shot.");
  ASSERT_TRUE(neg.frames.has_value());
  EXPECT_EQ(neg.frames->to_string(), "-10--1");

  // The '-' after a letter is part of the name, as with frame numbers on disk.
  const SequencePattern dash = parse_ok("shot-1-10#.exr");
  EXPECT_EQ(dash.prefix, "shot-");
  ASSERT_TRUE(dash.frames.has_value());
  EXPECT_EQ(dash.frames->to_string(), "1-10");
}

TEST(SequenceTest, FrameSetCharactersInTheNameStayInThePrefix) {
  const SequencePattern p = parse_ok("proxy.####.exr");
  EXPECT_EQ(p.prefix, "proxy.");
  EXPECT_FALSE(p.frames.has_value());
  const SequencePattern q = parse_ok("proxy1-5#.exr");
  EXPECT_EQ(q.prefix, "proxy");
  ASSERT_TRUE(q.frames.has_value());
  EXPECT_EQ(q.frames->to_string(), "1-5");
  const SequencePattern r = parse_ok("take1x####.exr");
  EXPECT_EQ(r.prefix, "take1x");
  EXPECT_FALSE(r.frames.has_value());
}

TEST(SequenceTest, SuffixMayHoldMoreThanTheExtension) {
  const SequencePattern p = parse_ok("sh010_####_beauty.exr");
  EXPECT_EQ(p.prefix, "sh010_");
  EXPECT_EQ(p.suffix, "_beauty.exr");
  EXPECT_EQ(parse_ok("frame.####").suffix, "");
}

TEST(SequenceTest, PlainPathIsASingleFile) {
  for (std::string_view path : {"/mnt/plates/sh010.1001.exr", "movie.mov", "50%_off.png"}) {
    const SequencePattern p = parse_ok(path);
    EXPECT_TRUE(p.is_single_file()) << path;
    EXPECT_EQ(p.padding, 0) << path;
    EXPECT_EQ(p.to_string(), std::string(path));
    EXPECT_EQ(format_frame(p, 42), std::string(path));
  }
}

TEST(SequenceTest, LastPaddingTokenIsTheFrameNumber) {
  const SequencePattern p = parse_ok("v@@/shot.####.exr");
  EXPECT_EQ(p.dir, "v@@/");
  EXPECT_EQ(p.prefix, "shot.");
  const SequencePattern q = parse_ok("shot_%02d.####.exr");
  EXPECT_EQ(q.prefix, "shot_%02d.");
  EXPECT_EQ(q.padding, 4);
}

TEST(SequenceTest, BadPatternsAreRefusedWithAReason) {
  Result<SequencePattern> mixed = SequencePattern::parse("shot.@@#.exr");
  ASSERT_FALSE(mixed);
  EXPECT_EQ(mixed.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(mixed.error().reason, "mixed # and @ padding '@@#' in shot.@@#.exr");
  Result<SequencePattern> wide = SequencePattern::parse("shot.%099d.exr");
  ASSERT_FALSE(wide);
  EXPECT_EQ(wide.error().reason, "padding '%099d' over 19 digits in shot.%099d.exr");
  Result<SequencePattern> empty = SequencePattern::parse("renders/");
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().reason, "no file name in 'renders/'");
}

// ---------------------------------------------------------------- writing patterns

TEST(SequenceTest, ToStringWritesEachStyleWithTheInputPadding) {
  const SequencePattern p = parse_ok("/r/shot.%04d.exr");
  EXPECT_EQ(p.to_string(), "/r/shot.%04d.exr");
  EXPECT_EQ(p.to_string(PaddingStyle::kHash), "/r/shot.####.exr");
  EXPECT_EQ(p.to_string(PaddingStyle::kHoudini), "/r/shot.$F4.exr");
  EXPECT_EQ(p.name(PaddingStyle::kHash), "shot.####.exr");

  const SequencePattern three = parse_ok("shot.@@@.exr");
  EXPECT_EQ(three.to_string(), "shot.@@@.exr");
  EXPECT_EQ(three.to_string(PaddingStyle::kPrintf), "shot.%03d.exr");
  const SequencePattern unpadded = parse_ok("shot.$F.exr");
  EXPECT_EQ(unpadded.to_string(PaddingStyle::kHash), "shot.@.exr");
  EXPECT_EQ(unpadded.to_string(PaddingStyle::kPrintf), "shot.%d.exr");

  EXPECT_EQ(parse_ok("shot.1001-1100####.exr").to_string(), "shot.1001-1100#.exr");
  EXPECT_EQ(parse_ok("shot.1-10x2@@@.exr").to_string(PaddingStyle::kPrintf), "shot.1-9x2%03d.exr");
}

TEST(SequenceTest, EveryStyleParsesBackToThePattern) {
  const char* inputs[] = {
      "shot.####.exr",  "shot.#.exr",           "shot.@.exr",          "shot.@@@@@@@@.exr",
      "shot.%02d.exr",  "dir/shot.$F6.tif",     "shot.1001-1100#.exr", "shot.1-10x2@@@.exr",
      "shot.-5-5@.exr", "a_####_beauty.exr",    "take1x####.exr",      "shot-####.exr",
      "####.exr",       "shot.-20--10%04d.exr",
  };
  for (const char* input : inputs) {
    const SequencePattern p = parse_ok(input);
    for (PaddingStyle style :
         {PaddingStyle::kHash, PaddingStyle::kPrintf, PaddingStyle::kHoudini}) {
      SequencePattern back = parse_ok(p.to_string(style));
      back.style = p.style;
      EXPECT_EQ(back, p) << input << " -> " << p.to_string(style);
    }
  }
}

// ---------------------------------------------------------------- frame numbers

TEST(SequenceTest, FormatFrameKeepsThePadding) {
  const SequencePattern p = parse_ok("/r/sh010.####.exr");
  EXPECT_EQ(format_frame(p, 1), "/r/sh010.0001.exr");
  EXPECT_EQ(format_frame(p, 1001), "/r/sh010.1001.exr");
  EXPECT_EQ(format_frame(p, 0), "/r/sh010.0000.exr");
  EXPECT_EQ(format_frame(p, 12345), "/r/sh010.12345.exr");
  EXPECT_EQ(format_frame(parse_ok("a.@.exr"), 12), "a.12.exr");
  EXPECT_EQ(format_frame(parse_ok("a.%06d.dpx"), 42), "a.000042.dpx");
}

TEST(SequenceTest, NegativeFramesCountTheSignInThePaddingLikePrintf) {
  EXPECT_EQ(format_frame_number(-12, 4), "-012");
  EXPECT_EQ(format_frame_number(-1, 4), "-001");
  EXPECT_EQ(format_frame_number(-1234, 4), "-1234");
  EXPECT_EQ(format_frame_number(-5, 1), "-5");
  EXPECT_EQ(format_frame_number(-5, 0), "-5");
  EXPECT_EQ(format_frame(parse_ok("shot.####.exr"), -12), "shot.-012.exr");
  // The same convention as std::printf("%04d") and Python's "-12".zfill(4).
  char buffer[16];
  std::snprintf(buffer, sizeof(buffer), "%04d", -12);
  EXPECT_EQ(format_frame_number(-12, 4), buffer);
}

TEST(SequenceTest, FrameInNameIsTheLastNumberBeforeTheExtension) {
  auto f = parse_frame_in_name("sh010_comp_v003.1001.exr");
  ASSERT_TRUE(f);
  EXPECT_EQ(f->prefix, "sh010_comp_v003.");
  EXPECT_EQ(f->frame, 1001);
  EXPECT_EQ(f->width, 4);
  EXPECT_FALSE(f->zero_padded);
  EXPECT_EQ(f->suffix, ".exr");

  f = parse_frame_in_name("sh010_0012_beauty.exr");
  ASSERT_TRUE(f);
  EXPECT_EQ(f->prefix, "sh010_");
  EXPECT_EQ(f->frame, 12);
  EXPECT_TRUE(f->zero_padded);
  EXPECT_EQ(f->suffix, "_beauty.exr");

  // Digits in the extension are not a frame; an all-digit "extension" is the frame.
  EXPECT_FALSE(parse_frame_in_name("clip.mp4"));
  f = parse_frame_in_name("plate.0042");
  ASSERT_TRUE(f);
  EXPECT_EQ(f->prefix, "plate.");
  EXPECT_EQ(f->frame, 42);
  EXPECT_EQ(f->suffix, "");

  EXPECT_FALSE(parse_frame_in_name("README.rst"));
  EXPECT_FALSE(parse_frame_in_name("hash_1234567890123456789.exr"));  // 19 digits
}

TEST(SequenceTest, MinusIsASignOnlyAfterASeparator) {
  auto dot = parse_frame_in_name("shot.-012.exr");
  ASSERT_TRUE(dot);
  EXPECT_EQ(dot->prefix, "shot.");
  EXPECT_EQ(dot->frame, -12);
  EXPECT_EQ(dot->width, 4);
  EXPECT_TRUE(dot->zero_padded);

  auto underscore = parse_frame_in_name("shot_-5.exr");
  ASSERT_TRUE(underscore);
  EXPECT_EQ(underscore->frame, -5);
  EXPECT_EQ(underscore->width, 2);
  EXPECT_FALSE(underscore->zero_padded);

  auto hyphen = parse_frame_in_name("shot-0005.exr");
  ASSERT_TRUE(hyphen);
  EXPECT_EQ(hyphen->prefix, "shot-");
  EXPECT_EQ(hyphen->frame, 5);

  // "-0" would be written "0": the minus belongs to the prefix.
  auto zero = parse_frame_in_name("shot.-000.exr");
  ASSERT_TRUE(zero);
  EXPECT_EQ(zero->prefix, "shot.-");
  EXPECT_EQ(zero->frame, 0);
}

TEST(SequenceTest, FormattedFramesParseBackAndFitOnlyTheirPadding) {
  for (int padding = 1; padding <= 8; ++padding) {
    const SequencePattern p = parse_ok("a.%0" + std::to_string(padding) + "d.exr");
    for (int64_t frame : {-100000, -1234, -101, -12, -1, 0, 1, 9, 10, 999, 1001, 10000, 123456}) {
      const std::string path = format_frame(p, frame);
      auto found = parse_frame_in_name(path);
      ASSERT_TRUE(found) << path;
      EXPECT_EQ(found->prefix, "a.") << path;
      EXPECT_EQ(found->frame, frame) << path;
      EXPECT_EQ(found->suffix, ".exr") << path;
      for (int other = 1; other <= 9; ++other) {
        // A name fits a padding exactly when that padding writes the same name.
        EXPECT_EQ(found->fits(other),
                  format_frame_number(frame, other) == format_frame_number(frame, padding))
            << path << " padding " << other;
      }
    }
  }
}

// ---------------------------------------------------------------- missing frames

TEST(SequenceTest, FindMissingListsTheGapsCompactly) {
  EXPECT_EQ(missing_text(frames("1001-1011,1013-1049,1053-1100")), "1012,1050-1052");
  EXPECT_EQ(missing_text(frames("1-100")), "");
  EXPECT_EQ(missing_text(frames("5")), "");
  EXPECT_EQ(missing_text(FrameSet()), "");
  EXPECT_EQ(missing_text(frames("1-100x2")), "2-98x2");
  EXPECT_EQ(missing_text(frames("1-10x3")), "2-3,5-6,8-9");
  EXPECT_EQ(missing_text(frames("-10--5,5-10")), "-4-4");
  // Canonical FrameSet text: the longest progression from each first frame.
  EXPECT_EQ(missing_text(frames("1,3,5,10")), "2-6x2,7-9");
}

TEST(SequenceTest, FindMissingIgnoresTheOrderOfThePresentFrames) {
  EXPECT_EQ(missing_text(frames("10-1")), "");
  EXPECT_EQ(missing_text(frames("20-30,1-10")), "11-19");
  EXPECT_EQ(missing_text(frames("100-1x3")),
            "2-3,5-6,8-9,11-12,14-15,17-18,20-21,23-24,26-27,"
            "29-30,32-33,35-36,38-39,41-42,44-45,47-48,50-51,"
            "53-54,56-57,59-60,62-63,65-66,68-69,71-72,74-75,"
            "77-78,80-81,83-84,86-87,89-90,92-93,95-96,98-99");
}

TEST(SequenceTest, FindMissingHandlesInterleavedProgressions) {
  // Spans overlap, frames do not.
  EXPECT_EQ(missing_text(frames("1-19x3,2-20x3")), "3-18x3");
  EXPECT_EQ(missing_text(frames("1-100x2,2-50x2")), "52-98x2");
  EXPECT_EQ(missing_text(frames("0-100x10,5,200")),
            "1-4,6-9,11-19,21-29,31-39,41-49,51-59,61-69,"
            "71-79,81-89,91-99,101-199");
}

TEST(SequenceTest, FindMissingRefusesMoreThanAFrameSetHolds) {
  Result<FrameSet> missing = find_missing(frames("1,1000000000"));
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(missing.error().reason, "999999998 missing frames over the limit of 100000000");
}

// ---------------------------------------------------------------- scanning

TEST(SequenceTest, ScanGroupsInterleavedSequencesAndListsGaps) {
  TempDir dir;
  dir.touch_frames("sh010_comp_v003.", 1001, 1100, 4, ".exr");
  dir.touch_frames("sh010_comp_v003.", 1001, 1100, 4, ".jpg");
  dir.touch_frames("sh020_plate_", 1, 48, 6, ".dpx");
  dir.touch_frames("sh010_comp_v002.", 1001, 1010, 4, ".exr");
  for (const char* gone : {"sh010_comp_v003.1012.exr", "sh010_comp_v003.1050.exr",
                           "sh010_comp_v003.1051.exr", "sh010_comp_v003.1052.exr"}) {
    std::filesystem::remove(dir.path() + "/" + gone);
  }
  const std::vector<Sequence> found = scan_ok(dir.path());
  EXPECT_EQ(summary(found), (std::vector<std::string>{
                                "sh010_comp_v002.####.exr 1001-1010",
                                "sh010_comp_v003.####.exr 1001-1011,1013-1049,1053-1100 missing "
                                "1012,1050-1052",
                                "sh010_comp_v003.####.jpg 1001-1100",
                                "sh020_plate_@@@@@@.dpx 1-48",
                            }));
  ASSERT_EQ(found.size(), 4u);
  const Sequence& v3 = found[1];
  EXPECT_EQ(v3.pattern.dir, dir.path() + "/");
  EXPECT_EQ(v3.pattern.padding, 4);
  EXPECT_EQ(v3.count(), 96u);
  EXPECT_EQ(v3.first(), 1001);
  EXPECT_EQ(v3.last(), 1100);
  EXPECT_EQ(v3.missing_count(), 4u);
  EXPECT_EQ(format_frame(v3.pattern, 1012), dir.path() + "/sh010_comp_v003.1012.exr");
}

TEST(SequenceTest, ScanKeepsDifferentPaddingsApart) {
  TempDir dir;
  dir.touch_frames("a.", 1, 12, 1, ".exr");  // a.1.exr ... a.12.exr
  dir.touch_frames("a.", 1, 5, 4, ".exr");   // a.0001.exr ... a.0005.exr
  dir.touch_frames("a.", 7, 8, 3, ".exr");   // a.007.exr, a.008.exr
  EXPECT_EQ(summary(scan_ok(dir.path())), (std::vector<std::string>{
                                              "a.@.exr 1-12",
                                              "a.@@@.exr 7-8",
                                              "a.####.exr 1-5",
                                          }));
}

TEST(SequenceTest, ScanJoinsNumbersWiderThanThePadding) {
  TempDir dir;
  dir.touch_frames("big.", 9990, 10010, 4, ".exr");  // 9990 ... 9999, then 10000 ... 10010
  dir.touch("big.0001.exr");
  const std::vector<Sequence> found = scan_ok(dir.path());
  EXPECT_EQ(summary(found), (std::vector<std::string>{"big.####.exr 1,9990-10010 missing 2-9989"}));
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(format_frame(found[0].pattern, 10000), dir.path() + "/big.10000.exr");
}

TEST(SequenceTest, ScanGivesUnpaddedNumbersTheNarrowestWidth) {
  TempDir dir;
  dir.touch_frames("r.", 1001, 1003, 1, ".exr");
  dir.touch_frames("s.", 8, 11, 1, ".exr");
  EXPECT_EQ(summary(scan_ok(dir.path())), (std::vector<std::string>{
                                              "r.####.exr 1001-1003",
                                              "s.@.exr 8-11",
                                          }));
}

TEST(SequenceTest, ScanReadsNegativeFrames) {
  TempDir dir;
  dir.touch_frames("neg.", -5, 3, 4, ".exr");  // neg.-005.exr ... neg.0003.exr
  const std::vector<Sequence> found = scan_ok(dir.path());
  EXPECT_EQ(summary(found), (std::vector<std::string>{"neg.####.exr -5-3"}));
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(format_frame(found[0].pattern, -5), dir.path() + "/neg.-005.exr");
}

TEST(SequenceTest, ScanListsSingleFilesAndSkipsHiddenFilesAndDirectories) {
  TempDir dir;
  dir.touch("README.rst");
  dir.touch("notes.txt");
  dir.touch("shot_v003.exr");  // one numbered file is a one-frame sequence, as in fileseq
  dir.touch(".hidden.0001.exr");
  dir.touch(".DS_Store");
  std::filesystem::create_directory(dir.path() + "/sub.0001.exr");
  std::filesystem::create_directory_symlink(dir.path() + "/sub.0001.exr",
                                            dir.path() + "/link.0002.exr");
  std::filesystem::create_symlink(dir.path() + "/notes.txt", dir.path() + "/link_to_notes.txt");
  const std::vector<Sequence> found = scan_ok(dir.path());
  EXPECT_EQ(summary(found), (std::vector<std::string>{
                                "README.rst",
                                "link_to_notes.txt",
                                "notes.txt",
                                "shot_v@@@.exr 3",
                            }));
  ASSERT_EQ(found.size(), 4u);
  EXPECT_TRUE(found[0].is_single_file());
  EXPECT_EQ(found[0].count(), 0u);
  EXPECT_EQ(found[0].missing_count(), 0u);
  ASSERT_TRUE(found[0].missing.has_value());
  EXPECT_TRUE(found[0].missing->empty());
  EXPECT_EQ(format_frame(found[0].pattern, 1), dir.path() + "/README.rst");
}

TEST(SequenceTest, ScanOfAnEmptyDirectoryFindsNothing) {
  TempDir dir;
  EXPECT_TRUE(scan_ok(dir.path()).empty());
}

TEST(SequenceTest, ScanOfAMissingDirectoryNamesIt) {
  TempDir dir;
  const std::string missing = dir.path() + "/nope";
  Result<std::vector<Sequence>> found = scan_directory(missing);
  ASSERT_FALSE(found);
  EXPECT_EQ(found.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(found.error().reason, "cannot read " + missing + ": No such file or directory");
  dir.touch("file.exr");
  Result<std::vector<Sequence>> not_dir = scan_directory(dir.path() + "/file.exr");
  ASSERT_FALSE(not_dir);
  EXPECT_EQ(not_dir.error().code, ErrorCode::kIo);
  EXPECT_EQ(not_dir.error().reason, "cannot read " + dir.path() + "/file.exr: Not a directory");
}

TEST(SequenceTest, ScanKeepsAStrayHugeNumberWithoutListingItsGap) {
  TempDir dir;
  dir.touch_frames("s.", 1, 3, 4, ".exr");
  dir.touch("s.123456789012.exr");
  const std::vector<Sequence> found = scan_ok(dir.path());
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].frames.to_string(), "1-3,123456789012");
  EXPECT_FALSE(found[0].missing.has_value());
  EXPECT_EQ(found[0].missing_count(), 123456789008u);
}

TEST(SequenceTest, ScanOfAHundredThousandFilesFindsOneSequence) {
  TempDir dir;
  // Frames 1-100100 but 500, 1500, ..., 99500: 100,000 files, written with plain open(). From
  // 10000 on the numbers are wider than the 4-digit padding and still join it.
  constexpr int64_t kLast = 100'100;
  for (int64_t frame = 1; frame <= kLast; ++frame) {
    if (frame % 1000 == 500) continue;
    dir.touch("sh010_comp_v003." + format_frame_number(frame, 4) + ".exr");
  }
  const std::vector<Sequence> found = scan_ok(dir.path());
  ASSERT_EQ(found.size(), 1u);
  const Sequence& seq = found[0];
  EXPECT_EQ(seq.pattern.name(), "sh010_comp_v003.####.exr");
  EXPECT_EQ(seq.count(), 100'000u);
  EXPECT_EQ(seq.first(), 1);
  EXPECT_EQ(seq.last(), kLast);
  ASSERT_TRUE(seq.missing.has_value());
  EXPECT_EQ(seq.missing->to_string(), "500-99500x1000");
  EXPECT_EQ(seq.missing_count(), 100u);
}

TEST(SequenceTest, BeachballSamplesAreTwoSequencesAndAReadme) {
  const auto beachball = source_dir() / ".." / "shared" / "data" / "openexr-images" / "Beachball";
  ASSERT_TRUE(std::filesystem::is_directory(beachball)) << "test data missing: " << beachball;
  EXPECT_EQ(summary(scan_ok(beachball.string())), (std::vector<std::string>{
                                                      "README.rst",
                                                      "multipart.####.exr 1-8",
                                                      "singlepart.####.exr 1-8",
                                                  }));
}

}  // namespace
}  // namespace farmhand::common
