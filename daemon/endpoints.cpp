#include "daemon/endpoints.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include <fmt/format.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "common/wire.h"

namespace farmhand::daemon {

namespace {

// First byte of a worker's routing id as the components see it: which socket.
constexpr char kNetworkWorker = 'n';
constexpr char kLocalWorker = 'l';
// Client routing ids are tagged the same way: replies go back on their socket,
// and no client can choose an id that lands on another.
constexpr char kClient = 'c';
constexpr char kHttpClient = 'h';

}  // namespace

Endpoints::Endpoints(BadMessages& bad)
    : bad_(bad),
      clients_(context_, zmq::socket_type::router),
      workers_(context_, zmq::socket_type::router),
      local_(context_, zmq::socket_type::router),
      http_(context_, zmq::socket_type::router) {}

void Endpoints::configure(const common::BrokerConfig& broker) {
  for (auto* sock : {&clients_, &workers_, &local_, &http_}) {
    sock->set(zmq::sockopt::linger, 0);
    // Queued replies to a vanished client must not grow without bound.
    sock->set(zmq::sockopt::sndhwm, 100'000);
    sock->set(zmq::sockopt::rcvhwm, 100'000);
  }
  // libzmq refuses (and disconnects) peers that send more than this, before we
  // see a byte. Clients get room above their limit, so that a request a little
  // too large is answered with its size instead of silence.
  const uint64_t client_cap = std::max<uint64_t>(broker.max_client_message_bytes * 16, 16u << 20);
  clients_.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(client_cap));
  workers_.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(broker.max_worker_message_bytes));
  local_.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(broker.max_worker_message_bytes));
}

Result<std::string> Endpoints::bind_local_workers(const std::string& state_dir) {
  const std::string path = state_dir + "/local-workers.ipc";
  if (path.size() >= sizeof(sockaddr_un::sun_path) - 1) {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("{} is too long for a socket address", path));
  }
  const std::string endpoint = "ipc://" + path;
  // 0600 from the moment the file exists (libzmq creates it in this thread).
  const mode_t old_mask = ::umask(077);
  try {
    local_.bind(endpoint);
  } catch (const zmq::error_t& e) {
    ::umask(old_mask);
    return fail(ErrorCode::kUnavailable, fmt::format("cannot bind {}: {}", endpoint, e.what()));
  }
  ::umask(old_mask);
  if (::chmod(path.c_str(), 0600) != 0) {
    return fail(ErrorCode::kIo, fmt::format("cannot chmod {}: {}", path, std::strerror(errno)));
  }
  local_bound_ = true;
  return endpoint;
}

Result<void> Endpoints::bind(const common::BrokerConfig& broker) {
  try {
    http_.bind(kHttpEndpoint);
    clients_.bind(broker.client_endpoint);
    workers_.bind(broker.worker_endpoint);
  } catch (const zmq::error_t& e) {
    return fail(ErrorCode::kUnavailable,
                fmt::format("cannot bind {} / {}: {}", broker.client_endpoint,
                            broker.worker_endpoint, e.what()));
  }
  return {};
}

void Endpoints::drain_clients(int max, const ClientHandler& handle) {
  drain_clients(clients_, kClient, max, handle);
  drain_clients(http_, kHttpClient, max, handle);
}

