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
#include <string_view>
#include <vector>

#include "common/result.h"

namespace farmhand::common {

// One declared template parameter: a value must fully match `pattern` (an RE2
// regex: no backreferences or lookaround, so a match takes linear time).
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
  // Bad-host avoidance: after this many failed attempts of one job on one
  // worker, that worker takes no more of the job's tasks. 0: never.
  uint32_t block_after_failures = 3;
  uint64_t max_client_message_bytes = 1 << 20;
  uint64_t max_worker_message_bytes = 4 << 20;
  std::string sqlite_synchronous = "full";  // full | normal | off
  // Finished jobs (and publish events whose jobs are all gone) are forgotten,
  // in memory and in the store, this long after they finished; 0 keeps them.
  std::chrono::milliseconds keep_finished{30LL * 24 * 3600 * 1000};
  // Media jobs' inputs, outputs and OCIO configs, and published paths, must lie
  // under one of these (absolute, normalised); empty: anywhere.
  std::vector<std::string> allowed_roots;
  // Where `farmhand admin backup` may write (absolute, normalised; empty: none).
  // With neither this nor allowed_roots, a backup may go anywhere outside the state dir.
  std::string backup_dir;
  // CurveZMQ on the worker endpoint: the broker's secret key file and the
  // directory of authorised worker public keys (both, or neither: the key pair
  // the broker makes in STATE_DIR/keys and STATE_DIR/keys/workers).
  std::string worker_curve_secret_key_file;
  std::string worker_authorized_keys_dir;
  // false: the worker endpoint is plain, and any process that reaches it can
  // pose as a worker (benchmarks and tests of the protocol itself).
  bool worker_curve = true;
  // The same for the client endpoint: CLI, Python client and publish hooks.
  std::string client_curve_secret_key_file;
  std::string client_authorized_keys_dir;
  // Lets an endpoint without CurveZMQ listen beyond loopback (refused otherwise).
  bool allow_insecure = false;
  // A second live worker under a name in use: refused (false), or admitted
  // under a suffixed name, "render01-2" (true).
  bool rename_duplicate_workers = false;
};

// The HTTP front: monitor, JSON API and /metrics (daemon/http/http_front.h).
struct HttpConfig {
  // host:port, or "off". The default is best effort: if the port is taken the
  // broker logs it and serves without HTTP; a listen address set in the
  // config or by --http must bind, or farmhandd does not start.
  std::string listen = "127.0.0.1:7680";
  bool listen_given = false;  // set by the file or --http
  std::string tls_cert;       // PEM; both or neither
  std::string tls_key;
  std::string read = "open";  // open | token: whether reads need a token too
  // One "USER TOKEN" per line ('#' comments): the bearer tokens actions need.
  std::string tokens_file;
  // Lets HTTP listen beyond loopback without TLS or without tokens.
  bool allow_insecure = false;
  // The monitor's static files; empty: PREFIX/share/farmhand/web beside the
  // installed binary, else the source tree's web/ (a build tree).
  std::string web_dir;
};

struct LocalWorkersConfig {
  int count = -1;  // -1: number of cores
  uint32_t slots = 1;
  uint32_t interactive_slots = 1;  // reserved for the interactive lane (publish-driven media)
  std::vector<std::string> tags;
  std::string worker_binary;  // empty: farmhand-worker beside farmhandd
  // What each local worker offers tasks (--cores, --memory); 0: detected.
  uint32_t cores = 0;
  uint64_t memory = 0;  // bytes
};

// Which published items a rule applies to. Every given condition must hold.
struct RuleMatch {
  // Globs (fnmatch) of which one must match: against the file name when the glob
  // has no '/', else against the whole published path ('*' then crosses '/').
  std::vector<std::string> path;
  std::vector<std::string> kind;            // sequence | image | movie | file; empty: any
  std::vector<std::string> ext;             // extensions without the dot, any case; empty: any
  std::map<std::string, std::string> meta;  // key -> glob the value must match
  // Farm events instead of publishes (kHookEvents names): the rule makes its
  // jobs when one of these happens to a job whose labels match `label`. A rule
  // matches either publishes (path, kind, ext, meta) or farm events, not both.
  std::vector<std::string> event;
  std::map<std::string, std::string> label;  // label key -> glob the value must match
};

// One job a rule makes for each item it matches.
struct RuleJob {
  std::string name;     // unique in its rule; what `after` refers to
  std::string kind;     // thumbnail | convert | transcode | command | noop
  std::string command;  // kind=command: a template under `commands`
  // Media options (input, output, size, frame, resize, format, codec, fps, crf,
  // missing, ocio, max_width) or, for commands, the template's params. Values
  // are path templates (common/path_template.h).
  std::map<std::string, std::string> params;
  std::string frames;  // command and noop jobs: a path template; default {frames}
  uint32_t chunk = 0;  // 0: the kind's default
  int32_t priority = 0;
  std::string pool;
  std::string lane;  // interactive | batch; "" = interactive for media kinds, batch otherwise
  std::vector<std::string> after;  // jobs of the same rule that must succeed first
  // A job of the same rule whose tasks this one's wait for frame by frame (a
  // movie streamed behind its proxies); empty: none.
  std::string after_frames{};
  uint32_t max_attempts = 0;
  uint32_t timeout_s = 0;
  int line = 0;                      // of the job's name
  std::map<std::string, int> lines;  // of each option (and "command"), for later checks
};

