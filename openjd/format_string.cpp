#include "openjd/format_string.h"

#include <fmt/format.h>

namespace farmhand::openjd {

namespace {

bool is_identifier_start(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

bool is_identifier_char(char c) {
  return is_identifier_start(c) || (c >= '0' && c <= '9');
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// <Name> ::= <Name> "." <Identifier> | <Identifier>
bool is_dotted_name(std::string_view s) {
  if (s.empty()) return false;
  bool at_start = true;
  for (char c : s) {
    if (at_start) {
      if (!is_identifier_start(c)) return false;
      at_start = false;
    } else if (c == '.') {
      at_start = true;
    } else if (!is_identifier_char(c)) {
      return false;
    }
  }
  return !at_start;
}

}  // namespace

bool is_identifier(std::string_view text) {
  if (text.empty() || !is_identifier_start(text[0])) return false;
  for (char c : text) {
    if (!is_identifier_char(c)) return false;
  }
  return true;
}

Result<FormatString> parse_format_string(std::string_view text) {
  FormatString out;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t open = text.find("{{", pos);
    if (open == std::string_view::npos) {
      out.literal.append(text.substr(pos));
      break;
    }
    out.literal.append(text.substr(pos, open - pos));
    const size_t close = text.find("}}", open + 2);
    if (close == std::string_view::npos) {
      return fail(ErrorCode::kInvalidArgument, "unclosed \"{{\" in format string");
    }
    const std::string_view inner = trim(text.substr(open + 2, close - open - 2));
    if (inner.empty()) {
      return fail(ErrorCode::kInvalidArgument, "empty \"{{ }}\" in format string");
    }
    if (!is_dotted_name(inner)) {
      return fail(ErrorCode::kInvalidArgument,
                  fmt::format("expression \"{}\" is not a value reference (expressions need "
                              "the EXPR extension, which farmhand does not support)",
                              printable(inner)));
    }
    out.references.emplace_back(inner);
    pos = close + 2;
  }
  return out;
}

Result<std::string> resolve_format_string(std::string_view text,
                                          const std::map<std::string, std::string>& symbols) {
  std::string out;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t open = text.find("{{", pos);
    if (open == std::string_view::npos) {
      out.append(text.substr(pos));
      break;
    }
    out.append(text.substr(pos, open - pos));
    const size_t close = text.find("}}", open + 2);
    if (close == std::string_view::npos) {
      return fail(ErrorCode::kInvalidArgument, "unclosed \"{{\" in format string");
    }
    const std::string name(trim(text.substr(open + 2, close - open - 2)));
    auto it = symbols.find(name);
    if (it == symbols.end()) {
      return fail(ErrorCode::kInvalidArgument,
                  fmt::format("\"{}\" has no value here", printable(name)));
    }
    out.append(it->second);
    pos = close + 2;
  }
  return out;
}

}  // namespace farmhand::openjd
