// The Open Job Description conformance cases (../shared/data/openjd-conformance,
// 2023-09): every job and environment template whose file name has ".invalid."
// must be refused, every other accepted. One test case per file.
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "openjd/template.h"
#include "tests/unit/openjd/conformance_files.h"
#include <gtest/gtest.h>

namespace farmhand::openjd {
namespace {

namespace fs = std::filesystem;

using testing::conformance_dir;

std::vector<std::string> template_files() {
  return testing::conformance_files({"job_templates", "env_templates"});
}

std::string read(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

class ConformanceTest : public ::testing::TestWithParam<std::string> {};

TEST(ConformanceSuiteTest, IsPresent) {
  EXPECT_GT(template_files().size(), 200u) << "no conformance cases in " << conformance_dir();
}

TEST_P(ConformanceTest, AcceptedUnlessNamedInvalid) {
  const std::string& name = GetParam();
  const bool must_fail = name.find(".invalid.") != std::string::npos;
  auto result = parse_template(read(conformance_dir() / name));
  if (must_fail) {
    EXPECT_FALSE(result.has_value()) << name << " was accepted";
    if (!result) {
      EXPECT_EQ(result.error().reason.find('\n'), std::string::npos);
    }
  } else {
    EXPECT_TRUE(result.has_value()) << name << ": " << result.error().reason;
  }
}

std::string case_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string out;
  for (char c : info.param) {
    out += (std::isalnum(static_cast<unsigned char>(c)) != 0) ? c : '_';
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(OpenJd2023_09, ConformanceTest, ::testing::ValuesIn(template_files()),
                         case_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(ConformanceTest);

}  // namespace
}  // namespace farmhand::openjd
