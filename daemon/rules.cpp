#include "daemon/rules.h"

#include <algorithm>

#include <fmt/format.h>
#include <fnmatch.h>
#include <sys/stat.h>

#include "common/sequence.h"
#include "daemon/media_jobs.h"

namespace farmhand::daemon {

namespace {

using common::PathVars;
using common::SequencePattern;

std::string file_kind(const std::string& ext) {
  static const char* kImages[] = {"exr", "dpx", "tif", "tiff", "png", "jpg", "jpeg", "tga",
                                  "hdr", "cin", "sgi", "rgb",  "bmp", "tx",  "psd"};
  static const char* kMovies[] = {"mov", "mp4", "mxf", "avi", "mkv", "m4v", "webm"};
  std::string e = ascii_lower(ext);
  for (const char* k : kImages) {
    if (e == k) return "image";
  }
  for (const char* k : kMovies) {
    if (e == k) return "movie";
  }
  return "file";
}

Result<PublishItem> make_item(const std::string& path, std::optional<common::FrameSet> frames) {
  auto vars = common::path_vars(path);
  if (!vars) return fail(vars.error());
  PublishItem item;
  item.path = path;
  item.vars = std::move(*vars);
  item.kind = item.vars.frame.empty() ? file_kind(item.vars.ext) : "sequence";
  if (frames && !frames->empty()) {
    item.vars.first = std::to_string(frames->frame_at(0));
    item.vars.last = std::to_string(frames->frame_at(frames->size() - 1));
    item.vars.frames = frames->to_string();
    item.frames = std::move(frames);
  }
  return item;
}

std::string item_path(const common::Sequence& seq) {
  return seq.pattern.to_string(common::PaddingStyle::kHash);
}

bool glob_matches(const std::string& glob, const std::string& path) {
  if (glob.find('/') == std::string::npos) {
    auto slash = path.rfind('/');
    std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
    return fnmatch(glob.c_str(), name.c_str(), 0) == 0;
  }
  return fnmatch(glob.c_str(), path.c_str(), 0) == 0;
}

// Why `job`, made for a sample 10-frame sequence with extension `ext`, fails
// the broker's media validation; empty when it passes.
std::string sample_job_problem(const common::RuleJob& job, const std::string& ext) {
  PathVars vars;
  vars.path = "/check/sample.1-10#." + ext;
  vars.dir = "/check";
  vars.name = "sample";
  vars.ext = ext;
  vars.frame = "####";
  vars.first = "1";
  vars.last = "10";
  vars.frames = "1-10";
  vars.event = "check";
  wire::JobSpec spec;
  spec.set_kind(job.kind);
  std::string reason;
  for (const auto& [key, text] : job.params) {
    // Any meta key a template names gets a sample value.
    for (size_t at = text.find("{meta."); at != std::string::npos;
         at = text.find("{meta.", at + 1)) {
      auto close = text.find('}', at);
      if (close != std::string::npos) vars.meta[text.substr(at + 6, close - at - 6)] = "x";
    }
    auto value = common::expand_path_template(text, vars);
    if (!value) {
      reason = value.error().reason;
      break;
    }
    (*spec.mutable_params())[key] = *value;
  }
  if (reason.empty()) {
    auto& params = *spec.mutable_params();
    if (params.count("input") == 0) {
      params["input"] = vars.path;
    } else if (auto p = SequencePattern::parse(params["input"]);
               p && !p->is_single_file() && !p->frames) {
      p->frames = common::FrameSet::range(1, 10);
      params["input"] = p->to_string();
    }
    // kNotFound depends on the sample's frames (`frame: 1001` of 1-10), not on the rule.
    auto ok = prepare_media_job(spec);
    if (!ok && ok.error().code != ErrorCode::kNotFound) reason = ok.error().reason;
  }
  return reason;
}

}  // namespace

Result<std::vector<PublishItem>> resolve_publish(const std::string& path) {
  if (path.empty() || path.front() != '/') {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("publish path must be absolute: {}", printable(path)));
  }
  if (path.size() > 4096 || path.find('\0') != std::string::npos) {
    return fail(ErrorCode::kInvalidArgument, "bad publish path");
  }
  std::vector<PublishItem> items;

