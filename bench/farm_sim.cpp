// farmhand_bench_farm: a simulated studio farm against a real farmhandd (bench/farm.sh).
//
// One process plays --workers workers, each its own DEALER socket on the broker's
// worker endpoint with a unique name and instance, all on one ZeroMQ context. The
// workers are split over --threads shard threads; each shard waits on its sockets'
// ZMQ_FDs with epoll (zmq_poll over thousands of sockets rebuilds its poll set every
// call), and once every 100 ms beats, renews leases and drains every socket as a
// safety net. A worker speaks the protocol as bench/fake_worker.cpp does: Ready
// {version, name, slots, tags, host, pid, instance}, heartbeats at the Welcome's
// interval, one TaskResult{succeeded} per Assign. It runs nothing.
//
// The run, in order:
//   submit   --jobs noop jobs of --tasks-per-job tasks across --projects projects
//            (label `project` and a name prefix: the spec has no project field), with
//            the controls below, pipelined on one client socket; timed.
//   fill     every worker connects and sends Ready at once (t0); the workers hold
//            every task they get. Timed until the last of workers × slots slots got
//            its Assign (also: t0 → every Welcome, last Welcome → full).
//   sustain  the held tasks end, and from then on every task ends --task-ms after its
//            Assign. After --warmup-s, Assigns and result acks are counted for
//            --sustain-s, with the broker's CPU time (/proc/PID/stat) and VmRSS.
// A client thread (with a ZeroMQ context of its own, as a CLI process has)
// times status round trips throughout, of --status-job or of a random job
// (queued, running or finished), pausing a random 0 to 2 x
// --status-interval-ms after each reply; the samples are reported per phase.
//
// Controls (deterministic from --seed): --pools N tags worker i with pool-(i % N)
// and gives each job pool-k or "" (any worker) with equal odds; --limits names
// limits (capacities are in the broker's config, written by farm.sh) of which
// --limited-percent of the jobs carry one; --max-running-percent of the jobs carry
// --max-running; --priorities K gives project p priority 10 * (p % K). --shares only
// reports what the broker's config holds (farm.sh writes it); --memory-mb requests that
// much memory per task on --memory-percent of the jobs, and every worker reports
// --worker-cores and --worker-memory-gb.
//
// Results are key=value lines on stdout (bench/support.h); progress on stderr.
#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/support.h"
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <sys/epoll.h>
#include <sys/resource.h>
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

// Beats, renewals and the safety-net drain of every socket run this often.
constexpr milliseconds kSweepInterval{100};

struct Options {
  std::string worker_endpoint;
  std::string broker;
  std::string curve_server_key;  // the key, or @FILE
  std::string curve_key_file;
  std::optional<common::CurveClientKeys> curve;
  pid_t broker_pid = 0;
  // the farm
  uint32_t workers = 2000;
  uint32_t slots = 16;
  uint32_t threads = 1;
  int io_threads = 1;
  // the load
  uint32_t jobs = 10000;
  uint64_t tasks_per_job = 50;
  uint32_t projects = 20;
  uint32_t submit_window = 500;
  uint64_t seed = 1;
  // controls
  uint32_t pools = 0;
  std::vector<std::string> limits;
  double limited_percent = 0;
  uint32_t max_running = 0;
  double max_running_percent = 0;
  uint32_t priorities = 1;
  std::string shares;  // what the broker's config holds, for the report
  uint32_t memory_mb = 0;
  double memory_percent = 40;
  uint32_t worker_cores = 32;
  uint32_t worker_memory_gb = 64;
  // the phases
  double fill_timeout_s = 60;
  double task_ms = 0;
  double warmup_s = 1;
  double sustain_s = 5;
  uint64_t status_job = 0;  // 0: a job picked at random for each request
  int status_interval_ms = 10;
};

// ------------------------------------------------------------------ broker process

struct CpuSample {
  double cpu_s = 0;
  Clock::time_point at;
};

// The broker's threads: each one's name (the loop is "farmhandd"; its helpers
// are named fh-…, some only once they first run) and CPU seconds, by thread id.
struct ThreadCpu {
  std::string name;
  double cpu_s = 0;
};

// A process's or thread's name and CPU time (user + system) from its
// /proc/.../stat file.
std::optional<ThreadCpu> read_stat(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto open = text.find('(');
  const auto close = text.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close < open) {
    return std::nullopt;
  }
  std::istringstream fields(text.substr(close + 2));
  std::vector<std::string> f;
  for (std::string s; fields >> s;) f.push_back(s);
  // After the command name: state is field 0, utime 11, stime 12 (proc(5) fields 14, 15).
  if (f.size() < 13) return std::nullopt;
  const double ticks = static_cast<double>(std::stoull(f[11]) + std::stoull(f[12]));
  return ThreadCpu{text.substr(open + 1, close - open - 1),
                   ticks / static_cast<double>(sysconf(_SC_CLK_TCK))};
}

