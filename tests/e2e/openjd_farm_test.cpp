// Open Job Description templates on the real binaries (issue 13): `farmhand
// submit openjd` makes a job per step; the worker runs each task in a session
// (environments entered once, embedded files, openjd_env and redacted values),
// cancels with NOTIFY_THEN_TERMINATE, and keeps the farm's rules (allowed
// programs, root). What the tasks did is read from the files they wrote.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/cluster.h"
#include <gtest/gtest.h>
#include <unistd.h>

namespace farmhand::e2e {
namespace {

using namespace std::chrono_literals;

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// Templates may run bash here; root only when the tests run as root (CI does).
ClusterOptions openjd_farm(const std::string& executables = "[bash]") {
  ClusterOptions options;
  options.local_workers = 1;
  options.local_slots = 1;
  options.default_max_attempts = 1;
  options.extra_yaml = "openjd:\n  enabled: true\n  executables: " + executables + "\n" +
                       (geteuid() == 0 ? "  allow_root: true\n" : "");
  return options;
}

void write(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

// Render frames 1-10 in chunks of 4, then encode what was rendered. The job
// environment's onEnter (an embedded file) counts its runs, sets SHOT_DIR with
// openjd_env and a secret with openjd_redacted_env.
constexpr const char* kTwoSteps = R"(specificationVersion: jobtemplate-2023-09
extensions: [TASK_CHUNKING, REDACTED_ENV_VARS]
name: Farm {{Param.Shot}}
parameterDefinitions:
  - name: Shot
    type: STRING
  - name: Out
    type: PATH
jobEnvironments:
  - name: Setup
    script:
      actions:
        onEnter:
          command: bash
          args: ["{{Env.File.enter}}"]
      embeddedFiles:
        - name: enter
          type: TEXT
          data: |
            echo entered >> "{{Param.Out}}/enters"
            echo "openjd_redacted_env: LICENSE_KEY=sekrit-4711"
            echo "openjd_env: SHOT_DIR={{Param.Out}}/{{Param.Shot}}"
steps:
  - name: Render
    stepEnvironments:
      - name: RenderEnv
        script:
          actions:
            onEnter:
              command: bash
              args: ["-c", "echo enter Render >> {{Param.Out}}/steps"]
            onExit:
              command: bash
              args: ["-c", "echo exit Render >> {{Param.Out}}/steps"]
    parameterSpace:
      taskParameterDefinitions:
        - name: Frame
          type: CHUNK[INT]
          range: "1-10"
          chunks:
            defaultTaskCount: 4
            rangeConstraint: CONTIGUOUS
    script:
      actions:
        onRun:
          command: bash
          args: ["{{Task.File.run}}", "{{Task.Param.Frame}}"]
      embeddedFiles:
        - name: run
          type: TEXT
          data: |
            echo "chunk $1 key=$LICENSE_KEY"
            echo "$1" >> "$SHOT_DIR.frames"
            echo "openjd_progress: 100"
  - name: Encode
    dependencies:
      - dependsOn: Render
    stepEnvironments:
      - name: EncodeEnv
        script:
          actions:
            onEnter:
              command: bash
              args: ["-c", "echo enter Encode >> {{Param.Out}}/steps"]
    script:
      actions:
        onRun:
          command: bash
          args: ["-c", "sort \"$SHOT_DIR.frames\" > \"$SHOT_DIR.encoded\""]
)";

TEST(OpenJdFarmE2ETest, ATwoStepTemplateRunsInSessionsOnTheWorker) {
  Cluster cluster(openjd_farm("[bash, sort]"));
  ASSERT_TRUE(cluster.start());
  const std::string out = cluster.path("out");
  std::filesystem::create_directories(out);
  write(cluster.path("shot.yaml"), kTwoSteps);
  auto reply = cluster.cli_json(
      {"submit", "openjd", cluster.path("shot.yaml"), "-p", "Shot=sh010", "-p", "Out=" + out});
  ASSERT_TRUE(reply) << cluster.last_cli();
  ASSERT_EQ((*reply)["steps"].size(), 2u) << reply->dump();
  EXPECT_EQ((*reply)["job_name"], "Farm sh010");
  EXPECT_EQ((*reply)["steps"][0]["step"], "Render");
  EXPECT_EQ((*reply)["steps"][0]["tasks"], 3);  // 1-4, 5-7, 8-10
  const uint64_t render = (*reply)["steps"][0]["job_id"].get<uint64_t>();
  const uint64_t encode = (*reply)["steps"][1]["job_id"].get<uint64_t>();
  for (uint64_t job : {render, encode}) {
    auto final_status = cluster.wait_for_final_state(job, 120s);
    ASSERT_TRUE(final_status) << cluster.last_cli();
    EXPECT_EQ((*final_status)["job"]["state"], "succeeded") << final_status->dump();
  }
  // Chunks as range expressions, each once; the encode ran after all of them.
  std::vector<std::string> chunks = lines_of(read_file(out + "/sh010.frames"));
  EXPECT_EQ(std::set<std::string>(chunks.begin(), chunks.end()),
            (std::set<std::string>{"1-4", "5-7", "8-10"}));
  EXPECT_EQ(chunks.size(), 3u);
  EXPECT_EQ(lines_of(read_file(out + "/sh010.encoded")),
            (std::vector<std::string>{"1-4", "5-7", "8-10"}));
  // The job environment was entered once: one session on the one slot ran
  // the three Render tasks and then, with Render's environments exited, Encode.
  EXPECT_EQ(lines_of(read_file(out + "/enters")).size(), 1u);
  EXPECT_EQ(lines_of(read_file(out + "/steps")),
            (std::vector<std::string>{"enter Render", "exit Render", "enter Encode"}));

  // The status names the template's step; the log shows the task's output
  // with the secret redacted, and the secret is in no log at all.
  CliResult status = cluster.run_cli({"status", std::to_string(render)});
  EXPECT_NE(status.out.find("Farm sh010 / Render"), std::string::npos) << status.out;
  CliResult logs = cluster.run_cli({"logs", std::to_string(render)});
  EXPECT_EQ(logs.exit_code, 0) << logs.err;
  EXPECT_NE(logs.out.find("chunk 5-7 key=********"), std::string::npos) << logs.out;
  // (Local workers log into the broker's log.)
  for (const std::string& text : {logs.out, read_file(cluster.broker_log_path())}) {
    EXPECT_EQ(text.find("sekrit-4711"), std::string::npos);
  }
}

// A task that traps SIGTERM: a cancel with NOTIFY_THEN_TERMINATE lets it write
// its file and leave; another one's action times out.
constexpr const char* kHold = R"(specificationVersion: jobtemplate-2023-09
name: Hold
parameterDefinitions:
  - name: Out
    type: PATH
steps:
  - name: Hold
    script:
      actions:
        onRun:
          command: bash
          args: ["-c", "trap 'echo term > {{Param.Out}}/term; exit 0' TERM; touch {{Param.Out}}/started; while true; do sleep 0.1; done"]
          cancelation:
            mode: NOTIFY_THEN_TERMINATE
            notifyPeriodInSeconds: 30
  - name: Slow
    script:
      actions:
        onRun:
          command: bash
          args: ["-c", "sleep 60"]
          timeout: 1
)";

TEST(OpenJdFarmE2ETest, ACancelNotifiesTheTaskAndATimeoutStopsIt) {
  ClusterOptions options = openjd_farm();
  options.local_slots = 2;
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());
  const std::string out = cluster.path("out");
  std::filesystem::create_directories(out);
  write(cluster.path("hold.yaml"), kHold);
  auto reply =
      cluster.cli_json({"submit", "openjd", cluster.path("hold.yaml"), "-p", "Out=" + out});
  ASSERT_TRUE(reply) << cluster.last_cli();
  const uint64_t hold = (*reply)["steps"][0]["job_id"].get<uint64_t>();
  const uint64_t slow = (*reply)["steps"][1]["job_id"].get<uint64_t>();
  ASSERT_TRUE(wait_until([&] { return std::filesystem::exists(out + "/started"); }, 60s));
  CliResult cancel = cluster.run_cli({"cancel", std::to_string(hold)});
  EXPECT_EQ(cancel.exit_code, 0) << cancel.err;
  // The task heard SIGTERM and ran its trap (whose `echo term >` makes the
  // file before it writes the line: the line is waited for, not the file).
  EXPECT_TRUE(wait_until([&] { return read_file(out + "/term") == "term\n"; }, 60s))
      << "the trap's file holds '" << read_file(out + "/term") << "'";

