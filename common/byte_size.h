// Sizes as people write them: "64G", "512M", "1.5T", "8GiB", "4096" (bytes).
// Suffixes are binary (K = 1024), as on render farms (OpenCue, Deadline, Slurm).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"

namespace farmhand::common {

// Bytes of a size; one line naming what was wrong otherwise ("'12Q': unknown
// unit 'Q' (use K, M, G or T)"). Zero is allowed.
Result<uint64_t> parse_byte_size(std::string_view text);

// "31.2 GiB", "512.0 MiB", "900 B".
std::string format_byte_size(uint64_t bytes);

}  // namespace farmhand::common
