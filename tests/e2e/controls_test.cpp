// Wrangler controls on the real binaries (issue 11): limits and per-job caps.
// The tasks themselves record how many of them run at once, in a file shared
// under a lock, so the test checks what the licence server would see.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <future>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "tests/e2e/shared_commands.h"
#include "tests/support/cluster.h"
#include <gtest/gtest.h>
#include <pwd.h>
#include <unistd.h>

namespace farmhand::e2e {
namespace {

using namespace std::chrono_literals;

// Runs until the file $0 exists, then appends to $1.
const char* kGatedCommand =
    "  gated:\n"
    "    argv: [/bin/sh, -c, 'while [ ! -e \"$0\" ]; do sleep 0.05; done; echo ran >> \"$1\"', "
    "\"{release}\", \"{out}\"]\n"
    "    params:\n"
    "      release: {pattern: '^/tmp/[A-Za-z0-9_./-]+$'}\n"
    "      out: {pattern: '^/tmp/[A-Za-z0-9_./-]+$'}\n";

// Records on which worker it ran ($0/ran) and fails on local-1: a host with a
// broken plugin.
const char* kPickyCommand =
    "  picky:\n"
    "    argv: [/bin/sh, -c, 'echo \"$FARMHAND_WORKER\" >> \"$0/ran\"; "
    "test \"$FARMHAND_WORKER\" != local-1', \"{dir}\"]\n"
    "    params:\n"
    "      dir: {pattern: '^/tmp/[A-Za-z0-9_./-]+$'}\n";

// Appends its job id to $0.
const char* kRecordCommand =
    "  record:\n"
    "    argv: [/bin/sh, -c, 'echo \"$FARMHAND_JOB_ID\" >> \"$0\"', \"{out}\"]\n"
    "    params:\n"
    "      out: {pattern: '^/tmp/[A-Za-z0-9_./-]+$'}\n";

// Submits a `counted` job with `extra` options, waits for it to succeed and
// returns the most tasks that ran at once (-1 if it did not succeed with
// `tasks` tasks run).
int most_at_once(Cluster& cluster, const std::string& frames, size_t tasks,
                 const std::vector<std::string>& extra) {
  std::vector<std::string> args = {"command", "counted", "--frames",
                                   frames,    "--param", "dir=" + cluster.dir()};
  args.insert(args.end(), extra.begin(), extra.end());
  auto job = cluster.submit(args);
  EXPECT_TRUE(job) << cluster.last_cli();
  if (!job) return -1;
  auto final_status = cluster.wait_for_final_state(*job, 120s);
  EXPECT_TRUE(final_status) << cluster.last_cli();
  if (!final_status) return -1;
  EXPECT_EQ((*final_status)["job"]["state"], "succeeded") << *final_status;
  const std::vector<int> seen = seen_counts(cluster.path("seen"));
  EXPECT_EQ(seen.size(), tasks);
  if (seen.size() != tasks) return -1;
  return *std::max_element(seen.begin(), seen.end());
}

ClusterOptions six_slots(const std::string& limits_yaml) {
  ClusterOptions options;
  options.local_workers = 3;
  options.local_slots = 2;
  options.commands_yaml = kCountingCommand;
  options.extra_yaml = limits_yaml;
  return options;
}

TEST(ControlsE2ETest, ALicenceLimitOfTwoNeverHasMoreThanTwoTasksRunning) {
  Cluster cluster(six_slots("limits:\n  lic: 2\n"));
  ASSERT_TRUE(cluster.start());
  const int most = most_at_once(cluster, "1-6", 6, {"--limit", "lic"});
  ASSERT_GT(most, 0);
  EXPECT_LE(most, 2) << "more tasks held the licence at once than the limit allows";

  auto limits = cluster.cli_json({"limits"});
  ASSERT_TRUE(limits && limits->size() == 1u) << cluster.last_cli();
  EXPECT_EQ((*limits)[0]["name"], "lic");
  EXPECT_EQ((*limits)[0]["capacity"], 2);
  EXPECT_EQ((*limits)[0]["in_use"], 0) << "a finished task kept its token";
}

TEST(ControlsE2ETest, AJobWaitsForItsLimitSaysSoAndRunsWhenItIsRaisedEvenAfterARestart) {
  Cluster cluster(six_slots("limits:\n  lic: 2\n"));
  ASSERT_TRUE(cluster.start());
  CliResult closed = cluster.run_cli({"limit", "set", "lic", "0"});
  ASSERT_EQ(closed.exit_code, 0) << describe(closed);
  auto job = cluster.submit({"command", "counted", "--frames", "1-3", "--limit", "lic", "--param",
                             "dir=" + cluster.dir()});
  ASSERT_TRUE(job) << cluster.last_cli();
  auto status = cluster.status_json(*job);
  ASSERT_TRUE(status) << cluster.last_cli();
  EXPECT_EQ((*status)["waiting_reason"], "waiting for limit 'lic': 0 of 0 in use") << *status;

  // The change was stored: a restarted broker keeps it over the config's 2.
  cluster.kill_broker(SIGKILL);
  ASSERT_TRUE(cluster.restart_broker());
  auto limits = cluster.cli_json({"limits"});
  ASSERT_TRUE(limits && limits->size() == 1u) << cluster.last_cli();
  EXPECT_EQ((*limits)[0]["capacity"], 0) << *limits;
  EXPECT_EQ((*limits)[0]["waiting_jobs"], 1) << *limits;

  CliResult opened = cluster.run_cli({"limit", "set", "lic", "1"});
  ASSERT_EQ(opened.exit_code, 0) << describe(opened);
  auto final_status = cluster.wait_for_final_state(*job, 120s);
  ASSERT_TRUE(final_status) << cluster.last_cli();
  EXPECT_EQ((*final_status)["job"]["state"], "succeeded") << *final_status;
  const std::vector<int> seen = seen_counts(cluster.path("seen"));
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(*std::max_element(seen.begin(), seen.end()), 1);
}

TEST(ControlsE2ETest, MaxRunningCapsAJobAndAnUnknownLimitIsRefused) {
  Cluster cluster(six_slots(""));
  ASSERT_TRUE(cluster.start());
  CliResult unknown = cluster.run_cli({"submit", "command", "counted", "--frames", "1", "--limit",
                                       "nuke", "--param", "dir=" + cluster.dir()});
  EXPECT_EQ(unknown.exit_code, 1) << describe(unknown);
  EXPECT_NE(unknown.err.find("unknown limit 'nuke': no limits are configured"), std::string::npos)
      << describe(unknown);

  const int most = most_at_once(cluster, "1-6", 6, {"--max-running", "2"});
  ASSERT_GT(most, 0);
  EXPECT_LE(most, 2) << "over the job's max running";
}

TEST(ControlsE2ETest, DrainWaitsForTheRunningTaskReportsIdleAndOutlivesARestart) {
  ClusterOptions options;
  options.local_workers = 1;
  options.local_slots = 2;
  options.commands_yaml = kGatedCommand;
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());
  const std::string release = cluster.path("release");
  const std::string out = cluster.path("out.txt");
  auto job = cluster.submit({"command", "gated", "--frames", "1", "--param", "release=" + release,
                             "--param", "out=" + out});
  ASSERT_TRUE(job) << cluster.last_cli();
  ASSERT_TRUE(cluster.wait_for_running(*job, 1, 30s)) << cluster.last_cli();