std::optional<double> process_cpu_s(pid_t pid) {
  auto stat = read_stat(fmt::format("/proc/{}/stat", pid));
  if (!stat) return std::nullopt;
  return stat->cpu_s;
}

std::map<std::string, ThreadCpu> thread_cpu(pid_t pid) {
  std::map<std::string, ThreadCpu> by_tid;
  if (pid <= 0) return by_tid;
  std::error_code ec;
  for (const auto& task :
       std::filesystem::directory_iterator(fmt::format("/proc/{}/task", pid), ec)) {
    if (auto stat = read_stat(task.path() / "stat")) by_tid[task.path().filename()] = *stat;
  }
  return by_tid;
}

// The CPU each thread name took between two samples (a thread named since the
// first counts under its name now).
std::map<std::string, double> thread_cpu_between(const std::map<std::string, ThreadCpu>& a,
                                                 const std::map<std::string, ThreadCpu>& b) {
  std::map<std::string, double> by_name;
  for (const auto& [tid, after] : b) {
    auto before = a.find(tid);
    by_name[after.name] += after.cpu_s - (before == a.end() ? 0 : before->second.cpu_s);
  }
  return by_name;
}

// The whole machine's CPU seconds (every core, /proc/stat's first line): busy
// (all but idle, iowait and steal), to see how much of the cores a run left,
// and stolen by the hypervisor (a noisy neighbour: the run is worth less).
struct MachineCpu {
  double busy_s = 0;
  double steal_s = 0;
};

MachineCpu machine_cpu() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  in >> cpu;
  std::vector<uint64_t> v;
  for (uint64_t x; v.size() < 8 && in >> x;) v.push_back(x);
  MachineCpu m;
  if (v.size() < 8) return m;
  const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
  m.busy_s =
      static_cast<double>(v[0] + v[1] + v[2] + v[5] + v[6]) / tick;  // user nice system irq softirq
  m.steal_s = static_cast<double>(v[7]) / tick;
  return m;
}

CpuSample broker_cpu(pid_t pid) {
  CpuSample s;
  s.at = Clock::now();
  if (pid > 0) s.cpu_s = process_cpu_s(pid).value_or(0);
  return s;
}

double own_cpu_s() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

std::optional<uint64_t> status_kib(pid_t pid, const char* field) {
  std::ifstream in(fmt::format("/proc/{}/status", pid));
  std::string line;
  const size_t n = std::strlen(field);
  while (std::getline(in, line)) {
    if (line.compare(0, n, field) == 0) return std::strtoull(line.c_str() + n, nullptr, 10);
  }
  return std::nullopt;
}

// ------------------------------------------------------------------ the load

// Where each control goes on the wire (shares are the broker's config).
void apply_controls(const Options& o, uint32_t job, std::mt19937_64& rng, wire::JobSpec& spec) {
  std::uniform_real_distribution<double> percent(0, 100);
  const uint32_t project = job % o.projects;
  spec.set_name(fmt::format("proj-{:02}/job-{:06}", project, job));
  (*spec.mutable_labels())["project"] = fmt::format("proj-{:02}", project);
  if (o.priorities > 1) spec.set_priority(static_cast<int32_t>(10 * (project % o.priorities)));
  if (o.pools > 0) {
    std::uniform_int_distribution<uint32_t> pool(0, o.pools);  // o.pools: any worker
    if (uint32_t k = pool(rng); k < o.pools) spec.set_pool(fmt::format("pool-{}", k));
  }
  if (!o.limits.empty() && percent(rng) < o.limited_percent) {
    std::uniform_int_distribution<size_t> which(0, o.limits.size() - 1);
    spec.add_limits(o.limits[which(rng)]);
  }
  if (o.max_running > 0 && percent(rng) < o.max_running_percent) {
    spec.set_max_running(o.max_running);
  }
  if (o.memory_mb > 0 && percent(rng) < o.memory_percent) {
    spec.set_memory_bytes(uint64_t{o.memory_mb} << 20);
  }
}

struct LoadSummary {
  uint64_t jobs = 0;
  uint64_t tasks = 0;
  uint64_t pooled = 0;
  uint64_t limited = 0;
  uint64_t capped = 0;
  uint64_t errors = 0;
  std::string first_error;
  double ms = 0;
};

