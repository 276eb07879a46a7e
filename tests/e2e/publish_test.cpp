// End-to-end tests of publishes (issue 5) on the real binaries: `farmhand publish`
// through the config's rules to thumbnails, proxies and review movies of the shared
// Beachball sequence (checked with oiiotool and ffprobe), watched folders that publish
// a sequence once it has settled, the interactive lane beside long batch tasks,
// config validation and SIGHUP reload, the online backup, and hostile publish input.
// Every wait polls a condition with a deadline; the deadlines bound a hung test and
// are not timing expectations.
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/cluster.h"
#include "tests/support/oracles.h"
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

namespace farmhand::e2e {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// Media jobs of the whole Beachball sequence on a loaded 2-core machine.
constexpr auto kMediaLimit = 300s;

std::string beachball() {
  return data_dir() + "/Beachball/singlepart.####.exr";
}

std::string beachball_frame(int frame) {
  char name[64];
  std::snprintf(name, sizeof(name), "/Beachball/singlepart.%04d.exr", frame);
  return data_dir() + name;
}

size_t line_count(const std::string& text) {
  return static_cast<size_t>(std::count(text.begin(), text.end(), '\n'));
}

// 1-based line of the first line of `text` containing `needle`; 0 when none does.
int line_of(const std::string& text, const std::string& needle) {
  size_t at = text.find(needle);
  if (at == std::string::npos) return 0;
  return static_cast<int>(std::count(text.begin(), text.begin() + static_cast<long>(at), '\n')) + 1;
}

size_t occurrences(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  ASSERT_TRUE(out.good()) << "cannot write " << path;
}

std::vector<uint64_t> ids_of(const Json& array) {
  std::vector<uint64_t> ids;
  for (const auto& id : array) ids.push_back(id.get<uint64_t>());
  std::sort(ids.begin(), ids.end());
  return ids;
}

// `farmhand publish ARGS... --json`: the reply, or nullopt (cluster.last_cli() says why).
std::optional<Json> publish(Cluster& cluster, const std::vector<std::string>& args) {
  std::vector<std::string> full = {"publish"};
  full.insert(full.end(), args.begin(), args.end());
  return cluster.cli_json(std::move(full));
}

std::optional<Json> events(Cluster& cluster) {
  auto all = cluster.cli_json({"events"});
  if (!all || !all->is_array()) return std::nullopt;
  return all;
}

std::optional<size_t> job_count(Cluster& cluster) {
  auto jobs = cluster.cli_json({"ls"});
  if (!jobs || !jobs->is_array()) return std::nullopt;
  return jobs->size();
}

// The job among `ids` that the rule job `rule_job` ("review/movie") made.
std::optional<uint64_t> job_of_rule(Cluster& cluster, const Json& ids,
                                    const std::string& rule_job) {
  for (const auto& id : ids) {
    auto status = cluster.status_json(id.get<uint64_t>());
    if (status && (*status)["job"]["labels"].value("rule", "") == rule_job) {
      return id.get<uint64_t>();
    }
  }
  return std::nullopt;
}

// Writes `from` to `to` in `pieces` writes, `pause` apart: a frame still being rendered.
void write_slowly(const std::string& from, const std::string& to, int pieces,
                  std::chrono::milliseconds pause) {
  std::string data = read_file(from);
  ASSERT_FALSE(data.empty()) << from;
  int fd = ::open(to.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0) << to;
  size_t piece = (data.size() + static_cast<size_t>(pieces) - 1) / static_cast<size_t>(pieces);
  for (size_t at = 0; at < data.size(); at += piece) {
    if (at > 0) std::this_thread::sleep_for(pause);
    size_t n = std::min(piece, data.size() - at);
    ASSERT_EQ(::write(fd, data.data() + at, n), static_cast<ssize_t>(n)) << to;
  }
  ::close(fd);
}

int64_t unix_ms_now() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

class PublishE2ETest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(beachball_frame(1))) FAIL() << "test data missing: " << data_dir();
  }
};

// ------------------------------------------------------------------ publish through the CLI

