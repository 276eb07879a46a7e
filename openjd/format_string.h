// OpenJD format strings (2023-09, section 7.3): text with `{{ Name.Dotted }}`
// value references. Without the EXPR extension an interpolation holds exactly one
// dotted name; anything else is refused. Pure, thread-safe.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace farmhand::openjd {

struct FormatString {
  // The literal text with every interpolation removed (what is certain to be in
  // the resolved string), and the names referenced, in order.
  std::string literal;
  std::vector<std::string> references;

  bool has_references() const { return !references.empty(); }
};

// <Identifier>: [A-Za-z_][A-Za-z0-9_]* (parameter, step-free names; 7.1).
bool is_identifier(std::string_view text);

// Splits `text`; the error reason is the rule broken, without a field path,
// e.g. `unclosed "{{"` or `expression "1 + 2" needs the EXPR extension`.
[[nodiscard]] Result<FormatString> parse_format_string(std::string_view text);

// `text` with every `{{ Name }}` replaced by its value from `symbols`. A name
// `symbols` lacks is an error naming it (templates are validated first, so
// that is a scope the caller did not fill in).
[[nodiscard]] Result<std::string> resolve_format_string(
    std::string_view text, const std::map<std::string, std::string>& symbols);

}  // namespace farmhand::openjd
