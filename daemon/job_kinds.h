// The job kinds: one row each in a table, the only place that knows them.
//
// A row says how a submitted spec of that kind is checked and completed
// (`prepare`, at submit, once) and how one of its tasks is described to a
// worker (`assign`, at dispatch). Adding a job kind is one row here plus its
// processor on the worker. Pure: no sockets, no store; `prepare` of a media
// kind reads one directory (the input's frames).
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "farmhand.pb.h"

#include "common/config.h"
#include "common/frame_set.h"
#include "common/result.h"

namespace farmhand::daemon {

struct KindContext {
  const common::Config& config;
  // A media job's input frames when a publish has read them already.
  const common::FrameSet* on_disk = nullptr;
};

struct JobKind {
  std::string_view name;
  // Short, publish-driven media work: may run in the interactive lane.
  bool interactive_lane = false;
  Result<void> (*prepare)(wire::JobSpec& spec, const KindContext& context);
  // Fills one task's payload (commands, media request) into `assign`.
  Result<void> (*assign)(const wire::JobSpec& spec, const common::FrameSet& frames,
                         const common::Config& config, wire::Assign& assign);
};

std::span<const JobKind> job_kinds();
const JobKind* find_job_kind(std::string_view name);
// "noop, command, thumbnail, convert, transcode".
std::string job_kind_names();

}  // namespace farmhand::daemon
