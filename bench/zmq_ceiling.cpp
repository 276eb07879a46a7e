// farmhand_bench_zmq: the transport ceiling for dispatch.
//
// A bare ROUTER and --dealers DEALER threads (each with its own context, as the
// workers are separate processes) exchange the same protobuf messages farmhand
// does for a noop task: the ROUTER sends a BrokerMessage{Assign} shaped like the
// broker's, a dealer parses it and answers with a WorkerMessage{TaskResult}, and
// the ROUTER parses that and sends the next Assign to the same dealer. Each dealer
// keeps --slots Assigns in flight, the pipelining depth of `dealers x slots` that
// farmhand's local workers have. No state, no SQL, no scheduling: nothing farmhand
// could skip. Prints tasks_per_s.
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench/support.h"
#include <CLI/CLI.hpp>

#include "common/wire.h"

namespace {

using farmhand::bench::Clock;
using farmhand::bench::emit;
namespace wire = farmhand::wire;
namespace common = farmhand::common;

wire::BrokerMessage make_assign(uint64_t task, uint64_t lease) {
  wire::BrokerMessage msg;
  auto* assign = msg.mutable_assign();
  assign->mutable_ref()->set_job_id(1);
  assign->mutable_ref()->set_task(task);
  assign->mutable_ref()->set_lease(lease);
  assign->set_attempt(1);
  assign->set_kind("noop");
  assign->set_lease_ttl_ms(30'000);
  assign->set_frames(std::to_string(task + 1));
  return msg;
}

// A dealer: Ready, then answers Assigns until it is told to stop (a Reconnect).
void run_dealer(const std::string& endpoint, uint32_t slots) {
  zmq::context_t context(1);
  zmq::socket_t socket(context, zmq::socket_type::dealer);
  socket.set(zmq::sockopt::linger, 0);
  socket.connect(endpoint);
  wire::WorkerMessage ready;
  ready.mutable_ready()->set_version(common::kProtocolVersion);
  ready.mutable_ready()->set_name("ceiling");
  ready.mutable_ready()->set_slots(slots);
  socket.send(common::to_zmq(ready), zmq::send_flags::none);
  for (;;) {
    zmq::message_t frame;
    if (!socket.recv(frame, zmq::recv_flags::none)) continue;
    wire::BrokerMessage msg;
    if (!common::parse_message(frame.data(), frame.size(), 16u << 20, msg)) continue;
    if (msg.has_reconnect()) return;
    if (!msg.has_assign()) continue;
    wire::WorkerMessage out;
    auto* result = out.mutable_result();
    *result->mutable_ref() = msg.assign().ref();
    result->set_attempt(msg.assign().attempt());
    result->set_succeeded(true);
    socket.send(common::to_zmq(out), zmq::send_flags::none);
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"farmhand_bench_zmq: ROUTER/DEALER round-trip ceiling"};
  std::string endpoint;
  uint64_t tasks = 100'000;
  int dealers = 2;
  uint32_t slots = 16;
  app.add_option("--endpoint", endpoint, "where the ROUTER binds (ipc:// or tcp://)")->required();
  app.add_option("--tasks", tasks, "tasks to complete");
  app.add_option("--dealers", dealers, "dealer threads (the workers)");
  app.add_option("--slots", slots, "Assigns in flight per dealer");
  CLI11_PARSE(app, argc, argv);
  try {
    zmq::context_t context(1);
    zmq::socket_t router(context, zmq::socket_type::router);
    router.set(zmq::sockopt::linger, 0);
    router.set(zmq::sockopt::sndhwm, 100'000);
    router.set(zmq::sockopt::rcvhwm, 100'000);
    router.bind(endpoint);
    std::vector<std::thread> threads;
    for (int i = 0; i < dealers; ++i) threads.emplace_back(run_dealer, endpoint, slots);

    std::mt19937_64 rng(1);
    std::vector<zmq::message_t> ids;
    auto receive = [&](zmq::message_t& id, wire::WorkerMessage& msg) {
      zmq::message_t payload;
      (void)router.recv(id, zmq::recv_flags::none);
      (void)router.recv(payload, zmq::recv_flags::none);
      return static_cast<bool>(
          common::parse_message(payload.data(), payload.size(), 4u << 20, msg));
    };
    while (ids.size() < static_cast<size_t>(dealers)) {
      zmq::message_t id;
      wire::WorkerMessage msg;
      if (receive(id, msg) && msg.has_ready()) ids.push_back(std::move(id));
    }

    uint64_t sent = 0;
    uint64_t done = 0;
    auto started = Clock::now();
    for (const auto& id : ids) {
      for (uint32_t s = 0; s < slots && sent < tasks; ++s) {
        common::send_routed(router, id, make_assign(sent++, rng()));
      }
    }
    while (done < tasks) {
      zmq::message_t id;
      wire::WorkerMessage msg;
      if (!receive(id, msg) || !msg.has_result()) continue;
      ++done;
      if (sent < tasks) common::send_routed(router, id, make_assign(sent++, rng()));
    }
    double seconds = farmhand::bench::ms_between(started, Clock::now()) / 1000.0;

    wire::BrokerMessage stop;
    stop.mutable_reconnect();
    for (const auto& id : ids) common::send_routed(router, id, stop);
    for (auto& t : threads) t.join();
    emit("tasks", static_cast<double>(tasks));
    emit("seconds", seconds);
    emit("tasks_per_s", static_cast<double>(tasks) / seconds);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "farmhand_bench_zmq: %s\n", e.what());
    return 1;
  }
  return 0;
}
