// Bench support: what the benchmark programs in bench/ share.
//
// A persistent DEALER connection to the broker's client endpoint (one socket for
// the whole run, so a timed round trip holds no connect), latency summaries, and
// results printed as `key=value` lines on stdout for bench/*.sh to pick up.
// Benchmark code only: nothing in daemon/, workers/ or cli/ may depend on it.
// Not thread-safe: one BrokerClient per thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "farmhand.pb.h"
#include <sys/types.h>
#include <zmq.hpp>

#include "common/result.h"

namespace farmhand::bench {

using Clock = std::chrono::steady_clock;

double ms_between(Clock::time_point from, Clock::time_point to);

// Nearest-rank summary of a sample of durations in milliseconds.
struct Summary {
  size_t count = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  double max_ms = 0;
  double mean_ms = 0;
};

Summary summarize(std::vector<double> sample_ms);

// Prints `prefix_count=…`, `prefix_p50_ms=…`, `prefix_p99_ms=…`, `prefix_max_ms=…`.
void emit(std::string_view prefix, const Summary& summary);
void emit(std::string_view key, double value);
void emit(std::string_view key, std::string_view value);

// VmRSS of a process in bytes (from /proc/PID/status); nullopt if unreadable.
std::optional<uint64_t> rss_bytes(pid_t pid);

// Client side of the broker protocol over one DEALER socket that lives as long
// as the object. Requests carry the protocol version and a fresh request id.
class BrokerClient {
 public:
  BrokerClient(zmq::context_t& context, const std::string& endpoint);

  // Sends without waiting; returns the request id the reply will carry.
  uint64_t send(wire::ClientRequest& request);

  // Receives one reply if one is waiting (or within `timeout`).
  std::optional<wire::ClientReply> receive(std::chrono::milliseconds timeout);

  // send() then receive() until the reply with that id; kUnavailable on timeout,
  // the broker's own error otherwise.
  [[nodiscard]] Result<wire::ClientReply> call(wire::ClientRequest& request,
                                               std::chrono::milliseconds timeout);

  zmq::socket_t& socket() { return socket_; }

 private:
  zmq::socket_t socket_;
  std::string endpoint_;
  uint64_t next_id_;
};

// A spec for a noop job of `tasks` tasks, or a command job over `frames`; each carries a
// fresh idempotency key, as `farmhand submit` sends one.
wire::JobSpec noop_spec(uint64_t tasks);
wire::JobSpec command_spec(const std::string& command_template, const std::string& frames,
                           uint32_t chunk);

// Whether a job state is final (succeeded, failed, cancelled).
bool job_state_final(wire::JobState state);

}  // namespace farmhand::bench