TEST_F(PublishE2ETest, BeachballPublishMakesThumbnailProxiesAndMovieOnceForAnEventId) {
  ClusterOptions options;
  options.local_workers = 2;
  options.local_slots = 1;
  Cluster cluster(options);
  // The cluster's directory is known once it exists: the rule is written after.
  const std::string out = cluster.path("out");
  const std::string rules =
      "rules:\n"
      "  - name: review\n"
      "    match: { path: \"*.exr\", kind: sequence }\n"
      "    jobs:\n"
      "      thumb:   { kind: thumbnail, output: \"" +
      out +
      "/{meta.shot}/thumbs/{name}.jpg\", "
      "size: 256x0 }\n"
      "      proxies: { kind: convert, output: \"" +
      out +
      "/{meta.shot}/proxy/{name}.{frame}.jpg\", "
      "resize: 50%, format: jpg, chunk: 4 }\n"
      "      movie:   { kind: transcode, input: \"" +
      out +
      "/{meta.shot}/proxy/{name}.{frame}.jpg\", "
      "output: \"" +
      out + "/{meta.shot}/review/{name}.mov\", codec: h264, after: [proxies] }\n";
  cluster.rewrite_config(rules);
  ASSERT_TRUE(cluster.start());

  auto reply = publish(cluster, {beachball(), "--meta", "shot=sh010", "--event-id", "beach-1"});
  ASSERT_TRUE(reply) << cluster.last_cli();
  EXPECT_EQ((*reply)["event_id"], "beach-1");
  EXPECT_EQ((*reply)["duplicate"], false);
  EXPECT_EQ((*reply)["rules"], Json::array({"review"}));
  EXPECT_TRUE((*reply)["warnings"].empty()) << reply->dump();
  ASSERT_EQ((*reply)["job_ids"].size(), 3u) << reply->dump();
  const std::vector<uint64_t> jobs = ids_of((*reply)["job_ids"]);

  for (uint64_t job : jobs) {
    auto done = cluster.wait_for_final_state(job, kMediaLimit);
    ASSERT_TRUE(done) << "job " << job << " not final: " << cluster.last_cli();
    EXPECT_EQ((*done)["job"]["state"], "succeeded") << done->dump();
    EXPECT_EQ((*done)["job"]["event_id"], "beach-1") << done->dump();
  }

  // Where the rule says: 2048x1556 displayed, 256 wide is 194.5 rows, rounded.
  std::string thumb = image_size(out + "/sh010/thumbs/singlepart.jpg");
  EXPECT_TRUE(thumb == "256x195" || thumb == "256x194") << thumb;
  for (int frame = 1; frame <= 8; ++frame) {
    char name[64];
    std::snprintf(name, sizeof(name), "/sh010/proxy/singlepart.%04d.jpg", frame);
    EXPECT_EQ(image_size(out + name), "1024x778") << name;
  }
  std::string probe =
      run("ffprobe -v error -count_frames -select_streams v:0 -show_entries "
          "stream=codec_name,nb_read_frames -of default=noprint_wrappers=1 '" +
          out + "/sh010/review/singlepart.mov'");
  EXPECT_NE(probe.find("codec_name=h264"), std::string::npos) << probe;
  EXPECT_NE(probe.find("nb_read_frames=8"), std::string::npos) << probe;

  // The event lists the jobs it made; the movie waits for the proxies.
  auto listed = events(cluster);
  ASSERT_TRUE(listed) << cluster.last_cli();
  ASSERT_EQ(listed->size(), 1u) << listed->dump();
  const Json& event = (*listed)[0];
  EXPECT_EQ(event["event_id"], "beach-1");
  EXPECT_EQ(event["path"], beachball());
  EXPECT_EQ(event["meta"]["shot"], "sh010");
  EXPECT_EQ(ids_of(event["job_ids"]), jobs);
  auto proxies = job_of_rule(cluster, (*reply)["job_ids"], "review/proxies");
  auto movie = job_of_rule(cluster, (*reply)["job_ids"], "review/movie");
  ASSERT_TRUE(proxies && movie) << reply->dump();
  auto movie_status = cluster.status_json(*movie);
  ASSERT_TRUE(movie_status) << cluster.last_cli();
  EXPECT_EQ(ids_of((*movie_status)["job"]["after"]), std::vector<uint64_t>{*proxies})
      << movie_status->dump();
  EXPECT_EQ((*movie_status)["job"]["lane"], "interactive");

  // The same event id again: a duplicate, the same jobs, nothing new.
  auto before = job_count(cluster);
  ASSERT_TRUE(before) << cluster.last_cli();
  auto again = publish(cluster, {beachball(), "--meta", "shot=sh010", "--event-id", "beach-1"});
  ASSERT_TRUE(again) << cluster.last_cli();
  EXPECT_EQ((*again)["duplicate"], true) << again->dump();
  EXPECT_EQ(ids_of((*again)["job_ids"]), jobs) << again->dump();
  EXPECT_EQ(job_count(cluster), before);
  auto listed_again = events(cluster);
  ASSERT_TRUE(listed_again);
  EXPECT_EQ(listed_again->size(), 1u) << listed_again->dump();
}

