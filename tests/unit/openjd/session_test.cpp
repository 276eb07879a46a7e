// OpenJD sessions with real processes in a temporary directory: what actions
// see (variables, env changes, embedded files, path mapping, the working
// directory), what is logged (never a redacted secret), and how actions end
// (exit codes, openjd_fail, timeouts, both cancel modes).
#include "openjd/session.h"

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/temp_dir.h"
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>

namespace farmhand::openjd {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using testing_support::TempDir;

// Collects what the session logs; lets another thread await a line.
class Log {
 public:
  LogSink sink() {
    return [this](const std::string& line) {
      std::lock_guard lock(mutex_);
      lines_.push_back(line);
      changed_.notify_all();
    };
  }

  std::vector<std::string> lines() {
    std::lock_guard lock(mutex_);
    return lines_;
  }

  std::string text() {
    std::string all;
    for (const std::string& line : lines()) all += line + "\n";
    return all;
  }

  // Waits (30 s at most) until `line` has been logged.
  bool await(const std::string& line) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, std::chrono::seconds(30), [&] {
      return std::find(lines_.begin(), lines_.end(), line) != lines_.end();
    });
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::string> lines_;
};

Action sh(const std::string& script) {
  Action action;
  action.command = "/bin/sh";
  action.args = {"-c", script};
  return action;
}

Environment environment(const std::string& name,
                        std::vector<std::pair<std::string, std::string>> variables = {},
                        std::optional<std::string> on_enter = std::nullopt,
                        std::optional<std::string> on_exit = std::nullopt) {
  Environment env;
  env.name = name;
  env.variables = std::move(variables);
  if (on_enter || on_exit) {
    env.script.emplace();
    if (on_enter) env.script->on_enter = sh(*on_enter);
    if (on_exit) env.script->on_exit = sh(*on_exit);
  }
  return env;
}

