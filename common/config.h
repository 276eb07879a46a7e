// Config: farmhand.yaml loaded with yaml-cpp into plain values.
//
// Every field has an embedded default, so `farmhandd` runs with no file at all.
// Loading never throws: yaml-cpp exceptions are caught here and returned as one
// Error listing every problem, each naming its line
// ("farmhand.yaml:12: unknown key 'slotz' in broker").
// Value type; safe to share const between threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"

namespace farmhand::common {

// One declared template parameter: a value must fully match `pattern` (ECMAScript regex).
struct ParamSpec {
  std::string pattern = "^[A-Za-z0-9_.,:/=+-]*$";
  std::optional<std::string> default_value;
};

// A named command template: argv words with {frame}, {first}, {last}, {frames},
// {job}, {task} and {PARAM} placeholders. Never run through a shell.
struct CommandTemplate {
  std::string name;
  std::vector<std::string> argv;
  std::map<std::string, ParamSpec> params;
  std::map<std::string, std::string> env;  // extra environment for the process
};

struct BrokerConfig {
  std::string client_endpoint = "tcp://127.0.0.1:7600";
  std::string worker_endpoint = "tcp://127.0.0.1:7601";
  std::string state_dir;  // empty: farmhandd picks its default (see daemon/main.cpp)
  std::chrono::milliseconds lease_ttl{30'000};
  std::chrono::milliseconds heartbeat_interval{1'000};
  uint32_t heartbeat_liveness = 3;  // missed beats before a peer counts as lost
  std::chrono::milliseconds retry_backoff_base{2'000};
  std::chrono::milliseconds retry_backoff_max{300'000};
  uint32_t default_max_attempts = 3;
  uint64_t max_client_message_bytes = 1 << 20;
  uint64_t max_worker_message_bytes = 4 << 20;
  std::string sqlite_synchronous = "full";  // full | normal | off
};

struct LocalWorkersConfig {
  int count = -1;  // -1: number of cores
  uint32_t slots = 1;
  std::vector<std::string> tags;
  std::string worker_binary;  // empty: farmhand-worker beside farmhandd
};

struct Config {
  BrokerConfig broker;
  LocalWorkersConfig local_workers;
  std::map<std::string, CommandTemplate> commands;
  std::string log_level = "info";
};

// All problems found, one per entry, each "line N: ..." where a line is known.
struct ConfigErrors {
  std::vector<std::string> messages;
};

// Loads and validates a config file. On failure the Error's reason holds every
// problem, one per line ("FILE:LINE: message").
[[nodiscard]] Result<Config> load_config_file(const std::string& path);

// Same, from YAML text; `origin` names it in messages.
[[nodiscard]] Result<Config> load_config_text(const std::string& text,
                                              const std::string& origin = "<config>");

}  // namespace farmhand::common
