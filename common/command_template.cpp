#include "common/command_template.h"

#include <algorithm>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <utility>

#include <re2/re2.h>

namespace farmhand::common {

namespace {

// Widest zero padding accepted in {frame:0N}: wider than any int64 needs.
constexpr int kMaxPadWidth = 20;

bool is_builtin(std::string_view name) {
  return std::find(std::begin(kBuiltinPlaceholders), std::end(kBuiltinPlaceholders), name) !=
         std::end(kBuiltinPlaceholders);
}

bool is_frame_number(std::string_view name) {
  return name == "frame" || name == "first" || name == "last";
}

bool is_identifier(std::string_view name) {
  if (name.empty()) return false;
  const auto word_char = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  };
  if (name[0] >= '0' && name[0] <= '9') return false;
  return std::all_of(name.begin(), name.end(), word_char);
}

// One piece of a parsed argv word: literal text, or a placeholder with its padding.
struct Piece {
  bool placeholder = false;
  std::string text;  // literal text, or the placeholder's name
  int width = 0;     // zero-pad width; 0 = none
};

// Parses one argv word; errors name the word and the command.
Result<std::vector<Piece>> parse_word(const CommandTemplate& tmpl, std::string_view word) {
  const auto bad = [&](const std::string& what) {
    return fail(ErrorCode::kInvalidArgument,
                what + " in argv word '" + printable(word) + "' of command '" + tmpl.name + "'");
  };
  std::vector<Piece> pieces;
  const auto add_literal = [&](std::string_view text) {
    if (pieces.empty() || pieces.back().placeholder) pieces.push_back(Piece{});
    pieces.back().text += text;
  };
  std::size_t i = 0;
  while (i < word.size()) {
    const char c = word[i];
    if (c == '}') {
      if (i + 1 < word.size() && word[i + 1] == '}') {
        add_literal("}");
        i += 2;
        continue;
      }
      return bad("unmatched '}'");
    }
    if (c != '{') {
      const std::size_t next = word.find_first_of("{}", i);
      const std::size_t end = next == std::string_view::npos ? word.size() : next;
      add_literal(word.substr(i, end - i));
      i = end;
      continue;
    }
    if (i + 1 < word.size() && word[i + 1] == '{') {
      add_literal("{");
      i += 2;
      continue;
    }
    const std::size_t close = word.find('}', i + 1);
    if (close == std::string_view::npos) return bad("unclosed '{'");
    const std::string_view body = word.substr(i + 1, close - i - 1);
    if (body.empty()) return bad("empty placeholder {}");
    const std::size_t colon = body.find(':');
    const std::string_view name = body.substr(0, colon);
    if (!is_identifier(name)) return bad("bad placeholder {" + printable(body) + "}");
    Piece piece{true, std::string(name), 0};
    if (colon != std::string_view::npos) {
      const std::string_view spec = body.substr(colon + 1);
      if (!is_frame_number(name)) {
        return bad("format on {" + printable(body) +
                   "} (only {frame}, {first} and {last} take one)");
      }
      // Only zero padding: it is what file names need, and a small grammar stays checkable.
      const bool digits =
          spec.size() >= 2 && spec.size() <= 3 && spec[0] == '0' &&
          std::all_of(spec.begin() + 1, spec.end(), [](char d) { return d >= '0' && d <= '9'; });
      const int width = digits ? std::stoi(std::string(spec.substr(1))) : 0;
      if (width < 1 || width > kMaxPadWidth) {
        return bad("bad format in {" + printable(body) + "} (use zero padding like {" +
                   std::string(name) + ":04})");
      }
      piece.width = width;
    }
    pieces.push_back(std::move(piece));
    i = close + 1;
  }
  for (const Piece& piece : pieces) {
    if (piece.placeholder && !is_builtin(piece.text) && tmpl.params.count(piece.text) == 0) {
      return fail(ErrorCode::kInvalidArgument,
                  "unknown placeholder {" + piece.text + "} in command '" + tmpl.name + "'");
    }
  }
  return pieces;
}

// Why RE2 refused a pattern, with a hint for what it refuses on purpose: it
// matches in time linear in the value, so it has no backreferences or lookaround
// (a backtracking engine given ^(a+)+$ and a long value stalls the broker).
std::string pattern_error(const RE2& regex) {
  std::string why = regex.error();
  const std::string& arg = regex.error_arg();
  if (regex.error_code() == RE2::ErrorBadEscape && arg.size() == 2 && arg[1] >= '1' &&
      arg[1] <= '9') {
    why += " (backreferences are not supported: patterns are matched in linear time)";
  } else if (regex.error_code() == RE2::ErrorBadPerlOp && (arg == "(?=" || arg == "(?!")) {
    why += " (lookahead is not supported: patterns are matched in linear time)";
  } else if (regex.error_code() == RE2::ErrorBadPerlOp && arg == "(?<") {
    why +=
        " (lookbehind is not supported: patterns are matched in linear time; a named group is "
        "(?P<name>...))";
  }
  return why;
}

// Compiled patterns, shared by every caller: validate_params runs per submit and
// expand_task per dispatch, and compiling a regex costs far more than a match.
// Patterns come from the config, so the cache stays small; it is cleared if not.
// RE2, not a backtracking engine: the values come from users, and RE2 matches in time
// linear in the value, with no recursion, whatever the pattern.
class PatternCache {
 public:
  Result<std::shared_ptr<const RE2>> get(const std::string& pattern) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = compiled_.find(pattern);
      if (it != compiled_.end()) return it->second;
    }
    RE2::Options options;
    // Bytes, as the backtracking matcher did before: a value that is not UTF-8
    // is matched (and refused by the pattern) rather than failing to decode.
    options.set_encoding(RE2::Options::EncodingLatin1);
    options.set_log_errors(false);
    auto regex = std::make_shared<const RE2>(pattern, options);
    if (!regex->ok()) {
      return fail(ErrorCode::kInvalidArgument,
                  "pattern '" + printable(pattern) +
                      "' is not a valid regex: " + printable(pattern_error(*regex), 200));
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (compiled_.size() >= kMaxEntries) compiled_.clear();
    compiled_.emplace(pattern, regex);
    return regex;
  }

