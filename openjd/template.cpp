#include "openjd/template.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <map>
#include <set>

#include "openjd/combination.h"
#include "openjd/format_string.h"
#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

// Validation walks the YAML tree once. The first broken rule ends it: it is
// thrown as Invalid, which never leaves this file (parse_template turns it into
// an Error), so each check is one line instead of a Result chain.

namespace farmhand::openjd {

namespace {

// 128 bits: range expression counts and products cannot overflow.
__extension__ typedef __int128 Int128;

struct Invalid {
  std::string reason;
};

[[noreturn]] void invalid(const std::string& path, const std::string& rule) {
  throw Invalid{path.empty() ? rule : path + ": " + rule};
}

std::string key_path(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

std::string index_path(const std::string& path, size_t i) {
  return fmt::format("{}[{}]", path, i);
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return out;
}

// ------------------------------------------------------------ text rules

// Code points of UTF-8 text; nullopt when it is not valid UTF-8.
std::optional<std::vector<char32_t>> code_points(std::string_view s) {
  std::vector<char32_t> out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    int extra = 0;
    char32_t cp = 0;
    if (b < 0x80) {
      cp = b;
    } else if ((b & 0xE0) == 0xC0) {
      cp = b & 0x1F;
      extra = 1;
    } else if ((b & 0xF0) == 0xE0) {
      cp = b & 0x0F;
      extra = 2;
    } else if ((b & 0xF8) == 0xF0) {
      cp = b & 0x07;
      extra = 3;
    } else {
      return std::nullopt;
    }
    for (int k = 1; k <= extra; ++k) {
      if (i + k >= s.size()) return std::nullopt;
      const auto c = static_cast<unsigned char>(s[i + k]);
      if ((c & 0xC0) != 0x80) return std::nullopt;
      cp = (cp << 6) | (c & 0x3F);
    }
    out.push_back(cp);
    i += 1 + extra;
  }
  return out;
}

bool is_cc(char32_t cp) {
  return cp <= 0x1F || (cp >= 0x7F && cp <= 0x9F);
}

size_t char_count(std::string_view s) {
  auto cps = code_points(s);
  return cps ? cps->size() : s.size();
}

struct TextRule {
  size_t min = 0;
  size_t max = 0;  // 0: no maximum
  bool no_cc = false;
  bool allow_newlines = false;  // with no_cc: CR, LF and TAB are still allowed
};

void check_text(const std::string& path, std::string_view s, const TextRule& rule,
                bool literal_only = false) {
  auto cps = code_points(s);
  if (!cps) invalid(path, "not valid UTF-8");
  if (!literal_only && cps->size() < rule.min) {
    invalid(path, rule.min == 1 ? "must not be empty"
                                : fmt::format("{} characters, at least {}", cps->size(), rule.min));
  }
  if (rule.max != 0 && cps->size() > rule.max) {
    invalid(path, fmt::format("{} characters, at most {}", cps->size(), rule.max));
  }
  if (rule.no_cc) {
    for (char32_t cp : *cps) {
      if (!is_cc(cp)) continue;
      if (rule.allow_newlines && (cp == '\n' || cp == '\r' || cp == '\t')) continue;
      invalid(path,
              fmt::format("control character U+{:04X} not allowed", static_cast<uint32_t>(cp)));
    }
  }
}

// ------------------------------------------------------------ numbers

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// [-+]?[0-9]+
bool is_integer_text(std::string_view s) {
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) s.remove_prefix(1);
  return all_digits(s);
}

// [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
bool is_decimal_text(std::string_view s) {
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) s.remove_prefix(1);
  size_t i = 0;
  size_t int_digits = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i, ++int_digits;
  size_t frac_digits = 0;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i, ++frac_digits;
  }
  if (int_digits == 0 && frac_digits == 0) return false;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
    if (!all_digits(s.substr(i))) return false;
    return true;
  }
  return i == s.size();
}

std::optional<int64_t> to_int64(std::string_view s) {
  if (!s.empty() && s[0] == '+') s.remove_prefix(1);
  int64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

std::optional<double> to_double(std::string_view s) {
  std::string text(s);
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size()) return std::nullopt;
  if (!std::isfinite(v) || (errno == ERANGE && std::fabs(v) > 1.0)) return std::nullopt;
  return v;
}

// ------------------------------------------------------------ YAML values

// What a scalar is under the YAML 1.2 core schema: a quoted scalar (tag "!") is
// always a string; a plain one (tag "?") may be null, a bool or a number.
enum class Kind { kNull, kBool, kInt, kFloat, kString, kMap, kSeq };

Kind kind_of(const YAML::Node& n) {
  if (!n.IsDefined() || n.IsNull()) return Kind::kNull;
  if (n.IsMap()) return Kind::kMap;
  if (n.IsSequence()) return Kind::kSeq;
  if (n.Tag() != "?") return Kind::kString;
  const std::string& s = n.Scalar();
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return Kind::kNull;
  if (s == "true" || s == "True" || s == "TRUE" || s == "false" || s == "False" || s == "FALSE") {
    return Kind::kBool;
  }
  if (is_integer_text(s)) return Kind::kInt;
  if (is_decimal_text(s)) return Kind::kFloat;
  static const std::set<std::string> specials = {".inf",  ".Inf",  ".INF",  "+.inf",
                                                 "+.Inf", "+.INF", "-.inf", "-.Inf",
                                                 "-.INF", ".nan",  ".NaN",  ".NAN"};
  if (specials.count(s) != 0) return Kind::kFloat;
  return Kind::kString;
}

std::string_view kind_name(Kind k) {
  switch (k) {
    case Kind::kNull:
      return "null";
    case Kind::kBool:
      return "a boolean";
    case Kind::kInt:
      return "an integer";
    case Kind::kFloat:
      return "a number";
    case Kind::kString:
      return "a string";
    case Kind::kMap:
      return "a mapping";
    case Kind::kSeq:
      return "a list";
  }
  return "?";
}

std::string as_string(const YAML::Node& n, const std::string& path) {
  const Kind k = kind_of(n);
  if (k != Kind::kString) invalid(path, fmt::format("must be a string, not {}", kind_name(k)));
  return n.Scalar();
}

int64_t as_strict_int(const YAML::Node& n, const std::string& path) {
  const Kind k = kind_of(n);
  if (k != Kind::kInt) invalid(path, fmt::format("must be an integer, not {}", kind_name(k)));
  auto v = to_int64(n.Scalar());
  if (!v) invalid(path, fmt::format("{} is out of the 64-bit integer range", n.Scalar()));
  return *v;
}

bool as_bool(const YAML::Node& n, const std::string& path) {
  const Kind k = kind_of(n);
  if (k != Kind::kBool) invalid(path, fmt::format("must be a boolean, not {}", kind_name(k)));
  return ascii_lower(n.Scalar()) == "true";
}

const YAML::Node& as_seq(const YAML::Node& n, const std::string& path) {
  const Kind k = kind_of(n);
  if (k != Kind::kSeq) invalid(path, fmt::format("must be a list, not {}", kind_name(k)));
  return n;
}

void check_count(const YAML::Node& seq, const std::string& path, size_t min, size_t max) {
  const size_t n = seq.size();
  if (n < min) {
    invalid(path, min == 1 ? "must not be empty when given"
                           : fmt::format("{} items, at least {}", n, min));
  }
  if (max != 0 && n > max) invalid(path, fmt::format("{} items, at most {}", n, max));
}

// An INT value given as an integer or an integer string.
int64_t as_int_or_intstring(const YAML::Node& n, const std::string& path) {
  const Kind k = kind_of(n);
  if (k != Kind::kInt && k != Kind::kString) {
    invalid(path, fmt::format("must be an integer or an integer string, not {}", kind_name(k)));
  }
  const std::string& s = n.Scalar();
  if (!is_integer_text(s)) invalid(path, fmt::format("\"{}\" is not an integer", printable(s)));
  auto v = to_int64(s);
  if (!v) invalid(path, fmt::format("{} is out of the 64-bit integer range", printable(s)));
  return *v;
}

// A FLOAT value given as a number or a number string; finite.
double as_float_or_floatstring(const YAML::Node& n, const std::string& path) {
  const Kind k = kind_of(n);
  if (k != Kind::kInt && k != Kind::kFloat && k != Kind::kString) {
    invalid(path, fmt::format("must be a number or a number string, not {}", kind_name(k)));
  }
  const std::string& s = n.Scalar();
  if (!is_decimal_text(s))
    invalid(path, fmt::format("\"{}\" is not a finite number", printable(s)));
  auto v = to_double(s);
  if (!v) invalid(path, fmt::format("{} is out of the floating-point range", printable(s)));
  return *v;
}

// A mapping whose keys are checked against the fields its schema allows.
class Fields {
 public:
  // `gated`: fields that exist only with an extension, and whether it is on.
  Fields(const YAML::Node& node, std::string path, std::vector<std::string_view> allowed,
         std::vector<std::pair<std::string_view, std::string_view>> gated = {},
         const Extensions* ext = nullptr)
      : node_(node), path_(std::move(path)) {
    const Kind k = kind_of(node);
    if (k != Kind::kMap) invalid(path_, fmt::format("must be a mapping, not {}", kind_name(k)));
    for (const auto& entry : node) {
      const YAML::Node& key = entry.first;
      if (!key.IsScalar()) invalid(path_, "keys must be strings");
      const std::string& name = key.Scalar();
      if (!seen_.insert(name).second) invalid(key_path(path_, name), "duplicate key");
      if (std::find(allowed.begin(), allowed.end(), name) != allowed.end()) continue;
      bool handled = false;
      for (const auto& [field, extension] : gated) {
        if (field != name) continue;
        handled = true;
        if (!enabled(extension, ext)) {
          invalid(key_path(path_, name), fmt::format("needs the {} extension", extension));
        }
      }
      if (handled) continue;
      if (name == "let") invalid(key_path(path_, name), "needs the EXPR extension");
      invalid(key_path(path_, name), "unknown field");
    }
  }

