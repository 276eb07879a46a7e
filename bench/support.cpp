#include "bench/support.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <random>

#include <fmt/format.h>
#include <unistd.h>

#include "common/wire.h"

namespace farmhand::bench {

double ms_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

Summary summarize(std::vector<double> sample_ms) {
  Summary out;
  out.count = sample_ms.size();
  if (sample_ms.empty()) return out;
  std::sort(sample_ms.begin(), sample_ms.end());
  auto rank = [&](double p) {
    // Nearest rank: the smallest value with at least p% of the sample at or below it.
    auto n = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(sample_ms.size())));
    return sample_ms[std::clamp<size_t>(n, 1, sample_ms.size()) - 1];
  };
  out.p50_ms = rank(50);
  out.p99_ms = rank(99);
  out.max_ms = sample_ms.back();
  out.mean_ms = std::accumulate(sample_ms.begin(), sample_ms.end(), 0.0) /
                static_cast<double>(sample_ms.size());
  return out;
}

void emit(std::string_view prefix, const Summary& summary) {
  emit(fmt::format("{}_count", prefix), static_cast<double>(summary.count));
  emit(fmt::format("{}_p50_ms", prefix), summary.p50_ms);
  emit(fmt::format("{}_p99_ms", prefix), summary.p99_ms);
  emit(fmt::format("{}_max_ms", prefix), summary.max_ms);
  emit(fmt::format("{}_mean_ms", prefix), summary.mean_ms);
}

void emit(std::string_view key, double value) {
  std::string text = fmt::format("{}={:.3f}\n", key, value);
  std::fputs(text.c_str(), stdout);
  std::fflush(stdout);
}

void emit(std::string_view key, std::string_view value) {
  std::string text = fmt::format("{}={}\n", key, value);
  std::fputs(text.c_str(), stdout);
  std::fflush(stdout);
}

std::optional<uint64_t> rss_bytes(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/status", pid));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      uint64_t kib = std::strtoull(line.c_str() + 6, nullptr, 10);
      return kib * 1024;
    }
  }
  return std::nullopt;
}

BrokerClient::BrokerClient(zmq::context_t& context, const std::string& endpoint)
    : socket_(context, zmq::socket_type::dealer),
      endpoint_(endpoint),
      next_id_(std::random_device{}() | 1) {
  socket_.set(zmq::sockopt::linger, 0);
  // A restarting broker is found again quickly (libzmq's default retry is 100 ms).
  socket_.set(zmq::sockopt::reconnect_ivl, 10);
  socket_.connect(endpoint);
}

uint64_t BrokerClient::send(wire::ClientRequest& request) {
  uint64_t id = next_id_++;
  if (id == 0) id = next_id_++;
  request.set_version(common::kProtocolVersion);
  request.set_request_id(id);
  socket_.send(common::to_zmq(request), zmq::send_flags::none);
  return id;
}

std::optional<wire::ClientReply> BrokerClient::receive(std::chrono::milliseconds timeout) {
  zmq::pollitem_t items[] = {{socket_.handle(), 0, ZMQ_POLLIN, 0}};
  zmq::poll(items, 1, timeout);
  if (!(items[0].revents & ZMQ_POLLIN)) return std::nullopt;
  zmq::message_t msg;
  if (!socket_.recv(msg, zmq::recv_flags::dontwait)) return std::nullopt;
  wire::ClientReply reply;
  if (!common::parse_message(msg.data(), msg.size(), 256u << 20, reply)) return std::nullopt;
  return reply;
}

Result<wire::ClientReply> BrokerClient::call(wire::ClientRequest& request,
                                             std::chrono::milliseconds timeout) {
  uint64_t id = send(request);
  auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    auto reply = receive(std::max(left, std::chrono::milliseconds(1)));
    if (!reply || reply->request_id() != id) continue;
    if (!reply->ok()) return fail(error_code_from_name(reply->error_code()), reply->error());
    return *reply;
  }
  return fail(
      ErrorCode::kUnavailable,
      fmt::format("broker unreachable at {} (no reply within {} ms)", endpoint_, timeout.count()));
}

namespace {

// What `farmhand submit` sends when no --key is given: 32 random hex digits.
std::string random_key() {
  static std::mt19937_64 rng(std::random_device{}());
  return fmt::format("{:016x}{:016x}", rng(), rng());
}

}  // namespace

wire::JobSpec noop_spec(uint64_t tasks) {
  wire::JobSpec spec;
  spec.set_idempotency_key(random_key());
  spec.set_kind("noop");
  spec.set_tasks(tasks);
  spec.set_chunk(1);
  return spec;
}

wire::JobSpec command_spec(const std::string& command_template, const std::string& frames,
                           uint32_t chunk) {
  wire::JobSpec spec;
  spec.set_idempotency_key(random_key());
  spec.set_kind("command");
  spec.set_command_template(command_template);
  spec.set_frames(frames);
  spec.set_chunk(chunk);
  return spec;
}

bool job_state_final(wire::JobState state) {
  return state == wire::JOB_SUCCEEDED || state == wire::JOB_FAILED || state == wire::JOB_CANCELLED;
}

}  // namespace farmhand::bench
