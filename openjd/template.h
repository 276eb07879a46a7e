// Open Job Description (OpenJD) templates, specification 2023-09: parsing and
// validation of job templates (`jobtemplate-2023-09`) and environment templates
// (`environment-2023-09`), with the extensions TASK_CHUNKING, FEATURE_BUNDLE_1 and
// REDACTED_ENV_VARS.
//
// parse_template() reads YAML or JSON text and checks everything the
// specification decides without job parameter values: types, required and
// unknown fields, lengths and characters, counts, uniqueness, format-string
// syntax and the scope of every value reference, parameter constraints, range and
// combination expressions, the step dependency graph, host requirements and the
// extension gates. It returns a typed model, or an Error (kInvalidArgument) whose
// reason is one line naming the field path and the rule:
//   steps[1].parameterSpace.taskParameterDefinitions[0].range: 1025 items, at most 1024
//
// The model keeps values as written (a format string stays a string with its
// `{{ }}`; a number given as a number or a string keeps its text), so a later
// step can resolve it against job parameter values. Pure: no files, sockets or
// logging; the caller reads the text. Thread-safe: no shared state.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "common/result.h"

namespace farmhand::openjd {

inline constexpr std::string_view kJobTemplateVersion = "jobtemplate-2023-09";
inline constexpr std::string_view kEnvironmentTemplateVersion = "environment-2023-09";

struct Extensions {
  bool task_chunking = false;      // TASK_CHUNKING: CHUNK[INT] task parameters
  bool feature_bundle_1 = false;   // FEATURE_BUNDLE_1: longer limits, format-string
                                   // timeouts and amounts, endOfLine, simple actions
  bool redacted_env_vars = false;  // REDACTED_ENV_VARS: openjd_redacted_env (runtime only)
  std::vector<std::string> names;  // as listed in the template
};

enum class ParameterType { kString, kPath, kInt, kFloat };

std::string_view parameter_type_name(ParameterType type);

struct FileFilter {
  std::string label;
  std::vector<std::string> patterns;
};

struct UserInterface {
  std::optional<std::string> control;  // e.g. "SPIN_BOX", "CHECK_BOX"
  std::optional<std::string> label;
  std::optional<std::string> group_label;
  std::optional<int64_t> decimals;                // FLOAT
  std::optional<std::string> single_step_delta;   // INT or FLOAT, as written
  std::vector<FileFilter> file_filters;           // PATH
  std::optional<FileFilter> file_filter_default;  // PATH
};

// A job parameter definition. Values (default, allowedValues, minValue, maxValue)
// are kept as their text: an INT is its base-10 digits, a FLOAT as written.
struct JobParameterDefinition {
  std::string name;
  ParameterType type = ParameterType::kString;
  std::optional<std::string> description;
  std::optional<std::string> default_value;
  std::vector<std::string> allowed_values;
  std::optional<int64_t> min_length;  // STRING, PATH
  std::optional<int64_t> max_length;
  std::optional<std::string> min_value;  // INT, FLOAT
  std::optional<std::string> max_value;
  std::optional<std::string> object_type;  // PATH: FILE or DIRECTORY
  std::optional<std::string> data_flow;    // PATH: NONE, IN, OUT, INOUT
  std::optional<UserInterface> user_interface;
};

enum class CancelationMode { kTerminate, kNotifyThenTerminate };

struct Cancelation {
  CancelationMode mode = CancelationMode::kTerminate;
  // A positive integer, or (FEATURE_BUNDLE_1) a format string resolving to one.
  std::optional<std::string> notify_period_s;
};

struct Action {
  std::string command;  // format string
  std::vector<std::string> args;
  std::optional<std::string> timeout_s;  // as written (FEATURE_BUNDLE_1: format string)
  std::optional<Cancelation> cancelation;
};

struct EmbeddedFile {
  std::string name;
  std::string type = "TEXT";
  std::optional<std::string> filename;
  bool runnable = false;
  std::string data;                        // format string
  std::optional<std::string> end_of_line;  // FEATURE_BUNDLE_1: AUTO, LF, CRLF
};

// FEATURE_BUNDLE_1's syntactic sugar: `bash:`, `cmd:`, `node:`, `powershell:`, `python:`.
struct SimpleAction {
  std::string interpreter;  // "bash", "cmd", "node", "powershell" or "python"
  std::string script;       // format string
  std::vector<std::string> args;
  std::optional<std::string> timeout_s;
  std::optional<Cancelation> cancelation;
};

struct StepScript {
  std::optional<Action> on_run;  // actions.onRun; absent when `simple` is set
  std::vector<EmbeddedFile> embedded_files;
  std::optional<SimpleAction> simple;
};

struct EnvironmentScript {
  std::optional<Action> on_enter;
  std::optional<Action> on_exit;
  std::vector<EmbeddedFile> embedded_files;
};

struct Environment {
  std::string name;
  std::optional<std::string> description;
  std::optional<EnvironmentScript> script;
  std::vector<std::pair<std::string, std::string>> variables;  // in template order
};

enum class TaskParameterType { kInt, kFloat, kString, kPath, kChunkInt };

std::string_view task_parameter_type_name(TaskParameterType type);

struct Chunks {
  std::string default_task_count;               // integer or format string
  std::optional<std::string> target_runtime_s;  // integer or format string
  bool contiguous = true;                       // rangeConstraint
};

struct TaskParameterDefinition {
  std::string name;
  TaskParameterType type = TaskParameterType::kInt;
  // Either a list of values (as written) or, for INT and CHUNK[INT], a range
  // expression such as "1-10:2,20" (a format string).
  std::vector<std::string> range_list;
  std::optional<std::string> range_expression;
  std::optional<Chunks> chunks;  // CHUNK[INT] only
};

struct ParameterSpace {
  std::vector<TaskParameterDefinition> task_parameters;
  std::optional<std::string> combination;
};

struct AmountRequirement {
  std::string name;  // format string
  std::optional<std::string> min;
  std::optional<std::string> max;
};

struct AttributeRequirement {
  std::string name;  // format string
  std::vector<std::string> any_of;
  std::vector<std::string> all_of;
};

struct HostRequirements {
  std::vector<AmountRequirement> amounts;
  std::vector<AttributeRequirement> attributes;
};

struct Step {
  std::string name;
  std::optional<std::string> description;
  std::vector<std::string> dependencies;  // names of steps this one depends on
  std::vector<Environment> step_environments;
  std::optional<HostRequirements> host_requirements;
  std::optional<ParameterSpace> parameter_space;
  StepScript script;
};

struct JobTemplate {
  Extensions extensions;
  std::string name;  // format string
  std::optional<std::string> description;
  std::vector<JobParameterDefinition> parameter_definitions;
  std::vector<Environment> job_environments;
  std::vector<Step> steps;
};

struct EnvironmentTemplate {
  Extensions extensions;
  std::vector<JobParameterDefinition> parameter_definitions;
  Environment environment;
};

using Template = std::variant<JobTemplate, EnvironmentTemplate>;

// Parses and validates a template of either kind, told apart by its
// `specificationVersion`.
[[nodiscard]] Result<Template> parse_template(std::string_view text);

// The same, refusing the other kind.
[[nodiscard]] Result<JobTemplate> parse_job_template(std::string_view text);
[[nodiscard]] Result<EnvironmentTemplate> parse_environment_template(std::string_view text);

// After job creation resolved them: the rule a capability name
// (`[vendor:]amount.name[.name]`, `attr.` for an attribute; 3.3.1.1, 3.3.2.1)
// or a value of attribute `attribute` (3.3.2.2) breaks, or "" if none.
std::string capability_name_problem(const std::string& name, bool amount);
// The rule text breaks: valid UTF-8 of `min` to `max` characters (code points;
// max 0: any), and with `no_control` no Cc character. "" if none.
std::string text_problem(std::string_view text, size_t min, size_t max, bool no_control);
std::string attribute_value_problem(const std::string& attribute, const std::string& value);

// Checks a range expression such as "1-10:2,20" and returns its values in
// increasing order; refuses overlapping elements and more than `max_items` values.
[[nodiscard]] Result<std::vector<int64_t>> parse_int_range_expression(std::string_view text,
                                                                      size_t max_items = 1024);

}  // namespace farmhand::openjd
