// The `farmhand` subcommands: their CLI11 definitions and what each one runs.
//
// add_commands() declares the whole command tree; parsing binds the chosen
// subcommand into an Invocation, and run() executes it against the broker. Each
// subcommand is one add_* function in commands.cpp that declares its options and
// binds a function taking a Context; a new one (submit thumbnail, publish, seq ls,
// ...) is one more such function and one line in add_commands().
//
// Output goes to the Context's streams only: results on `out`, and on failure
// exactly one "farmhand: <reason>" line on `err`. Not thread-safe.
#pragma once

#include <functional>
#include <ostream>
#include <string>

#include <CLI/CLI.hpp>

#include "cli/client.h"

namespace farmhand::cli {

inline constexpr int kExitOk = 0;
// The broker refused the request, or a followed job failed or was cancelled.
inline constexpr int kExitFailed = 1;
// A bad command line (reported by CLI11) or a bad FARMHAND_* variable.
inline constexpr int kExitUsage = 2;
// No reply from the broker within the timeout.
inline constexpr int kExitUnreachable = 3;

// Options every subcommand accepts. Empty / 0 means not given: the environment
// (FARMHAND_BROKER, FARMHAND_TIMEOUT) or the built-in default applies.
struct GlobalOptions {
  std::string broker;
  std::string broker_key;  // CurveZMQ: the broker's client-port public key, or @FILE
  std::string key_file;    // CurveZMQ: our secret key file
  double timeout_s = 0;
  bool json = false;
};

// What a subcommand runs with.
struct Context {
  Client& client;
  bool json;
  bool tty;  // `out` is a terminal: watch draws a live progress bar
  std::ostream& out;
  std::ostream& err;
};

// A parsed subcommand, ready to run; returns the exit code.
using Command = std::function<int(Context&)>;

struct Invocation {
  GlobalOptions globals;
  Command command;  // set by parsing
};

// Declares every subcommand on `app`. `invocation` is bound by reference and
// must outlive `app`; after app.parse() returns, it holds the chosen subcommand.
void add_commands(CLI::App& app, Invocation& invocation);

// Resolves the broker endpoint and timeout, then runs the parsed subcommand.
// Returns the process exit code.
int run(const Invocation& invocation, std::ostream& out, std::ostream& err, bool tty);

}  // namespace farmhand::cli