  static bool enabled(std::string_view extension, const Extensions* ext) {
    if (ext == nullptr) return false;
    if (extension == "TASK_CHUNKING") return ext->task_chunking;
    if (extension == "FEATURE_BUNDLE_1") return ext->feature_bundle_1;
    if (extension == "REDACTED_ENV_VARS") return ext->redacted_env_vars;
    return false;
  }

  // Present and not null (an explicit null counts as absent, as in the
  // reference implementation).
  bool has(std::string_view key) const {
    return seen_.count(std::string(key)) != 0 && kind_of(node_[std::string(key)]) != Kind::kNull;
  }

  bool present(std::string_view key) const { return seen_.count(std::string(key)) != 0; }

  YAML::Node get(std::string_view key) const { return node_[std::string(key)]; }

  YAML::Node require(std::string_view key) const {
    if (!has(key)) invalid(path(key), "required field missing");
    return get(key);
  }

  std::string path(std::string_view key) const { return key_path(path_, key); }

  const std::string& path() const { return path_; }

 private:
  YAML::Node node_;  // a handle: a copy shares the document
  std::string path_;
  std::set<std::string> seen_;
};

// ------------------------------------------------------------ scopes

// The value references a format string may use where it is.
struct Scope {
  std::set<std::string> names;
};

// ------------------------------------------------------------ range expressions

struct RangeElement {
  int64_t start = 0;
  int64_t end = 0;
  int64_t step = 1;
  int64_t lo = 0;  // the written bounds, ordered: two elements overlap when these do
  int64_t hi = 0;
  Int128 count = 1;
};

std::string_view trim_ws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

Result<std::vector<RangeElement>> range_elements(std::string_view text) {
  std::vector<RangeElement> out;
  auto bad = [&](std::string_view why) {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("range expression \"{}\": {}", printable(text), why));
  };
  if (trim_ws(text).empty()) return bad("empty");
  size_t pos = 0;
  while (true) {
    const size_t comma = text.find(',', pos);
    std::string_view part =
        trim_ws(text.substr(pos, comma == std::string_view::npos ? text.npos : comma - pos));
    if (part.empty()) return bad("empty element");
    // <Int> [ <WS>* - <WS>* <Int> [ : <Skip> ] ], an <Int> having an optional "-".
    size_t i = 0;
    auto read_int = [&](int64_t& v) -> bool {
      while (i < part.size() && (part[i] == ' ' || part[i] == '\t')) ++i;
      const size_t begin = i;
      if (i < part.size() && (part[i] == '-' || part[i] == '+')) ++i;
      const size_t digits = i;
      while (i < part.size() && part[i] >= '0' && part[i] <= '9') ++i;
      if (i == digits) return false;
      auto parsed = to_int64(part.substr(begin, i - begin));
      if (!parsed) return false;
      v = *parsed;
      while (i < part.size() && (part[i] == ' ' || part[i] == '\t')) ++i;
      return true;
    };
    RangeElement e;
    if (!read_int(e.start)) return bad(fmt::format("\"{}\" is not an integer or a range", part));
    e.end = e.start;
    if (i < part.size()) {
      if (part[i] != '-') return bad(fmt::format("\"{}\" is not an integer or a range", part));
      ++i;
      if (!read_int(e.end)) return bad(fmt::format("\"{}\" is not a range", part));
      if (i < part.size()) {
        if (part[i] != ':') return bad(fmt::format("\"{}\" is not a range", part));
        ++i;
        if (!read_int(e.step) || i != part.size()) {
          return bad(fmt::format("\"{}\" has no valid step", part));
        }
        if (e.step == 0) return bad(fmt::format("\"{}\" has a step of 0", part));
      }
    }
    e.lo = std::min(e.start, e.end);
    e.hi = std::max(e.start, e.end);
    const Int128 span = static_cast<Int128>(e.end) - e.start;
    if ((span > 0 && e.step > 0) || (span < 0 && e.step < 0)) {
      e.count = span / e.step + 1;
    } else {
      e.count = 1;
    }
    out.push_back(e);
    if (comma == std::string_view::npos) break;
    pos = comma + 1;
  }
  std::vector<RangeElement> sorted = out;
  std::sort(sorted.begin(), sorted.end(),
            [](const RangeElement& a, const RangeElement& b) { return a.lo < b.lo; });
  for (size_t k = 1; k < sorted.size(); ++k) {
    if (sorted[k].lo <= sorted[k - 1].hi) return bad("elements overlap");
  }
  return out;
}

Int128 range_count(const std::vector<RangeElement>& elements) {
  Int128 total = 0;
  for (const auto& e : elements) total += e.count;
  return total;
}

// ------------------------------------------------------------ the validator

constexpr std::string_view kSessionNames[] = {
    "Session.WorkingDirectory", "Session.HasPathMappingRules", "Session.PathMappingRulesFile"};

const std::set<std::string> kStandardAmounts = {"amount.worker.vcpu", "amount.worker.memory",
                                                "amount.worker.gpu", "amount.worker.gpu.memory",
                                                "amount.worker.disk.scratch"};

const std::map<std::string, std::set<std::string>> kStandardAttributes = {
    {"attr.worker.os.family", {"linux", "windows", "macos"}},
    {"attr.worker.cpu.arch", {"x86_64", "arm64"}}};

const TextRule kDescription{1, 2048, true, true};
const TextRule kLabel{1, 64, true, false};

void capability_name(const std::string& name, const std::string& path, bool amount) {
  const std::string prefix = amount ? "amount." : "attr.";
  const std::string n = ascii_lower(name);
  // [<Identifier>:](amount|attr).<Identifier>[.<Identifier>]*
  std::string vendor;
  std::string rest = n;
  if (const size_t colon = n.find(':'); colon != std::string::npos) {
    vendor = n.substr(0, colon);
    rest = n.substr(colon + 1);
    if (!is_identifier(vendor)) {
      invalid(path, fmt::format("vendor prefix \"{}\" is not an identifier", printable(vendor)));
    }
  }
  bool ok = rest.rfind(prefix, 0) == 0;
  std::vector<std::string> parts;
  if (ok) {
    std::string_view tail(rest);
    tail.remove_prefix(prefix.size());
    size_t pos = 0;
    while (true) {
      const size_t dot = tail.find('.', pos);
      parts.emplace_back(tail.substr(pos, dot == std::string_view::npos ? tail.npos : dot - pos));
      if (!is_identifier(parts.back())) ok = false;
      if (dot == std::string_view::npos) break;
      pos = dot + 1;
    }
  }
  if (!ok) {
    invalid(path, fmt::format("\"{}\" does not match [vendor:]{}name[.name]...", printable(name),
                              prefix));
  }
  if (vendor.empty() &&
      (amount ? kStandardAmounts.count(n) != 0 : kStandardAttributes.count(n) != 0)) {
    return;
  }
  static const std::set<std::string> kReserved = {"worker", "job", "step", "task"};
  if (kReserved.count(parts[0]) != 0) {
    invalid(path, fmt::format("\"{}\" is not a standard capability, and {}{} is reserved",
                              printable(name), prefix, parts[0]));
  }
}

// A value of an attribute requirement: one of a standard attribute's values,
// else latin letters, digits, _ and -, starting with a letter or _.
void attribute_value(std::map<std::string, std::set<std::string>>::const_iterator standard,
                     const std::string& v, const std::string& v_path) {
  if (standard != kStandardAttributes.end()) {
    if (standard->second.count(v) == 0) {
      std::string list;
      for (const auto& s : standard->second) list += (list.empty() ? "" : ", ") + s;
      invalid(v_path,
              fmt::format("\"{}\" is not a value of {} ({})", printable(v), standard->first, list));
    }
    return;
  }
  bool ok = !v.empty() && (std::isalpha(static_cast<unsigned char>(v[0])) || v[0] == '_');
  for (char c : v) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-')) ok = false;
  }
  if (!ok) {
    invalid(v_path, fmt::format("\"{}\" is not a valid value (latin letters, digits, _ and -, "
                                "starting with a letter or _)",
                                printable(v)));
  }
  if (v.size() > 100) invalid(v_path, fmt::format("{} characters, at most 100", v.size()));
}

class Validator {
 public:
  explicit Validator(Extensions ext) : ext_(std::move(ext)) {}

  const Extensions& ext() const { return ext_; }

  size_t name_limit() const { return ext_.feature_bundle_1 ? 512 : 64; }

  // ---------------------------------------------------------- format strings

  FormatString format_string(const YAML::Node& n, const std::string& path, const Scope& scope,
                             const TextRule& rule) {
    const std::string text = as_string(n, path);
    return format_string_text(text, path, scope, rule);
  }

  FormatString format_string_text(const std::string& text, const std::string& path,
                                  const Scope& scope, const TextRule& rule) {
    auto parsed = parse_format_string(text);
    if (!parsed) invalid(path, parsed.error().reason);
    if (char_count(text) < rule.min) {
      invalid(path, rule.min == 1 ? "must not be empty"
                                  : fmt::format("at least {} characters", rule.min));
    }
    // Only the literal part is known before resolution: it must fit already.
    TextRule literal_rule = rule;
    check_text(path, parsed->has_references() ? parsed->literal : text, literal_rule,
               parsed->has_references());
    for (const std::string& ref : parsed->references) check_reference(ref, path, scope);
    return std::move(*parsed);
  }

