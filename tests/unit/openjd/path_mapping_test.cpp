// Path mapping rules: which rule applies to a path and what it becomes.
#include "openjd/path_mapping.h"

#include <gtest/gtest.h>

namespace farmhand::openjd {
namespace {

std::vector<PathMappingRule> rules(std::vector<PathMappingRule> given) {
  return order_path_mapping_rules(std::move(given));
}

TEST(PathMappingTest, PosixPrefixIsReplacedComponentByComponent) {
  auto r = rules({{PathFormat::kPosix, "/mnt/projects", "/data/projects"}});
  EXPECT_EQ(map_path(r, "/mnt/projects/a/b.exr"), "/data/projects/a/b.exr");
  EXPECT_EQ(map_path(r, "/mnt/projects"), "/data/projects");
  EXPECT_EQ(map_path(r, "/mnt//projects/./a"), "/data/projects/a");
  EXPECT_EQ(map_path(r, "/mnt/projectsX/a"), std::nullopt);
  EXPECT_EQ(map_path(r, "/mnt/Projects/a"), std::nullopt);
  EXPECT_EQ(map_path(r, "mnt/projects/a"), std::nullopt);
}

TEST(PathMappingTest, TrailingSeparatorIsKept) {
  auto r = rules({{PathFormat::kPosix, "/mnt/projects/", "/data/"}});
  EXPECT_EQ(map_path(r, "/mnt/projects/shots/"), "/data/shots/");
  EXPECT_EQ(map_path(r, "/mnt/projects/"), "/data/");
}

TEST(PathMappingTest, LongestSourceWinsWhateverTheGivenOrder) {
  auto r = rules({{PathFormat::kPosix, "/mnt", "/short"},
                  {PathFormat::kPosix, "/mnt/a/b", "/longest"},
                  {PathFormat::kPosix, "/mnt/a", "/middle"}});
  EXPECT_EQ(r[0].destination_path, "/longest");
  EXPECT_EQ(map_path(r, "/mnt/a/b/c"), "/longest/c");
  EXPECT_EQ(map_path(r, "/mnt/a/x"), "/middle/x");
  EXPECT_EQ(map_path(r, "/mnt/x"), "/short/x");
}

TEST(PathMappingTest, EqualLengthsKeepTheirGivenOrderAndTheFirstMatchWins) {
  auto r =
      rules({{PathFormat::kPosix, "/mnt/a", "/first"}, {PathFormat::kPosix, "/mnt/a", "/second"}});
  EXPECT_EQ(map_path(r, "/mnt/a/f"), "/first/f");
}

TEST(PathMappingTest, WindowsSourcesIgnoreCaseAndTakeEitherSeparator) {
  auto r = rules({{PathFormat::kWindows, "C:\\Users\\Artist", "/home/artist"},
                  {PathFormat::kWindows, "\\\\fileserver\\share", "/mnt/share"}});
  EXPECT_EQ(map_path(r, "c:\\users\\ARTIST\\scene.ma"), "/home/artist/scene.ma");
  EXPECT_EQ(map_path(r, "C:/Users/Artist/tex/wood.exr"), "/home/artist/tex/wood.exr");
  EXPECT_EQ(map_path(r, "\\\\FileServer\\share\\plates\\"), "/mnt/share/plates/");
  EXPECT_EQ(map_path(r, "D:\\Users\\Artist\\scene.ma"), std::nullopt);
  EXPECT_EQ(map_path(r, "\\\\fileserver\\other\\x"), std::nullopt);
}

TEST(PathMappingTest, RulesFileListsTheRulesInTheOrderTheyAreTried) {
  auto r = rules({{PathFormat::kPosix, "/a", "/x"}, {PathFormat::kWindows, "C:\\b\\c", "/y"}});
  EXPECT_EQ(
      path_mapping_json(r),
      "{\"path_mapping_rules\":[{\"destination_path\":\"/y\",\"source_path\":\"C:\\\\b\\\\c\","
      "\"source_path_format\":\"WINDOWS\"},{\"destination_path\":\"/x\",\"source_path\":\"/"
      "a\",\"source_path_format\":\"POSIX\"}],\"version\":\"pathmapping-1.0\"}");
  EXPECT_EQ(path_mapping_json({}), "{\"path_mapping_rules\":[],\"version\":\"pathmapping-1.0\"}");
}

TEST(PathMappingTest, ARulesFileReadsBackAndABadOneSaysWhatIsWrong) {
  auto written = rules({{PathFormat::kPosix, "/a", "/x"}, {PathFormat::kWindows, "C:\\b", "/y"}});
  auto read = parse_path_mapping_json(path_mapping_json(written));
  ASSERT_TRUE(read) << read.error().reason;
  ASSERT_EQ(read->size(), 2u);
  EXPECT_EQ(map_path(order_path_mapping_rules(*read), "C:\\b\\shot.exr"), "/y/shot.exr");
  EXPECT_EQ(map_path(order_path_mapping_rules(*read), "/a/b"), "/x/b");
  EXPECT_TRUE(parse_path_mapping_json(R"({"version": "pathmapping-1.0"})").value().empty());
  auto reason = [](const std::string& text) {
    auto parsed = parse_path_mapping_json(text);
    return parsed ? std::string("read") : parsed.error().reason;
  };
  EXPECT_EQ(reason("[1"), "path mapping rules: not a JSON object");
  EXPECT_EQ(reason(R"({"version": "2"})"), "version: must be \"pathmapping-1.0\"");
  EXPECT_EQ(reason(R"({"version": "pathmapping-1.0", "path_mapping_rules": [{"source_path_format":
      "MAC", "source_path": "/a", "destination_path": "/b"}]})"),
            "path_mapping_rules[0].source_path_format: \"MAC\" is not POSIX or WINDOWS");
  EXPECT_EQ(reason(R"({"version": "pathmapping-1.0", "path_mapping_rules": [{"source_path_format":
      "POSIX", "source_path": "/a"}]})"),
            "path_mapping_rules[0].destination_path: must be a non-empty string");
}

}  // namespace
}  // namespace farmhand::openjd
