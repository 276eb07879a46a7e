#include "common/config.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <set>
#include <string_view>
#include <utility>

#include <yaml-cpp/yaml.h>

#include "common/byte_size.h"
#include "common/command_template.h"
#include "common/media_kinds.h"
#include "common/path_template.h"
#include "common/review_codecs.h"

namespace farmhand::common {

namespace {

// A file of pure garbage can produce thousands of problems; the first hundred
// are enough to act on and keep --check-config readable.
constexpr std::size_t kMaxProblems = 100;

// Longest duration accepted, in seconds: a year. Anything longer is a typo
// (milliseconds given as seconds), and the bound keeps ms arithmetic far from overflow.
constexpr double kMaxDurationS = 365.0 * 24 * 3600;
constexpr double kMaxKeepDays = 36'500;  // a century

constexpr std::string_view kEndpointSchemes[] = {"tcp://", "ipc://", "inproc://"};
constexpr std::string_view kLogLevels[] = {"trace", "debug", "info", "warn", "error", "off"};
constexpr std::string_view kHttpRead[] = {"open", "token"};
constexpr std::string_view kSqliteSynchronous[] = {"full", "normal", "off"};

struct Problem {
  int line = 0;  // 1-based; 0 when unknown
  std::string message;
};

// One entry of a YAML mapping being read.
struct Entry {
  std::string path;  // dotted, for messages: "broker.lease_ttl_s"
  YAML::Node value;
  int key_line = 0;
  // The value's line, or the key's when the value is empty: yaml-cpp marks an empty
  // value at the next token, often on the next line.
  int line = 0;
};

int line_of(const YAML::Node& node) {
  const YAML::Mark mark = node.Mark();
  return mark.is_null() ? 0 : mark.line + 1;
}

template <std::size_t N>
bool one_of(std::string_view value, const std::string_view (&choices)[N]) {
  return std::find(std::begin(choices), std::end(choices), value) != std::end(choices);
}

template <std::size_t N>
std::string choice_list(const std::string_view (&choices)[N]) {
  std::string out;
  for (std::size_t i = 0; i < N; ++i) {
    if (i > 0) out += i + 1 == N ? " or " : ", ";
    out += choices[i];
  }
  return out;
}

bool is_identifier(std::string_view name) {
  if (name.empty() || (name[0] >= '0' && name[0] <= '9')) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  });
}

bool is_command_name(std::string_view name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
  });
}

// Tags travel as "--tags a,b" to farmhand-worker, so commas and spaces are out.
bool is_tag(std::string_view tag) {
  return !tag.empty() && std::all_of(tag.begin(), tag.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
  });
}

bool is_builtin(std::string_view name) {
  return std::find(std::begin(kBuiltinPlaceholders), std::end(kBuiltinPlaceholders), name) !=
         std::end(kBuiltinPlaceholders);
}

// Walks a parsed document into a Config, collecting every problem instead of
// stopping at the first: a user fixing a config wants the whole list at once.
class Reader {
 public:
  std::vector<Problem>& problems() { return problems_; }

  void problem(int line, std::string message) {
    problems_.push_back(Problem{line, std::move(message)});
  }

  void read_root(const YAML::Node& root, Config& config) {
    if (root.IsNull()) return;
    if (!root.IsMap()) {
      problem(line_of(root), "config must be a mapping");
      return;
    }
    for_each_entry(root, "", [&](const std::string& key, const Entry& entry) {
      if (key == "log_level") {
        if (auto level = read_choice(entry, kLogLevels)) config.log_level = *level;
      } else if (key == "broker") {
        read_broker(entry, config.broker);
      } else if (key == "http") {
        read_http(entry, config.http);
      } else if (key == "local_workers") {
        read_local_workers(entry, config.local_workers);
      } else if (key == "commands") {
        read_commands(entry, config.commands);
      } else if (key == "rules") {
        read_rules(entry, config.rules);
      } else if (key == "watch") {
        read_watch(entry, config.watch);
      } else if (key == "limits") {
        read_limits(entry, config.limits);
      } else if (key == "shares") {
        read_shares(entry, config.shares);
      } else if (key == "hooks") {
        read_hooks(entry, config.hooks);
      } else if (key == "openjd") {
        read_openjd(entry, config.openjd);
      } else if (key == "path_mapping") {
        read_path_mapping(entry, config.path_mapping);
      } else {
        unknown_key(key, entry, "");
      }
    });
    check_rules(config);
    if (config.openjd.any_executable && config.broker.client_authorized_keys_dir.empty()) {
      problem(openjd_any_line_,
              "openjd.executables: any runs whatever a template says, so it needs a "
              "CurveZMQ-secured client port (broker.client_curve_secret_key_file and "
              "broker.client_authorized_keys_dir)");
    }
  }

 private:
  std::vector<Problem> problems_;
  int openjd_any_line_ = 0;  // of `openjd.executables: any`

  static std::string child_path(const std::string& path, const std::string& key) {
    return path.empty() ? key : path + "." + key;
  }

  void unknown_key(const std::string& key, const Entry& entry, const std::string& parent) {
    problem(entry.key_line, "unknown key '" + printable(key) + "'" +
                                (parent.empty() ? std::string(" at top level") : " in " + parent));
  }

  // Calls visit(key, entry) for each entry of `map`, in document order. Keys must
  // be scalars and unique: yaml-cpp keeps both copies of a repeated key, and
  // silently using one of them would hide a mistake.
  void for_each_entry(const YAML::Node& map, const std::string& path,
                      const std::function<void(const std::string&, const Entry&)>& visit) {
    std::set<std::string> seen;
    for (auto it = map.begin(); it != map.end(); ++it) {
      const YAML::Node key_node = it->first;
      if (!key_node.IsScalar()) {
        problem(line_of(key_node),
                "keys must be strings" + (path.empty() ? std::string() : " in " + path));
        continue;
      }
      const std::string key = key_node.Scalar();
      Entry entry;
      entry.path = child_path(path, key);
      entry.value = it->second;
      entry.key_line = line_of(key_node);
      entry.line = entry.value.IsNull() ? entry.key_line : line_of(entry.value);
      if (entry.line == 0) entry.line = entry.key_line;
      if (!seen.insert(key).second) {
        problem(entry.key_line, "duplicate key '" + printable(key) + "'" +
                                    (path.empty() ? std::string() : " in " + path));
        continue;
      }
      visit(key, entry);
    }
  }

  // An empty value (`broker:`) reads as an empty mapping: every default applies.
  bool expect_map(const Entry& entry) {
    if (entry.value.IsNull()) return false;
    if (entry.value.IsMap()) return true;
    problem(entry.line, entry.path + " must be a mapping");
    return false;
  }