// The movie follows its proxies frame by frame (`after_frames`): it is made
// in segments of one GOP as the proxies come, joined into one movie.
TEST_F(PublishE2ETest, AMovieAfterItsProxiesFrameByFrameIsStreamedAndJoined) {
  ClusterOptions options;
  options.local_workers = 2;
  Cluster cluster(options);
  const std::string out = cluster.path("out");
  cluster.rewrite_config(
      "rules:\n"
      "  - name: review\n"
      "    match: { kind: sequence }\n"
      "    jobs:\n"
      "      proxies: { kind: convert, output: \"" +
      out + "/proxy/{name}.{frame}.jpg\", resize: 25%, format: jpg, chunk: 8 }\n" +
      "      movie:   { kind: transcode, input: \"" + out +
      "/proxy/{name}.{frame}.jpg\", output: \"" + out + "/{name}.mp4\", after_frames: proxies }\n");
  ASSERT_TRUE(cluster.start());
  link_plates(cluster.path("plates"), 64);
  auto reply = publish(cluster, {cluster.path("plates/plate.####.exr")});
  ASSERT_TRUE(reply) << cluster.last_cli();
  EXPECT_TRUE((*reply)["warnings"].empty()) << reply->dump();
  auto proxies = job_of_rule(cluster, (*reply)["job_ids"], "review/proxies");
  auto movie = job_of_rule(cluster, (*reply)["job_ids"], "review/movie");
  ASSERT_TRUE(proxies && movie) << reply->dump();
  auto done = cluster.wait_for_final_state(*movie, kMediaLimit);
  ASSERT_TRUE(done) << cluster.last_cli();
  EXPECT_EQ((*done)["job"]["state"], "succeeded") << done->dump();
  // The movie is the join; before it, three segments (30, 30, 4 frames) behind the proxies.
  ASSERT_EQ((*done)["job"]["after"].size(), 1u) << done->dump();
  auto segments = cluster.status_json((*done)["job"]["after"][0].get<uint64_t>());
  ASSERT_TRUE(segments) << cluster.last_cli();
  EXPECT_EQ((*segments)["job"]["task_count"], 3) << segments->dump();
  EXPECT_EQ((*segments)["job"]["after_frames"], *proxies) << segments->dump();
  EXPECT_EQ(run("ffprobe -v error -count_frames -select_streams v:0 -show_entries "
                "stream=nb_read_frames -of csv=p=0 '" +
                out + "/plate.mp4'"),
            "64\n");
}

// ------------------------------------------------------------------ watched folder

TEST_F(PublishE2ETest, SequenceCopiedSlowlyIntoAWatchedFolderIsPublishedOnceAfterItsLastFrame) {
  constexpr double kSettleS = 1.5;
  constexpr auto kSettle = std::chrono::milliseconds(1500);
  // Shorter than settle, so the sequence never looks settled while it is copied.
  constexpr auto kPauseBetweenFrames = 400ms;
  constexpr auto kPauseBetweenPieces = 500ms;
  constexpr int kPieces = 5;  // 4 pauses: 2 s of writing one frame, longer than settle
  static_assert(kPauseBetweenFrames < kSettle && kPauseBetweenPieces < kSettle);
  static_assert(kPauseBetweenPieces * (kPieces - 1) > kSettle);

  ClusterOptions options;
  options.local_workers = 2;
  Cluster cluster(options);
  const std::string in = cluster.path("in");
  const std::string out = cluster.path("out");
  ASSERT_TRUE(fs::create_directory(in));
  cluster.rewrite_config(
      "rules:\n"
      "  - name: dailies\n"
      "    match: { path: \"*.exr\", kind: sequence, meta: { shot: watched } }\n"
      "    jobs:\n"
      "      proxies: { kind: convert, output: \"" +
      out +
      "/{name}.{frame}.jpg\", resize: 25%, "
      "chunk: 4 }\n"
      "watch:\n"
      "  - path: " +
      in +
      "\n"
      "    settle_s: " +
      std::to_string(kSettleS) +
      "\n"
      "    include: [\"*.exr\"]\n"
      "    meta: { shot: watched }\n"
      "    republish: false\n");
  ASSERT_TRUE(cluster.start());

  // Frame by frame; frames 3 and 6 are written in pieces, as a renderer writes them.
  for (int frame = 1; frame <= 8; ++frame) {
    if (frame > 1) std::this_thread::sleep_for(kPauseBetweenFrames);
    std::string target = in + "/" + fs::path(beachball_frame(frame)).filename().string();
    if (frame == 3 || frame == 6) {
      write_slowly(beachball_frame(frame), target, kPieces, kPauseBetweenPieces);
    } else {
      write_slowly(beachball_frame(frame), target, 1, 0ms);
    }
    if (HasFatalFailure()) return;
  }
  const int64_t last_frame_written_ms = unix_ms_now();

  std::optional<Json> listed;
  ASSERT_TRUE(wait_until(
      [&] {
        listed = events(cluster);
        return listed && !listed->empty();
      },
      30s, 100ms))
      << "no publish event: " << cluster.last_cli();
  ASSERT_EQ(listed->size(), 1u) << listed->dump();
  const Json event = (*listed)[0];
  EXPECT_EQ(event["source"].get<std::string>().rfind("watch:", 0), 0u) << event.dump();
  EXPECT_EQ(event["path"], in + "/singlepart.####.exr") << event.dump();
  EXPECT_EQ(event["meta"]["shot"], "watched") << event.dump();
  EXPECT_GE(event["received_unix_ms"].get<int64_t>(), last_frame_written_ms) << event.dump();
  ASSERT_EQ(event["job_ids"].size(), 1u) << event.dump();
  const uint64_t proxies = event["job_ids"][0].get<uint64_t>();
  auto status = cluster.status_json(proxies);
  ASSERT_TRUE(status) << cluster.last_cli();
  EXPECT_EQ((*status)["job"]["frames"], "1-8") << status->dump();
  auto done = cluster.wait_for_final_state(proxies, kMediaLimit);
  ASSERT_TRUE(done) << cluster.last_cli();
  EXPECT_EQ((*done)["job"]["state"], "succeeded") << done->dump();
  for (int frame = 1; frame <= 8; ++frame) {
    char name[64];
    std::snprintf(name, sizeof(name), "/singlepart.%04d.jpg", frame);
    EXPECT_EQ(image_size(out + name), "512x389") << name;
  }
  listed = events(cluster);
  ASSERT_TRUE(listed);
  EXPECT_EQ(listed->size(), 1u) << listed->dump();

  // A restart finds the same files again: it must not publish them a second time.
  // The broker says when it passes over a published sequence; then watch for a
  // new event for three settle times.
  const std::string skipped = "watch skipped";
  const size_t skipped_before = occurrences(read_file(cluster.broker_log_path()), skipped);
  cluster.kill_broker(SIGTERM);
  const auto restarted_at = Clock::now();
  ASSERT_TRUE(cluster.restart_broker());
  EXPECT_TRUE(wait_until(
      [&] { return occurrences(read_file(cluster.broker_log_path()), skipped) > skipped_before; },
      kSettle * 3 + 20s, 100ms))
      << "the restarted broker never looked at the published sequence";
  auto event_count = [&]() -> size_t {
    auto now_listed = events(cluster);
    return now_listed ? now_listed->size() : 1;  // no answer is not a new event
  };
  auto window = std::chrono::duration_cast<std::chrono::milliseconds>(restarted_at + kSettle * 3 -
                                                                      Clock::now());
  EXPECT_FALSE(wait_until([&] { return event_count() != 1; }, std::max(window, 0ms), 100ms))
      << "published again after a restart: " << events(cluster).value_or(Json()).dump();

  // A 9th frame: with republish off, no new event.
  const size_t skipped_after_restart = occurrences(read_file(cluster.broker_log_path()), skipped);
  write_slowly(beachball_frame(8), in + "/singlepart.0009.exr", 1, 0ms);
  EXPECT_TRUE(wait_until(
      [&] {
        return occurrences(read_file(cluster.broker_log_path()), skipped) > skipped_after_restart;
      },
      kSettle + 20s, 100ms))
      << "the broker never looked at the grown sequence";
  listed = events(cluster);
  ASSERT_TRUE(listed) << cluster.last_cli();
  EXPECT_EQ(listed->size(), 1u) << listed->dump();
}