  // `drain --wait` returns only once the running task is done.
  auto drained = std::async(std::launch::async, [&] {
    return cluster.run_cli({"worker", "drain", "local-1", "--reason", "disk swap", "--wait"});
  });
  ASSERT_TRUE(wait_until(
      [&] {
        return read_file(cluster.broker_log_path()).find("worker draining worker=local-1") !=
               std::string::npos;
      },
      30s));
  EXPECT_EQ(drained.wait_for(0s), std::future_status::timeout)
      << "drain --wait returned while a task still ran";
  std::ofstream(release) << "go\n";
  CliResult result = drained.get();
  EXPECT_EQ(result.exit_code, 0) << describe(result);
  EXPECT_NE(result.out.find("worker local-1 is drained"), std::string::npos) << describe(result);
  EXPECT_EQ(read_file(out), "ran\n");

  // A draining worker takes nothing new, and stays drained across a restart.
  auto queued = cluster.submit({"command", "gated", "--frames", "1", "--param",
                                "release=" + release, "--param", "out=" + out});
  ASSERT_TRUE(queued) << cluster.last_cli();
  cluster.kill_broker(SIGKILL);
  ASSERT_TRUE(cluster.restart_broker());
  auto workers = cluster.cli_json({"workers"});
  ASSERT_TRUE(workers && workers->size() == 1u) << cluster.last_cli();
  EXPECT_EQ((*workers)[0]["control"], "draining") << *workers;
  EXPECT_EQ((*workers)[0]["control_reason"], "disk swap") << *workers;
  auto status = cluster.status_json(*queued);
  ASSERT_TRUE(status) << cluster.last_cli();
  EXPECT_EQ((*status)["job"]["counts"]["queued"], 1) << *status;