  struct stat st {};

  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    auto sequences = common::scan_directory(path);
    if (!sequences) return fail(sequences.error());
    for (const auto& seq : *sequences) {
      std::optional<common::FrameSet> frames;
      if (!seq.is_single_file()) frames = seq.frames;
      auto item = make_item(item_path(seq), frames);
      if (item) items.push_back(std::move(*item));
    }
    if (items.empty()) {
      return fail(ErrorCode::kNotFound,
                  fmt::format("nothing published in {}: it is empty", printable(path, 300)));
    }
    return items;
  }
  auto pattern = SequencePattern::parse(path);
  if (!pattern) return fail(pattern.error());
  if (pattern->is_single_file()) {
    if (::stat(path.c_str(), &st) != 0) {
      return fail(ErrorCode::kNotFound,
                  fmt::format("nothing published at {}: no such file", printable(path, 300)));
    }
    auto item = make_item(path, std::nullopt);
    if (!item) return fail(item.error());
    items.push_back(std::move(*item));
    return items;
  }
  // A sequence: its frames from the pattern, else from the disk.
  auto frames = resolve_frames(*pattern, path);
  if (!frames) {
    const std::string& reason = frames.error().reason;
    return fail(ErrorCode::kNotFound,
                fmt::format("nothing published at {}: {}", printable(path, 300),
                            reason.rfind("no frames of", 0) == 0 ? "no frames on disk" : reason));
  }
  auto item = make_item(path, *frames);
  if (!item) return fail(item.error());
  items.push_back(std::move(*item));
  return items;
}

bool event_rule_matches(const common::Rule& rule, const std::string& event,
                        const std::map<std::string, std::string>& labels) {
  const common::RuleMatch& m = rule.match;
  if (std::find(m.event.begin(), m.event.end(), event) == m.event.end()) return false;
  for (const auto& [key, glob] : m.label) {
    auto it = labels.find(key);
    if (it == labels.end() || fnmatch(glob.c_str(), it->second.c_str(), 0) != 0) return false;
  }
  return true;
}

std::vector<PlannedJob> plan_event_rule(const common::Rule& rule, const std::string& event,
                                        uint64_t job, const wire::JobSpec& spec,
                                        const std::string& job_state) {
  PublishItem item;
  item.kind = "event";
  item.vars.name = fmt::format("{} job {}", event, job);
  std::map<std::string, std::string> meta;
  meta["job"] = std::to_string(job);
  meta["job_name"] = spec.name();
  meta["job_state"] = job_state;
  meta["user"] = spec.submitted_by();
  meta["project"] = spec.project();
  meta["farm_event"] = event;
  for (const auto& [key, value] : spec.labels()) meta["label." + key] = value;
  const std::string event_id = fmt::format("{}:{}", event, job);
  std::vector<PlannedJob> plan = plan_rule(rule, item, meta, event_id);
  for (PlannedJob& planned : plan) {
    (*planned.spec.mutable_labels())[std::string(kEventRuleLabel)] = event;
    (*planned.spec.mutable_labels())["for_job"] = std::to_string(job);
  }
  return plan;
}

bool rule_matches(const common::Rule& rule, const PublishItem& item,
                  const std::map<std::string, std::string>& meta) {
  const common::RuleMatch& m = rule.match;
  if (!m.event.empty()) return false;  // a rule of farm events, not of publishes
  if (!m.path.empty() && std::none_of(m.path.begin(), m.path.end(), [&](const std::string& g) {
        return glob_matches(g, item.path);
      })) {
    return false;
  }
  if (!m.kind.empty()) {
    // A sequence of images is also an "image" for a rule that asks for images.
    bool ok = std::any_of(m.kind.begin(), m.kind.end(), [&](const std::string& k) {
      return k == item.kind ||
             (k == "image" && item.kind == "sequence" && file_kind(item.vars.ext) == "image");
    });
    if (!ok) return false;
  }
  if (!m.ext.empty() &&
      std::find(m.ext.begin(), m.ext.end(), ascii_lower(item.vars.ext)) == m.ext.end()) {
    return false;
  }
  for (const auto& [key, glob] : m.meta) {
    auto it = meta.find(key);
    if (it == meta.end() || fnmatch(glob.c_str(), it->second.c_str(), 0) != 0) return false;
  }
  return true;
}

