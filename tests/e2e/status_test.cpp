// What a wrangler reads, on the real binaries: `status` says when a job
// started and how long it ran; `status --tasks` names each task's worker with
// its start and elapsed time, also once the task finished (and after a broker
// restart); media tasks have logs like a command's, naming what they read and
// wrote with timings.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/cluster.h"
#include "tests/support/oracles.h"
#include <gtest/gtest.h>

namespace farmhand::e2e {
namespace {

using namespace std::chrono_literals;

// Each task of the page names a worker of the cluster, a start within the
// job's run and an elapsed time.
void expect_tasks_say_who_and_when(Cluster& cluster, uint64_t job, size_t tasks) {
  auto page = cluster.status_json(job, {"--tasks"});
  ASSERT_TRUE(page) << cluster.last_cli();
  const Json& summary = (*page)["job"];
  ASSERT_TRUE(summary["started_unix_ms"].is_number()) << summary;
  ASSERT_TRUE(summary["finished_unix_ms"].is_number()) << summary;
  const int64_t submitted = summary["submitted_unix_ms"].get<int64_t>();
  const int64_t started = summary["started_unix_ms"].get<int64_t>();
  const int64_t finished = summary["finished_unix_ms"].get<int64_t>();
  EXPECT_LE(submitted, started) << summary;
  EXPECT_LE(started, finished) << summary;
  EXPECT_DOUBLE_EQ(summary["elapsed_s"].get<double>(), (finished - started) / 1000.0) << summary;
  ASSERT_EQ((*page)["tasks"].size(), tasks) << *page;
  auto alive = cluster.alive_workers();
  ASSERT_TRUE(alive && !alive->empty()) << cluster.last_cli();
  const std::set<std::string> workers(alive->begin(), alive->end());
  for (const Json& task : (*page)["tasks"]) {
    EXPECT_EQ(task["state"], "succeeded") << task;
    EXPECT_EQ(workers.count(task["worker"].get<std::string>()), 1u)
        << "a finished task without its worker: " << task;
    ASSERT_TRUE(task["started_unix_ms"].is_number()) << task;
    ASSERT_TRUE(task["elapsed_s"].is_number()) << task;
    // The broker's clock, to the millisecond: within the job's run.
    EXPECT_GE(task["started_unix_ms"].get<int64_t>(), started - 1) << task;
    EXPECT_LE(task["started_unix_ms"].get<int64_t>(), finished) << task;
    EXPECT_GT(task["elapsed_s"].get<double>(), 0.0) << task;
  }
}

TEST(StatusE2ETest, MediaTasksLogWhatTheyReadAndWroteAndFinishedTasksKeepWorkerAndTimes) {
  ASSERT_TRUE(std::filesystem::exists(data_dir() + "/Beachball/singlepart.0001.exr"))
      << "test data missing: " << data_dir();
  ClusterOptions options;
  options.local_workers = 2;
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());
  // The CLI sends paths made absolute and normal: the logs name them so.
  const std::string beachball =
      std::filesystem::weakly_canonical(data_dir()).string() + "/Beachball/singlepart.";
  const std::string input = beachball + "####.exr";

  auto thumb = cluster.submit(
      {"thumbnail", input, "-o", cluster.path("thumb.jpg"), "--size", "256", "--frame", "first"});
  auto proxies = cluster.submit({"convert", input, "-o", cluster.path("proxy/sb.####.jpg"),
                                 "--resize", "25%", "--chunk", "4"});
  auto movie = cluster.submit({"transcode", input, "-o", cluster.path("review.mov")});
  ASSERT_TRUE(thumb && proxies && movie) << cluster.last_cli();
  for (uint64_t job : {*thumb, *proxies, *movie}) {
    auto done = cluster.wait_for_final_state(job, 300s);
    ASSERT_TRUE(done) << "job " << job;
    ASSERT_EQ((*done)["job"]["state"], "succeeded") << done->dump();
  }