  void check_reference(const std::string& ref, const std::string& path, const Scope& scope) {
    if (scope.names.count(ref) != 0) return;
    if (known_.count(ref) != 0) {
      invalid(path, fmt::format("value reference {{{{{}}}}} is not available in this field", ref));
    }
    invalid(path, fmt::format("value reference {{{{{}}}}} is not defined", ref));
  }

  // ---------------------------------------------------------- parameters

  std::vector<JobParameterDefinition> parameter_definitions(const YAML::Node& n,
                                                            const std::string& path) {
    as_seq(n, path);
    check_count(n, path, 1, ext_.feature_bundle_1 ? 200 : 50);
    std::vector<JobParameterDefinition> out;
    std::set<std::string> names;
    for (size_t i = 0; i < n.size(); ++i) {
      out.push_back(parameter_definition(n[i], index_path(path, i)));
      if (!names.insert(out.back().name).second) {
        invalid(key_path(index_path(path, i), "name"),
                fmt::format("duplicate parameter name \"{}\"", out.back().name));
      }
    }
    return out;
  }

  std::string identifier(const YAML::Node& n, const std::string& path) {
    const std::string s = as_string(n, path);
    if (s.empty()) invalid(path, "must not be empty");
    if (!is_identifier(s)) {
      invalid(path, fmt::format("\"{}\" is not an identifier (latin letters, digits and _, not "
                                "starting with a digit)",
                                printable(s)));
    }
    if (s.size() > name_limit()) {
      invalid(path, fmt::format("{} characters, at most {}", s.size(), name_limit()));
    }
    return s;
  }

  std::optional<std::string> description(const Fields& f) {
    if (!f.has("description")) return std::nullopt;
    std::string s = as_string(f.get("description"), f.path("description"));
    check_text(f.path("description"), s, kDescription);
    return s;
  }

  JobParameterDefinition parameter_definition(const YAML::Node& n, const std::string& path) {
    if (kind_of(n) != Kind::kMap) invalid(path, "must be a mapping");
    if (!n["type"].IsDefined() || kind_of(n["type"]) == Kind::kNull) {
      invalid(key_path(path, "type"), "required field missing");
    }
    const std::string type = as_string(n["type"], key_path(path, "type"));
    JobParameterDefinition p;
    std::vector<std::string_view> allowed = {"name",    "type",          "description",
                                             "default", "allowedValues", "userInterface"};
    if (type == "STRING") {
      p.type = ParameterType::kString;
      allowed.insert(allowed.end(), {"minLength", "maxLength"});
    } else if (type == "PATH") {
      p.type = ParameterType::kPath;
      allowed.insert(allowed.end(), {"minLength", "maxLength", "objectType", "dataFlow"});
    } else if (type == "INT") {
      p.type = ParameterType::kInt;
      allowed.insert(allowed.end(), {"minValue", "maxValue"});
    } else if (type == "FLOAT") {
      p.type = ParameterType::kFloat;
      allowed.insert(allowed.end(), {"minValue", "maxValue"});
    } else {
      const std::string u = upper(type);
      if (u == "BOOL" || u == "RANGE_EXPR" || u.rfind("LIST[", 0) == 0) {
        invalid(key_path(path, "type"), fmt::format("type {} needs the EXPR extension", type));
      }
      invalid(key_path(path, "type"),
              fmt::format("unknown type \"{}\" (STRING, PATH, INT or FLOAT)", printable(type)));
    }
    Fields f(n, path, allowed);
    p.name = identifier(f.require("name"), f.path("name"));
    p.description = description(f);
    if (f.present("allowedValues")) {
      const YAML::Node av = f.get("allowedValues");
      as_seq(av, f.path("allowedValues"));
      check_count(av, f.path("allowedValues"), 1, 0);
    }
    switch (p.type) {
      case ParameterType::kString:
      case ParameterType::kPath:
        string_parameter(f, p);
        break;
      case ParameterType::kInt:
        int_parameter(f, p);
        break;
      case ParameterType::kFloat:
        float_parameter(f, p);
        break;
    }
    return p;
  }

  std::optional<int64_t> length_bound(const Fields& f, std::string_view key, int64_t min) {
    if (!f.has(key)) return std::nullopt;
    const int64_t v = as_strict_int(f.get(key), f.path(key));
    if (v < min) invalid(f.path(key), fmt::format("{} is less than {}", v, min));
    return v;
  }

  void string_parameter(const Fields& f, JobParameterDefinition& p) {
    p.min_length = length_bound(f, "minLength", 0);
    p.max_length = length_bound(f, "maxLength", 1);
    if (p.min_length && p.max_length && *p.min_length > *p.max_length) {
      invalid(f.path("maxLength"),
              fmt::format("maxLength {} is less than minLength {}", *p.max_length, *p.min_length));
    }
    auto check_value = [&](const YAML::Node& v, const std::string& path) {
      std::string s = as_string(v, path);
      const size_t len = char_count(s);
      if (len > 1024) invalid(path, fmt::format("{} characters, at most 1024", len));
      if (p.min_length && static_cast<int64_t>(len) < *p.min_length) {
        invalid(path, fmt::format("{} characters, shorter than minLength {}", len, *p.min_length));
      }
      if (p.max_length && static_cast<int64_t>(len) > *p.max_length) {
        invalid(path, fmt::format("{} characters, longer than maxLength {}", len, *p.max_length));
      }
      return s;
    };
    if (f.present("allowedValues")) {
      const YAML::Node av = f.get("allowedValues");
      for (size_t i = 0; i < av.size(); ++i) {
        p.allowed_values.push_back(check_value(av[i], index_path(f.path("allowedValues"), i)));
      }
    }
    if (f.has("default")) {
      p.default_value = check_value(f.get("default"), f.path("default"));
      if (!p.allowed_values.empty() && std::find(p.allowed_values.begin(), p.allowed_values.end(),
                                                 *p.default_value) == p.allowed_values.end()) {
        invalid(f.path("default"),
                fmt::format("\"{}\" is not one of allowedValues", printable(*p.default_value)));
      }
    }
    if (p.type == ParameterType::kPath) {
      if (f.has("objectType")) {
        p.object_type =
            enum_value(f.get("objectType"), f.path("objectType"), {"FILE", "DIRECTORY"});
      }
      if (f.has("dataFlow")) {
        p.data_flow =
            enum_value(f.get("dataFlow"), f.path("dataFlow"), {"NONE", "IN", "OUT", "INOUT"});
      }
    }
    if (f.has("userInterface")) p.user_interface = user_interface(f, p);
  }

  std::string enum_value(const YAML::Node& n, const std::string& path,
                         std::vector<std::string_view> values) {
    const std::string s = as_string(n, path);
    if (std::find(values.begin(), values.end(), s) == values.end()) {
      std::string list;
      for (auto v : values) list += (list.empty() ? "" : ", ") + std::string(v);
      invalid(path, fmt::format("\"{}\" is not one of {}", printable(s), list));
    }
    return s;
  }

  void int_parameter(const Fields& f, JobParameterDefinition& p) {
    std::optional<int64_t> lo;
    std::optional<int64_t> hi;
    if (f.has("minValue")) {
      lo = as_int_or_intstring(f.get("minValue"), f.path("minValue"));
      p.min_value = std::to_string(*lo);
    }
    if (f.has("maxValue")) {
      hi = as_int_or_intstring(f.get("maxValue"), f.path("maxValue"));
      p.max_value = std::to_string(*hi);
    }
    if (lo && hi && *lo > *hi) {
      invalid(f.path("maxValue"), fmt::format("maxValue {} is less than minValue {}", *hi, *lo));
    }
    auto check_value = [&](const YAML::Node& v, const std::string& path) {
      const int64_t x = as_int_or_intstring(v, path);
      if (lo && x < *lo) invalid(path, fmt::format("{} is less than minValue {}", x, *lo));
      if (hi && x > *hi) invalid(path, fmt::format("{} is greater than maxValue {}", x, *hi));
      return x;
    };
    std::vector<int64_t> allowed;
    if (f.present("allowedValues")) {
      const YAML::Node av = f.get("allowedValues");
      for (size_t i = 0; i < av.size(); ++i) {
        allowed.push_back(check_value(av[i], index_path(f.path("allowedValues"), i)));
        p.allowed_values.push_back(std::to_string(allowed.back()));
      }
    }
    if (f.has("default")) {
      const int64_t d = check_value(f.get("default"), f.path("default"));
      if (!allowed.empty() && std::find(allowed.begin(), allowed.end(), d) == allowed.end()) {
        invalid(f.path("default"), fmt::format("{} is not one of allowedValues", d));
      }
      p.default_value = std::to_string(d);
    }
    if (f.has("userInterface")) p.user_interface = user_interface(f, p);
  }