// Without a restart in between: what was published is remembered at once, not
// only when the broker reloads its events.
TEST_F(PublishE2ETest, GrownSequenceIsPublishedAgainOnlyWhereTheWatchSaysRepublish) {
  ClusterOptions options;
  options.local_workers = 1;
  Cluster cluster(options);
  const std::string once = cluster.path("once");
  const std::string again = cluster.path("again");
  ASSERT_TRUE(fs::create_directory(once));
  ASSERT_TRUE(fs::create_directory(again));
  cluster.rewrite_config(
      "rules:\n"
      "  - name: count\n"
      "    match: { kind: sequence }\n"
      "    jobs:\n"
      "      frames: { kind: noop }\n"
      "watch:\n"
      "  - { path: " +
      once +
      ", settle_s: 1, republish: false }\n"
      "  - { path: " +
      again + ", settle_s: 1, republish: true }\n");
  ASSERT_TRUE(cluster.start());

  auto events_from = [&](const std::string& dir) {
    std::vector<Json> found;
    if (auto listed = events(cluster)) {
      for (const auto& e : *listed) {
        if (e["source"] == "watch:" + dir) found.push_back(e);
      }
    }
    return found;
  };
  auto frames_of = [&](const Json& event) -> std::string {
    if (event["job_ids"].size() != 1) return "jobs: " + event["job_ids"].dump();
    auto status = cluster.status_json(event["job_ids"][0].get<uint64_t>());
    return status ? (*status)["job"]["frames"].get<std::string>() : cluster.last_cli();
  };

  for (const std::string& dir : {once, again}) {
    for (int frame = 1; frame <= 8; ++frame) {
      fs::copy_file(beachball_frame(frame),
                    dir + "/" + fs::path(beachball_frame(frame)).filename().string());
    }
  }
  ASSERT_TRUE(wait_until(
      [&] { return events_from(once).size() == 1 && events_from(again).size() == 1; }, 30s, 100ms))
      << events(cluster).value_or(Json()).dump();
  EXPECT_EQ(frames_of(events_from(once)[0]), "1-8");
  EXPECT_EQ(frames_of(events_from(again)[0]), "1-8");

  // The same 9th frame lands in both folders.
  const size_t skipped_before =
      occurrences(read_file(cluster.broker_log_path()), "watch skipped path=" + once);
  for (const std::string& dir : {once, again}) {
    fs::copy_file(beachball_frame(8), dir + "/singlepart.0009.exr");
  }
  ASSERT_TRUE(wait_until(
      [&] {
        bool once_decided = occurrences(read_file(cluster.broker_log_path()),
                                        "watch skipped path=" + once) > skipped_before ||
                            events_from(once).size() > 1;
        return once_decided && events_from(again).size() == 2;
      },
      30s, 100ms))
      << events(cluster).value_or(Json()).dump();
  auto republished = events_from(again);
  ASSERT_EQ(republished.size(), 2u);
  EXPECT_EQ(frames_of(republished[0]), "1-9");  // newest first
  EXPECT_NE(republished[0]["event_id"], republished[1]["event_id"]);
  auto not_republished = events_from(once);
  EXPECT_EQ(not_republished.size(), 1u)
      << "published again with republish: false: " << Json(not_republished).dump();
  EXPECT_EQ(read_file(cluster.broker_log_path()).find("watch publish failed"), std::string::npos)
      << "a watch publish that succeeded was logged as failed";
}