  std::optional<std::string> read_string(const Entry& entry, bool empty_allowed = true) {
    std::optional<std::string> text;
    if (entry.value.IsNull()) {
      text = "";
    } else if (entry.value.IsScalar()) {
      text = entry.value.Scalar();
    } else {
      problem(entry.line, entry.path + " must be a string");
      return std::nullopt;
    }
    if (!empty_allowed && text->empty()) {
      problem(entry.line, entry.path + " must not be empty");
      return std::nullopt;
    }
    if (text->find('\0') != std::string::npos) {
      problem(entry.line, entry.path + " must not contain a nul byte");
      return std::nullopt;
    }
    return text;
  }

  template <std::size_t N>
  std::optional<std::string> read_choice(const Entry& entry, const std::string_view (&choices)[N]) {
    auto text = read_string(entry);
    if (!text) return std::nullopt;
    std::string value = ascii_lower(*text);
    if (!one_of(value, choices)) {
      problem(entry.line, entry.path + " must be one of " + choice_list(choices) + ", not '" +
                              printable(*text) + "'");
      return std::nullopt;
    }
    return value;
  }

  std::optional<bool> read_bool(const Entry& entry) {
    if (entry.value.IsScalar() &&
        (entry.value.Scalar() == "true" || entry.value.Scalar() == "false")) {
      return entry.value.Scalar() == "true";
    }
    problem(entry.line, entry.path + " must be true or false");
    return std::nullopt;
  }

  std::optional<double> read_number(const Entry& entry) {
    if (entry.value.IsScalar()) {
      const std::string& text = entry.value.Scalar();
      double value = 0;
      const char* end = text.data() + text.size();
      auto [ptr, ec] = std::from_chars(text.data(), end, value);
      if (ec == std::errc() && ptr == end && std::isfinite(value)) return value;
    }
    problem(entry.line, entry.path + " must be a number");
    return std::nullopt;
  }

  std::optional<int64_t> read_integer(const Entry& entry, int64_t min, int64_t max) {
    if (entry.value.IsScalar()) {
      const std::string& text = entry.value.Scalar();
      int64_t value = 0;
      const char* end = text.data() + text.size();
      auto [ptr, ec] = std::from_chars(text.data(), end, value);
      if (ec == std::errc() && ptr == end) {
        if (value < min) {
          problem(entry.line, entry.path + " must be at least " + std::to_string(min));
          return std::nullopt;
        }
        if (value > max) {
          problem(entry.line, entry.path + " must be at most " + std::to_string(max));
          return std::nullopt;
        }
        return value;
      }
      if (ec == std::errc::result_out_of_range) {
        problem(entry.line, entry.path + " is out of range");
        return std::nullopt;
      }
    }
    problem(entry.line, entry.path + " must be an integer");
    return std::nullopt;
  }

  // Durations are written in (possibly fractional) seconds: "0.5" is 500 ms.
  std::optional<std::chrono::milliseconds> read_duration(const Entry& entry) {
    auto seconds = read_number(entry);
    if (!seconds) return std::nullopt;
    if (*seconds <= 0) {
      problem(entry.line, entry.path + " must be positive");
      return std::nullopt;
    }
    if (*seconds > kMaxDurationS) {
      problem(entry.line, entry.path + " must be at most " +
                              std::to_string(static_cast<int64_t>(kMaxDurationS)));
      return std::nullopt;
    }
    const auto ms = static_cast<int64_t>(std::llround(*seconds * 1000.0));
    if (ms < 1) {
      problem(entry.line, entry.path + " must be at least 0.001 (one millisecond)");
      return std::nullopt;
    }
    return std::chrono::milliseconds(ms);
  }

  std::optional<std::string> read_endpoint(const Entry& entry) {
    auto text = read_string(entry);
    if (!text) return std::nullopt;
    for (std::string_view scheme : kEndpointSchemes) {
      if (text->rfind(scheme, 0) != 0) continue;
      if (text->size() == scheme.size()) {
        problem(entry.line, entry.path + " '" + printable(*text) + "' has no address");
        return std::nullopt;
      }
      return text;
    }
    problem(entry.line, entry.path + " '" + printable(*text) + "' must start with " +
                            choice_list(kEndpointSchemes));
    return std::nullopt;
  }

  template <typename T>
  void assign(std::optional<T> value, T& field) {
    if (value) field = std::move(*value);
  }

  template <typename Int>
  void assign_integer(const Entry& entry, int64_t min, Int& field) {
    const auto max = static_cast<int64_t>(
        std::min<uint64_t>(std::numeric_limits<Int>::max(), std::numeric_limits<int64_t>::max()));
    if (auto value = read_integer(entry, min, max)) field = static_cast<Int>(*value);
  }