  void float_parameter(const Fields& f, JobParameterDefinition& p) {
    std::optional<double> lo;
    std::optional<double> hi;
    if (f.has("minValue")) {
      lo = as_float_or_floatstring(f.get("minValue"), f.path("minValue"));
      p.min_value = f.get("minValue").Scalar();
    }
    if (f.has("maxValue")) {
      hi = as_float_or_floatstring(f.get("maxValue"), f.path("maxValue"));
      p.max_value = f.get("maxValue").Scalar();
    }
    if (lo && hi && *lo > *hi) {
      invalid(f.path("maxValue"),
              fmt::format("maxValue {} is less than minValue {}", *p.max_value, *p.min_value));
    }
    auto check_value = [&](const YAML::Node& v, const std::string& path) {
      const double x = as_float_or_floatstring(v, path);
      if (lo && x < *lo) {
        invalid(path, fmt::format("{} is less than minValue {}", v.Scalar(), *p.min_value));
      }
      if (hi && x > *hi) {
        invalid(path, fmt::format("{} is greater than maxValue {}", v.Scalar(), *p.max_value));
      }
      return x;
    };
    std::vector<double> allowed;
    if (f.present("allowedValues")) {
      const YAML::Node av = f.get("allowedValues");
      for (size_t i = 0; i < av.size(); ++i) {
        allowed.push_back(check_value(av[i], index_path(f.path("allowedValues"), i)));
        p.allowed_values.push_back(av[i].Scalar());
      }
    }
    if (f.has("default")) {
      const double d = check_value(f.get("default"), f.path("default"));
      if (!allowed.empty() && std::find(allowed.begin(), allowed.end(), d) == allowed.end()) {
        invalid(f.path("default"),
                fmt::format("{} is not one of allowedValues", f.get("default").Scalar()));
      }
      p.default_value = f.get("default").Scalar();
    }
    if (f.has("userInterface")) p.user_interface = user_interface(f, p);
  }

  FileFilter file_filter(const YAML::Node& n, const std::string& path) {
    Fields f(n, path, {"label", "patterns"});
    FileFilter out;
    out.label = as_string(f.require("label"), f.path("label"));
    check_text(f.path("label"), out.label, kLabel);
    const YAML::Node patterns = as_seq(f.require("patterns"), f.path("patterns"));
    check_count(patterns, f.path("patterns"), 1, 20);
    for (size_t i = 0; i < patterns.size(); ++i) {
      const std::string p_path = index_path(f.path("patterns"), i);
      std::string pat = as_string(patterns[i], p_path);
      check_text(p_path, pat, TextRule{1, 20, true, false});
      bool ok = pat == "*" || pat == "*.*";
      if (!ok && pat.size() > 2 && pat.rfind("*.", 0) == 0) {
        static const std::string_view kForbidden = "\\/*?[]#%&{}<>$!'\":@`|=";
        ok = pat.find_first_of(kForbidden, 2) == std::string::npos;
      }
      if (!ok) {
        invalid(p_path, fmt::format("\"{}\" is not \"*\", \"*.*\" or \"*.\" and an extension",
                                    printable(pat)));
      }
      out.patterns.push_back(std::move(pat));
    }
    return out;
  }

  UserInterface user_interface(const Fields& pf, const JobParameterDefinition& p) {
    const std::string path = pf.path("userInterface");
    std::vector<std::string_view> allowed = {"control", "label", "groupLabel"};
    std::vector<std::string_view> controls;
    switch (p.type) {
      case ParameterType::kString:
        controls = {"LINE_EDIT", "MULTILINE_EDIT", "DROPDOWN_LIST", "CHECK_BOX", "HIDDEN"};
        break;
      case ParameterType::kPath:
        controls = {"CHOOSE_INPUT_FILE", "CHOOSE_OUTPUT_FILE", "CHOOSE_DIRECTORY", "DROPDOWN_LIST",
                    "HIDDEN"};
        allowed.insert(allowed.end(), {"fileFilters", "fileFilterDefault"});
        break;
      case ParameterType::kInt:
        controls = {"SPIN_BOX", "DROPDOWN_LIST", "HIDDEN"};
        allowed.push_back("singleStepDelta");
        break;
      case ParameterType::kFloat:
        controls = {"SPIN_BOX", "DROPDOWN_LIST", "HIDDEN"};
        allowed.insert(allowed.end(), {"decimals", "singleStepDelta"});
        break;
    }
    Fields f(pf.get("userInterface"), path, allowed);
    UserInterface ui;
    if (f.has("control")) ui.control = enum_value(f.get("control"), f.path("control"), controls);
    if (f.has("label")) {
      ui.label = as_string(f.get("label"), f.path("label"));
      check_text(f.path("label"), *ui.label, kLabel);
    }
    if (f.has("groupLabel")) {
      ui.group_label = as_string(f.get("groupLabel"), f.path("groupLabel"));
      check_text(f.path("groupLabel"), *ui.group_label, kLabel);
    }
    const bool has_allowed = !p.allowed_values.empty();
    // The control in effect: the given one, else the specification's default.
    std::string control;
    if (ui.control) {
      control = *ui.control;
    } else if (has_allowed) {
      control = "DROPDOWN_LIST";
    } else if (p.type == ParameterType::kString) {
      control = "LINE_EDIT";
    } else if (p.type == ParameterType::kPath) {
      control = p.object_type == "FILE"
                    ? (p.data_flow == "OUT" ? "CHOOSE_OUTPUT_FILE" : "CHOOSE_INPUT_FILE")
                    : "CHOOSE_DIRECTORY";
    } else {
      control = "SPIN_BOX";
    }
    const std::string control_path = f.path("control");
    if (ui.control) {
      static const std::set<std::string> kFreeForm = {"LINE_EDIT",          "MULTILINE_EDIT",
                                                      "SPIN_BOX",           "CHOOSE_INPUT_FILE",
                                                      "CHOOSE_OUTPUT_FILE", "CHOOSE_DIRECTORY"};
      if (has_allowed && kFreeForm.count(control) != 0) {
        invalid(control_path, fmt::format("{} cannot be used with allowedValues", control));
      }
      if (!has_allowed && (control == "DROPDOWN_LIST" || control == "CHECK_BOX")) {
        invalid(control_path, fmt::format("{} needs allowedValues", control));
      }
      if (control == "CHECK_BOX") {
        std::set<std::string> values;
        for (const auto& v : p.allowed_values) values.insert(upper(v));
        const std::set<std::set<std::string>> pairs = {
            {"TRUE", "FALSE"}, {"YES", "NO"}, {"ON", "OFF"}, {"1", "0"}};
        if (p.allowed_values.size() != 2 || pairs.count(values) == 0) {
          invalid(control_path,
                  "CHECK_BOX needs allowedValues of one pair: true/false, yes/no, on/off or 1/0 "
                  "(any case)");
        }
      }
      if (p.type == ParameterType::kPath && p.object_type == "FILE" &&
          control == "CHOOSE_DIRECTORY") {
        invalid(control_path, "CHOOSE_DIRECTORY cannot be used with objectType FILE");
      }
      if (p.type == ParameterType::kPath && p.object_type == "DIRECTORY" &&
          (control == "CHOOSE_INPUT_FILE" || control == "CHOOSE_OUTPUT_FILE")) {
        invalid(control_path, fmt::format("{} cannot be used with objectType DIRECTORY", control));
      }
    }
    if (f.present("fileFilters") || f.present("fileFilterDefault")) {
      if (control != "CHOOSE_INPUT_FILE" && control != "CHOOSE_OUTPUT_FILE") {
        invalid(f.path(f.present("fileFilters") ? "fileFilters" : "fileFilterDefault"),
                fmt::format("file filters need control CHOOSE_INPUT_FILE or CHOOSE_OUTPUT_FILE, "
                            "not {}",
                            control));
      }
      if (f.present("fileFilters")) {
        const YAML::Node ff = as_seq(f.get("fileFilters"), f.path("fileFilters"));
        check_count(ff, f.path("fileFilters"), 1, 20);
        for (size_t i = 0; i < ff.size(); ++i) {
          ui.file_filters.push_back(file_filter(ff[i], index_path(f.path("fileFilters"), i)));
        }
      }
      if (f.present("fileFilterDefault")) {
        ui.file_filter_default =
            file_filter(f.get("fileFilterDefault"), f.path("fileFilterDefault"));
      }
    }
    if (f.present("decimals")) {
      if (control != "SPIN_BOX") {
        invalid(f.path("decimals"), fmt::format("only for control SPIN_BOX, not {}", control));
      }
      ui.decimals = as_strict_int(f.get("decimals"), f.path("decimals"));
      if (*ui.decimals < 0) invalid(f.path("decimals"), "must not be negative");
    }
    if (f.present("singleStepDelta")) {
      const std::string d_path = f.path("singleStepDelta");
      if (control != "SPIN_BOX") {
        invalid(d_path, fmt::format("only for control SPIN_BOX, not {}", control));
      }
      const YAML::Node d = f.get("singleStepDelta");
      if (p.type == ParameterType::kInt) {
        if (as_strict_int(d, d_path) <= 0) invalid(d_path, "must be a positive integer");
      } else {
        const Kind k = kind_of(d);
        if (k != Kind::kInt && k != Kind::kFloat) {
          invalid(d_path, fmt::format("must be a number, not {}", kind_name(k)));
        }
        auto v = to_double(d.Scalar());
        if (!v || *v <= 0) invalid(d_path, "must be a positive number");
      }
      ui.single_step_delta = d.Scalar();
    }
    return ui;
  }

  // ---------------------------------------------------------- scopes

  void define_parameters(const std::vector<JobParameterDefinition>& params) {
    for (const auto& p : params) {
      if (p.type != ParameterType::kPath) template_scope_.names.insert("Param." + p.name);
      template_scope_.names.insert("RawParam." + p.name);
      session_scope_.names.insert("Param." + p.name);
      session_scope_.names.insert("RawParam." + p.name);
      known_.insert("Param." + p.name);
      known_.insert("RawParam." + p.name);
    }
    for (auto name : kSessionNames) {
      session_scope_.names.insert(std::string(name));
      known_.insert(std::string(name));
    }
  }