// ------------------------------------------------------------------ lanes

TEST_F(PublishE2ETest, PublishedThumbnailRunsWhileEveryNormalSlotRunsALongCommand) {
  ClusterOptions options;
  options.local_workers = 2;
  options.local_slots = 1;
  options.local_interactive_slots = 1;
  options.commands_yaml =
      "  sleep:\n"
      "    argv: [/bin/sleep, \"{seconds}\"]\n"
      "    params:\n"
      "      seconds: { pattern: \"^[0-9]+$\" }\n";
  Cluster cluster(options);
  const std::string out = cluster.path("out");
  cluster.rewrite_config(
      "rules:\n"
      "  - name: quick\n"
      "    match: { path: \"*.exr\", kind: sequence }\n"
      "    jobs:\n"
      "      thumb: { kind: thumbnail, output: \"" +
      out + "/{name}.jpg\", size: 256x0 }\n");
  ASSERT_TRUE(cluster.start());

  auto workers = cluster.cli_json({"workers"});
  ASSERT_TRUE(workers && workers->size() == 2u) << cluster.last_cli();
  for (const auto& w : *workers) {
    EXPECT_EQ(w["slots"], 1) << w.dump();
    EXPECT_EQ(w["interactive_slots"], 1) << w.dump();
  }

  auto sleeps = cluster.submit({"command", "sleep", "--frames", "1-2", "--param", "seconds=120"});
  ASSERT_TRUE(sleeps) << cluster.last_cli();
  auto both_running = [&] {
    auto status = cluster.status_json(*sleeps);
    if (!status || (*status)["job"]["counts"]["running"] != 2) return false;
    std::set<std::string> on;
    for (const auto& task : (*status)["running"]) on.insert(task["worker"].get<std::string>());
    return on.size() == 2;
  };
  ASSERT_TRUE(wait_until(both_running, 60s, 50ms))
      << "sleep tasks not running on both workers: " << cluster.last_cli();

  auto reply = publish(cluster, {beachball()});
  const auto published_at = Clock::now();
  ASSERT_TRUE(reply) << cluster.last_cli();
  ASSERT_EQ((*reply)["job_ids"].size(), 1u) << reply->dump();
  const uint64_t thumb = (*reply)["job_ids"][0].get<uint64_t>();
  auto done = cluster.wait_for_final_state(thumb, 60s);
  const auto elapsed = std::chrono::duration<double>(Clock::now() - published_at).count();
  ASSERT_TRUE(done) << "thumbnail not done while the sleeps run: " << cluster.last_cli();
  EXPECT_EQ((*done)["job"]["state"], "succeeded") << done->dump();
  EXPECT_EQ((*done)["job"]["lane"], "interactive") << done->dump();
  EXPECT_TRUE(fs::exists(out + "/singlepart.jpg"));
  EXPECT_TRUE(both_running()) << "the thumbnail displaced a sleep task: " << cluster.last_cli();
  RecordProperty("publish_to_thumbnail_succeeded_s", std::to_string(elapsed));
  std::printf("publish to thumbnail succeeded beside 2 busy slots: %.3f s\n", elapsed);
  // Generous: proves only that it did not queue behind the 120 s sleeps.
  EXPECT_LT(elapsed, 30.0);

  // `publish --wait --json` is one document: the reply with each job's final status.
  auto waited = publish(cluster, {beachball(), "--event-id", "waited", "--wait"});
  ASSERT_TRUE(waited) << cluster.last_cli();
  ASSERT_EQ((*waited)["jobs"].size(), 1u) << waited->dump();
  EXPECT_EQ((*waited)["jobs"][0]["job"]["state"], "succeeded") << waited->dump();
  auto listed = cluster.cli_json({"events", "--event-id", "waited"});
  ASSERT_TRUE(listed && listed->size() == 1u) << cluster.last_cli();
  EXPECT_EQ((*listed)[0]["job_states"], Json::array({"succeeded"})) << listed->dump();

  // The lane is for media work only.
  CliResult refused = cluster.run_cli({"submit", "noop", "--tasks", "1", "--lane", "interactive"});
  EXPECT_NE(refused.exit_code, 0) << describe(refused);
  EXPECT_EQ(line_count(refused.err), 1u) << describe(refused);
  EXPECT_NE(refused.err.find("interactive lane"), std::string::npos) << describe(refused);

  CliResult cancel = cluster.run_cli({"cancel", std::to_string(*sleeps)});
  EXPECT_EQ(cancel.exit_code, 0) << describe(cancel);
}

