#include "openjd/job.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <set>

#include "openjd/chunks.h"
#include "openjd/combination.h"
#include <fmt/format.h>

namespace farmhand::openjd {
namespace {

// A check that failed: the one line create_job returns (as the validator
// does, each check is one line and the reason leaves only through Result).
struct Refused {
  std::string reason;
};

[[noreturn]] void refuse(const std::string& path, const std::string& rule) {
  throw Refused{path.empty() ? rule : path + ": " + rule};
}

std::string at(const std::string& path, size_t i) {
  return fmt::format("{}[{}]", path, i);
}

std::string_view trimmed(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

// A base-10 integer (an optional sign, then digits) in the 64-bit range.
std::optional<int64_t> to_int(std::string_view text) {
  text = trimmed(text);
  if (!text.empty() && text.front() == '+') text.remove_prefix(1);
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// A base-10 number, integer or not, finite.
std::optional<double> to_number(std::string_view text) {
  text = trimmed(text);
  if (!text.empty() && text.front() == '+') text.remove_prefix(1);
  double value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size() ||
      !std::isfinite(value)) {
    return std::nullopt;
  }
  return value;
}

int64_t int_value(std::string_view text, const std::string& path) {
  auto value = to_int(text);
  if (!value) {
    refuse(path, fmt::format("\"{}\" is not an integer in the 64-bit range", printable(text)));
  }
  return *value;
}

double number_value(std::string_view text, const std::string& path) {
  auto value = to_number(text);
  if (!value) refuse(path, fmt::format("\"{}\" is not a number", printable(text)));
  return *value;
}

void check_text(std::string_view text, const std::string& path, size_t min, size_t max,
                bool no_control) {
  if (std::string problem = text_problem(text, min, max, no_control); !problem.empty()) {
    refuse(path, problem);
  }
}

// ------------------------------------------------------------ job parameters

class Creator {
 public:
  Creator(const JobTemplate& t, const JobOptions& options) : t_(t), options_(options) {}

  Job create(const std::vector<EnvironmentTemplate>& environments) {
    Job job;
    const auto definitions = merged_definitions(environments);
    for (const auto& [name, value] : options_.values) {
      if (std::none_of(definitions.begin(), definitions.end(),
                       [&](const JobParameterDefinition& d) { return d.name == name; })) {
        refuse("", fmt::format("unknown parameter \"{}\": the template does not define it",
                               printable(name)));
      }
    }
    for (const JobParameterDefinition& d : definitions) {
      ParameterValue value = parameter(d);
      symbols_["Param." + d.name] = value.value;
      symbols_["RawParam." + d.name] = value.value;
      job.parameters.emplace(d.name, std::move(value));
    }
    job.name = resolve(t_.name, "name");
    check_text(job.name, "name", 1, t_.extensions.feature_bundle_1 ? 512 : 128, true);
    for (size_t i = 0; i < t_.steps.size(); ++i) {
      job.steps.push_back(step(t_.steps[i], at("steps", i)));
    }
    return job;
  }

 private:
  // The environment templates' definitions first, then the job template's: a
  // later definition of a name must have its type (and a PATH its object type
  // and data flow); its default, if it has one, wins.
  std::vector<JobParameterDefinition> merged_definitions(
      const std::vector<EnvironmentTemplate>& environments) const {
    std::vector<JobParameterDefinition> out;
    auto merge = [&out](const JobParameterDefinition& d, const std::string& where) {
      auto it = std::find_if(out.begin(), out.end(),
                             [&](const JobParameterDefinition& o) { return o.name == d.name; });
      if (it == out.end()) {
        out.push_back(d);
        return;
      }
      if (it->type != d.type || it->object_type != d.object_type || it->data_flow != d.data_flow) {
        refuse(where, fmt::format("parameter \"{}\" is defined differently by an environment "
                                  "template and this one",
                                  d.name));
      }
      std::optional<std::string> default_value =
          d.default_value ? d.default_value : it->default_value;
      *it = d;
      it->default_value = std::move(default_value);
    };
    for (size_t e = 0; e < environments.size(); ++e) {
      for (const auto& d : environments[e].parameter_definitions) {
        merge(d, fmt::format("environment template {}", e + 1));
      }
    }
    for (const auto& d : t_.parameter_definitions) merge(d, "parameterDefinitions");
    return out;
  }

  ParameterValue parameter(const JobParameterDefinition& d) {
    const std::string path = fmt::format("parameter {}", d.name);
    auto given = options_.values.find(d.name);
    const bool is_given = given != options_.values.end();
    if (!is_given && !d.default_value) refuse(path, "no value given and no default");
    const std::string raw = is_given ? given->second : *d.default_value;
    const std::string what = is_given ? "value" : "default";
    ParameterValue out{d.type, raw};
    switch (d.type) {
      case ParameterType::kString:
      case ParameterType::kPath: {
        // Constraints hold for the value as submitted (a PATH before it is made absolute).
        check_text(raw, path, 0, 1024, false);
        const size_t length = text_length(raw);
        if (d.min_length && static_cast<int64_t>(length) < *d.min_length) {
          refuse(path, fmt::format("{} \"{}\" is shorter than {} characters", what, printable(raw),
                                   *d.min_length));
        }
        if (d.max_length && static_cast<int64_t>(length) > *d.max_length) {
          refuse(path, fmt::format("{} \"{}\" is longer than {} characters", what, printable(raw),
                                   *d.max_length));
        }
        if (!d.allowed_values.empty() && std::find(d.allowed_values.begin(), d.allowed_values.end(),
                                                   raw) == d.allowed_values.end()) {
          refuse(path,
                 fmt::format("{} \"{}\" is not one of the allowed values", what, printable(raw)));
        }
        if (d.type == ParameterType::kPath) out.value = absolute_path(raw, is_given, path);
        break;
      }
      case ParameterType::kInt: {
        const int64_t v = int_value(raw, path);
        out.value = std::to_string(v);
        auto bound = [&](const std::optional<std::string>& b) {
          return b ? std::optional<int64_t>(int_value(*b, path)) : std::nullopt;
        };
        if (auto lo = bound(d.min_value); lo && v < *lo) {
          refuse(path, fmt::format("{} {} is less than the minimum {}", what, v, *lo));
        }
        if (auto hi = bound(d.max_value); hi && v > *hi) {
          refuse(path, fmt::format("{} {} is more than the maximum {}", what, v, *hi));
        }
        if (!d.allowed_values.empty() &&
            std::none_of(d.allowed_values.begin(), d.allowed_values.end(),
                         [&](const std::string& a) { return to_int(a) == v; })) {
          refuse(path, fmt::format("{} {} is not one of the allowed values", what, v));
        }
        break;
      }
      case ParameterType::kFloat: {
        const double v = number_value(raw, path);
        out.value = std::string(trimmed(raw));  // as written
        if (d.min_value && v < number_value(*d.min_value, path)) {
          refuse(path,
                 fmt::format("{} {} is less than the minimum {}", what, out.value, *d.min_value));
        }
        if (d.max_value && v > number_value(*d.max_value, path)) {
          refuse(path,
                 fmt::format("{} {} is more than the maximum {}", what, out.value, *d.max_value));
        }
        if (!d.allowed_values.empty() &&
            std::none_of(d.allowed_values.begin(), d.allowed_values.end(),
                         [&](const std::string& a) { return to_number(a) == v; })) {
          refuse(path, fmt::format("{} {} is not one of the allowed values", what, out.value));
        }
        break;
      }
    }
    return out;
  }

  static size_t text_length(std::string_view text) {
    // Code points: every byte that does not continue a UTF-8 sequence.
    return static_cast<size_t>(std::count_if(text.begin(), text.end(), [](char c) {
      return (static_cast<unsigned char>(c) & 0xC0) != 0x80;
    }));
  }

  // A given relative path is the submitter's, from their working directory; a
  // default is relative to the template's directory, and may not leave it.
  std::string absolute_path(const std::string& raw, bool given, const std::string& path) const {
    namespace fs = std::filesystem;
    if (raw.empty()) return raw;
    const fs::path value(raw);
    // A template may come from another OS: "Z:\show\sh010" and "\\server\share"
    // are absolute there, and path mapping rules (WINDOWS) make them this
    // host's paths. They are kept as given.
    const bool windows_absolute =
        (raw.size() >= 3 && std::isalpha(static_cast<unsigned char>(raw[0])) && raw[1] == ':' &&
         (raw[2] == '\\' || raw[2] == '/')) ||
        raw.rfind("\\\\", 0) == 0;
    if (given) {
      if (windows_absolute) return raw;
      return value.is_absolute()
                 ? value.lexically_normal().string()
                 : (fs::path(options_.working_dir) / value).lexically_normal().string();
    }
    if (value.is_absolute() || windows_absolute) {
      refuse(path, fmt::format("default \"{}\" must be relative to the template's directory",
                               printable(raw)));
    }
    const fs::path dir = fs::path(options_.template_dir).lexically_normal();
    const fs::path joined = (dir / value).lexically_normal();
    const fs::path inside = joined.lexically_relative(dir);
    if (inside.empty() || *inside.begin() == "..") {
      refuse(path, fmt::format("default \"{}\" leaves the template's directory", printable(raw)));
    }
    return joined.string();
  }

  std::string resolve(const std::string& text, const std::string& path) const {
    auto resolved = resolve_format_string(text, symbols_);
    if (!resolved) refuse(path, resolved.error().reason);
    return *resolved;
  }

  // ------------------------------------------------------------ steps

  CreatedStep step(const Step& s, const std::string& path) {
    CreatedStep out;
    out.name = s.name;
    out.dependencies = s.dependencies;
    if (s.host_requirements)
      host_requirements(*s.host_requirements, path + ".hostRequirements", out);
    if (!s.parameter_space) {
      out.tasks.emplace_back();
      return out;
    }
    const std::string space_path = path + ".parameterSpace";
    const auto& definitions = s.parameter_space->task_parameters;
    std::map<std::string, std::vector<std::string>> values;
    for (size_t i = 0; i < definitions.size(); ++i) {
      values[definitions[i].name] =
          task_values(definitions[i], at(space_path + ".taskParameterDefinitions", i), out);
    }
    CombNode tree;
    if (s.parameter_space->combination) {
      auto parsed = parse_combination(*s.parameter_space->combination);
      if (!parsed) refuse(space_path + ".combination", parsed.error().reason);
      tree = std::move(*parsed);
    } else {
      tree.product = true;  // every parameter with every other, in definition order
      for (const auto& d : definitions) tree.children.push_back(CombNode{d.name, {}, false, false});
    }
    const uint64_t count = task_count(tree, values, space_path + ".combination");
    if (count > options_.max_tasks_per_step) {
      refuse(space_path,
             fmt::format("{} tasks, at most {} in one step", count, options_.max_tasks_per_step));
    }
    std::vector<std::map<std::string, std::string>> rows = expand(tree, values);
    out.tasks.reserve(rows.size());
    for (auto& row : rows) {
      TaskParameters task;
      for (const auto& d : definitions) task.emplace_back(d.name, std::move(row[d.name]));
      out.tasks.push_back(std::move(task));
    }
    return out;
  }

  // The values a task parameter takes, as `{{Task.Param.X}}` substitutes them;
  // a CHUNK[INT] parameter's are its chunks.
  std::vector<std::string> task_values(const TaskParameterDefinition& d, const std::string& path,
                                       CreatedStep& step) {
    const std::string range_path = path + ".range";
    const bool chunked = d.type == TaskParameterType::kChunkInt;
    std::vector<std::string> out;
    std::vector<int64_t> ints;
    if (d.range_expression) {
      const std::string text = resolve(*d.range_expression, range_path);
      // A chunked range is a frame range and may be long; chunks keep its tasks few.
      auto parsed = parse_int_range_expression(text, chunked ? kMaxChunkedValues : 1024);
      if (!parsed) refuse(range_path, parsed.error().reason);
      ints = std::move(*parsed);
    } else {
      for (size_t i = 0; i < d.range_list.size(); ++i) {
        const std::string item_path = at(range_path, i);
        std::string value = resolve(d.range_list[i], item_path);
        switch (d.type) {
          case TaskParameterType::kInt:
          case TaskParameterType::kChunkInt:
            ints.push_back(int_value(value, item_path));
            break;
          case TaskParameterType::kFloat:
            number_value(value, item_path);
            out.push_back(std::string(trimmed(value)));
            break;
          case TaskParameterType::kString:
          case TaskParameterType::kPath:
            check_text(value, item_path, 1, 1024, false);
            out.push_back(std::move(value));
            break;
        }
      }
    }
    if (!chunked) {
      for (int64_t v : ints) out.push_back(std::to_string(v));
      return out;
    }
    std::sort(ints.begin(), ints.end());
    ints.erase(std::unique(ints.begin(), ints.end()), ints.end());
    const Chunks& chunks = *d.chunks;
    const std::string chunks_path = path + ".chunks";
    const int64_t size =
        int_value(resolve(chunks.default_task_count, chunks_path + ".defaultTaskCount"),
                  chunks_path + ".defaultTaskCount");
    if (size < 1) refuse(chunks_path + ".defaultTaskCount", fmt::format("{} is less than 1", size));
    int64_t target = 0;
    if (chunks.target_runtime_s) {
      const std::string target_path = chunks_path + ".targetRuntimeSeconds";
      target = int_value(resolve(*chunks.target_runtime_s, target_path), target_path);
      if (target < 0) refuse(target_path, fmt::format("{} is negative", target));
    }
    step.chunked_parameter = d.name;
    step.chunk_size = static_cast<uint64_t>(size);
    step.target_runtime_s = static_cast<uint64_t>(target);
    step.contiguous = chunks.contiguous;
    step.chunk_values = ints;
    return chunks.contiguous ? contiguous_chunks(step.chunk_size, ints)
                             : noncontiguous_chunks(step.chunk_size, ints);
  }

  // The tasks `node` makes; groups must have members of one length.
  static uint64_t task_count(const CombNode& node,
                             const std::map<std::string, std::vector<std::string>>& values,
                             const std::string& path) {
    if (!node.product && !node.group) return values.at(node.name).size();
    uint64_t total = node.product ? 1 : 0;
    for (size_t i = 0; i < node.children.size(); ++i) {
      const uint64_t n = task_count(node.children[i], values, path);
      if (node.product) {
        total = (n != 0 && total > UINT64_MAX / n) ? UINT64_MAX : total * n;
      } else if (i == 0) {
        total = n;
      } else if (n != total) {
        refuse(path, fmt::format("the members of an associative group differ in length ({} and "
                                 "{} values)",
                                 total, n));
      }
    }
    return total;
  }

  // Products row-major (the rightmost member moves fastest), groups member by member.
  static std::vector<std::map<std::string, std::string>> expand(
      const CombNode& node, const std::map<std::string, std::vector<std::string>>& values) {
    std::vector<std::map<std::string, std::string>> rows;
    if (!node.product && !node.group) {
      for (const std::string& v : values.at(node.name)) rows.push_back({{node.name, v}});
      return rows;
    }
    for (size_t i = 0; i < node.children.size(); ++i) {
      auto child = expand(node.children[i], values);
      if (i == 0) {
        rows = std::move(child);
      } else if (node.group) {
        for (size_t r = 0; r < rows.size(); ++r) rows[r].merge(child[r]);
      } else {
        std::vector<std::map<std::string, std::string>> product;
        product.reserve(rows.size() * child.size());
        for (const auto& row : rows) {
          for (const auto& c : child) {
            auto combined = row;
            combined.insert(c.begin(), c.end());
            product.push_back(std::move(combined));
          }
        }
        rows = std::move(product);
      }
    }
    return rows;
  }

  // Names and numbers given as format strings are checked once resolved.
  void host_requirements(const HostRequirements& hr, const std::string& path, CreatedStep& out) {
    std::set<std::string> names;
    auto lower = [](std::string s) {
      for (char& c : s) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
      return s;
    };
    for (size_t i = 0; i < hr.amounts.size(); ++i) {
      const std::string a_path = at(path + ".amounts", i);
      AmountRequirement a = hr.amounts[i];
      a.name = resolve(a.name, a_path + ".name");
      if (std::string p = capability_name_problem(a.name, true); !p.empty()) {
        refuse(a_path + ".name", p);
      }
      if (!names.insert(lower(a.name)).second) {
        refuse(a_path + ".name", fmt::format("duplicate amount name \"{}\"", printable(a.name)));
      }
      std::optional<double> lo;
      std::optional<double> hi;
      if (a.min) {
        a.min = resolve(*a.min, a_path + ".min");
        lo = number_value(*a.min, a_path + ".min");
        if (*lo < 0) refuse(a_path + ".min", fmt::format("{} is negative", *a.min));
      }
      if (a.max) {
        a.max = resolve(*a.max, a_path + ".max");
        hi = number_value(*a.max, a_path + ".max");
        if (*hi <= 0) refuse(a_path + ".max", fmt::format("{} is not positive", *a.max));
      }
      if (lo && hi && *lo > *hi) {
        refuse(a_path + ".max", fmt::format("max {} is less than min {}", *a.max, *a.min));
      }
      out.amounts.push_back(std::move(a));
    }
    for (size_t i = 0; i < hr.attributes.size(); ++i) {
      const std::string a_path = at(path + ".attributes", i);
      AttributeRequirement a = hr.attributes[i];
      a.name = resolve(a.name, a_path + ".name");
      if (std::string p = capability_name_problem(a.name, false); !p.empty()) {
        refuse(a_path + ".name", p);
      }
      if (!names.insert(lower(a.name)).second) {
        refuse(a_path + ".name", fmt::format("duplicate attribute name \"{}\"", printable(a.name)));
      }
      for (auto* list : {&a.any_of, &a.all_of}) {
        const std::string l_path = a_path + (list == &a.any_of ? ".anyOf" : ".allOf");
        for (size_t k = 0; k < list->size(); ++k) {
          (*list)[k] = resolve((*list)[k], at(l_path, k));
          if (std::string p = attribute_value_problem(a.name, (*list)[k]); !p.empty()) {
            refuse(at(l_path, k), p);
          }
        }
      }
      out.attributes.push_back(std::move(a));
    }
  }

  static constexpr size_t kMaxChunkedValues = 10'000'000;

  const JobTemplate& t_;
  const JobOptions& options_;
  std::map<std::string, std::string> symbols_;  // Param.* and RawParam.*
};

}  // namespace

Result<Job> create_job(const JobTemplate& job_template, const JobOptions& options,
                       const std::vector<EnvironmentTemplate>& environments) {
  try {
    return Creator(job_template, options).create(environments);
  } catch (const Refused& refused) {
    return fail(ErrorCode::kInvalidArgument, refused.reason);
  }
}

std::vector<const CreatedStep*> dependency_order(const Job& job) {
  std::vector<const CreatedStep*> order;
  std::set<std::string> done;
  while (order.size() < job.steps.size()) {
    const size_t before = order.size();
    for (const CreatedStep& step : job.steps) {
      if (done.count(step.name) != 0) continue;
      const bool ready = std::all_of(step.dependencies.begin(), step.dependencies.end(),
                                     [&](const std::string& d) { return done.count(d) != 0; });
      if (!ready) continue;
      order.push_back(&step);
      done.insert(step.name);
    }
    if (order.size() == before) break;  // a cycle: the validator refuses those
  }
  return order;
}

}  // namespace farmhand::openjd