LoadSummary submit_load(zmq::context_t& context, const Options& o) {
  BrokerClient client(context, o.broker);
  std::mt19937_64 rng(o.seed);
  LoadSummary out;
  uint32_t sent = 0;
  uint32_t answered = 0;
  auto started = Clock::now();
  auto deadline = started + std::chrono::seconds(600);
  while (answered < o.jobs && Clock::now() < deadline) {
    while (sent < o.jobs && sent - answered < o.submit_window) {
      wire::ClientRequest request;
      auto* spec = request.mutable_submit()->mutable_spec();
      *spec = farmhand::bench::noop_spec(o.tasks_per_job);
      apply_controls(o, sent, rng, *spec);
      out.pooled += spec->pool().empty() ? 0 : 1;
      out.limited += spec->limits_size() > 0 ? 1 : 0;
      out.capped += spec->max_running() > 0 ? 1 : 0;
      client.send(request);
      ++sent;
    }
    auto reply = client.receive(milliseconds(1000));
    if (!reply) continue;
    ++answered;
    if (!reply->ok()) {
      if (out.errors++ == 0) out.first_error = reply->error();
      continue;
    }
    ++out.jobs;
    out.tasks += reply->submit().task_count();
  }
  out.ms = ms_between(started, Clock::now());
  return out;
}

// ------------------------------------------------------------------ the workers

enum Phase : int { kHold = 0, kRun = 1 };

// What the shards share with the main thread; counters only, no sockets.
struct Shared {
  std::atomic<int> phase{kHold};
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> assigns{0};
  std::atomic<uint64_t> results{0};
  std::atomic<uint64_t> acked{0};
  std::atomic<uint64_t> welcomes{0};
  std::atomic<uint64_t> refused{0};
  std::atomic<uint64_t> reconnects{0};
  std::atomic<uint64_t> cancels{0};
  std::atomic<uint64_t> send_failures{0};
  std::atomic<int64_t> first_assign_ns{0};
  std::atomic<int64_t> full_ns{0};
  std::atomic<int64_t> all_welcomed_ns{0};
  std::atomic<int64_t> last_welcome_ns{0};
  uint64_t slots_total = 0;
  uint32_t workers_total = 0;
  Clock::time_point t0;
};

int64_t ns_since(Clock::time_point t0, Clock::time_point at) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(at - t0).count();
}

struct HeldTask {
  wire::TaskRef ref;
  uint32_t attempt = 0;
};

struct SimWorker {
  explicit SimWorker(zmq::context_t& context) : socket(context, zmq::socket_type::dealer) {}

  zmq::socket_t socket;
  std::string name;
  std::string instance;
  std::string pool;
  bool welcomed = false;
  milliseconds heartbeat{1000};
  milliseconds lease_ttl{30000};
  Clock::time_point last_beat{};
  Clock::time_point last_renew{};
  std::vector<HeldTask> held;  // fill phase: tasks it sits on
};

struct Due {
  Clock::time_point at;
  uint32_t worker;
  HeldTask task;

  bool operator>(const Due& other) const { return at > other.at; }
};

std::string random_instance(std::mt19937_64& rng) {
  return fmt::format("{:016x}{:016x}", rng(), rng());
}

// One thread's slice of the farm. Only that thread touches its sockets.
class Shard {
 public:
  Shard(zmq::context_t& context, const Options& o, Shared& shared, uint32_t first, uint32_t last)
      : options_(o), shared_(shared) {
    std::mt19937_64 rng(o.seed * 7919 + first);
    workers_.reserve(last - first);
    for (uint32_t i = first; i < last; ++i) {
      SimWorker w(context);
      w.socket.set(zmq::sockopt::linger, 0);
      w.socket.set(zmq::sockopt::reconnect_ivl, 100);  // as farmhand-worker
      w.socket.set(zmq::sockopt::reconnect_ivl_max, 2000);
      if (o.curve) {
        w.socket.set(zmq::sockopt::curve_serverkey, o.curve->server_key);
        w.socket.set(zmq::sockopt::curve_publickey, o.curve->public_key);
        w.socket.set(zmq::sockopt::curve_secretkey, o.curve->secret_key);
      }
      w.name = fmt::format("sim-{}-{:05}", getpid(), i);
      w.instance = random_instance(rng);
      if (o.pools > 0) w.pool = fmt::format("pool-{}", i % o.pools);
      workers_.push_back(std::move(w));
    }
  }

  void start() {
    thread_ = std::thread([this] { run(); });
  }

  void join() {
    if (thread_.joinable()) thread_.join();
  }

