// OpenJdRunner on real sessions: tasks of one submission reuse a session, an
// idle one is closed (its onExit runs), and nothing is left behind by a worker
// that closes sessions for weeks.
#include "workers/openjd_runner.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <unistd.h>

namespace farmhand::worker {
namespace {

using namespace std::chrono_literals;

constexpr const char* kTemplate = R"(specificationVersion: jobtemplate-2023-09
name: Runner
parameterDefinitions:
  - name: Out
    type: PATH
jobEnvironments:
  - name: Env
    script:
      actions:
        onEnter:
          command: bash
          args: ["-c", "echo enter >> {{Param.Out}}/env"]
        onExit:
          command: bash
          args: ["-c", "echo exit >> {{Param.Out}}/env"]
steps:
  - name: Work
    parameterSpace:
      taskParameterDefinitions:
        - name: N
          type: INT
          range: "1-3"
    script:
      actions:
        onRun:
          command: bash
          args: ["-c", "echo {{Task.Param.N}} >> {{Param.Out}}/work"]
)";

class OpenJdRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/fh-ojr-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }

  void TearDown() override { std::filesystem::remove_all(dir_); }

  wire::Assign assign(uint64_t task) const {
    wire::Assign a;
    a.mutable_ref()->set_job_id(7);
    a.mutable_ref()->set_task(task);
    a.set_kind("openjd");
    wire::OpenJdTask& t = *a.mutable_openjd();
    t.mutable_source()->set_template_(kTemplate);
    auto* p = t.mutable_source()->add_parameters();
    p->set_name("Out");
    p->set_value(dir_);
    t.mutable_source()->set_template_dir(dir_);
    t.mutable_source()->set_working_dir(dir_);
    t.set_step("Work");
    t.add_executables("bash");
    t.set_allow_root(true);
    t.set_session_key(7);
    return a;
  }

  // Polls until task `id` ended; its outcome.
  OpenJdOutcome await(OpenJdRunner& runner, uint64_t id) {
    const auto give_up = std::chrono::steady_clock::now() + 60s;
    while (std::chrono::steady_clock::now() < give_up) {
      for (const OpenJdOutcome& outcome : runner.poll(std::chrono::steady_clock::now())) {
        if (outcome.id == id) return outcome;
      }
      std::this_thread::sleep_for(5ms);
    }
    ADD_FAILURE() << "task " << id << " never ended";
    return {};
  }

  std::string read(const std::string& name) const {
    std::ifstream in(dir_ + "/" + name);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }

  std::string dir_;
};

TEST_F(OpenJdRunnerTest, TasksShareASessionAndAnIdleOneIsClosedAndForgotten) {
  // Idle sessions close after 2 s: the three tasks follow each other at once.
  OpenJdRunner runner({dir_, 2s, {}});
  for (uint64_t task = 0; task < 3; ++task) {
    ASSERT_TRUE(runner.start(task + 1, assign(task), std::chrono::steady_clock::now(),
                             dir_ + "/log" + std::to_string(task)));
    const OpenJdOutcome outcome = await(runner, task + 1);
    EXPECT_TRUE(outcome.succeeded) << (outcome.error ? outcome.error->reason : "");
  }
  EXPECT_EQ(read("work"), "1\n2\n3\n");
  EXPECT_EQ(read("env"), "enter\n");  // one session ran the three
  // Closed sessions' threads are joined: none is left behind.
  const auto give_up = std::chrono::steady_clock::now() + 60s;
  while ((runner.idle_sessions() > 0 || runner.closing_sessions() > 0) &&
         std::chrono::steady_clock::now() < give_up) {
    (void)runner.poll(std::chrono::steady_clock::now());
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_EQ(runner.idle_sessions(), 0u);
  EXPECT_EQ(runner.closing_sessions(), 0u);
  EXPECT_EQ(read("env"), "enter\nexit\n");
}

constexpr const char* kChunked = R"(specificationVersion: jobtemplate-2023-09
extensions: [TASK_CHUNKING]
name: Chunked
parameterDefinitions:
  - name: Out
    type: PATH
steps:
  - name: Render
    parameterSpace:
      taskParameterDefinitions:
        - name: F
          type: CHUNK[INT]
          range: "1-10"
          chunks:
            defaultTaskCount: 2
            targetRuntimeSeconds: 60
            rangeConstraint: CONTIGUOUS
    script:
      actions:
        onRun:
          command: bash
          args: ["-c", "echo 'openjd_status: busy with {{Task.Param.F}}'; echo {{Task.Param.F}} > {{Param.Out}}/chunk; i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"]
  - name: Layers
    parameterSpace:
      taskParameterDefinitions:
        - name: Layer
          type: STRING
          range: [fg, bg]
        - name: F
          type: CHUNK[INT]
          range: "1-10"
          chunks:
            defaultTaskCount: 2
            targetRuntimeSeconds: 60
            rangeConstraint: CONTIGUOUS
    script:
      actions:
        onRun:
          command: bash
          args: ["-c", "echo {{Task.Param.Layer}} {{Task.Param.F}} > {{Param.Out}}/layer"]
)";

