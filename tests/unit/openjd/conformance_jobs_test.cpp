// The Open Job Description conformance job runs (../shared/data/openjd-conformance,
// 2023-09, */jobs/*.test.yaml), one test case per file, as the upstream runner
// (conformance-tests/run_openjd_cli_tests.py) runs them with a CLI: the job is
// created from the `template`, the `parameters` and the `environments`
// (environment templates); a `.invalid.` file must be refused there. Otherwise
// one Session runs the job: the environment templates' environments and the
// job environments are entered, each step's tasks run in dependency order
// inside its step environments, and everything is exited. The output (what
// the actions logged, after "Running job '<name>'" as the reference CLIs
// print it) must contain each `expected.output` line (or one of an `anyOf`)
// and none of `expected.forbidden`. Files with a `runOn` without posix are skipped.
//
// The fixtures run `python`: a temporary bin directory with a `python` link to
// /usr/bin/python3 goes first on the actions' PATH.
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "openjd/job.h"
#include "openjd/local_run.h"
#include "openjd/session.h"
#include "openjd/template.h"
#include "tests/support/temp_dir.h"
#include "tests/unit/openjd/conformance_files.h"
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

namespace farmhand::openjd {
namespace {

namespace fs = std::filesystem;
using testing_support::TempDir;

using testing::conformance_dir;

std::vector<std::string> job_files() {
  return testing::conformance_files({"jobs"}, ".test.yaml");
}

// `node` as YAML text the template parser reads the same way: a quoted scalar
// (yaml-cpp tags it "!") stays a string, a plain one stays plain.
void emit(YAML::Emitter& out, const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      out << YAML::BeginMap;
      for (const auto& entry : node) {
        out << YAML::Key;
        emit(out, entry.first);
        out << YAML::Value;
        emit(out, entry.second);
      }
      out << YAML::EndMap;
      break;
    case YAML::NodeType::Sequence:
      out << YAML::BeginSeq;
      for (const auto& item : node) emit(out, item);
      out << YAML::EndSeq;
      break;
    case YAML::NodeType::Scalar:
      if (node.Tag() == "!") out << YAML::DoubleQuoted;
      out << node.Scalar();
      break;
    default:
      out << YAML::Null;
      break;
  }
}

std::string yaml_text(const YAML::Node& node) {
  YAML::Emitter out;
  emit(out, node);
  return out.c_str();
}

// What running a job showed.
struct JobRun {
  std::string output;   // every logged line, each ended by '\n'
  std::string failure;  // the first failure, empty when every action succeeded
  std::optional<int> failing_exit_code;
};

class ConformanceJobTest : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() {
    bin_ = new TempDir("fh-openjd-bin");
    fs::create_symlink("/usr/bin/python3", bin_->file("python"));
  }

  static void TearDownTestSuite() {
    delete bin_;
    bin_ = nullptr;
  }

  JobRun run(const JobTemplate& job_template, const Job& job,
             const std::vector<EnvironmentTemplate>& environments,
             std::vector<PathMappingRule> rules) {
    JobRun run;
    run.output = "Running job '" + job.name + "'\n";
    LocalRunOptions options;
    options.root_dir = work_.path();
    options.path_mapping_rules = std::move(rules);
    const char* path = std::getenv("PATH");
    options.env["PATH"] = bin_->path() + ":" + (path != nullptr ? path : "/usr/bin:/bin");
    options.log = [&run](const std::string& line) { run.output += line + "\n"; };
    const LocalRunResult result =
        run_job_locally(job_template, job, environments, std::move(options));
    run.failure = result.failure;
    run.failing_exit_code = result.failing_exit_code;
    return run;
  }

  static TempDir* bin_;
  TempDir work_{"fh-openjd-run"};
};

TempDir* ConformanceJobTest::bin_ = nullptr;

