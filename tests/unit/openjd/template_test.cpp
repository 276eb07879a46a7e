#include "openjd/template.h"

#include <gtest/gtest.h>

namespace farmhand::openjd {
namespace {

TEST(TemplateTest, Placeholder) {
  EXPECT_TRUE(parse_template("a: 1").has_value() == false);
}

}  // namespace
}  // namespace farmhand::openjd
