// ZeroMQ + protobuf framing shared by the broker, the worker and the CLI.
//
// Every message is one ZeroMQ frame holding one serialized protobuf message
// (behind a ROUTER, preceded by the peer's routing-id frame). Sizes are checked
// before parsing, and parsing never throws: a garbled frame is an Error the
// caller logs once and drops. Sockets are not thread-safe; neither is this.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <google/protobuf/message_lite.h>
#include <zmq.hpp>

#include "common/curve.h"
#include "common/result.h"

namespace farmhand::common {

// Bumped whenever proto/farmhand.proto changes meaning; carried in Ready and
// in every ClientRequest.
inline constexpr uint32_t kProtocolVersion = 1;

// `text` with every byte sequence that is not valid UTF-8 replaced by '?'.
// Protobuf refuses to parse a proto3 `string` field holding invalid UTF-8, and
// decoder errors quote whatever garbage a damaged file contains.
std::string valid_utf8(std::string_view text);

// Parses `size` bytes into `msg` if size <= max_bytes. Errors: "message of N bytes
// over the M-byte limit", "malformed message (N bytes)".
[[nodiscard]] Result<void> parse_message(const void* data, size_t size, size_t max_bytes,
                                         google::protobuf::MessageLite& msg);

// Serializes into a zmq message.
zmq::message_t to_zmq(const google::protobuf::MessageLite& msg);

// Sends [routing_id, payload] on a ROUTER without blocking; a peer that is gone
// or whose queue is full just loses the message (false).
bool send_routed(zmq::socket_t& router, const zmq::message_t& routing_id,
                 const google::protobuf::MessageLite& msg);

bool send_routed(zmq::socket_t& router, const std::string& routing_id,
                 const google::protobuf::MessageLite& msg);

// Sends one frame on a DEALER without blocking.
bool send_one(zmq::socket_t& dealer, const google::protobuf::MessageLite& msg);

// A DEALER round trip for the CLI and tests: connects to `endpoint`, sends
// `request`, waits up to `timeout` for one reply. Error kUnavailable
// "broker unreachable at tcp://... (no reply within 5 s)" when none comes.
// With `curve`, the socket is a CurveZMQ client of that broker key, and a
// handshake the broker ends (it refuses this client's key, or the broker key
// is not its own) is error kPermissionDenied at once, saying which.
[[nodiscard]] Result<void> request_reply(zmq::context_t& ctx, const std::string& endpoint,
                                         const google::protobuf::MessageLite& request,
                                         google::protobuf::MessageLite& reply,
                                         std::chrono::milliseconds timeout,
                                         size_t max_reply_bytes = 256u << 20,
                                         const CurveClientKeys* curve = nullptr);

}  // namespace farmhand::common