std::vector<PlannedJob> plan_rule(const common::Rule& rule, const PublishItem& item,
                                  const std::map<std::string, std::string>& meta,
                                  const std::string& event_id) {
  PathVars vars = item.vars;
  vars.meta = meta;
  vars.event = event_id;
  std::vector<PlannedJob> plan;
  std::map<std::string, size_t> index;
  for (const common::RuleJob& job : rule.jobs) {
    PlannedJob planned;
    planned.name = job.name;
    index[job.name] = plan.size();
    for (const std::string& up : job.after) planned.after.push_back(index.at(up));
    if (!job.after_frames.empty()) planned.after_frames = index.at(job.after_frames);
    wire::JobSpec& spec = planned.spec;
    spec.set_kind(job.kind);
    spec.set_name(
        fmt::format("{}/{} {}", rule.name, job.name, vars.name.empty() ? item.path : vars.name));
    spec.set_chunk(job.chunk);
    spec.set_priority(job.priority);
    spec.set_pool(job.pool);
    spec.set_max_attempts(job.max_attempts);
    spec.set_timeout_s(job.timeout_s);
    bool media = is_media_kind(job.kind);
    spec.set_lane(!job.lane.empty() ? job.lane : media ? "interactive" : "batch");
    (*spec.mutable_labels())["rule"] = rule.name + "/" + job.name;
    if (!event_id.empty()) (*spec.mutable_labels())["event"] = event_id;
    auto& params = *spec.mutable_params();
    for (const auto& [key, text] : job.params) {
      // Burn-ins are the media process's templates ({frame}, {shot}...).
      if (key == "burn_in" || key == "slate") {
        params[key] = text;
        continue;
      }
      auto value = common::expand_path_template(text, vars);
      if (!value) {
        planned.error = value.error().reason;
        break;
      }
      params[key] = *value;
    }
    if (planned.error.empty() && (job.kind == "transcode" || job.kind == "convert") &&
        (params.count("burn_in") != 0 || params.count("slate") != 0)) {
      // The publish's meta fills the burn-ins and the slate ({shot}, {version}).
      for (const auto& [key, value] : meta) params[std::string(kMetaParam) + key] = value;
    }
    if (planned.error.empty() && media) {
      if (params.count("input") == 0) {
        params["input"] = item.path;
        planned.input_is_item = true;
      } else if (item.frames && !item.frames->empty()) {
        // A derived input (say the proxies) does not exist yet: give it the item's frames.
        auto pattern = SequencePattern::parse(params["input"]);
        if (pattern && !pattern->is_single_file() && !pattern->frames) {
          pattern->frames = item.frames;
          params["input"] = pattern->to_string();
        }
      }
    }
    if (planned.error.empty() && (job.kind == "command" || job.kind == "noop")) {
      spec.set_command_template(job.command);
      auto frames =
          common::expand_path_template(job.frames.empty() ? "{frames}" : job.frames, vars);
      if (!frames && job.frames.empty()) {
        spec.set_frames("1");  // a single file: one task
      } else if (!frames) {
        planned.error = frames.error().reason;
      } else {
        spec.set_frames(*frames);
      }
    }
    plan.push_back(std::move(planned));
  }
  return plan;
}

Result<void> check_rule_jobs(const common::Config& config, const std::string& origin) {
  std::string problems;
  for (const common::Rule& rule : config.rules) {
    for (const common::RuleJob& job : rule.jobs) {
      if (!is_media_kind(job.kind)) continue;
      // Sample values: a 10-frame sequence, every meta key answered, of each
      // extension the rule matches (any rule may see EXRs): an output template
      // that can name the input is found with the extension that makes it so.
      std::vector<std::string> exts = rule.match.ext;
      if (exts.empty()) exts.push_back("exr");
      std::string reason;
      for (const std::string& ext : exts) {
        reason = sample_job_problem(job, ext);
        if (!reason.empty()) break;
      }
      if (!reason.empty()) {
        if (!problems.empty()) problems += '\n';
        // The line of the option whose value the reason quotes, else the job's.
        int line = job.line;
        for (const auto& [key, text] : job.params) {
          auto at = job.lines.find(key);
          if (!text.empty() && at != job.lines.end() &&
              reason.find("'" + text + "'") != std::string::npos) {
            line = at->second;
          }
        }
        problems +=
            fmt::format("{}:{}: rule '{}' job '{}': {}", origin, line, rule.name, job.name, reason);
      }
    }
  }
  if (!problems.empty()) return fail(ErrorCode::kInvalidArgument, problems);
  return {};
}

}  // namespace farmhand::daemon
