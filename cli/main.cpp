// farmhand: the client. Parses the command line and runs one subcommand against
// the broker; the subcommands live in cli/commands.cpp.
#include <exception>
#include <iostream>

#include <CLI/CLI.hpp>
#include <unistd.h>

#include "cli/commands.h"

int main(int argc, char** argv) {
  namespace cli = farmhand::cli;
  try {
    CLI::App app("farmhand: submit, follow and manage jobs on a farmhand render farm", "farmhand");
    cli::Invocation invocation;
    cli::add_commands(app, invocation);
    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      // A word that is no command leaves CLI11 asking for one: say which word.
      if (dynamic_cast<const CLI::RequiredError*>(&e) != nullptr && !app.remaining().empty()) {
        std::cerr << "farmhand: unknown command '" << app.remaining().front()
                  << "' (farmhand --help lists them)\n";
        return cli::kExitUsage;
      }
      // --help is a "parse error" with exit code 0; CLI11 prints usage either way.
      return app.exit(e) == 0 ? cli::kExitOk : cli::kExitUsage;
    }
    return cli::run(invocation, std::cout, std::cerr, isatty(STDOUT_FILENO) == 1);
  } catch (const std::exception& e) {
    // Last resort: anything else is a bug, still reported as one line.
    std::cerr << "farmhand: internal error: " << e.what() << '\n';
    return cli::kExitFailed;
  }
}
