#include "common/byte_size.h"

#include <gtest/gtest.h>

namespace farmhand::common {
namespace {

TEST(ByteSizeTest, ParsesBinaryUnitsAsPeopleWriteThem) {
  EXPECT_EQ(*parse_byte_size("4096"), 4096u);
  EXPECT_EQ(*parse_byte_size("0"), 0u);
  EXPECT_EQ(*parse_byte_size("512M"), 512ull << 20);
  EXPECT_EQ(*parse_byte_size("8G"), 8ull << 30);
  EXPECT_EQ(*parse_byte_size("8g"), 8ull << 30);
  EXPECT_EQ(*parse_byte_size("8GB"), 8ull << 30);
  EXPECT_EQ(*parse_byte_size("8GiB"), 8ull << 30);
  EXPECT_EQ(*parse_byte_size("8 GiB"), 8ull << 30);
  EXPECT_EQ(*parse_byte_size("1.5T"), 3ull << 39);
  EXPECT_EQ(*parse_byte_size("64K"), 64ull << 10);
}

TEST(ByteSizeTest, RefusesWhatIsNotASizeWithOneLine) {
  for (const char* text : {"", "G", "-1G", "12Q", "1.5", "8 GX", "1e30T", "99999999999T"}) {
    auto parsed = parse_byte_size(text);
    ASSERT_FALSE(parsed) << text;
    EXPECT_NE(parsed.error().reason.find(text), std::string::npos) << parsed.error().reason;
    EXPECT_EQ(parsed.error().reason.find('\n'), std::string::npos);
  }
}

TEST(ByteSizeTest, FormatsWithOneDecimalInBinaryUnits) {
  EXPECT_EQ(format_byte_size(900), "900 B");
  EXPECT_EQ(format_byte_size(512ull << 20), "512.0 MiB");
  EXPECT_EQ(format_byte_size(static_cast<uint64_t>(31.2 * (1ull << 30))), "31.2 GiB");
  EXPECT_EQ(format_byte_size(3ull << 39), "1.5 TiB");
}

}  // namespace
}  // namespace farmhand::common