  CliResult enabled = cluster.run_cli({"worker", "enable", "local-1"});
  ASSERT_EQ(enabled.exit_code, 0) << describe(enabled);
  auto final_status = cluster.wait_for_final_state(*queued, 60s);
  ASSERT_TRUE(final_status) << cluster.last_cli();
  EXPECT_EQ((*final_status)["job"]["state"], "succeeded") << *final_status;

  CliResult unknown = cluster.run_cli({"worker", "disable", "no-such-host"});
  EXPECT_EQ(unknown.exit_code, 1) << describe(unknown);
  EXPECT_NE(unknown.err.find("unknown worker 'no-such-host'"), std::string::npos)
      << describe(unknown);
}

TEST(ControlsE2ETest, AWorkerThatFailsEveryTaskOfAJobIsBlockedAndAnotherFinishesIt) {
  ClusterOptions options;
  options.local_workers = 2;
  options.commands_yaml = kPickyCommand;
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());
  // Only local-1 serves at first: it fails three attempts and is blocked.
  CliResult disabled = cluster.run_cli({"worker", "disable", "local-2"});
  ASSERT_EQ(disabled.exit_code, 0) << describe(disabled);
  auto job = cluster.submit({"command", "picky", "--frames", "1-4", "--max-attempts", "10",
                             "--param", "dir=" + cluster.dir()});
  ASSERT_TRUE(job) << cluster.last_cli();
  std::optional<Json> status;
  ASSERT_TRUE(wait_until(
      [&] {
        status = cluster.status_json(*job);
        return status && (*status)["blocked"].size() == 1u;
      },
      60s))
      << cluster.last_cli();
  EXPECT_EQ((*status)["blocked"][0]["worker"], "local-1") << *status;
  EXPECT_EQ((*status)["blocked"][0]["failures"], 3) << *status;
  EXPECT_EQ((*status)["waiting_reason"],
            "every live worker that serves the job is blocked after failing it (local-1); "
            "`farmhand job unblock " +
                std::to_string(*job) + "` lets them try again")
      << *status;
  EXPECT_NE(read_file(cluster.broker_log_path())
                .find("worker blocked for job job=" + std::to_string(*job) + " worker=local-1"),
            std::string::npos);

  // The block is stored: a restarted broker keeps it.
  cluster.kill_broker(SIGKILL);
  ASSERT_TRUE(cluster.restart_broker());
  status = cluster.status_json(*job);
  ASSERT_TRUE(status) << cluster.last_cli();
  ASSERT_EQ((*status)["blocked"].size(), 1u) << *status;

  CliResult enabled = cluster.run_cli({"worker", "enable", "local-2"});
  ASSERT_EQ(enabled.exit_code, 0) << describe(enabled);
  auto final_status = cluster.wait_for_final_state(*job, 120s);
  ASSERT_TRUE(final_status) << cluster.last_cli();
  EXPECT_EQ((*final_status)["job"]["state"], "succeeded") << *final_status;
  const std::vector<std::string> ran = lines_of(cluster.path("ran"));
  EXPECT_EQ(std::count(ran.begin(), ran.end(), "local-1"), 3) << "local-1 ran tasks once blocked";
  EXPECT_EQ(std::count(ran.begin(), ran.end(), "local-2"), 4);

