#include "common/wire.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <optional>

#include <fmt/format.h>
#include <unistd.h>

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

namespace {

// A socket monitor's view of failed CurveZMQ handshakes: without it a client
// whose key the broker refuses only times out ("unreachable"), and cannot
// tell a wrong key from a broker that is down.
class HandshakeWatch {
 public:
  // Off (`on` false): nothing is watched, handle() is null.
  HandshakeWatch(zmq::context_t& ctx, zmq::socket_t& sock, bool on) {
    if (!on) return;
    static std::atomic<uint64_t> next{0};
    const std::string address =
        fmt::format("inproc://farmhand-handshake-{}-{}", ::getpid(), next.fetch_add(1));
    if (zmq_socket_monitor(sock.handle(), address.c_str(),
                           ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) != 0) {
      return;  // no monitor: a refusal reads as a timeout, as before
    }
    sock_ = &sock;
    pair_ = zmq::socket_t(ctx, zmq::socket_type::pair);
    pair_.set(zmq::sockopt::linger, 0);
    pair_.connect(address);
  }

  ~HandshakeWatch() {
    if (sock_ != nullptr) zmq_socket_monitor(sock_->handle(), nullptr, 0);
  }

  HandshakeWatch(const HandshakeWatch&) = delete;
  HandshakeWatch& operator=(const HandshakeWatch&) = delete;

  void* handle() { return pair_.handle(); }

  // Reads what the monitor reported: the failure as one line naming what to
  // fix, or nothing for a handshake that ended without a reason (a broker
  // restarting, or a broker key that is not the broker's: the broker cannot
  // tell this client which, and the caller keeps waiting; see `silent`).
  std::optional<Error> failure(const std::string& endpoint) {
    zmq::message_t event;
    zmq::message_t where;
    uint16_t kind = 0;
    uint32_t value = 0;
    if (pair_.recv(event, zmq::recv_flags::dontwait) && event.size() >= 6) {
      std::memcpy(&kind, event.data(), sizeof kind);
      std::memcpy(&value, static_cast<const char*>(event.data()) + 2, sizeof value);
      if (event.more()) (void)pair_.recv(where, zmq::recv_flags::dontwait);
    }
    if (kind == 0) return std::nullopt;  // (not an event)
    if (kind == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) {
      ++silent_;
      return std::nullopt;
    }
    if (kind == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
      return Error{ErrorCode::kPermissionDenied,
                   fmt::format("broker at {} refused this client's key (CurveZMQ, status {}): its "
                               "public key must be in the broker's client_authorized_keys_dir "
                               "(then SIGHUP farmhandd)",
                               endpoint, value)};
    }
    if (value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH) {
      return Error{ErrorCode::kPermissionDenied,
                   fmt::format("broker at {} does not take CurveZMQ clients on that endpoint: give "
                               "no broker key (--broker-key, FARMHAND_BROKER_KEY), or check the "
                               "endpoint",
                               endpoint)};
    }
    if (value == ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC) {
      return Error{ErrorCode::kPermissionDenied,
                   fmt::format("CurveZMQ handshake with broker at {} failed: the broker key given "
                               "(--broker-key, FARMHAND_BROKER_KEY) is not that broker's",
                               endpoint)};
    }
    return Error{
        ErrorCode::kPermissionDenied,
        fmt::format("handshake with broker at {} failed (ZMTP error 0x{:x})", endpoint, value)};
  }

  // Whether handshakes keep ending without a reason: one may be a broker
  // killed mid-handshake; libzmq retries every 100 ms, and a broker that
  // ends them all does not know the key this client was given for it.
  bool silent() const { return silent_ >= 3; }

 private:
  zmq::socket_t* sock_ = nullptr;
  int silent_ = 0;
  zmq::socket_t pair_;  // null handle while off
};

}  // namespace

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
    HandshakeWatch watch(ctx, sock, curve != nullptr);
    sock.connect(endpoint);
    if (!sock.send(to_zmq(request), zmq::send_flags::none)) {
      return fail(ErrorCode::kUnavailable, fmt::format("cannot send to broker at {}", endpoint));
    }
    zmq::pollitem_t items[] = {{sock.handle(), 0, ZMQ_POLLIN, 0},
                               {watch.handle(), 0, ZMQ_POLLIN, 0}};
    const int watched = watch.handle() != nullptr ? 2 : 1;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      const auto left =
          std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      items[0].revents = items[1].revents = 0;
      zmq::poll(items, watched, std::max(left, std::chrono::milliseconds(0)));
      if (items[0].revents & ZMQ_POLLIN) break;
      if (items[1].revents & ZMQ_POLLIN) {
        if (auto refused = watch.failure(endpoint)) return fail(std::move(*refused));
        continue;
      }
      if (std::chrono::steady_clock::now() >= deadline) break;
    }
    if (!(items[0].revents & ZMQ_POLLIN)) {
      if (watch.silent()) {
        // Handshakes ended and no reply came: said as a refusal, not as a
        // broker that is down (the caller does not wait it out again).
        return fail(ErrorCode::kPermissionDenied,
                    fmt::format("no reply from broker at {}: its CurveZMQ handshakes ended "
                                "without a reason; is the broker key given (--broker-key, "
                                "FARMHAND_BROKER_KEY) that broker's?",
                                endpoint));
      }
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