 private:
  static constexpr std::size_t kMaxEntries = 1024;

  std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<const RE2>> compiled_;
};

PatternCache& pattern_cache() {
  static PatternCache cache;
  return cache;
}

// fmt's "{:0N}": the sign counts towards the width, so -7 at width 4 is "-007".
std::string format_frame(int64_t frame, int width) {
  std::string digits = std::to_string(frame);
  const bool negative = frame < 0;
  if (static_cast<int>(digits.size()) >= width) return digits;
  const std::size_t pad = static_cast<std::size_t>(width) - digits.size();
  digits.insert(negative ? 1 : 0, pad, '0');
  return digits;
}

std::string join(const std::vector<std::string>& parts, std::string_view separator) {
  std::string out;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    if (i > 0) out += separator;
    out += parts[i];
  }
  return out;
}

}  // namespace

Result<void> check_argv_word(const CommandTemplate& tmpl, std::string_view word) {
  auto pieces = parse_word(tmpl, word);
  if (!pieces) return fail(std::move(pieces.error()));
  return {};
}

Result<void> check_template(const CommandTemplate& tmpl) {
  if (tmpl.argv.empty()) {
    return fail(ErrorCode::kInvalidArgument, "command '" + tmpl.name + "' has an empty argv");
  }
  for (const std::string& word : tmpl.argv) {
    auto checked = check_argv_word(tmpl, word);
    if (!checked) return checked;
  }
  return {};
}

Result<void> check_pattern(const std::string& pattern) {
  auto regex = pattern_cache().get(pattern);
  if (!regex) return fail(std::move(regex.error()));
  return {};
}

Result<void> check_param_value(const std::string& name, const ParamSpec& spec,
                               const std::string& value) {
  if (value.size() > kMaxParamValueBytes) {
    return fail(ErrorCode::kInvalidArgument, "param '" + name + "' value is longer than " +
                                                 std::to_string(kMaxParamValueBytes) + " bytes");
  }
  // argv words are C strings: a NUL would silently cut the value short.
  if (value.find('\0') != std::string::npos) {
    return fail(ErrorCode::kInvalidArgument, "param '" + name + "' value contains a nul byte");
  }
  auto regex = pattern_cache().get(spec.pattern);
  if (!regex) return fail(std::move(regex.error()));
  // A full match, as before: the pattern need not be anchored.
  const bool matched = RE2::FullMatch(value, **regex);
  if (!matched) {
    return fail(ErrorCode::kInvalidArgument, "param '" + name + "' value '" + printable(value) +
                                                 "' does not match " + printable(spec.pattern));
  }
  return {};
}

