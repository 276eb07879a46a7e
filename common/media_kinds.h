// The media job kinds: work done by a worker's farmhand-media process with
// OpenImageIO and libav* (thumbnail, convert, transcode, contactsheet), as
// opposed to commands and noops. One list for the broker, the config checker,
// the worker and the CLI.
#pragma once

#include <algorithm>
#include <iterator>
#include <string_view>

namespace farmhand::common {

inline constexpr std::string_view kMediaKinds[] = {"thumbnail", "convert", "transcode",
                                                   "contactsheet"};

inline bool is_media_kind(std::string_view kind) {
  return std::find(std::begin(kMediaKinds), std::end(kMediaKinds), kind) != std::end(kMediaKinds);
}

}  // namespace farmhand::common
