// Byte sizes as people write them: "64G", "512M", "1.5T", "8GiB", or plain
// bytes, and back as "31.2 GiB". Used for memory on both sides: a worker's
// `--memory`, a job's `--memory` request, and the peaks in failure reasons.
//
// Units are binary (K = 1024), as in OpenCue, Slurm and docker: "8G" is
// 8 GiB. A suffix may be followed by "B" or "iB" and is case-insensitive.
//
// Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"

namespace farmhand::common {

// "64G" -> 68719476736. A fraction needs a unit ("1.5T"; "1.5" is refused),
// and is rounded down to a whole byte. Errors (kInvalidArgument), one line:
// "bad size '12X' (expected bytes or a number with K, M, G, T or P, e.g. 512M)",
// "size '99999P' is too large".
[[nodiscard]] Result<uint64_t> parse_byte_size(std::string_view text);

// The size in the largest binary unit it reaches, one decimal, a trailing
// ".0" dropped: "512 B", "1.5 KiB", "31.2 GiB", "8 GiB".
std::string format_byte_size(uint64_t bytes);

}  // namespace farmhand::common
