// The live stream's job JSON, written by hand for speed, must say what the
// API says: every member it writes equals protobuf's JSON mapping of the same
// field (the oracle), whatever bytes a user put in a job's name or project.
#include "daemon/http/live_json.h"

#include <limits>
#include <string>

#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace farmhand::daemon {
namespace {

using Json = nlohmann::json;

// Every control character, quotes, backslashes, DEL, and multi-byte UTF-8.
std::string hostile_text() {
  std::string text = "shot \"010\" \\ comp";
  for (char c = 1; c < 0x20; ++c) text += c;
  text += "\x7f caf\xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x8e\xac </script>";
  return text;
}

wire::JobSummary busy_job() {
  wire::JobSummary job;
  job.set_id(18'446'744'073'709'551'000ULL);  // beyond a double's integers
  job.set_name(hostile_text());
  job.set_kind("command");
  job.set_state(wire::JOB_RUNNING);
  job.set_priority(-5);
  job.set_pool("gpu");
  job.set_lane("interactive");
  job.set_submitted_by("ana\nbel");
  job.set_project(hostile_text());
  job.set_event_id("ev-1");
  job.set_submitted_unix_ms(1'765'000'000'123);
  job.set_started_unix_ms(1'765'000'001'000);
  job.set_chunk(10);
  job.set_task_count(100'000);
  (*job.mutable_counts())["running"] = 32;
  (*job.mutable_counts())["succeeded"] = 90'000;
  (*job.mutable_counts())["failed"] = 0;
  job.set_max_attempts(3);
  job.set_timeout_s(3600);
  job.set_after_frames(12);
  job.set_max_running(64);
  job.set_frames_total(1'000'000);
  job.set_frames_succeeded(900'000);
  job.set_cores(8);
  job.set_memory_bytes(34'359'738'368ULL);
  job.set_memory_retry_factor(1.5);
  return job;
}

Json protobufs_json(const wire::JobSummary& job) {
  std::string text;
  google::protobuf::util::JsonPrintOptions print;
  print.preserve_proto_field_names = true;
  print.always_print_primitive_fields = true;
  EXPECT_TRUE(google::protobuf::util::MessageToJsonString(job, &text, print).ok());
  return Json::parse(text);
}

void expect_as_protobuf_says(const wire::JobSummary& job, bool progress) {
  const std::string text = live_job_json(job, progress);
  const Json ours = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  ASSERT_TRUE(ours.is_object()) << text;
  const Json theirs = protobufs_json(job);
  for (const auto& [key, value] : ours.items()) {
    ASSERT_TRUE(theirs.contains(key)) << key;
    if (key == "counts") {
      for (const auto& [state, count] : theirs["counts"].items()) {
        if (count == "0") {
          EXPECT_FALSE(value.contains(state)) << "a zero count is left out";
        } else {
          EXPECT_EQ(value[state], count) << state;
        }
      }
      EXPECT_EQ(value.size(), 2u);
      continue;
    }
    EXPECT_EQ(value, theirs[key]) << key;
  }
  // What a row shows is there (and only with progress, what a move leaves out).
  for (const char* key : {"id", "name", "kind", "state", "priority", "pool", "lane", "submitted_by",
                          "project", "event_id", "submitted_unix_ms", "started_unix_ms"}) {
    EXPECT_TRUE(ours.contains(key)) << key;
  }
  for (const char* key :
       {"chunk", "task_count", "counts", "max_attempts", "timeout_s", "after_frames", "max_running",
        "frames_total", "frames_succeeded", "cores", "memory_bytes", "memory_retry_factor"}) {
    EXPECT_EQ(ours.contains(key), progress) << key;
  }
  EXPECT_FALSE(ours.contains("finished_unix_ms")) << "a field at its default is left out";
  EXPECT_FALSE(ours.contains("params")) << "the spec is not streamed";
}

TEST(LiveJsonTest, EveryMemberIsWhatProtobufsMappingSays) {
  expect_as_protobuf_says(busy_job(), /*progress=*/true);
}

TEST(LiveJsonTest, AMoveCarriesWhatAListPlacesAndFiltersBy) {
  expect_as_protobuf_says(busy_job(), /*progress=*/false);
}

TEST(LiveJsonTest, AnEmptySummaryIsItsStateAndEmptyCounts) {
  wire::JobSummary job;
  EXPECT_EQ(Json::parse(live_job_json(job, true)),
            Json::parse(R"({"state":"JOB_STATE_UNSPECIFIED","counts":{}})"));
}

TEST(LiveJsonTest, StringsRoundTripWhateverTheirBytes) {
  std::string every;
  for (int c = 1; c < 0x80; ++c) every += static_cast<char>(c);
  for (const std::string& text : {std::string(), every, hostile_text(), std::string("\\\"\\")}) {
    std::string out;
    append_json_string(out, text);
    const Json parsed = Json::parse(out, nullptr, /*allow_exceptions=*/false);
    ASSERT_TRUE(parsed.is_string()) << out;
    EXPECT_EQ(parsed.get<std::string>(), text);
    EXPECT_EQ(out.find('\n'), std::string::npos) << "one Server-Sent Events data line";
  }
}

// A board's card is written from its fixed part and what moves, without its
// whole summary: the same JSON as the whole summary gives.
TEST(LiveJsonTest, ABoardCardSaysWhatItsWholeSummarySays) {
  wire::JobSummary fixed = busy_job();
  fixed.clear_counts();
  fixed.clear_started_unix_ms();
  fixed.clear_frames_succeeded();
  fixed.set_state(wire::JOB_QUEUED);  // what the card's moving part overrides
  JobMoving moving;
  moving.state = wire::JOB_RUNNING;
  for (int i = 0; i < core::kTaskStateCount; ++i) moving.counts[i] = i % 3 == 0 ? 0 : 1000 + i;
  moving.frames_succeeded = 4321;
  moving.started_unix_ms = 1'765'000'002'000;
  moving.finished_unix_ms = 1'765'000'009'000;
  wire::JobSummary whole = fixed;
  apply_moving(moving, whole);
  for (bool progress : {true, false}) {
    const Json card = Json::parse(live_job_json(fixed, moving, progress));
    EXPECT_EQ(card, Json::parse(live_job_json(whole, progress))) << progress;
    EXPECT_EQ(card["state"], "JOB_RUNNING");
    EXPECT_EQ(card["started_unix_ms"], "1765000002000");
    if (progress) {
      EXPECT_EQ(card["frames_succeeded"], "4321");
      EXPECT_EQ(card["counts"]["running"],
                std::to_string(moving.counts[static_cast<int>(core::TaskState::kRunning)]));
    }
  }
}

TEST(LiveJsonTest, ANonFiniteFactorIsLeftOutNotWrittenAsInvalidJson) {
  wire::JobSummary job = busy_job();
  job.set_memory_retry_factor(std::numeric_limits<double>::infinity());
  const Json ours = Json::parse(live_job_json(job, true), nullptr, false);
  ASSERT_TRUE(ours.is_object());
  EXPECT_FALSE(ours.contains("memory_retry_factor"));
}

}  // namespace
}  // namespace farmhand::daemon