 private:
  void run() {
    epoll_ = epoll_create1(EPOLL_CLOEXEC);
    for (uint32_t i = 0; i < workers_.size(); ++i) {
      SimWorker& w = workers_[i];
      // Unlike farmhand-worker (ZMQ_IMMEDIATE, Ready retried), Ready waits in the
      // socket's queue until the connection is up: the fill measures the broker,
      // not the worker's retry backoff.
      w.socket.connect(options_.worker_endpoint);
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u32 = i;
      int fd = w.socket.get(zmq::sockopt::fd);
      epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &ev);
      send_ready(w);
      // A first receive arms the socket: libzmq signals ZMQ_FD for a new message only
      // once a read has found its queue empty.
      drain(i);
      // Beats spread over the interval, as independent hosts' would be.
      w.last_beat = Clock::now() - milliseconds(i * 997 % 1000);
      w.last_renew = Clock::now();
    }
    std::vector<epoll_event> events(256);
    auto next_sweep = Clock::now() + kSweepInterval;
    int phase = kHold;
    while (!shared_.stop.load(std::memory_order_relaxed)) {
      auto now = Clock::now();
      auto wake = next_sweep;
      if (!due_.empty()) wake = std::min(wake, due_.top().at);
      int timeout_ms = static_cast<int>(std::clamp<int64_t>(
          std::chrono::ceil<milliseconds>(wake - now).count(), 0, kSweepInterval.count()));
      int n = epoll_wait(epoll_, events.data(), static_cast<int>(events.size()), timeout_ms);
      for (int k = 0; k < n; ++k) drain(events[k].data.u32);
      if (int p = shared_.phase.load(std::memory_order_acquire); p != phase) {
        phase = p;
        if (phase == kRun) release_held();
      }
      now = Clock::now();
      while (!due_.empty() && due_.top().at <= now) {
        Due d = due_.top();
        due_.pop();
        send_result(workers_[d.worker], d.task);
        drain(d.worker);
      }
      if (now >= next_sweep) {
        sweep(now);
        next_sweep = now + kSweepInterval;
      }
    }
    close(epoll_);
  }

  void send(SimWorker& w, const wire::WorkerMessage& msg) {
    if (!w.socket.send(common::to_zmq(msg), zmq::send_flags::dontwait)) {
      shared_.send_failures.fetch_add(1, std::memory_order_relaxed);
    }
  }

  void send_ready(SimWorker& w) {
    wire::WorkerMessage msg;
    auto* ready = msg.mutable_ready();
    ready->set_version(common::kProtocolVersion);
    ready->set_name(w.name);
    ready->set_slots(options_.slots);
    if (!w.pool.empty()) ready->add_tags(w.pool);
    ready->set_host(w.name);
    ready->set_pid(static_cast<uint32_t>(getpid()));
    ready->set_instance(w.instance);
    ready->set_cores(options_.worker_cores);
    ready->set_memory_bytes(uint64_t{options_.worker_memory_gb} << 30);
    send(w, msg);
  }

  void send_result(SimWorker& w, const HeldTask& task) {
    wire::WorkerMessage out;
    auto* result = out.mutable_result();
    *result->mutable_ref() = task.ref;
    result->set_attempt(task.attempt);
    result->set_succeeded(true);
    send(w, out);
    shared_.results.fetch_add(1, std::memory_order_relaxed);
  }

  // Everything waiting on the socket. Its last call is a receive that found nothing,
  // so the ZMQ_FD signals again for whatever arrives next.
  void drain(uint32_t index) {
    SimWorker& w = workers_[index];
    for (;;) {
      zmq::message_t frame;
      if (!w.socket.recv(frame, zmq::recv_flags::dontwait)) return;
      wire::BrokerMessage msg;
      if (!common::parse_message(frame.data(), frame.size(), 16u << 20, msg)) continue;
      switch (msg.body_case()) {
        case wire::BrokerMessage::kWelcome:
          on_welcome(w, msg.welcome());
          break;
        case wire::BrokerMessage::kAssign:
          on_assign(index, msg.assign());
          break;
        case wire::BrokerMessage::kAck:
          shared_.acked.fetch_add(static_cast<uint64_t>(msg.ack().tasks_size()),
                                  std::memory_order_relaxed);
          break;
        case wire::BrokerMessage::kReconnect:
          shared_.reconnects.fetch_add(1, std::memory_order_relaxed);
          w.welcomed = false;
          send_ready(w);
          break;
        case wire::BrokerMessage::kRefused:
          // Names are unique, so this is a bug in the simulation or the broker.
          if (shared_.refused.fetch_add(1, std::memory_order_relaxed) == 0) {
            std::fprintf(stderr, "farmhand_bench_farm: worker %s refused: %s\n", w.name.c_str(),
                         msg.refused().reason().c_str());
          }
          break;
        case wire::BrokerMessage::kCancel: {
          shared_.cancels.fetch_add(1, std::memory_order_relaxed);
          const auto& ref = msg.cancel().ref();
          std::erase_if(w.held, [&](const HeldTask& t) {
            return t.ref.job_id() == ref.job_id() && t.ref.task() == ref.task();
          });
          break;
        }
        default:  // heartbeats, log requests: nothing to do for a worker that runs nothing
          break;
      }
    }
  }

  void on_welcome(SimWorker& w, const wire::Welcome& welcome) {
    if (welcome.heartbeat_ms() > 0) w.heartbeat = milliseconds(welcome.heartbeat_ms());
    if (welcome.lease_ttl_ms() > 0) w.lease_ttl = milliseconds(welcome.lease_ttl_ms());
    if (w.welcomed) return;
    w.welcomed = true;
    const int64_t at = ns_since(shared_.t0, Clock::now());
    int64_t last = shared_.last_welcome_ns.load(std::memory_order_relaxed);
    while (at > last && !shared_.last_welcome_ns.compare_exchange_weak(last, at)) {
    }
    if (shared_.welcomes.fetch_add(1) + 1 == shared_.workers_total) {
      shared_.all_welcomed_ns.store(at);
    }
  }

  void on_assign(uint32_t index, const wire::Assign& assign) {
    SimWorker& w = workers_[index];
    const auto now = Clock::now();
    const uint64_t seen = shared_.assigns.fetch_add(1, std::memory_order_relaxed) + 1;
    if (seen == 1) shared_.first_assign_ns.store(ns_since(shared_.t0, now));
    if (seen == shared_.slots_total) shared_.full_ns.store(ns_since(shared_.t0, now));
    HeldTask task{assign.ref(), assign.attempt()};
    if (shared_.phase.load(std::memory_order_acquire) == kHold) {
      w.held.push_back(std::move(task));
    } else if (options_.task_ms <= 0) {
      send_result(w, task);
    } else {
      auto delay = std::chrono::duration_cast<Clock::duration>(
          std::chrono::duration<double, std::milli>(options_.task_ms));
      due_.push({now + delay, index, std::move(task)});
    }
  }

  void release_held() {
    for (uint32_t i = 0; i < workers_.size(); ++i) {
      SimWorker& w = workers_[i];
      for (const HeldTask& task : w.held) send_result(w, task);
      w.held.clear();
      drain(i);
    }
  }

  void sweep(Clock::time_point now) {
    for (uint32_t i = 0; i < workers_.size(); ++i) {
      SimWorker& w = workers_[i];
      if (w.welcomed && now - w.last_beat >= w.heartbeat) {
        w.last_beat = now;
        wire::WorkerMessage beat;
        beat.mutable_heartbeat();
        send(w, beat);
      }
      // Held tasks keep their leases, as a worker renews every third of the TTL.
      if (!w.held.empty() && now - w.last_renew >= w.lease_ttl / 3) {
        w.last_renew = now;
        wire::WorkerMessage renew;
        for (const HeldTask& t : w.held) *renew.mutable_renew()->add_tasks() = t.ref;
        send(w, renew);
      }
      drain(i);
    }
  }

  const Options& options_;
  Shared& shared_;
  std::vector<SimWorker> workers_;
  std::priority_queue<Due, std::vector<Due>, std::greater<Due>> due_;
  int epoll_ = -1;
  std::thread thread_;
};