bool Endpoints::drain_clients(zmq::socket_t& socket, char tag, int max,
                              const ClientHandler& handle) {
  const char* origin = tag == kHttpClient ? "http" : "client";
  for (int n = 0; n < max; ++n) {
    std::vector<zmq::message_t> frames;
    bool oversized = false;
    try {
      zmq::message_t frame;
      if (!socket.recv(frame, zmq::recv_flags::dontwait)) return false;
      frames.push_back(std::move(frame));
      while (frames.back().more() && frames.size() < 8) {
        zmq::message_t next;
        (void)socket.recv(next, zmq::recv_flags::none);
        frames.push_back(std::move(next));
      }
      bool more = frames.back().more();
      while (more) {  // drain and drop the rest of an absurd multipart
        zmq::message_t rest;
        (void)socket.recv(rest, zmq::recv_flags::none);
        more = rest.more();
        oversized = true;
      }
    } catch (const zmq::error_t& e) {
      bad_.note(origin, e.what());
      return false;
    }
    std::string routing_id(1, tag);
    routing_id.append(frames[0].data<char>(), frames[0].size());
    if (tag == kHttpClient) {
      // In-process, from the HTTP front: [id][user][request].
      if (oversized || frames.size() != 3) {
        bad_.note(origin, fmt::format("unexpected {}-frame message", frames.size()));
      } else {
        handle(routing_id, false, frames[2].data(), frames[2].size(),
               "http:" + frames[1].to_string());
      }
      continue;
    }
    // Who the ZAP handler admitted (the key's name); no property without CURVE.
    std::string peer;
    try {
      if (const char* user = frames.back().gets("User-Id")) peer = user;
    } catch (const zmq::error_t&) {
    }
    if (oversized) {
      bad_.note(origin, "multipart message with too many frames");
    } else if (frames.size() == 2) {
      handle(routing_id, false, frames[1].data(), frames[1].size(), peer);
    } else if (frames.size() == 3 && frames[1].size() == 0) {
      handle(routing_id, true, frames[2].data(), frames[2].size(), peer);
    } else {
      bad_.note(origin, fmt::format("unexpected {}-frame message", frames.size()));
    }
  }
  return true;
}

void Endpoints::drain_workers(const std::function<bool()>& full, const WorkerHandler& handle) {
  drain_workers(workers_, kNetworkWorker, full, handle);
  if (local_bound_) drain_workers(local_, kLocalWorker, full, handle);
}

void Endpoints::drain_workers(zmq::socket_t& socket, char tag, const std::function<bool()>& full,
                              const WorkerHandler& handle) {
  std::string routing_id;
  while (!full()) {
    zmq::message_t id;
    zmq::message_t payload;
    try {
      if (!socket.recv(id, zmq::recv_flags::dontwait)) return;
      if (!id.more()) {
        bad_.note("worker", "message without payload");
        continue;
      }
      (void)socket.recv(payload, zmq::recv_flags::none);
      bool extra = payload.more();
      while (payload.more()) {
        zmq::message_t rest;
        (void)socket.recv(rest, zmq::recv_flags::none);
        if (!rest.more()) break;
      }
      if (extra) {
        bad_.note("worker", "unexpected multipart message");
        continue;
      }
    } catch (const zmq::error_t& e) {
      bad_.note("worker", e.what());
      return;
    }
    routing_id.assign(1, tag);
    routing_id.append(static_cast<const char*>(id.data()), id.size());
    handle(routing_id, payload.data(), payload.size());
  }
}

void Endpoints::send(const PendingReply& pending) {
  if (pending.routing_id.empty()) return;
  zmq::socket_t& socket = pending.routing_id[0] == kHttpClient ? http_ : clients_;
  const std::string routing_id = pending.routing_id.substr(1);
  if (!pending.req_envelope) {
    common::send_routed(socket, routing_id, pending.reply);
    return;
  }
  try {
    socket.send(zmq::buffer(routing_id), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
    socket.send(zmq::message_t(), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
    socket.send(common::to_zmq(pending.reply), zmq::send_flags::dontwait);
  } catch (const zmq::error_t&) {
    // The client is gone; nothing to tell it.
  }
}

bool Endpoints::send(const std::string& routing_id, const wire::BrokerMessage& msg) {
  if (routing_id.empty()) return false;
  zmq::socket_t& socket = routing_id[0] == kLocalWorker ? local_ : workers_;
  return common::send_routed(socket, routing_id.substr(1), msg);
}

}  // namespace farmhand::daemon