Step step(const std::string& script) {
  Step s;
  s.name = "Render";
  s.script.on_run = sh(script);
  return s;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Whether process `pid` has ended (gone, or a zombie nobody reaped yet),
// awaited for 30 s at most: a SIGKILLed process takes a moment to die.
bool ends(const std::string& pid) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (;;) {
    const std::string stat = read_file("/proc/" + pid + "/stat");
    if (stat.empty() || stat.find(") Z ") != std::string::npos) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

class SessionTest : public ::testing::Test {
 protected:
  std::unique_ptr<Session> start(SessionOptions options = {}) {
    options.root_dir = root_.path();
    options.log = log_.sink();
    Result<std::unique_ptr<Session>> session = Session::create(std::move(options));
    EXPECT_TRUE(session) << session.error().reason;
    return session ? std::move(*session) : nullptr;
  }

  // The output of one task that runs `script`.
  std::vector<std::string> task_output(Session& session, const std::string& script,
                                       const TaskParameters& task = {}) {
    Result<ActionOutcome> outcome = session.run_task(step(script), task);
    EXPECT_TRUE(outcome) << outcome.error().reason;
    if (!outcome) return {};
    EXPECT_TRUE(outcome->succeeded()) << outcome->reason;
    return outcome->output;
  }

  TempDir root_{"fh-session"};
  Log log_;
};

TEST_F(SessionTest, VariablesAndOnEnterEnvReachLaterActionsAndStopAtExit) {
  auto session = start();
  Result<ActionOutcome> entered = session->enter(
      environment("Tools", {{"TOOL_HOME", "{{Session.WorkingDirectory}}/tools"}},
                  "echo \"enter sees $TOOL_HOME\"; echo 'openjd_env: TOOL_MODE=fast'",
                  "echo \"exit sees $TOOL_MODE\""));
  ASSERT_TRUE(entered) << entered.error().reason;
  EXPECT_TRUE(entered->succeeded()) << entered->reason;
  EXPECT_THAT(entered->output, Contains("enter sees " + session->working_dir() + "/tools"));

  EXPECT_THAT(task_output(*session, "echo \"$TOOL_HOME $TOOL_MODE\""),
              ElementsAre(session->working_dir() + "/tools fast"));

  Result<ActionOutcome> exited = session->exit();
  ASSERT_TRUE(exited) << exited.error().reason;
  EXPECT_THAT(exited->output, ElementsAre("exit sees fast"));
  EXPECT_EQ(session->environments_entered(), 0u);

  ASSERT_TRUE(
      session->enter(environment("After", {}, "echo \"${TOOL_HOME-gone} ${TOOL_MODE-gone}\"")));
  EXPECT_THAT(log_.lines(), Contains("gone gone"));
}

TEST_F(SessionTest, ExitAllExitsInReverseOrderOfEntry) {
  auto session = start();
  ASSERT_TRUE(session->enter(environment("Job", {}, std::nullopt, "echo exit job")));
  ASSERT_TRUE(session->enter(environment("Step", {}, std::nullopt, "echo exit step")));
  std::vector<Result<ActionOutcome>> exits = session->exit_all();
  ASSERT_EQ(exits.size(), 2u);
  EXPECT_THAT(log_.lines(), ElementsAre("exit step", "exit job"));
  ASSERT_FALSE(session->exit());
}

TEST_F(SessionTest, LaterEnvironmentOverridesEarlierAndExitRestoresIt) {
  auto session = start();
  ASSERT_TRUE(session->enter(environment("Job", {{"SHOT", "job"}})));
  ASSERT_TRUE(session->enter(environment("Step", {}, "echo 'openjd_env: SHOT=step'")));
  EXPECT_THAT(task_output(*session, "echo $SHOT"), ElementsAre("step"));
  ASSERT_TRUE(session->exit());
  EXPECT_THAT(task_output(*session, "echo $SHOT"), ElementsAre("job"));
}

TEST_F(SessionTest, UnsetWinsOverSetAndRemovesTheWorkersOwnVariable) {
  ASSERT_EQ(setenv("FARMHAND_SESSION_TEST_WORKER_VAR", "worker", 1), 0);
  auto session = start();
  Result<ActionOutcome> entered = session->enter(environment(
      "Clean", {{"FROM_VARIABLES", "v"}},
      "echo 'openjd_unset_env: FROM_OUTPUT'; echo 'openjd_env: FROM_OUTPUT=set-after-unset';"
      "echo 'openjd_unset_env: FROM_VARIABLES'; echo 'openjd_unset_env: "
      "FARMHAND_SESSION_TEST_WORKER_VAR'"));
  ASSERT_TRUE(entered && entered->succeeded());
  std::vector<std::string> out = task_output(*session,
                                             "echo \"${FROM_OUTPUT-unset} ${FROM_VARIABLES-unset} "
                                             "${FARMHAND_SESSION_TEST_WORKER_VAR-unset}\"");
  unsetenv("FARMHAND_SESSION_TEST_WORKER_VAR");
  EXPECT_THAT(out, ElementsAre("unset unset unset"));
}

TEST_F(SessionTest, RedactedValuesNeverReachTheLogButAreSet) {
  SessionOptions options;
  options.redacted_env_vars = true;
  auto session = start(options);
  ASSERT_TRUE(session->enter(
      environment("Secrets", {}, "echo 'openjd_redacted_env: API_TOKEN=hunter2-secret'")));
  const std::string copy = root_.file("token-copy");
  std::vector<std::string> out =
      task_output(*session, "echo \"token is $API_TOKEN\"; printf %s \"$API_TOKEN\" > " + copy);
  EXPECT_THAT(out, ElementsAre("token is ********"));
  EXPECT_EQ(read_file(copy), "hunter2-secret");
  EXPECT_THAT(log_.lines(), Contains("openjd_redacted_env: API_TOKEN=********"));
  EXPECT_THAT(log_.text(), Not(HasSubstr("hunter2")));
}

TEST_F(SessionTest, RedactedValueIsHiddenButNotSetWithoutTheExtension) {
  auto session = start();
  ASSERT_TRUE(session->enter(environment("Secrets", {}, "echo 'openjd_redacted_env: K=s3cr3t'")));
  EXPECT_THAT(task_output(*session, "echo \"${K-unset} s3cr3t\""), ElementsAre("unset ********"));
  EXPECT_THAT(log_.text(), Not(HasSubstr("s3cr3t")));
}

TEST_F(SessionTest, EmbeddedFilesAreWrittenWithTheirModesAndResolvedData) {
  auto session = start();
  Step s;
  s.name = "Files";
  s.parameter_space.emplace();
  s.parameter_space->task_parameters.push_back({"Frame", TaskParameterType::kInt, {"7"}, {}, {}});
  EmbeddedFile data;
  data.name = "Data";
  data.data = "frame {{Task.Param.Frame}} in {{Session.WorkingDirectory}}\n";
  EmbeddedFile run;
  run.name = "Run";
  run.filename = "run.sh";
  run.runnable = true;
  run.data = "#!/bin/sh\nstat -c %a {{Task.File.Run}} {{Task.File.Data}}\ncat {{Task.File.Data}}\n";
  s.script.embedded_files = {data, run};
  Action action;
  action.command = "{{Task.File.Run}}";
  s.script.on_run = action;

  Result<ActionOutcome> outcome = session->run_task(s, {{"Frame", "7"}});
  ASSERT_TRUE(outcome) << outcome.error().reason;
  ASSERT_TRUE(outcome->succeeded()) << outcome->reason;
  EXPECT_THAT(outcome->output, ElementsAre("700", "600", "frame 7 in " + session->working_dir()));
  EXPECT_EQ(outcome->argv.at(0), session->working_dir() + "/embedded_files/run.sh");
}

TEST_F(SessionTest, EnvFilesResolveInVariablesAndActionsAndAreRewrittenForOnExit) {
  auto session = start();
  Environment env = environment("Config");
  env.script.emplace();
  EmbeddedFile config;
  config.name = "Config";
  config.data = "quality=high";
  env.script->embedded_files = {config};
  env.variables = {{"CONFIG_FILE", "{{Env.File.Config}}"}};
  env.script->on_enter = sh("cat {{Env.File.Config}}; echo; rm {{Env.File.Config}}");
  env.script->on_exit = sh("cat \"$CONFIG_FILE\"");

  Result<ActionOutcome> entered = session->enter(env);
  ASSERT_TRUE(entered && entered->succeeded());
  EXPECT_THAT(entered->output, ElementsAre("quality=high"));
  Result<ActionOutcome> exited = session->exit();
  ASSERT_TRUE(exited) << exited.error().reason;
  EXPECT_TRUE(exited->succeeded()) << exited->reason;
  EXPECT_THAT(exited->output, ElementsAre("quality=high"));
}

TEST_F(SessionTest, WorkingDirectoryIsPrivateExistsDuringAndIsGoneAfter) {
  std::string dir;
  {
    auto session = start();
    dir = session->working_dir();

    struct stat st {};

    ASSERT_EQ(stat(dir.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0700u);
    EXPECT_THAT(task_output(*session, "pwd; mkdir out; chmod 500 out"), ElementsAre(dir));
  }
  EXPECT_FALSE(std::filesystem::exists(dir));
  EXPECT_TRUE(root_.entries().empty());
}

TEST_F(SessionTest, PathMappingAppliesToPathParametersOnly) {
  SessionOptions options;
  options.job_parameters["Scene"] = {ParameterType::kPath, "/mnt/studio/shots/a.blend"};
  options.job_parameters["Label"] = {ParameterType::kString, "/mnt/studio/label"};
  options.path_mapping_rules = {{PathFormat::kPosix, "/mnt", "/wrong"},
                                {PathFormat::kPosix, "/mnt/studio", "/data/studio"},
                                {PathFormat::kWindows, "S:\\", "/data/s"}};
  auto session = start(options);
  Step s = step(
      "echo {{Param.Scene}} {{RawParam.Scene}} {{Param.Label}}; printf '%s %s\\n' "
      "'{{Task.Param.Out}}' "
      "'{{Task.RawParam.Out}}'; echo {{Session.HasPathMappingRules}}; cat "
      "{{Session.PathMappingRulesFile}}");
  s.parameter_space.emplace();
  s.parameter_space->task_parameters.push_back(
      {"Out", TaskParameterType::kPath, {"s:\\renders\\f.exr"}, {}, {}});
  Result<ActionOutcome> outcome = session->run_task(s, {{"Out", "s:\\renders\\f.exr"}});
  ASSERT_TRUE(outcome && outcome->succeeded());
  ASSERT_EQ(outcome->output.size(), 4u);
  EXPECT_EQ(outcome->output[0],
            "/data/studio/shots/a.blend /mnt/studio/shots/a.blend /mnt/studio/label");
  EXPECT_EQ(outcome->output[1], "/data/s/renders/f.exr s:\\renders\\f.exr");
  EXPECT_EQ(outcome->output[2], "true");
  EXPECT_THAT(outcome->output[3], HasSubstr("\"version\":\"pathmapping-1.0\""));
  EXPECT_THAT(outcome->output[3], HasSubstr("\"source_path\":\"/mnt/studio\""));
}

TEST_F(SessionTest, WithoutRulesTheRulesFileIsEmptyAndSaysSo) {
  auto session = start();
  EXPECT_THAT(task_output(*session,
                          "echo {{Session.HasPathMappingRules}}; cat "
                          "{{Session.PathMappingRulesFile}}"),
              ElementsAre("false", "{\"path_mapping_rules\":[],\"version\":\"pathmapping-1.0\"}"));
}

TEST_F(SessionTest, ExitCodeAndOpenjdFailAreTheReasonsAndFailTheSession) {
  auto session = start();
  ASSERT_TRUE(session->enter(environment("Env", {}, std::nullopt, "echo exiting")));
  Result<ActionOutcome> failed = session->run_task(step("exit 3"), {});
  ASSERT_TRUE(failed);
  EXPECT_EQ(failed->result, ActionResult::kFailed);
  EXPECT_EQ(failed->exit_code, 3);
  EXPECT_EQ(failed->reason, "exit code 3 from /bin/sh");
  EXPECT_TRUE(session->failed());

  Result<ActionOutcome> refused = session->run_task(step("echo never"), {});
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().reason, "session has failed: not running step Render");
  ASSERT_FALSE(session->enter(environment("Late", {{"A", "b"}})));

  std::vector<Result<ActionOutcome>> exits = session->exit_all();
  ASSERT_EQ(exits.size(), 1u);
  ASSERT_TRUE(exits[0]);
  EXPECT_THAT(exits[0]->output, ElementsAre("exiting"));
  EXPECT_THAT(log_.text(), Not(HasSubstr("never")));
}

TEST_F(SessionTest, OpenjdFailProgressAndStatusAreReported) {
  auto session = start();
  Result<ActionOutcome> outcome =
      session->run_task(step("echo 'openjd_progress: 40'; echo 'openjd_status: rendering';"
                             "echo 'openjd_fail: missing texture wood.exr'; exit 1"),
                        {});
  ASSERT_TRUE(outcome);
  EXPECT_EQ(outcome->result, ActionResult::kFailed);
  EXPECT_EQ(outcome->reason, "missing texture wood.exr");
  EXPECT_EQ(outcome->progress, 40.0);
  EXPECT_EQ(outcome->status, "rendering");
}

TEST_F(SessionTest, MalformedEnvLineFailsTheOnEnterAndItsEnvironmentIsStillExited) {
  auto session = start();
  Result<ActionOutcome> entered = session->enter(
      environment("Bad", {}, "echo 'openjd_env: NO_EQUALS_SIGN'; sleep 30", "echo exit ran"));
  ASSERT_TRUE(entered);
  EXPECT_EQ(entered->result, ActionResult::kFailed);
  EXPECT_EQ(entered->reason, "cannot read the environment variable assignment (NAME=VALUE)");
  EXPECT_EQ(entered->signal, SIGKILL);
  EXPECT_EQ(session->environments_entered(), 1u);
  std::vector<Result<ActionOutcome>> exits = session->exit_all();
  ASSERT_EQ(exits.size(), 1u);
  ASSERT_TRUE(exits[0] && exits[0]->succeeded());
  EXPECT_THAT(exits[0]->output, ElementsAre("exit ran"));
}

TEST_F(SessionTest, TimeoutKillsTheActionAndWhatItStarted) {
  auto session = start();
  Step s = step("sleep 60 & echo $!; wait");
  s.script.on_run->timeout_s = "1";
  Result<ActionOutcome> outcome = session->run_task(s, {});
  ASSERT_TRUE(outcome);
  EXPECT_EQ(outcome->result, ActionResult::kTimedOut);
  EXPECT_EQ(outcome->reason, "timed out after 1 s");
  EXPECT_EQ(outcome->signal, SIGKILL);
  ASSERT_EQ(outcome->output.size(), 1u);
  EXPECT_TRUE(ends(outcome->output[0]));  // the background sleep was in the group
  EXPECT_TRUE(session->failed());
}

TEST_F(SessionTest, LeftoverProcessesDieWhenTheActionEnds) {
  auto session = start();
  std::vector<std::string> out = task_output(*session, "sleep 60 & echo $!");
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(ends(out[0]));
}

TEST_F(SessionTest, CancelTerminateKillsTheGroupAtOnce) {
  auto session = start();
  std::thread canceller([&] {
    if (log_.await("started")) session->cancel();
  });
  Result<ActionOutcome> outcome =
      session->run_task(step("trap 'echo noticed; exit 0' TERM; echo started; sleep 60"), {});
  canceller.join();
  ASSERT_TRUE(outcome);
  EXPECT_EQ(outcome->result, ActionResult::kCancelled);
  EXPECT_EQ(outcome->reason, "cancelled");
  EXPECT_EQ(outcome->signal, SIGKILL);
  EXPECT_THAT(log_.lines(), Not(Contains("noticed")));
  EXPECT_TRUE(session->failed());
}

TEST_F(SessionTest, NotifyThenTerminateLetsATrapFinishCleanly) {
  auto session = start();
  Step s = step(
      "trap 'echo noticed > {{Session.WorkingDirectory}}/../notice; exit 0' TERM;"
      "echo started; while :; do sleep 0.05; done");
  s.script.on_run->cancelation = Cancelation{CancelationMode::kNotifyThenTerminate, "5"};
  std::thread canceller([&] {
    if (log_.await("started")) session->cancel();
  });
  Result<ActionOutcome> outcome = session->run_task(s, {});
  canceller.join();
  ASSERT_TRUE(outcome);
  EXPECT_EQ(outcome->result, ActionResult::kCancelled);
  EXPECT_EQ(outcome->exit_code, 0);
  EXPECT_EQ(read_file(root_.file("notice")), "noticed\n");
  EXPECT_THAT(read_file(session->working_dir() + "/cancel_info.json"),
              ::testing::MatchesRegex("\\{\"NotifyEnd\": \"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:"
                                      "[0-9]{2}:[0-9]{2}Z\"\\}\n"));
}

TEST_F(SessionTest, NotifyThenTerminateKillsAnActionThatCarriesOnAfterThePeriod) {
  SessionOptions options;
  options.max_notify_period = std::chrono::milliseconds(200);
  auto session = start(options);
  Step s = step("trap 'echo noticed' TERM; echo started; while :; do sleep 0.05; done");
  s.script.on_run->cancelation = Cancelation{CancelationMode::kNotifyThenTerminate, std::nullopt};
  std::thread canceller([&] {
    if (log_.await("started")) session->cancel();
  });
  Result<ActionOutcome> outcome = session->run_task(s, {});
  canceller.join();
  ASSERT_TRUE(outcome);
  EXPECT_EQ(outcome->result, ActionResult::kCancelled);
  EXPECT_EQ(outcome->signal, SIGKILL);
  EXPECT_THAT(outcome->output, Contains("noticed"));
}

TEST_F(SessionTest, CommandIsFoundOnTheSessionsPath) {
  TempDir bin("fh-session-bin");
  {
    std::ofstream tool(bin.file("fh-session-tool"));
    tool << "#!/bin/sh\necho tool ran with \"$1\"\n";
  }
  ASSERT_EQ(chmod(bin.file("fh-session-tool").c_str(), 0755), 0);
  auto session = start();
  Action tool;
  tool.command = "fh-session-tool";
  tool.args = {"x y"};
  Step s;
  s.name = "Tool";
  s.script.on_run = tool;
  Result<ActionOutcome> missing = session->run_task(s, {});
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->reason, "cannot start 'fh-session-tool': not found on the action's PATH");

  auto second = start();
  ASSERT_TRUE(second->enter(environment("Bin", {{"PATH", bin.path() + ":/usr/bin:/bin"}})));
  Result<ActionOutcome> found = second->run_task(s, {});
  ASSERT_TRUE(found);
  EXPECT_TRUE(found->succeeded()) << found->reason;
  EXPECT_THAT(found->output, ElementsAre("tool ran with x y"));
}

TEST_F(SessionTest, AProgramTheFarmDoesNotAllowIsNotStartedAndFailsTheSession) {
  SessionOptions options;
  std::vector<std::string> asked;
  options.allow_program = [&](const std::string& program) -> std::optional<std::string> {
    asked.push_back(program);
    if (program == "/bin/sh") return std::nullopt;
    return "not one of the programs this farm allows";
  };
  auto session = start(std::move(options));
  EXPECT_THAT(task_output(*session, "echo allowed"), ElementsAre("allowed"));
  Action cat;
  cat.command = "cat";
  cat.args = {"/etc/hostname"};
  Step s;
  s.name = "Cat";
  s.script.on_run = cat;
  Result<ActionOutcome> refused = session->run_task(s, {});
  ASSERT_TRUE(refused);
  EXPECT_FALSE(refused->succeeded());
  EXPECT_EQ(refused->reason, "cannot start 'cat': not one of the programs this farm allows");
  EXPECT_TRUE(session->failed());
  ASSERT_EQ(asked.size(), 2u);
  EXPECT_EQ(asked[0], "/bin/sh");
  EXPECT_EQ(asked[1].front(), '/');  // as found on PATH: /usr/bin/cat or /bin/cat
}

TEST_F(SessionTest, SimpleActionRunsItsScriptWithTheInterpreter) {
  Result<JobTemplate> parsed = parse_job_template(R"(
specificationVersion: jobtemplate-2023-09
extensions: [FEATURE_BUNDLE_1]
name: Sugar
steps:
- name: Bash
  parameterSpace:
    taskParameterDefinitions:
    - {name: Frame, type: INT, range: "3"}
  bash:
    args: ["{{Task.Param.Frame}}", "two words"]
    script: |
      echo "script $(basename "$0") frame $1 then $2"
)");
  ASSERT_TRUE(parsed) << parsed.error().reason;
  auto session = start();
  Result<ActionOutcome> outcome = session->run_task(parsed->steps[0], {{"Frame", "3"}});
  ASSERT_TRUE(outcome) << outcome.error().reason;
  ASSERT_TRUE(outcome->succeeded()) << outcome->reason;
  ASSERT_EQ(outcome->output.size(), 1u);
  EXPECT_THAT(outcome->output[0], ::testing::MatchesRegex("script .*\\.sh frame 3 then two words"));
  EXPECT_EQ(outcome->argv.at(0), "bash");
}

TEST_F(SessionTest, FormatStringTheSessionCannotResolveFailsTheSessionWithTheField) {
  auto session = start();
  Result<ActionOutcome> outcome = session->run_task(step("echo {{Task.Param.Nope}}"), {});
  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().reason, "step Render: args[1]: \"Task.Param.Nope\" has no value here");
  EXPECT_TRUE(session->failed());
}

}  // namespace
}  // namespace farmhand::openjd
