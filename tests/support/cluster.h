// Cluster: a farm of the real farmhand binaries for end-to-end tests.
//
// A Cluster owns a fresh temporary directory with a short path (/tmp/fhXXXXXX:
// ipc:// paths are limited to about 100 bytes). It writes a config there with
// ipc endpoints inside that directory, starts `farmhandd` (which spawns its
// local workers) and any standalone `farmhand-worker`s as child processes, each
// logging to a file in the directory, and runs the real `farmhand` CLI against
// them. Binaries come from $FARMHAND_BIN_DIR, which ctest sets.
//
// The broker's worker endpoint is secured with CurveZMQ by default, so each
// standalone worker gets a key pair of its own (DIR/keys/NAME.key), its public
// key is put into STATE_DIR/keys/workers/ before the broker starts, and the
// worker is given the broker's public key (STATE_DIR/keys/broker.pub, which the
// broker makes on its first start) unless the worker's flags already say
// --curve-server-key, or StandaloneWorker::curve or ClusterOptions::worker_curve
// is false.
//
// Every child carries an environment marker naming the directory, and so does
// everything it starts (local workers, task processes and their children). The
// destructor stops the broker and standalone workers (SIGTERM, then SIGKILL),
// then kills any process that still carries the marker, prints the tail of
// the logs when the current test has failed, and removes the directory (set
// FARMHAND_E2E_KEEP=1 to keep it). Children also get PR_SET_PDEATHSIG, so a
// test binary killed by a ctest timeout takes its farm down with it.
//
// Nothing here sleeps as an assertion: waits poll a condition with a deadline
// (wait_until). Not thread-safe: use a Cluster from the test's own thread only,
// since PR_SET_PDEATHSIG is tied to the thread that started a child.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <sys/types.h>

namespace farmhand::e2e {

using Json = nlohmann::json;

// A standalone `farmhand-worker` the cluster starts beside the broker.
struct StandaloneWorker {
  StandaloneWorker(std::string worker_name, uint32_t worker_slots = 1,
                   std::vector<std::string> worker_args = {}, bool alive = true,
                   bool with_key = true)
      : name(std::move(worker_name)),
        slots(worker_slots),
        args(std::move(worker_args)),
        expect_alive(alive),
        curve(with_key) {}

  std::string name;
  uint32_t slots = 1;
  std::vector<std::string> args;  // more flags for farmhand-worker
  bool expect_alive = true;       // false: start() does not wait for it to join
  // The --name it claims when that is not `name`, e.g. a clone of another
  // worker; `name` still names its log and work dir in the cluster's directory.
  std::string claims_name;
  bool curve = true;  // false: no CURVE key (a plain worker)
};

struct ClusterOptions {
  // Local workers farmhandd spawns (--local-workers) and their slots.
  int local_workers = 2;
  // false: `broker.worker_curve: false`, a plain worker endpoint (for tests of the
  // protocol itself, which talk to it with raw sockets); standalone workers get no key.
  bool worker_curve = true;
  uint32_t local_slots = 1;
  std::vector<StandaloneWorker> workers;
  // Short clocks so that lost workers and expired leases show up in seconds.
  double lease_ttl_s = 2;
  double heartbeat_interval_s = 0.2;
  double retry_backoff_base_s = 0.05;
  double retry_backoff_max_s = 0.2;
  uint32_t default_max_attempts = 3;
  // 0 keeps the broker's default.
  uint64_t max_client_message_bytes = 0;
  uint64_t max_worker_message_bytes = 0;
  // The YAML mapping under `commands:`, as the lines of its children indented by
  // two spaces, e.g. "  hello:\n    argv: [/bin/echo, hi]\n".
  std::string commands_yaml;
  // Reserved interactive-lane slots of each local worker
  // (local_workers.interactive_slots); nullopt keeps the broker's default.
  std::optional<uint32_t> local_interactive_slots;
  // Top-level YAML appended to the config as is, e.g. "rules:\n  - name: ...\n"
  // or a `watch:` list.
  std::string extra_yaml;
  // NAME=VALUE added to the environment of the CLI and of every process the
  // cluster starts (e.g. FARMHAND_BROKER_KEY for a CurveZMQ client port).
  // TMPDIR here replaces the cluster's own (its directory).
  std::vector<std::string> env;
  // The keys of the `http:` section, each line indented by two spaces; empty:
  // `listen: off`.
  std::string http_yaml;
  // More keys of the `broker:` section, each line indented by two spaces,
  // e.g. "  keep_finished_days: 0.5\n".
  std::string broker_yaml;
  // How long the CLI waits for a reply (FARMHAND_TIMEOUT). Generous: a loaded
  // machine must not turn a slow reply into a failure.
  double cli_timeout_s = 20;
  // Deadline for the broker to answer and every worker to be alive.
  std::chrono::milliseconds ready_timeout = std::chrono::seconds(60);
};

struct CliResult {
  int exit_code = -1;  // 128 + signal when the CLI was killed; -1 when it hung
  std::string out;
  std::string err;
};

// "exit N; stdout: ...; stderr: ...", for assertion messages.
std::string describe(const CliResult& result);

// Polls `pred` every `interval` until it holds (true) or `timeout` passes
// (false). The poll is the wait; callers assert on the result.
bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout,
                std::chrono::milliseconds interval = std::chrono::milliseconds(20));

