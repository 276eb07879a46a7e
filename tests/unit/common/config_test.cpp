#include "common/config.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

namespace farmhand::common {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;

// The reason of a failed load, or a marker that makes the assertion message useful.
std::string problems_of(const std::string& text) {
  auto config = load_config_text(text);
  if (config) return "<loaded without problems>";
  EXPECT_EQ(config.error().code, ErrorCode::kInvalidArgument);
  return config.error().reason;
}

Config loaded(const std::string& text) {
  auto config = load_config_text(text);
  EXPECT_TRUE(config.has_value()) << config.error().reason;
  return config ? *config : Config{};
}

// A scratch directory removed when the test ends.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "fh-config-XXXXXX").string();
    path_ = ::mkdtemp(pattern.data());
  }

  ~TempDir() { std::filesystem::remove_all(path_); }

  const std::filesystem::path& path() const { return path_; }

  std::string write(const std::string& name, const std::string& text) const {
    const auto file = path_ / name;
    std::ofstream(file) << text;
    return file.string();
  }

 private:
  std::filesystem::path path_;
};

std::filesystem::path source_dir() {
  if (const char* dir = std::getenv("FARMHAND_SOURCE_DIR"); dir != nullptr && *dir != '\0') {
    return dir;
  }
  // Run by hand outside ctest: tests/unit/common/config_test.cpp -> the repository root.
  return std::filesystem::path(__FILE__).parent_path().parent_path().parent_path().parent_path();
}