  auto slow_status = cluster.wait_for_final_state(slow, 120s);
  ASSERT_TRUE(slow_status) << cluster.last_cli();
  EXPECT_EQ((*slow_status)["job"]["state"], "failed");
  CliResult logs = cluster.run_cli({"logs", std::to_string(slow)});
  EXPECT_NE(logs.out.find("timed out after 1 s"), std::string::npos) << logs.out;
}

constexpr const char* kCat = R"(specificationVersion: jobtemplate-2023-09
name: Cat
steps:
  - name: Cat
    script:
      actions:
        onRun:
          command: cat
          args: ["/etc/hostname"]
)";

// Submits kCat, awaits its one job's end (it must fail) and returns its logs.
std::string logs_of_failed_cat(Cluster& cluster) {
  write(cluster.path("cat.yaml"), kCat);
  auto reply = cluster.cli_json({"submit", "openjd", cluster.path("cat.yaml")});
  if (!reply) return "submit failed: " + cluster.last_cli();
  const uint64_t job = (*reply)["steps"][0]["job_id"].get<uint64_t>();
  auto final_status = cluster.wait_for_final_state(job, 120s);
  if (!final_status) return "never ended: " + cluster.last_cli();
  if ((*final_status)["job"]["state"] != "failed") return "not failed: " + final_status->dump();
  return cluster.run_cli({"logs", std::to_string(job)}).out;
}

