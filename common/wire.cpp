#include "common/wire.h"

#include <fmt/format.h>

namespace farmhand::common {

std::string valid_utf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    auto c = static_cast<unsigned char>(text[i]);
    size_t len = c < 0x80           ? 1
                 : (c >> 5) == 0x6  ? 2
                 : (c >> 4) == 0xe  ? 3
                 : (c >> 3) == 0x1e ? 4
                                    : 0;
    bool ok = len > 0 && i + len <= text.size();
    for (size_t k = 1; ok && k < len; ++k) {
      ok = (static_cast<unsigned char>(text[i + k]) & 0xc0) == 0x80;
    }
    if (ok && len > 1) {
      // Overlong forms, surrogates and code points past U+10FFFF are invalid too.
      uint32_t cp = c & (0xff >> (len + 1));
      for (size_t k = 1; k < len; ++k)
        cp = (cp << 6) | (static_cast<unsigned char>(text[i + k]) & 0x3f);
      static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
      ok = cp >= kMin[len] && cp <= 0x10ffff && (cp < 0xd800 || cp > 0xdfff);
    }
    if (ok) {
      out.append(text.substr(i, len));
      i += len;
    } else {
      out.push_back('?');
      ++i;
    }
  }
  return out;
}

Result<void> parse_message(const void* data, size_t size, size_t max_bytes,
                           google::protobuf::MessageLite& msg) {
  if (size > max_bytes) {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("message of {} bytes over the {}-byte limit", size, max_bytes));
  }
  if (size > static_cast<size_t>(INT32_MAX) || !msg.ParseFromArray(data, static_cast<int>(size))) {
    return fail(ErrorCode::kCorrupt, fmt::format("malformed message ({} bytes)", size));
  }
  return {};
}

zmq::message_t to_zmq(const google::protobuf::MessageLite& msg) {
  zmq::message_t out(msg.ByteSizeLong());
  msg.SerializeToArray(out.data(), static_cast<int>(out.size()));
  return out;
}

namespace {

bool send_pair(zmq::socket_t& router, const void* id, size_t id_size,
               const google::protobuf::MessageLite& msg) {
  try {
    zmq::message_t id_frame(id, id_size);
    if (!router.send(id_frame, zmq::send_flags::sndmore | zmq::send_flags::dontwait)) return false;
    return router.send(to_zmq(msg), zmq::send_flags::dontwait).has_value();
  } catch (const zmq::error_t&) {
    // EHOSTUNREACH with ROUTER_MANDATORY, or a closed context during shutdown.
    return false;
  }
}

}  // namespace

bool send_routed(zmq::socket_t& router, const zmq::message_t& routing_id,
                 const google::protobuf::MessageLite& msg) {
  return send_pair(router, routing_id.data(), routing_id.size(), msg);
}

bool send_routed(zmq::socket_t& router, const std::string& routing_id,
                 const google::protobuf::MessageLite& msg) {
  return send_pair(router, routing_id.data(), routing_id.size(), msg);
}

bool send_one(zmq::socket_t& dealer, const google::protobuf::MessageLite& msg) {
  try {
    return dealer.send(to_zmq(msg), zmq::send_flags::dontwait).has_value();
  } catch (const zmq::error_t&) {
    return false;
  }
}

Result<void> request_reply(zmq::context_t& ctx, const std::string& endpoint,
                           const google::protobuf::MessageLite& request,
                           google::protobuf::MessageLite& reply, std::chrono::milliseconds timeout,
                           size_t max_reply_bytes, const CurveClientKeys* curve) {
  try {
    zmq::socket_t sock(ctx, zmq::socket_type::dealer);
    sock.set(zmq::sockopt::linger, 0);
    if (curve != nullptr) {
      sock.set(zmq::sockopt::curve_serverkey, curve->server_key);
      sock.set(zmq::sockopt::curve_publickey, curve->public_key);
      sock.set(zmq::sockopt::curve_secretkey, curve->secret_key);
    }
    sock.connect(endpoint);
    if (!sock.send(to_zmq(request), zmq::send_flags::none)) {
      return fail(ErrorCode::kUnavailable, fmt::format("cannot send to broker at {}", endpoint));
    }
    zmq::pollitem_t items[] = {{sock.handle(), 0, ZMQ_POLLIN, 0}};
    zmq::poll(items, 1, timeout);
    if (!(items[0].revents & ZMQ_POLLIN)) {
      return fail(ErrorCode::kUnavailable,
                  fmt::format("broker unreachable at {} (no reply within {} s)", endpoint,
                              (timeout.count() + 999) / 1000));
    }
    zmq::message_t msg;
    if (!sock.recv(msg, zmq::recv_flags::none)) {
      return fail(ErrorCode::kUnavailable, fmt::format("no reply from broker at {}", endpoint));
    }
    return parse_message(msg.data(), msg.size(), max_reply_bytes, reply);
  } catch (const zmq::error_t& e) {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("cannot reach broker at {}: {}", endpoint, e.what()));
  }
}

}  // namespace farmhand::common