  void know(const std::string& name) { known_.insert(name); }

  const Scope& template_scope() const { return template_scope_; }

  const Scope& session_scope() const { return session_scope_; }

  // ---------------------------------------------------------- actions

  // A positive integer; with FEATURE_BUNDLE_1 also a string: an integer or a
  // format string resolved at job creation.
  std::string positive_int(const YAML::Node& n, const std::string& path, int64_t max) {
    const Kind k = kind_of(n);
    if (k == Kind::kString) {
      if (!ext_.feature_bundle_1) {
        invalid(path, "a string here needs the FEATURE_BUNDLE_1 extension");
      }
      FormatString fs = format_string(n, path, template_scope_, TextRule{1, 0, false, false});
      if (!fs.has_references()) {
        const std::string& s = n.Scalar();
        if (!is_integer_text(s))
          invalid(path, fmt::format("\"{}\" is not an integer", printable(s)));
        auto v = to_int64(s);
        if (!v || *v <= 0) invalid(path, fmt::format("{} is not a positive integer", printable(s)));
        if (max != 0 && *v > max) invalid(path, fmt::format("{} is greater than {}", *v, max));
      }
      return n.Scalar();
    }
    const int64_t v = as_strict_int(n, path);
    if (v <= 0) invalid(path, fmt::format("{} is not a positive integer", v));
    if (max != 0 && v > max) invalid(path, fmt::format("{} is greater than {}", v, max));
    return std::to_string(v);
  }

  Cancelation cancelation(const YAML::Node& n, const std::string& path) {
    if (kind_of(n) != Kind::kMap) invalid(path, "must be a mapping");
    const YAML::Node mode_node = n["mode"];
    if (!mode_node.IsDefined() || kind_of(mode_node) == Kind::kNull) {
      invalid(key_path(path, "mode"), "required field missing");
    }
    const std::string mode =
        enum_value(mode_node, key_path(path, "mode"), {"TERMINATE", "NOTIFY_THEN_TERMINATE"});
    Cancelation c;
    if (mode == "TERMINATE") {
      Fields f(n, path, {"mode"});
      return c;
    }
    c.mode = CancelationMode::kNotifyThenTerminate;
    Fields f(n, path, {"mode", "notifyPeriodInSeconds"});
    if (f.has("notifyPeriodInSeconds")) {
      c.notify_period_s =
          positive_int(f.get("notifyPeriodInSeconds"), f.path("notifyPeriodInSeconds"), 600);
    }
    return c;
  }

  Action action(const YAML::Node& n, const std::string& path, const Scope& scope) {
    Fields f(n, path, {"command", "args", "timeout", "cancelation"});
    Action a;
    a.command = as_string(f.require("command"), f.path("command"));
    format_string_text(a.command, f.path("command"), scope, TextRule{1, 0, true, false});
    if (f.has("args")) {
      a.args = args(f.get("args"), f.path("args"), scope);
    }
    if (f.has("timeout")) a.timeout_s = positive_int(f.get("timeout"), f.path("timeout"), 0);
    if (f.has("cancelation"))
      a.cancelation = cancelation(f.get("cancelation"), f.path("cancelation"));
    return a;
  }

  std::vector<std::string> args(const YAML::Node& n, const std::string& path, const Scope& scope) {
    as_seq(n, path);
    check_count(n, path, 1, 0);
    std::vector<std::string> out;
    for (size_t i = 0; i < n.size(); ++i) {
      const std::string a_path = index_path(path, i);
      out.push_back(as_string(n[i], a_path));
      format_string_text(out.back(), a_path, scope, TextRule{0, 0, true, false});
    }
    return out;
  }

  std::vector<EmbeddedFile> embedded_files(const YAML::Node& n, const std::string& path,
                                           const std::string& prefix, Scope& scope) {
    as_seq(n, path);
    check_count(n, path, 1, 0);
    std::vector<EmbeddedFile> out;
    std::set<std::string> names;
    // The names first: every file of the script may refer to every other.
    for (size_t i = 0; i < n.size(); ++i) {
      const std::string f_path = index_path(path, i);
      if (kind_of(n[i]) != Kind::kMap) invalid(f_path, "must be a mapping");
      if (!n[i]["name"].IsDefined()) invalid(key_path(f_path, "name"), "required field missing");
      const std::string name = identifier(n[i]["name"], key_path(f_path, "name"));
      if (!names.insert(name).second) {
        invalid(key_path(f_path, "name"), fmt::format("duplicate embedded file name \"{}\"", name));
      }
      scope.names.insert(prefix + name);
      known_.insert(prefix + name);
    }
    for (size_t i = 0; i < n.size(); ++i) {
      const std::string f_path = index_path(path, i);
      Fields f(n[i], f_path, {"name", "type", "filename", "runnable", "data"},
               {{"endOfLine", "FEATURE_BUNDLE_1"}}, &ext_);
      EmbeddedFile e;
      e.name = n[i]["name"].Scalar();
      e.type = enum_value(f.require("type"), f.path("type"), {"TEXT"});
      if (f.has("filename")) {
        e.filename = as_string(f.get("filename"), f.path("filename"));
        check_text(f.path("filename"), *e.filename,
                   TextRule{1, ext_.feature_bundle_1 ? size_t{256} : size_t{64}, true, false});
        if (e.filename->find_first_of("/\\") != std::string::npos || *e.filename == "." ||
            *e.filename == "..") {
          invalid(f.path("filename"), "must be a file name, without a directory");
        }
      }
      if (f.has("runnable")) e.runnable = as_bool(f.get("runnable"), f.path("runnable"));
      e.data = as_string(f.require("data"), f.path("data"));
      format_string_text(e.data, f.path("data"), scope, TextRule{1, 0, false, false});
      if (f.has("endOfLine")) {
        e.end_of_line = enum_value(f.get("endOfLine"), f.path("endOfLine"), {"AUTO", "LF", "CRLF"});
      }
      out.push_back(std::move(e));
    }
    return out;
  }

  SimpleAction simple_action(const YAML::Node& n, const std::string& path, std::string interpreter,
                             const Scope& scope) {
    Fields f(n, path, {"script", "args", "timeout", "cancelation"});
    SimpleAction s;
    s.interpreter = std::move(interpreter);
    s.script = as_string(f.require("script"), f.path("script"));
    format_string_text(s.script, f.path("script"), scope, TextRule{1, 0, false, false});
    if (f.has("args")) s.args = args(f.get("args"), f.path("args"), scope);
    if (f.has("timeout")) s.timeout_s = positive_int(f.get("timeout"), f.path("timeout"), 0);
    if (f.has("cancelation"))
      s.cancelation = cancelation(f.get("cancelation"), f.path("cancelation"));
    return s;
  }

  // ---------------------------------------------------------- environments

  Environment environment(const YAML::Node& n, const std::string& path) {
    Fields f(n, path, {"name", "description", "script", "variables"});
    Environment env;
    env.name = as_string(f.require("name"), f.path("name"));
    check_text(f.path("name"), env.name, TextRule{1, name_limit(), true, false});
    env.description = description(f);
    if (!f.has("script") && !f.has("variables")) {
      invalid(path, "needs a script or variables, or both");
    }
    if (f.has("variables")) {
      const std::string v_path = f.path("variables");
      const YAML::Node vn = f.get("variables");
      if (kind_of(vn) != Kind::kMap) {
        invalid(v_path, fmt::format("must be a mapping, not {}", kind_name(kind_of(vn))));
      }
      if (vn.size() == 0) invalid(v_path, "must not be empty when given");
      std::set<std::string> seen;
      for (const auto& entry : vn) {
        if (!entry.first.IsScalar()) invalid(v_path, "keys must be strings");
        const std::string name = entry.first.Scalar();
        if (!seen.insert(name).second) invalid(key_path(v_path, name), "duplicate variable");
        const std::string e_path = key_path(v_path, name);
        if (name.empty() || name.size() > 256 || !is_identifier(name)) {
          invalid(e_path,
                  "variable names are 1 to 256 latin letters, digits and _, not starting "
                  "with a digit");
        }
        std::string value = as_string(entry.second, e_path);
        format_string_text(value, e_path, session_scope_, TextRule{0, 2048, false, false});
        env.variables.emplace_back(name, std::move(value));
      }
    }
    if (f.has("script")) {
      const std::string s_path = f.path("script");
      Fields s(f.get("script"), s_path, {"actions", "embeddedFiles"});
      EnvironmentScript script;
      Scope scope = session_scope_;
      if (s.has("embeddedFiles")) {
        script.embedded_files =
            embedded_files(s.get("embeddedFiles"), s.path("embeddedFiles"), "Env.File.", scope);
      }
      Fields a(s.require("actions"), s.path("actions"), {"onEnter", "onExit"});
      if (!a.has("onEnter") && !a.has("onExit")) {
        invalid(a.path(), "needs onEnter or onExit, or both");
      }
      if (a.has("onEnter")) script.on_enter = action(a.get("onEnter"), a.path("onEnter"), scope);
      if (a.has("onExit")) script.on_exit = action(a.get("onExit"), a.path("onExit"), scope);
      env.script = std::move(script);
    }
    return env;
  }