TEST(OpenJdFarmE2ETest, AProgramOffTheAllowListIsNotStarted) {
  Cluster cluster(openjd_farm("[bash]"));
  ASSERT_TRUE(cluster.start());
  const std::string logs = logs_of_failed_cat(cluster);
  EXPECT_NE(logs.find("cannot start 'cat': not one of the programs this farm lets templates "
                      "run (openjd.executables)"),
            std::string::npos)
      << logs;
}

TEST(OpenJdFarmE2ETest, SubmitIsRefusedWhileTheConfigLeavesTemplatesOff) {
  ClusterOptions options;
  options.local_workers = 1;
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());
  write(cluster.path("cat.yaml"), kCat);
  CliResult refused = cluster.run_cli({"submit", "openjd", cluster.path("cat.yaml")});
  EXPECT_EQ(refused.exit_code, 1) << refused.err;
  EXPECT_NE(refused.err.find("Open Job Description jobs are off on this farm"), std::string::npos)
      << refused.err;
  EXPECT_EQ(std::count(refused.err.begin(), refused.err.end(), '\n'), 1);
}

// Frames 1-40 in chunks of 2 that should take a minute each: the first chunk
// says what it does (openjd_status) and waits to be let go, and, however long
// it took, the chunks after it are cut larger. Each frame runs once.
constexpr const char* kAdaptive = R"(specificationVersion: jobtemplate-2023-09
extensions: [TASK_CHUNKING]
name: Adaptive
parameterDefinitions:
  - name: Out
    type: PATH
steps:
  - name: Render
    parameterSpace:
      taskParameterDefinitions:
        - name: Frame
          type: CHUNK[INT]
          range: "1-40"
          chunks:
            defaultTaskCount: 2
            targetRuntimeSeconds: 60
            rangeConstraint: CONTIGUOUS
    script:
      actions:
        onRun:
          command: bash
          args: ["{{Task.File.run}}", "{{Task.Param.Frame}}"]
      embeddedFiles:
        - name: run
          type: TEXT
          data: |
            echo "openjd_status: rendering $1"
            until [ -e "{{Param.Out}}/go" ]; do sleep 0.05; done
            for frame in $(seq "${1%-*}" "${1#*-}"); do sleep 0.02; done
            echo "$1" >> "{{Param.Out}}/chunks"
)";

