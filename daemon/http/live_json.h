// The live stream's JSON (/api/v1/stream), written straight into a string.
//
// A busy farm moves about a thousand jobs a second and every open monitor
// reads them: building each entry as an nlohmann::json object (a std::map of
// std::string keys, one allocation a member) and dumping it cost the HTTP
// front most of its CPU, and on a small server that CPU comes out of
// dispatch. protobuf's JSON printer (reflection) cost more still.
//
// The names and the mapping are the API's (protobuf's JSON mapping, as
// api/openapi.yaml gives it): 64-bit integers as strings, enums by name,
// field names as in the .proto; fields at their default are left out.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "farmhand.pb.h"

#include "daemon/farm.h"

namespace farmhand::daemon {

// Appends `text` as a JSON string (quoted; '"', '\\' and the control
// characters escaped as RFC 8259 asks; the rest, valid UTF-8 as protobuf
// strings are, as it is).
void append_json_string(std::string& out, std::string_view text);

// A job's summary as a stream entry carries it. With `progress`, everything a
// row shows (counts, frames, requests); without, what a list needs to place a
// job that moved and match it against its filter (name, kind, state, who,
// which publish made it, times).
std::string live_job_json(const wire::JobSummary& job, bool progress);

// The same for a job board's card: its fixed part with `moving` over it (state,
// counts, frames done, times), without making its whole summary (a protobuf
// copy with a map of counts, made and freed for every entry).
std::string live_job_json(const wire::JobSummary& fixed, const JobMoving& moving, bool progress);

}  // namespace farmhand::daemon
