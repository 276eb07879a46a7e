// printable(): user text (names, labels, meta, paths, reasons) shown on a
// terminal, in an error reason or in a log can carry no byte a terminal acts on.
#include <string>

#include <gtest/gtest.h>

#include "common/result.h"

namespace farmhand {
namespace {

TEST(PrintableTest, ControlCharactersAndEscapeSequencesAreEscaped) {
  EXPECT_EQ(printable("a\x1b[2Jb\nc\rd\ae\x7f", kWholeText), "a\\x1b[2Jb\\x0ac\\x0dd\\x07e\\x7f");
  EXPECT_EQ(printable(std::string("nul\0x", 5), kWholeText), "nul\\x00x");
  EXPECT_EQ(printable("tab\there", kWholeText), "tab\\x09here");
}

TEST(PrintableTest, ValidUtf8AndBackslashesPassUnchanged) {
  EXPECT_EQ(printable("sh010 caf\xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x8e\xac \\x1b", kWholeText),
            "sh010 caf\xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x8e\xac \\x1b");
}

TEST(PrintableTest, C1ControlsAreEscapedByteByByte) {
  // U+009B is an 8-bit CSI; U+0085 a next-line.
  EXPECT_EQ(printable("a\xc2\x9b"
                      "2Jb\xc2\x85",
                      kWholeText),
            "a\\xc2\\x9b2Jb\\xc2\\x85");
}

TEST(PrintableTest, BidiOverridesAndLineSeparatorsAreEscaped) {
  EXPECT_EQ(printable("a\xe2\x80\xae"
                      "b\xe2\x81\xa6"
                      "c\xe2\x80\xa8",
                      kWholeText),
            "a\\xe2\\x80\\xaeb\\xe2\\x81\\xa6c\\xe2\\x80\\xa8");
}

TEST(PrintableTest, InvalidUtf8IsEscapedByteByByte) {
  EXPECT_EQ(printable("\xff\xfe", kWholeText), "\\xff\\xfe");
  EXPECT_EQ(printable("a\x9b"
                      "b",
                      kWholeText),
            "a\\x9bb");                                                 // stray continuation
  EXPECT_EQ(printable("\xc0\xaf", kWholeText), "\\xc0\\xaf");           // overlong '/'
  EXPECT_EQ(printable("\xed\xa0\x80", kWholeText), "\\xed\\xa0\\x80");  // a surrogate
  EXPECT_EQ(printable("\xf4\x90\x80\x80", kWholeText), "\\xf4\\x90\\x80\\x80");  // > U+10FFFF
  EXPECT_EQ(printable("cut \xe6\x97", kWholeText), "cut \\xe6\\x97");  // sequence cut short
}

TEST(PrintableTest, LongTextIsCutAtACharacterBoundary) {
  EXPECT_EQ(printable(std::string(100, 'a')), std::string(80, 'a') + "...");
  EXPECT_EQ(printable(std::string(80, 'a')), std::string(80, 'a'));
  // A two-byte character that starts at byte 79 is kept whole.
  EXPECT_EQ(printable(std::string(79, 'a') + "\xc3\xa9zz"), std::string(79, 'a') + "\xc3\xa9...");
}

TEST(PrintableTest, LinesKeepLineFeedsAndTabsButEscapeTheRest) {
  EXPECT_EQ(printable_lines("frame 1\tok\nframe 2\r\n\x1b[31mred\x1b[0m\n"),
            "frame 1\tok\nframe 2\\x0d\n\\x1b[31mred\\x1b[0m\n");
}

}  // namespace
}  // namespace farmhand
