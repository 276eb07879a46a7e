// farmhand_bench_worker: plays a farmhand worker over the real protocol and measures the
// broker from the outside.
//
// The worker half is a DEALER on the broker's worker endpoint: it sends Ready
// {version, name, slots}, answers every Assign at once with TaskResult{ref, attempt,
// succeeded=true} (it runs nothing), and beats at the interval the Welcome names.
//
//   latency  A client on the same thread submits one-task noop jobs at --rate per second
//            (evenly spaced to the millisecond, open loop). Per job it records when the submit was
//            sent, when its reply came and when the worker received the task's Assign, and prints
//            the distributions of Assign - submit sent and Assign - reply. The broker has no "task
//            ready" event on the wire; the submit is the nearest observable stand-in (see
//            bench/README.md).
//   probe    The worker (--slots 1 by default) cycles through whatever the broker
//            dispatches and records, per Assign, the time since its previous result went
//            out (the broker's turnaround); a second client times status round trips for
//            --status-job every --status-interval-ms. After --warmup-s it reads the
//            broker's RSS, optionally submits one command job (--submit-frames) on a third
//            socket and times its acknowledgement, reads the RSS again, and stops
//            --tail-s after the reply (or on SIGTERM). Summaries cover the whole run and
//            the submit window (from submit sent to reply + 100 ms).
//
// Single-threaded; results are key=value lines on stdout.
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "bench/support.h"
#include <CLI/CLI.hpp>
#include <unistd.h>

#include "common/curve.h"
#include "common/wire.h"

namespace {

using farmhand::bench::BrokerClient;
using farmhand::bench::Clock;
using farmhand::bench::emit;
using farmhand::bench::ms_between;
using farmhand::bench::summarize;
using std::chrono::milliseconds;
namespace wire = farmhand::wire;
namespace common = farmhand::common;

volatile std::sig_atomic_t g_stop = 0;

void on_signal(int) {
  g_stop = 1;
}

struct Options {
  std::string mode;
  std::string worker_endpoint;
  std::string broker;
  uint32_t slots = 1;
  double duration_s = 3;
  double warmup_s = 0.3;
  double rate = 1000;
  uint64_t status_job = 0;
  int status_interval_ms = 5;
  std::string submit_template = "true";
  std::string submit_frames;
  uint32_t submit_chunk = 1;
  pid_t broker_pid = 0;
  double tail_s = 1;
  // CurveZMQ, as farmhand-worker takes it (the broker's worker endpoint is secured by default).
  std::string curve_server_key;  // the key, or @FILE
  std::string curve_key_file;
  std::optional<farmhand::common::CurveClientKeys> curve;
};

// The worker half: one DEALER session with the broker.
class FakeWorker {
 public:
  FakeWorker(zmq::context_t& context, const Options& o)
      : socket_(context, zmq::socket_type::dealer), options_(o) {
    socket_.set(zmq::sockopt::linger, 0);
    if (o.curve) {
      socket_.set(zmq::sockopt::curve_serverkey, o.curve->server_key);
      socket_.set(zmq::sockopt::curve_publickey, o.curve->public_key);
      socket_.set(zmq::sockopt::curve_secretkey, o.curve->secret_key);
    }
    socket_.connect(o.worker_endpoint);
    send_ready();
  }

  zmq::socket_t& socket() { return socket_; }

  bool registered() const { return registered_; }

  // Handles everything waiting on the socket; calls on_assign(job, received) per Assign.
  template <typename OnAssign>
  void drain(OnAssign&& on_assign) {
    for (;;) {
      zmq::message_t frame;
      if (!socket_.recv(frame, zmq::recv_flags::dontwait)) return;
      auto received = Clock::now();
      wire::BrokerMessage msg;
      if (!common::parse_message(frame.data(), frame.size(), 16u << 20, msg)) continue;
      switch (msg.body_case()) {
        case wire::BrokerMessage::kWelcome:
          registered_ = true;
          if (msg.welcome().heartbeat_ms() > 0) {
            heartbeat_ = milliseconds(msg.welcome().heartbeat_ms());
          }
          break;
        case wire::BrokerMessage::kReconnect:
          send_ready();
          break;
        case wire::BrokerMessage::kAssign: {
          const auto& assign = msg.assign();
          on_assign(assign.ref().job_id(), received);
          wire::WorkerMessage out;
          auto* result = out.mutable_result();
          *result->mutable_ref() = assign.ref();
          result->set_attempt(assign.attempt());
          result->set_succeeded(true);
          socket_.send(common::to_zmq(out), zmq::send_flags::none);
          last_result_ = Clock::now();
          ++results_;
          break;
        }
        default:  // heartbeats, acks, cancels: nothing to do for a worker that runs nothing
          break;
      }
    }
  }

