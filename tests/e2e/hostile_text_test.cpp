// End-to-end tests of hostile user text on the real binaries (issue 10): a param
// value built to make a backtracking regex engine run for ever, and names,
// labels, meta, worker names and task logs carrying escape sequences and
// control characters. The broker keeps answering, and nothing a user chose
// reaches a terminal or the broker's log raw, while --json keeps the exact bytes.
// Every wait polls a condition with a deadline; the deadlines bound a hung test
// and are not timing expectations.
#include <algorithm>
#include <chrono>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "tests/support/cluster.h"
#include <gtest/gtest.h>

namespace farmhand::e2e {
namespace {

using namespace std::chrono_literals;

constexpr auto kJobLimit = 120s;

size_t line_count(const std::string& text) {
  return static_cast<size_t>(std::count(text.begin(), text.end(), '\n'));
}

// True when `text` holds a byte a terminal acts on: ESC, CR, BEL or a C1 CSI.
// C0 controls, DEL, a C1 control (U+009B, CSI to some terminals: its UTF-8
// bytes hold 0x9b) and a right-to-left override.
bool has_raw_control(const std::string& text) {
  return text.find_first_of("\x1b\r\a\x7f\x9b") != std::string::npos ||
         text.find("\xe2\x80\xae") != std::string::npos;
}

// ------------------------------------------------------------------ param patterns

// ^(a+)+$ against "aaaa...!" takes a backtracking engine (the standard library's) time
// exponential in the value: the broker checks params on its event loop, so one
// such submit would stop it answering anyone. RE2 answers in linear time.
TEST(HostileTextE2ETest, NestedQuantifierParamIsRefusedAndTheBrokerKeepsAnswering) {
  ClusterOptions options;
  options.local_workers = 0;
  options.commands_yaml =
      "  take:\n"
      "    argv: [/bin/echo, \"{v}\"]\n"
      "    params:\n"
      "      v: { pattern: '^(a+)+$' }\n";
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());