  void read_broker(const Entry& section, BrokerConfig& broker) {
    if (!expect_map(section)) return;
    int client_line = 0;
    int worker_line = 0;
    int backoff_base_line = 0;
    int backoff_max_line = 0;
    int curve_line = 0;
    int client_curve_line = 0;
    int worker_curve_line = 0;
    for_each_entry(section.value, section.path, [&](const std::string& key, const Entry& entry) {
      if (key == "client_endpoint") {
        assign(read_endpoint(entry), broker.client_endpoint);
        client_line = entry.line;
      } else if (key == "worker_endpoint") {
        assign(read_endpoint(entry), broker.worker_endpoint);
        worker_line = entry.line;
      } else if (key == "state_dir") {
        assign(read_string(entry), broker.state_dir);
      } else if (key == "lease_ttl_s") {
        assign(read_duration(entry), broker.lease_ttl);
      } else if (key == "heartbeat_interval_s") {
        assign(read_duration(entry), broker.heartbeat_interval);
      } else if (key == "heartbeat_liveness") {
        assign_integer(entry, 1, broker.heartbeat_liveness);
      } else if (key == "retry_backoff_base_s") {
        assign(read_duration(entry), broker.retry_backoff_base);
        backoff_base_line = entry.line;
      } else if (key == "retry_backoff_max_s") {
        assign(read_duration(entry), broker.retry_backoff_max);
        backoff_max_line = entry.line;
      } else if (key == "default_max_attempts") {
        assign_integer(entry, 1, broker.default_max_attempts);
      } else if (key == "block_after_failures") {
        assign_integer(entry, 0, broker.block_after_failures);
      } else if (key == "max_client_message_bytes") {
        assign_integer(entry, 1, broker.max_client_message_bytes);
      } else if (key == "max_worker_message_bytes") {
        assign_integer(entry, 1, broker.max_worker_message_bytes);
      } else if (key == "allowed_roots") {
        if (auto roots = read_string_list(entry)) {
          broker.allowed_roots.clear();
          for (const std::string& root : *roots) {
            if (root.empty() || root.front() != '/') {
              problem(entry.line,
                      entry.path + " must hold absolute paths, not '" + printable(root) + "'");
              continue;
            }
            std::string normal = std::filesystem::path(root).lexically_normal().string();
            if (normal.size() > 1 && normal.back() == '/') normal.pop_back();
            broker.allowed_roots.push_back(normal);
          }
        }
      } else if (key == "backup_dir") {
        if (auto dir = read_string(entry)) {
          if (dir->empty()) {
            broker.backup_dir.clear();
          } else if (dir->front() != '/') {
            problem(entry.line,
                    entry.path + " must be an absolute path, not '" + printable(*dir) + "'");
          } else {
            std::string normal = std::filesystem::path(*dir).lexically_normal().string();
            if (normal.size() > 1 && normal.back() == '/') normal.pop_back();
            broker.backup_dir = normal;
          }
        }
      } else if (key == "worker_curve_secret_key_file") {
        assign(read_string(entry), broker.worker_curve_secret_key_file);
        curve_line = entry.line;
      } else if (key == "worker_authorized_keys_dir") {
        assign(read_string(entry), broker.worker_authorized_keys_dir);
        curve_line = entry.line;
      } else if (key == "client_curve_secret_key_file") {
        assign(read_string(entry), broker.client_curve_secret_key_file);
        client_curve_line = entry.line;
      } else if (key == "client_authorized_keys_dir") {
        assign(read_string(entry), broker.client_authorized_keys_dir);
        client_curve_line = entry.line;
      } else if (key == "worker_curve") {
        assign(read_bool(entry), broker.worker_curve);
        worker_curve_line = entry.line;
      } else if (key == "allow_insecure") {
        assign(read_bool(entry), broker.allow_insecure);
      } else if (key == "rename_duplicate_workers") {
        assign(read_bool(entry), broker.rename_duplicate_workers);
      } else if (key == "keep_finished_days") {
        if (auto days = read_number(entry)) {
          if (*days < 0 || *days > kMaxKeepDays) {
            problem(entry.line, entry.path + " must be 0 (keep forever) to " +
                                    std::to_string(static_cast<int>(kMaxKeepDays)));
          } else {
            broker.keep_finished =
                std::chrono::milliseconds(std::llround(*days * 24.0 * 3600.0 * 1000.0));
          }
        }
      } else if (key == "sqlite_synchronous") {
        assign(read_choice(entry, kSqliteSynchronous), broker.sqlite_synchronous);
      } else {
        unknown_key(key, entry, section.path);
      }
    });
    // Both sockets are bound by one broker: the same address would fail at bind time.
    if ((client_line != 0 || worker_line != 0) &&
        broker.client_endpoint == broker.worker_endpoint) {
      problem(std::max(client_line, worker_line),
              "broker.client_endpoint and broker.worker_endpoint must differ");
    }
    if ((backoff_base_line != 0 || backoff_max_line != 0) &&
        broker.retry_backoff_max < broker.retry_backoff_base) {
      problem(std::max(backoff_base_line, backoff_max_line),
              "broker.retry_backoff_max_s must not be less than broker.retry_backoff_base_s");
    }
    if (broker.worker_curve_secret_key_file.empty() != broker.worker_authorized_keys_dir.empty()) {
      problem(curve_line,
              "broker.worker_curve_secret_key_file and broker.worker_authorized_keys_dir go "
              "together: set both for CurveZMQ on the worker endpoint, or neither");
    }
    if (!broker.worker_curve && !broker.worker_curve_secret_key_file.empty()) {
      problem(std::max(curve_line, worker_curve_line),
              "broker.worker_curve is false but broker.worker_curve_secret_key_file is set: "
              "choose one");
    }
    if (broker.client_curve_secret_key_file.empty() != broker.client_authorized_keys_dir.empty()) {
      problem(client_curve_line,
              "broker.client_curve_secret_key_file and broker.client_authorized_keys_dir go "
              "together: set both for CurveZMQ on the client endpoint, or neither");
    }
  }

  void read_limits(const Entry& section, std::map<std::string, uint32_t>& limits) {
    if (!expect_map(section)) return;
    for_each_entry(section.value, section.path, [&](const std::string& key, const Entry& entry) {
      if (!valid_limit_name(key)) {
        problem(entry.key_line, entry.path + ": limit name '" + printable(key) +
                                    "' must be 1 to 64 letters, digits, '_', '-' or '.'");
        return;
      }
      assign_integer(entry, 0, limits[key]);
    });
  }