// The broker's cut of an adaptive step is the task's chunk; what the action
// used and said comes back with the outcome and the progress.
TEST_F(OpenJdRunnerTest, ABrokersChunkIsTheTasksParameterAndTheTaskReportsWhatItUsed) {
  OpenJdRunner runner({dir_, 2s, {}});
  wire::Assign a = assign(0);
  a.mutable_openjd()->mutable_source()->set_template_(kChunked);
  a.mutable_openjd()->set_step("Render");
  a.mutable_openjd()->set_chunk("3-7");
  ASSERT_TRUE(runner.start(1, a, std::chrono::steady_clock::now(), dir_ + "/log"));
  const OpenJdOutcome outcome = await(runner, 1);
  ASSERT_TRUE(outcome.succeeded) << (outcome.error ? outcome.error->reason : "");
  EXPECT_EQ(read("chunk"), "3-7\n");
  ASSERT_TRUE(outcome.usage.has_value());
  EXPECT_GT((outcome.usage->cpu_user + outcome.usage->cpu_system).count(), 0);
  EXPECT_GT(outcome.usage->peak_rss_bytes, 0u);
  EXPECT_EQ(outcome.usage->exit_code, std::optional<int>(0));
  EXPECT_GE(outcome.usage->wall, outcome.usage->cpu_user);
  bool said = false;
  for (const OpenJdProgress& p : runner.take_progress()) said = said || p.status == "busy with 3-7";
  EXPECT_TRUE(said);

  // Beside another parameter: the broker names its value too.
  wire::Assign layered = a;
  layered.mutable_openjd()->set_step("Layers");
  layered.mutable_openjd()->set_chunk("2-4");
  wire::OpenJdParam& layer = *layered.mutable_openjd()->add_task_parameters();
  layer.set_name("Layer");
  layer.set_value("bg");
  ASSERT_TRUE(runner.start(3, layered, std::chrono::steady_clock::now(), dir_ + "/log3"));
  const OpenJdOutcome ran = await(runner, 3);
  ASSERT_TRUE(ran.succeeded) << (ran.error ? ran.error->reason : "");
  EXPECT_EQ(read("layer"), "bg 2-4\n");
  // A value the step does not have is refused.
  layer.set_value("mid");
  ASSERT_TRUE(runner.start(4, layered, std::chrono::steady_clock::now(), dir_ + "/log4"));
  const OpenJdOutcome unknown = await(runner, 4);
  EXPECT_FALSE(unknown.succeeded);
  ASSERT_TRUE(unknown.error.has_value());
  EXPECT_EQ(unknown.error->reason, "step Layers has no task with chunk 2-4 and those parameters");

  // A chunk for a step that has none is refused, not run.
  wire::Assign plain = assign(0);
  plain.mutable_openjd()->set_chunk("1-2");
  plain.mutable_openjd()->set_session_key(8);
  ASSERT_TRUE(runner.start(2, plain, std::chrono::steady_clock::now(), dir_ + "/log2"));
  const OpenJdOutcome refused = await(runner, 2);
  EXPECT_FALSE(refused.succeeded);
  ASSERT_TRUE(refused.error.has_value());
  EXPECT_EQ(refused.error->reason, "step Work has no task with chunk 1-2 and those parameters");
}

}  // namespace
}  // namespace farmhand::worker