Result<std::map<std::string, std::string>> validate_params(
    const CommandTemplate& tmpl, const std::map<std::string, std::string>& params) {
  std::vector<std::string> problems;
  for (const auto& [name, value] : params) {
    if (tmpl.params.count(name) == 0) {
      problems.push_back("unknown param '" + printable(name) + "' for command '" + tmpl.name + "'");
    }
  }
  std::map<std::string, std::string> filled;
  for (const auto& [name, spec] : tmpl.params) {
    auto given = params.find(name);
    if (given == params.end() && !spec.default_value) {
      problems.push_back("missing param '" + name + "' for command '" + tmpl.name + "'");
      continue;
    }
    const std::string& value = given != params.end() ? given->second : *spec.default_value;
    auto checked = check_param_value(name, spec, value);
    if (!checked) {
      problems.push_back(checked.error().reason);
      continue;
    }
    filled.emplace(name, value);
  }
  if (!problems.empty()) return fail(ErrorCode::kInvalidArgument, join(problems, "; "));
  return filled;
}

Result<std::vector<std::vector<std::string>>> expand_task(
    const CommandTemplate& tmpl, const std::map<std::string, std::string>& params,
    const TaskContext& task) {
  auto values = validate_params(tmpl, params);
  if (!values) return fail(std::move(values.error()));
  if (tmpl.argv.empty()) {
    return fail(ErrorCode::kInvalidArgument, "command '" + tmpl.name + "' has an empty argv");
  }

  std::vector<std::vector<Piece>> words;
  words.reserve(tmpl.argv.size());
  bool per_frame = false;
  bool uses_frames = false;
  for (const std::string& word : tmpl.argv) {
    auto pieces = parse_word(tmpl, word);
    if (!pieces) return fail(std::move(pieces.error()));
    for (const Piece& piece : *pieces) {
      if (!piece.placeholder) continue;
      per_frame = per_frame || piece.text == "frame";
      uses_frames = uses_frames || is_frame_number(piece.text) || piece.text == "frames";
    }
    words.push_back(std::move(*pieces));
  }

  const FrameSet& chunk = task.frames;
  const std::string task_name =
      "task " + std::to_string(task.task_index) + " of job " + std::to_string(task.job_id);
  if (uses_frames && chunk.empty()) {
    return fail(ErrorCode::kInvalidArgument, task_name + " has no frames");
  }
  const uint64_t invocations = per_frame ? chunk.size() : 1;
  if (invocations > kMaxInvocationsPerTask) {
    return fail(ErrorCode::kInvalidArgument,
                task_name + " would run " + std::to_string(invocations) + " invocations (limit " +
                    std::to_string(kMaxInvocationsPerTask) + ")");
  }

  const int64_t first = chunk.empty() ? 0 : chunk.frame_at(0);
  const int64_t last = chunk.empty() ? 0 : chunk.frame_at(chunk.size() - 1);
  // Computed once per task: to_string walks the ranges and is the same for every frame.
  const std::string frames_text = uses_frames ? chunk.to_string() : std::string();
  const std::string job_text = std::to_string(task.job_id);
  const std::string task_text = std::to_string(task.task_index);

  std::vector<std::vector<std::string>> argvs;
  argvs.reserve(invocations);
  for (uint64_t i = 0; i < invocations; ++i) {
    const int64_t frame = per_frame ? chunk.frame_at(i) : first;
    std::vector<std::string> argv;
    argv.reserve(words.size());
    for (const std::vector<Piece>& pieces : words) {
      std::string out;
      for (const Piece& piece : pieces) {
        if (!piece.placeholder) {
          out += piece.text;
        } else if (piece.text == "frame") {
          out += format_frame(frame, piece.width);
        } else if (piece.text == "first") {
          out += format_frame(first, piece.width);
        } else if (piece.text == "last") {
          out += format_frame(last, piece.width);
        } else if (piece.text == "frames") {
          out += frames_text;
        } else if (piece.text == "job") {
          out += job_text;
        } else if (piece.text == "task") {
          out += task_text;
        } else {
          out += values->at(piece.text);
        }
      }
      argv.push_back(std::move(out));
    }
    argvs.push_back(std::move(argv));
  }
  return argvs;
}

}  // namespace farmhand::common