  auto log_text = [&](uint64_t job) {
    std::string text;
    auto logs = cluster.cli_json({"logs", std::to_string(job)});
    EXPECT_TRUE(logs && logs->is_array() && !logs->empty()) << cluster.last_cli();
    if (!logs) return text;
    for (const Json& log : *logs) text += log["text"].get<std::string>();
    return text;
  };
  const std::string thumb_log = log_text(*thumb);
  EXPECT_NE(thumb_log.find("read " + beachball + "0001.exr: 2048x1556"), std::string::npos)
      << thumb_log;
  EXPECT_NE(thumb_log.find("R,G,B of 20 channels"), std::string::npos) << thumb_log;
  EXPECT_NE(thumb_log.find("wrote " + cluster.path("thumb.jpg") + ": jpeg 256x"), std::string::npos)
      << thumb_log;
  EXPECT_NE(thumb_log.find("time: read "), std::string::npos) << thumb_log;

  // One line a frame: every frame read and written, then a summary per task.
  const std::string proxy_log = log_text(*proxies);
  for (int frame = 1; frame <= 8; ++frame) {
    const std::string n = "000" + std::to_string(frame);
    EXPECT_NE(proxy_log.find("frame " + std::to_string(frame) + ": read " + beachball + n +
                             ".exr 2048x1556"),
              std::string::npos)
        << proxy_log;
    EXPECT_NE(proxy_log.find("wrote " + cluster.path("proxy/sb." + n + ".jpg") + " jpeg 512x389"),
              std::string::npos)
        << proxy_log;
  }
  EXPECT_NE(proxy_log.find("converted 4 frames: read "), std::string::npos) << proxy_log;

  const std::string movie_log = log_text(*movie);
  EXPECT_NE(movie_log.find("read " + input + " frames 1-8: 8 frames, 2048x1556"), std::string::npos)
      << movie_log;
  EXPECT_NE(movie_log.find("wrote " + cluster.path("review.mov") + ": libx264 2048x1556, 8 frames"),
            std::string::npos)
      << movie_log;
  EXPECT_NE(movie_log.find("time: decode "), std::string::npos) << movie_log;

  // The text people read has the same lines under each attempt's header.
  CliResult text = cluster.run_cli({"logs", std::to_string(*thumb)});
  ASSERT_EQ(text.exit_code, 0) << describe(text);
  EXPECT_NE(text.out.find("\nwrote " + cluster.path("thumb.jpg")), std::string::npos) << text.out;

  expect_tasks_say_who_and_when(cluster, *thumb, 1);
  expect_tasks_say_who_and_when(cluster, *proxies, 2);
  expect_tasks_say_who_and_when(cluster, *movie, 1);
  CliResult page = cluster.run_cli({"status", std::to_string(*proxies), "--tasks"});
  ASSERT_EQ(page.exit_code, 0) << describe(page);
  EXPECT_NE(page.out.find("\nstarted "), std::string::npos) << page.out;
  EXPECT_NE(page.out.find(": ran "), std::string::npos) << page.out;
  EXPECT_NE(page.out.find("WORKER   STARTED"), std::string::npos) << page.out;
  EXPECT_NE(page.out.find("ELAPSED"), std::string::npos) << page.out;
  EXPECT_EQ(page.out.find("_output_dir"), std::string::npos) << page.out;