  std::vector<Environment> environments(const YAML::Node& n, const std::string& path,
                                        std::set<std::string>& names, bool job_level) {
    as_seq(n, path);
    check_count(n, path, 1, 0);
    std::vector<Environment> out;
    for (size_t i = 0; i < n.size(); ++i) {
      out.push_back(environment(n[i], index_path(path, i)));
      if (!names.insert(out.back().name).second) {
        invalid(key_path(index_path(path, i), "name"),
                job_level
                    ? fmt::format("duplicate environment name \"{}\"", printable(out.back().name))
                    : fmt::format("environment name \"{}\" is already used in this step or "
                                  "by a job environment",
                                  printable(out.back().name)));
      }
    }
    return out;
  }

  // ---------------------------------------------------------- steps

  // The number of values a task parameter takes, when known without parameter
  // values.
  struct RangeInfo {
    std::optional<int64_t> count;
    bool chunked = false;
  };

  TaskParameterDefinition task_parameter(const YAML::Node& n, const std::string& path,
                                         RangeInfo& info) {
    if (kind_of(n) != Kind::kMap) invalid(path, "must be a mapping");
    if (!n["type"].IsDefined() || kind_of(n["type"]) == Kind::kNull) {
      invalid(key_path(path, "type"), "required field missing");
    }
    const std::string type = as_string(n["type"], key_path(path, "type"));
    TaskParameterDefinition t;
    if (type == "INT") {
      t.type = TaskParameterType::kInt;
    } else if (type == "FLOAT") {
      t.type = TaskParameterType::kFloat;
    } else if (type == "STRING") {
      t.type = TaskParameterType::kString;
    } else if (type == "PATH") {
      t.type = TaskParameterType::kPath;
    } else if (type == "CHUNK[INT]") {
      if (!ext_.task_chunking) {
        invalid(key_path(path, "type"), "CHUNK[INT] needs the TASK_CHUNKING extension");
      }
      t.type = TaskParameterType::kChunkInt;
    } else {
      invalid(key_path(path, "type"),
              fmt::format("unknown type \"{}\" (INT, FLOAT, STRING, PATH{})", printable(type),
                          ext_.task_chunking ? " or CHUNK[INT]" : ""));
    }
    std::vector<std::string_view> allowed = {"name", "type", "range"};
    if (t.type == TaskParameterType::kChunkInt) allowed.push_back("chunks");
    Fields f(n, path, allowed);
    t.name = identifier(f.require("name"), f.path("name"));
    const YAML::Node range = f.require("range");
    const std::string r_path = f.path("range");
    const bool is_int = t.type == TaskParameterType::kInt || t.type == TaskParameterType::kChunkInt;
    info.chunked = t.type == TaskParameterType::kChunkInt;
    if (kind_of(range) == Kind::kString && is_int) {
      t.range_expression = range.Scalar();
      FormatString fs = format_string(range, r_path, template_scope_, TextRule{1, 0, false, false});
      if (!fs.has_references()) {
        auto elements = range_elements(range.Scalar());
        if (!elements) invalid(r_path, elements.error().reason);
        const Int128 count = range_count(*elements);
        if (t.type == TaskParameterType::kInt && count > 1024) {
          invalid(r_path, fmt::format("{} items, at most 1024", static_cast<int64_t>(count)));
        }
        info.count = count > INT64_MAX ? INT64_MAX : static_cast<int64_t>(count);
      }
    } else {
      if (kind_of(range) != Kind::kSeq) {
        invalid(r_path, is_int ? "must be a list or a range expression string" : "must be a list");
      }
      check_count(range, r_path, 1, 1024);
      info.count = static_cast<int64_t>(range.size());
      for (size_t i = 0; i < range.size(); ++i) {
        const std::string v_path = index_path(r_path, i);
        const YAML::Node v = range[i];
        const Kind k = kind_of(v);
        if (k == Kind::kString) {
          FormatString fs =
              format_string(v, v_path, template_scope_, TextRule{1, 1024, false, false});
          if (!fs.has_references()) {
            if (is_int) {
              as_int_or_intstring(v, v_path);
            } else if (t.type == TaskParameterType::kFloat) {
              as_float_or_floatstring(v, v_path);
            }
          }
        } else if (is_int) {
          as_int_or_intstring(v, v_path);
        } else if (t.type == TaskParameterType::kFloat) {
          as_float_or_floatstring(v, v_path);
        } else {
          invalid(v_path, fmt::format("must be a string, not {}", kind_name(k)));
        }
        t.range_list.push_back(v.Scalar());
      }
    }
    if (t.type == TaskParameterType::kChunkInt) {
      const YAML::Node c = f.require("chunks");
      Fields cf(c, f.path("chunks"),
                {"defaultTaskCount", "targetRuntimeSeconds", "rangeConstraint"});
      Chunks chunks;
      chunks.default_task_count =
          chunk_count(cf.require("defaultTaskCount"), cf.path("defaultTaskCount"), 1);
      if (cf.has("targetRuntimeSeconds")) {
        chunks.target_runtime_s =
            chunk_count(cf.get("targetRuntimeSeconds"), cf.path("targetRuntimeSeconds"), 0);
      }
      chunks.contiguous = enum_value(cf.require("rangeConstraint"), cf.path("rangeConstraint"),
                                     {"CONTIGUOUS", "NONCONTIGUOUS"}) == "CONTIGUOUS";
      t.chunks = chunks;
    }
    return t;
  }

  // An integer at least `min`, or an integer string, or a format string (resolved
  // at job creation).
  std::string chunk_count(const YAML::Node& n, const std::string& path, int64_t min) {
    if (kind_of(n) == Kind::kString) {
      FormatString fs = format_string(n, path, template_scope_, TextRule{1, 0, false, false});
      if (fs.has_references()) return n.Scalar();
    }
    const int64_t v = as_int_or_intstring(n, path);
    if (v < min) invalid(path, fmt::format("{} is less than {}", v, min));
    return n.Scalar();
  }