  void read_shares(const Entry& section, std::map<std::string, uint32_t>& shares) {
    if (!expect_map(section)) return;
    for_each_entry(section.value, section.path, [&](const std::string& key, const Entry& entry) {
      if (key.empty() || key.size() > 256) {
        problem(entry.key_line, entry.path + ": a project name is 1 to 256 bytes");
        return;
      }
      uint32_t weight = 0;
      if (auto value = read_integer(entry, 1, 10'000)) weight = static_cast<uint32_t>(*value);
      if (weight > 0) shares[key] = weight;
    });
  }

  void read_openjd(const Entry& section, OpenJdConfig& openjd) {
    if (!expect_map(section)) return;
    for_each_entry(section.value, section.path, [&](const std::string& key, const Entry& entry) {
      if (key == "enabled") {
        assign(read_bool(entry), openjd.enabled);
      } else if (key == "allow_root") {
        assign(read_bool(entry), openjd.allow_root);
      } else if (key == "executables") {
        if (entry.value.IsScalar() && entry.value.Scalar() == "any") {
          openjd.any_executable = true;
          openjd_any_line_ = entry.line;
          return;
        }
        auto names = read_string_list(entry);
        if (!names) return;
        for (const std::string& name : *names) {
          // A name is looked up in PATH; anything with a slash must be absolute.
          const bool ok = !name.empty() && name != "." && name != ".." &&
                          (name.find('/') == std::string::npos || name.front() == '/');
          if (!ok) {
            problem(entry.line, entry.path + ": '" + printable(name) +
                                    "' is neither a program name nor an absolute path");
            continue;
          }
          openjd.executables.push_back(name);
        }
      } else {
        unknown_key(key, entry, section.path);
      }
    });
    if (openjd.enabled && openjd.executables.empty() && !openjd.any_executable) {
      problem(section.line, section.path +
                                ": enabled needs executables, the programs templates may "
                                "run (a list, or any)");
    }
  }

  void read_path_mapping(const Entry& section, std::vector<PathMappingConfig>& rules) {
    if (section.value.IsNull()) return;
    if (!section.value.IsSequence()) {
      problem(section.line, section.path + " must be a list of rules");
      return;
    }
    for (std::size_t i = 0; i < section.value.size(); ++i) {
      Entry item;
      item.path = section.path + "[" + std::to_string(i) + "]";
      item.value = section.value[i];
      item.line = line_of(item.value);
      item.key_line = item.line;
      if (!expect_map(item)) continue;
      PathMappingConfig rule;
      rule.line = item.line;
      for_each_entry(item.value, item.path, [&](const std::string& key, const Entry& entry) {
        if (key == "source_path_format") {
          if (auto format = read_string(entry)) {
            if (*format != "POSIX" && *format != "WINDOWS") {
              problem(entry.line,
                      entry.path + " must be POSIX or WINDOWS, not '" + printable(*format) + "'");
            } else {
              rule.source_path_format = *format;
            }
          }
        } else if (key == "source_path") {
          assign(read_string(entry, /*empty_allowed=*/false), rule.source_path);
        } else if (key == "destination_path") {
          if (auto path = read_string(entry, /*empty_allowed=*/false)) {
            if (path->front() != '/') {
              problem(entry.line,
                      entry.path + " must be an absolute path, not '" + printable(*path) + "'");
            } else {
              rule.destination_path = *path;
            }
          }
        } else {
          unknown_key(key, entry, item.path);
        }
      });
      if (rule.source_path.empty() || rule.destination_path.empty()) {
        problem(item.line, item.path + " needs source_path and destination_path");
        continue;
      }
      rules.push_back(std::move(rule));
    }
  }

  void read_http(const Entry& section, HttpConfig& http) {
    if (!expect_map(section)) return;
    for_each_entry(section.value, section.path, [&](const std::string& key, const Entry& entry) {
      if (key == "listen") {
        if (auto text = read_string(entry)) {
          if (auto ok = check_http_listen(*text); !ok) {
            problem(entry.line, entry.path + ": " + ok.error().reason);
          } else {
            http.listen = *text;
            http.listen_given = true;
          }
        }
      } else if (key == "tls_cert") {
        assign(read_string(entry), http.tls_cert);
      } else if (key == "tls_key") {
        assign(read_string(entry), http.tls_key);
      } else if (key == "read") {
        assign(read_choice(entry, kHttpRead), http.read);
      } else if (key == "tokens_file") {
        assign(read_string(entry), http.tokens_file);
      } else if (key == "web_dir") {
        assign(read_string(entry), http.web_dir);
      } else if (key == "allow_insecure") {
        assign(read_bool(entry), http.allow_insecure);
      } else {
        unknown_key(key, entry, section.path);
      }
    });
    if (http.tls_cert.empty() != http.tls_key.empty()) {
      problem(section.line, section.path + ": tls_cert and tls_key go together");
    }
    if (http.read == "token" && http.tokens_file.empty()) {
      problem(section.line, section.path + ": read: token needs a tokens_file");
    }
  }

  void read_local_workers(const Entry& section, LocalWorkersConfig& workers) {
    if (!expect_map(section)) return;
    for_each_entry(section.value, section.path, [&](const std::string& key, const Entry& entry) {
      if (key == "count") {
        assign_integer(entry, -1, workers.count);
      } else if (key == "slots") {
        assign_integer(entry, 1, workers.slots);
      } else if (key == "interactive_slots") {
        assign_integer(entry, 0, workers.interactive_slots);
      } else if (key == "tags") {
        read_tags(entry, workers.tags);
      } else if (key == "worker_binary") {
        assign(read_string(entry), workers.worker_binary);
      } else if (key == "cores") {
        assign_integer(entry, 0, workers.cores);
      } else if (key == "memory") {
        if (auto text = read_string(entry)) {
          auto bytes = parse_byte_size(*text);
          if (bytes) {
            workers.memory = *bytes;
          } else {
            problem(entry.line, entry.path + ": " + bytes.error().reason);
          }
        }
      } else {
        unknown_key(key, entry, section.path);
      }
    });
  }

  // A scalar or a list of scalars, as a list.
  std::optional<std::vector<std::string>> read_string_list(const Entry& entry) {
    std::vector<std::string> out;
    if (entry.value.IsNull()) return out;
    if (entry.value.IsScalar()) {
      out.push_back(entry.value.Scalar());
      return out;
    }
    if (!entry.value.IsSequence()) {
      problem(entry.line, entry.path + " must be a string or a list of strings");
      return std::nullopt;
    }
    for (std::size_t i = 0; i < entry.value.size(); ++i) {
      const YAML::Node item = entry.value[i];
      if (!item.IsScalar()) {
        problem(line_of(item) ? line_of(item) : entry.line,
                entry.path + "[" + std::to_string(i) + "] must be a string");
        return std::nullopt;
      }
      out.push_back(item.Scalar());
    }
    return out;
  }

  std::map<std::string, std::string> read_string_map(const Entry& section) {
    std::map<std::string, std::string> out;
    if (!expect_map(section)) return out;
    for_each_entry(section.value, section.path, [&](const std::string& key, const Entry& entry) {
      if (auto value = read_string(entry)) out[key] = *value;
    });
    return out;
  }

  void read_rules(const Entry& section, std::vector<Rule>& rules) {
    if (section.value.IsNull()) return;
    if (!section.value.IsSequence()) {
      problem(section.line, "rules must be a list of rules (each '- name: ...')");
      return;
    }
    std::set<std::string> names;
    for (std::size_t i = 0; i < section.value.size(); ++i) {
      Entry entry;
      entry.path = "rules[" + std::to_string(i) + "]";
      entry.value = section.value[i];
      entry.key_line = entry.line = line_of(entry.value) ? line_of(entry.value) : section.line;
      Rule rule;
      rule.line = entry.line;
      read_rule(entry, rule);
      if (rule.name.empty()) continue;
      if (!names.insert(rule.name).second) {
        problem(rule.line, "duplicate rule name '" + printable(rule.name) + "'");
        continue;
      }
      rules.push_back(std::move(rule));
    }
  }

  void read_rule(const Entry& section, Rule& rule) {
    if (!section.value.IsMap()) {
      problem(section.line, section.path + " must be a mapping with name, match and jobs");
      return;
    }
    bool has_jobs = false;
    bool has_name = false;
    for_each_entry(section.value, section.path, [&](const std::string& key, const Entry& entry) {
      if (key == "name") {
        has_name = true;
        if (auto name = read_string(entry, false)) {
          if (!is_command_name(*name)) {
            problem(entry.line, "rule name '" + printable(*name) + "' must match ^[A-Za-z0-9_-]+$");
          } else {
            rule.name = *name;
          }
        }
      } else if (key == "match") {
        read_match(entry, rule.match);
      } else if (key == "jobs") {
        has_jobs = true;
        read_rule_jobs(entry, rule);
      } else {
        unknown_key(key, entry, section.path);
      }
    });
    if (!has_name) problem(section.line, section.path + ".name is required");
    if (!has_jobs) problem(section.line, section.path + ".jobs is required");
  }

  void read_match(const Entry& section, RuleMatch& match) {
    if (!expect_map(section)) return;
    static constexpr std::string_view kKinds[] = {"sequence", "image", "movie", "file"};
    for_each_entry(section.value, section.path, [&](const std::string& key, const Entry& entry) {
      if (key == "path") {
        if (auto globs = read_string_list(entry)) match.path = *globs;
      } else if (key == "kind") {
        auto kinds = read_string_list(entry);
        if (!kinds) return;
        for (const std::string& kind : *kinds) {
          if (!one_of(ascii_lower(kind), kKinds)) {
            problem(entry.line, entry.path + " must be " + choice_list(kKinds) + ", not '" +
                                    printable(kind) + "'");
            return;
          }
          match.kind.push_back(ascii_lower(kind));
        }
      } else if (key == "ext") {
        auto exts = read_string_list(entry);
        if (!exts) return;
        for (const std::string& ext : *exts) {
          std::string e = ascii_lower(ext);
          if (!e.empty() && e.front() == '.') e.erase(0, 1);
          match.ext.push_back(e);
        }
      } else if (key == "meta") {
        match.meta = read_string_map(entry);
      } else if (key == "event") {
        auto events = read_string_list(entry);
        if (!events) return;
        for (const std::string& event : *events) {
          if (!one_of(event, kHookEvents)) {
            problem(entry.line, "unknown event '" + printable(event) + "' in " + entry.path +
                                    " (one of " + choice_list(kHookEvents) + ")");
            return;
          }
          match.event.push_back(event);
        }
      } else if (key == "label") {
        match.label = read_string_map(entry);
      } else {
        unknown_key(key, entry, section.path);
      }
    });
    const bool publish =
        !match.path.empty() || !match.kind.empty() || !match.ext.empty() || !match.meta.empty();
    if (publish && !match.event.empty()) {
      problem(section.line, section.path +
                                " matches either publishes (path, kind, ext, meta) or farm "
                                "events (event, label), not both");
    } else if (!match.label.empty() && match.event.empty()) {
      problem(section.line, section.path + ".label needs an event to match");
    }
  }

  void read_rule_jobs(const Entry& section, Rule& rule) {
    if (!section.value.IsMap() || section.value.size() == 0) {
      problem(section.line, section.path + " must map job names to jobs");
      return;
    }
    for_each_entry(section.value, section.path, [&](const std::string& name, const Entry& entry) {
      if (!is_command_name(name)) {
        problem(entry.key_line, "job name '" + printable(name) + "' must match ^[A-Za-z0-9_-]+$");
        return;
      }
      RuleJob job;
      job.name = name;
      job.line = entry.key_line;
      read_rule_job(entry, job);
      rule.jobs.push_back(std::move(job));
    });
  }

  static bool media_option(const std::string& kind, const std::string& key) {
    static const std::map<std::string, std::set<std::string>> kOptions = {
        {"thumbnail", {"input", "output", "frame", "size", "ocio", "display", "view", "look"}},
        {"convert",
         {"input", "output", "resize", "format", "ocio", "display", "view", "look", "font",
          "burn_in_size", "burn_in_colour"}},
        {"transcode",
         {"input", "output", "codec", "fps", "crf", "missing", "ocio", "max_width", "audio",
          "audio_offset", "font", "display", "view", "look", "burn_in_size", "burn_in_colour",
          "segments"}},
        {"contactsheet",
         {"input", "output", "every", "columns", "size", "title", "ocio", "display", "view",
          "look"}},
    };
    auto it = kOptions.find(kind);
    return it != kOptions.end() && it->second.count(key) != 0;
  }

  void read_rule_job(const Entry& section, RuleJob& job) {
    if (!expect_map(section)) {
      if (section.value.IsNull()) problem(section.line, section.path + ".kind is required");
      return;
    }
    // The kind decides which keys are valid, so read it first.
    const YAML::Node kind_node = section.value["kind"];
    if (!kind_node) {
      problem(section.key_line, section.path + ".kind is required");
      return;
    }
    Entry kind_entry{section.path + ".kind", kind_node, line_of(kind_node), line_of(kind_node)};
    auto kind = read_choice(kind_entry, kJobKinds);
    if (!kind) return;
    job.kind = *kind;
    std::vector<std::pair<std::string, int>> templates;
    for_each_entry(section.value, section.path, [&](const std::string& key, const Entry& entry) {
      if (key == "kind") return;
      job.lines[key] = entry.line;
      if (key == "command" && job.kind == "command") {
        if (auto name = read_string(entry, false)) job.command = *name;
      } else if (key == "params" && job.kind == "command") {
        job.params = read_string_map(entry);
        for (const auto& [k, v] : job.params) templates.emplace_back(v, entry.line);
      } else if (key == "frames" && (job.kind == "command" || job.kind == "noop")) {
        if (auto frames = read_string(entry, false)) {
          job.frames = *frames;
          templates.emplace_back(*frames, entry.line);
        }
      } else if (key == "burn_in" && (job.kind == "transcode" || job.kind == "convert")) {
        // Text or a list of texts, [POSITION=]TEXT each; templates of the
        // media process ({frame}, {timecode}, {shot}...), not paths.
        std::vector<std::string> burns;
        if (entry.value.IsSequence()) {
          if (auto list = read_string_list(entry)) burns = *list;
        } else if (auto one = read_string(entry, false)) {
          burns.push_back(*one);
        }
        std::string lines;
        for (const std::string& burn : burns) lines += (lines.empty() ? "" : "\n") + burn;
        if (auto ok = parse_burn_ins(lines); !ok) {
          problem(entry.line, section.path + ".burn_in: " + ok.error().reason);
        } else if (!lines.empty()) {
          job.params["burn_in"] = lines;
        }
      } else if (key == "slate" && job.kind == "transcode") {
        if (auto slate = read_bool(entry)) job.params["slate"] = *slate ? "true" : "false";
      } else if (key == "chunk") {
        assign_integer(entry, 1, job.chunk);
      } else if (key == "priority") {
        assign_integer(entry, -1000000, job.priority);
      } else if (key == "pool") {
        assign(read_string(entry), job.pool);
      } else if (key == "lane") {
        static constexpr std::string_view kLanes[] = {"interactive", "batch"};
        assign(read_choice(entry, kLanes), job.lane);
      } else if (key == "after") {
        if (auto after = read_string_list(entry)) job.after = *after;
      } else if (key == "after_frames") {
        assign(read_string(entry), job.after_frames);
      } else if (key == "max_attempts") {
        assign_integer(entry, 1, job.max_attempts);
      } else if (key == "timeout_s") {
        assign_integer(entry, 1, job.timeout_s);
      } else if (media_option(job.kind, key)) {
        if (auto value = read_string(entry, false)) {
          job.params[key] = *value;
          templates.emplace_back(*value, entry.line);
        }
      } else {
        problem(entry.key_line, "unknown key '" + printable(key) + "' for a " + job.kind +
                                    " job in " + section.path);
      }
    });
    for (const auto& [text, line] : templates) {
      if (auto ok = check_path_template(text); !ok) {
        problem(line, section.path + ": " + ok.error().reason);
      }
    }
    bool media = is_media_kind(job.kind);
    if (media && job.params.count("output") == 0) {
      problem(section.key_line, section.path + ".output is required for " + job.kind + " jobs");
    }
    if (job.kind == "command" && job.command.empty()) {
      problem(section.key_line, section.path + ".command is required for command jobs");
    }
    if (job.lane == "interactive" && !media) {
      problem(section.key_line, section.path +
                                    ": only thumbnail, convert and transcode jobs may use the "
                                    "interactive lane");
    }
  }

  // The jobs of its rule a job waits for: `after`, and `after_frames`.
  static std::vector<std::string> upstreams(const RuleJob& job) {
    std::vector<std::string> ups = job.after;
    if (!job.after_frames.empty()) ups.push_back(job.after_frames);
    return ups;
  }

  // What needs the whole config: command names, `after` edges and their order.
  void check_rules(Config& config) {
    for (Rule& rule : config.rules) {
      std::map<std::string, const RuleJob*> by_name;
      for (const RuleJob& job : rule.jobs) by_name[job.name] = &job;
      for (const RuleJob& job : rule.jobs) {
        if (!rule.match.event.empty() && job.kind != "command" && job.kind != "noop") {
          problem(job.line, "rule '" + rule.name + "' job '" + job.name +
                                "': a rule that matches farm events makes command or noop jobs, "
                                "not " +
                                job.kind);
        }
        if (job.kind == "command" && !job.command.empty() &&
            config.commands.count(job.command) == 0) {
          auto at = job.lines.find("command");
          problem(at != job.lines.end() ? at->second : job.line,
                  "rule '" + rule.name + "' job '" + job.name + "' names unknown command '" +
                      printable(job.command) + "'");
        }
        for (const std::string& up : upstreams(job)) {
          if (by_name.count(up) == 0) {
            problem(job.line, "rule '" + rule.name + "' job '" + job.name + "' is after '" +
                                  printable(up) + "', which is not a job of this rule");
          } else if (up == job.name) {
            problem(job.line, "rule '" + rule.name + "' job '" + job.name + "' is after itself");
          }
        }
      }
      // Order the jobs so each comes after its upstreams (Kahn); what is left is a cycle.
      std::vector<RuleJob> ordered;
      std::set<std::string> placed;
      std::vector<RuleJob> pending = rule.jobs;
      bool progress = true;
      while (!pending.empty() && progress) {
        progress = false;
        for (auto it = pending.begin(); it != pending.end();) {
          const std::vector<std::string> ups = upstreams(*it);
          bool ready = std::all_of(ups.begin(), ups.end(), [&](const std::string& up) {
            return placed.count(up) != 0 || by_name.count(up) == 0 || up == it->name;
          });
          if (ready) {
            placed.insert(it->name);
            ordered.push_back(std::move(*it));
            it = pending.erase(it);
            progress = true;
          } else {
            ++it;
          }
        }
      }
      if (!pending.empty()) {
        problem(pending.front().line, "rule '" + rule.name +
                                          "' jobs depend on each other in a "
                                          "cycle (job '" +
                                          pending.front().name + "')");
        continue;
      }
      rule.jobs = std::move(ordered);
    }
  }

  // `hooks:` — a list of webhooks. Kept in a function of its own.
  void read_hooks(const Entry& section, std::vector<Hook>& hooks) {
    if (section.value.IsNull()) return;
    if (!section.value.IsSequence()) {
      problem(section.line, "hooks must be a list of hooks (each '- url: ...')");
      return;
    }
    std::set<std::string> names;
    for (std::size_t i = 0; i < section.value.size(); ++i) {
      Entry item;
      item.path = "hooks[" + std::to_string(i) + "]";
      item.value = section.value[i];
      item.key_line = item.line = line_of(item.value) ? line_of(item.value) : section.line;
      if (!item.value.IsMap()) {
        problem(item.line, item.path + " must be a mapping with url, events and secret");
        continue;
      }
      Hook hook;
      hook.name = "hook-" + std::to_string(i + 1);
      hook.line = item.line;
      bool has_url = false;
      bool has_events = false;
      bool has_secret = false;
      for_each_entry(item.value, item.path, [&](const std::string& key, const Entry& entry) {
        if (key == "name") {
          if (auto name = read_string(entry, false)) {
            if (!is_command_name(*name)) {
              problem(entry.line,
                      "hook name '" + printable(*name) + "' must match ^[A-Za-z0-9_-]+$");
            } else {
              hook.name = *name;
            }
          }
        } else if (key == "url") {
          has_url = true;
          auto url = read_string(entry, false);
          if (!url) return;
          const bool http = url->rfind("http://", 0) == 0 && url->size() > 7;
          const bool https = url->rfind("https://", 0) == 0 && url->size() > 8;
          if (!http && !https) {
            problem(entry.line, entry.path + " '" + printable(*url) +
                                    "' must start with http:// or https:// and name a host");
            return;
          }
          hook.url = *url;
        } else if (key == "events") {
          has_events = true;
          auto events = read_string_list(entry);
          if (!events) return;
          if (events->empty()) problem(entry.line, entry.path + " must name at least one event");
          for (const std::string& event : *events) {
            if (!one_of(event, kHookEvents)) {
              problem(entry.line, "unknown event '" + printable(event) + "' in " + entry.path +
                                      " (one of " + choice_list(kHookEvents) + ")");
              continue;
            }
            if (std::find(hook.events.begin(), hook.events.end(), event) == hook.events.end()) {
              hook.events.push_back(event);
            }
          }
        } else if (key == "secret") {
          if (has_secret) {
            problem(entry.line, item.path + " has both secret and secret_file: give one");
            return;
          }
          has_secret = true;
          assign(read_string(entry, false), hook.secret);
        } else if (key == "secret_file") {
          if (has_secret) {
            problem(entry.line, item.path + " has both secret and secret_file: give one");
            return;
          }
          has_secret = true;
          auto file = read_string(entry, false);
          if (!file) return;
          hook.secret_file = *file;
          std::FILE* f = std::fopen(file->c_str(), "rb");
          if (!f) {
            problem(entry.line, "cannot read " + entry.path + " " + printable(*file) + ": " +
                                    std::strerror(errno));
            return;
          }
          char buf[4096];
          std::string secret;
          for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) secret.append(buf, n);
          std::fclose(f);
          // A trailing newline is the editor's, not the secret's.
          while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) {
            secret.pop_back();
          }
          if (secret.empty()) {
            problem(entry.line, entry.path + " " + printable(*file) + " is empty");
            return;
          }
          hook.secret = std::move(secret);
        } else if (key == "ca_file") {
          auto file = read_string(entry, false);
          if (!file) return;
          if (std::FILE* f = std::fopen(file->c_str(), "rb")) {
            std::fclose(f);
            hook.ca_file = *file;
          } else {
            problem(entry.line, "cannot read " + entry.path + " " + printable(*file) + ": " +
                                    std::strerror(errno));
          }
        } else if (key == "timeout_s") {
          assign(read_duration(entry), hook.timeout);
        } else if (key == "backoff_base_s") {
          assign(read_duration(entry), hook.backoff_base);
        } else if (key == "backoff_max_s") {
          assign(read_duration(entry), hook.backoff_max);
        } else if (key == "give_up_after_s") {
          assign(read_duration(entry), hook.give_up_after);
        } else {
          unknown_key(key, entry, item.path);
        }
      });
      if (!has_url) problem(item.line, item.path + ".url is required");
      if (!has_events) problem(item.line, item.path + ".events is required");
      if (!has_secret) problem(item.line, item.path + ".secret or .secret_file is required");
      if (!hook.ca_file.empty() && hook.url.rfind("https://", 0) != 0) {
        problem(item.line, item.path + ".ca_file is for an https:// url");
      }
      if (hook.backoff_max < hook.backoff_base) {
        problem(item.line, item.path + ".backoff_max_s must be at least backoff_base_s");
      }
      if (!names.insert(hook.name).second) {
        problem(item.line, "duplicate hook name '" + printable(hook.name) + "'");
        continue;
      }
      hooks.push_back(std::move(hook));
    }
  }