// ------------------------------------------------------------------ status prober

// Phases the status samples are filed under.
enum StatusPhase : int { kIdle = 0, kFill = 1, kWarmup = 2, kSustain = 3, kAfter = 4 };

class StatusProber {
 public:
  explicit StatusProber(const Options& o) : options_(o) {}

  void start() {
    thread_ = std::thread([this] { run(); });
  }

  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }

  void set_phase(StatusPhase phase) { phase_.store(phase); }

  std::vector<double> samples(StatusPhase phase) const { return samples_[phase]; }

  uint64_t failures() const { return failures_; }

  int nice() const { return nice_; }

 private:
  void run() {
    // The simulated farm may run niced (farm.sh's FARM_SIM_NICE): it stands
    // for 2,000 other hosts, whose CPU is not the broker's. The prober stands
    // for a wrangler's `farmhand status` and takes the default priority back
    // (its context's I/O thread, started below, inherits it).
    if (setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 0) == 0) {
      nice_ = 0;
    } else {
      nice_ = getpriority(PRIO_PROCESS, static_cast<id_t>(gettid()));
    }
    BrokerClient client(context_, options_.broker);
    std::mt19937_64 rng(options_.seed + 17);
    std::uniform_int_distribution<uint64_t> any_job(1, std::max<uint64_t>(options_.jobs, 1));
    // Uniform in [0, 2 x interval]: a fixed pause after each reply would lock
    // the requests to the broker's turns (each sent just after a turn began,
    // so each waits a whole turn); people asking come at random.
    std::uniform_int_distribution<int> pause_us(0, 2000 * options_.status_interval_ms);
    while (!stop_) {
      wire::ClientRequest request;
      request.mutable_status()->set_job_id(options_.status_job != 0 ? options_.status_job
                                                                    : any_job(rng));
      const int phase = phase_.load();
      auto sent = Clock::now();
      auto reply = client.call(request, milliseconds(5000));
      auto at = Clock::now();
      if (!reply) {
        ++failures_;
      } else if (phase == phase_.load()) {
        // A sample that straddles two phases is left out.
        samples_[phase].push_back(ms_between(sent, at));
      }
      auto next = at + std::chrono::microseconds(pause_us(rng));
      while (!stop_ && Clock::now() < next) std::this_thread::sleep_for(milliseconds(1));
    }
  }

  // A context of its own, as `farmhand status` has in its own process: its
  // replies must not queue in the I/O thread behind 2,000 simulated workers'.
  zmq::context_t context_;
  const Options& options_;
  std::atomic<bool> stop_{false};
  std::atomic<int> phase_{kIdle};
  std::vector<double> samples_[5];
  uint64_t failures_ = 0;
  std::atomic<int> nice_{0};
  std::thread thread_;
};

