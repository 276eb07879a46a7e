#include "common/byte_size.h"

#include <cstdint>
#include <string>

#include <gtest/gtest.h>

namespace farmhand::common {
namespace {

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = kKiB * 1024;
constexpr uint64_t kGiB = kMiB * 1024;
constexpr uint64_t kTiB = kGiB * 1024;

uint64_t parsed(const std::string& text) {
  Result<uint64_t> size = parse_byte_size(text);
  if (!size) {
    ADD_FAILURE() << "parse_byte_size('" << text << "'): " << size.error().reason;
    return 0;
  }
  return *size;
}

TEST(ByteSizeTest, PlainNumbersAreBytes) {
  EXPECT_EQ(parsed("0"), 0u);
  EXPECT_EQ(parsed("1048576"), kMiB);
  EXPECT_EQ(parsed("17B"), 17u);
}

TEST(ByteSizeTest, UnitsAreBinaryAndCaseInsensitive) {
  EXPECT_EQ(parsed("512M"), 512 * kMiB);
  EXPECT_EQ(parsed("64G"), 64 * kGiB);
  EXPECT_EQ(parsed("64g"), 64 * kGiB);
  EXPECT_EQ(parsed("8GiB"), 8 * kGiB);
  EXPECT_EQ(parsed("8gb"), 8 * kGiB);
  EXPECT_EQ(parsed("4k"), 4 * kKiB);
  EXPECT_EQ(parsed("2T"), 2 * kTiB);
  EXPECT_EQ(parsed("1P"), 1024 * kTiB);
}

TEST(ByteSizeTest, FractionsWithAUnitRoundDownToBytes) {
  EXPECT_EQ(parsed("1.5T"), kTiB + kTiB / 2);
  EXPECT_EQ(parsed("0.5G"), 512 * kMiB);
  EXPECT_EQ(parsed("1.1K"), 1126u);  // 1126.4
}

TEST(ByteSizeTest, MalformedSizesAreRefusedWithTheText) {
  for (const char* text :
       {"", "G", "12X", "-1G", "1.5", "1.G", ".5G", "8 G", "8GiBs", "1e9", "0x10", "8Gi"}) {
    Result<uint64_t> size = parse_byte_size(text);
    ASSERT_FALSE(size) << text;
    EXPECT_EQ(size.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(size.error().reason.find("bad size '" + std::string(text) + "'"), std::string::npos)
        << size.error().reason;
  }
}

TEST(ByteSizeTest, SizesPastSixtyFourBitsAreTooLarge) {
  for (const char* text : {"99999999999999999999", "16384P", "18446744073709551616"}) {
    Result<uint64_t> size = parse_byte_size(text);
    ASSERT_FALSE(size) << text;
    EXPECT_NE(size.error().reason.find("too large"), std::string::npos) << size.error().reason;
  }
  EXPECT_EQ(parsed("18446744073709551615"), UINT64_MAX);
}

TEST(ByteSizeTest, FormatsInTheLargestUnitWithOneDecimal) {
  EXPECT_EQ(format_byte_size(0), "0 B");
  EXPECT_EQ(format_byte_size(1023), "1023 B");
  EXPECT_EQ(format_byte_size(1024), "1 KiB");
  EXPECT_EQ(format_byte_size(1536), "1.5 KiB");
  EXPECT_EQ(format_byte_size(8 * kGiB), "8 GiB");
  EXPECT_EQ(format_byte_size(static_cast<uint64_t>(31.2 * static_cast<double>(kGiB))), "31.2 GiB");
  EXPECT_EQ(format_byte_size(kGiB - 1), "1 GiB");  // not "1024 MiB"
  EXPECT_EQ(format_byte_size(UINT64_MAX), "16 EiB");
}

TEST(ByteSizeTest, FormattedSizesParseBackWithinOneDecimal) {
  for (uint64_t size : {kMiB, 3 * kGiB + 300 * kMiB, 7 * kTiB}) {
    std::string text = format_byte_size(size);
    text.erase(text.find(' '), 1);
    text.erase(text.size() - 2);  // "3.3GiB" -> "3.3G"
    const uint64_t back = parsed(text);
    EXPECT_LE(back > size ? back - size : size - back, size / 20) << text;
  }
}

}  // namespace
}  // namespace farmhand::common
