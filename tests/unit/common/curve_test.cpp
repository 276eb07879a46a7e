// CurveZMQ key files and the authorised-keys directory (common/curve.h).
#include "common/curve.h"

#include <filesystem>
#include <fstream>
#include <iterator>
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

std::string read_file_text(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
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
  EXPECT_EQ(*keys,
            (std::map<std::string, std::string>{{a->public_key, "a"}, {b->public_key, "b"}}));
  EXPECT_EQ(skipped, 1u);
  auto missing = read_authorized_keys(dir.file("nowhere"));
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().reason.find("cannot list authorised keys in"), std::string::npos);
}

TEST(CurveTest, AServerKeyPairIsMadeOnceAndReadBackAfter) {
  TempDir dir;
  bool created = false;
  auto first = load_or_create_curve_keypair(dir.file("broker"), &created);
  ASSERT_TRUE(first) << first.error().reason;
  EXPECT_TRUE(created);
  EXPECT_EQ(fs::status(dir.file("broker.key")).permissions(),
            fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_EQ(read_curve_key_file(dir.file("broker.pub")).value(), first->public_key);
  EXPECT_EQ(curve_public_key(first->secret_key).value(), first->public_key);

  auto again = load_or_create_curve_keypair(dir.file("broker"), &created);
  ASSERT_TRUE(again) << again.error().reason;
  EXPECT_FALSE(created);
  EXPECT_EQ(again->secret_key, first->secret_key);
  EXPECT_EQ(again->public_key, first->public_key);
  // Only the two key files: no temporary file is left behind.
  size_t files = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(dir.path())) ++files;
  EXPECT_EQ(files, 2u);

  // A lost or stale public key file is written again from the secret key.
  fs::remove(dir.file("broker.pub"));
  ASSERT_TRUE(load_or_create_curve_keypair(dir.file("broker")));
  EXPECT_EQ(read_curve_key_file(dir.file("broker.pub")).value(), first->public_key);
  write(dir.file("broker.pub"), curve_keypair()->public_key + "\n");
  ASSERT_TRUE(load_or_create_curve_keypair(dir.file("broker")));
  EXPECT_EQ(read_curve_key_file(dir.file("broker.pub")).value(), first->public_key);
}

TEST(CurveTest, AServerKeyFileThatOthersCanReadOrThatHoldsNoKeyIsRefused) {
  TempDir dir;
  auto pair = load_or_create_curve_keypair(dir.file("broker"));
  ASSERT_TRUE(pair) << pair.error().reason;
  fs::permissions(dir.file("broker.key"), fs::perms::group_read, fs::perm_options::add);
  auto wide = load_or_create_curve_keypair(dir.file("broker"));
  ASSERT_FALSE(wide);
  EXPECT_EQ(wide.error().reason,
            "key file " + dir.file("broker.key") + " has mode 0640, wider than 0600: chmod 600 it");

  fs::permissions(dir.file("broker.key"), fs::perms::owner_read | fs::perms::owner_write);
  write(dir.file("broker.key"), "not a key\n");
  auto junk = load_or_create_curve_keypair(dir.file("broker"));
  ASSERT_FALSE(junk);
  EXPECT_EQ(junk.error().reason,
            "no CURVE key in " + dir.file("broker.key") + " (a line of 40 Z85 characters)");
  // A refused key is never replaced by a new one.
  EXPECT_EQ(read_file_text(dir.file("broker.key")), "not a key\n");
}

TEST(CurveTest, LoopbackEndpointsAreIpcInprocAndTcpOnTheLoopbackAddresses) {
  for (const char* endpoint :
       {"ipc:///tmp/fh/worker.ipc", "inproc://workers", "tcp://127.0.0.1:7600",
        "tcp://127.1.2.3:7600", "tcp://[::1]:7600", "tcp://localhost:7600", "tcp://lo:7600"}) {
    EXPECT_TRUE(is_loopback_endpoint(endpoint)) << endpoint;
  }
  for (const char* endpoint :
       {"tcp://0.0.0.0:7600", "tcp://*:7600", "tcp://10.0.0.5:7600", "tcp://[::]:7600",
        "tcp://eth0:7600", "tcp://127.0.0.1;10.0.0.5:7600", "tcp://127.0.0.1.example.com:7600",
        "tcp://localhost.example.com:7600", "tcp://1270.0.0.1:7600", "ws://127.0.0.1:7600",
        "tcp://127.0.0.1"}) {
    EXPECT_FALSE(is_loopback_endpoint(endpoint)) << endpoint;
  }
}

}  // namespace
}  // namespace farmhand::common