  CliResult unblocked = cluster.run_cli({"job", "unblock", std::to_string(*job)});
  EXPECT_EQ(unblocked.exit_code, 0) << describe(unblocked);
  EXPECT_NE(unblocked.out.find("1 worker unblocked"), std::string::npos) << describe(unblocked);
  status = cluster.status_json(*job);
  ASSERT_TRUE(status) << cluster.last_cli();
  EXPECT_EQ((*status)["blocked"].size(), 0u) << *status;
  CliResult again = cluster.run_cli({"job", "unblock", std::to_string(*job), "local-1"});
  EXPECT_EQ(again.exit_code, 1) << describe(again);
  EXPECT_NE(again.err.find("worker 'local-1' is not blocked for job"), std::string::npos)
      << describe(again);
}

TEST(ControlsE2ETest, JobSetPriorityReordersWhatRunsNext) {
  ClusterOptions options;
  options.local_workers = 1;
  options.commands_yaml = std::string(kGatedCommand) + kRecordCommand;
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());
  const std::string release = cluster.path("release");
  const std::string order = cluster.path("order.txt");
  // The only slot is busy while two jobs queue, the first submitted first.
  auto busy = cluster.submit({"command", "gated", "--frames", "1", "--param", "release=" + release,
                              "--param", "out=" + cluster.path("gated.txt")});
  ASSERT_TRUE(busy) << cluster.last_cli();
  ASSERT_TRUE(cluster.wait_for_running(*busy, 1, 30s)) << cluster.last_cli();
  auto first = cluster.submit({"command", "record", "--frames", "1-2", "--param", "out=" + order});
  auto second = cluster.submit({"command", "record", "--frames", "1-2", "--param", "out=" + order});
  ASSERT_TRUE(first && second) << cluster.last_cli();

  CliResult set = cluster.run_cli({"job", "set", std::to_string(*second), "--priority", "10"});
  ASSERT_EQ(set.exit_code, 0) << describe(set);
  auto status = cluster.status_json(*second);
  ASSERT_TRUE(status) << cluster.last_cli();
  EXPECT_EQ((*status)["job"]["priority"], 10) << *status;

  std::ofstream(release) << "go\n";
  for (auto id : {*busy, *first, *second}) {
    auto final_status = cluster.wait_for_final_state(id, 60s);
    ASSERT_TRUE(final_status) << cluster.last_cli();
    EXPECT_EQ((*final_status)["job"]["state"], "succeeded") << *final_status;
  }
  const std::string a = std::to_string(*first);
  const std::string b = std::to_string(*second);
  // Progress counts frames: two tasks of one frame each.
  status = cluster.status_json(*second);
  ASSERT_TRUE(status) << cluster.last_cli();
  EXPECT_EQ((*status)["job"]["frames_total"], 2) << *status;
  EXPECT_EQ((*status)["job"]["frames_succeeded"], 2) << *status;
  EXPECT_EQ(lines_of(order), (std::vector<std::string>{b, b, a, a}))
      << "the job raised to priority 10 did not run first";

  // The change is stored with the job, and a finished job is not changed.
  cluster.kill_broker(SIGKILL);
  ASSERT_TRUE(cluster.restart_broker());
  status = cluster.status_json(*second);
  ASSERT_TRUE(status) << cluster.last_cli();
  EXPECT_EQ((*status)["job"]["priority"], 10) << *status;
  CliResult late = cluster.run_cli({"job", "set", b, "--priority", "1"});
  EXPECT_EQ(late.exit_code, 1) << describe(late);
  EXPECT_NE(late.err.find("job " + b + " already finished (succeeded)"), std::string::npos)
      << describe(late);
  CliResult nothing = cluster.run_cli({"job", "set", a});
  EXPECT_EQ(nothing.exit_code, 2) << describe(nothing);
  EXPECT_NE(nothing.err.find("nothing to change"), std::string::npos) << describe(nothing);
}

