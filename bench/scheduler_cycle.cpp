// The scheduler alone (farmhand_core, no sockets, no store): what one task's
// result and the dispatch that refills its slot cost, with each wrangler
// control in play or not, on a full farm. bench/farm.sh measures the whole
// broker on real sockets, where this VM's noise and the store's writes blur
// which control costs what; this isolates the scheduler's share.
//
// Farm: --workers x --slots, --jobs noop jobs of --tasks tasks across
// --projects projects, filled; then --cycles rounds, each completing the
// --batch oldest running tasks and dispatching into the freed slots (at most
// --batch a call, as a broker turn does). Prints ns per result+dispatch.
//
// Controls (each off by default): --limits (3 limits of 6%, 3% and 1.5% of the
// slots on 30% of the jobs), --pools (3 pools, workers split evenly, a quarter
// of the jobs in each and a quarter in none), --max-running (2 on 20% of the
// jobs), --priorities (3 over the projects), --shares (weights 1-4 over the
// projects), --memory (3 GiB on 40% of the jobs; workers report 32 cores and
// 64 GiB). The same seed gives the same farm.
#include <chrono>
#include <cstdio>
#include <deque>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "daemon/core/scheduler.h"

namespace {

using farmhand::common::FrameSet;
using farmhand::core::Dispatch;
using farmhand::core::JobSpec;
using farmhand::core::Millis;
using farmhand::core::Scheduler;
using farmhand::core::TaskRef;
using farmhand::core::WorkerSpec;

struct Options {
  uint32_t workers = 2000;
  uint32_t slots = 16;
  uint32_t jobs = 10'000;
  uint32_t tasks = 50;
  uint32_t projects = 20;
  uint32_t cycles = 400;
  uint32_t batch = 512;
  bool limits = false;
  bool pools = false;
  bool max_running = false;
  bool priorities = false;
  bool shares = false;
  bool memory = false;
};

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"scheduler-only cost of a result and its refill, per control"};
  app.add_option("--workers", o.workers);
  app.add_option("--slots", o.slots);
  app.add_option("--jobs", o.jobs);
  app.add_option("--tasks", o.tasks);
  app.add_option("--projects", o.projects);
  app.add_option("--cycles", o.cycles);
  app.add_option("--batch", o.batch);
  app.add_flag("--limits", o.limits);
  app.add_flag("--pools", o.pools);
  app.add_flag("--max-running", o.max_running);
  app.add_flag("--priorities", o.priorities);
  app.add_flag("--shares", o.shares);
  app.add_flag("--memory", o.memory);
  CLI11_PARSE(app, argc, argv);

  Scheduler sched(Scheduler::Options{});
  const Millis now{1000};
  const uint64_t all_slots = uint64_t{o.workers} * o.slots;
  const char* kLimits[] = {"nuke", "arnold", "houdini"};
  const uint32_t kPermille[] = {60, 30, 15};
  if (o.limits) {
    for (int i = 0; i < 3; ++i) {
      sched.set_limit(kLimits[i], static_cast<uint32_t>(all_slots * kPermille[i] / 1000));
    }
  }
  if (o.shares) {
    std::map<std::string, uint32_t> weights;
    for (uint32_t p = 0; p < o.projects; ++p) weights["show" + std::to_string(p)] = 1 + p % 4;
    sched.set_shares(weights);
  }
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<int> percent(0, 99);
  for (uint32_t j = 0; j < o.jobs; ++j) {
    JobSpec spec;
    spec.kind = "noop";
    spec.frames = FrameSet::range(1, o.tasks);
    spec.project = "show" + std::to_string(j % o.projects);
    if (o.priorities) spec.priority = static_cast<int32_t>(10 * ((j % o.projects) % 3));
    if (o.pools && j % 4 != 3) spec.pool = "pool" + std::to_string(j % 4);
    if (o.limits && percent(rng) < 30) spec.limits = {kLimits[j % 3]};
    if (o.max_running && percent(rng) < 20) spec.max_running = 2;
    if (o.memory && percent(rng) < 40) spec.memory = 3ULL << 30;
    if (!sched.submit(std::move(spec), now)) {
      std::fprintf(stderr, "scheduler_cycle: submit refused\n");
      return 1;
    }
  }
  for (uint32_t w = 1; w <= o.workers; ++w) {
    WorkerSpec spec;
    spec.name = "w" + std::to_string(w);
    spec.slots = o.slots;
    if (o.pools) spec.tags = {"pool" + std::to_string(w % 3)};
    if (o.memory) {
      spec.cores = 32;
      spec.memory = 64ULL << 30;
    }
    (void)sched.worker_ready(w, std::move(spec), {}, now);
  }
  std::deque<Dispatch> running;
  for (;;) {
    auto filled = sched.dispatch(now, o.batch);
    if (filled.empty()) break;
    running.insert(running.end(), filled.begin(), filled.end());
  }
  const size_t full = running.size();
  uint64_t cycles = 0;
  const auto start = std::chrono::steady_clock::now();
  for (uint32_t c = 0; c < o.cycles && !running.empty(); ++c) {
    for (uint32_t i = 0; i < o.batch && !running.empty(); ++i) {
      const Dispatch d = running.front();
      running.pop_front();
      (void)sched.task_result(d.worker, TaskRef{d.job, d.task, d.lease}, true, {}, now);
      ++cycles;
    }
    for (const Dispatch& d : sched.dispatch(now, o.batch)) running.push_back(d);
  }
  const double ns =
      std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count();
  std::printf(
      "scheduler_cycle_busy_slots=%zu\nscheduler_cycle_results=%llu\n"
      "scheduler_cycle_ns_per_result_and_dispatch=%.1f\n",
      full, static_cast<unsigned long long>(cycles), cycles ? ns / cycles : 0.0);
  return 0;
}