// False when the process is gone or a zombie (an orphan's reaper may be slow).
bool process_alive(pid_t pid);

// The whole file, or "" when it cannot be read.
std::string read_file(const std::string& path);

class Cluster {
 public:
  explicit Cluster(ClusterOptions options = {});
  ~Cluster();
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  // Starts the broker and the standalone workers, then waits until the broker
  // answers and every worker (local and standalone) is alive.
  [[nodiscard]] ::testing::AssertionResult start();

  // Signals the broker and reaps it. Its local workers die with it
  // (PR_SET_PDEATHSIG): waits for them too, and records a test failure (then
  // SIGKILLs them) if one outlives the broker by more than 10 s.
  void kill_broker(int sig = SIGKILL);

  // Starts the broker again on the same config and state dir and waits until
  // every worker is alive again.
  [[nodiscard]] ::testing::AssertionResult restart_broker();

  // Waits until the broker answers and lists every expected worker as alive.
  [[nodiscard]] ::testing::AssertionResult wait_ready();

  // True while the broker process runs (reaps it if it exited).
  bool broker_running();

  pid_t broker_pid() const { return broker_pid_; }

  // Standalone workers, in ClusterOptions::workers order.
  size_t worker_count() const { return workers_.size(); }

  const std::string& worker_name(size_t i) const { return workers_.at(i).name; }

  pid_t worker_pid(size_t i) const { return workers_.at(i).pid; }

  // Index of the standalone worker with this name, if any.
  std::optional<size_t> worker_index(const std::string& name) const;
  // Starts one more standalone worker beside the running farm (its index is
  // worker_count() before the call; stopped with the others); does not wait for
  // it to join. A key it is given by the cluster is admitted only when the
  // broker next reloads (SIGHUP).
  [[nodiscard]] ::testing::AssertionResult add_worker(const StandaloneWorker& worker);
  // Signals a standalone worker and reaps it.
  void kill_worker(size_t i, int sig = SIGKILL);
  // Starts a standalone worker again (same flags and work dir) after
  // kill_worker; does not wait for it to join (the broker may be down).
  [[nodiscard]] ::testing::AssertionResult restart_worker(size_t i);

  // The log file of a standalone worker.
  std::string worker_log_path(size_t i) const {
    return path("worker-" + workers_.at(i).name + ".log");
  }

  // Its --work-dir.
  std::string worker_work_dir(size_t i) const { return path("work-" + workers_.at(i).name); }

  // Runs `farmhand --broker ENDPOINT ARGS...` and captures its output.
  CliResult run_cli(const std::vector<std::string>& args);
  // run_cli with stdout on a terminal (a pseudo-terminal 160 columns wide), as
  // a wrangler at a shell sees it; `out` is what the terminal got.
  CliResult run_cli_on_terminal(const std::vector<std::string>& args);
  // Runs another binary of the build (e.g. "farmhandd" with --check-config)
  // with the cluster's environment and captures its output like run_cli.
  CliResult run_binary(const std::string& name, const std::vector<std::string>& args);