  void read_watch(const Entry& section, std::vector<WatchFolder>& folders) {
    if (section.value.IsNull()) return;
    if (!section.value.IsSequence()) {
      problem(section.line, "watch must be a list of folders (each '- path: ...')");
      return;
    }
    for (std::size_t i = 0; i < section.value.size(); ++i) {
      Entry item;
      item.path = "watch[" + std::to_string(i) + "]";
      item.value = section.value[i];
      item.key_line = item.line = line_of(item.value) ? line_of(item.value) : section.line;
      if (!item.value.IsMap()) {
        problem(item.line, item.path + " must be a mapping with path and settle_s");
        continue;
      }
      WatchFolder folder;
      folder.line = item.line;
      for_each_entry(item.value, item.path, [&](const std::string& key, const Entry& entry) {
        if (key == "path") {
          auto path = read_string(entry, false);
          if (path && path->front() != '/') {
            problem(entry.line, entry.path + " must be an absolute path");
          }
          if (path) folder.path = *path;  // even relative: ".path is required" would mislead
        } else if (key == "recursive") {
          if (entry.value.IsScalar() &&
              (entry.value.Scalar() == "true" || entry.value.Scalar() == "false")) {
            folder.recursive = entry.value.Scalar() == "true";
          } else {
            problem(entry.line, entry.path + " must be true or false");
          }
        } else if (key == "settle_s") {
          assign(read_duration(entry), folder.settle);
        } else if (key == "include") {
          if (auto globs = read_string_list(entry)) folder.include = *globs;
        } else if (key == "meta") {
          folder.meta = read_string_map(entry);
        } else if (key == "republish") {
          if (entry.value.IsScalar() &&
              (entry.value.Scalar() == "true" || entry.value.Scalar() == "false")) {
            folder.republish = entry.value.Scalar() == "true";
          } else {
            problem(entry.line, entry.path + " must be true or false");
          }
        } else {
          unknown_key(key, entry, item.path);
        }
      });
      if (folder.path.empty()) {
        problem(item.line, item.path + ".path is required");
        continue;
      }
      folders.push_back(std::move(folder));
    }
  }