TEST_P(ConformanceJobTest, RunsAsExpected) {
  const fs::path path = conformance_dir() / GetParam();
  const bool invalid = GetParam().find(".invalid.") != std::string::npos;
  YAML::Node test;
  try {
    test = YAML::LoadFile(path.string());
  } catch (const YAML::Exception& e) {
    FAIL() << "cannot read " << path << ": " << e.what();
  }
  // A case for other systems only (runOn without posix) is still made as a
  // job, and must be made or refused as expected; it is not run here.
  bool runs_here = true;
  if (test["runOn"]) {
    runs_here = false;
    for (const auto& os : test["runOn"]) runs_here = runs_here || os.as<std::string>() == "posix";
  }

  // Job creation: everything a `.invalid.` file must be refused by.
  Result<JobTemplate> job_template = parse_job_template(yaml_text(test["template"]));
  std::vector<EnvironmentTemplate> environments;
  Result<Job> job = fail(ErrorCode::kInvalidArgument, "not created");
  if (job_template) {
    bool environments_ok = true;
    for (const auto& node : test["environments"]) {
      Result<EnvironmentTemplate> environment = parse_environment_template(yaml_text(node));
      if (!environment) {
        job = fail(environment.error());
        environments_ok = false;
        break;
      }
      environments.push_back(std::move(*environment));
    }
    if (environments_ok) {
      JobOptions options;
      for (const auto& entry : test["parameters"]) {
        options.values[entry.first.as<std::string>()] = entry.second.Scalar();
      }
      options.template_dir = path.parent_path().string();
      options.working_dir = work_.path();
      job = create_job(*job_template, options, environments);
    }
  } else {
    job = fail(job_template.error());
  }
  if (invalid) {
    EXPECT_FALSE(job) << "an invalid job was created";
    return;
  }
  ASSERT_TRUE(job) << job.error().reason;
  if (!runs_here) return;

  std::vector<PathMappingRule> rules;
  for (const auto& rule : test["pathMapping"]) {
    const std::string format = rule["source_path_format"].as<std::string>();
    rules.push_back({format == "WINDOWS" ? PathFormat::kWindows : PathFormat::kPosix,
                     rule["source_path"].as<std::string>(),
                     rule["destination_path"].as<std::string>()});
  }
  const JobRun run = this->run(*job_template, *job, environments, std::move(rules));

  const YAML::Node expected = test["expected"];
  const YAML::Node task_failure = expected["taskFailure"];
  if (task_failure) {
    EXPECT_FALSE(run.failure.empty()) << "expected a task failure\n" << run.output;
    if (task_failure["exitCode"]) {
      EXPECT_EQ(run.failing_exit_code, task_failure["exitCode"].as<int>()) << run.output;
    }
  } else {
    EXPECT_EQ(run.failure, "") << run.output;
  }
  for (const char* key : {"output", "output_posix"}) {
    for (const auto& line : expected[key]) {
      if (line.IsMap() && line["anyOf"]) {
        bool any = false;
        for (const auto& alternative : line["anyOf"]) {
          any = any || run.output.find(alternative.as<std::string>()) != std::string::npos;
        }
        EXPECT_TRUE(any) << "none of " << yaml_text(line["anyOf"]) << " in\n" << run.output;
      } else {
        EXPECT_NE(run.output.find(line.as<std::string>()), std::string::npos)
            << "missing " << line.as<std::string>() << " in\n"
            << run.output;
      }
    }
  }
  for (const char* key : {"forbidden", "forbidden_posix"}) {
    for (const auto& line : expected[key]) {
      EXPECT_EQ(run.output.find(line.as<std::string>()), std::string::npos)
          << "forbidden " << line.as<std::string>() << " in\n"
          << run.output;
    }
  }
}

std::string case_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string name;
  for (char c : info.param) {
    name += (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ? c : '_';
  }
  return name;
}

INSTANTIATE_TEST_SUITE_P(Jobs, ConformanceJobTest, ::testing::ValuesIn(job_files()), case_name);

// The suite must not pass by finding nothing.
TEST(ConformanceJobFilesTest, JobFilesAreFound) {
  EXPECT_FALSE(job_files().empty()) << "no job files under " << conformance_dir();
}

}  // namespace
}  // namespace farmhand::openjd
