// farmhand's own cases for the Open Job Description validator: for each family of
// rules at least one accepted and one refused template, and the exact one-line
// reason for some.
#include "openjd/template.h"

#include <string>

#include <gtest/gtest.h>

namespace farmhand::openjd {
namespace {

// A job template: `top` is inserted before `steps:`, `steps` is the list.
std::string job(const std::string& steps, const std::string& top = "") {
  return "specificationVersion: jobtemplate-2023-09\nname: Job\n" + top + "steps:\n" + steps;
}

const std::string kEchoStep = R"(- name: S
  script:
    actions:
      onRun:
        command: echo
)";

// A step with a parameter space of one INT parameter ranging over `range`.
std::string frame_step(const std::string& name, const std::string& range) {
  return "- name: " + name +
         "\n  parameterSpace:\n    taskParameterDefinitions:\n    - name: Frame\n      type: INT\n"
         "      range: " +
         range + "\n  script:\n    actions:\n      onRun:\n        command: echo\n";
}

std::string reason(const std::string& text) {
  auto result = parse_template(text);
  return result ? "accepted" : result.error().reason;
}

void expect_ok(const std::string& text) {
  auto result = parse_template(text);
  EXPECT_TRUE(result.has_value()) << result.error().reason << "\n" << text;
}

TEST(TemplateTest, ParsesAJobTemplateIntoTheModel) {
  auto t = parse_job_template(job(frame_step("Render", "\"1-10:2,20\"") + R"(  hostRequirements:
    amounts:
    - name: amount.worker.vcpu
      min: 4
  dependencies:
  - dependsOn: Prep
- name: Prep
  script:
    actions:
      onRun:
        command: "{{Param.Tool}}"
        args: ["--in", "{{Param.In}}"]
        timeout: 60
        cancelation:
          mode: NOTIFY_THEN_TERMINATE
          notifyPeriodInSeconds: 30
)",
                                  R"(description: "two steps"
parameterDefinitions:
- name: Tool
  type: STRING
  default: echo
- name: In
  type: PATH
  objectType: FILE
- name: Count
  type: INT
  default: "7"
)"));
  ASSERT_TRUE(t.has_value()) << t.error().reason;
  EXPECT_EQ(t->name, "Job");
  ASSERT_EQ(t->parameter_definitions.size(), 3u);
  EXPECT_EQ(t->parameter_definitions[1].type, ParameterType::kPath);
  EXPECT_EQ(t->parameter_definitions[2].default_value, "7");
  ASSERT_EQ(t->steps.size(), 2u);
  EXPECT_EQ(t->steps[0].dependencies, std::vector<std::string>{"Prep"});
  ASSERT_TRUE(t->steps[0].parameter_space.has_value());
  EXPECT_EQ(t->steps[0].parameter_space->task_parameters[0].range_expression, "1-10:2,20");
  EXPECT_EQ(t->steps[0].host_requirements->amounts[0].min, "4");
  const Action& run = *t->steps[1].script.on_run;
  EXPECT_EQ(run.command, "{{Param.Tool}}");
  EXPECT_EQ(run.args, (std::vector<std::string>{"--in", "{{Param.In}}"}));
  EXPECT_EQ(run.timeout_s, "60");
  EXPECT_EQ(run.cancelation->mode, CancelationMode::kNotifyThenTerminate);
  EXPECT_EQ(run.cancelation->notify_period_s, "30");
}

TEST(TemplateTest, ReadsJsonAsWellAsYaml) {
  expect_ok(R"({"specificationVersion": "jobtemplate-2023-09", "name": "J",
    "steps": [{"name": "S", "script": {"actions": {"onRun": {"command": "echo"}}}}]})");
  EXPECT_NE(reason("{\"specificationVersion\": "), "accepted");
}

