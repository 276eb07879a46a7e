// Path templates: how publish rules name their outputs from a published input.
//
//   output: "{dir}/proxy/{name}.{frame}.jpg"
//
// For the input /show/sh010/comp/sh010_comp_v003.####.exr (frames 1001-1100):
//   {path}    the input as published          /show/sh010/comp/sh010_comp_v003.####.exr
//   {dir}     its directory, no trailing '/'  /show/sh010/comp
//   {name}    the file name without frame number, separator and extension   sh010_comp_v003
//   {ext}     the extension, without the dot  exr
//   {frame}   the input's padding, to keep it in outputs: #### (padding 4), else %0Nd
//   {first} {last} {frames}   the frames on disk: 1001, 1100, 1001-1100
//   {meta.KEY}   a metadata value of the publish (shot, task, version, ...)
//   {event}   the publish event's id
// Write {{ and }} for literal braces. A template is checked when the config is
// loaded (unknown placeholders are errors there) and expanded for each publish.
// Pure functions.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "common/result.h"

namespace farmhand::common {

struct PathVars {
  std::string path;
  std::string dir;
  std::string name;
  std::string ext;
  std::string frame;  // empty: the input is a single file, {frame} is an error
  std::string first;  // empty: no frames known
  std::string last;
  std::string frames;
  std::string event;
  std::map<std::string, std::string> meta;
};

// A metadata key: 1-128 of [A-Za-z0-9_.-], so {meta.KEY} can name it.
bool is_meta_key(std::string_view key);

// Every placeholder is known and every brace balanced. The error names the problem:
// "unknown placeholder {nmae} (known: path, dir, name, ext, frame, first, last, frames,
// event, meta.KEY)".
[[nodiscard]] Result<void> check_path_template(std::string_view text);

// The placeholders' values substituted. Fails (kInvalidArgument) for a metadata key the
// publish lacks, {frame} of a single file, and a metadata value that cannot be part of
// a path: one with '/', a control character, or "." / "..".
[[nodiscard]] Result<std::string> expand_path_template(std::string_view text, const PathVars& vars);

// The vars of a published path: a sequence pattern or a single file.
[[nodiscard]] Result<PathVars> path_vars(const std::string& path);

}  // namespace farmhand::common
