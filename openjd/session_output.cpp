#include "openjd/session_output.h"

#include <algorithm>
#include <charconv>
#include <cmath>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace farmhand::openjd {
namespace {

enum class Kind { kNone, kProgress, kStatus, kFail, kEnv, kRedactedEnv, kUnsetEnv };

struct Special {
  Kind kind = Kind::kNone;
  std::string_view message;  // after "openjd_<kind>: ", not empty
};

// `^openjd_(progress|status|fail|env|redacted_env|unset_env): (.+)$`
Special special_of(std::string_view line) {
  static constexpr std::pair<std::string_view, Kind> kKinds[] = {
      {"openjd_progress: ", Kind::kProgress},
      {"openjd_status: ", Kind::kStatus},
      {"openjd_fail: ", Kind::kFail},
      {"openjd_env: ", Kind::kEnv},
      {"openjd_redacted_env: ", Kind::kRedactedEnv},
      {"openjd_unset_env: ", Kind::kUnsetEnv},
  };
  for (const auto& [prefix, kind] : kKinds) {
    if (line.size() > prefix.size() && line.substr(0, prefix.size()) == prefix) {
      return {kind, line.substr(prefix.size())};
    }
  }
  return {};
}

// An env command written almost right ("openjd_env:X=1", " OPENJD_ENV: X=1"):
// the author meant it, so it must not pass silently.
bool near_env_command(std::string_view line) {
  std::string lower;
  for (char c : line.substr(line.find_first_not_of(" \t") == std::string_view::npos
                                ? line.size()
                                : line.find_first_not_of(" \t"))) {
    lower += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  }
  for (std::string_view prefix : {"openjd_env", "openjd_redacted_env", "openjd_unset_env"}) {
    if (lower.rfind(prefix, 0) == 0) return true;
  }
  return false;
}

// [A-Za-z_][A-Za-z0-9_]*
bool is_env_name(std::string_view name) {
  if (name.empty() || (name[0] >= '0' && name[0] <= '9')) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
  });
}

std::string_view trim_left(std::string_view text) {
  const size_t start = text.find_first_not_of(" \t");
  return start == std::string_view::npos ? std::string_view() : text.substr(start);
}

struct Assignment {
  std::string name;
  std::string value;
};

// NAME=VALUE, or the same as a JSON string ("NAME=a\nb") for a value with
// newlines; nullopt if it is neither.
std::optional<Assignment> assignment_of(std::string_view message) {
  message = trim_left(message);
  std::string text(message);
  if (!message.empty() && message.front() == '"') {
    auto decoded = nlohmann::json::parse(message, nullptr, /*allow_exceptions=*/false);
    if (!decoded.is_string()) return std::nullopt;
    text = decoded.get<std::string>();
  }
  const size_t eq = text.find('=');
  if (eq == std::string::npos || !is_env_name(std::string_view(text).substr(0, eq))) {
    return std::nullopt;
  }
  return Assignment{text.substr(0, eq), text.substr(eq + 1)};
}

}  // namespace

void SessionOutput::add_secret(const std::string& value) {
  if (value.empty()) return;
  auto add = [](std::vector<std::string>& to, std::string part) {
    if (!part.empty() && std::find(to.begin(), to.end(), part) == to.end()) {
      to.push_back(std::move(part));
    }
  };
  add(secrets_, value);
  // A value of several lines shows a line at a time: its first and last lines
  // may sit inside other text, the lines between are whole lines.
  std::vector<std::string> parts;
  for (size_t start = 0;;) {
    const size_t end = value.find('\n', start);
    parts.push_back(
        value.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) break;
    start = end + 1;
  }
  if (parts.size() < 2) return;
  for (size_t i = 0; i < parts.size(); ++i) {
    add(i == 0 || i + 1 == parts.size() ? secrets_ : secret_lines_, parts[i]);
  }
}

