// `farmhand openjd ...`: Open Job Description templates, checked locally with
// farmhand_openjd (no broker needed).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "openjd/source.h"
#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "common/result.h"

namespace farmhand::cli {

// Adds `farmhand openjd check TEMPLATE`; `add_globals` gives a leaf command the
// global options (--json, ...).
void add_openjd_commands(CLI::App& app, Invocation& inv,
                         const std::function<void(CLI::App&)>& add_globals);

// A job template (`-`: stdin), its environment templates and `-p NAME=VALUE`
// values, read as `openjd tasks` and `submit openjd` take them: relative PATH
// values start in the current directory, relative defaults in the template's.
[[nodiscard]] Result<openjd::JobSource> read_job_source(
    const std::string& path, const std::vector<std::string>& parameters,
    const std::vector<std::string>& env_templates);

}  // namespace farmhand::cli
