// Job creation from a validated template: parameter values checked and made
// canonical, format strings resolved and checked again, parameter spaces
// expanded in the reference order, CHUNK[INT] chunked.
#include "openjd/job.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace farmhand::openjd {
namespace {

JobTemplate parsed(const std::string& text) {
  auto t = parse_job_template(text);
  EXPECT_TRUE(t.has_value()) << (t ? "" : t.error().reason) << "\n" << text;
  return t ? *t : JobTemplate{};
}

// A template with these parameter definitions and one step of `space`.
std::string job_text(const std::string& parameters, const std::string& space,
                     const std::string& top = "") {
  std::string text = "specificationVersion: jobtemplate-2023-09\n" + top + "name: Job\n";
  if (!parameters.empty()) text += "parameterDefinitions:\n" + parameters;
  text += "steps:\n- name: Render\n";
  if (!space.empty()) text += "  parameterSpace:\n" + space;
  return text + "  script:\n    actions:\n      onRun:\n        command: echo\n";
}

JobOptions with(std::map<std::string, std::string> values) {
  JobOptions options;
  options.values = std::move(values);
  options.template_dir = "/studio/templates";
  options.working_dir = "/home/ann/shot";
  return options;
}

std::string refusal(const std::string& text, const JobOptions& options = with({})) {
  auto job = create_job(parsed(text), options);
  return job ? "created" : job.error().reason;
}

// Each task as "A=1 B=x".
std::vector<std::string> tasks_of(const Job& job, size_t step = 0) {
  std::vector<std::string> out;
  for (const auto& task : job.steps.at(step).tasks) {
    std::string line;
    for (const auto& [name, value] : task) line += (line.empty() ? "" : " ") + name + "=" + value;
    out.push_back(line);
  }
  return out;
}

std::vector<std::string> tasks_of(const std::string& text, const JobOptions& options = with({})) {
  auto job = create_job(parsed(text), options);
  EXPECT_TRUE(job.has_value()) << (job ? "" : job.error().reason);
  return job ? tasks_of(*job) : std::vector<std::string>{};
}

using Lines = std::vector<std::string>;

TEST(JobTest, ParametersTakeTheGivenValueOrTheDefaultAndIntsAreCanonical) {
  const std::string text = job_text(R"(- name: Count
  type: INT
  default: '007'
- name: Scale
  type: FLOAT
- name: Shot
  type: STRING
  default: sh010
)",
                                    "", "");
  auto job = create_job(parsed(text), with({{"Scale", "3.141592653589793"}}));
  ASSERT_TRUE(job) << job.error().reason;
  EXPECT_EQ(job->parameters.at("Count").value, "7");
  EXPECT_EQ(job->parameters.at("Scale").value, "3.141592653589793");  // as written
  EXPECT_EQ(job->parameters.at("Shot").value, "sh010");
  ASSERT_EQ(job->steps.size(), 1u);
  EXPECT_EQ(tasks_of(*job), Lines{""}) << "a step without a parameter space has one task";

  EXPECT_EQ(refusal(text), "parameter Scale: no value given and no default");
  EXPECT_EQ(refusal(text, with({{"Scale", "1"}, {"Sacle", "2"}})),
            "unknown parameter \"Sacle\": the template does not define it");
  EXPECT_EQ(refusal(text, with({{"Scale", "fast"}})), "parameter Scale: \"fast\" is not a number");
}

TEST(JobTest, IntsAre64BitAndComparedAsNumbers) {
  const std::string text = job_text(R"(- name: Frame
  type: INT
  minValue: '9'
  maxValue: '9223372036854775807'
)",
                                    "");
  EXPECT_EQ(refusal(text, with({{"Frame", "9223372036854775807"}})), "created");
  EXPECT_EQ(refusal(text, with({{"Frame", "9223372036854775808"}})),
            "parameter Frame: \"9223372036854775808\" is not an integer in the 64-bit range");
  // "10" sorts before "9" as text, not as a number.
  EXPECT_EQ(refusal(text, with({{"Frame", "10"}})), "created");
  EXPECT_EQ(refusal(text, with({{"Frame", "8"}})),
            "parameter Frame: value 8 is less than the minimum 9");
  EXPECT_EQ(refusal(text, with({{"Frame", "1.5"}})),
            "parameter Frame: \"1.5\" is not an integer in the 64-bit range");
}