// ------------------------------------------------------------------ config checks

struct BadConfig {
  std::string what;
  std::string text;
  std::string bad_line;  // a substring of the line the message must name
  std::string reason;    // a substring of the message
};

// Each case through `farmhandd --check-config`: a non-zero exit and one line
// "FILE:LINE: ..." naming the line that holds `bad_line`.
void expect_one_line_at_the_bad_line(Cluster& cluster, const std::string& prefix,
                                     const std::vector<BadConfig>& cases) {
  int n = 0;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    const std::string file = cluster.path(prefix + std::to_string(++n) + ".yaml");
    write_text(file, c.text);
    const int line = line_of(c.text, c.bad_line);
    ASSERT_GT(line, 0);
    CliResult r = cluster.run_binary("farmhandd", {"--check-config", file});
    EXPECT_NE(r.exit_code, 0) << describe(r);
    const std::string all = r.out + r.err;
    EXPECT_EQ(line_count(all), 1u) << describe(r);
    EXPECT_NE(all.find(file + ":" + std::to_string(line) + ":"), std::string::npos)
        << "expected line " << line << ": " << describe(r);
    EXPECT_NE(all.find(c.reason), std::string::npos) << describe(r);
  }
}

TEST_F(PublishE2ETest, InvalidConfigsGiveOneLineWithTheFileAndLine) {
  Cluster cluster;  // not started: a directory and the binaries
  const std::vector<BadConfig> cases = {
      {"unknown job kind",
       "rules:\n"
       "  - name: r\n"
       "    match: { path: \"*.exr\" }\n"
       "    jobs:\n"
       "      thumb:\n"
       "        kind: thumbnale\n"
       "        output: \"/out/{name}.jpg\"\n",
       "kind: thumbnale", "thumbnale"},
      {"bad template key",
       "log_level: info\n"
       "rules:\n"
       "  - name: r\n"
       "    jobs:\n"
       "      thumb:\n"
       "        kind: thumbnail\n"
       "        output: \"/out/{nmae}.jpg\"\n",
       "{nmae}", "{nmae}"},
      {"bad codec",
       "rules:\n"
       "  - name: r\n"
       "    jobs:\n"
       "      movie: { kind: transcode, output: \"/out/{name}.mov\", codec: x264 }\n",
       "codec: x264", "x264"},
      {"unknown command",
       "commands:\n"
       "  hello:\n"
       "    argv: [/bin/echo, hi]\n"
       "rules:\n"
       "  - name: r\n"
       "    jobs:\n"
       "      greet: { kind: command, command: helo }\n",
       "command: helo", "helo"},
      {"after cycle",
       "rules:\n"
       "  - name: r\n"
       "    jobs:\n"
       "      first: { kind: noop }\n"
       "      a: { kind: noop, after: [b] }\n"
       "      b: { kind: noop, after: [a] }\n",
       "a: { kind", "cycle"},
  };
  expect_one_line_at_the_bad_line(cluster, "bad", cases);

  // The control: the same checks pass a good config.
  const std::string good = cluster.path("good.yaml");
  write_text(
      good,
      "commands:\n"
      "  hello:\n"
      "    argv: [/bin/echo, hi]\n"
      "rules:\n"
      "  - name: review\n"
      "    match: { path: \"*.exr\", kind: sequence }\n"
      "    jobs:\n"
      "      thumb:   { kind: thumbnail, output: \"/o/{meta.shot}/{name}.jpg\", size: 256x0 }\n"
      "      proxies: { kind: convert, output: \"/o/{name}.{frame}.jpg\", resize: 50% }\n"
      "      movie:   { kind: transcode, input: \"/o/{name}.{frame}.jpg\", "
      "output: \"/o/{name}.mov\", codec: h264, after: [proxies] }\n"
      "      greet:   { kind: command, command: hello, after: [movie] }\n");
  CliResult ok = cluster.run_binary("farmhandd", {"--check-config", good});
  EXPECT_EQ(ok.exit_code, 0) << describe(ok);
}

