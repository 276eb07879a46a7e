// What an OpenJD action says on its standard output, line by line.
//
// An action running in a session may print a few special lines (How Jobs Are
// Run, "Stdout/Stderr Messages"; Template Schemas 4, Environment; RFC 0003):
//
//   openjd_progress: <0..100>       how far the action is
//   openjd_status: <text>           what it is doing
//   openjd_fail: <text>             why it failed
//   openjd_env: NAME=VALUE          (an environment's onEnter only) sets NAME for
//                                   every later action while the environment is
//   openjd_redacted_env: NAME=VALUE as openjd_env, and VALUE is never logged:
//                                   not in this line, not in any later one
//   openjd_unset_env: NAME          (onEnter only) unsets NAME; an unset wins
//                                   over a set of the same environment
//
// SessionOutput reads the lines of one session's actions in order and says
// what each line meant and how it may be logged. It runs nothing: the worker
// feeds it what its processes print. Redaction is session-wide and applies
// even without the REDACTED_ENV_VARS extension (the RFC asks that), but only
// with the extension does a redacted variable get set.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace farmhand::openjd {

// What replaces a secret value in a logged line.
inline constexpr std::string_view kRedacted = "********";

// One change to the environment of later actions, in the order printed.
struct EnvChange {
  std::string name;
  std::optional<std::string> value;  // nullopt: unset
};

// What one line of output meant.
struct OutputLine {
  std::string logged;                  // the line as it may be shown and stored
  std::optional<double> progress;      // openjd_progress, in [0, 100]
  std::optional<std::string> status;   // openjd_status
  std::optional<std::string> failure;  // openjd_fail
  std::optional<EnvChange> env;        // openjd_env/_redacted_env/_unset_env, to apply
  std::string problem;                 // a special line that could not be read: why
  bool fails_action = false;           // a malformed env line: the action fails (as the
                                       // reference runtime does), `problem` says why
};

class SessionOutput {
 public:
  explicit SessionOutput(bool redacted_env_vars_extension)
      : redacted_extension_(redacted_env_vars_extension) {}

  // Reads one line (without its newline) of an action. `entering` is true for
  // an environment's onEnter action, the only one whose env lines count.
  OutputLine read(std::string_view line, bool entering);

  // `text` with every secret value seen so far replaced by kRedacted (for
  // what is logged besides the lines: an error message, a command line).
  std::string redact(std::string_view text) const;

  // The environment changes of one onEnter action, with unsets winning over
  // sets of the same name, in first-mention order.
  static std::vector<EnvChange> settle(const std::vector<EnvChange>& changes);

 private:
  void add_secret(const std::string& value);

  bool redacted_extension_;
  std::vector<std::string> secrets_;       // replaced wherever they occur in a line
  std::vector<std::string> secret_lines_;  // inner lines of multi-line secrets: whole lines
};

}  // namespace farmhand::openjd
