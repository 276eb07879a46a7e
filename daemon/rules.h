// Publish rules: from a published path and its metadata to the jobs the
// config's rules make for it.
//
// resolve_publish() turns the path into items: a sequence pattern is one item
// (its frames read from disk), a file is one item, a directory gives one item
// per sequence or file directly inside it. plan_rule() then builds, for one
// rule and one item, the wire JobSpecs of the rule's jobs in dependency order,
// with output paths expanded from the item (common/path_template.h). The broker
// submits them through its normal submit path, so a planned job is validated
// exactly like one from `farmhand submit`.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "farmhand.pb.h"

#include "common/config.h"
#include "common/frame_set.h"
#include "common/path_template.h"
#include "common/result.h"

namespace farmhand::daemon {

struct PublishItem {
  std::string path;  // a sequence pattern or a file
  std::string kind;  // sequence | image | movie | file
  common::PathVars vars;
  std::optional<common::FrameSet> frames;  // a sequence's frames on disk
};

// Reads the file system: a missing path is an error ("nothing published at X").
[[nodiscard]] Result<std::vector<PublishItem>> resolve_publish(const std::string& path);

bool rule_matches(const common::Rule& rule, const PublishItem& item,
                  const std::map<std::string, std::string>& meta);

struct PlannedJob {
  std::string name;                      // the rule's job name
  wire::JobSpec spec;                    // complete but for `after`, which the broker fills
  std::vector<size_t> after;             // indices of upstream jobs in the same plan
  std::optional<size_t> after_frames{};  // the one this job follows frame by frame
  std::string error;                     // not empty: this job cannot be made for the item
  // The media input is the published item itself, whose frames are known: the
  // broker need not list its directory again (a folder publish makes many jobs).
  bool input_is_item = false;
};

std::vector<PlannedJob> plan_rule(const common::Rule& rule, const PublishItem& item,
                                  const std::map<std::string, std::string>& meta,
                                  const std::string& event_id);

// Event rules: a rule whose match names farm events (match.event) makes its
// command and noop jobs when such an event happens to a job whose labels match
// match.label. Its templates see the job as {meta.job}, {meta.job_name},
// {meta.job_state}, {meta.user}, {meta.project}, {meta.farm_event} and
// {meta.label.KEY}; {event} is "EVENT:JOB". The jobs it makes carry the label
// kEventRuleLabel (the event), and such jobs never set off event rules.
inline constexpr std::string_view kEventRuleLabel = "farm_event";

bool event_rule_matches(const common::Rule& rule, const std::string& event,
                        const std::map<std::string, std::string>& labels);

std::vector<PlannedJob> plan_event_rule(const common::Rule& rule, const std::string& event,
                                        uint64_t job, const wire::JobSpec& spec,
                                        const std::string& job_state);

// Checks what the config loader cannot: that each media job of each rule, with
// sample values for its placeholders, passes the broker's media validation
// (a codec name, a --size). Problems are "FILE:LINE: rule R job J: reason".
[[nodiscard]] Result<void> check_rule_jobs(const common::Config& config, const std::string& origin);

}  // namespace farmhand::daemon