// ------------------------------------------------------------------ the run

void raise_fd_limit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  limit.rlim_cur = limit.rlim_max;
  setrlimit(RLIMIT_NOFILE, &limit);
}

int run(const Options& o) {
  raise_fd_limit();
  zmq::context_t context;
  // Each worker is a socket; the context refuses more than 1,023 by default.
  context.set(zmq::ctxopt::max_sockets, static_cast<int>(o.workers) + 64);
  context.set(zmq::ctxopt::io_threads, o.io_threads);

  emit("farm_workers", static_cast<double>(o.workers));
  emit("farm_slots", static_cast<double>(o.slots));
  emit("farm_threads", static_cast<double>(o.threads));
  emit("controls_pools", static_cast<double>(o.pools));
  emit("controls_limits", std::to_string(o.limits.size()));
  emit("controls_priorities", static_cast<double>(o.priorities));
  emit("controls_shares_applied", o.shares.empty() ? "none" : o.shares);
  emit("controls_memory_applied",
       o.memory_mb == 0
           ? std::string("none")
           : fmt::format("{} MiB on {}% of jobs; workers {} cores, {} GiB", o.memory_mb,
                         o.memory_percent, o.worker_cores, o.worker_memory_gb));

  // ---- submit
  std::fprintf(stderr, "farmhand_bench_farm: submitting %u jobs of %llu tasks\n", o.jobs,
               static_cast<unsigned long long>(o.tasks_per_job));
  auto rss0 = o.broker_pid > 0 ? status_kib(o.broker_pid, "VmRSS:") : std::nullopt;
  LoadSummary load = submit_load(context, o);
  emit("submit_jobs", static_cast<double>(load.jobs));
  emit("submit_tasks", static_cast<double>(load.tasks));
  emit("submit_errors", static_cast<double>(load.errors));
  emit("submit_ms", load.ms);
  emit("submit_jobs_per_s", static_cast<double>(load.jobs) / (load.ms / 1000.0));
  emit("controls_pooled_jobs", static_cast<double>(load.pooled));
  emit("controls_limited_jobs", static_cast<double>(load.limited));
  emit("controls_max_running_jobs", static_cast<double>(load.capped));
  if (load.errors > 0) {
    std::fprintf(stderr, "farmhand_bench_farm: %llu submits refused, first: %s\n",
                 static_cast<unsigned long long>(load.errors), load.first_error.c_str());
    return 1;
  }
  if (o.broker_pid > 0) {
    auto rss1 = status_kib(o.broker_pid, "VmRSS:");
    if (rss0 && rss1) {
      emit("rss_queued_kib", static_cast<double>(*rss1));
      emit("rss_per_queued_job_bytes", (static_cast<double>(*rss1) - static_cast<double>(*rss0)) *
                                           1024.0 /
                                           static_cast<double>(std::max<uint64_t>(load.jobs, 1)));
    }
  }

  StatusProber prober(o);
  prober.start();
  std::this_thread::sleep_for(milliseconds(300));  // a few idle samples

  // ---- fill
  Shared shared;
  shared.workers_total = o.workers;
  shared.slots_total = uint64_t{o.workers} * o.slots;
  std::vector<std::unique_ptr<Shard>> shards;
  const uint32_t threads = std::clamp<uint32_t>(o.threads, 1, std::max<uint32_t>(o.workers, 1));
  for (uint32_t s = 0; s < threads; ++s) {
    const uint32_t first = static_cast<uint32_t>(uint64_t{o.workers} * s / threads);
    const uint32_t last = static_cast<uint32_t>(uint64_t{o.workers} * (s + 1) / threads);
    shards.push_back(std::make_unique<Shard>(context, o, shared, first, last));
  }
  std::fprintf(stderr, "farmhand_bench_farm: %u workers x %u slots connect\n", o.workers, o.slots);
  const CpuSample cpu_t0 = broker_cpu(o.broker_pid);
  const double own_t0 = own_cpu_s();
  shared.t0 = Clock::now();
  prober.set_phase(kFill);
  for (auto& shard : shards) shard->start();
  const auto fill_deadline =
      shared.t0 + milliseconds(static_cast<int64_t>(o.fill_timeout_s * 1000));
  while (shared.full_ns.load() == 0 && Clock::now() < fill_deadline) {
    std::this_thread::sleep_for(milliseconds(1));
  }
  const CpuSample cpu_full = broker_cpu(o.broker_pid);
  const double own_full = own_cpu_s();
  const bool full = shared.full_ns.load() != 0;
  const uint64_t fill_assigns = shared.assigns.load();
  emit("fill_complete", full ? "yes" : "no");
  emit("fill_assigns", static_cast<double>(fill_assigns));
  emit("fill_welcomed", static_cast<double>(shared.welcomes.load()));
  if (full) {
    const double full_ms = static_cast<double>(shared.full_ns.load()) / 1e6;
    emit("fill_ms", full_ms);
    emit("fill_first_assign_ms", static_cast<double>(shared.first_assign_ns.load()) / 1e6);
    emit("fill_all_welcomed_ms", static_cast<double>(shared.all_welcomed_ns.load()) / 1e6);
    emit("fill_after_last_welcome_ms",
         full_ms - static_cast<double>(shared.last_welcome_ns.load()) / 1e6);
  }
  emit("fill_broker_cpu_ms", (cpu_full.cpu_s - cpu_t0.cpu_s) * 1000);
  // The simulator's own CPU over the fill (its CurveZMQ handshakes included): on 2
  // cores it competes with the broker.
  emit("fill_sim_cpu_ms", (own_full - own_t0) * 1000);
  emit("fill_broker_cpu_us_per_dispatch",
       (cpu_full.cpu_s - cpu_t0.cpu_s) * 1e6 /
           static_cast<double>(std::max<uint64_t>(fill_assigns, 1)));
  if (o.broker_pid > 0) {
    if (auto rss = status_kib(o.broker_pid, "VmRSS:")) emit("rss_full_kib", *rss * 1.0);
  }
  std::fprintf(stderr, "farmhand_bench_farm: fill %s: %llu of %llu slots in %.0f ms\n",
               full ? "complete" : "INCOMPLETE", static_cast<unsigned long long>(fill_assigns),
               static_cast<unsigned long long>(shared.slots_total),
               ms_between(shared.t0, cpu_full.at));

  // ---- sustain
  prober.set_phase(kWarmup);
  shared.phase.store(kRun, std::memory_order_release);
  std::this_thread::sleep_for(milliseconds(static_cast<int64_t>(o.warmup_s * 1000)));
  const auto threads_a = thread_cpu(o.broker_pid);
  const MachineCpu machine_a = machine_cpu();
  const CpuSample cpu_a = broker_cpu(o.broker_pid);
  const double own_a = own_cpu_s();
  const uint64_t assigns_a = shared.assigns.load();
  const uint64_t acked_a = shared.acked.load();
  prober.set_phase(kSustain);
  std::this_thread::sleep_for(milliseconds(static_cast<int64_t>(o.sustain_s * 1000)));
  prober.set_phase(kAfter);
  const CpuSample cpu_b = broker_cpu(o.broker_pid);
  const double own_b = own_cpu_s();
  const MachineCpu machine_b = machine_cpu();
  const auto threads_b = thread_cpu(o.broker_pid);
  const uint64_t assigns_b = shared.assigns.load();
  const uint64_t acked_b = shared.acked.load();
  const double window_s = std::chrono::duration<double>(cpu_b.at - cpu_a.at).count();
  const auto dispatches = static_cast<double>(assigns_b - assigns_a);
  emit("sustain_window_s", window_s);
  emit("sustain_dispatches", dispatches);
  emit("sustain_tasks_per_s", dispatches / window_s);
  emit("sustain_acked_per_s", static_cast<double>(acked_b - acked_a) / window_s);
  emit("sustain_broker_cpu_s", cpu_b.cpu_s - cpu_a.cpu_s);
  emit("sustain_broker_cpu_us_per_dispatch",
       (cpu_b.cpu_s - cpu_a.cpu_s) * 1e6 / std::max(dispatches, 1.0));
  emit("sustain_wall_us_per_dispatch", window_s * 1e6 / std::max(dispatches, 1.0));
  emit("sustain_sim_cpu_us_per_dispatch", (own_b - own_a) * 1e6 / std::max(dispatches, 1.0));
  emit("sustain_machine_busy_cores", (machine_b.busy_s - machine_a.busy_s) / window_s);
  emit("sustain_machine_steal_cores", (machine_b.steal_s - machine_a.steal_s) / window_s);
  for (const auto& [name, cpu_s] : thread_cpu_between(threads_a, threads_b)) {
    std::string key = name;
    for (char& c : key) {
      if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
    }
    emit("sustain_broker_thread_" + key + "_cpu_us_per_dispatch",
         cpu_s * 1e6 / std::max(dispatches, 1.0));
  }
  if (o.broker_pid > 0) {
    if (auto rss = status_kib(o.broker_pid, "VmRSS:")) emit("rss_end_kib", *rss * 1.0);
    if (auto hwm = status_kib(o.broker_pid, "VmHWM:")) emit("rss_peak_kib", *hwm * 1.0);
  }

  if (dispatches == 0) {
    std::fprintf(stderr,
                 "farmhand_bench_farm: no dispatch in the window: the queue ran dry (more jobs "
                 "or tasks per job)\n");
  }
  shared.stop.store(true);
  for (auto& shard : shards) shard->join();
  prober.stop();
  emit("status_idle", summarize(prober.samples(kIdle)));
  emit("status_fill", summarize(prober.samples(kFill)));
  emit("status_sustain", summarize(prober.samples(kSustain)));
  emit("status_failures", static_cast<double>(prober.failures()));
  emit("status_prober_nice", static_cast<double>(prober.nice()));
  emit("sim_nice", static_cast<double>(getpriority(PRIO_PROCESS, 0)));
  emit("workers_refused", static_cast<double>(shared.refused.load()));
  emit("workers_reconnects", static_cast<double>(shared.reconnects.load()));
  emit("worker_cancels", static_cast<double>(shared.cancels.load()));
  emit("worker_send_failures", static_cast<double>(shared.send_failures.load()));
  std::fprintf(stderr,
               "farmhand_bench_farm: sustained %.0f tasks/s, broker %.1f us CPU per dispatch, "
               "status p99 %.2f ms\n",
               dispatches / window_s, (cpu_b.cpu_s - cpu_a.cpu_s) * 1e6 / std::max(dispatches, 1.0),
               summarize(prober.samples(kSustain)).p99_ms);
  return full && dispatches > 0 && shared.refused.load() == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"farmhand_bench_farm: a simulated farm of many workers against farmhandd"};
  Options o;
  app.add_option("--worker-endpoint", o.worker_endpoint, "the broker's worker endpoint")
      ->required();
  app.add_option("--broker", o.broker, "the broker's client endpoint")->required();
  app.add_option("--curve-server-key", o.curve_server_key, "the broker's CURVE key, or @FILE");
  app.add_option("--curve-key-file", o.curve_key_file, "the workers' CURVE secret key file");
  app.add_option("--broker-pid", o.broker_pid, "read this process's CPU time and RSS");
  app.add_option("--workers", o.workers, "simulated workers (one socket each)");
  app.add_option("--slots", o.slots, "slots each worker announces");
  app.add_option("--threads", o.threads, "threads the workers are sharded over");
  app.add_option("--io-threads", o.io_threads, "ZeroMQ I/O threads");
  app.add_option("--jobs", o.jobs, "noop jobs submitted before the workers connect");
  app.add_option("--tasks-per-job", o.tasks_per_job, "tasks of each job");
  app.add_option("--projects", o.projects, "projects the jobs are spread over")
      ->check(CLI::PositiveNumber);
  app.add_option("--submit-window", o.submit_window, "submits in flight")
      ->check(CLI::PositiveNumber);
  app.add_option("--seed", o.seed, "seed of the controls' draws");
  app.add_option("--pools", o.pools, "worker pools (0: every worker in the default pool)");
  app.add_option("--limit", o.limits, "a limit name jobs may carry (capacity in the config)");
  app.add_option("--limited-percent", o.limited_percent, "jobs carrying one of the limits");
  app.add_option("--max-running", o.max_running, "max running of the capped jobs");
  app.add_option("--max-running-percent", o.max_running_percent, "jobs with --max-running");
  app.add_option("--priorities", o.priorities, "priority levels over the projects")
      ->check(CLI::PositiveNumber);
  app.add_option("--shares", o.shares, "the broker's shares, for the report");
  app.add_option("--memory-mb", o.memory_mb, "memory request of the jobs that make one");
  app.add_option("--memory-percent", o.memory_percent, "jobs with a memory request");
  app.add_option("--worker-cores", o.worker_cores, "cores every worker reports");
  app.add_option("--worker-memory-gb", o.worker_memory_gb, "memory every worker reports");
  app.add_option("--fill-timeout-s", o.fill_timeout_s, "give up on filling every slot after");
  app.add_option("--task-ms", o.task_ms, "sustain: how long each task runs");
  app.add_option("--warmup-s", o.warmup_s, "sustain: not measured");
  app.add_option("--sustain-s", o.sustain_s, "sustain: measured window");
  app.add_option(
      "--status-job", o.status_job,
      "job whose status is timed (0: a random queued, running or finished job each time)");
  app.add_option("--status-interval-ms", o.status_interval_ms,
                 "mean pause between status requests (uniform in 0 to twice it)");
  CLI11_PARSE(app, argc, argv);
  auto curve = common::curve_client_keys(o.curve_server_key, o.curve_key_file);
  if (!curve) {
    std::fprintf(stderr, "farmhand_bench_farm: %s\n", curve.error().reason.c_str());
    return 2;
  }
  o.curve = *curve;
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "farmhand_bench_farm: %s\n", e.what());
    return 1;
  }
}