struct Rule {
  std::string name;
  RuleMatch match;
  std::vector<RuleJob> jobs;  // in dependency order (every job after its `after`)
  int line = 0;
};

// A folder whose new sequences become publish events once they have settled.
struct WatchFolder {
  std::string path;  // absolute
  bool recursive = true;
  std::chrono::milliseconds settle{10'000};  // no new or growing file for this long
  std::vector<std::string> include;          // file name globs; empty: every file
  std::map<std::string, std::string> meta;   // added to each event (source: watch is implied)
  bool republish = false;  // a published sequence that changes later is published again
  int line = 0;
};

// Farm events a webhook or an event rule may name.
inline constexpr std::string_view kHookEvents[] = {
    "job.succeeded", "job.failed",  "job.cancelled", "task.failed",
    "task.dead",     "worker.lost", "worker.joined", "publish.processed"};

// A webhook: each farm event it names becomes a signed JSON POST to `url`,
// delivered at least once from the store's outbox (daemon/hooks.h).
struct Hook {
  std::string name;  // unique; default: hook-N (its position, from 1)
  std::string url;   // http:// or https://
  std::vector<std::string> events;
  std::string secret;       // HMAC-SHA256 key: `secret`, or the contents of `secret_file`
  std::string secret_file;  // where the secret came from, if from a file
  // https: PEM file of the CA certificates the receiver's certificate is
  // checked against (a studio's own CA); empty: the system's (ca-certificates).
  std::string ca_file;
  std::chrono::milliseconds timeout{10'000};                        // one POST
  std::chrono::milliseconds backoff_base{1'000};                    // first retry after a failure
  std::chrono::milliseconds backoff_max{300'000};                   // retries double up to this
  std::chrono::milliseconds give_up_after{3LL * 24 * 3600 * 1000};  // since the event
  int line = 0;
};

// Open Job Description templates (`farmhand submit openjd`): commands of the
// submitter's choosing, so off until enabled here.
struct OpenJdConfig {
  bool enabled = false;
  // The programs an action may start: a name looked up in the session's PATH
  // ("bash") or an absolute path, compared with the action's command as
  // resolved. any_executable ("executables: any"): whatever the template
  // says, allowed only with a CurveZMQ-secured client port.
  std::vector<std::string> executables;
  bool any_executable = false;
  // Sessions never run as root unless this is set (the worker refuses them).
  bool allow_root = false;
};

// One `path_mapping:` rule: a path as templates written elsewhere give it
// (source_path, in that OS's form) and where it is on this farm.
struct PathMappingConfig {
  std::string source_path_format = "POSIX";  // POSIX | WINDOWS
  std::string source_path;
  std::string destination_path;
  int line = 0;
};

struct Config {
  BrokerConfig broker;
  HttpConfig http;
  LocalWorkersConfig local_workers;
  std::map<std::string, CommandTemplate> commands;
  std::vector<Rule> rules;
  std::vector<WatchFolder> watch;
  // Named farm-wide limits (licences, ...): name -> how many running tasks may
  // hold one at once. `farmhand limit set` changes them at runtime.
  std::map<std::string, uint32_t> limits;
  // Fair share between projects: project -> weight (1 to 10000). Empty: none.
  std::map<std::string, uint32_t> shares;
  std::vector<Hook> hooks;
  OpenJdConfig openjd;
  std::vector<PathMappingConfig> path_mapping;
  std::string log_level = "info";
};

// A limit's name: 1 to 64 of [A-Za-z0-9_.-] (it shows in tables, logs and
// status lines as it is).
inline bool valid_limit_name(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-' || c == '.';
    if (!ok) return false;
  }
  return true;
}

inline constexpr std::string_view kJobKinds[] = {"thumbnail",    "convert", "transcode",
                                                 "contactsheet", "command", "noop"};

// All problems found, one per entry, each "line N: ..." where a line is known.
struct ConfigErrors {
  std::vector<std::string> messages;
};

// Loads and validates a config file. On failure the Error's reason holds every
// problem, one per line ("FILE:LINE: message").
// http.listen / --http: "off", or HOST:PORT ([v6]:PORT), port 0-65535 (0: any
// free port, the log says which).
struct HttpListen {
  std::string host;
  int port = 0;
};

[[nodiscard]] Result<HttpListen> parse_http_listen(std::string_view text);

[[nodiscard]] inline Result<void> check_http_listen(std::string_view text) {
  if (text == "off") return {};
  auto parsed = parse_http_listen(text);
  if (!parsed) return tl::make_unexpected(parsed.error());
  return {};
}

[[nodiscard]] Result<Config> load_config_file(const std::string& path);

// Same, from YAML text; `origin` names it in messages.
[[nodiscard]] Result<Config> load_config_text(const std::string& text,
                                              const std::string& origin = "<config>");

}  // namespace farmhand::common