TEST(OpenJdFarmE2ETest, ChunksAdaptToTheTargetRuntimeAndTasksSayWhatTheyDo) {
  Cluster cluster(openjd_farm());
  ASSERT_TRUE(cluster.start());
  const std::string out = cluster.path("out");
  std::filesystem::create_directories(out);
  write(cluster.path("adaptive.yaml"), kAdaptive);
  auto reply =
      cluster.cli_json({"submit", "openjd", cluster.path("adaptive.yaml"), "-p", "Out=" + out});
  ASSERT_TRUE(reply) << cluster.last_cli();
  EXPECT_EQ((*reply)["steps"][0]["tasks"], 20);
  const std::string job = std::to_string((*reply)["steps"][0]["job_id"].get<uint64_t>());

  // The running task's status line shows in `status`, in JSON and as text.
  std::string said;
  ASSERT_TRUE(wait_until(
      [&] {
        auto status = cluster.cli_json({"status", job});
        if (!status || (*status)["running"].empty()) return false;
        said = (*status)["running"][0]["status_message"].get<std::string>();
        return !said.empty();
      },
      60s))
      << cluster.last_cli();
  EXPECT_EQ(said, "rendering 1-2");
  CliResult text = cluster.run_cli({"status", job});
  EXPECT_NE(text.out.find("STATUS"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("rendering 1-2"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("frames=1-40 chunk=2 (adapting to 60 s a chunk"), std::string::npos)
      << text.out;
  write(out + "/go", "");

  auto final_status = cluster.wait_for_final_state(std::stoull(job), 120s);
  ASSERT_TRUE(final_status) << cluster.last_cli();
  EXPECT_EQ((*final_status)["job"]["state"], "succeeded") << final_status->dump();
  EXPECT_EQ((*final_status)["job"]["frames_succeeded"], 40);
  // Every frame once, in contiguous chunks; after the first, larger ones.
  std::vector<std::string> chunks = lines_of(read_file(out + "/chunks"));
  ASSERT_FALSE(chunks.empty());
  EXPECT_EQ(chunks.front(), "1-2");
  std::vector<int> frames;
  size_t largest = 0;
  for (const std::string& chunk : chunks) {
    const size_t dash = chunk.find('-');
    ASSERT_NE(dash, std::string::npos) << chunk;
    const int first = std::stoi(chunk.substr(0, dash));
    const int last = std::stoi(chunk.substr(dash + 1));
    for (int f = first; f <= last; ++f) frames.push_back(f);
    largest = std::max(largest, static_cast<size_t>(last - first + 1));
  }
  std::sort(frames.begin(), frames.end());
  std::vector<int> all(40);
  for (int f = 0; f < 40; ++f) all[f] = f + 1;
  EXPECT_EQ(frames, all);
  EXPECT_LT(chunks.size(), 20u);
  EXPECT_GT(largest, 2u);
  EXPECT_NE(read_file(cluster.broker_log_path()).find("chunks cut again job=" + job),
            std::string::npos);
}

// allow_root off: a worker running as root refuses the session; one running
// as an ordinary user runs it (the tests run as root in CI, as a user elsewhere).
TEST(OpenJdFarmE2ETest, AWorkerRunsSessionsAsRootOnlyWhenAllowed) {
  ClusterOptions options;
  options.local_workers = 1;
  options.default_max_attempts = 1;
  options.extra_yaml = "openjd:\n  enabled: true\n  executables: [cat]\n";
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());
  write(cluster.path("cat.yaml"), kCat);
  auto reply = cluster.cli_json({"submit", "openjd", cluster.path("cat.yaml")});
  ASSERT_TRUE(reply) << cluster.last_cli();
  const uint64_t job = (*reply)["steps"][0]["job_id"].get<uint64_t>();
  auto final_status = cluster.wait_for_final_state(job, 120s);
  ASSERT_TRUE(final_status) << cluster.last_cli();
  const std::string logs = cluster.run_cli({"logs", std::to_string(job)}).out;
  const bool refused =
      logs.find("this worker runs as root, and the farm's openjd.allow_root is off") !=
      std::string::npos;
  if (geteuid() == 0) {
    EXPECT_EQ((*final_status)["job"]["state"], "failed");
    EXPECT_TRUE(refused) << logs;
  } else {
    EXPECT_EQ((*final_status)["job"]["state"], "succeeded") << logs;
    EXPECT_FALSE(refused) << logs;
  }
}

}  // namespace
}  // namespace farmhand::e2e
