// An Open Job Description session (How Jobs Are Run, "Sessions"): one job's
// environments entered on this host, its tasks run inside them, the
// environments exited, in a scratch working directory of its own.
//
// A Session owns its working directory (mode 0700, made under a given root,
// removed with everything in it when the Session is destroyed) and in it:
//   path_mapping.json  the path mapping rules (openjd/path_mapping.h), read by
//                      `{{Session.PathMappingRulesFile}}`
//   embedded_files/    each action's embedded files (Env.File.*, Task.File.*),
//                      written before each action that has them, mode 0600
//                      (0700 when runnable), with their data resolved then
//   cancel_info.json   {"NotifyEnd": "<UTC time>"}, written before a
//                      NOTIFY_THEN_TERMINATE cancel's SIGTERM
//
// Actions run one at a time, each as the leader of a new process group, with
// the session's environment: the worker's, then `SessionOptions::env`, then
// each entered environment in entry order (its `variables`, then what its
// onEnter printed: openjd_env, openjd_redacted_env with the REDACTED_ENV_VARS
// extension, openjd_unset_env; an unset wins over a set of the same
// environment), a later one overriding an earlier one. The command is looked
// up in that environment's PATH. stdout and stderr go through one pipe and are
// read line by line by the session's SessionOutput (openjd/session_output.h):
// every line goes to the log sink as it may be logged, with every secret value
// printed by openjd_redacted_env so far replaced. When an action's process
// ends, whatever is left in its process group is killed (SIGKILL): nothing an
// action starts outlives it.
//
// Failure is terminal, as the specification says: once an action fails, times
// out or is cancelled (or cannot be started, or its format strings cannot be
// resolved), the session refuses further tasks and environments; exit_all()
// still exits every environment entered or attempted, in reverse order.
//
// Cancelling (the action's `cancelation`, TERMINATE by default): TERMINATE
// sends SIGKILL to the action's process group; NOTIFY_THEN_TERMINATE writes
// cancel_info.json, sends SIGTERM to the group (an action may trap it to stop
// cleanly), and SIGKILL once the notify period (notifyPeriodInSeconds: default
// 120 s for a task, 30 s for an environment's action; at most
// `max_notify_period`) has passed. An action's `timeout` cancels it with
// TERMINATE; an onExit without one gets 300 s.
//
// Thread-safety: enter(), run_task(), exit() and exit_all() block until their
// action ends and must be called from one thread, which must outlive the
// actions (PR_SET_PDEATHSIG is tied to it; the calls return only once their
// action has ended, so this holds). cancel() may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "openjd/job.h"
#include "openjd/path_mapping.h"
#include "openjd/session_output.h"
#include "openjd/template.h"

#include "common/result.h"
#include "common/spawner.h"

namespace farmhand::openjd {

// Receives each line an action printed (without its newline), as it may be
// logged: already redacted. Called on the thread running the action.
using LogSink = std::function<void(const std::string& line)>;

struct SessionOptions {
  // An existing directory; the session's working directory is made in it.
  std::string root_dir;
  // The job's parameters (Job::parameters): `Param.*`, `RawParam.*`.
  std::map<std::string, ParameterValue> job_parameters;
  std::vector<PathMappingRule> path_mapping_rules;  // in any order
  // The job template's REDACTED_ENV_VARS extension (openjd_redacted_env sets a
  // variable only with it; its value is redacted either way).
  bool redacted_env_vars = false;
  // Added to every action's environment, under the environments' variables.
  std::map<std::string, std::string> env;
  // The longest a NOTIFY_THEN_TERMINATE cancel waits before SIGKILL, whatever
  // the template asks (the specification allows up to 600 s).
  std::chrono::milliseconds max_notify_period = std::chrono::seconds(600);
  // After an action's process has ended, how long its output is still read
  // when something it started elsewhere (another session or group) holds the pipe.
  std::chrono::milliseconds output_drain = std::chrono::seconds(1);
  // Asked before each action starts, with its program as found on the
  // action's PATH (absolute): a reason to refuse it, or nothing. Empty: any.
  std::function<std::optional<std::string>(const std::string& program)> allow_program;
  LogSink log;                         // may be empty
  common::Spawner* spawner = nullptr;  // null: common::real_spawner()
};

enum class ActionResult { kSucceeded, kFailed, kTimedOut, kCancelled };

std::string_view action_result_name(ActionResult result);

struct ActionOutcome {
  ActionResult result = ActionResult::kSucceeded;
  std::optional<int> exit_code;  // when the process exited
  int signal = 0;                // when a signal ended it
  // Why it did not succeed, one line: what openjd_fail said, a malformed env
  // line's problem, "exit code 3 from python", "killed by signal SIGSEGV",
  // "timed out after 5 s", "cancelled", "cannot start 'x': ...". Empty on success.
  std::string reason;
  std::optional<std::string> fail_message;  // the last openjd_fail, even on success
  std::optional<double> progress;           // the last openjd_progress
  std::optional<std::string> status;        // the last openjd_status
  // What its process used: CPU (with what it waited for) and peak memory.
  common::ChildUsage usage;
  std::vector<std::string> output;  // the logged lines (the last kOutputLines)
  std::vector<std::string> argv;    // the command run, as resolved

