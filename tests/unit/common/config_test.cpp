#include "common/config.h"

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

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

}  // namespace
}  // namespace farmhand::common