  void beat_if_due(Clock::time_point now) {
    if (now - last_beat_ < heartbeat_) return;
    last_beat_ = now;
    wire::WorkerMessage beat;
    beat.mutable_heartbeat();
    socket_.send(common::to_zmq(beat), zmq::send_flags::none);
  }

  Clock::time_point last_result() const { return last_result_; }

  uint64_t results() const { return results_; }

  void disconnect() {
    wire::WorkerMessage bye;
    bye.mutable_disconnect();
    socket_.send(common::to_zmq(bye), zmq::send_flags::dontwait);
    socket_.set(zmq::sockopt::linger, 200);
  }

 private:
  void send_ready() {
    wire::WorkerMessage msg;
    auto* ready = msg.mutable_ready();
    ready->set_version(common::kProtocolVersion);
    ready->set_name("bench-worker-" + std::to_string(getpid()));
    ready->set_slots(options_.slots);
    ready->set_host("localhost");
    ready->set_pid(static_cast<uint32_t>(getpid()));
    socket_.send(common::to_zmq(msg), zmq::send_flags::none);
  }

  zmq::socket_t socket_;
  const Options& options_;
  bool registered_ = false;
  milliseconds heartbeat_{1000};
  Clock::time_point last_beat_{};
  Clock::time_point last_result_{};
  uint64_t results_ = 0;
};

bool wait_registered(FakeWorker& worker) {
  auto deadline = Clock::now() + std::chrono::seconds(10);
  while (!worker.registered() && Clock::now() < deadline && !g_stop) {
    zmq::pollitem_t items[] = {{worker.socket().handle(), 0, ZMQ_POLLIN, 0}};
    zmq::poll(items, 1, milliseconds(50));
    worker.drain([](uint64_t, Clock::time_point) {});
  }
  if (!worker.registered()) std::fprintf(stderr, "farmhand_bench_worker: no Welcome in 10 s\n");
  return worker.registered();
}

int run_latency(const Options& o) {
  zmq::context_t context(1);
  FakeWorker worker(context, o);
  if (!wait_registered(worker)) return 1;
  BrokerClient client(context, o.broker);

  struct JobTimes {
    Clock::time_point sent{};
    Clock::time_point replied{};
    Clock::time_point assigned{};
  };

  std::unordered_map<uint64_t, Clock::time_point> sent_by_request;
  std::unordered_map<uint64_t, JobTimes> jobs;
  auto started = Clock::now();
  auto measure_from = started + milliseconds(static_cast<int64_t>(o.warmup_s * 1000));
  auto end = started + milliseconds(static_cast<int64_t>(o.duration_s * 1000));
  auto interval = std::chrono::duration<double>(1.0 / o.rate);
  uint64_t submitted = 0;
  uint64_t failed = 0;
  auto on_assign = [&](uint64_t job, Clock::time_point at) { jobs[job].assigned = at; };

  // Submit until `end`, then give the last jobs a second to arrive.
  auto drain_until = end + std::chrono::seconds(1);
  while (!g_stop) {
    auto now = Clock::now();
    auto next_send = started + std::chrono::duration_cast<Clock::duration>(
                                   interval * static_cast<double>(submitted));
    if (now < end && now >= next_send) {
      wire::ClientRequest request;
      *request.mutable_submit()->mutable_spec() = farmhand::bench::noop_spec(1);
      auto sent = Clock::now();
      sent_by_request[client.send(request)] = sent;
      ++submitted;
      continue;
    }
    if (now >= end &&
        (now >= drain_until || (worker.results() >= submitted && sent_by_request.empty()))) {
      break;
    }
    // zmq_poll counts whole milliseconds: at high rates the jobs due within one
    // millisecond go out together (each with its own send time), rather than
    // spinning on a zero timeout and taking a core from the broker.
    auto wait = now < end ? std::chrono::ceil<milliseconds>(next_send - now) : milliseconds(10);
    zmq::pollitem_t items[] = {{worker.socket().handle(), 0, ZMQ_POLLIN, 0},
                               {client.socket().handle(), 0, ZMQ_POLLIN, 0}};
    zmq::poll(items, 2, std::clamp(wait, milliseconds(1), milliseconds(10)));
    worker.drain(on_assign);
    while (auto reply = client.receive(milliseconds(0))) {
      auto replied = Clock::now();
      auto it = sent_by_request.find(reply->request_id());
      if (it == sent_by_request.end()) continue;
      if (!reply->ok()) {
        ++failed;
        continue;
      }
      auto& times = jobs[reply->submit().job_id()];
      times.sent = it->second;
      times.replied = replied;
      sent_by_request.erase(it);
    }
    worker.beat_if_due(Clock::now());
  }
  worker.disconnect();

  std::vector<double> from_submit;
  std::vector<double> from_reply;
  uint64_t assign_first = 0;
  uint64_t complete = 0;
  for (const auto& [job, t] : jobs) {
    if (t.sent == Clock::time_point{} || t.assigned == Clock::time_point{}) continue;
    ++complete;
    if (t.sent < measure_from) continue;
    from_submit.push_back(ms_between(t.sent, t.assigned));
    from_reply.push_back(ms_between(t.replied, t.assigned));
    if (t.assigned < t.replied) ++assign_first;
  }
  emit("rate_per_s", o.rate);
  emit("submitted", static_cast<double>(submitted));
  emit("completed", static_cast<double>(complete));
  emit("submit_errors", static_cast<double>(failed));
  emit("assign_before_reply_fraction",
       from_reply.empty()
           ? 0.0
           : static_cast<double>(assign_first) / static_cast<double>(from_reply.size()));
  emit("submit_to_assign", summarize(from_submit));
  emit("reply_to_assign", summarize(from_reply));
  return complete == submitted && failed == 0 ? 0 : 1;
}

int run_probe(const Options& o) {
  zmq::context_t context(1);
  FakeWorker worker(context, o);
  if (!wait_registered(worker)) return 1;
  BrokerClient status_client(context, o.broker);
  BrokerClient submit_client(context, o.broker);

  struct Sample {
    Clock::time_point at;
    double ms;
  };

  std::vector<Sample> turnaround;  // result sent -> next Assign received
  std::vector<Sample> status_rtt;  // status sent -> reply received
  auto on_assign = [&](uint64_t, Clock::time_point at) {
    if (worker.results() > 0) turnaround.push_back({at, ms_between(worker.last_result(), at)});
  };

  auto started = Clock::now();
  auto submit_at = started + milliseconds(static_cast<int64_t>(o.warmup_s * 1000));
  auto stop_at = started + milliseconds(static_cast<int64_t>(o.duration_s * 1000));
  bool submitted = false;
  bool acknowledged = false;
  Clock::time_point submit_sent{};
  Clock::time_point submit_replied{};
  uint64_t submit_request = 0;
  std::optional<uint64_t> rss_before;
  std::optional<uint64_t> rss_after;

  std::optional<uint64_t> status_pending;
  Clock::time_point status_sent{};
  Clock::time_point next_status = started;

  while (!g_stop && Clock::now() < stop_at) {
    auto now = Clock::now();
    if (!submitted && now >= submit_at) {
      submitted = true;
      if (o.broker_pid > 0) rss_before = farmhand::bench::rss_bytes(o.broker_pid);
      if (!o.submit_frames.empty()) {
        wire::ClientRequest request;
        *request.mutable_submit()->mutable_spec() =
            farmhand::bench::command_spec(o.submit_template, o.submit_frames, o.submit_chunk);
        submit_sent = Clock::now();
        submit_request = submit_client.send(request);
      } else {
        acknowledged = true;
        submit_sent = submit_replied = now;
        stop_at = now + milliseconds(static_cast<int64_t>(o.tail_s * 1000));
      }
    }
    if (!status_pending && o.status_job > 0 && now >= next_status) {
      wire::ClientRequest request;
      request.mutable_status()->set_job_id(o.status_job);
      status_sent = Clock::now();
      status_pending = status_client.send(request);
    }
    zmq::pollitem_t items[] = {{worker.socket().handle(), 0, ZMQ_POLLIN, 0},
                               {status_client.socket().handle(), 0, ZMQ_POLLIN, 0},
                               {submit_client.socket().handle(), 0, ZMQ_POLLIN, 0}};
    zmq::poll(items, 3, milliseconds(1));
    worker.drain(on_assign);
    while (auto reply = status_client.receive(milliseconds(0))) {
      if (status_pending && reply->request_id() == *status_pending) {
        auto at = Clock::now();
        status_rtt.push_back({at, ms_between(status_sent, at)});
        status_pending.reset();
        next_status = at + milliseconds(o.status_interval_ms);
      }
    }
    while (auto reply = submit_client.receive(milliseconds(0))) {
      if (reply->request_id() != submit_request) continue;
      submit_replied = Clock::now();
      acknowledged = true;
      if (!reply->ok()) {
        std::fprintf(stderr, "farmhand_bench_worker: submit failed: %s\n", reply->error().c_str());
      } else {
        emit("submit_job_id", std::to_string(reply->submit().job_id()));
        emit("submit_task_count", std::to_string(reply->submit().task_count()));
      }
      if (o.broker_pid > 0) rss_after = farmhand::bench::rss_bytes(o.broker_pid);
      stop_at = submit_replied + milliseconds(static_cast<int64_t>(o.tail_s * 1000));
    }
    worker.beat_if_due(Clock::now());
  }
  worker.disconnect();

  auto window_end = submit_replied + milliseconds(100);
  auto split = [&](const std::vector<Sample>& all, std::vector<double>& whole,
                   std::vector<double>& window) {
    for (const auto& s : all) {
      whole.push_back(s.ms);
      // A sample belongs to the window if any part of it overlaps the submit's handling.
      auto began = s.at - std::chrono::duration_cast<Clock::duration>(
                              std::chrono::duration<double, std::milli>(s.ms));
      if (acknowledged && s.at >= submit_sent && began <= window_end) window.push_back(s.ms);
    }
  };
  std::vector<double> turn_all, turn_window, status_all, status_window;
  split(turnaround, turn_all, turn_window);
  split(status_rtt, status_all, status_window);
  emit("run_s", ms_between(started, Clock::now()) / 1000.0);
  emit("results_sent", static_cast<double>(worker.results()));
  if (acknowledged && !o.submit_frames.empty()) {
    emit("submit_ms", ms_between(submit_sent, submit_replied));
  }
  if (rss_before) emit("rss_before_bytes", static_cast<double>(*rss_before));
  if (rss_after) emit("rss_after_bytes", static_cast<double>(*rss_after));
  if (o.broker_pid > 0) {
    if (auto rss = farmhand::bench::rss_bytes(o.broker_pid)) {
      emit("rss_end_bytes", static_cast<double>(*rss));
    }
  }
  emit("turnaround", summarize(turn_all));
  emit("turnaround_window", summarize(turn_window));
  emit("status", summarize(status_all));
  emit("status_window", summarize(status_window));
  return acknowledged ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"farmhand_bench_worker: a fake worker that measures the broker"};
  Options o;
  app.add_option("mode", o.mode, "latency | probe")
      ->required()
      ->check(CLI::IsMember({"latency", "probe"}));
  app.add_option("--worker-endpoint", o.worker_endpoint, "the broker's worker endpoint")
      ->required();
  app.add_option("--broker", o.broker, "the broker's client endpoint")->required();
  app.add_option("--slots", o.slots, "slots announced in Ready");
  app.add_option("--duration-s", o.duration_s, "latency: submit for this long; probe: at most");
  app.add_option("--warmup-s", o.warmup_s, "latency: not measured; probe: wait before submit");
  app.add_option("--rate", o.rate, "latency: one-task jobs submitted per second");
  app.add_option("--status-job", o.status_job, "probe: job whose status is polled");
  app.add_option("--status-interval-ms", o.status_interval_ms, "probe: pause between status");
  app.add_option("--submit-template", o.submit_template, "probe: command template to submit");
  app.add_option("--submit-frames", o.submit_frames, "probe: frames of the job to submit");
  app.add_option("--submit-chunk", o.submit_chunk, "probe: chunk of the job to submit");
  app.add_option("--broker-pid", o.broker_pid, "probe: read this process's RSS around submit");
  app.add_option("--tail-s", o.tail_s, "probe: keep measuring this long after the reply");
  app.add_option("--curve-server-key", o.curve_server_key, "the broker's CURVE key, or @FILE");
  app.add_option("--curve-key-file", o.curve_key_file, "this worker's CURVE secret key file");
  CLI11_PARSE(app, argc, argv);
  auto curve = farmhand::common::curve_client_keys(o.curve_server_key, o.curve_key_file);
  if (!curve) {
    std::fprintf(stderr, "farmhand_bench_worker: %s\n", curve.error().reason.c_str());
    return 2;
  }
  o.curve = *curve;
  std::signal(SIGTERM, on_signal);
  std::signal(SIGINT, on_signal);
  try {
    return o.mode == "latency" ? run_latency(o) : run_probe(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "farmhand_bench_worker: %s\n", e.what());
    return 1;
  }
}