TEST(TemplateTest, TellsTheKindFromTheSpecificationVersion) {
  const std::string env = R"(specificationVersion: environment-2023-09
environment:
  name: E
  variables:
    DIR: "{{Session.WorkingDirectory}}"
)";
  EXPECT_TRUE(parse_environment_template(env).has_value());
  EXPECT_FALSE(parse_job_template(env).has_value());
  EXPECT_EQ(reason("specificationVersion: jobtemplate-2024-01\nname: J\n"),
            "specificationVersion: \"jobtemplate-2024-01\" is not jobtemplate-2023-09 or "
            "environment-2023-09");
}

TEST(TemplateTest, CountsRangeItemsUpTo1024) {
  expect_ok(job(frame_step("A", "\"1-1024\"")));
  EXPECT_EQ(reason(job(kEchoStep + frame_step("B", "\"1-1025\""))),
            "steps[1].parameterSpace.taskParameterDefinitions[0].range: 1025 items, at most 1024");
}

TEST(TemplateTest, RefusesUnknownFields) {
  EXPECT_EQ(reason(job(R"(- name: S
  script:
    actions:
      onRun:
        comand: echo
)")),
            "steps[0].script.actions.onRun.comand: unknown field");
  EXPECT_EQ(reason(job(kEchoStep, "colour: blue\n")), "colour: unknown field");
  expect_ok(job(kEchoStep, "$schema: https://example.com/schema.json\n"));
}

TEST(TemplateTest, RequiresFieldsAndTheirTypes) {
  EXPECT_EQ(reason("specificationVersion: jobtemplate-2023-09\nname: J\n"),
            "steps: required field missing");
  EXPECT_EQ(reason(job("- name: S\n")), "steps[0].script: required field missing");
  EXPECT_EQ(reason(job(R"(- name: 42
  script: {actions: {onRun: {command: echo}}}
)")),
            "steps[0].name: must be a string, not an integer");
  expect_ok(job(R"(- name: "42"
  script: {actions: {onRun: {command: echo}}}
)"));
}

TEST(TemplateTest, ChecksNamesAndLengths) {
  EXPECT_EQ(reason(job(kEchoStep, "parameterDefinitions:\n- {name: 1st, type: STRING}\n")),
            "parameterDefinitions[0].name: \"1st\" is not an identifier (latin letters, digits "
            "and _, not starting with a digit)");
  expect_ok(job(kEchoStep, "parameterDefinitions:\n- {name: _first, type: STRING}\n"));
  const std::string long_name(129, 'x');
  EXPECT_EQ(reason("specificationVersion: jobtemplate-2023-09\nname: " + long_name + "\nsteps:\n" +
                   kEchoStep),
            "name: 129 characters, at most 128");
  EXPECT_EQ(reason(job(kEchoStep + kEchoStep)), "steps[1].name: duplicate step name \"S\"");
  EXPECT_EQ(reason(job(kEchoStep, "description: \"a\\x07b\"\n")),
            "description: control character U+0007 not allowed");
  expect_ok(job(kEchoStep, "description: \"line one\\nline two\"\n"));
}

TEST(TemplateTest, ChecksFormatStringScopes) {
  const std::string params = "parameterDefinitions:\n- {name: Dir, type: PATH}\n";
  // Task parameters exist only in the step's script.
  EXPECT_EQ(reason("specificationVersion: jobtemplate-2023-09\nname: \"{{Task.Param.Frame}}\"\n"
                   "steps:\n" +
                   frame_step("A", "[1]")),
            "name: value reference {{Task.Param.Frame}} is not available in this field");
  EXPECT_EQ(reason(job(R"(- name: S
  script:
    actions:
      onRun:
        command: echo
        args: ["{{Param.Nope}}"]
)")),
            "steps[0].script.actions.onRun.args[0]: value reference {{Param.Nope}} is not defined");
  // A PATH parameter is path-mapped only on the worker: RawParam anywhere, Param in scripts.
  expect_ok("specificationVersion: jobtemplate-2023-09\nname: \"{{RawParam.Dir}}\"\n" + params +
            "steps:\n" + kEchoStep);
  EXPECT_EQ(reason("specificationVersion: jobtemplate-2023-09\nname: \"{{Param.Dir}}\"\n" + params +
                   "steps:\n" + kEchoStep),
            "name: value reference {{Param.Dir}} is not available in this field");
  expect_ok(job(R"(- name: S
  parameterSpace:
    taskParameterDefinitions:
    - {name: Frame, type: INT, range: [1, 2]}
  script:
    embeddedFiles:
    - {name: Run, type: TEXT, data: "echo {{Task.Param.Frame}} {{Param.Dir}}"}
    actions:
      onRun:
        command: "{{Task.File.Run}}"
        args: ["{{Session.WorkingDirectory}}", "{{Task.RawParam.Frame}}"]
)",
                params));
  // Env.File belongs to environments, Session.* to sessions.
  EXPECT_EQ(reason(job(R"(- name: S
  script:
    actions:
      onRun:
        command: "{{Env.File.X}}"
)")),
            "steps[0].script.actions.onRun.command: value reference {{Env.File.X}} is not defined");
  EXPECT_EQ(reason(job(frame_step("A", "[\"{{Session.WorkingDirectory}}\"]"))),
            "steps[0].parameterSpace.taskParameterDefinitions[0].range[0]: value reference "
            "{{Session.WorkingDirectory}} is not available in this field");
}

TEST(TemplateTest, AcceptsOnlyValueReferencesInFormatStrings) {
  EXPECT_EQ(reason(job(R"(- name: S
  script:
    actions:
      onRun:
        command: "{{ Param.X"
)")),
            "steps[0].script.actions.onRun.command: unclosed \"{{\" in format string");
  EXPECT_NE(reason(job(R"(- name: S
  script:
    actions:
      onRun:
        command: "{{ 1 + 2 }}"
)"))
                .find("the EXPR extension"),
            std::string::npos);
  expect_ok(job(R"(- name: S
  script:
    actions:
      onRun:
        command: "{{   Session.WorkingDirectory   }}/run"
)"));
}

TEST(TemplateTest, ChecksParameterDefinitions) {
  expect_ok(job(kEchoStep, R"(parameterDefinitions:
- {name: N, type: INT, minValue: "9", maxValue: "10", default: 10}
- {name: F, type: FLOAT, minValue: 0.5, maxValue: "2", allowedValues: [0.5, "1.5"], default: 1.5}
- {name: S, type: STRING, minLength: 2, maxLength: 4, allowedValues: [ab, abcd], default: ab}
)"));
  // 9 < 10 as numbers even though "9" > "10" as text.
  EXPECT_EQ(reason(job(kEchoStep,
                       "parameterDefinitions:\n- {name: N, type: INT, minValue: \"10\", "
                       "maxValue: \"9\"}\n")),
            "parameterDefinitions[0].maxValue: maxValue 9 is less than minValue 10");
  EXPECT_EQ(
      reason(job(kEchoStep, "parameterDefinitions:\n- {name: S, type: STRING, default: 5}\n")),
      "parameterDefinitions[0].default: must be a string, not an integer");
  EXPECT_EQ(reason(job(kEchoStep,
                       "parameterDefinitions:\n- {name: S, type: STRING, minLength: 3, "
                       "default: ab}\n")),
            "parameterDefinitions[0].default: 2 characters, shorter than minLength 3");
  EXPECT_EQ(reason(job(kEchoStep,
                       "parameterDefinitions:\n- {name: F, type: FLOAT, default: "
                       "\"1e400\"}\n")),
            "parameterDefinitions[0].default: 1e400 is out of the floating-point range");
  EXPECT_EQ(reason(job(kEchoStep, "parameterDefinitions:\n- {name: B, type: BOOL}\n")),
            "parameterDefinitions[0].type: type BOOL needs the EXPR extension");
  EXPECT_EQ(reason(job(kEchoStep,
                       "parameterDefinitions:\n- {name: P, type: PATH, objectType: "
                       "FILE, userInterface: {control: CHOOSE_DIRECTORY}}\n")),
            "parameterDefinitions[0].userInterface.control: CHOOSE_DIRECTORY cannot be used with "
            "objectType FILE");
}

TEST(TemplateTest, KeepsIntsWithin64Bits) {
  expect_ok(job(kEchoStep,
                "parameterDefinitions:\n- {name: N, type: INT, default: "
                "9223372036854775807, minValue: \"-9223372036854775808\"}\n"));
  EXPECT_EQ(reason(job(kEchoStep,
                       "parameterDefinitions:\n- {name: N, type: INT, default: "
                       "\"9223372036854775808\"}\n")),
            "parameterDefinitions[0].default: 9223372036854775808 is out of the 64-bit integer "
            "range");
}

TEST(TemplateTest, ParsesRangeExpressions) {
  auto values = parse_int_range_expression("1-10:2,20");
  ASSERT_TRUE(values.has_value()) << values.error().reason;
  EXPECT_EQ(*values, (std::vector<int64_t>{1, 3, 5, 7, 9, 20}));
  EXPECT_EQ(*parse_int_range_expression("10-1:-3"), (std::vector<int64_t>{1, 4, 7, 10}));
  EXPECT_EQ(*parse_int_range_expression(" -1 - 1 "), (std::vector<int64_t>{-1, 0, 1}));
  EXPECT_EQ(*parse_int_range_expression("1 - -1"), (std::vector<int64_t>{1}));
  EXPECT_EQ(parse_int_range_expression("1-10:4,10-15").error().reason,
            "range expression \"1-10:4,10-15\": elements overlap");
  EXPECT_FALSE(parse_int_range_expression("1-10:0").has_value());
  EXPECT_FALSE(parse_int_range_expression("1,,2").has_value());
  EXPECT_FALSE(parse_int_range_expression("a-b").has_value());
  EXPECT_FALSE(parse_int_range_expression("1-100000000000").has_value());
  // A range given through a parameter is checked when the job is made.
  expect_ok(job(frame_step("A", "\"{{Param.Frames}}\""),
                "parameterDefinitions:\n- {name: Frames, type: STRING}\n"));
}

TEST(TemplateTest, ChecksCombinationExpressions) {
  auto step = [](const std::string& combination) {
    return job(R"(- name: S
  parameterSpace:
    taskParameterDefinitions:
    - {name: A, type: INT, range: [1, 2, 3]}
    - {name: B, type: STRING, range: [x, y, z]}
    - {name: C, type: FLOAT, range: [0.5, 1]}
    combination: ")" +
               combination +
               R"("
  script: {actions: {onRun: {command: echo}}}
)");
  };
  expect_ok(step("(A, B) * C"));
  expect_ok(step("C * (B, A)"));
  EXPECT_EQ(reason(step("(A, C) * B")),
            "steps[0].parameterSpace.combination: the members of an associative group differ in "
            "length (3 and 2 values)");
  EXPECT_EQ(reason(step("A * B * A * C")),
            "steps[0].parameterSpace.combination: task parameter \"A\" appears more than once");
  EXPECT_EQ(reason(step("A * B")),
            "steps[0].parameterSpace.combination: task parameter \"C\" is missing");
  EXPECT_EQ(reason(step("A * B C")),
            "steps[0].parameterSpace.combination: unexpected text at character 7");
}

TEST(TemplateTest, ChecksTheDependencyGraph) {
  auto step = [](const std::string& name, const std::string& on) {
    return "- name: " + name + "\n  dependencies:\n  - dependsOn: " + on +
           "\n  script: {actions: {onRun: {command: echo}}}\n";
  };
  expect_ok(job(step("A", "B") + step("B", "C") + kEchoStep.substr(0, 0) +
                "- name: C\n  script: {actions: {onRun: {command: echo}}}\n"));
  EXPECT_EQ(reason(job(step("A", "B") + step("B", "C") + step("C", "A"))),
            "steps[0].dependencies: dependency cycle: A -> B -> C -> A");
  EXPECT_EQ(reason(job(step("A", "A"))),
            "steps[0].dependencies[0].dependsOn: a step cannot depend on itself");
  EXPECT_EQ(reason(job(step("A", "Z"))), "steps[0].dependencies[0].dependsOn: unknown step \"Z\"");
}

TEST(TemplateTest, ChecksHostRequirements) {
  auto step = [](const std::string& requirements) {
    return job("- name: S\n  hostRequirements:\n" + requirements +
               "  script: {actions: {onRun: {command: echo}}}\n");
  };
  expect_ok(
      step("    amounts:\n    - {name: acme:amount.licenses.nuke, min: 1, max: 2.5}\n"
           "    attributes:\n    - {name: attr.worker.os.family, anyOf: [linux]}\n"
           "    - {name: attr.site, allOf: [london, some_tag]}\n"));
  EXPECT_EQ(reason(step("    amounts:\n    - {name: amount.worker.vcpu, min: 8, max: 4}\n")),
            "steps[0].hostRequirements.amounts[0].max: max 4 is less than min 8");
  EXPECT_EQ(reason(step("    attributes:\n    - {name: attr.worker.os.family, allOf: [linux, "
                        "windows]}\n")),
            "steps[0].hostRequirements.attributes[0].allOf: attr.worker.os.family has one value "
            "at a time");
  EXPECT_EQ(reason(step("    amounts:\n    - {name: amount.task.x, min: 1}\n")),
            "steps[0].hostRequirements.amounts[0].name: \"amount.task.x\" is not a standard "
            "capability, and amount.task is reserved");
  std::string many = "    attributes:\n";
  for (int i = 0; i < 51; ++i) {
    many += "    - {name: attr.a" + std::to_string(i) + ", anyOf: [x]}\n";
  }
  EXPECT_EQ(reason(step(many)), "steps[0].hostRequirements: 51 requirements, at most 50");
}

TEST(TemplateTest, ChecksCancelationAndTimeouts) {
  auto step = [](const std::string& extra) {
    return job("- name: S\n  script:\n    actions:\n      onRun:\n        command: echo\n" + extra);
  };
  expect_ok(
      step("        cancelation: {mode: NOTIFY_THEN_TERMINATE, notifyPeriodInSeconds: 600}\n"));
  expect_ok(step("        cancelation: {mode: TERMINATE}\n"));
  EXPECT_EQ(reason(step("        cancelation: {mode: NOTIFY_THEN_TERMINATE, "
                        "notifyPeriodInSeconds: 601}\n")),
            "steps[0].script.actions.onRun.cancelation.notifyPeriodInSeconds: 601 is greater "
            "than 600");
  EXPECT_EQ(reason(step("        cancelation: {mode: TERMINATE, notifyPeriodInSeconds: 5}\n")),
            "steps[0].script.actions.onRun.cancelation.notifyPeriodInSeconds: unknown field");
  EXPECT_EQ(reason(step("        timeout: 0\n")),
            "steps[0].script.actions.onRun.timeout: 0 is not a positive integer");
}

TEST(TemplateTest, ChecksEmbeddedFiles) {
  auto step = [](const std::string& files) {
    return job("- name: S\n  script:\n    embeddedFiles:\n" + files +
               "    actions: {onRun: {command: \"{{Task.File.A}}\"}}\n");
  };
  expect_ok(step("    - {name: A, type: TEXT, data: x, filename: run.sh, runnable: true}\n"));
  EXPECT_EQ(reason(step("    - {name: A, type: TEXT, data: x, filename: bin/run.sh}\n")),
            "steps[0].script.embeddedFiles[0].filename: must be a file name, without a directory");
  EXPECT_EQ(reason(step("    - {name: A, type: TEXT, data: x}\n    - {name: A, type: TEXT, data: "
                        "y}\n")),
            "steps[0].script.embeddedFiles[1].name: duplicate embedded file name \"A\"");
  EXPECT_EQ(reason(step("    - {name: A, type: BINARY, data: x}\n")),
            "steps[0].script.embeddedFiles[0].type: \"BINARY\" is not one of TEXT");
  EXPECT_EQ(reason(step("    - {name: A, type: TEXT, data: x, runnable: \"yes\"}\n")),
            "steps[0].script.embeddedFiles[0].runnable: must be a boolean, not a string");
}

TEST(TemplateTest, ChecksEnvironments) {
  const std::string env = R"(jobEnvironments:
- name: Env
  script:
    embeddedFiles: [{name: Setup, type: TEXT, data: "echo"}]
    actions:
      onEnter: {command: bash, args: ["{{Env.File.Setup}}"]}
)";
  expect_ok(job(kEchoStep, env));
  EXPECT_EQ(reason(job(R"(- name: S
  stepEnvironments:
  - {name: Env, variables: {A: b}}
  script: {actions: {onRun: {command: echo}}}
)",
                       env)),
            "steps[0].stepEnvironments[0].name: environment name \"Env\" is already used in this "
            "step or by a job environment");
  EXPECT_EQ(reason(job(kEchoStep, "jobEnvironments:\n- {name: E, variables: {1A: b}}\n")),
            "jobEnvironments[0].variables.1A: variable names are 1 to 256 latin letters, digits "
            "and _, not starting with a digit");
  EXPECT_EQ(reason(job(kEchoStep, "jobEnvironments:\n- {name: E}\n")),
            "jobEnvironments[0]: needs a script or variables, or both");
}

TEST(TemplateTest, GatesExtensionFields) {
  const std::string chunk_step = R"(- name: S
  parameterSpace:
    taskParameterDefinitions:
    - name: Frame
      type: CHUNK[INT]
      range: "1-5000"
      chunks: {defaultTaskCount: 10, rangeConstraint: CONTIGUOUS}
  script: {actions: {onRun: {command: echo}}}
)";
  EXPECT_EQ(reason(job(chunk_step)),
            "steps[0].parameterSpace.taskParameterDefinitions[0].type: CHUNK[INT] needs the "
            "TASK_CHUNKING extension");
  expect_ok(job(chunk_step, "extensions: [TASK_CHUNKING]\n"));
  const std::string bash_step = "- name: S\n  bash: {script: echo hi, timeout: \"30\"}\n";
  EXPECT_EQ(reason(job(bash_step)), "steps[0].bash: needs the FEATURE_BUNDLE_1 extension");
  expect_ok(job(bash_step, "extensions: [FEATURE_BUNDLE_1]\n"));
  EXPECT_EQ(reason(job(R"(- name: S
  script: {actions: {onRun: {command: echo, timeout: "30"}}}
)")),
            "steps[0].script.actions.onRun.timeout: a string here needs the FEATURE_BUNDLE_1 "
            "extension");
  const std::string long_step =
      "- name: " + std::string(100, 's') + "\n  script: {actions: {onRun: {command: echo}}}\n";
  EXPECT_EQ(reason(job(long_step)), "steps[0].name: 100 characters, at most 64");
  expect_ok(job(long_step, "extensions: [FEATURE_BUNDLE_1]\n"));
  expect_ok(job(kEchoStep, "extensions: [REDACTED_ENV_VARS]\n"));
  EXPECT_EQ(reason(job(kEchoStep, "extensions: [TELEPORT]\n")),
            "extensions[0]: unsupported extension TELEPORT (supported: TASK_CHUNKING, "
            "FEATURE_BUNDLE_1, REDACTED_ENV_VARS)");
  EXPECT_EQ(reason(job(kEchoStep, "extensions: []\n")), "extensions: must not be empty when given");
  EXPECT_EQ(reason(job(kEchoStep, "extensions: [task_chunking]\n")),
            "extensions[0]: \"task_chunking\" is not an extension name ([A-Z_0-9]{3,128})");
}

TEST(TemplateTest, ReasonsAreOneLine) {
  auto result = parse_template(job(kEchoStep,
                                   "parameterDefinitions:\n- {name: \"a\\nb\", type: "
                                   "STRING}\n"));
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().reason.find('\n'), std::string::npos) << result.error().reason;
  EXPECT_EQ(result.error().code, ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace farmhand::openjd