  void read_tags(const Entry& entry, std::vector<std::string>& tags) {
    if (entry.value.IsNull()) return;
    if (!entry.value.IsSequence()) {
      problem(entry.line, entry.path + " must be a list of strings");
      return;
    }
    tags.clear();
    for (std::size_t i = 0; i < entry.value.size(); ++i) {
      const YAML::Node item = entry.value[i];
      const std::string path = entry.path + "[" + std::to_string(i) + "]";
      if (!item.IsScalar()) {
        problem(line_of(item) ? line_of(item) : entry.line, path + " must be a string");
        continue;
      }
      if (!is_tag(item.Scalar())) {
        problem(line_of(item),
                path + " '" + printable(item.Scalar()) + "' must match ^[A-Za-z0-9_.-]+$");
        continue;
      }
      if (std::find(tags.begin(), tags.end(), item.Scalar()) == tags.end()) {
        tags.push_back(item.Scalar());
      }
    }
  }

  void read_commands(const Entry& section, std::map<std::string, CommandTemplate>& commands) {
    if (!expect_map(section)) return;
    for_each_entry(section.value, section.path, [&](const std::string& name, const Entry& entry) {
      if (!is_command_name(name)) {
        problem(entry.key_line,
                "command name '" + printable(name) + "' must match ^[A-Za-z0-9_-]+$");
      }
      CommandTemplate tmpl;
      tmpl.name = name;
      read_command(entry, tmpl);
      commands[name] = std::move(tmpl);
    });
  }