  ParameterSpace parameter_space(const YAML::Node& n, const std::string& path) {
    Fields f(n, path, {"taskParameterDefinitions", "combination"});
    ParameterSpace space;
    const std::string d_path = f.path("taskParameterDefinitions");
    const YAML::Node defs = as_seq(f.require("taskParameterDefinitions"), d_path);
    check_count(defs, d_path, 1, 16);
    std::map<std::string, RangeInfo> infos;
    size_t chunked = 0;
    for (size_t i = 0; i < defs.size(); ++i) {
      RangeInfo info;
      space.task_parameters.push_back(task_parameter(defs[i], index_path(d_path, i), info));
      const std::string& name = space.task_parameters.back().name;
      if (!infos.emplace(name, info).second) {
        invalid(key_path(index_path(d_path, i), "name"),
                fmt::format("duplicate task parameter name \"{}\"", name));
      }
      if (info.chunked && ++chunked > 1) {
        invalid(key_path(index_path(d_path, i), "type"), "at most one CHUNK[INT] parameter");
      }
    }
    if (f.has("combination")) {
      const std::string c_path = f.path("combination");
      const std::string expr = as_string(f.get("combination"), c_path);
      check_text(c_path, expr, TextRule{1, 1280, false, false});
      for (char c : expr) {
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == ' ' || c == '*' ||
              c == '(' || c == ')' || c == ',')) {
          invalid(c_path, fmt::format("character '{}' not allowed", printable(std::string(1, c))));
        }
      }
      auto tree = parse_combination(expr);
      if (!tree) invalid(c_path, tree.error().reason);
      std::set<std::string> seen;
      combination_check(*tree, c_path, infos, seen, false);
      for (const auto& p : space.task_parameters) {
        if (seen.count(p.name) == 0) {
          invalid(c_path, fmt::format("task parameter \"{}\" is missing", p.name));
        }
      }
      space.combination = expr;
    }
    return space;
  }

  // Returns the number of combinations of the subtree, when known.
  std::optional<int64_t> combination_check(const CombNode& node, const std::string& path,
                                           const std::map<std::string, RangeInfo>& infos,
                                           std::set<std::string>& seen, bool in_group) {
    if (!node.group && !node.product) {
      auto it = infos.find(node.name);
      if (it == infos.end()) {
        invalid(path, fmt::format("\"{}\" is not a task parameter of this step", node.name));
      }
      if (!seen.insert(node.name).second) {
        invalid(path, fmt::format("task parameter \"{}\" appears more than once", node.name));
      }
      if (in_group && it->second.chunked) {
        invalid(path, fmt::format("CHUNK[INT] parameter \"{}\" cannot be in an associative "
                                  "\"( , )\" group",
                                  node.name));
      }
      return it->second.count;
    }
    if (node.product) {
      Int128 total = 1;
      bool known = true;
      for (const auto& child : node.children) {
        auto c = combination_check(child, path, infos, seen, in_group);
        if (!c) known = false;
        if (known) total = std::min<Int128>(total * *c, INT64_MAX);
      }
      if (!known) return std::nullopt;
      return static_cast<int64_t>(total);
    }
    std::optional<int64_t> common;
    for (const auto& child : node.children) {
      auto c = combination_check(child, path, infos, seen, true);
      if (!c) continue;
      if (common && *common != *c) {
        invalid(path, fmt::format("the members of an associative group differ in length ({} and "
                                  "{} values)",
                                  *common, *c));
      }
      common = c;
    }
    return common;
  }

  HostRequirements host_requirements(const YAML::Node& n, const std::string& path) {
    Fields f(n, path, {"amounts", "attributes"});
    HostRequirements hr;
    if (!f.has("amounts") && !f.has("attributes")) {
      invalid(path, "needs amounts or attributes, or both");
    }
    size_t total = 0;
    if (f.has("amounts")) {
      const YAML::Node a = as_seq(f.get("amounts"), f.path("amounts"));
      check_count(a, f.path("amounts"), 1, 0);
      total += a.size();
    }
    if (f.has("attributes")) {
      const YAML::Node a = as_seq(f.get("attributes"), f.path("attributes"));
      check_count(a, f.path("attributes"), 1, 0);
      total += a.size();
    }
    if (total > 50) invalid(path, fmt::format("{} requirements, at most 50", total));
    std::set<std::string> names;
    if (f.has("amounts")) {
      const YAML::Node a = f.get("amounts");
      for (size_t i = 0; i < a.size(); ++i) {
        hr.amounts.push_back(amount(a[i], index_path(f.path("amounts"), i)));
        if (!unique_capability(names, hr.amounts.back().name)) {
          invalid(key_path(index_path(f.path("amounts"), i), "name"),
                  fmt::format("duplicate amount name \"{}\"", printable(hr.amounts.back().name)));
        }
      }
    }
    names.clear();
    if (f.has("attributes")) {
      const YAML::Node a = f.get("attributes");
      for (size_t i = 0; i < a.size(); ++i) {
        hr.attributes.push_back(attribute(a[i], index_path(f.path("attributes"), i)));
        if (!unique_capability(names, hr.attributes.back().name)) {
          invalid(
              key_path(index_path(f.path("attributes"), i), "name"),
              fmt::format("duplicate attribute name \"{}\"", printable(hr.attributes.back().name)));
        }
      }
    }
    return hr;
  }

  // Capability names compare without case; names with references resolve later.
  static bool unique_capability(std::set<std::string>& names, const std::string& name) {
    if (name.find("{{") != std::string::npos) return true;
    return names.insert(ascii_lower(name)).second;
  }

  AmountRequirement amount(const YAML::Node& n, const std::string& path) {
    Fields f(n, path, {"name", "min", "max"});
    AmountRequirement a;
    a.name = as_string(f.require("name"), f.path("name"));
    FormatString fs =
        format_string_text(a.name, f.path("name"), template_scope_, TextRule{1, 100, false, false});
    if (!fs.has_references()) capability_name(a.name, f.path("name"), true);
    if (!f.has("min") && !f.has("max")) invalid(path, "needs min or max, or both");
    std::optional<double> lo;
    std::optional<double> hi;
    auto value = [&](std::string_view key, std::optional<double>& out) {
      const YAML::Node v = f.get(key);
      const std::string v_path = f.path(key);
      const Kind k = kind_of(v);
      if (k == Kind::kString) {
        if (!ext_.feature_bundle_1)
          invalid(v_path, "a string here needs the FEATURE_BUNDLE_1 extension");
        FormatString vs = format_string(v, v_path, template_scope_, TextRule{1, 0, false, false});
        if (vs.has_references()) return v.Scalar();
      } else if (k != Kind::kInt && k != Kind::kFloat) {
        invalid(v_path, fmt::format("must be a number, not {}", kind_name(k)));
      }
      out = as_float_or_floatstring(v, v_path);
      return v.Scalar();
    };
    if (f.has("min")) {
      a.min = value("min", lo);
      if (lo && *lo < 0) invalid(f.path("min"), fmt::format("{} is negative", *a.min));
    }
    if (f.has("max")) {
      a.max = value("max", hi);
      if (hi && *hi <= 0) invalid(f.path("max"), fmt::format("{} is not positive", *a.max));
    }
    if (lo && hi && *lo > *hi) {
      invalid(f.path("max"), fmt::format("max {} is less than min {}", *a.max, *a.min));
    }
    return a;
  }

  AttributeRequirement attribute(const YAML::Node& n, const std::string& path) {
    Fields f(n, path, {"name", "anyOf", "allOf"});
    AttributeRequirement a;
    a.name = as_string(f.require("name"), f.path("name"));
    FormatString fs =
        format_string_text(a.name, f.path("name"), template_scope_, TextRule{1, 100, false, false});
    const bool literal_name = !fs.has_references();
    if (literal_name) capability_name(a.name, f.path("name"), false);
    if (!f.has("anyOf") && !f.has("allOf")) invalid(path, "needs anyOf or allOf, or both");
    const auto standard =
        literal_name ? kStandardAttributes.find(ascii_lower(a.name)) : kStandardAttributes.end();
    auto values = [&](std::string_view key, bool all_of) {
      std::vector<std::string> out;
      const std::string l_path = f.path(key);
      const YAML::Node l = as_seq(f.get(key), l_path);
      check_count(l, l_path, 1, 50);
      if (all_of && standard != kStandardAttributes.end() && l.size() > 1) {
        invalid(l_path, fmt::format("{} has one value at a time", standard->first));
      }
      for (size_t i = 0; i < l.size(); ++i) {
        const std::string v_path = index_path(l_path, i);
        FormatString vs =
            format_string(l[i], v_path, template_scope_, TextRule{1, 0, false, false});
        const std::string& v = l[i].Scalar();
        if (!vs.has_references()) {
          attribute_value(standard, v, v_path);
        }
        out.push_back(v);
      }
      return out;
    };
    if (f.has("anyOf")) a.any_of = values("anyOf", false);
    if (f.has("allOf")) a.all_of = values("allOf", true);
    return a;
  }

  StepScript step_script(const YAML::Node& n, const std::string& path, const Scope& base) {
    Fields f(n, path, {"actions", "embeddedFiles"});
    StepScript s;
    Scope scope = base;
    if (f.has("embeddedFiles")) {
      s.embedded_files =
          embedded_files(f.get("embeddedFiles"), f.path("embeddedFiles"), "Task.File.", scope);
    }
    Fields a(f.require("actions"), f.path("actions"), {"onRun"});
    s.on_run = action(a.require("onRun"), a.path("onRun"), scope);
    return s;
  }

  Step step(const YAML::Node& n, const std::string& path, std::set<std::string> env_names) {
    static constexpr std::string_view kSimple[] = {"bash", "cmd", "node", "powershell", "python"};
    std::vector<std::pair<std::string_view, std::string_view>> gated;
    for (auto k : kSimple) gated.emplace_back(k, "FEATURE_BUNDLE_1");
    Fields f(n, path,
             {"name", "description", "dependencies", "stepEnvironments", "hostRequirements",
              "parameterSpace", "script"},
             gated, &ext_);
    Step s;
    s.name = as_string(f.require("name"), f.path("name"));
    check_text(f.path("name"), s.name, TextRule{1, name_limit(), true, false});
    s.description = description(f);
    if (f.present("dependencies")) {
      const YAML::Node d = as_seq(f.get("dependencies"), f.path("dependencies"));
      check_count(d, f.path("dependencies"), 1, 0);
      for (size_t i = 0; i < d.size(); ++i) {
        Fields df(d[i], index_path(f.path("dependencies"), i), {"dependsOn"});
        std::string on = as_string(df.require("dependsOn"), df.path("dependsOn"));
        check_text(df.path("dependsOn"), on, TextRule{1, name_limit(), true, false});
        if (std::find(s.dependencies.begin(), s.dependencies.end(), on) != s.dependencies.end()) {
          invalid(df.path("dependsOn"),
                  fmt::format("duplicate dependency on \"{}\"", printable(on)));
        }
        s.dependencies.push_back(std::move(on));
      }
    }
    if (f.has("stepEnvironments")) {
      s.step_environments =
          environments(f.get("stepEnvironments"), f.path("stepEnvironments"), env_names, false);
    }
    if (f.has("hostRequirements")) {
      s.host_requirements =
          host_requirements(f.get("hostRequirements"), f.path("hostRequirements"));
    }
    Scope script_scope = session_scope_;
    if (f.has("parameterSpace")) {
      s.parameter_space = parameter_space(f.get("parameterSpace"), f.path("parameterSpace"));
      for (const auto& t : s.parameter_space->task_parameters) {
        script_scope.names.insert("Task.Param." + t.name);
        script_scope.names.insert("Task.RawParam." + t.name);
      }
    }
    std::string_view simple_key;
    for (auto k : kSimple) {
      if (!f.present(k)) continue;
      if (!simple_key.empty()) {
        invalid(f.path(k), fmt::format("cannot be used together with {}", simple_key));
      }
      simple_key = k;
    }
    if (!simple_key.empty()) {
      if (f.present("script")) {
        invalid(f.path(simple_key), "cannot be used together with script");
      }
      s.script.simple = simple_action(f.get(simple_key), f.path(simple_key),
                                      std::string(simple_key), script_scope);
    } else {
      s.script = step_script(f.require("script"), f.path("script"), script_scope);
    }
    return s;
  }

  void know_task_symbols(const YAML::Node& steps) {
    // Task.* names of every step, so a reference to another step's parameter is
    // reported as out of scope rather than undefined.
    if (!steps.IsDefined() || !steps.IsSequence()) return;
    for (const auto& s : steps) {
      if (!s.IsMap()) continue;
      const YAML::Node ps = s["parameterSpace"];
      if (!ps.IsDefined() || !ps.IsMap()) continue;
      const YAML::Node defs = ps["taskParameterDefinitions"];
      if (defs.IsDefined() && defs.IsSequence()) {
        for (const auto& t : defs) {
          if (t.IsMap() && t["name"].IsDefined() && t["name"].IsScalar()) {
            known_.insert("Task.Param." + t["name"].Scalar());
            known_.insert("Task.RawParam." + t["name"].Scalar());
          }
        }
      }
    }
  }

 private:
  Extensions ext_;
  Scope template_scope_;
  Scope session_scope_;
  std::set<std::string> known_;
};

