#include "tests/support/cluster.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>
#include <thread>

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/curve.h"

extern char** environ;

namespace farmhand::e2e {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Names the cluster's directory in the environment of everything it starts, so
// strays (a task's grandchild, an orphaned local worker) can be found and killed.
constexpr const char* kMarkerVariable = "FARMHAND_E2E_CLUSTER";
// A CLI call that outlives this is hung, whatever its own reply timeout says.
constexpr auto kCliHardLimit = std::chrono::seconds(180);
// farmhandd's own shutdown waits up to 5 s for its local workers.
constexpr auto kStopGrace = std::chrono::seconds(10);
constexpr auto kLocalWorkerExitLimit = std::chrono::seconds(10);
constexpr size_t kBrokerLogTailLines = 80;
constexpr size_t kWorkerLogTailLines = 30;

std::string errno_text(int err) {
  return std::strerror(err);
}

// Starts argv with `env`, stdout and stderr on the given descriptors, in its own
// process group and with PR_SET_PDEATHSIG, so a test binary that dies abruptly
// takes its children along. Returns the pid, or -1 with `error` set.
pid_t spawn(const std::vector<std::string>& args, const std::vector<std::string>& env, int out_fd,
            int err_fd, std::string& error) {
  // Everything the child touches is built before fork: between fork and exec
  // only async-signal-safe calls are allowed (zmq threads may hold locks).
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null_fd < 0) {
    error = "cannot open /dev/null: " + errno_text(errno);
    return -1;
  }
  int exec_error[2];
  if (pipe2(exec_error, O_CLOEXEC) != 0) {
    error = "cannot create a pipe: " + errno_text(errno);
    close(null_fd);
    return -1;
  }
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    auto fail = [&](int err) {
      ssize_t ignored = write(exec_error[1], &err, sizeof err);
      (void)ignored;
      _exit(127);
    };
    setpgid(0, 0);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) fail(errno);
    if (getppid() != parent) _exit(127);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);

    struct sigaction default_action {};

    default_action.sa_handler = SIG_DFL;
    sigemptyset(&default_action.sa_mask);
    sigaction(SIGPIPE, &default_action, nullptr);
    if (dup2(null_fd, STDIN_FILENO) < 0) fail(errno);
    if (dup2(out_fd, STDOUT_FILENO) < 0) fail(errno);
    if (dup2(err_fd, STDERR_FILENO) < 0) fail(errno);
    execve(argv[0], argv.data(), envp.data());
    fail(errno);
  }
  int fork_errno = errno;
  close(null_fd);
  close(exec_error[1]);
  if (pid < 0) {
    close(exec_error[0]);
    error = "cannot fork: " + errno_text(fork_errno);
    return -1;
  }
  int child_errno = 0;
  ssize_t n;
  do {
    n = read(exec_error[0], &child_errno, sizeof child_errno);
  } while (n < 0 && errno == EINTR);
  close(exec_error[0]);
  if (n > 0) {
    waitpid(pid, nullptr, 0);
    error = "cannot run " + args[0] + ": " + errno_text(child_errno);
    return -1;
  }
  return pid;
}

// Reaps `pid` if it exited; true once it is gone.
bool reap(pid_t pid) {
  int status = 0;
  pid_t r = waitpid(pid, &status, WNOHANG);
  return r == pid || (r < 0 && errno == ECHILD);
}

// Fields of /proc/PID/stat after the command name: state, then ppid.
bool proc_stat(pid_t pid, char& state, pid_t& ppid) {
  std::string text = read_file("/proc/" + std::to_string(pid) + "/stat");
  // The command name is in parentheses and may itself hold spaces or ')'.
  size_t close_paren = text.rfind(')');
  if (close_paren == std::string::npos) return false;
  std::istringstream rest(text.substr(close_paren + 1));
  rest >> state >> ppid;
  return static_cast<bool>(rest);
}

std::vector<pid_t> all_pids() {
  std::vector<pid_t> pids;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return pids;
  while (dirent* entry = readdir(proc)) {
    char* end = nullptr;
    long pid = std::strtol(entry->d_name, &end, 10);
    if (*end == '\0' && pid > 0) pids.push_back(static_cast<pid_t>(pid));
  }
  closedir(proc);
  return pids;
}

std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> children;
  for (pid_t pid : all_pids()) {
    char state = 0;
    pid_t ppid = 0;
    if (proc_stat(pid, state, ppid) && ppid == parent && state != 'Z') children.push_back(pid);
  }
  return children;
}