  // Who ran what, and when, is kept with the attempts.
  cluster.kill_broker(SIGKILL);
  ASSERT_TRUE(cluster.restart_broker());
  expect_tasks_say_who_and_when(cluster, *proxies, 2);
}

// A job of many one-frame tasks that each take a moment, on four slots.
ClusterOptions four_slots_with(const char* commands_yaml) {
  ClusterOptions options;
  options.local_workers = 2;
  options.local_slots = 2;
  options.commands_yaml = commands_yaml;
  return options;
}

size_t occurrences_of(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST(StatusE2ETest, WatchOnATerminalRedrawsOneBarWithFramesElapsedAndAnEta) {
  Cluster cluster(four_slots_with("  nap:\n    argv: [/bin/sleep, '0.2']\n"));
  ASSERT_TRUE(cluster.start());
  auto job = cluster.submit({"command", "nap", "--frames", "1-40"});
  ASSERT_TRUE(job) << cluster.last_cli();
  CliResult watched = cluster.run_cli_on_terminal({"watch", std::to_string(*job)});
  ASSERT_EQ(watched.exit_code, 0) << describe(watched);
  const std::string& out = watched.out;
  // The bar is redrawn in place: the line is cleared and written again.
  EXPECT_GE(occurrences_of(out, "\r\33[2K["), 2u) << out;
  EXPECT_NE(out.find("/40 frames, tasks "), std::string::npos) << out;
  EXPECT_NE(out.find(" elapsed "), std::string::npos) << out;
  // Once frames got done while it watched, it says when the rest will be.
  EXPECT_NE(out.find(" eta "), std::string::npos) << out;
  // The bar's line is ended and the outcome follows on a line of its own.
  EXPECT_NE(out.find("\r\njob " + std::to_string(*job) + " succeeded succeeded=40/40"),
            std::string::npos)
      << out;
}

TEST(StatusE2ETest, WatchIntoAPipePrintsAtMostALineASecond) {
  Cluster cluster(four_slots_with("  blink:\n    argv: [/bin/sleep, '0.02']\n"));
  ASSERT_TRUE(cluster.start());
  auto job = cluster.submit({"command", "blink", "--frames", "1-400"});
  ASSERT_TRUE(job) << cluster.last_cli();
  const auto start = std::chrono::steady_clock::now();
  CliResult watched = cluster.run_cli({"watch", std::to_string(*job)});
  const double elapsed_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_EQ(watched.exit_code, 0) << describe(watched);
  EXPECT_EQ(watched.out.find('\r'), std::string::npos) << "a bar drawn into a pipe";
  std::vector<std::string> lines;
  std::istringstream in(watched.out);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_FALSE(lines.empty()) << describe(watched);
  EXPECT_EQ(lines.back(),
            "job " + std::to_string(*job) + " succeeded succeeded=400/400 running=0 dead=0")
      << watched.out;
  // The job changed hundreds of times; a log file gets a line a second at most:
  // n lines are n-1 seconds apart at least.
  const size_t progress_lines = lines.size() - 1;
  EXPECT_LE(static_cast<double>(progress_lines), elapsed_s + 1)
      << progress_lines << " lines in " << elapsed_s << " s:\n"
      << watched.out;
  for (size_t i = 0; i < progress_lines; ++i) {
    EXPECT_NE(lines[i].find(" frames="), std::string::npos) << lines[i];
    EXPECT_EQ(lines[i].find("eta"), std::string::npos) << "a guess in a log: " << lines[i];
  }
}

TEST(StatusE2ETest, WatchMovesTheBarOfAOneTaskMovieFrameByFrame) {
  const std::string chart = data_dir() + "/TestImages/GammaChart.exr";
  ASSERT_TRUE(std::filesystem::exists(chart)) << "test data missing: " << chart;
  ClusterOptions options;
  options.local_workers = 1;
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());
  // A 240-frame sequence (the chart under 240 names) becomes one movie task.
  std::filesystem::create_directories(cluster.path("seq"));
  for (int frame = 1; frame <= 240; ++frame) {
    char name[32];
    std::snprintf(name, sizeof name, "/chart.%04d.exr", frame);
    std::filesystem::create_symlink(chart, cluster.path("seq") + name);
  }
  auto job = cluster.submit(
      {"transcode", cluster.path("seq/chart.####.exr"), "-o", cluster.path("review.mov")});
  ASSERT_TRUE(job) << cluster.last_cli();
  CliResult watched = cluster.run_cli_on_terminal({"watch", std::to_string(*job)});
  ASSERT_EQ(watched.exit_code, 0) << describe(watched);
  // Each drawing of the bar: the frames done of 240 while the one task ran.
  std::set<int> shown;
  const std::string mark = " frames, tasks 0/1 ";
  for (size_t at = watched.out.find(mark); at != std::string::npos;
       at = watched.out.find(mark, at + 1)) {
    const size_t slash = watched.out.rfind('/', at);
    const size_t space = watched.out.rfind(' ', slash);
    shown.insert(std::stoi(watched.out.substr(space + 1, slash - space - 1)));
  }
  std::erase_if(shown, [](int done) { return done == 0 || done == 240; });
  EXPECT_FALSE(shown.empty()) << "the bar did not move while the movie was made:\n" << watched.out;
}

}  // namespace
}  // namespace farmhand::e2e