TEST(JobTest, AllowedValuesAndLengthsHoldForWhatWasSubmitted) {
  const std::string text = job_text(R"(- name: Quality
  type: FLOAT
  allowedValues: [0.5, 1]
- name: Config
  type: PATH
  allowedValues: [config/a, config/b]
  default: config/a
- name: Take
  type: STRING
  minLength: 2
  maxLength: 3
  default: t1
)",
                                    "");
  EXPECT_EQ(refusal(text, with({{"Quality", "1.0"}})), "created") << "1.0 is 1";
  EXPECT_EQ(refusal(text, with({{"Quality", "2"}})),
            "parameter Quality: value 2 is not one of the allowed values");
  EXPECT_EQ(refusal(text, with({{"Quality", "1"}, {"Config", "config/c"}})),
            "parameter Config: value \"config/c\" is not one of the allowed values");
  EXPECT_EQ(refusal(text, with({{"Quality", "1"}, {"Take", "take"}})),
            "parameter Take: value \"take\" is longer than 3 characters");
}

TEST(JobTest, PathsAreMadeAbsoluteAndADefaultStaysInTheTemplatesDirectory) {
  const std::string text = job_text(R"(- name: Scene
  type: PATH
  default: scenes/shot.ma
- name: Out
  type: PATH
  default: renders
)",
                                    "");
  auto job = create_job(parsed(text), with({{"Out", "out/../frames"}}));
  ASSERT_TRUE(job) << job.error().reason;
  EXPECT_EQ(job->parameters.at("Scene").value, "/studio/templates/scenes/shot.ma");
  EXPECT_EQ(job->parameters.at("Out").value, "/home/ann/shot/frames") << "given: from the cwd";
  auto absolute = create_job(parsed(text), with({{"Out", "/mnt/renders"}}));
  ASSERT_TRUE(absolute);
  EXPECT_EQ(absolute->parameters.at("Out").value, "/mnt/renders");

  // A Windows submitter's absolute paths stay as given, for path mapping to map.
  auto windows = create_job(parsed(text), with({{"Out", "Z:\\show\\sh010"}}));
  ASSERT_TRUE(windows);
  EXPECT_EQ(windows->parameters.at("Out").value, "Z:\\show\\sh010");
  auto unc = create_job(parsed(text), with({{"Out", "\\\\nas\\show"}}));
  ASSERT_TRUE(unc);
  EXPECT_EQ(unc->parameters.at("Out").value, "\\\\nas\\show");
  EXPECT_EQ(refusal(job_text("- name: Out\n  type: PATH\n  default: 'C:\\out'\n", "")),
            "parameter Out: default \"C:\\out\" must be relative to the template's directory");
  EXPECT_EQ(refusal(job_text("- name: Out\n  type: PATH\n  default: /tmp/out\n", "")),
            "parameter Out: default \"/tmp/out\" must be relative to the template's directory");
  EXPECT_EQ(refusal(job_text("- name: Out\n  type: PATH\n  default: a/../..\n", "")),
            "parameter Out: default \"a/../..\" leaves the template's directory");
}