  // Sends `sig` to the running broker (e.g. SIGHUP to reload its config); false
  // when it is not running or kill() failed.
  bool signal_broker(int sig);

  // The config file the broker reads (--config), as written from the options.
  std::string config_path() const { return path("farmhand.yaml"); }

  // Writes the config again with a new ClusterOptions::extra_yaml (the rest
  // unchanged), e.g. before a SIGHUP reload or a restart.
  void rewrite_config(const std::string& extra_yaml);

  // Runs the CLI with --json appended; the parsed stdout when it exits 0,
  // otherwise nullopt (last_cli() says why). Records no failure by itself, so
  // it can be polled while the broker restarts.
  std::optional<Json> cli_json(std::vector<std::string> args);
  // `farmhand status JOB --json [EXTRA...]`.
  std::optional<Json> status_json(uint64_t job, const std::vector<std::string>& extra = {});
  // `farmhand submit ARGS... --json`: the new job's id.
  std::optional<uint64_t> submit(const std::vector<std::string>& args);
  // Polls status until the job is succeeded, failed or cancelled; that final
  // status, or nullopt if the deadline passed first.
  std::optional<Json> wait_for_final_state(uint64_t job, std::chrono::milliseconds timeout);
  // Polls until `count` tasks of the job run; false when `timeout` passes first.
  bool wait_for_running(uint64_t job, uint64_t count, std::chrono::milliseconds timeout);
  // The names of workers the broker lists as alive, or nullopt if it did not answer.
  std::optional<std::vector<std::string>> alive_workers();

  // The last CLI run, described (for assertion messages).
  std::string last_cli() const { return describe(last_cli_); }

  const std::string& dir() const { return dir_; }

  std::string path(const std::string& name) const { return dir_ + "/" + name; }

  const std::string& client_endpoint() const { return client_endpoint_; }

  const std::string& worker_endpoint() const { return worker_endpoint_; }

  std::string broker_log_path() const { return path("broker.log"); }

  // The HTTP front's base URL from the broker's log ("http listening url=..."),
  // for `http.listen` port 0; "" when it does not listen.
  std::string http_url() const;

  // The broker's state dir (--state-dir).
  std::string state_dir() const { return path("state"); }

 private:
  struct Child {
    std::string name;
    uint32_t slots = 1;
    pid_t pid = -1;
    std::vector<std::string> args;
    bool expect_alive = true;
    std::string claims_name;  // the --name it runs under; empty: name
    bool curve = true;
  };

  Child child_of(const StandaloneWorker& worker) const;
  // Makes each keyed standalone worker's key pair and admits its public key.
  [[nodiscard]] ::testing::AssertionResult admit_worker_keys();

  void write_config();
  // Runs argv to completion (or kCliHardLimit) and captures stdout and stderr.
  // With `terminal`, stdout is a pseudo-terminal's.
  CliResult run_captured(const std::vector<std::string>& argv, bool terminal = false);
  [[nodiscard]] ::testing::AssertionResult start_broker();
  [[nodiscard]] ::testing::AssertionResult start_worker(Child& worker);
  std::string binary(const std::string& name) const;
  std::vector<std::string> child_environment() const;
  // SIGTERM, up to `grace` for it to exit, then SIGKILL; reaps.
  static void stop_child(pid_t& pid, std::chrono::milliseconds grace);
  // Pids of live processes carrying this cluster's environment marker.
  std::vector<pid_t> marked_processes() const;
  void kill_strays();
  void print_logs_on_failure() const;

  ClusterOptions options_;
  std::string dir_;
  std::string bin_dir_;
  std::string client_endpoint_;
  std::string worker_endpoint_;
  pid_t broker_pid_ = -1;
  std::vector<Child> workers_;
  CliResult last_cli_;
};

}  // namespace farmhand::e2e
