// farmhand_bench_client: the scripted client the benchmarks drive.
//
//   submit        submits one job over a persistent socket and times the round trip
//                 (what the broker takes to accept it, without the CLI's process start);
//                 with --wait it then polls status every --poll-ms until the job is final.
//   wait-workers  returns once the broker reports --count live workers.
//   wait-ready    returns once the broker answers a list request; prints how long it took.
//
// Prints key=value lines (bench/support.h). Exit code 0 on success.
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "bench/support.h"
#include <CLI/CLI.hpp>

namespace {

using farmhand::bench::BrokerClient;
using farmhand::bench::Clock;
using farmhand::bench::emit;
using farmhand::bench::ms_between;
using std::chrono::milliseconds;
namespace wire = farmhand::wire;

struct Options {
  std::string broker;
  double timeout_s = 600;
  // submit
  std::string kind = "noop";
  uint64_t tasks = 0;
  std::string command_template;
  std::string frames;
  uint32_t chunk = 1;
  bool wait = false;
  int poll_ms = 5;
  // wait-workers
  int count = 1;
};

int run_submit(const Options& o) {
  zmq::context_t context(1);
  BrokerClient client(context, o.broker);
  wire::ClientRequest request;
  *request.mutable_submit()->mutable_spec() =
      o.kind == "noop" ? farmhand::bench::noop_spec(o.tasks)
                       : farmhand::bench::command_spec(o.command_template, o.frames, o.chunk);
  auto timeout = milliseconds(static_cast<int64_t>(o.timeout_s * 1000));
  auto started = Clock::now();
  auto reply = client.call(request, timeout);
  auto accepted = Clock::now();
  if (!reply) {
    std::fprintf(stderr, "farmhand_bench_client: submit failed: %s\n",
                 reply.error().reason.c_str());
    return 1;
  }
  uint64_t job = reply->submit().job_id();
  emit("job_id", std::to_string(job));
  emit("task_count", std::to_string(reply->submit().task_count()));
  emit("submit_ms", ms_between(started, accepted));
  if (!o.wait) return 0;

  wire::ClientRequest status;
  status.mutable_status()->set_job_id(job);
  while (true) {
    auto answer = client.call(status, timeout);
    if (!answer) {
      std::fprintf(stderr, "farmhand_bench_client: status failed: %s\n",
                   answer.error().reason.c_str());
      return 1;
    }
    auto state = answer->status().job().state();
    if (farmhand::bench::job_state_final(state)) {
      auto done = Clock::now();
      emit("done_ms", ms_between(started, done));
      emit("state", wire::JobState_Name(state));
      return state == wire::JOB_SUCCEEDED ? 0 : 1;
    }
    if (Clock::now() - started > timeout) {
      std::fprintf(stderr, "farmhand_bench_client: job %llu not final within %.0f s\n",
                   static_cast<unsigned long long>(job), o.timeout_s);
      return 1;
    }
    std::this_thread::sleep_for(milliseconds(o.poll_ms));
  }
}

int run_wait_workers(const Options& o) {
  zmq::context_t context(1);
  BrokerClient client(context, o.broker);
  auto started = Clock::now();
  auto deadline = started + milliseconds(static_cast<int64_t>(o.timeout_s * 1000));
  while (Clock::now() < deadline) {
    wire::ClientRequest request;
    request.mutable_workers();
    if (auto reply = client.call(request, milliseconds(1000))) {
      int alive = 0;
      for (const auto& w : reply->workers().workers()) alive += w.alive() ? 1 : 0;
      if (alive >= o.count) {
        emit("workers", static_cast<double>(alive));
        emit("wait_ms", ms_between(started, Clock::now()));
        return 0;
      }
    }
    std::this_thread::sleep_for(milliseconds(20));
  }
  std::fprintf(stderr, "farmhand_bench_client: fewer than %d live workers after %.0f s\n", o.count,
               o.timeout_s);
  return 1;
}

int run_wait_ready(const Options& o) {
  zmq::context_t context(1);
  // One socket for the whole wait: requests sent before the broker binds are
  // queued and delivered once it does, so the first reply marks readiness.
  BrokerClient client(context, o.broker);
  auto started = Clock::now();
  auto deadline = started + milliseconds(static_cast<int64_t>(o.timeout_s * 1000));
  wire::ClientRequest request;
  request.mutable_list()->set_limit(1);
  while (Clock::now() < deadline) {
    client.send(request);
    if (auto reply = client.receive(milliseconds(20))) {
      emit("ready_ms", ms_between(started, Clock::now()));
      return 0;
    }
  }
  std::fprintf(stderr, "farmhand_bench_client: broker not ready after %.0f s\n", o.timeout_s);
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"farmhand_bench_client: scripted client for bench/"};
  Options o;
  app.require_subcommand(1);
  app.add_option("--broker", o.broker, "the broker's client endpoint")->required();
  app.add_option("--timeout-s", o.timeout_s, "give up after this many seconds");
  auto* submit = app.add_subcommand("submit", "submit one job, optionally wait for it");
  submit->add_option("--kind", o.kind, "noop | command")->check(CLI::IsMember({"noop", "command"}));
  submit->add_option("--tasks", o.tasks, "noop: number of tasks");
  submit->add_option("--template", o.command_template, "command: template name");
  submit->add_option("--frames", o.frames, "command: frame set");
  submit->add_option("--chunk", o.chunk, "command: frames per task");
  submit->add_flag("--wait", o.wait, "poll status until the job is final");
  submit->add_option("--poll-ms", o.poll_ms, "status poll interval");
  auto* workers = app.add_subcommand("wait-workers", "wait for live workers");
  workers->add_option("--count", o.count, "live workers to wait for");
  auto* ready = app.add_subcommand("wait-ready", "wait until the broker answers");
  CLI11_PARSE(app, argc, argv);
  try {
    if (submit->parsed()) return run_submit(o);
    if (workers->parsed()) return run_wait_workers(o);
    if (ready->parsed()) return run_wait_ready(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "farmhand_bench_client: %s\n", e.what());
  }
  return 1;
}