TEST(JobTest, TheNameAndRangesAreResolvedAndCheckedAgain) {
  const std::string text = R"(specificationVersion: jobtemplate-2023-09
name: "{{Param.Shot}} comp"
parameterDefinitions:
- name: Shot
  type: STRING
- name: End
  type: INT
  default: 5
- name: Middle
  type: STRING
  default: '3'
steps:
- name: Render
  parameterSpace:
    taskParameterDefinitions:
    - name: Frame
      type: INT
      range: "1-{{Param.End}}:2"
  script:
    actions:
      onRun:
        command: echo
- name: List
  parameterSpace:
    taskParameterDefinitions:
    - name: Frame
      type: INT
      range: ["1", "{{Param.Middle}}", 10]
  script:
    actions:
      onRun:
        command: echo
)";
  auto job = create_job(parsed(text), with({{"Shot", "sh010"}}));
  ASSERT_TRUE(job) << job.error().reason;
  EXPECT_EQ(job->name, "sh010 comp");
  EXPECT_EQ(tasks_of(*job, 0), (Lines{"Frame=1", "Frame=3", "Frame=5"}));
  EXPECT_EQ(tasks_of(*job, 1), (Lines{"Frame=1", "Frame=3", "Frame=10"}));

  EXPECT_EQ(refusal(text, with({{"Shot", std::string(124, 'x')}})),
            "name: 129 characters, at most 128");
  EXPECT_EQ(refusal(text, with({{"Shot", "a"}, {"End", "5000"}})),
            "steps[0].parameterSpace.taskParameterDefinitions[0].range: range expression "
            "\"1-5000:2\": 2500 items, at most 1024");
  EXPECT_EQ(refusal(text, with({{"Shot", "a"}, {"Middle", "x"}})),
            "steps[1].parameterSpace.taskParameterDefinitions[0].range[1]: \"x\" is not an "
            "integer in the 64-bit range");
}

TEST(JobTest, SpacesExpandAsTheReferenceIteratesThem) {
  const std::string defs = R"(    taskParameterDefinitions:
    - name: A
      type: INT
      range: [1, 2, 3]
    - name: B
      type: STRING
      range: [x, y, z]
    - name: C
      type: INT
      range: "20-21"
)";
  // No combination: the product in definition order, the last parameter fastest.
  const Lines product = tasks_of(job_text("", defs));
  ASSERT_EQ(product.size(), 18u);
  EXPECT_EQ(product[0], "A=1 B=x C=20");
  EXPECT_EQ(product[1], "A=1 B=x C=21");
  EXPECT_EQ(product[2], "A=1 B=y C=20");
  EXPECT_EQ(product[17], "A=3 B=z C=21");
  EXPECT_EQ(tasks_of(job_text("", defs + "    combination: (A, B) * C\n")),
            (Lines{"A=1 B=x C=20", "A=1 B=x C=21", "A=2 B=y C=20", "A=2 B=y C=21", "A=3 B=z C=20",
                   "A=3 B=z C=21"}));
  // Order follows the expression: C outermost here.
  EXPECT_EQ(tasks_of(job_text("", defs + "    combination: C * (A, B)\n")),
            (Lines{"A=1 B=x C=20", "A=2 B=y C=20", "A=3 B=z C=20", "A=1 B=x C=21", "A=2 B=y C=21",
                   "A=3 B=z C=21"}));
  // Lengths a format string decides are checked once it is resolved.
  std::string late = defs;
  late.replace(late.find("\"20-21\""), 7, "\"20-{{Param.End}}\"");
  const std::string end = "- name: End\n  type: INT\n  default: 21\n";
  EXPECT_EQ(refusal(job_text(end, late + "    combination: (A, B * C)\n")),
            "steps[0].parameterSpace.combination: the members of an associative group differ "
            "in length (3 and 6 values)");
  EXPECT_EQ(refusal(job_text(end, late + "    combination: (A, B) * C\n")), "created");
  JobOptions small = with({});
  small.max_tasks_per_step = 10;
  EXPECT_EQ(refusal(job_text("", defs), small),
            "steps[0].parameterSpace: 18 tasks, at most 10 in one step");
}

