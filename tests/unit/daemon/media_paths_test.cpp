// broker.allowed_roots: which media and publish paths the broker accepts
// (daemon/media_jobs.h, check_allowed_root and check_media_paths).
#include <filesystem>
#include <string>
#include <vector>

#include "tests/support/temp_dir.h"
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "daemon/media_jobs.h"

namespace farmhand::daemon {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing_support::TempDir;

bool allowed(const std::string& path, const std::vector<std::string>& roots) {
  return check_allowed_root("input", path, roots).has_value();
}

TEST(MediaPathsTest, NoRootsAllowsAnyPath) {
  EXPECT_TRUE(allowed("/etc/passwd", {}));
}

TEST(MediaPathsTest, PathsUnderARootAreAllowedWholeComponentsOnly) {
  const std::vector<std::string> roots = {"/mnt/projects", "/mnt/renders"};
  EXPECT_TRUE(allowed("/mnt/projects", roots));
  EXPECT_TRUE(allowed("/mnt/projects/sh010/comp.####.exr", roots));
  EXPECT_TRUE(allowed("/mnt/renders/./sh010/../sh020/x.exr", roots));
  EXPECT_FALSE(allowed("/mnt/projectsX/sh010/comp.exr", roots)) << "a prefix is not a parent";
  EXPECT_FALSE(allowed("/mnt/projects/../secrets/x.exr", roots));
  EXPECT_FALSE(allowed("/mnt", roots));
  EXPECT_FALSE(allowed("/etc/passwd", roots));
}

TEST(MediaPathsTest, RefusalNamesTheFieldThePathAndTheRoots) {
  auto refused = check_allowed_root("output", "/etc/x.jpg", {"/mnt/a", "/mnt/b"});
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(refused.error().reason,
            "output /etc/x.jpg is outside the allowed roots (/mnt/a, /mnt/b)");
}

TEST(MediaPathsTest, SymlinkInsideARootThatLeadsOutIsRefused) {
  TempDir root("fh-roots");
  TempDir outside("fh-outside");
  fs::create_directory_symlink(outside.path(), root.file("escape"));
  fs::create_directory(root.file("shots"));
  EXPECT_TRUE(allowed(root.file("shots/comp.####.exr"), {root.path()}));
  EXPECT_FALSE(allowed(root.file("escape/comp.####.exr"), {root.path()}));
  EXPECT_FALSE(allowed(root.file("escape/new/dir/out.jpg"), {root.path()}));
}

TEST(MediaPathsTest, ARootThatIsItselfASymlinkAllowsItsTarget) {
  TempDir real("fh-real");
  TempDir links("fh-links");
  const std::string mount = links.file("projects");  // /.../projects -> the real directory
  fs::create_directory_symlink(real.path(), mount);
  fs::create_directory(real.file("sh010"));
  EXPECT_TRUE(allowed(mount + "/sh010/comp.exr", {mount}));
}

TEST(MediaPathsTest, MediaJobInputOutputAndOcioAreEachChecked) {
  wire::JobSpec spec;
  spec.set_kind("thumbnail");
  (*spec.mutable_params())["input"] = "/mnt/projects/sh010/comp.####.exr";
  (*spec.mutable_params())["output"] = "/mnt/projects/sh010/thumb.jpg";
  const std::vector<std::string> roots = {"/mnt/projects"};
  EXPECT_TRUE(check_media_paths(spec, roots).has_value());
  (*spec.mutable_params())["ocio"] = "/etc/ocio/config.ocio";
  auto ocio = check_media_paths(spec, roots);
  ASSERT_FALSE(ocio.has_value());
  EXPECT_THAT(ocio.error().reason, HasSubstr("ocio /etc/ocio/config.ocio is outside"));
  spec.mutable_params()->erase("ocio");
  (*spec.mutable_params())["output"] = "/tmp/thumb.jpg";
  auto output = check_media_paths(spec, roots);
  ASSERT_FALSE(output.has_value());
  EXPECT_THAT(output.error().reason, HasSubstr("output /tmp/thumb.jpg is outside"));
}

}  // namespace
}  // namespace farmhand::daemon