  // The longest value the broker accepts (4096 bytes), so it reaches the pattern;
  // and one far over it, refused for its size before any match.
  for (const std::string& value : {std::string(4095, 'a') + "!", std::string(100'000, 'a') + "!"}) {
    CliResult refused =
        cluster.run_cli({"submit", "command", "take", "--frames", "1", "--param", "v=" + value});
    EXPECT_NE(refused.exit_code, 0) << describe(refused).substr(0, 500);
    EXPECT_EQ(line_count(refused.err), 1u) << describe(refused).substr(0, 500);
    EXPECT_EQ(refused.err.rfind("farmhand: param 'v' value ", 0), 0u)
        << describe(refused).substr(0, 500);
  }

  // Right after, the broker answers: a good submit and its status.
  auto job = cluster.submit({"command", "take", "--frames", "1", "--param", "v=aaaa"});
  ASSERT_TRUE(job) << cluster.last_cli();
  auto status = cluster.status_json(*job);
  ASSERT_TRUE(status) << cluster.last_cli();
  EXPECT_EQ((*status)["job"]["id"], *job);
}

TEST(HostileTextE2ETest, BackreferencePatternIsRefusedByCheckConfigWithItsLine) {
  ClusterOptions options;
  options.local_workers = 0;
  Cluster cluster(options);
  const std::string config = cluster.path("backref.yaml");
  std::ofstream(config) << "commands:\n"
                           "  take:\n"
                           "    argv: [/bin/echo, \"{v}\"]\n"
                           "    params:\n"
                           "      v: { pattern: '^(a+)\\1$' }\n";
  CliResult checked = cluster.run_binary("farmhandd", {"--check-config", config});
  EXPECT_NE(checked.exit_code, 0) << describe(checked);
  EXPECT_EQ(line_count(checked.err), 1u) << describe(checked);
  EXPECT_NE(checked.err.find(config + ":5: commands.take.params.v.pattern: pattern '^(a+)\\1$' "
                                      "is not a valid regex: "),
            std::string::npos)
      << describe(checked);
  EXPECT_NE(checked.err.find("backreferences are not supported"), std::string::npos)
      << describe(checked);
}

// ------------------------------------------------------------------ user text

TEST(HostileTextE2ETest, UserTextIsPrintedEscapedAndJsonKeepsTheExactBytes) {
  // An OSC sequence that retitles the terminal, ended by BEL.
  const std::string worker = "w\x1b]0;owned\a";
  const std::string name = "a\x1b[2Jb\nc";
  const std::string label = "1\r2";
  const std::string c1 =
      "p\xc2\x9b"
      "31mq\x7f\xe2\x80\xae";  // CSI, DEL, RLO
  const std::string meta = "x\x1b[31my";
  ClusterOptions options;
  options.local_workers = 0;
  options.workers = {{worker, 1}};
  // printf turns \033 and \r into the raw bytes in the task's log.
  options.commands_yaml =
      "  paint:\n"
      "    argv: [/usr/bin/printf, 'line1\\n\\033[2Jline2\\r\\n']\n";
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());

  auto job = cluster.submit({"command", "paint", "--frames", "1", "--name", name, "--label",
                             "take=" + label, "--label", "c1=" + c1});
  ASSERT_TRUE(job) << cluster.last_cli();
  auto final_status = cluster.wait_for_final_state(*job, kJobLimit);
  ASSERT_TRUE(final_status) << cluster.last_cli();
  EXPECT_EQ((*final_status)["job"]["state"], "succeeded") << *final_status;
  const std::string published = cluster.path("plate.txt");
  std::ofstream(published) << "plate\n";
  auto event = cluster.cli_json({"publish", published, "--meta", "note=" + meta});
  ASSERT_TRUE(event) << cluster.last_cli();

  // Text for people: escaped, one line per record, nothing a terminal acts on.
  CliResult status = cluster.run_cli({"status", std::to_string(*job)});
  EXPECT_EQ(status.exit_code, 0) << describe(status);
  EXPECT_NE(status.out.find("\"a\\x1b[2Jb\\x0ac\""), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("take=1\\x0d2"), std::string::npos) << status.out;
  EXPECT_FALSE(has_raw_control(status.out)) << status.out;

  CliResult jobs = cluster.run_cli({"ls"});
  EXPECT_EQ(jobs.exit_code, 0) << describe(jobs);
  EXPECT_NE(jobs.out.find("a\\x1b[2Jb\\x0ac"), std::string::npos) << jobs.out;
  EXPECT_FALSE(has_raw_control(jobs.out)) << jobs.out;

  CliResult events = cluster.run_cli({"events"});
  EXPECT_EQ(events.exit_code, 0) << describe(events);
  EXPECT_NE(events.out.find("note=x\\x1b[31my"), std::string::npos) << events.out;
  EXPECT_FALSE(has_raw_control(events.out)) << events.out;

  CliResult workers = cluster.run_cli({"workers"});
  EXPECT_EQ(workers.exit_code, 0) << describe(workers);
  EXPECT_NE(workers.out.find("w\\x1b]0;owned\\x07"), std::string::npos) << workers.out;
  EXPECT_FALSE(has_raw_control(workers.out)) << workers.out;

  // A log keeps its lines; the rest is escaped, and so is the worker in its header.
  CliResult logs = cluster.run_cli({"logs", std::to_string(*job)});
  EXPECT_EQ(logs.exit_code, 0) << describe(logs);
  EXPECT_NE(logs.out.find(" on w\\x1b]0;owned\\x07: ok ==\n"), std::string::npos) << logs.out;
  EXPECT_NE(logs.out.find("line1\n\\x1b[2Jline2\\x0d\n"), std::string::npos) << logs.out;
  EXPECT_FALSE(has_raw_control(logs.out)) << logs.out;

  // The broker logged the worker's name when it joined: escaped too.
  const std::string broker_log = read_file(cluster.broker_log_path());
  EXPECT_NE(broker_log.find("worker joined worker=w\\x1b]0;owned\\x07"), std::string::npos)
      << broker_log;
  EXPECT_FALSE(has_raw_control(broker_log)) << broker_log;

  // JSON escapes them itself, and parsing gives back the exact bytes.
  CliResult raw_json = cluster.run_cli({"status", std::to_string(*job), "--json"});
  EXPECT_EQ(raw_json.exit_code, 0) << describe(raw_json);
  EXPECT_FALSE(has_raw_control(raw_json.out)) << raw_json.out;
  auto json_status = cluster.status_json(*job);
  ASSERT_TRUE(json_status) << cluster.last_cli();
  EXPECT_EQ((*json_status)["job"]["name"], name);
  EXPECT_EQ((*json_status)["job"]["labels"]["take"], label);
  EXPECT_EQ((*json_status)["job"]["labels"]["c1"], c1);
  auto listed = cluster.cli_json({"ls"});
  ASSERT_TRUE(listed) << cluster.last_cli();
  EXPECT_NE(listed->dump().find(Json(name).dump()), std::string::npos) << *listed;
  auto json_events = cluster.cli_json({"events"});
  ASSERT_TRUE(json_events && json_events->size() == 1u) << cluster.last_cli();
  EXPECT_EQ((*json_events)[0]["meta"]["note"], meta);
  auto json_workers = cluster.cli_json({"workers"});
  ASSERT_TRUE(json_workers) << cluster.last_cli();
  EXPECT_NE(json_workers->dump().find(Json(worker).dump()), std::string::npos) << *json_workers;
  auto json_logs = cluster.cli_json({"logs", std::to_string(*job)});
  ASSERT_TRUE(json_logs && json_logs->size() == 1u) << cluster.last_cli();
  const std::string text = (*json_logs)[0]["text"];
  EXPECT_NE(text.find("\nline1\n\x1b[2Jline2\r\n"), std::string::npos) << text;
  EXPECT_EQ((*json_logs)[0]["worker"], worker);
}

}  // namespace
}  // namespace farmhand::e2e