TEST(JobTest, ChunkedFramesAreBalancedChunksSizedByAParameter) {
  const std::string text = job_text(R"(- name: ChunkSize
  type: INT
  default: 3
)",
                                    R"(    taskParameterDefinitions:
    - name: Frame
      type: CHUNK[INT]
      range: "1-8"
      chunks:
        defaultTaskCount: "{{Param.ChunkSize}}"
        targetRuntimeSeconds: 0
        rangeConstraint: CONTIGUOUS
    - name: Layer
      type: STRING
      range: [fg, bg]
)",
                                    "extensions: [TASK_CHUNKING]\n");
  auto job = create_job(parsed(text), with({}));
  ASSERT_TRUE(job) << job.error().reason;
  EXPECT_EQ(tasks_of(*job),
            (Lines{"Frame=1-3 Layer=fg", "Frame=1-3 Layer=bg", "Frame=4-6 Layer=fg",
                   "Frame=4-6 Layer=bg", "Frame=7-8 Layer=fg", "Frame=7-8 Layer=bg"}));
  EXPECT_EQ(job->steps[0].chunked_parameter, "Frame");
  EXPECT_EQ(job->steps[0].chunk_size, 3u);
  EXPECT_EQ(job->steps[0].chunk_values.size(), 8u);
  EXPECT_EQ(refusal(text, with({{"ChunkSize", "0"}})),
            "steps[0].parameterSpace.taskParameterDefinitions[0].chunks.defaultTaskCount: 0 is "
            "less than 1");
}

TEST(JobTest, HostRequirementNamesAndValuesAreCheckedOnceResolved) {
  const std::string text = job_text(R"(- name: First
  type: STRING
  default: amount.custom.licenses
- name: Second
  type: STRING
  default: amount.custom.tokens
- name: Software
  type: STRING
  default: nuke
)",
                                    "");
  const std::string with_requirements =
      text.substr(0, text.find("  script:")) + R"(  hostRequirements:
    amounts:
    - name: "{{Param.First}}"
      min: 1
    - name: "{{Param.Second}}"
      min: 1
    attributes:
    - name: attr.custom.software
      anyOf: ["{{Param.Software}}"]
)" + text.substr(text.find("  script:"));
  auto job = create_job(parsed(with_requirements), with({}));
  ASSERT_TRUE(job) << job.error().reason;
  EXPECT_EQ(job->steps[0].amounts.at(1).name, "amount.custom.tokens");
  EXPECT_EQ(job->steps[0].attributes.at(0).any_of, std::vector<std::string>{"nuke"});
  EXPECT_EQ(refusal(with_requirements, with({{"Second", "amount.custom.licenses"}})),
            "steps[0].hostRequirements.amounts[1].name: duplicate amount name "
            "\"amount.custom.licenses\"");
  EXPECT_EQ(refusal(with_requirements, with({{"First", "amount.worker.licenses"}})),
            "steps[0].hostRequirements.amounts[0].name: \"amount.worker.licenses\" is not a "
            "standard capability, and amount.worker is reserved");
  EXPECT_EQ(refusal(with_requirements, with({{"Software", "not valid!"}})),
            "steps[0].hostRequirements.attributes[0].anyOf[0]: \"not valid!\" is not a valid "
            "value (latin letters, digits, _ and -, starting with a letter or _)");
}

TEST(JobTest, EnvironmentTemplatesDefineParametersTheJobTemplateMayNarrow) {
  auto env = parse_environment_template(R"(specificationVersion: environment-2023-09
parameterDefinitions:
- name: Licence
  type: STRING
  default: studio
- name: Threads
  type: INT
  default: 8
environment:
  name: Setup
  variables:
    LICENCE: "{{Param.Licence}}"
)");
  ASSERT_TRUE(env) << env.error().reason;
  const std::string text = job_text("- name: Threads\n  type: INT\n  default: 16\n", "");
  auto job = create_job(parsed(text), with({}), {*env});
  ASSERT_TRUE(job) << job.error().reason;
  EXPECT_EQ(job->parameters.at("Licence").value, "studio");
  EXPECT_EQ(job->parameters.at("Threads").value, "16") << "the job template's default is last";
  auto clash =
      create_job(parsed(job_text("- name: Threads\n  type: STRING\n", "")), with({}), {*env});
  ASSERT_FALSE(clash);
  EXPECT_EQ(clash.error().reason,
            "parameterDefinitions: parameter \"Threads\" is defined differently by an environment "
            "template and this one");
}

}  // namespace
}  // namespace farmhand::openjd
