// HttpFront: farmhandd's HTTP side — the versioned JSON API (/api/v1/...),
// /metrics, and later the monitor's page — served by cpp-httplib on threads of
// its own (taking no signal), never on the event loop's.
//
// It is a translator, not a second broker: each API request becomes the
// client protocol's request (proto/PROTOCOL.md) and goes over an in-process
// ZeroMQ socket to the loop (Endpoints::kHttpEndpoint), which answers it like a
// CLI's, from memory, within its per-turn budget of client messages; the reply
// is turned into JSON (protobuf's JSON mapping, field names as in the .proto).
// So filters, paging, idempotency keys and durability are the CLI's, and the
// user a bearer token stands for is recorded as the request's peer
// ("http:USER"). What a slow or hostile HTTP client costs stays on these
// threads: headers and bodies are capped, reads time out, and a request waits
// at most kLoopTimeout for the loop (then 503).
//
// Access: reads are open or need a token (http.read); every action needs a
// bearer token from http.tokens_file (401 without one, 403 with one not in
// the file). Listening beyond loopback without TLS or without tokens is
// refused unless http.allow_insecure.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <zmq.hpp>

#include "common/config.h"
#include "common/result.h"
#include "daemon/change_feed.h"
#include "daemon/job_board.h"

namespace httplib {
class Server;
class Request;
class Response;
}  // namespace httplib

namespace farmhand::daemon {

// The tokens file: one "USER TOKEN" per line, '#' starts a comment. Errors name
// the file and line. Tokens are at least 16 characters.
[[nodiscard]] Result<std::map<std::string, std::string>> load_http_tokens(const std::string& path);

class HttpFront {
 public:
  static constexpr std::chrono::seconds kLoopTimeout{10};
  static constexpr size_t kMaxBodyBytes = 1 << 20;
  // Live streams at once (each holds a thread while it is open); more get 503.
  static constexpr int kMaxStreams = 32;
  static constexpr std::chrono::seconds kKeepAlive{15};

  struct Options {
    common::HttpConfig config;
    common::HttpListen listen;
    // The Prometheus text for /metrics (thread-safe); empty: no /metrics.
    std::function<std::string()> metrics;
    // Counts each request by route ("/api/v1/jobs/{id}") and status (thread-safe).
    std::function<void(const std::string& route, int status)> count_request;
    // The live stream's source (/api/v1/stream); null: no stream.
    ChangeFeed* feed = nullptr;
    // The jobs the loop published (GET /api/v1/jobs is answered from it, not
    // by the loop); null: the loop is asked.
    const JobBoard* board = nullptr;
    // The monitor's static files, served at /; empty: none.
    std::string web_dir;
  };

  // Binds and starts serving. `context` is the broker's (inproc needs it).
  [[nodiscard]] static Result<std::unique_ptr<HttpFront>> start(zmq::context_t& context,
                                                                Options options);
  ~HttpFront();

  HttpFront(const HttpFront&) = delete;
  HttpFront& operator=(const HttpFront&) = delete;

  // The port it listens on (the one picked, for port 0).
  int port() const { return port_; }

  // "http://127.0.0.1:7680" (https with TLS).
  const std::string& url() const { return url_; }

 private:
  HttpFront(zmq::context_t& context, Options options);
  void routes();
  void stream(const httplib::Request& req, httplib::Response& res);
  // GET /api/v1/jobs from the board.
  void jobs(const httplib::Request& req, httplib::Response& res);
  // GET /api/v1/jobs/ID/image: the image a succeeded thumbnail or convert job
  // wrote (one JPEG or PNG file), for the monitor to show inline.
  void image(const httplib::Request& req, httplib::Response& res);
  // Whose token the request carries: the user, "" when none is needed and none
  // given; nullopt after answering 401/403 into `res`.
  std::optional<std::string> authorise(const httplib::Request& req, httplib::Response& res,
                                       bool action) const;
  // One round trip to the loop as `user`; the reply's body as JSON into `res`.
  void call(const std::string& user, const std::string& request_bytes, httplib::Response& res);

  // DEALER sockets connected to the loop, lent to one request at a time (a
  // ZeroMQ socket may change threads between uses, not be used by two).
  std::unique_ptr<zmq::socket_t> borrow_socket();
  void give_back(std::unique_ptr<zmq::socket_t> socket);

  zmq::context_t& context_;
  Options options_;
  std::map<std::string, std::string> token_users_;  // token -> user
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
  std::string url_;
  std::atomic<uint64_t> next_request_id_{1};
  std::atomic<int> streams_{0};
  std::mutex sockets_mutex_;
  std::vector<std::unique_ptr<zmq::socket_t>> idle_sockets_;
};

}  // namespace farmhand::daemon