std::string cmdline(pid_t pid) {
  std::string text = read_file("/proc/" + std::to_string(pid) + "/cmdline");
  std::replace(text.begin(), text.end(), '\0', ' ');
  return text;
}

std::string tail_lines(const std::string& text, size_t lines) {
  size_t pos = text.size();
  if (pos > 0 && text[pos - 1] == '\n') --pos;
  for (size_t n = 0; n < lines && pos > 0; ++n) {
    size_t nl = text.rfind('\n', pos - 1);
    if (nl == std::string::npos) return text;
    pos = nl;
  }
  return pos == 0 ? text : text.substr(pos + 1);
}

std::string format_seconds(double seconds) {
  std::ostringstream out;
  out << seconds;
  return out.str();
}

}  // namespace

std::string describe(const CliResult& result) {
  return "exit " + std::to_string(result.exit_code) + "; stdout: " + tail_lines(result.out, 20) +
         "; stderr: " + result.err;
}

bool wait_until(const std::function<bool()>& pred, milliseconds timeout, milliseconds interval) {
  auto deadline = Clock::now() + timeout;
  while (true) {
    if (pred()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(interval);
  }
}

bool process_alive(pid_t pid) {
  if (pid <= 0) return false;
  char state = 0;
  pid_t ppid = 0;
  if (!proc_stat(pid, state, ppid)) return false;
  return state != 'Z' && state != 'X';
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// ------------------------------------------------------------------ Cluster

Cluster::Cluster(ClusterOptions options) : options_(std::move(options)) {
  char tmpl[] = "/tmp/fhXXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    ADD_FAILURE() << "cannot create a temporary directory: " << errno_text(errno);
    return;
  }
  dir_ = tmpl;
  if (const char* bin = std::getenv("FARMHAND_BIN_DIR"); bin != nullptr && *bin != '\0') {
    bin_dir_ = bin;
  } else {
    // Run by hand from the build tree: build/tests/e2e/<test> -> build/bin.
    std::error_code ec;
    auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
    bin_dir_ = (self.parent_path().parent_path().parent_path() / "bin").string();
  }
  client_endpoint_ = "ipc://" + dir_ + "/client.ipc";
  worker_endpoint_ = "ipc://" + dir_ + "/worker.ipc";
  for (const auto& w : options_.workers) {
    workers_.push_back(child_of(w));
  }
  write_config();
}

Cluster::~Cluster() {
  // Ask politely first, all at once; the broker stops its own local workers.
  if (broker_pid_ > 0) kill(broker_pid_, SIGTERM);
  for (auto& w : workers_) {
    if (w.pid > 0) kill(w.pid, SIGTERM);
  }
  auto deadline = Clock::now() + kStopGrace;
  auto settle = [&](pid_t& pid) {
    if (pid <= 0) return;
    while (!reap(pid) && Clock::now() < deadline) std::this_thread::sleep_for(milliseconds(10));
    if (!reap(pid)) {
      std::cerr << "cluster: pid " << pid << " ignored SIGTERM; sending SIGKILL\n";
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    pid = -1;
  };
  settle(broker_pid_);
  for (auto& w : workers_) settle(w.pid);
  kill_strays();
  print_logs_on_failure();
  if (!dir_.empty()) {
    const char* keep = std::getenv("FARMHAND_E2E_KEEP");
    if (keep != nullptr && *keep != '\0' && std::string(keep) != "0") {
      std::cerr << "cluster: keeping " << dir_ << '\n';
    } else {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
  }
}

void Cluster::write_config() {
  std::ostringstream yaml;
  yaml << "log_level: info\n"
       << "broker:\n"
       << "  client_endpoint: " << client_endpoint_ << '\n'
       << "  worker_endpoint: " << worker_endpoint_ << '\n'
       << "  state_dir: " << path("state") << '\n'
       << "  lease_ttl_s: " << format_seconds(options_.lease_ttl_s) << '\n'
       << "  heartbeat_interval_s: " << format_seconds(options_.heartbeat_interval_s) << '\n'
       << "  retry_backoff_base_s: " << format_seconds(options_.retry_backoff_base_s) << '\n'
       << "  retry_backoff_max_s: " << format_seconds(options_.retry_backoff_max_s) << '\n'
       << "  default_max_attempts: " << options_.default_max_attempts << '\n';
  if (!options_.worker_curve) yaml << "  worker_curve: false\n";
  if (options_.max_client_message_bytes > 0) {
    yaml << "  max_client_message_bytes: " << options_.max_client_message_bytes << '\n';
  }
  if (options_.max_worker_message_bytes > 0) {
    yaml << "  max_worker_message_bytes: " << options_.max_worker_message_bytes << '\n';
  }
  if (!options_.broker_yaml.empty()) {
    yaml << options_.broker_yaml;
    if (options_.broker_yaml.back() != '\n') yaml << '\n';
  }
  yaml << "local_workers:\n"
       << "  count: " << options_.local_workers << '\n'
       << "  slots: " << options_.local_slots << '\n';
  if (options_.local_interactive_slots) {
    yaml << "  interactive_slots: " << *options_.local_interactive_slots << '\n';
  }
  if (options_.commands_yaml.empty()) {
    yaml << "commands: {}\n";
  } else {
    yaml << "commands:\n" << options_.commands_yaml;
    if (options_.commands_yaml.back() != '\n') yaml << '\n';
  }
  // The HTTP front: its own section, or off (tests run side by side; the
  // default port is one per host).
  yaml << "http:\n" << (options_.http_yaml.empty() ? "  listen: \"off\"\n" : options_.http_yaml);
  if (!options_.http_yaml.empty() && options_.http_yaml.back() != '\n') yaml << '\n';
  if (!options_.extra_yaml.empty()) {
    yaml << options_.extra_yaml;
    if (options_.extra_yaml.back() != '\n') yaml << '\n';
  }
  std::ofstream out(path("farmhand.yaml"));
  out << yaml.str();
  if (!out) ADD_FAILURE() << "cannot write " << path("farmhand.yaml");
}

std::string Cluster::http_url() const {
  const std::string log = read_file(broker_log_path());
  const std::string marker = "http listening url=";
  const size_t at = log.rfind(marker);
  if (at == std::string::npos) return "";
  const size_t start = at + marker.size();
  return log.substr(start, log.find(' ', start) - start);
}

void Cluster::rewrite_config(const std::string& extra_yaml) {
  options_.extra_yaml = extra_yaml;
  write_config();
}

std::string Cluster::binary(const std::string& name) const {
  return bin_dir_ + "/" + name;
}

std::vector<std::string> Cluster::child_environment() const {
  std::vector<std::string> env;
  const std::set<std::string> replaced = {"TMPDIR",
                                          "FARMHAND_BROKER",
                                          "FARMHAND_TIMEOUT",
                                          "FARMHAND_BROKER_KEY",
                                          "FARMHAND_KEY_FILE",
                                          kMarkerVariable};
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    std::string text(*entry);
    if (replaced.count(text.substr(0, text.find('='))) == 0) env.push_back(std::move(text));
  }
  // Workers without --work-dir put their per-task logs under $TMPDIR: keep them
  // in our directory, unless the test shares one TMPDIR between clusters.
  bool own_tmpdir = std::none_of(options_.env.begin(), options_.env.end(),
                                 [](const std::string& e) { return e.rfind("TMPDIR=", 0) == 0; });
  if (own_tmpdir) env.push_back("TMPDIR=" + dir_);
  env.push_back(std::string(kMarkerVariable) + "=" + dir_);
  env.push_back("FARMHAND_TIMEOUT=" + format_seconds(options_.cli_timeout_s));
  env.insert(env.end(), options_.env.begin(), options_.env.end());
  return env;
}

::testing::AssertionResult Cluster::start() {
  if (dir_.empty()) return ::testing::AssertionFailure() << "no cluster directory";
  if (auto ok = admit_worker_keys(); !ok) return ok;
  if (auto ok = start_broker(); !ok) return ok;
  // Standalone workers start once the broker answers: a worker's first Ready
  // before the bind would only be sent again after its liveness timeout.
  if (!wait_until([&] { return cli_json({"ls"}).has_value(); }, options_.ready_timeout)) {
    return ::testing::AssertionFailure() << "broker did not answer: " << last_cli();
  }
  for (auto& w : workers_) {
    if (auto ok = start_worker(w); !ok) return ok;
  }
  return wait_ready();
}

Cluster::Child Cluster::child_of(const StandaloneWorker& w) const {
  const bool keyed = options_.worker_curve && w.curve &&
                     std::find(w.args.begin(), w.args.end(), "--curve-server-key") == w.args.end();
  return Child{w.name, w.slots, -1, w.args, w.expect_alive, w.claims_name, keyed};
}

::testing::AssertionResult Cluster::add_worker(const StandaloneWorker& worker) {
  workers_.push_back(child_of(worker));
  if (auto ok = admit_worker_keys(); !ok) return ok;
  return start_worker(workers_.back());
}

::testing::AssertionResult Cluster::admit_worker_keys() {
  const std::string admitted = state_dir() + "/keys/workers";
  std::error_code ec;
  std::filesystem::create_directories(admitted, ec);
  if (ec) return ::testing::AssertionFailure() << "cannot create " << admitted << ": " << ec;
  std::filesystem::create_directories(path("keys"), ec);
  for (const auto& w : workers_) {
    if (!w.curve) continue;
    const std::string prefix = path("keys/" + w.name);
    if (std::filesystem::exists(prefix + ".key")) continue;
    if (auto pair = common::write_curve_keypair(prefix); !pair) {
      return ::testing::AssertionFailure() << pair.error().reason;
    }
    std::filesystem::copy_file(prefix + ".pub", admitted + "/" + w.name + ".pub", ec);
    if (ec) return ::testing::AssertionFailure() << "cannot admit " << prefix << ".pub: " << ec;
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult Cluster::start_broker() {
  if (broker_pid_ > 0) return ::testing::AssertionFailure() << "broker already running";
  int log_fd = open(broker_log_path().c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    return ::testing::AssertionFailure()
           << "cannot open " << broker_log_path() << ": " << errno_text(errno);
  }
  std::string error;
  broker_pid_ = spawn({binary("farmhandd"), "--config", path("farmhand.yaml"), "--state-dir",
                       path("state"), "--local-workers", std::to_string(options_.local_workers)},
                      child_environment(), log_fd, log_fd, error);
  close(log_fd);
  if (broker_pid_ < 0) return ::testing::AssertionFailure() << error;
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult Cluster::start_worker(Child& worker) {
  std::string log_path = path("worker-" + worker.name + ".log");
  int log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    return ::testing::AssertionFailure() << "cannot open " << log_path << ": " << errno_text(errno);
  }
  std::string error;
  std::vector<std::string> argv = {binary("farmhand-worker"),
                                   "--broker",
                                   worker_endpoint_,
                                   "--name",
                                   worker.claims_name.empty() ? worker.name : worker.claims_name,
                                   "--slots",
                                   std::to_string(worker.slots),
                                   "--work-dir",
                                   path("work-" + worker.name)};
  if (worker.curve) {
    argv.insert(argv.end(), {"--curve-server-key", "@" + state_dir() + "/keys/broker.pub",
                             "--curve-key-file", path("keys/" + worker.name + ".key")});
  }
  argv.insert(argv.end(), worker.args.begin(), worker.args.end());
  worker.pid = spawn(argv, child_environment(), log_fd, log_fd, error);
  close(log_fd);
  if (worker.pid < 0) return ::testing::AssertionFailure() << error;
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult Cluster::wait_ready() {
  std::set<std::string> expected;
  for (int i = 1; i <= options_.local_workers; ++i) expected.insert("local-" + std::to_string(i));
  for (const auto& w : workers_) {
    if (w.expect_alive) expected.insert(w.name);
  }
  std::vector<std::string> seen;
  bool ready = wait_until(
      [&] {
        auto alive = alive_workers();
        if (!alive) return false;
        seen = *alive;
        return std::all_of(expected.begin(), expected.end(), [&](const std::string& name) {
          return std::find(seen.begin(), seen.end(), name) != seen.end();
        });
      },
      options_.ready_timeout, milliseconds(50));
  if (ready) return ::testing::AssertionSuccess();
  std::string names;
  for (const auto& name : seen) names += (names.empty() ? "" : ", ") + name;
  return ::testing::AssertionFailure()
         << "workers not all alive within " << options_.ready_timeout.count()
         << " ms; alive: " << (names.empty() ? "none" : names) << "; last cli: " << last_cli();
}

bool Cluster::broker_running() {
  if (broker_pid_ <= 0) return false;
  if (reap(broker_pid_)) {
    broker_pid_ = -1;
    return false;
  }
  return true;
}

void Cluster::stop_child(pid_t& pid, milliseconds grace) {
  if (pid <= 0) return;
  auto deadline = Clock::now() + grace;
  while (!reap(pid)) {
    if (Clock::now() >= deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
      break;
    }
    std::this_thread::sleep_for(milliseconds(10));
  }
  pid = -1;
}

void Cluster::kill_broker(int sig) {
  if (broker_pid_ <= 0) {
    ADD_FAILURE() << "kill_broker: the broker is not running";
    return;
  }
  std::vector<pid_t> local_workers = children_of(broker_pid_);
  kill(broker_pid_, sig);
  stop_child(broker_pid_, kStopGrace);
  // Local workers die with the broker (PR_SET_PDEATHSIG); a survivor would keep
  // running tasks nobody tracks.
  bool gone = wait_until(
      [&] { return std::none_of(local_workers.begin(), local_workers.end(), process_alive); },
      kLocalWorkerExitLimit);
  if (!gone) {
    for (pid_t pid : local_workers) {
      if (!process_alive(pid)) continue;
      ADD_FAILURE()
          << "local worker pid " << pid << " (" << cmdline(pid) << ") outlived its broker by "
          << std::chrono::duration_cast<std::chrono::seconds>(kLocalWorkerExitLimit).count()
          << " s";
      kill(pid, SIGKILL);
    }
  }
}

::testing::AssertionResult Cluster::restart_broker() {
  if (auto ok = start_broker(); !ok) return ok;
  return wait_ready();
}

std::optional<size_t> Cluster::worker_index(const std::string& name) const {
  for (size_t i = 0; i < workers_.size(); ++i) {
    if (workers_[i].name == name) return i;
  }
  return std::nullopt;
}

void Cluster::kill_worker(size_t i, int sig) {
  Child& worker = workers_.at(i);
  if (worker.pid <= 0) {
    ADD_FAILURE() << "kill_worker: worker " << worker.name << " is not running";
    return;
  }
  kill(worker.pid, sig);
  stop_child(worker.pid, kStopGrace);
}

::testing::AssertionResult Cluster::restart_worker(size_t i) {
  Child& worker = workers_.at(i);
  if (worker.pid > 0) {
    return ::testing::AssertionFailure() << "worker " << worker.name << " is still running";
  }
  return start_worker(worker);
}

bool Cluster::signal_broker(int sig) {
  return broker_running() && kill(broker_pid_, sig) == 0;
}

CliResult Cluster::run_cli(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {binary("farmhand"), "--broker", client_endpoint_};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_captured(argv);
}

CliResult Cluster::run_cli_on_terminal(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {binary("farmhand"), "--broker", client_endpoint_};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_captured(argv, /*terminal=*/true);
}

CliResult Cluster::run_binary(const std::string& name, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {binary(name)};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_captured(argv);
}

CliResult Cluster::run_captured(const std::vector<std::string>& argv, bool terminal) {
  CliResult result;
  int out_pipe[2];
  int err_pipe[2];
  if (terminal) {
    // out_pipe[0] is the terminal's master side, out_pipe[1] its slave: once
    // the child exits and the slave is closed, reading the master fails (EIO)
    // after what was written, which ends the loop below as a pipe's EOF does.
    out_pipe[0] = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    char name[128];
    if (out_pipe[0] < 0 || grantpt(out_pipe[0]) != 0 || unlockpt(out_pipe[0]) != 0 ||
        ptsname_r(out_pipe[0], name, sizeof name) != 0 ||
        (out_pipe[1] = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0) {
      result.err = "cannot open a pseudo-terminal: " + errno_text(errno);
      if (out_pipe[0] >= 0) close(out_pipe[0]);
      return last_cli_ = result;
    }
    winsize size{};
    size.ws_col = 160;
    size.ws_row = 40;
    ioctl(out_pipe[1], TIOCSWINSZ, &size);
  } else if (pipe2(out_pipe, O_CLOEXEC) != 0) {
    result.err = "cannot create a pipe: " + errno_text(errno);
    return last_cli_ = result;
  }
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    result.err = "cannot create a pipe: " + errno_text(errno);
    close(out_pipe[0]);
    close(out_pipe[1]);
    return last_cli_ = result;
  }
  std::string error;
  pid_t pid = spawn(argv, child_environment(), out_pipe[1], err_pipe[1], error);
  close(out_pipe[1]);
  close(err_pipe[1]);
  if (pid < 0) {
    close(out_pipe[0]);
    close(err_pipe[0]);
    result.err = error;
    return last_cli_ = result;
  }
  auto deadline = Clock::now() + kCliHardLimit;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  bool hung = false;
  while (fds[0].fd >= 0 || fds[1].fd >= 0) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      hung = true;
      break;
    }
    int n = poll(fds, 2, static_cast<int>(std::min<int64_t>(left.count(), 1000)));
    if (n < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[65536];
      ssize_t got = read(fds[i].fd, buf, sizeof buf);
      if (got > 0) {
        sinks[i]->append(buf, static_cast<size_t>(got));
      } else if (got == 0 || errno != EINTR) {
        close(fds[i].fd);
        fds[i].fd = -1;
      }
    }
  }
  for (auto& fd : fds) {
    if (fd.fd >= 0) close(fd.fd);
  }
  if (hung) kill(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (hung) {
    result.exit_code = -1;
    result.err += "[cluster: farmhand hung; killed after the hard limit]";
  } else if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.exit_code = 128 + WTERMSIG(status);
  }
  return last_cli_ = result;
}

std::optional<Json> Cluster::cli_json(std::vector<std::string> args) {
  args.push_back("--json");
  CliResult result = run_cli(args);
  if (result.exit_code != 0) return std::nullopt;
  Json json = Json::parse(result.out, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) {
    last_cli_.err += "[cluster: stdout is not JSON]";
    return std::nullopt;
  }
  return json;
}

std::optional<Json> Cluster::status_json(uint64_t job, const std::vector<std::string>& extra) {
  std::vector<std::string> args = {"status", std::to_string(job)};
  args.insert(args.end(), extra.begin(), extra.end());
  return cli_json(std::move(args));
}

std::optional<uint64_t> Cluster::submit(const std::vector<std::string>& args) {
  std::vector<std::string> full = {"submit"};
  full.insert(full.end(), args.begin(), args.end());
  auto reply = cli_json(std::move(full));
  if (!reply || !reply->contains("job_id") || !(*reply)["job_id"].is_number_unsigned()) {
    return std::nullopt;
  }
  return (*reply)["job_id"].get<uint64_t>();
}

std::optional<Json> Cluster::wait_for_final_state(uint64_t job, milliseconds timeout) {
  std::optional<Json> final_status;
  bool done = wait_until(
      [&] {
        auto status = status_json(job);
        if (!status) return false;
        const std::string state = (*status)["job"]["state"].get<std::string>();
        if (state != "succeeded" && state != "failed" && state != "cancelled") return false;
        final_status = std::move(status);
        return true;
      },
      timeout, milliseconds(50));
  return done ? final_status : std::nullopt;
}

bool Cluster::wait_for_running(uint64_t job, uint64_t count, milliseconds timeout) {
  return wait_until(
      [&] {
        auto status = status_json(job);
        return status && (*status)["job"]["counts"]["running"] == count;
      },
      timeout);
}

std::optional<std::vector<std::string>> Cluster::alive_workers() {
  auto workers = cli_json({"workers"});
  if (!workers || !workers->is_array()) return std::nullopt;
  std::vector<std::string> names;
  for (const auto& w : *workers) {
    if (w.value("alive", false)) names.push_back(w.value("name", ""));
  }
  return names;
}

std::vector<pid_t> Cluster::marked_processes() const {
  std::vector<pid_t> found;
  if (dir_.empty()) return found;
  const std::string marker = std::string(1, '\0') + kMarkerVariable + "=" + dir_ + '\0';
  const pid_t self = getpid();
  for (pid_t pid : all_pids()) {
    if (pid == self || !process_alive(pid)) continue;
    // Unreadable for other users' processes: those are not ours anyway.
    std::string env = std::string(1, '\0') + read_file("/proc/" + std::to_string(pid) + "/environ");
    if (env.find(marker) != std::string::npos) found.push_back(pid);
  }
  return found;
}

void Cluster::kill_strays() {
  std::set<pid_t> reported;
  bool clean = wait_until(
      [&] {
        auto strays = marked_processes();
        for (pid_t pid : strays) {
          if (reported.insert(pid).second) {
            std::cerr << "cluster: killing stray pid " << pid << ": " << cmdline(pid) << '\n';
          }
          kill(pid, SIGKILL);
        }
        return strays.empty();
      },
      std::chrono::seconds(5));
  if (!clean) std::cerr << "cluster: stray processes survived SIGKILL\n";
}

void Cluster::print_logs_on_failure() const {
  if (!::testing::Test::HasFailure() || dir_.empty()) return;
  std::cerr << "---- " << broker_log_path() << " (last " << kBrokerLogTailLines << " lines)\n"
            << tail_lines(read_file(broker_log_path()), kBrokerLogTailLines) << '\n';
  for (const auto& w : workers_) {
    std::string log_path = path("worker-" + w.name + ".log");
    std::cerr << "---- " << log_path << " (last " << kWorkerLogTailLines << " lines)\n"
              << tail_lines(read_file(log_path), kWorkerLogTailLines) << '\n';
  }
  std::cerr << "----\n";
}

}  // namespace farmhand::e2e