Extensions extensions(const Fields& f) {
  Extensions ext;
  if (!f.present("extensions")) return ext;
  const std::string path = f.path("extensions");
  const YAML::Node list = as_seq(f.get("extensions"), path);
  check_count(list, path, 1, 0);
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string e_path = index_path(path, i);
    const std::string name = as_string(list[i], e_path);
    bool well_formed = name.size() >= 3 && name.size() <= 128;
    for (char c : name) {
      if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) well_formed = false;
    }
    if (!well_formed) {
      invalid(e_path,
              fmt::format("\"{}\" is not an extension name ([A-Z_0-9]{{3,128}})", printable(name)));
    }
    if (std::find(ext.names.begin(), ext.names.end(), name) != ext.names.end()) {
      invalid(e_path, fmt::format("extension {} is listed twice", name));
    }
    if (name == "TASK_CHUNKING") {
      ext.task_chunking = true;
    } else if (name == "FEATURE_BUNDLE_1") {
      ext.feature_bundle_1 = true;
    } else if (name == "REDACTED_ENV_VARS") {
      ext.redacted_env_vars = true;
    } else {
      invalid(e_path, fmt::format("unsupported extension {} (supported: TASK_CHUNKING, "
                                  "FEATURE_BUNDLE_1, REDACTED_ENV_VARS)",
                                  name));
    }
    ext.names.push_back(name);
  }
  return ext;
}

void check_dependencies(const std::vector<Step>& steps) {
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < steps.size(); ++i) index.emplace(steps[i].name, i);
  for (size_t i = 0; i < steps.size(); ++i) {
    for (size_t d = 0; d < steps[i].dependencies.size(); ++d) {
      const std::string& on = steps[i].dependencies[d];
      const std::string path =
          key_path(index_path(key_path(index_path("steps", i), "dependencies"), d), "dependsOn");
      if (on == steps[i].name) invalid(path, "a step cannot depend on itself");
      if (index.count(on) == 0) invalid(path, fmt::format("unknown step \"{}\"", printable(on)));
    }
  }
  // Depth-first search; a grey node met again closes a cycle.
  std::vector<int> color(steps.size(), 0);
  std::vector<size_t> stack;
  std::function<void(size_t)> visit = [&](size_t i) {
    color[i] = 1;
    stack.push_back(i);
    for (const std::string& on : steps[i].dependencies) {
      const size_t j = index.at(on);
      if (color[j] == 1) {
        std::string cycle;
        auto it = std::find(stack.begin(), stack.end(), j);
        for (; it != stack.end(); ++it) cycle += printable(steps[*it].name) + " -> ";
        cycle += printable(steps[j].name);
        invalid(key_path(index_path("steps", j), "dependencies"),
                fmt::format("dependency cycle: {}", cycle));
      }
      if (color[j] == 0) visit(j);
    }
    stack.pop_back();
    color[i] = 2;
  };
  for (size_t i = 0; i < steps.size(); ++i) {
    if (color[i] == 0) visit(i);
  }
}

JobTemplate job_template(const YAML::Node& root) {
  Fields f(root, "",
           {"specificationVersion", "$schema", "extensions", "name", "description",
            "parameterDefinitions", "jobEnvironments", "steps"});
  if (f.has("$schema")) as_string(f.get("$schema"), f.path("$schema"));
  JobTemplate t;
  t.extensions = extensions(f);
  Validator v(t.extensions);
  if (f.present("parameterDefinitions")) {
    t.parameter_definitions =
        v.parameter_definitions(f.get("parameterDefinitions"), f.path("parameterDefinitions"));
  }
  v.define_parameters(t.parameter_definitions);
  v.know_task_symbols(f.get("steps"));
  t.name = as_string(f.require("name"), f.path("name"));
  v.format_string_text(
      t.name, f.path("name"), v.template_scope(),
      TextRule{1, v.ext().feature_bundle_1 ? size_t{512} : size_t{128}, true, false});
  t.description = v.description(f);
  std::set<std::string> job_env_names;
  if (f.present("jobEnvironments")) {
    t.job_environments =
        v.environments(f.get("jobEnvironments"), f.path("jobEnvironments"), job_env_names, true);
  }
  const YAML::Node steps = as_seq(f.require("steps"), f.path("steps"));
  check_count(steps, f.path("steps"), 1, 0);
  std::set<std::string> step_names;
  for (size_t i = 0; i < steps.size(); ++i) {
    t.steps.push_back(v.step(steps[i], index_path("steps", i), job_env_names));
    if (!step_names.insert(t.steps.back().name).second) {
      invalid(key_path(index_path("steps", i), "name"),
              fmt::format("duplicate step name \"{}\"", printable(t.steps.back().name)));
    }
  }
  check_dependencies(t.steps);
  return t;
}

EnvironmentTemplate environment_template(const YAML::Node& root) {
  Fields f(
      root, "",
      {"specificationVersion", "$schema", "extensions", "parameterDefinitions", "environment"});
  if (f.has("$schema")) as_string(f.get("$schema"), f.path("$schema"));
  EnvironmentTemplate t;
  t.extensions = extensions(f);
  Validator v(t.extensions);
  if (f.present("parameterDefinitions")) {
    t.parameter_definitions =
        v.parameter_definitions(f.get("parameterDefinitions"), f.path("parameterDefinitions"));
  }
  v.define_parameters(t.parameter_definitions);
  t.environment = v.environment(f.require("environment"), f.path("environment"));
  return t;
}

}  // namespace

std::string_view parameter_type_name(ParameterType type) {
  switch (type) {
    case ParameterType::kString:
      return "STRING";
    case ParameterType::kPath:
      return "PATH";
    case ParameterType::kInt:
      return "INT";
    case ParameterType::kFloat:
      return "FLOAT";
  }
  return "?";
}

std::string_view task_parameter_type_name(TaskParameterType type) {
  switch (type) {
    case TaskParameterType::kInt:
      return "INT";
    case TaskParameterType::kFloat:
      return "FLOAT";
    case TaskParameterType::kString:
      return "STRING";
    case TaskParameterType::kPath:
      return "PATH";
    case TaskParameterType::kChunkInt:
      return "CHUNK[INT]";
  }
  return "?";
}

Result<Template> parse_template(std::string_view text) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("not YAML or JSON: {} (line {}, column {})", e.msg, e.mark.line + 1,
                            e.mark.column + 1));
  }
  try {
    if (kind_of(root) != Kind::kMap) invalid("", "a template must be a mapping");
    const YAML::Node version = root["specificationVersion"];
    if (!version.IsDefined() || kind_of(version) == Kind::kNull) {
      invalid("specificationVersion", "required field missing");
    }
    const std::string v = as_string(version, "specificationVersion");
    if (v == kJobTemplateVersion) return Template(job_template(root));
    if (v == kEnvironmentTemplateVersion) return Template(environment_template(root));
    invalid("specificationVersion", fmt::format("\"{}\" is not {} or {}", printable(v),
                                                kJobTemplateVersion, kEnvironmentTemplateVersion));
  } catch (const Invalid& e) {
    return fail(ErrorCode::kInvalidArgument, e.reason);
  } catch (const YAML::Exception& e) {
    return fail(ErrorCode::kInvalidArgument, fmt::format("malformed template: {}", e.msg));
  }
}

Result<JobTemplate> parse_job_template(std::string_view text) {
  auto t = parse_template(text);
  if (!t) return fail(t.error());
  if (auto* job = std::get_if<JobTemplate>(&*t)) return std::move(*job);
  return fail(
      ErrorCode::kInvalidArgument,
      fmt::format("specificationVersion: an environment template, not {}", kJobTemplateVersion));
}

Result<EnvironmentTemplate> parse_environment_template(std::string_view text) {
  auto t = parse_template(text);
  if (!t) return fail(t.error());
  if (auto* env = std::get_if<EnvironmentTemplate>(&*t)) return std::move(*env);
  return fail(
      ErrorCode::kInvalidArgument,
      fmt::format("specificationVersion: a job template, not {}", kEnvironmentTemplateVersion));
}

Result<std::vector<int64_t>> parse_int_range_expression(std::string_view text, size_t max_items) {
  auto elements = range_elements(text);
  if (!elements) return fail(elements.error());
  const Int128 count = range_count(*elements);
  if (count > static_cast<Int128>(max_items)) {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("range expression \"{}\": {} items, at most {}", printable(text),
                            static_cast<int64_t>(std::min<Int128>(count, INT64_MAX)), max_items));
  }
  std::vector<int64_t> values;
  for (const auto& e : *elements) {
    Int128 v = e.start;
    for (Int128 k = 0; k < e.count; ++k, v += e.step) values.push_back(static_cast<int64_t>(v));
  }
  std::sort(values.begin(), values.end());
  return values;
}

std::string capability_name_problem(const std::string& name, bool amount) {
  try {
    capability_name(name, "", amount);
  } catch (const Invalid& e) {
    return e.reason;
  }
  return "";
}

std::string attribute_value_problem(const std::string& attribute, const std::string& value) {
  try {
    attribute_value(kStandardAttributes.find(ascii_lower(attribute)), value, "");
  } catch (const Invalid& e) {
    return e.reason;
  }
  return "";
}

std::string text_problem(std::string_view text, size_t min, size_t max, bool no_control) {
  try {
    check_text("", text, TextRule{min, max, no_control, false});
  } catch (const Invalid& e) {
    return e.reason;
  }
  return "";
}

}  // namespace farmhand::openjd
