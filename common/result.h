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

// User text quoted in an error reason: reasons are one line, so control bytes
// are escaped ("\x0a"), and long values are cut after `max_bytes` with "...".
std::string printable(std::string_view text, size_t max_bytes = 80);

// A broken invariant is a bug: log and abort.
[[noreturn]] void check_failed(const char* expr, const char* file, int line);

}  // namespace farmhand

#define FARMHAND_CHECK(cond) \
  ((cond) ? static_cast<void>(0) : ::farmhand::check_failed(#cond, __FILE__, __LINE__))
