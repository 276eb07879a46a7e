// Task-level actions on the real binaries (issue 11): `farmhand kill`, `skip`
// and `requeue`. The tasks record their attempts in files, so the test sees
// what ran, not only what the broker says.
#include <chrono>
#include <fstream>
#include <string>
#include <vector>

#include "tests/e2e/shared_commands.h"
#include "tests/support/cluster.h"
#include <gtest/gtest.h>

namespace farmhand::e2e {
namespace {

using namespace std::chrono_literals;

// Appends "JOB ATTEMPT" to $1, then runs until the file $0 exists.
const char* kCommands =
    "  gated:\n"
    "    argv: [/bin/sh, -c, 'echo \"$FARMHAND_JOB_ID $FARMHAND_ATTEMPT\" >> \"$1\"; "
    "while [ ! -e \"$0\" ]; do sleep 0.05; done', \"{release}\", \"{out}\"]\n"
    "    params:\n"
    "      release: {pattern: '^/tmp/[A-Za-z0-9_./-]+$'}\n"
    "      out: {pattern: '^/tmp/[A-Za-z0-9_./-]+$'}\n";

ClusterOptions two_workers() {
  ClusterOptions options;
  options.local_workers = 2;
  options.commands_yaml = kCommands;
  return options;
}

std::vector<std::string> gated(Cluster& cluster, const std::string& frames,
                               const std::string& release, const std::string& out) {
  return {"command",  "gated",
          "--frames", frames,
          "--param",  "release=" + cluster.path(release),
          "--param",  "out=" + cluster.path(out)};
}

TEST(TaskActionsE2ETest, KillStopsARunningTaskAndItRunsAgainAsAttemptTwo) {
  Cluster cluster(two_workers());
  ASSERT_TRUE(cluster.start());
  auto job = cluster.submit(gated(cluster, "1", "release", "ran"));
  ASSERT_TRUE(job) << cluster.last_cli();
  const std::string id = std::to_string(*job);
  ASSERT_TRUE(wait_until([&] { return lines_of(cluster.path("ran")).size() == 1; }, 60s));

  // Usage: kill needs a selection.
  EXPECT_EQ(cluster.run_cli({"kill", id}).exit_code, 2) << cluster.last_cli();
  CliResult killed = cluster.run_cli({"kill", id, "--tasks", "0"});
  ASSERT_EQ(killed.exit_code, 0) << describe(killed);
  EXPECT_NE(killed.out.find("(1 task killed)"), std::string::npos) << killed.out;
  ASSERT_TRUE(wait_until([&] { return lines_of(cluster.path("ran")).size() == 2; }, 60s))
      << "the killed task never ran again";
  EXPECT_EQ(lines_of(cluster.path("ran")), (std::vector<std::string>{id + " 1", id + " 2"}));
  std::ofstream(cluster.path("release")).put('\n');
  auto final_status = cluster.wait_for_final_state(*job, 60s);
  ASSERT_TRUE(final_status) << cluster.last_cli();
  EXPECT_EQ((*final_status)["job"]["state"], "succeeded") << *final_status;
  auto tasks = cluster.status_json(*job, {"--tasks"});
  ASSERT_TRUE(tasks) << cluster.last_cli();
  EXPECT_EQ((*tasks)["tasks"][0]["attempts"], 2) << *tasks;
  auto logs = cluster.cli_json({"logs", id});
  ASSERT_TRUE(logs && !logs->empty()) << cluster.last_cli();
  EXPECT_EQ(logs->back()["attempt"], 2) << *logs;
  // Nothing runs now: no task matched, not an error.
  CliResult none = cluster.run_cli({"kill", id, "--state", "running"});
  EXPECT_EQ(none.exit_code, 0) << describe(none);
  EXPECT_NE(none.out.find("no task matched"), std::string::npos) << none.out;
}

TEST(TaskActionsE2ETest, SkipReleasesTheDownstreamTaskOfAFrameDependency) {
  Cluster cluster(two_workers());
  ASSERT_TRUE(cluster.start());
  // Upstream tasks run until released (never here); the downstream job waits frame by frame.
  auto up = cluster.submit(gated(cluster, "1-2", "never", "up"));
  ASSERT_TRUE(up) << cluster.last_cli();
  std::vector<std::string> down_args = gated(cluster, "1-2", "go", "down");
  down_args.insert(down_args.end(), {"--after-frames", std::to_string(*up)});
  std::ofstream(cluster.path("go")).put('\n');
  auto down = cluster.submit(down_args);
  ASSERT_TRUE(down) << cluster.last_cli();

  CliResult skipped = cluster.run_cli({"skip", std::to_string(*up), "--frames", "1"});
  ASSERT_EQ(skipped.exit_code, 0) << describe(skipped);
  EXPECT_NE(skipped.out.find("(1 task skipped)"), std::string::npos) << skipped.out;
  ASSERT_TRUE(wait_until([&] { return lines_of(cluster.path("down")).size() == 1; }, 60s))
      << "the downstream task of frame 1 never ran";
  ASSERT_TRUE(wait_until(
      [&] {
        auto s = cluster.status_json(*down, {"--tasks"});
        return s && (*s)["tasks"][0]["state"] == "succeeded";
      },
      60s));
  auto s = cluster.status_json(*down, {"--tasks"});
  ASSERT_TRUE(s) << cluster.last_cli();
  EXPECT_EQ((*s)["tasks"][1]["state"], "waiting") << *s;  // frame 2's upstream still runs
  auto up_status = cluster.status_json(*up, {"--tasks"});
  ASSERT_TRUE(up_status) << cluster.last_cli();
  EXPECT_EQ((*up_status)["tasks"][0]["state"], "succeeded");
  EXPECT_EQ((*up_status)["tasks"][0]["error"], "skipped (farmhand skip)");
  EXPECT_EQ(cluster.run_cli({"cancel", std::to_string(*up)}).exit_code, 0) << cluster.last_cli();
}

TEST(TaskActionsE2ETest, RequeueRunsASucceededJobAgainWithAttemptNumbersContinuing) {
  Cluster cluster(two_workers());
  ASSERT_TRUE(cluster.start());
  std::ofstream(cluster.path("go")).put('\n');
  auto job = cluster.submit(gated(cluster, "1", "go", "ran"));
  ASSERT_TRUE(job) << cluster.last_cli();
  const std::string id = std::to_string(*job);
  auto first = cluster.wait_for_final_state(*job, 60s);
  ASSERT_TRUE(first) << cluster.last_cli();
  ASSERT_EQ((*first)["job"]["state"], "succeeded");

  CliResult requeued = cluster.run_cli({"requeue", id, "--key", "requeue-once"});
  ASSERT_EQ(requeued.exit_code, 0) << describe(requeued);
  EXPECT_NE(requeued.out.find("(1 task requeued)"), std::string::npos) << requeued.out;
  ASSERT_TRUE(wait_until([&] { return lines_of(cluster.path("ran")).size() == 2; }, 60s));
  auto second = cluster.wait_for_final_state(*job, 60s);
  ASSERT_TRUE(second) << cluster.last_cli();
  EXPECT_EQ((*second)["job"]["state"], "succeeded");
  EXPECT_EQ(lines_of(cluster.path("ran")), (std::vector<std::string>{id + " 1", id + " 2"}));
  // The same key again: answered, not run a third time.
  CliResult repeated = cluster.run_cli({"requeue", id, "--key", "requeue-once"});
  EXPECT_EQ(repeated.exit_code, 0) << describe(repeated);
  auto after = cluster.status_json(*job);
  ASSERT_TRUE(after) << cluster.last_cli();
  EXPECT_EQ((*after)["job"]["state"], "succeeded") << *after;
  EXPECT_EQ(lines_of(cluster.path("ran")).size(), 2u);

  // A job that has not finished is refused with one line, exit 1.
  auto running = cluster.submit(gated(cluster, "1", "never", "other"));
  ASSERT_TRUE(running) << cluster.last_cli();
  CliResult refused = cluster.run_cli({"requeue", std::to_string(*running)});
  EXPECT_EQ(refused.exit_code, 1) << describe(refused);
  EXPECT_NE(refused.err.find("use retry or kill for its tasks"), std::string::npos) << refused.err;
  EXPECT_EQ(cluster.run_cli({"cancel", std::to_string(*running)}).exit_code, 0);
}

}  // namespace
}  // namespace farmhand::e2e
