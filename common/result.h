// Result<T>: the value-or-error type every fallible farmhand function returns.
//
// Expected failures are values, not exceptions (STYLE.md 2.4). This is the one
// file that names tl::expected, so moving to std::expected touches only here.
// Error reasons are one line, lower case, no final full stop, and name the
// object: "missing frame 1012", "unknown job 42".
#pragma once

#include <string>
#include <string_view>
#include <utility>

#include <tl/expected.hpp>

namespace farmhand {

enum class ErrorCode {
  kInvalidArgument,
  kNotFound,
  kCorrupt,
  kIo,
  kTimeout,
  kCrashed,
  kCancelled,
  kUnavailable,
  kInternal,
  // This client may not use the broker (CurveZMQ refused its key); what the
  // CLI exits with is the same as for an unreachable broker.
  kPermissionDenied,
};

// The enumerator's name without the k, e.g. "invalid_argument".
std::string_view error_code_name(ErrorCode code);

// Parses a name produced by error_code_name; unknown names map to kInternal.
ErrorCode error_code_from_name(std::string_view name);

struct Error {
  ErrorCode code = ErrorCode::kInternal;
  std::string reason;
};

template <typename T>
using Result = tl::expected<T, Error>;

// The failed Result of any T: `return fail(ErrorCode::kNotFound, "unknown job 4");`
inline tl::unexpected<Error> fail(ErrorCode code, std::string reason) {
  return tl::unexpected<Error>(Error{code, std::move(reason)});
}

inline tl::unexpected<Error> fail(Error error) {
  return tl::unexpected<Error>(std::move(error));
}

// No cut: printable(text, kWholeText) escapes all of `text`.
inline constexpr size_t kWholeText = std::string_view::npos;

// User text made safe to quote in an error reason, print on a terminal or write
// to a log: names, labels, meta, paths, event ids and reasons are stored as
// given but never shown raw. Every byte a terminal could act on is escaped as
// \xNN: C0 controls (ESC, CR, LF, BEL, ...), DEL, C1 controls (U+0080-U+009F,
// each byte of their UTF-8), the bidirectional overrides and isolates and the
// line and paragraph separators (U+202A-U+202E, U+2066-U+2069, U+2028, U+2029),
// and every byte that is not part of valid UTF-8. Other UTF-8 and the backslash
// pass unchanged. The result is one line; with a `max_bytes` it is cut after
// that many bytes of `text` (at a character boundary) and ends in "...".
std::string printable(std::string_view text, size_t max_bytes = 80);

// printable() for multi-line text shown as text (a task's log): line feeds and
// tabs are kept, everything else printable() escapes is escaped; never cut.
std::string printable_lines(std::string_view text);

// `text` with ASCII upper-case letters made lower case (names compared without
// case: OpenJD capabilities, config keys, rule patterns); other bytes as they are.
std::string ascii_lower(std::string_view text);

// A broken invariant is a bug: log and abort.
[[noreturn]] void check_failed(const char* expr, const char* file, int line);

}  // namespace farmhand

#define FARMHAND_CHECK(cond) \
  ((cond) ? static_cast<void>(0) : ::farmhand::check_failed(#cond, __FILE__, __LINE__))