  static constexpr size_t kOutputLines = 10'000;

  bool succeeded() const { return result == ActionResult::kSucceeded; }
};

class Session {
 public:
  // Makes the working directory and writes the path mapping file. Errors:
  // kIo naming the directory.
  [[nodiscard]] static Result<std::unique_ptr<Session>> create(SessionOptions options);

  // Removes the working directory. Exit the environments first (exit_all()):
  // this runs no action.
  ~Session();

  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  const std::string& working_dir() const { return working_dir_; }

  const std::string& path_mapping_file() const { return path_mapping_file_; }

  // Enters `environment`: resolves its variables, writes its embedded files,
  // runs its onEnter (if any) and keeps the environment changes it printed.
  // The environment counts as entered (exit_all() exits it) even when onEnter
  // fails. An error when the session has failed, or nothing could be run
  // (format string, embedded file); the session fails then too.
  [[nodiscard]] Result<ActionOutcome> enter(const Environment& environment);

  // Runs one task of `step`: its embedded files, then its onRun (or its
  // simple action) with `task`'s parameter values. Errors as enter().
  [[nodiscard]] Result<ActionOutcome> run_task(const Step& step, const TaskParameters& task);

  // Exits the last environment entered: its onExit (if any) runs with the
  // environment still applied, then the environment's variables stop. Runs
  // even after a failure. An error when no environment is entered, or the
  // onExit could not be run.
  [[nodiscard]] Result<ActionOutcome> exit();

  // exit() until no environment is left: an outcome (or error) for each.
  std::vector<Result<ActionOutcome>> exit_all();

  // Cancels the running action (by its cancelation mode) and fails the
  // session. Returns at once; the blocked call reports kCancelled.
  void cancel();

  // Whether an action failed, timed out or was cancelled.
  bool failed() const { return failed_.load(); }

  // How many environments are entered (or attempted).
  size_t environments_entered() const;

 private:
  struct Entered;
  struct ResolvedAction;
  struct Running;

  explicit Session(SessionOptions options);

  // The symbols every action sees: Session.*, Param.*, RawParam.*.
  std::map<std::string, std::string> base_symbols() const;
  // Writes `files` into embedded_files/, adding `<prefix>.<name>` to `symbols`.
  // `paths` keeps the paths chosen for the files (reused when rewritten).
  Result<void> write_files(const std::vector<EmbeddedFile>& files, const std::string& prefix,
                           std::map<std::string, std::string>& symbols,
                           std::map<std::string, std::string>& paths);
  Result<ResolvedAction> resolve_action(const Action& action,
                                        const std::map<std::string, std::string>& symbols,
                                        std::chrono::seconds notify_default,
                                        std::optional<std::chrono::seconds> timeout_default);
  // The environment variables every action gets now: name -> value, or
  // nullopt to unset one the worker has.
  std::map<std::string, std::optional<std::string>> action_env() const;
  // Runs `action`; an onEnter passes `env_changes` to collect what it prints.
  // Refused (kCancelled) when the session failed since the caller checked,
  // unless `after_failure` (an onExit).
  ActionOutcome run(const ResolvedAction& action, std::vector<EnvChange>* env_changes,
                    bool after_failure = false);
  void handle_line(std::string_view line, Running& running, ActionOutcome& outcome,
                   std::vector<EnvChange>* env_changes);
  void write_cancel_info(std::chrono::milliseconds notify_period);

  SessionOptions options_;
  common::Spawner& spawner_;
  std::string working_dir_;
  std::string files_dir_;
  std::string path_mapping_file_;
  SessionOutput output_;
  std::vector<Entered> entered_;

  std::atomic<bool> failed_{false};
  std::mutex mutex_;      // guards running_, cancel_requested_
  bool running_ = false;  // an action is running
  bool cancel_requested_ = false;
  int wake_fd_ = -1;  // eventfd: cancel() wakes the running action
};

}  // namespace farmhand::openjd