  void read_command(const Entry& command, CommandTemplate& tmpl) {
    if (command.value.IsNull()) {
      problem(command.line, command.path + ".argv is required");
      return;
    }
    if (!expect_map(command)) return;
    // Words are checked after the whole command is read: params may follow argv.
    std::vector<std::pair<std::string, int>> words;
    bool has_argv = false;
    for_each_entry(command.value, command.path, [&](const std::string& key, const Entry& entry) {
      if (key == "argv") {
        has_argv = true;
        read_argv(entry, tmpl, words);
      } else if (key == "params") {
        read_params(entry, tmpl);
      } else if (key == "env") {
        read_env(entry, tmpl);
      } else {
        unknown_key(key, entry, command.path);
      }
    });
    if (!has_argv) problem(command.key_line, command.path + ".argv is required");
    for (const auto& [word, line] : words) {
      auto checked = check_argv_word(tmpl, word);
      if (!checked) problem(line, checked.error().reason);
    }
  }

  void read_argv(const Entry& entry, CommandTemplate& tmpl,
                 std::vector<std::pair<std::string, int>>& words) {
    if (!entry.value.IsSequence()) {
      problem(entry.line, entry.path + " must be a list of strings");
      return;
    }
    if (entry.value.size() == 0) {
      problem(entry.line, entry.path + " must not be empty");
      return;
    }
    for (std::size_t i = 0; i < entry.value.size(); ++i) {
      const YAML::Node item = entry.value[i];
      const std::string path = entry.path + "[" + std::to_string(i) + "]";
      const int line = line_of(item) != 0 && !item.IsNull() ? line_of(item) : entry.line;
      if (!item.IsScalar()) {
        problem(line, path + " must be a string");
        continue;
      }
      const std::string& word = item.Scalar();
      if (i == 0 && word.empty()) {
        problem(line, path + " (the program) must not be empty");
        continue;
      }
      if (word.find('\0') != std::string::npos) {
        problem(line, path + " must not contain a nul byte");
        continue;
      }
      tmpl.argv.push_back(word);
      words.emplace_back(word, line);
    }
  }

