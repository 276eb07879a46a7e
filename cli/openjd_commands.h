// `farmhand openjd ...`: Open Job Description templates, checked locally with
// farmhand_openjd (no broker needed).
#pragma once

#include <functional>

#include <CLI/CLI.hpp>

#include "cli/commands.h"

namespace farmhand::cli {

// Adds `farmhand openjd check TEMPLATE`; `add_globals` gives a leaf command the
// global options (--json, ...).
void add_openjd_commands(CLI::App& app, Invocation& inv,
                         const std::function<void(CLI::App&)>& add_globals);

}  // namespace farmhand::cli