std::string SessionOutput::redact(std::string_view text) const {
  if (secrets_.empty() && secret_lines_.empty()) return std::string(text);
  if (std::find(secret_lines_.begin(), secret_lines_.end(), text) != secret_lines_.end()) {
    return std::string(kRedacted);
  }
  // Every occurrence of every secret, overlapping ones merged, each replaced
  // by one fixed-length mark (so the mark tells nothing of the length).
  std::vector<std::pair<size_t, size_t>> spans;
  for (const std::string& secret : secrets_) {
    for (size_t at = text.find(secret); at != std::string_view::npos;
         at = text.find(secret, at + 1)) {
      spans.emplace_back(at, at + secret.size());
    }
  }
  if (spans.empty()) return std::string(text);
  std::sort(spans.begin(), spans.end());
  std::string out;
  size_t copied = 0;
  for (size_t i = 0; i < spans.size();) {
    size_t start = spans[i].first;
    size_t end = spans[i].second;
    for (++i; i < spans.size() && spans[i].first <= end; ++i) end = std::max(end, spans[i].second);
    out.append(text.substr(copied, start - copied));
    out.append(kRedacted);
    copied = end;
  }
  out.append(text.substr(copied));
  return out;
}

OutputLine SessionOutput::read(std::string_view line, bool entering) {
  OutputLine out;
  const Special special = special_of(line);
  switch (special.kind) {
    case Kind::kNone:
      if (near_env_command(line)) {
        out.problem = "incorrectly formatted openjd env command";
        out.fails_action = true;
      }
      break;
    case Kind::kProgress: {
      const std::string text(trim_left(special.message));
      double value = 0;
      auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
      if (ec != std::errc{} || end != text.data() + text.size() || !std::isfinite(value) ||
          value < 0 || value > 100) {
        out.problem = "progress must be a number from 0 to 100";
      } else {
        out.progress = value;
      }
      break;
    }
    case Kind::kStatus:
      out.status = std::string(special.message);
      break;
    case Kind::kFail:
      out.failure = std::string(special.message);
      break;
    case Kind::kEnv:
    case Kind::kRedactedEnv: {
      const bool redacted = special.kind == Kind::kRedactedEnv;
      auto assignment = assignment_of(special.message);
      if (redacted) {
        // Whatever it says after the name is secret, well formed or not.
        const std::string_view message = trim_left(special.message);
        const size_t eq = message.find('=');
        if (assignment) {
          add_secret(assignment->value);
          if (!message.empty() && message.front() == '"')
            add_secret(std::string(message.substr(eq + 1)));
        } else {
          add_secret(std::string(eq == std::string_view::npos ? message : message.substr(eq + 1)));
        }
      }
      if (!assignment) {
        out.problem = "cannot read the environment variable assignment (NAME=VALUE)";
        out.fails_action = true;
      } else if (entering && (!redacted || redacted_extension_)) {
        // Without REDACTED_ENV_VARS a redacted variable is hidden, not set.
        out.env = EnvChange{assignment->name, assignment->value};
      }
      break;
    }
    case Kind::kUnsetEnv: {
      const std::string_view name = trim_left(special.message);
      if (!is_env_name(name)) {
        out.problem = "cannot read the environment variable name";
        out.fails_action = true;
      } else if (entering) {
        out.env = EnvChange{std::string(name), std::nullopt};
      }
      break;
    }
  }
  out.logged = redact(line);
  if (!out.problem.empty()) out.logged += " -- ERROR: " + out.problem;
  return out;
}

std::vector<EnvChange> SessionOutput::settle(const std::vector<EnvChange>& changes) {
  std::vector<EnvChange> out;
  for (const EnvChange& change : changes) {
    auto it = std::find_if(out.begin(), out.end(),
                           [&](const EnvChange& e) { return e.name == change.name; });
    if (it == out.end()) {
      out.push_back(change);
    } else if (it->value) {
      it->value = change.value;  // a later set replaces a set; an unset stays
    }
  }
  return out;
}

}  // namespace farmhand::openjd