TEST(ConfigTest, EmptyTextGivesTheEmbeddedDefaults) {
  const Config config = loaded("");
  EXPECT_EQ(config.log_level, "info");
  EXPECT_EQ(config.broker.client_endpoint, "tcp://127.0.0.1:7600");
  EXPECT_EQ(config.broker.worker_endpoint, "tcp://127.0.0.1:7601");
  EXPECT_EQ(config.broker.state_dir, "");
  EXPECT_EQ(config.broker.lease_ttl, milliseconds(30'000));
  EXPECT_EQ(config.local_workers.count, -1);
  EXPECT_EQ(config.local_workers.slots, 1u);
  EXPECT_TRUE(config.commands.empty());
}

TEST(ConfigTest, TextWithOnlyCommentsGivesTheEmbeddedDefaults) {
  const Config config = loaded("# nothing here\n\n# still nothing\n");
  EXPECT_EQ(config.broker.heartbeat_liveness, 3u);
  EXPECT_TRUE(config.commands.empty());
}

TEST(ConfigTest, EmptySectionsKeepTheirDefaults) {
  const Config config = loaded("broker:\nlocal_workers:\ncommands:\n");
  EXPECT_EQ(config.broker.client_endpoint, "tcp://127.0.0.1:7600");
  EXPECT_EQ(config.local_workers.count, -1);
  EXPECT_TRUE(config.commands.empty());
}

TEST(ConfigTest, EveryKeyIsReadIntoItsField) {
  const Config config = loaded(R"(log_level: debug
broker:
  client_endpoint: ipc:///tmp/fh/client
  worker_endpoint: inproc://workers
  state_dir: /var/lib/farmhand
  lease_ttl_s: 45
  heartbeat_interval_s: 2
  heartbeat_liveness: 5
  retry_backoff_base_s: 1
  retry_backoff_max_s: 60
  default_max_attempts: 7
  max_client_message_bytes: 2048
  max_worker_message_bytes: 8192
  sqlite_synchronous: normal
local_workers:
  count: 4
  slots: 2
  tags: [gpu, nuke-13]
  worker_binary: /usr/bin/farmhand-worker
)");
  EXPECT_EQ(config.log_level, "debug");
  EXPECT_EQ(config.broker.client_endpoint, "ipc:///tmp/fh/client");
  EXPECT_EQ(config.broker.worker_endpoint, "inproc://workers");
  EXPECT_EQ(config.broker.state_dir, "/var/lib/farmhand");
  EXPECT_EQ(config.broker.lease_ttl, milliseconds(45'000));
  EXPECT_EQ(config.broker.heartbeat_interval, milliseconds(2'000));
  EXPECT_EQ(config.broker.heartbeat_liveness, 5u);
  EXPECT_EQ(config.broker.retry_backoff_base, milliseconds(1'000));
  EXPECT_EQ(config.broker.retry_backoff_max, milliseconds(60'000));
  EXPECT_EQ(config.broker.default_max_attempts, 7u);
  EXPECT_EQ(config.broker.max_client_message_bytes, 2048u);
  EXPECT_EQ(config.broker.max_worker_message_bytes, 8192u);
  EXPECT_EQ(config.broker.sqlite_synchronous, "normal");
  EXPECT_EQ(config.local_workers.count, 4);
  EXPECT_EQ(config.local_workers.slots, 2u);
  EXPECT_EQ(config.local_workers.tags, (std::vector<std::string>{"gpu", "nuke-13"}));
  EXPECT_EQ(config.local_workers.worker_binary, "/usr/bin/farmhand-worker");
}

TEST(ConfigTest, FractionalSecondsBecomeMilliseconds) {
  const Config config = loaded("broker:\n  lease_ttl_s: 0.5\n  heartbeat_interval_s: 0.05\n");
  EXPECT_EQ(config.broker.lease_ttl, milliseconds(500));
  EXPECT_EQ(config.broker.heartbeat_interval, milliseconds(50));
}

TEST(ConfigTest, NonNumericDurationIsReportedWithItsLine) {
  EXPECT_EQ(problems_of("log_level: info\nbroker:\n  heartbeat_liveness: 3\n  lease_ttl_s: abc\n"),
            "<config>:4: broker.lease_ttl_s must be a number");
}

TEST(ConfigTest, NonPositiveDurationsAreRejected) {
  EXPECT_EQ(problems_of("broker:\n  lease_ttl_s: 0\n"),
            "<config>:2: broker.lease_ttl_s must be positive");
  EXPECT_EQ(problems_of("broker:\n  retry_backoff_base_s: -2\n"),
            "<config>:2: broker.retry_backoff_base_s must be positive");
  EXPECT_THAT(problems_of("broker:\n  heartbeat_interval_s: 0.0001\n"),
              HasSubstr("broker.heartbeat_interval_s must be at least 0.001"));
}

TEST(ConfigTest, NotANumberAndInfinityAreNotDurations) {
  EXPECT_THAT(problems_of("broker:\n  lease_ttl_s: nan\n"), HasSubstr("must be a number"));
  EXPECT_THAT(problems_of("broker:\n  lease_ttl_s: inf\n"), HasSubstr("must be a number"));
  EXPECT_THAT(problems_of("broker:\n  lease_ttl_s: 1e12\n"), HasSubstr("must be at most"));
}

TEST(ConfigTest, IntegerFieldsRefuseFractionsAndText) {
  EXPECT_EQ(problems_of("broker:\n  heartbeat_liveness: 2.5\n"),
            "<config>:2: broker.heartbeat_liveness must be an integer");
  EXPECT_EQ(problems_of("local_workers:\n  slots: many\n"),
            "<config>:2: local_workers.slots must be an integer");
  EXPECT_EQ(problems_of("broker:\n  default_max_attempts: [1]\n"),
            "<config>:2: broker.default_max_attempts must be an integer");
}

TEST(ConfigTest, IntegersOutsideTheirRangeAreRejected) {
  EXPECT_EQ(problems_of("broker:\n  heartbeat_liveness: 0\n"),
            "<config>:2: broker.heartbeat_liveness must be at least 1");
  EXPECT_EQ(problems_of("local_workers:\n  slots: 0\n"),
            "<config>:2: local_workers.slots must be at least 1");
  EXPECT_EQ(problems_of("local_workers:\n  count: -2\n"),
            "<config>:2: local_workers.count must be at least -1");
  EXPECT_EQ(problems_of("broker:\n  default_max_attempts: 4294967296\n"),
            "<config>:2: broker.default_max_attempts must be at most 4294967295");
  EXPECT_EQ(problems_of("broker:\n  max_client_message_bytes: 99999999999999999999999\n"),
            "<config>:2: broker.max_client_message_bytes is out of range");
}

TEST(ConfigTest, LocalWorkerCountOfMinusOneAndZeroAreAccepted) {
  EXPECT_EQ(loaded("local_workers:\n  count: -1\n").local_workers.count, -1);
  EXPECT_EQ(loaded("local_workers:\n  count: 0\n").local_workers.count, 0);
}

TEST(ConfigTest, EndpointWithoutAKnownSchemeIsRejected) {
  EXPECT_EQ(problems_of("broker:\n  client_endpoint: http://127.0.0.1:7600\n"),
            "<config>:2: broker.client_endpoint 'http://127.0.0.1:7600' must start with tcp://, "
            "ipc:// or inproc://");
  EXPECT_EQ(problems_of("broker:\n  worker_endpoint: tcp://\n"),
            "<config>:2: broker.worker_endpoint 'tcp://' has no address");
}

TEST(ConfigTest, ClientAndWorkerEndpointsMustDiffer) {
  EXPECT_EQ(problems_of("broker:\n  worker_endpoint: tcp://127.0.0.1:7600\n"),
            "<config>:2: broker.client_endpoint and broker.worker_endpoint must differ");
}

TEST(ConfigTest, RetryBackoffMaxBelowBaseIsRejected) {
  EXPECT_EQ(problems_of("broker:\n  retry_backoff_base_s: 10\n  retry_backoff_max_s: 5\n"),
            "<config>:3: broker.retry_backoff_max_s must not be less than "
            "broker.retry_backoff_base_s");
}

TEST(ConfigTest, SqliteSynchronousMustBeAKnownMode) {
  EXPECT_EQ(
      problems_of("broker:\n  sqlite_synchronous: extra\n"),
      "<config>:2: broker.sqlite_synchronous must be one of full, normal or off, not 'extra'");
  EXPECT_EQ(loaded("broker:\n  sqlite_synchronous: NORMAL\n").broker.sqlite_synchronous, "normal");
}

TEST(ConfigTest, KeepFinishedDaysDefaultsToThirtyAndZeroKeepsForever) {
  EXPECT_EQ(loaded("broker: {}\n").broker.keep_finished, milliseconds(30LL * 86'400'000));
  EXPECT_EQ(loaded("broker:\n  keep_finished_days: 0\n").broker.keep_finished, milliseconds(0));
  EXPECT_EQ(loaded("broker:\n  keep_finished_days: 0.5\n").broker.keep_finished,
            milliseconds(43'200'000));
  EXPECT_EQ(problems_of("broker:\n  keep_finished_days: -1\n"),
            "<config>:2: broker.keep_finished_days must be 0 (keep forever) to 36500");
  EXPECT_EQ(problems_of("broker:\n  keep_finished_days: soon\n").substr(0, 12), "<config>:2: ");
}

TEST(ConfigTest, AllowedRootsAreNormalisedAbsolutePaths) {
  EXPECT_TRUE(loaded("broker: {}\n").broker.allowed_roots.empty());
  EXPECT_EQ(
      loaded("broker:\n  allowed_roots: [/mnt/projects/, /mnt/./renders]\n").broker.allowed_roots,
      (std::vector<std::string>{"/mnt/projects", "/mnt/renders"}));
  EXPECT_EQ(loaded("broker:\n  allowed_roots: /mnt/projects\n").broker.allowed_roots,
            (std::vector<std::string>{"/mnt/projects"}));
  EXPECT_EQ(problems_of("broker:\n  allowed_roots: [/mnt/projects, projects]\n"),
            "<config>:2: broker.allowed_roots must hold absolute paths, not 'projects'");
}

TEST(ConfigTest, BackupDirIsANormalisedAbsolutePathAndUnsetByDefault) {
  EXPECT_EQ(loaded("broker: {}\n").broker.backup_dir, "");
  EXPECT_EQ(loaded("broker:\n  backup_dir: /srv/./backups/\n").broker.backup_dir, "/srv/backups");
  EXPECT_EQ(loaded("broker:\n  backup_dir: \"\"\n").broker.backup_dir, "");
  EXPECT_EQ(problems_of("broker:\n  backup_dir: backups\n"),
            "<config>:2: broker.backup_dir must be an absolute path, not 'backups'");
}

TEST(ConfigTest, WorkerCurveKeyFileAndAuthorisedKeysDirGoTogether) {
  auto both = loaded(
      "broker:\n  worker_curve_secret_key_file: /etc/fh/broker.key\n"
      "  worker_authorized_keys_dir: /etc/fh/workers\n");
  EXPECT_EQ(both.broker.worker_curve_secret_key_file, "/etc/fh/broker.key");
  EXPECT_EQ(both.broker.worker_authorized_keys_dir, "/etc/fh/workers");
  EXPECT_EQ(problems_of("broker:\n  worker_curve_secret_key_file: /etc/fh/broker.key\n"),
            "<config>:2: broker.worker_curve_secret_key_file and "
            "broker.worker_authorized_keys_dir go together: set both for CurveZMQ on the worker "
            "endpoint, or neither");
}

TEST(ConfigTest, WorkerCurveIsOnAndInsecureListeningOffByDefault) {
  const Config defaults = loaded("broker: {}\n");
  EXPECT_TRUE(defaults.broker.worker_curve);
  EXPECT_FALSE(defaults.broker.allow_insecure);
  const Config opted_out = loaded("broker:\n  worker_curve: false\n  allow_insecure: true\n");
  EXPECT_FALSE(opted_out.broker.worker_curve);
  EXPECT_TRUE(opted_out.broker.allow_insecure);
  EXPECT_FALSE(defaults.broker.rename_duplicate_workers);
  EXPECT_TRUE(
      loaded("broker:\n  rename_duplicate_workers: true\n").broker.rename_duplicate_workers);
  EXPECT_EQ(problems_of("broker:\n  allow_insecure: yes please\n"),
            "<config>:2: broker.allow_insecure must be true or false");
  EXPECT_EQ(problems_of("broker:\n  worker_curve: false\n"
                        "  worker_curve_secret_key_file: /etc/fh/broker.key\n"
                        "  worker_authorized_keys_dir: /etc/fh/workers\n"),
            "<config>:4: broker.worker_curve is false but broker.worker_curve_secret_key_file is "
            "set: choose one");
}

TEST(ConfigTest, ClientCurveKeyFileAndAuthorisedKeysDirGoTogether) {
  auto both = loaded(
      "broker:\n  client_curve_secret_key_file: /etc/fh/c.key\n"
      "  client_authorized_keys_dir: /etc/fh/clients\n");
  EXPECT_EQ(both.broker.client_curve_secret_key_file, "/etc/fh/c.key");
  EXPECT_EQ(both.broker.client_authorized_keys_dir, "/etc/fh/clients");
  EXPECT_EQ(problems_of("broker:\n  client_authorized_keys_dir: /etc/fh/clients\n"),
            "<config>:2: broker.client_curve_secret_key_file and "
            "broker.client_authorized_keys_dir go together: set both for CurveZMQ on the client "
            "endpoint, or neither");
}

TEST(ConfigTest, LogLevelMustBeAKnownLevel) {
  EXPECT_EQ(problems_of("log_level: loud\n"),
            "<config>:1: log_level must be one of trace, debug, info, warn, error or off, not "
            "'loud'");
}

TEST(ConfigTest, UnknownKeysAreReportedWithTheirLine) {
  EXPECT_EQ(problems_of("local_workers:\n  count: 1\n  slotz: 2\n"),
            "<config>:3: unknown key 'slotz' in local_workers");
  EXPECT_EQ(problems_of("brokr:\n  lease_ttl_s: 1\n"),
            "<config>:1: unknown key 'brokr' at top level");
}

TEST(ConfigTest, RepeatedKeyIsRejectedRatherThanSilentlyPicked) {
  EXPECT_EQ(problems_of("broker:\n  lease_ttl_s: 1\n  lease_ttl_s: 2\n"),
            "<config>:3: duplicate key 'lease_ttl_s' in broker");
}

TEST(ConfigTest, EveryProblemIsReportedInLineOrder) {
  const std::string reason = problems_of(R"(log_level: loud
broker:
  lease_ttl_s: abc
  heartbeat_liveness: 0
  bogus: 1
local_workers:
  slots: 0
commands:
  render:
    argv: [/bin/echo, "{scene}"]
)");
  EXPECT_EQ(reason,
            "<config>:1: log_level must be one of trace, debug, info, warn, error or off, not "
            "'loud'\n"
            "<config>:3: broker.lease_ttl_s must be a number\n"
            "<config>:4: broker.heartbeat_liveness must be at least 1\n"
            "<config>:5: unknown key 'bogus' in broker\n"
            "<config>:7: local_workers.slots must be at least 1\n"
            "<config>:10: unknown placeholder {scene} in command 'render'");
}

TEST(ConfigTest, YamlSyntaxErrorNamesTheOriginAndLine) {
  auto config = load_config_text("broker:\n  tags: [a, b\nlocal_workers: {}\n", "farm.yaml");
  ASSERT_FALSE(config.has_value());
  EXPECT_EQ(config.error().code, ErrorCode::kInvalidArgument);
  EXPECT_THAT(config.error().reason, ::testing::StartsWith("farm.yaml:"));
  EXPECT_THAT(config.error().reason, HasSubstr(": yaml syntax error: "));
  EXPECT_EQ(problems_of("a: b: c\n"), "<config>:1: yaml syntax error: illegal map value");
}

TEST(ConfigTest, ConfigThatIsNotAMappingIsRejected) {
  EXPECT_EQ(problems_of("- broker\n- commands\n"), "<config>:1: config must be a mapping");
  EXPECT_EQ(problems_of("broker: 5\n"), "<config>:1: broker must be a mapping");
}

TEST(ConfigTest, MoreThanOneYamlDocumentIsRejected) {
  EXPECT_EQ(problems_of("log_level: info\n---\nlog_level: debug\n"),
            "<config>:3: more than one yaml document");
}

TEST(ConfigTest, TagsMustBeAListOfPlainWords) {
  EXPECT_EQ(problems_of("local_workers:\n  tags: gpu\n"),
            "<config>:2: local_workers.tags must be a list of strings");
  EXPECT_EQ(problems_of("local_workers:\n  tags:\n    - gpu\n    - a,b\n"),
            "<config>:4: local_workers.tags[1] 'a,b' must match ^[A-Za-z0-9_.-]+$");
}

TEST(ConfigTest, CommandTemplateIsReadWithParamsAndEnv) {
  const Config config = loaded(R"(commands:
  render:
    argv: [/usr/bin/hython, render.py, --frames, "{first}-{last}", --scene, "{scene}"]
    params:
      scene: { pattern: '^[A-Za-z0-9_./-]+$' }
      quality: { pattern: '^(low|high)$', default: low }
    env: { OCIO: /studio/ocio/config.ocio }
)");
  ASSERT_EQ(config.commands.count("render"), 1u);
  const CommandTemplate& render = config.commands.at("render");
  EXPECT_EQ(render.name, "render");
  EXPECT_EQ(render.argv, (std::vector<std::string>{"/usr/bin/hython", "render.py", "--frames",
                                                   "{first}-{last}", "--scene", "{scene}"}));
  ASSERT_EQ(render.params.size(), 2u);
  EXPECT_EQ(render.params.at("scene").pattern, "^[A-Za-z0-9_./-]+$");
  EXPECT_FALSE(render.params.at("scene").default_value.has_value());
  EXPECT_EQ(render.params.at("quality").default_value, "low");
  EXPECT_EQ(render.env, (std::map<std::string, std::string>{{"OCIO", "/studio/ocio/config.ocio"}}));
}

TEST(ConfigTest, ParamWithoutSpecGetsTheDefaultPattern) {
  const Config config = loaded(
      "commands:\n  c:\n    argv: [/bin/echo, '{x}', '{y}']\n"
      "    params:\n      x:\n      y: {}\n");
  EXPECT_EQ(config.commands.at("c").params.at("x").pattern, ParamSpec{}.pattern);
  EXPECT_EQ(config.commands.at("c").params.at("y").pattern, ParamSpec{}.pattern);
}

TEST(ConfigTest, ParamsMayBeDeclaredAfterTheArgvThatUsesThem) {
  const Config config = loaded("commands:\n  c:\n    params: {x: {}}\n    argv: ['{x}']\n");
  EXPECT_EQ(config.commands.at("c").argv.front(), "{x}");
  const Config later = loaded("commands:\n  c:\n    argv: ['{x}']\n    params: {x: {}}\n");
  EXPECT_EQ(later.commands.at("c").argv.front(), "{x}");
}

TEST(ConfigTest, CommandNameMustBeAPlainWord) {
  EXPECT_EQ(problems_of("commands:\n  bad name:\n    argv: [/bin/true]\n"),
            "<config>:2: command name 'bad name' must match ^[A-Za-z0-9_-]+$");
}

TEST(ConfigTest, CommandNeedsANonEmptyArgvOfStrings) {
  EXPECT_EQ(problems_of("commands:\n  c:\n"), "<config>:2: commands.c.argv is required");
  EXPECT_EQ(problems_of("commands:\n  c:\n    env: {A: b}\n"),
            "<config>:2: commands.c.argv is required");
  EXPECT_EQ(problems_of("commands:\n  c:\n    argv: []\n"),
            "<config>:3: commands.c.argv must not be empty");
  EXPECT_EQ(problems_of("commands:\n  c:\n    argv: /bin/true\n"),
            "<config>:3: commands.c.argv must be a list of strings");
  EXPECT_EQ(problems_of("commands:\n  c:\n    argv:\n      - /bin/echo\n      - [a]\n"),
            "<config>:5: commands.c.argv[1] must be a string");
  EXPECT_EQ(problems_of("commands:\n  c:\n    argv: ['', a]\n"),
            "<config>:3: commands.c.argv[0] (the program) must not be empty");
}

TEST(ConfigTest, UnknownPlaceholderIsReportedAtTheLineOfItsWord) {
  EXPECT_EQ(problems_of("commands:\n  c:\n    argv:\n      - /bin/echo\n      - '{scen}'\n"
                        "    params:\n      scene: {}\n"),
            "<config>:5: unknown placeholder {scen} in command 'c'");
}

TEST(ConfigTest, UnbalancedBraceInArgvIsRejected) {
  EXPECT_THAT(problems_of("commands:\n  c:\n    argv: [/bin/echo, 'a{b']\n"),
              HasSubstr("<config>:3: unclosed '{' in argv word 'a{b' of command 'c'"));
}

TEST(ConfigTest, DoubledBracesInArgvAreLiteralNotPlaceholders) {
  const Config config = loaded("commands:\n  c:\n    argv: [/bin/echo, '{{not_a_param}}']\n");
  EXPECT_EQ(config.commands.at("c").argv.at(1), "{{not_a_param}}");
}

TEST(ConfigTest, ParamPatternThatDoesNotCompileIsRejected) {
  EXPECT_THAT(problems_of("commands:\n  c:\n    argv: ['{x}']\n    params:\n"
                          "      x: { pattern: '(unclosed' }\n"),
              HasSubstr("<config>:5: commands.c.params.x.pattern: pattern '(unclosed' is not a "
                        "valid regex: "));
}

// Patterns are matched in linear time (RE2), so the constructs that need a
// backtracking engine are refused at load, one line each, naming the pattern
// and its line, rather than accepted and left to stall the broker on a submit.
TEST(ConfigTest, ParamPatternWithBackreferenceOrLookaroundIsRejectedAtItsLine) {
  EXPECT_EQ(problems_of("commands:\n  c:\n    argv: ['{x}', '{y}']\n    params:\n"
                        "      x: { pattern: '^(a)\\1$' }\n"
                        "      y: { pattern: '^a(?=b)' }\n"),
            "<config>:5: commands.c.params.x.pattern: pattern '^(a)\\1$' is not a valid regex: "
            "invalid escape sequence: \\1 (backreferences are not supported: patterns are "
            "matched in linear time)\n"
            "<config>:6: commands.c.params.y.pattern: pattern '^a(?=b)' is not a valid regex: "
            "invalid perl operator: (?= (lookahead is not supported: patterns are matched in "
            "linear time)");
}

TEST(ConfigTest, NestedQuantifierPatternIsAcceptedAndItsDefaultChecked) {
  const Config config = loaded(
      "commands:\n  c:\n    argv: ['{x}']\n    params:\n"
      "      x: { pattern: '^(a+)+$', default: aaaa }\n");
  EXPECT_EQ(config.commands.at("c").params.at("x").pattern, "^(a+)+$");
}

TEST(ConfigTest, ParamNameMustBeAnIdentifierAndNotShadowABuiltIn) {
  EXPECT_EQ(
      problems_of("commands:\n  c:\n    argv: [/bin/true]\n    params:\n      bad-name: {}\n"),
      "<config>:5: param name 'bad-name' in command 'c' must match ^[A-Za-z_][A-Za-z0-9_]*$");
  EXPECT_EQ(problems_of("commands:\n  c:\n    argv: [/bin/true]\n    params:\n      frame: {}\n"),
            "<config>:5: param 'frame' in command 'c' shadows the built-in placeholder {frame}");
}

TEST(ConfigTest, ParamDefaultMustMatchItsOwnPattern) {
  EXPECT_EQ(problems_of("commands:\n  c:\n    argv: ['{q}']\n    params:\n"
                        "      q: { pattern: '^(low|high)$', default: medium }\n"),
            "<config>:5: commands.c.params.q.default: param 'q' value 'medium' does not match "
            "^(low|high)$");
}

TEST(ConfigTest, UnknownKeyInsideACommandIsRejected) {
  EXPECT_EQ(problems_of("commands:\n  c:\n    argv: [/bin/true]\n    shell: true\n"),
            "<config>:4: unknown key 'shell' in commands.c");
  EXPECT_EQ(problems_of("commands:\n  c:\n    argv: ['{x}']\n    params:\n"
                        "      x: { regex: 'a' }\n"),
            "<config>:5: unknown key 'regex' in commands.c.params.x");
}

TEST(ConfigTest, EnvNamesMustBeIdentifiers) {
  EXPECT_EQ(problems_of("commands:\n  c:\n    argv: [/bin/true]\n    env:\n      A-B: x\n"),
            "<config>:5: env name 'A-B' in command 'c' must match ^[A-Za-z_][A-Za-z0-9_]*$");
}

TEST(ConfigTest, ReasonStaysOneLinePerProblemWhenKeysHoldNewlines) {
  const std::string reason = problems_of("\"bad\\nkey\": 1\n");
  EXPECT_EQ(reason, "<config>:1: unknown key 'bad\\x0akey' at top level");
}

TEST(ConfigTest, MissingFileIsNotFoundAndNamesThePath) {
  auto config = load_config_file("/nonexistent/farmhand.yaml");
  ASSERT_FALSE(config.has_value());
  EXPECT_EQ(config.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(config.error().reason,
            "cannot read config /nonexistent/farmhand.yaml: No such file or directory");
}

TEST(ConfigTest, DirectoryIsNotReadableAsAConfig) {
  TempDir dir;
  auto config = load_config_file(dir.path().string());
  ASSERT_FALSE(config.has_value());
  EXPECT_EQ(config.error().code, ErrorCode::kIo);
  EXPECT_THAT(config.error().reason, HasSubstr("cannot read config " + dir.path().string()));
}

TEST(ConfigTest, ProblemsInAFileAreNamedByItsPath) {
  TempDir dir;
  const std::string path = dir.write("farmhand.yaml", "broker:\n  lease_ttl_s: abc\n");
  auto config = load_config_file(path);
  ASSERT_FALSE(config.has_value());
  EXPECT_EQ(config.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(config.error().reason, path + ":2: broker.lease_ttl_s must be a number");
}

TEST(ConfigTest, ValidFileLoads) {
  TempDir dir;
  const std::string path = dir.write("farmhand.yaml", "local_workers:\n  count: 2\n");
  auto config = load_config_file(path);
  ASSERT_TRUE(config.has_value()) << config.error().reason;
  EXPECT_EQ(config->local_workers.count, 2);
}

TEST(ConfigTest, ExampleConfigLoadsAndDocumentsTheEmbeddedDefaults) {
  const auto path = source_dir() / "config" / "farmhand.yaml";
  auto config = load_config_file(path.string());
  ASSERT_TRUE(config.has_value()) << config.error().reason;

  // The example claims its values are the defaults: keep the two in step.
  const Config defaults;
  EXPECT_EQ(config->log_level, defaults.log_level);
  const BrokerConfig& broker = config->broker;
  EXPECT_EQ(broker.client_endpoint, defaults.broker.client_endpoint);
  EXPECT_EQ(broker.worker_endpoint, defaults.broker.worker_endpoint);
  EXPECT_EQ(broker.state_dir, defaults.broker.state_dir);
  EXPECT_EQ(broker.lease_ttl, defaults.broker.lease_ttl);
  EXPECT_EQ(broker.heartbeat_interval, defaults.broker.heartbeat_interval);
  EXPECT_EQ(broker.heartbeat_liveness, defaults.broker.heartbeat_liveness);
  EXPECT_EQ(broker.retry_backoff_base, defaults.broker.retry_backoff_base);
  EXPECT_EQ(broker.retry_backoff_max, defaults.broker.retry_backoff_max);
  EXPECT_EQ(broker.default_max_attempts, defaults.broker.default_max_attempts);
  EXPECT_EQ(broker.max_client_message_bytes, defaults.broker.max_client_message_bytes);
  EXPECT_EQ(broker.max_worker_message_bytes, defaults.broker.max_worker_message_bytes);
  EXPECT_EQ(broker.sqlite_synchronous, defaults.broker.sqlite_synchronous);
  EXPECT_EQ(config->local_workers.count, defaults.local_workers.count);
  EXPECT_EQ(config->local_workers.slots, defaults.local_workers.slots);
  EXPECT_EQ(config->local_workers.tags, defaults.local_workers.tags);
  EXPECT_EQ(config->local_workers.worker_binary, defaults.local_workers.worker_binary);

  for (const char* name : {"sleep", "echo_frame", "render", "true", "fail"}) {
    EXPECT_EQ(config->commands.count(name), 1u) << name;
  }
  EXPECT_EQ(config->commands.at("true").argv, (std::vector<std::string>{"/bin/true"}));
  EXPECT_EQ(config->commands.at("fail").argv, (std::vector<std::string>{"/bin/false"}));
  EXPECT_EQ(config->commands.at("echo_frame").argv,
            (std::vector<std::string>{"/bin/echo", "frame", "{frame}"}));
  EXPECT_FALSE(config->commands.at("render").params.at("scene").default_value.has_value());
}

// Rules and watched folders.

// A rule with one job, for error cases that concern only that job. Line 5 is the job's
// name, line 6 its kind, line 7 the first extra line.
std::string one_job_rule(const std::string& job_lines) {
  return "rules:\n"
         "  - name: r\n"
         "    match: {kind: sequence}\n"
         "    jobs:\n"
         "      j:\n" +
         job_lines;
}

size_t index_of(const Rule& rule, const std::string& job) {
  for (size_t i = 0; i < rule.jobs.size(); ++i) {
    if (rule.jobs[i].name == job) return i;
  }
  ADD_FAILURE() << "no job " << job << " in rule " << rule.name;
  return rule.jobs.size();
}

TEST(ConfigRulesTest, FullRulesAndWatchConfigIsReadIntoItsFields) {
  const Config config = loaded(R"(local_workers:
  interactive_slots: 2
rules:
  - name: review
    match:
      path: ["*.exr", "/show/*/comp/*"]
      kind: [sequence, Image]
      ext: [EXR, .dpx]
      meta: {task: comp, shot: "sh0*"}
    jobs:
      movie:
        kind: transcode
        input: "{dir}/review/proxy/{name}.{frame}.jpg"
        output: "{dir}/review/{name}.mov"
        codec: prores
        fps: 25
        crf: 18
        missing: black
        max_width: 1920
        after: [proxies]
      notify:
        kind: command
        command: notify
        params: {shot: "{meta.shot}"}
        frames: "{first}"
        after: [movie, thumbnail]
        lane: batch
        pool: farm
        priority: -5
        max_attempts: 2
        timeout_s: 60
      proxies:
        kind: convert
        output: "{dir}/review/proxy/{name}.{frame}.jpg"
        resize: 50%
        format: jpg
        chunk: 5
      thumbnail:
        kind: thumbnail
        output: "{dir}/review/{name}.thumb.jpg"
        size: 256x0
        frame: middle
        ocio: "{{literal}}"
  - name: archive
    match: {kind: movie}
    jobs:
      nothing:
        kind: noop
watch:
  - path: /show/publish/renders
    settle_s: 2.5
    recursive: false
    include: ["*.exr", "*.dpx"]
    meta: {source: renders}
    republish: true
  - path: /show/other
commands:
  notify:
    argv: [/bin/echo, "{shot}"]
    params:
      shot: {}
)");
  EXPECT_EQ(config.local_workers.interactive_slots, 2u);
  ASSERT_EQ(config.rules.size(), 2u);
  const Rule& review = config.rules[0];
  EXPECT_EQ(review.name, "review");
  EXPECT_EQ(review.line, 4);
  EXPECT_EQ(review.match.path, (std::vector<std::string>{"*.exr", "/show/*/comp/*"}));
  EXPECT_EQ(review.match.kind, (std::vector<std::string>{"sequence", "image"}));
  EXPECT_EQ(review.match.ext, (std::vector<std::string>{"exr", "dpx"}));
  EXPECT_EQ(review.match.meta,
            (std::map<std::string, std::string>{{"task", "comp"}, {"shot", "sh0*"}}));

  ASSERT_EQ(review.jobs.size(), 4u);
  // Every job comes after the jobs it names in `after`.
  for (size_t i = 0; i < review.jobs.size(); ++i) {
    for (const std::string& up : review.jobs[i].after) {
      EXPECT_LT(index_of(review, up), i) << review.jobs[i].name << " after " << up;
    }
  }
  const RuleJob& movie = review.jobs[index_of(review, "movie")];
  EXPECT_EQ(movie.kind, "transcode");
  EXPECT_EQ(movie.line, 11);
  EXPECT_EQ(movie.after, (std::vector<std::string>{"proxies"}));
  EXPECT_EQ(movie.lane, "");
  EXPECT_EQ(movie.params,
            (std::map<std::string, std::string>{{"input", "{dir}/review/proxy/{name}.{frame}.jpg"},
                                                {"output", "{dir}/review/{name}.mov"},
                                                {"codec", "prores"},
                                                {"fps", "25"},
                                                {"crf", "18"},
                                                {"missing", "black"},
                                                {"max_width", "1920"}}));
  const RuleJob& notify = review.jobs[index_of(review, "notify")];
  EXPECT_EQ(notify.kind, "command");
  EXPECT_EQ(notify.command, "notify");
  EXPECT_EQ(notify.params, (std::map<std::string, std::string>{{"shot", "{meta.shot}"}}));
  EXPECT_EQ(notify.frames, "{first}");
  EXPECT_EQ(notify.lane, "batch");
  EXPECT_EQ(notify.pool, "farm");
  EXPECT_EQ(notify.priority, -5);
  EXPECT_EQ(notify.max_attempts, 2u);
  EXPECT_EQ(notify.timeout_s, 60u);
  EXPECT_EQ(notify.after, (std::vector<std::string>{"movie", "thumbnail"}));
  const RuleJob& proxies = review.jobs[index_of(review, "proxies")];
  EXPECT_EQ(proxies.chunk, 5u);
  EXPECT_EQ(proxies.params.at("resize"), "50%");
  const RuleJob& thumbnail = review.jobs[index_of(review, "thumbnail")];
  EXPECT_EQ(thumbnail.params.at("size"), "256x0");
  EXPECT_EQ(thumbnail.params.at("ocio"), "{{literal}}");  // expanded only per publish

  const Rule& archive = config.rules[1];
  EXPECT_EQ(archive.name, "archive");
  EXPECT_EQ(archive.match.kind, (std::vector<std::string>{"movie"}));
  ASSERT_EQ(archive.jobs.size(), 1u);
  EXPECT_EQ(archive.jobs[0].kind, "noop");

  ASSERT_EQ(config.watch.size(), 2u);
  const WatchFolder& renders = config.watch[0];
  EXPECT_EQ(renders.path, "/show/publish/renders");
  EXPECT_EQ(renders.settle, milliseconds(2'500));
  EXPECT_FALSE(renders.recursive);
  EXPECT_EQ(renders.include, (std::vector<std::string>{"*.exr", "*.dpx"}));
  EXPECT_EQ(renders.meta, (std::map<std::string, std::string>{{"source", "renders"}}));
  EXPECT_TRUE(renders.republish);
  const WatchFolder& other = config.watch[1];
  EXPECT_EQ(other.path, "/show/other");
  EXPECT_TRUE(other.recursive);
  EXPECT_EQ(other.settle, milliseconds(10'000));
  EXPECT_TRUE(other.include.empty());
  EXPECT_FALSE(other.republish);
}

TEST(ConfigRulesTest, JobsAreOrderedAfterTheirUpstreamsWhateverTheirOrderInTheFile) {
  const Config config = loaded(R"(rules:
  - name: chain
    jobs:
      d: {kind: noop, after: [c]}
      c: {kind: noop, after: [b]}
      b: {kind: noop, after: [a]}
      a: {kind: noop}
)");
  ASSERT_EQ(config.rules.size(), 1u);
  std::vector<std::string> names;
  for (const RuleJob& job : config.rules[0].jobs) names.push_back(job.name);
  EXPECT_EQ(names, (std::vector<std::string>{"a", "b", "c", "d"}));
}

TEST(ConfigRulesTest, DefaultsWithoutRulesOrWatch) {
  const Config config = loaded("rules:\nwatch:\n");
  EXPECT_TRUE(config.rules.empty());
  EXPECT_TRUE(config.watch.empty());
  EXPECT_EQ(config.local_workers.interactive_slots, 1u);
  EXPECT_EQ(loaded("local_workers:\n  interactive_slots: 0\n").local_workers.interactive_slots, 0u);
}

TEST(ConfigRulesTest, UnknownJobKindIsReportedAtItsLine) {
  EXPECT_EQ(problems_of(one_job_rule("        kind: render\n        output: /x.jpg\n")),
            "<config>:6: rules[0].jobs.j.kind must be one of thumbnail, convert, transcode, "
            "contactsheet, command or noop, not 'render'");
}

TEST(ConfigRulesTest, BurnInsAreTextOrAListCheckedAtTheirLineAndSlateIsABool) {
  const Config config =
      loaded(one_job_rule("        kind: transcode\n        output: /x.mov\n        slate: true\n"
                          "        burn_in: [\"{shot}\", \"top-right={timecode}\"]\n"));
  ASSERT_EQ(config.rules.size(), 1u);
  const auto& params = config.rules[0].jobs[0].params;
  EXPECT_EQ(params.at("burn_in"), "{shot}\ntop-right={timecode}");
  EXPECT_EQ(params.at("slate"), "true");
  EXPECT_EQ(problems_of(one_job_rule(
                "        kind: transcode\n        output: /x.mov\n        burn_in: \"{frame\"\n")),
            "<config>:8: rules[0].jobs.j.burn_in: burn-in '{frame': a '{' without its '}'");
  EXPECT_EQ(problems_of(one_job_rule(
                "        kind: thumbnail\n        output: /x.jpg\n        burn_in: x\n")),
            "<config>:8: unknown key 'burn_in' for a thumbnail job in rules[0].jobs.j");
}

TEST(ConfigRulesTest, JobWithoutAKindIsReported) {
  EXPECT_EQ(problems_of(one_job_rule("        output: /x.jpg\n")),
            "<config>:5: rules[0].jobs.j.kind is required");
  EXPECT_EQ(problems_of(one_job_rule("")), "<config>:5: rules[0].jobs.j.kind is required");
}

TEST(ConfigRulesTest, KeyThatTheKindDoesNotTakeIsReportedAtItsLine) {
  EXPECT_EQ(problems_of(one_job_rule("        kind: thumbnail\n"
                                     "        output: /x.jpg\n"
                                     "        codec: h264\n")),
            "<config>:8: unknown key 'codec' for a thumbnail job in rules[0].jobs.j");
  EXPECT_EQ(problems_of(one_job_rule("        kind: convert\n"
                                     "        output: /x.####.jpg\n"
                                     "        command: render\n")),
            "<config>:8: unknown key 'command' for a convert job in rules[0].jobs.j");
  EXPECT_EQ(problems_of(one_job_rule("        kind: noop\n        output: /x.jpg\n")),
            "<config>:7: unknown key 'output' for a noop job in rules[0].jobs.j");
}

TEST(ConfigRulesTest, UnknownTemplatePlaceholderIsReportedAtItsLine) {
  EXPECT_EQ(problems_of(one_job_rule("        kind: thumbnail\n"
                                     "        output: \"{dir}/{nmae}.jpg\"\n")),
            "<config>:7: rules[0].jobs.j: unknown placeholder {nmae} (known: path, dir, name, "
            "ext, frame, first, last, frames, event, meta.KEY)");
  EXPECT_THAT(problems_of(one_job_rule("        kind: noop\n        frames: \"{first\"\n")),
              HasSubstr("<config>:7: rules[0].jobs.j: unclosed '{'"));
}

TEST(ConfigRulesTest, MediaJobWithoutAnOutputIsReported) {
  EXPECT_EQ(problems_of(one_job_rule("        kind: convert\n        resize: 50%\n")),
            "<config>:5: rules[0].jobs.j.output is required for convert jobs");
}

TEST(ConfigRulesTest, CommandJobWithoutACommandIsReported) {
  EXPECT_EQ(problems_of(one_job_rule("        kind: command\n        frames: \"{first}\"\n")),
            "<config>:5: rules[0].jobs.j.command is required for command jobs");
}

TEST(ConfigRulesTest, CommandJobNamingAnUnknownCommandIsReported) {
  EXPECT_EQ(problems_of(one_job_rule("        kind: command\n        command: rendr\n") +
                        "commands:\n  render:\n    argv: [/bin/true]\n"),
            "<config>:7: rule 'r' job 'j' names unknown command 'rendr'");
}

TEST(ConfigRulesTest, CommandDefinedAfterTheRulesIsFound) {
  const Config config = loaded(one_job_rule("        kind: command\n        command: render\n") +
                               "commands:\n  render:\n    argv: [/bin/true]\n");
  ASSERT_EQ(config.rules.size(), 1u);
  EXPECT_EQ(config.rules[0].jobs[0].command, "render");
  EXPECT_EQ(config.rules[0].jobs[0].lane, "");
}

TEST(ConfigRulesTest, AfterNamingAMissingJobIsReported) {
  EXPECT_EQ(problems_of(one_job_rule("        kind: noop\n        after: [proxies]\n")),
            "<config>:5: rule 'r' job 'j' is after 'proxies', which is not a job of this rule");
  EXPECT_EQ(problems_of(one_job_rule("        kind: noop\n        after: j\n")),
            "<config>:5: rule 'r' job 'j' is after itself");
}

TEST(ConfigRulesTest, AfterFramesNamingAMissingJobOrItselfIsReported) {
  EXPECT_EQ(problems_of(one_job_rule("        kind: noop\n        after_frames: render\n")),
            "<config>:5: rule 'r' job 'j' is after 'render', which is not a job of this rule");
  EXPECT_EQ(problems_of(one_job_rule("        kind: noop\n        after_frames: j\n")),
            "<config>:5: rule 'r' job 'j' is after itself");
}

TEST(ConfigRulesTest, AfterCycleIsReported) {
  EXPECT_EQ(problems_of(R"(rules:
  - name: loop
    jobs:
      first: {kind: noop}
      a: {kind: noop, after: [first, c]}
      b: {kind: noop, after: [a]}
      c: {kind: noop, after: [b]}
)"),
            "<config>:5: rule 'loop' jobs depend on each other in a cycle (job 'a')");
}

TEST(ConfigRulesTest, DuplicateRuleNameIsReportedAtTheSecondRule) {
  EXPECT_EQ(problems_of(R"(rules:
  - name: review
    jobs: {a: {kind: noop}}
  - name: review
    jobs: {b: {kind: noop}}
)"),
            "<config>:4: duplicate rule name 'review'");
}

TEST(ConfigRulesTest, DuplicateJobNameIsReported) {
  EXPECT_EQ(problems_of(one_job_rule("        kind: noop\n      j:\n        kind: noop\n")),
            "<config>:7: duplicate key 'j' in rules[0].jobs");
}

TEST(ConfigRulesTest, RulesMustBeAListOfMappingsWithNameAndJobs) {
  EXPECT_EQ(problems_of("rules:\n  review:\n    jobs: {a: {kind: noop}}\n"),
            "<config>:2: rules must be a list of rules (each '- name: ...')");
  EXPECT_EQ(problems_of("rules:\n  - review\n"),
            "<config>:2: rules[0] must be a mapping with name, match and jobs");
  EXPECT_EQ(problems_of("rules:\n  - match: {kind: movie}\n"),
            "<config>:2: rules[0].name is required\n<config>:2: rules[0].jobs is required");
  EXPECT_EQ(problems_of("rules:\n  - name: r\n    jobs: {}\n"),
            "<config>:3: rules[0].jobs must map job names to jobs");
  EXPECT_EQ(problems_of("rules:\n  - name: a b\n    jobs: {a: {kind: noop}}\n"),
            "<config>:2: rule name 'a b' must match ^[A-Za-z0-9_-]+$");
}

TEST(ConfigRulesTest, MatchConditionsAreChecked) {
  EXPECT_EQ(problems_of("rules:\n  - name: r\n    match:\n      kind: [sequence, video]\n"
                        "    jobs: {a: {kind: noop}}\n"),
            "<config>:4: rules[0].match.kind must be sequence, image, movie or file, not 'video'");
  EXPECT_EQ(problems_of("rules:\n  - name: r\n    match:\n      shot: sh010\n"
                        "    jobs: {a: {kind: noop}}\n"),
            "<config>:4: unknown key 'shot' in rules[0].match");
}

TEST(ConfigRulesTest, InteractiveLaneOnACommandJobIsReported) {
  EXPECT_EQ(problems_of(one_job_rule("        kind: command\n        command: render\n"
                                     "        lane: interactive\n") +
                        "commands:\n  render:\n    argv: [/bin/true]\n"),
            "<config>:5: rules[0].jobs.j: only thumbnail, convert and transcode jobs may use the "
            "interactive lane");
  EXPECT_EQ(problems_of(one_job_rule("        kind: noop\n        lane: fast\n")),
            "<config>:7: rules[0].jobs.j.lane must be one of interactive or batch, not 'fast'");
}

TEST(ConfigRulesTest, WatchPathMustBeAbsolute) {
  EXPECT_EQ(problems_of("watch:\n  - path: renders/incoming\n    settle_s: 5\n"),
            "<config>:2: watch[0].path must be an absolute path");
}

TEST(ConfigRulesTest, WatchSettleMustBePositive) {
  EXPECT_EQ(problems_of("watch:\n  - path: /renders\n    settle_s: -1\n"),
            "<config>:3: watch[0].settle_s must be positive");
  EXPECT_EQ(problems_of("watch:\n  - path: /renders\n    settle_s: soon\n"),
            "<config>:3: watch[0].settle_s must be a number");
}

TEST(ConfigRulesTest, WatchEntriesAreChecked) {
  EXPECT_EQ(problems_of("watch: /renders\n"),
            "<config>:1: watch must be a list of folders (each '- path: ...')");
  EXPECT_EQ(problems_of("watch:\n  - settle_s: 5\n"), "<config>:2: watch[0].path is required");
  EXPECT_EQ(problems_of("watch:\n  - path: /renders\n    recursive: maybe\n"),
            "<config>:3: watch[0].recursive must be true or false");
  EXPECT_EQ(problems_of("watch:\n  - path: /renders\n    settle: 5\n"),
            "<config>:3: unknown key 'settle' in watch[0]");
}

TEST(ConfigRulesTest, BadYamlSyntaxInRulesNamesItsLine) {
  // An unquoted template is a YAML flow mapping: the most likely syntax error in a rule.
  EXPECT_EQ(problems_of(R"(rules:
  - name: review
    jobs:
      thumb:
        kind: thumbnail
        output: {dir}/{name}.jpg
        size: 256
)"),
            "<config>:6: yaml syntax error: end of map not found");
  EXPECT_EQ(problems_of(one_job_rule("        kind: thumbnail\n       size: 256\n")),
            "<config>:7: yaml syntax error: end of map not found");
  EXPECT_EQ(problems_of(one_job_rule("        kind: thumbnail\n        size: 256: 3\n")),
            "<config>:7: yaml syntax error: illegal map value");
}

TEST(ConfigRulesTest, EveryProblemOfARuleIsListed) {
  const std::string problems = problems_of(R"(rules:
  - name: review
    jobs:
      thumb:
        kind: thumbnail
        output: "{dir}/{nmae}.jpg"
      movie:
        kind: movie
)");
  EXPECT_THAT(problems, HasSubstr("<config>:6: rules[0].jobs.thumb: unknown placeholder {nmae}"));
  EXPECT_THAT(problems, HasSubstr("<config>:8: rules[0].jobs.movie.kind must be one of"));
}

}  // namespace

TEST(ConfigTest, LimitsAreNamedCountersAndBadOnesAreNamed) {
  Config config = loaded("limits:\n  nuke: 20\n  arnold.v7: 0\n");
  EXPECT_EQ(config.limits, (std::map<std::string, uint32_t>{{"arnold.v7", 0}, {"nuke", 20}}));
  EXPECT_EQ(problems_of("limits:\n  nuke: -1\n"), "<config>:2: limits.nuke must be at least 0");
  EXPECT_EQ(problems_of("limits:\n  'a b': 2\n"),
            "<config>:2: limits.a b: limit name 'a b' must be 1 to 64 letters, digits, '_', '-' "
            "or '.'");
}

}  // namespace farmhand::common

namespace farmhand::common {

TEST(ConfigTest, LocalWorkersMayBeGivenTheirCoresAndMemory) {
  Config config = loaded("local_workers:\n  cores: 8\n  memory: 16G\n");
  EXPECT_EQ(config.local_workers.cores, 8u);
  EXPECT_EQ(config.local_workers.memory, uint64_t{16} << 30);
  EXPECT_EQ(loaded("log_level: info\n").local_workers.memory, 0u);
  EXPECT_NE(problems_of("local_workers:\n  memory: lots\n").find("local_workers.memory"),
            std::string::npos);
}

TEST(ConfigTest, SharesAreWeightsByProjectAndBadOnesAreNamed) {
  Config config = loaded("shares:\n  showA: 3\n  showB: 1\n");
  EXPECT_EQ(config.shares, (std::map<std::string, uint32_t>{{"showA", 3}, {"showB", 1}}));
  EXPECT_TRUE(loaded("log_level: info\n").shares.empty());
  EXPECT_EQ(problems_of("shares:\n  showA: 0\n"), "<config>:2: shares.showA must be at least 1");
  EXPECT_NE(problems_of("shares:\n  showA: many\n").find("shares.showA"), std::string::npos);
  EXPECT_NE(problems_of("shares: 3\n"), "<loaded without problems>");
}

}  // namespace farmhand::common

namespace farmhand::common {
namespace {

TEST(ConfigHooksTest, HooksAreReadWithTheirDefaults) {
  Config config = loaded(
      "hooks:\n"
      "  - url: http://127.0.0.1:9000/farm\n"
      "    events: [job.succeeded, job.failed, publish.processed]\n"
      "    secret: s\n"
      "  - name: tracker\n"
      "    url: https://ci.example.com/farm\n"
      "    events: [task.dead]\n"
      "    secret: t\n"
      "    backoff_base_s: 0.5\n"
      "    give_up_after_s: 60\n");
  ASSERT_EQ(config.hooks.size(), 2u);
  EXPECT_EQ(config.hooks[0].name, "hook-1");
  EXPECT_EQ(config.hooks[0].events.size(), 3u);
  EXPECT_EQ(config.hooks[0].give_up_after, milliseconds(3LL * 24 * 3600 * 1000));
  EXPECT_EQ(config.hooks[1].name, "tracker");
  EXPECT_EQ(config.hooks[1].backoff_base, milliseconds(500));
  EXPECT_EQ(config.hooks[1].give_up_after, milliseconds(60'000));
}

TEST(ConfigHooksTest, EachMistakeIsOneLineNamingIt) {
  const std::string problems = problems_of(
      "hooks:\n"
      "  - url: ftp://example.com/x\n"
      "    events: [job.succeded]\n"
      "    secret: s\n"
      "  - url: http://127.0.0.1:1/\n"
      "    events: [job.failed]\n");
  EXPECT_THAT(problems, HasSubstr("<config>:2: hooks[0].url 'ftp://example.com/x' must start "
                                  "with http:// or https://"));
  EXPECT_THAT(problems, HasSubstr("<config>:3: unknown event 'job.succeded' in hooks[0].events"));
  EXPECT_THAT(problems, HasSubstr("hooks[1].secret or .secret_file is required"));
  EXPECT_EQ(std::count(problems.begin(), problems.end(), '\n'), 2);
}

TEST(ConfigHooksTest, SecretFileIsReadWithoutItsTrailingNewline) {
  TempDir dir;
  const std::string file = dir.write("secret", "from-a-file\n");
  Config config = loaded(
      "hooks:\n  - url: http://h/\n    events: [job.failed]\n"
      "    secret_file: " +
      file + "\n");
  ASSERT_EQ(config.hooks.size(), 1u);
  EXPECT_EQ(config.hooks[0].secret, "from-a-file");
  EXPECT_THAT(problems_of("hooks:\n  - url: http://h/\n    events: [job.failed]\n"
                          "    secret_file: /nonexistent/secret\n"),
              HasSubstr("cannot read hooks[0].secret_file /nonexistent/secret"));
}

TEST(ConfigHooksTest, ACaFileIsForAnHttpsUrlAndMustBeReadable) {
  TempDir dir;
  const std::string ca = dir.write("ca.pem", "-----BEGIN CERTIFICATE-----\n");
  Config config = loaded(
      "hooks:\n  - url: https://h/\n    events: [job.failed]\n    secret: s\n"
      "    ca_file: " +
      ca + "\n");
  ASSERT_EQ(config.hooks.size(), 1u);
  EXPECT_EQ(config.hooks[0].ca_file, ca);
  EXPECT_THAT(problems_of("hooks:\n  - url: http://h/\n    events: [job.failed]\n    secret: s\n"
                          "    ca_file: " +
                          ca + "\n"),
              HasSubstr("hooks[0].ca_file is for an https:// url"));
  EXPECT_THAT(problems_of("hooks:\n  - url: https://h/\n    events: [job.failed]\n    secret: s\n"
                          "    ca_file: /nonexistent/ca.pem\n"),
              HasSubstr("cannot read hooks[0].ca_file /nonexistent/ca.pem"));
}

TEST(ConfigHooksTest, RulesMatchPublishesOrFarmEventsNotBoth) {
  const std::string base =
      "commands:\n  up:\n    argv: [/bin/true]\nrules:\n  - name: r\n    match: ";
  const std::string jobs = "\n    jobs:\n      u: {kind: command, command: up}\n";
  Config config = loaded(base + "{event: [job.succeeded], label: {shot: 'sh*'}}" + jobs);
  ASSERT_EQ(config.rules.size(), 1u);
  EXPECT_EQ(config.rules[0].match.event, std::vector<std::string>{"job.succeeded"});
  EXPECT_EQ(config.rules[0].match.label.at("shot"), "sh*");
  EXPECT_THAT(problems_of(base + "{event: [job.succeeded], ext: [exr]}" + jobs),
              HasSubstr("not both"));
  EXPECT_THAT(problems_of(base + "{event: [job.done]}" + jobs),
              HasSubstr("unknown event 'job.done'"));
}

TEST(ConfigOpenJdTest, OffUntilEnabledWithTheProgramsTemplatesMayRun) {
  Config plain = loaded("broker:\n  lease_ttl_s: 30\n");
  EXPECT_FALSE(plain.openjd.enabled);
  EXPECT_TRUE(plain.path_mapping.empty());

  Config config = loaded(
      "openjd:\n"
      "  enabled: true\n"
      "  executables: [bash, python3, /opt/nuke/Nuke15.1]\n"
      "path_mapping:\n"
      "  - source_path_format: WINDOWS\n"
      "    source_path: 'Z:\\projects'\n"
      "    destination_path: /mnt/projects\n"
      "  - source_path: /Volumes/projects\n"
      "    destination_path: /mnt/projects\n");
  EXPECT_TRUE(config.openjd.enabled);
  EXPECT_FALSE(config.openjd.allow_root);
  EXPECT_FALSE(config.openjd.any_executable);
  EXPECT_EQ(config.openjd.executables,
            (std::vector<std::string>{"bash", "python3", "/opt/nuke/Nuke15.1"}));
  ASSERT_EQ(config.path_mapping.size(), 2u);
  EXPECT_EQ(config.path_mapping[0].source_path_format, "WINDOWS");
  EXPECT_EQ(config.path_mapping[0].source_path, "Z:\\projects");
  EXPECT_EQ(config.path_mapping[1].source_path_format, "POSIX");
  EXPECT_EQ(config.path_mapping[1].destination_path, "/mnt/projects");
}

TEST(ConfigOpenJdTest, EachMistakeIsOneLineNamingIt) {
  const std::string problems = problems_of(
      "openjd:\n"
      "  enabled: yes please\n"
      "  executables: [bin/render, '']\n"
      "  run_as: nobody\n"
      "path_mapping:\n"
      "  - source_path_format: MAC\n"
      "    source_path: /Volumes/p\n"
      "    destination_path: mnt/p\n");
  EXPECT_THAT(problems, HasSubstr("<config>:2: openjd.enabled must be true or false"));
  EXPECT_THAT(problems, HasSubstr("<config>:3: openjd.executables: 'bin/render' is neither a "
                                  "program name nor an absolute path"));
  EXPECT_THAT(problems, HasSubstr("<config>:4: unknown key 'run_as' in openjd"));
  EXPECT_THAT(problems, HasSubstr("<config>:6: path_mapping[0].source_path_format must be POSIX or "
                                  "WINDOWS, not 'MAC'"));
  EXPECT_THAT(problems, HasSubstr("<config>:8: path_mapping[0].destination_path must be an "
                                  "absolute path, not 'mnt/p'"));
}

TEST(ConfigOpenJdTest, EnabledNeedsAnAllowListAndAnyNeedsASecuredClientPort) {
  EXPECT_THAT(problems_of("openjd:\n  enabled: true\n"),
              HasSubstr("openjd: enabled needs executables, the programs templates may run"));
  EXPECT_THAT(problems_of("openjd:\n  enabled: true\n  executables: any\n"),
              HasSubstr("<config>:3: openjd.executables: any runs whatever a template says, so "
                        "it needs a CurveZMQ-secured client port"));
  TempDir dir;
  const std::string keys = dir.path().string() + "/clients";
  std::filesystem::create_directories(keys);
  Config secured = loaded(
      "broker:\n"
      "  client_curve_secret_key_file: " +
      dir.path().string() +
      "/broker.key\n"
      "  client_authorized_keys_dir: " +
      keys +
      "\n"
      "openjd:\n  enabled: true\n  executables: any\n  allow_root: true\n");
  EXPECT_TRUE(secured.openjd.any_executable);
  EXPECT_TRUE(secured.openjd.allow_root);
}

}  // namespace
}  // namespace farmhand::common
