// Framing helpers: size limits before parsing, garbled input as errors, timeouts.
#include "common/wire.h"

#include <string>

#include "farmhand.pb.h"
#include <gtest/gtest.h>
#include <unistd.h>

namespace farmhand::common {
namespace {

TEST(WireTest, ValidMessageRoundTrips) {
  wire::ClientRequest request;
  request.set_version(kProtocolVersion);
  request.mutable_status()->set_job_id(42);
  zmq::message_t bytes = to_zmq(request);
  wire::ClientRequest parsed;
  ASSERT_TRUE(parse_message(bytes.data(), bytes.size(), 1024, parsed).has_value());
  EXPECT_EQ(parsed.status().job_id(), 42u);
}

TEST(WireTest, OversizedMessageIsRefusedBeforeParsing) {
  std::string big(2048, 'x');
  wire::ClientRequest parsed;
  auto ok = parse_message(big.data(), big.size(), 1024, parsed);
  ASSERT_FALSE(ok.has_value());
  EXPECT_EQ(ok.error().reason, "message of 2048 bytes over the 1024-byte limit");
}

TEST(WireTest, GarbageAndTruncatedMessagesAreErrorsNotCrashes) {
  wire::WorkerMessage msg;
  msg.mutable_result()->set_error(std::string(200, 'e'));
  msg.mutable_result()->mutable_ref()->set_job_id(7);
  std::string bytes = msg.SerializeAsString();
  for (size_t cut = 1; cut < bytes.size(); cut += 7) {
    wire::WorkerMessage parsed;
    auto ok = parse_message(bytes.data(), cut, 1 << 20, parsed);
    if (!ok) {
      EXPECT_EQ(ok.error().code, ErrorCode::kCorrupt);
    }
  }
  const std::string junk = "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01";
  wire::WorkerMessage parsed;
  auto ok = parse_message(junk.data(), junk.size(), 1 << 20, parsed);
  ASSERT_FALSE(ok.has_value());
  EXPECT_EQ(ok.error().reason, "malformed message (11 bytes)");
}

TEST(WireTest, RequestToSilentEndpointTimesOutWithOneLine) {
  zmq::context_t ctx;
  std::string endpoint = "ipc:///tmp/fh-wire-test-" + std::to_string(getpid()) + ".sock";
  wire::ClientRequest request;
  wire::ClientReply reply;
  auto ok = request_reply(ctx, endpoint, request, reply, std::chrono::milliseconds(200));
  ASSERT_FALSE(ok.has_value());
  EXPECT_EQ(ok.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(ok.error().reason, "broker unreachable at " + endpoint + " (no reply within 1 s)");
}

TEST(WireTest, RequestReplyOverRouter) {
  zmq::context_t ctx;
  zmq::socket_t router(ctx, zmq::socket_type::router);
  std::string endpoint = "ipc:///tmp/fh-wire-rr-" + std::to_string(getpid()) + ".sock";
  router.bind(endpoint);
  wire::ClientRequest request;
  request.set_request_id(9);
  wire::ClientReply reply;
  zmq::socket_t client(ctx, zmq::socket_type::dealer);
  client.connect(endpoint);
  ASSERT_TRUE(send_one(client, request));
  zmq::message_t id;
  zmq::message_t payload;
  ASSERT_TRUE(router.recv(id));
  ASSERT_TRUE(router.recv(payload));
  wire::ClientRequest got;
  ASSERT_TRUE(parse_message(payload.data(), payload.size(), 1024, got).has_value());
  wire::ClientReply answer;
  answer.set_request_id(got.request_id());
  ASSERT_TRUE(send_routed(router, id, answer));
  zmq::message_t back;
  ASSERT_TRUE(client.recv(back));
  ASSERT_TRUE(parse_message(back.data(), back.size(), 1024, reply).has_value());
  EXPECT_EQ(reply.request_id(), 9u);
  unlink(("/tmp/fh-wire-rr-" + std::to_string(getpid()) + ".sock").c_str());
}

}  // namespace
}  // namespace farmhand::common

namespace farmhand::common {
namespace {

TEST(WireTest, InvalidUtf8IsReplacedSoProtobufCanCarryIt) {
  EXPECT_EQ(valid_utf8("plain ascii"), "plain ascii");
  EXPECT_EQ(valid_utf8("caf\xc3\xa9"), "caf\xc3\xa9");
  EXPECT_EQ(valid_utf8("bad \xff\xfe end"), "bad ?? end");
  EXPECT_EQ(valid_utf8("cut \xe2\x82"), "cut ??");
  EXPECT_EQ(valid_utf8("overlong \xc0\xaf"), "overlong ??");
  EXPECT_EQ(valid_utf8("surrogate \xed\xa0\x80"), "surrogate ???");
  // The point of it: a result carrying the text parses on the other side.
  wire::WorkerMessage msg;
  msg.mutable_result()->set_error(valid_utf8("channel \"\x9c\x01\" has sampling 64,1"));
  std::string bytes = msg.SerializeAsString();
  wire::WorkerMessage parsed;
  EXPECT_TRUE(parse_message(bytes.data(), bytes.size(), 1 << 20, parsed).has_value());
}

}  // namespace
}  // namespace farmhand::common