TEST(ControlsE2ETest, JobsRecordWhoSubmittedThemLsFiltersAndAReusedKeyNeedsTheSameSpec) {
  ClusterOptions options;
  options.local_workers = 1;
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());
  const std::vector<std::string> spec = {
      "noop",       "--tasks", "2",          "--project", "showA",        "--label",
      "shot=sh010", "--name",  "comp sh010", "--key",     "sh010-comp-v3"};
  auto first = cluster.submit(spec);
  ASSERT_TRUE(first) << cluster.last_cli();
  auto again = cluster.submit(spec);
  ASSERT_TRUE(again) << cluster.last_cli();
  EXPECT_EQ(*again, *first) << "the same key and spec is the same job";
  auto other = cluster.submit({"noop", "--tasks", "1", "--name", "lighting sh020"});
  ASSERT_TRUE(other) << cluster.last_cli();

  // The key names one job: another spec under it is refused, also after a restart.
  std::vector<std::string> changed = spec;
  changed[2] = "3";
  changed.insert(changed.begin(), "submit");
  const std::string refusal = "idempotency key 'sh010-comp-v3' was used for job " +
                              std::to_string(*first) + " with another spec";
  CliResult reused = cluster.run_cli(changed);
  EXPECT_EQ(reused.exit_code, 1) << describe(reused);
  EXPECT_NE(reused.err.find(refusal), std::string::npos) << describe(reused);
  cluster.kill_broker(SIGKILL);
  ASSERT_TRUE(cluster.restart_broker());
  reused = cluster.run_cli(changed);
  EXPECT_EQ(reused.exit_code, 1) << describe(reused);
  EXPECT_NE(reused.err.find(refusal), std::string::npos) << describe(reused);

  auto status = cluster.status_json(*first);
  ASSERT_TRUE(status) << cluster.last_cli();
  const passwd* pw = getpwuid(geteuid());
  ASSERT_NE(pw, nullptr);
  char host[256] = {};
  ASSERT_EQ(gethostname(host, sizeof host - 1), 0);
  EXPECT_EQ((*status)["job"]["submitted_by"], pw->pw_name) << *status;
  EXPECT_EQ((*status)["job"]["submitted_from"], host) << *status;
  EXPECT_EQ((*status)["job"]["project"], "showA") << *status;

  auto ids = [&](const std::vector<std::string>& filters) {
    std::vector<std::string> args = {"ls"};
    args.insert(args.end(), filters.begin(), filters.end());
    std::vector<uint64_t> out;
    auto jobs = cluster.cli_json(args);
    EXPECT_TRUE(jobs) << cluster.last_cli();
    if (jobs) {
      for (const auto& job : *jobs) out.push_back(job["id"].get<uint64_t>());
    }
    return out;
  };
  EXPECT_EQ(ids({"--project", "showA"}), std::vector<uint64_t>{*first});
  EXPECT_EQ(ids({"--label", "shot=sh010"}), std::vector<uint64_t>{*first});
  EXPECT_EQ(ids({"--name", "LIGHTING"}), std::vector<uint64_t>{*other});
  EXPECT_EQ(ids({"--mine", "--since", "1h"}), (std::vector<uint64_t>{*first, *other}));
  EXPECT_EQ(ids({"--user", "nobody-else"}), std::vector<uint64_t>{});
  EXPECT_EQ(ids({"--limit", "1"}), std::vector<uint64_t>{*other}) << "a page holds the newest";
  EXPECT_EQ(ids({"--limit", "1", "--offset", "1"}), std::vector<uint64_t>{*first});
  CliResult paged = cluster.run_cli({"ls", "--limit", "1"});
  EXPECT_NE(paged.err.find("1 more job match; --offset 1 shows the next page"), std::string::npos)
      << describe(paged);
  CliResult bad_age = cluster.run_cli({"ls", "--since", "2x"});
  EXPECT_EQ(bad_age.exit_code, 2) << describe(bad_age);
}

}  // namespace
}  // namespace farmhand::e2e
