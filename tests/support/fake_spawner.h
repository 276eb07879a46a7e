// FakeSpawner: a common::Spawner that starts nothing. It records every spec it
// is given, answers with scripted failures or made-up pids, and keeps a table
// of those pretend processes: a test ends one with exit() or by the signals the
// code under test sends, and try_wait()/wait() report it like waitpid would.
// Its pids never reach the OS (no kill, no waitpid). Single-threaded.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <signal.h>
#include <sys/types.h>

#include "common/spawner.h"

namespace farmhand::testing {

class FakeSpawner final : public common::Spawner {
 public:
  // Wait statuses as waitpid reports them.
  static int exited(int code) { return (code & 0xff) << 8; }

  static int killed_by(int sig) { return sig & 0x7f; }

  // The next spawn() calls fail with these errors, in order; later ones succeed.
  void fail_next(Error error) { failures_.push_back(std::move(error)); }

  // Ends a live pretend process with a wait status.
  void exit(pid_t pid, int status) {
    auto it = processes_.find(pid);
    if (it != processes_.end() && !it->second) it->second = status;
  }

  bool alive(pid_t pid) const {
    auto it = processes_.find(pid);
    return it != processes_.end() && !it->second;
  }

  // Every spec spawn() was given, failed ones included.
  const std::vector<common::SpawnSpec>& specs() const { return specs_; }

  // The pids spawn() returned, in order.
  const std::vector<pid_t>& pids() const { return pids_; }

  // Every signal sent: {pid, signal}, a group's as {-leader, signal}.
  const std::vector<std::pair<pid_t, int>>& signals() const { return signals_; }

  Result<pid_t> spawn(const common::SpawnSpec& spec) override {
    specs_.push_back(spec);
    if (!failures_.empty()) {
      Error error = failures_.front();
      failures_.erase(failures_.begin());
      return fail(std::move(error));
    }
    pid_t pid = next_pid_++;
    processes_[pid] = std::nullopt;
    pids_.push_back(pid);
    return pid;
  }

  Result<std::optional<int>> try_wait(pid_t pid) override {
    auto it = processes_.find(pid);
    if (it == processes_.end()) {
      return fail(ErrorCode::kInternal, "no pretend process " + std::to_string(pid));
    }
    std::optional<int> status = it->second;
    if (status) processes_.erase(it);  // reaped
    return status;
  }

  // What try_reap() and try_reap_group() report for `pid` once it has ended.
  void set_usage(pid_t pid, common::ChildUsage usage) { usage_[pid] = usage; }

  Result<std::optional<common::Reaped>> try_reap(pid_t pid) override {
    Result<std::optional<int>> status = try_wait(pid);
    if (!status) return fail(status.error());
    if (!status->has_value()) return std::optional<common::Reaped>();
    return std::optional<common::Reaped>(common::Reaped{pid, **status, usage_[pid]});
  }

  // A pretend group has its leader as its only member.
  Result<std::optional<common::Reaped>> try_reap_group(pid_t group) override {
    if (processes_.count(group) == 0) {
      return fail(ErrorCode::kNotFound, "no pretend process group " + std::to_string(group));
    }
    return try_reap(group);
  }

  // A pretend process only ends when told to, so waiting for a live one is a
  // test bug; it fails rather than hangs.
  Result<int> wait(pid_t pid) override {
    Result<std::optional<int>> status = try_wait(pid);
    if (!status) return fail(status.error());
    if (!status->has_value()) {
      return fail(ErrorCode::kInternal,
                  "would wait forever for pretend process " + std::to_string(pid));
    }
    return **status;
  }

  // Every signal ends a pretend process except those a test says it ignores.
  void signal(pid_t pid, int sig) override {
    signals_.emplace_back(pid, sig);
    if (sig != SIGKILL && ignored_.count(sig) != 0) return;
    exit(pid, killed_by(sig));
  }

  void signal_group(pid_t leader, int sig) override {
    signals_.emplace_back(-leader, sig);
    if (sig != SIGKILL && ignored_.count(sig) != 0) return;
    exit(leader, killed_by(sig));
  }

  // Pretend processes ignore `sig` from now on (SIGKILL cannot be ignored).
  void ignore(int sig) { ignored_[sig] = true; }

 private:
  std::vector<Error> failures_;
  std::vector<common::SpawnSpec> specs_;
  std::vector<pid_t> pids_;
  std::vector<std::pair<pid_t, int>> signals_;
  std::map<pid_t, std::optional<int>> processes_;  // live: nullopt; ended: wait status
  std::map<int, bool> ignored_;
  std::map<pid_t, common::ChildUsage> usage_;
  pid_t next_pid_ = 40001;
};

}  // namespace farmhand::testing