  void read_params(const Entry& section, CommandTemplate& tmpl) {
    if (!expect_map(section)) return;
    for_each_entry(section.value, section.path, [&](const std::string& name, const Entry& entry) {
      if (!is_identifier(name)) {
        problem(entry.key_line, "param name '" + printable(name) + "' in command '" + tmpl.name +
                                    "' must match ^[A-Za-z_][A-Za-z0-9_]*$");
        return;
      }
      if (is_builtin(name)) {
        problem(entry.key_line, "param '" + name + "' in command '" + tmpl.name +
                                    "' shadows the built-in placeholder {" + name + "}");
        return;
      }
      ParamSpec spec;
      read_param_spec(entry, name, spec);
      // Declared even when its spec has problems, so argv words that use it are
      // not reported a second time as unknown placeholders.
      tmpl.params[name] = std::move(spec);
    });
  }

  void read_param_spec(const Entry& param, const std::string& name, ParamSpec& spec) {
    if (!expect_map(param)) return;
    int default_line = 0;
    bool pattern_ok = true;
    for_each_entry(param.value, param.path, [&](const std::string& key, const Entry& entry) {
      if (key == "pattern") {
        auto pattern = read_string(entry);
        if (!pattern) {
          pattern_ok = false;
          return;
        }
        auto compiled = check_pattern(*pattern);
        if (!compiled) {
          problem(entry.line, entry.path + ": " + compiled.error().reason);
          pattern_ok = false;
          return;
        }
        spec.pattern = *pattern;
      } else if (key == "default") {
        if (!entry.value.IsScalar()) {
          problem(entry.line, entry.path + " must be a string");
          return;
        }
        spec.default_value = entry.value.Scalar();
        default_line = entry.line;
      } else {
        unknown_key(key, entry, param.path);
      }
    });
    // A default that its own pattern refuses would fail every job that relies on it.
    if (spec.default_value && pattern_ok) {
      auto checked = check_param_value(name, spec, *spec.default_value);
      if (!checked) problem(default_line, param.path + ".default: " + checked.error().reason);
    }
  }

  void read_env(const Entry& section, CommandTemplate& tmpl) {
    if (!expect_map(section)) return;
    for_each_entry(section.value, section.path, [&](const std::string& name, const Entry& entry) {
      if (!is_identifier(name)) {
        problem(entry.key_line, "env name '" + printable(name) + "' in command '" + tmpl.name +
                                    "' must match ^[A-Za-z_][A-Za-z0-9_]*$");
        return;
      }
      if (auto value = read_string(entry)) tmpl.env[name] = *value;
    });
  }
};

std::string format_problems(std::vector<Problem> problems, const std::string& origin) {
  std::stable_sort(problems.begin(), problems.end(),
                   [](const Problem& a, const Problem& b) { return a.line < b.line; });
  std::string out;
  for (std::size_t i = 0; i < problems.size() && i < kMaxProblems; ++i) {
    if (i > 0) out += '\n';
    out += origin;
    if (problems[i].line > 0) out += ":" + std::to_string(problems[i].line);
    out += ": " + problems[i].message;
  }
  if (problems.size() > kMaxProblems) {
    out += "\n" + origin + ": " + std::to_string(problems.size() - kMaxProblems) +
           " more problems not shown";
  }
  return out;
}

// The last line up to `before` (1-based) that opens more '[' / '{' than it closes,
// outside quotes and comments.
std::optional<int> unclosed_bracket_line(const std::string& text, int before) {
  std::optional<int> found;
  int line = 1;
  size_t start = 0;
  while (start <= text.size() && line <= before) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    int depth = 0;
    char quote = 0;
    for (size_t i = start; i < end; ++i) {
      char c = text[i];
      if (quote) {
        if (c == quote) quote = 0;
      } else if (c == '"' || c == '\'') {
        quote = c;
      } else if (c == '#') {
        break;
      } else if (c == '[' || c == '{') {
        ++depth;
      } else if (c == ']' || c == '}') {
        --depth;
      }
    }
    if (depth > 0) found = line;
    start = end + 1;
    ++line;
  }
  return found;
}

}  // namespace

Result<Config> load_config_text(const std::string& text, const std::string& origin) {
  Reader reader;
  Config config;
  try {
    std::vector<YAML::Node> documents = YAML::LoadAll(text);
    if (documents.size() > 1) {
      reader.problem(line_of(documents[1]), "more than one yaml document");
    } else if (documents.size() == 1) {
      reader.read_root(documents[0], config);
    }
  } catch (const YAML::Exception& e) {
    // ParserException and the rest: each carries the mark of the offending text.
    int line = e.mark.is_null() ? 0 : e.mark.line + 1;
    // An unclosed '[' or '{' is noticed where the parser gives up, often lines later:
    // point at the bracket instead.
    if (line > 0 && e.msg.find("flow not found") != std::string::npos) {
      line = unclosed_bracket_line(text, line).value_or(line);
    }
    reader.problem(line, "yaml syntax error: " + e.msg);
  } catch (const std::exception& e) {
    reader.problem(0, std::string("cannot read config: ") + e.what());
  }
  if (!reader.problems().empty()) {
    return fail(ErrorCode::kInvalidArgument, format_problems(std::move(reader.problems()), origin));
  }
  return config;
}

Result<HttpListen> parse_http_listen(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return fail(ErrorCode::kInvalidArgument,
                "'" + printable(text) + "' is not HOST:PORT or off: " + std::string(why));
  };
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) return bad("no port");
  std::string_view host = text.substr(0, colon);
  const std::string_view port = text.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string_view::npos) {
    return bad("an IPv6 address goes in brackets, [::1]:7680");
  }
  if (host.empty()) return bad("no host (127.0.0.1 for this host only, 0.0.0.0 for every address)");
  int value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc{} || end != port.data() + port.size() || value < 0 ||
      value > 65535) {
    return bad("the port is 0 to 65535");
  }
  return HttpListen{std::string(host), value};
}

Result<Config> load_config_file(const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) {
    const int err = errno;
    return fail(err == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIo,
                "cannot read config " + path + ": " + std::strerror(err));
  }
  std::string text;
  char buffer[1 << 16];
  std::size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof buffer, file)) > 0) text.append(buffer, n);
  // A directory opens fine and fails on the first read (EISDIR).
  const bool failed = std::ferror(file) != 0;
  const int err = errno;
  std::fclose(file);
  if (failed) {
    return fail(ErrorCode::kIo, "cannot read config " + path + ": " + std::strerror(err));
  }
  return load_config_text(text, path);
}

}  // namespace farmhand::common