// Block-style jobs and unclosed brackets: the error names the line that holds
// the mistake (the value's line; the bracket's, not where yaml-cpp gave up).
TEST_F(PublishE2ETest, ConfigMistakesAreReportedOnTheLineThatHoldsThem) {
  Cluster cluster;
  const std::vector<BadConfig> cases = {
      {"unclosed bracket",
       "watch:\n"
       "  - path: /tmp\n"
       "    include: [\"*.exr\", \"*.dpx\"\n"
       "    settle_s: 2\n"
       "rules: []\n",
       "include:", "yaml"},
      {"bad codec in a block-style job",
       "rules:\n"
       "  - name: r\n"
       "    jobs:\n"
       "      movie:\n"
       "        kind: transcode\n"
       "        output: \"/out/{name}.mov\"\n"
       "        codec: x264\n",
       "codec: x264", "x264"},
      {"unknown command in a block-style job",
       "commands:\n"
       "  hello:\n"
       "    argv: [/bin/echo, hi]\n"
       "rules:\n"
       "  - name: r\n"
       "    jobs:\n"
       "      greet:\n"
       "        kind: command\n"
       "        command: helo\n",
       "command: helo", "helo"},
  };
  expect_one_line_at_the_bad_line(cluster, "block", cases);

  // The same mistake at start: farmhandd refuses to run, with the same one line.
  const std::string bad = cluster.path("start.yaml");
  write_text(bad, cases[1].text);
  CliResult start = cluster.run_binary(
      "farmhandd",
      {"--config", bad, "--state-dir", cluster.path("start-state"), "--local-workers", "0"});
  EXPECT_NE(start.exit_code, 0) << describe(start);
  EXPECT_EQ(line_count(start.out + start.err), 1u) << describe(start);
  EXPECT_NE(start.err.find(bad + ":" + std::to_string(line_of(cases[1].text, "codec: x264"))),
            std::string::npos)
      << describe(start);
}

// A publish is acknowledged only once it is durable: the event and its jobs survive a
// kill -9 of the broker right after the ack, and the same event id is then a duplicate.
TEST_F(PublishE2ETest, AcknowledgedPublishSurvivesKillNineOfTheBroker) {
  ClusterOptions options;
  options.local_workers = 1;
  Cluster cluster(options);
  const std::string out = cluster.path("out");
  cluster.rewrite_config(
      "rules:\n"
      "  - name: quick\n"
      "    match: { path: \"*.exr\", kind: sequence }\n"
      "    jobs:\n"
      "      thumb: { kind: thumbnail, output: \"" +
      out + "/{name}.jpg\", size: 64x0 }\n");
  ASSERT_TRUE(cluster.start());
  auto reply = publish(cluster, {beachball(), "--event-id", "durable-1"});
  ASSERT_TRUE(reply) << cluster.last_cli();
  ASSERT_EQ((*reply)["job_ids"].size(), 1u) << reply->dump();
  cluster.kill_broker(SIGKILL);
  ASSERT_TRUE(cluster.restart_broker());

  auto listed = cluster.cli_json({"events", "--event-id", "durable-1"});
  ASSERT_TRUE(listed && listed->size() == 1u) << cluster.last_cli();
  EXPECT_EQ((*listed)[0]["job_ids"], (*reply)["job_ids"]) << listed->dump();
  auto again = publish(cluster, {beachball(), "--event-id", "durable-1"});
  ASSERT_TRUE(again) << cluster.last_cli();
  EXPECT_EQ((*again)["duplicate"], true) << again->dump();
  EXPECT_EQ((*again)["job_ids"], (*reply)["job_ids"]) << again->dump();
  auto done = cluster.wait_for_final_state((*reply)["job_ids"][0].get<uint64_t>(), 120s);
  ASSERT_TRUE(done) << cluster.last_cli();
  EXPECT_EQ((*done)["job"]["state"], "succeeded") << done->dump();
}

// ------------------------------------------------------------------ reload

