#include "daemon/http/live_json.h"

#include <cmath>
#include <iterator>

#include <fmt/format.h>

namespace farmhand::daemon {

void append_json_string(std::string& out, std::string_view text) {
  out += '"';
  size_t plain = 0;  // the start of the run not yet copied
  for (size_t at = 0; at < text.size(); ++at) {
    const auto c = static_cast<unsigned char>(text[at]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(text.substr(plain, at - plain));
    plain = at + 1;
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        fmt::format_to(std::back_inserter(out), "\\u{:04x}", c);
    }
  }
  out.append(text.substr(plain));
  out += '"';
}

namespace {

// The members of one JSON object, appended as they come; closed when it goes.
class Members {
 public:
  explicit Members(std::string& out) : out_(out) { out_ += '{'; }

  ~Members() { out_ += '}'; }

  Members(const Members&) = delete;
  Members& operator=(const Members&) = delete;

  // A 64-bit integer: a string, as protobuf's mapping gives it.
  void u64(std::string_view name, uint64_t value) {
    if (value != 0) fmt::format_to(std::back_inserter(key(name)), "\"{}\"", value);
  }

  void i64(std::string_view name, int64_t value) {
    if (value != 0) fmt::format_to(std::back_inserter(key(name)), "\"{}\"", value);
  }

  // A 32-bit integer: a number.
  void number(std::string_view name, int64_t value) {
    if (value != 0) fmt::format_to(std::back_inserter(key(name)), "{}", value);
  }

  void real(std::string_view name, double value) {
    // (JSON has no NaN or infinity: such a value is left out.)
    if (value != 0 && std::isfinite(value))
      fmt::format_to(std::back_inserter(key(name)), "{}", value);
  }

  void text(std::string_view name, std::string_view value) {
    if (!value.empty()) append_json_string(key(name), value);
  }

  // Always written (an enum's name, or an object).
  std::string& key(std::string_view name) {
    if (!first_) out_ += ',';
    first_ = false;
    append_json_string(out_, name);
    out_ += ':';
    return out_;
  }

 private:
  std::string& out_;
  bool first_ = true;
};

}  // namespace

namespace {

std::string job_json(const wire::JobSummary& job, const JobMoving* moving, bool progress) {
  std::string out;
  out.reserve(progress ? 512 : 256);
  {
    Members m(out);
    m.u64("id", job.id());
    m.text("name", job.name());
    m.text("kind", job.kind());
    append_json_string(m.key("state"), wire::JobState_Name(moving ? moving->state : job.state()));
    m.number("priority", job.priority());
    m.text("pool", job.pool());
    m.text("lane", job.lane());
    m.text("submitted_by", job.submitted_by());
    m.text("project", job.project());
    m.text("event_id", job.event_id());  // the publish that made it: its page follows it
    m.i64("submitted_unix_ms", job.submitted_unix_ms());
    m.i64("started_unix_ms", moving ? moving->started_unix_ms : job.started_unix_ms());
    m.i64("finished_unix_ms", moving ? moving->finished_unix_ms : job.finished_unix_ms());
    if (progress) {
      m.number("chunk", job.chunk());
      m.u64("task_count", job.task_count());
      {
        Members counts(m.key("counts"));
        if (moving) {
          for (int i = 0; i < core::kTaskStateCount; ++i) {
            const auto state = static_cast<core::TaskState>(i);
            if (state == core::TaskState::kBackoff) continue;  // counted as queued
            counts.u64(core::task_state_name(state), moving->counts[i]);
          }
        } else {
          for (const auto& [state, count] : job.counts()) counts.u64(state, count);
        }
      }
      m.number("max_attempts", job.max_attempts());
      m.number("timeout_s", job.timeout_s());
      m.u64("after_frames", job.after_frames());
      m.number("max_running", job.max_running());
      m.u64("frames_total", job.frames_total());
      m.u64("frames_succeeded", moving ? moving->frames_succeeded : job.frames_succeeded());
      m.number("cores", job.cores());
      m.u64("memory_bytes", job.memory_bytes());
      m.real("memory_retry_factor", job.memory_retry_factor());
    }
  }
  return out;
}

}  // namespace

std::string live_job_json(const wire::JobSummary& job, bool progress) {
  return job_json(job, nullptr, progress);
}

std::string live_job_json(const wire::JobSummary& fixed, const JobMoving& moving, bool progress) {
  return job_json(fixed, &moving, progress);
}

}  // namespace farmhand::daemon
