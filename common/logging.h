// Logging setup: one named spdlog logger per component (broker, store, worker,
// supervisor, cli), all writing one line per event to stderr, so journald and
// terminals both read them. Messages are fixed lower-case phrases followed by
// key=value fields: "task dispatched job=42 task=7 attempt=2 worker=render-03".
// Every message is escaped before it is written (printable() in common/result.h):
// one record is one line, and the names, paths and reasons it quotes can carry
// no control character or escape sequence to a terminal or the journal.
// Call setup_logging once from main() before any other thread starts.
#pragma once

#include <memory>
#include <string>

#include <spdlog/spdlog.h>

namespace farmhand::common {

// level: trace|debug|info|warn|error|off. Unknown levels fall back to info.
void setup_logging(const std::string& level);

// The component's logger, created on first use.
std::shared_ptr<spdlog::logger> logger(const std::string& component);

}  // namespace farmhand::common
