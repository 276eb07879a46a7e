// CurveZMQ key files and the authorised-keys directory (common/curve.h).
#include "common/curve.h"

#include <filesystem>
#include <fstream>
#include <string>

#include "tests/support/temp_dir.h"
#include <gtest/gtest.h>

namespace farmhand::common {
namespace {

namespace fs = std::filesystem;
using testing_support::TempDir;

void write(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

TEST(CurveTest, KeygenWritesAPrivateSecretKeyAndItsPublicKeyAndNeverOverwrites) {
  ASSERT_TRUE(curve_available());
  TempDir dir;
  auto pair = write_curve_keypair(dir.file("node"));
  ASSERT_TRUE(pair) << pair.error().reason;
  EXPECT_EQ(read_curve_key_file(dir.file("node.key")).value(), pair->secret_key);
  EXPECT_EQ(read_curve_key_file(dir.file("node.pub")).value(), pair->public_key);
  EXPECT_EQ(curve_public_key(pair->secret_key).value(), pair->public_key);
  EXPECT_EQ(fs::status(dir.file("node.key")).permissions(),
            fs::perms::owner_read | fs::perms::owner_write);
  auto again = write_curve_keypair(dir.file("node"));
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().reason, dir.file("node.key") + " exists: not overwritten");
  EXPECT_EQ(read_curve_key_file(dir.file("node.key")).value(), pair->secret_key);
}

TEST(CurveTest, AKeyMayHoldAHashAndOtherLinesAreComments) {
  TempDir dir;
  // '#' is a Z85 character: a key holding one is still the key.
  std::string key;
  for (int i = 0; i < 1000 && key.empty(); ++i) {
    auto pair = curve_keypair();
    ASSERT_TRUE(pair);
    if (pair->public_key.find('#') != std::string::npos) key = pair->public_key;
  }
  ASSERT_TRUE(is_curve_key(key));
  write(dir.file("k.pub"), "# a comment\n\n  " + key + "  \ntrailing words\n");
  EXPECT_EQ(read_curve_key_file(dir.file("k.pub")).value(), key);
  write(dir.file("bad.pub"), "# nothing here\nnot-a-key\n");
  auto bad = read_curve_key_file(dir.file("bad.pub"));
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().reason,
            "no CURVE key in " + dir.file("bad.pub") + " (a line of 40 Z85 characters)");
  EXPECT_EQ(read_curve_key_file(dir.file("missing.key")).error().code, ErrorCode::kNotFound);
  EXPECT_FALSE(curve_public_key("too short"));
}

TEST(CurveTest, AuthorisedKeysAreThePubFilesOfTheDirectory) {
  TempDir dir;
  auto a = write_curve_keypair(dir.file("a"));  // a.key beside a.pub: never read as a public key
  auto b = write_curve_keypair(dir.file("b"));
  ASSERT_TRUE(a && b);
  write(dir.file("broken.pub"), "garbage\n");
  write(dir.file("notes.txt"), b->secret_key + "\n");
  fs::create_directory(dir.file("sub.pub"));
  size_t skipped = 0;
  auto keys = read_authorized_keys(dir.path(), &skipped);
  ASSERT_TRUE(keys) << keys.error().reason;
  EXPECT_EQ(*keys, (std::set<std::string>{a->public_key, b->public_key}));
  EXPECT_EQ(skipped, 1u);
  auto missing = read_authorized_keys(dir.file("nowhere"));
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().reason.find("cannot list authorised keys in"), std::string::npos);
}

}  // namespace
}  // namespace farmhand::common
