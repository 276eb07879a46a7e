// Endpoints: the broker's two ZeroMQ ROUTER sockets — clients and workers —
// and the framing on them. Implements the ports the components send through.
//
// Receiving checks the envelope (DEALER clients send [id, payload], REQ clients
// [id, "", payload]; workers [id, payload]) and drops anything else, counted.
// Sending never blocks: a peer that is gone or whose queue is full loses the
// message. Workers on the local workers' endpoint and on the worker endpoint
// are told apart by the first byte of the routing id the components see. Not thread-safe: the event
// loop owns it.
#pragma once

#include <functional>
#include <string>

#include <zmq.hpp>

#include "common/config.h"
#include "common/result.h"
#include "daemon/bad_messages.h"
#include "daemon/turn.h"

namespace farmhand::daemon {

class Endpoints final : public ClientPort, public WorkerPort {
 public:
  // `peer`: the client's CURVE key name on a secured client port, else "".
  using ClientHandler = std::function<void(const std::string& routing_id, bool req_envelope,
                                           const void* data, size_t size, const std::string& peer)>;
  using WorkerHandler =
      std::function<void(const std::string& routing_id, const void* data, size_t size)>;

  explicit Endpoints(BadMessages& bad);

  zmq::context_t& context() { return context_; }

  zmq::socket_t& clients() { return clients_; }

  // The HTTP front's requests (inproc): polled with the clients'.
  zmq::socket_t& http() { return http_; }

  zmq::socket_t& workers() { return workers_; }

  // The local workers' own endpoint, when bound (else an unused socket).
  zmq::socket_t& local_workers() { return local_; }

  bool has_local_workers() const { return local_bound_; }

  // Socket options from the config; call before bind().
  void configure(const common::BrokerConfig& broker);
  [[nodiscard]] Result<void> bind(const common::BrokerConfig& broker);
  // An ipc endpoint in the state dir for the workers the broker spawns itself:
  // its socket file is mode 0600 from the start, so only the broker's own user
  // can connect, and it needs no CurveZMQ (which costs every message). Returns
  // the endpoint; an error when the path is too long for a socket address.
  [[nodiscard]] Result<std::string> bind_local_workers(const std::string& state_dir);

  // The in-process endpoint the HTTP front (daemon/http/http_front.h) sends
  // client requests to, on context(): frames [user][request], where user is
  // the name its bearer token stands for ("" when none); the broker records
  // it as the request's peer, "http:USER".
  static constexpr const char* kHttpEndpoint = "inproc://farmhand-http";

  // Receives what is waiting: at most `max` client messages (of the client
  // endpoint, then as many of the HTTP front's); worker messages
  // (of both worker endpoints) until `full` says the turn has enough.
  void drain_clients(int max, const ClientHandler& handle);
  void drain_workers(const std::function<bool()>& full, const WorkerHandler& handle);

  void send(const PendingReply& reply) override;
  bool send(const std::string& routing_id, const wire::BrokerMessage& msg) override;

 private:
  void drain_workers(zmq::socket_t& socket, char tag, const std::function<bool()>& full,
                     const WorkerHandler& handle);
  // At most `max` messages of one client socket; false when it ran dry.
  bool drain_clients(zmq::socket_t& socket, char tag, int max, const ClientHandler& handle);

  BadMessages& bad_;
  zmq::context_t context_{1};
  zmq::socket_t clients_;
  zmq::socket_t workers_;
  zmq::socket_t local_;
  zmq::socket_t http_;  // the HTTP front's requests (kHttpEndpoint)
  bool local_bound_ = false;
};

}  // namespace farmhand::daemon