TEST_F(PublishE2ETest, SighupReloadsRulesAndABadConfigKeepsTheOldRules) {
  Cluster cluster;
  const std::string out = cluster.path("out");
  const std::string rule_head =
      "rules:\n"
      "  - name: review\n"
      "    match: { path: \"*.exr\", kind: sequence }\n"
      "    jobs:\n"
      "      thumb: { kind: thumbnail, output: \"" +
      out + "/{event}/{name}.jpg\", size: 64x0 }\n";
  cluster.rewrite_config(rule_head);
  ASSERT_TRUE(cluster.start());

  auto first = publish(cluster, {beachball(), "--event-id", "before-reload"});
  ASSERT_TRUE(first) << cluster.last_cli();
  EXPECT_EQ((*first)["job_ids"].size(), 1u) << first->dump();

  cluster.rewrite_config(rule_head + "      proxies: { kind: convert, output: \"" + out +
                         "/{event}/{name}.{frame}.jpg\", resize: 64x0, chunk: 8 }\n");
  ASSERT_TRUE(cluster.signal_broker(SIGHUP));
  int attempt = 0;
  std::optional<Json> reply;
  EXPECT_TRUE(wait_until(
      [&] {
        reply =
            publish(cluster, {beachball(), "--event-id", "reload-" + std::to_string(++attempt)});
        return reply && (*reply)["job_ids"].size() == 2u;
      },
      10s, 200ms))
      << "the new rule never applied: " << (reply ? reply->dump() : cluster.last_cli());

  // A bad config: refused, logged, and the rules in force stay.
  write_text(cluster.config_path(), "rules:\n  - name: broken\n    jobs: { x: { kind: nope } }\n");
  ASSERT_TRUE(cluster.signal_broker(SIGHUP));
  EXPECT_TRUE(wait_until(
      [&] {
        return read_file(cluster.broker_log_path()).find("reload refused") != std::string::npos;
      },
      10s, 50ms))
      << "no 'reload refused' in " << cluster.broker_log_path();
  // The refusal names the file and line, as --check-config does.
  EXPECT_NE(read_file(cluster.broker_log_path()).find(cluster.config_path() + ":3:"),
            std::string::npos)
      << read_file(cluster.broker_log_path());
  auto after_bad = publish(cluster, {beachball(), "--event-id", "after-bad-reload"});
  ASSERT_TRUE(after_bad) << cluster.last_cli();
  EXPECT_EQ((*after_bad)["job_ids"].size(), 2u) << after_bad->dump();
  EXPECT_TRUE(cluster.broker_running());
  EXPECT_TRUE(job_count(cluster)) << cluster.last_cli();
}

// ------------------------------------------------------------------ backup

TEST_F(PublishE2ETest, OnlineBackupIsAConsistentCopyOfTheJobs) {
  ClusterOptions options;
  options.local_workers = 1;
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(cluster.submit({"noop", "--tasks", "20"})) << cluster.last_cli();
  }
  auto jobs = job_count(cluster);
  ASSERT_TRUE(jobs) << cluster.last_cli();
  ASSERT_EQ(*jobs, 3u);

  const std::string copy = cluster.path("backup.db");
  CliResult r = cluster.run_cli({"admin", "backup", copy});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  ASSERT_TRUE(fs::exists(copy));
  EXPECT_EQ(run("sqlite3 '" + copy + "' 'select count(*) from jobs'"),
            std::to_string(*jobs) + "\n");
  EXPECT_EQ(run("sqlite3 '" + copy + "' 'PRAGMA integrity_check'"), "ok\n");

  for (const std::string& bad :
       {cluster.path("no-such-dir/backup.db"), std::string("no-such-dir-fh/backup.db")}) {
    CliResult refused = cluster.run_cli({"admin", "backup", bad});
    EXPECT_NE(refused.exit_code, 0) << bad << ": " << describe(refused);
    EXPECT_EQ(line_count(refused.err), 1u) << bad << ": " << describe(refused);
    EXPECT_NE(refused.err.find("no-such-dir"), std::string::npos) << describe(refused);
  }
  EXPECT_TRUE(job_count(cluster)) << cluster.last_cli();
}

// ------------------------------------------------------------------ hostile input

TEST_F(PublishE2ETest, HostilePublishInputIsRefusedWithOneLineAndTheBrokerStaysUp) {
  ClusterOptions options;
  options.local_workers = 1;
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());

  const std::string missing = cluster.path("nowhere/sh010.####.exr");
  const std::string missing_file = cluster.path("nothing.exr");

  struct Case {
    std::vector<std::string> args;
    std::string reason;
  };

  const std::vector<Case> cases = {
      {{"publish", missing}, missing},
      {{"publish", missing_file}, missing_file},
      {{"publish", beachball(), "--meta", "bad key=1"}, "bad key"},
      {{"publish", beachball(), "--event-id", std::string(300, 'e')}, "event id"},
  };
  for (const auto& c : cases) {
    CliResult r = cluster.run_cli(c.args);
    EXPECT_NE(r.exit_code, 0) << describe(r);
    EXPECT_EQ(line_count(r.err), 1u) << describe(r);
    EXPECT_NE(r.err.find(c.reason), std::string::npos) << describe(r);
  }
  EXPECT_TRUE(cluster.broker_running());
  auto jobs = job_count(cluster);
  ASSERT_TRUE(jobs) << "the broker stopped answering: " << cluster.last_cli();
  EXPECT_EQ(*jobs, 0u);
  auto listed = events(cluster);
  ASSERT_TRUE(listed) << cluster.last_cli();
  EXPECT_TRUE(listed->empty()) << listed->dump();
}

}  // namespace
}  // namespace farmhand::e2e
