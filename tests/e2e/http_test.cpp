// The HTTP front of a real farmhandd: the JSON API against what the CLI sees,
// bearer tokens on actions, and where it refuses to listen.
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "tests/support/cluster.h"
#include "tests/support/oracles.h"
#include "tests/support/temp_dir.h"
#include "tests/support/tls_cert.h"
#include <gtest/gtest.h>
#include <httplib.h>
#include <yaml-cpp/yaml.h>

namespace farmhand::e2e {
namespace {

using namespace std::chrono_literals;

constexpr const char* kToken = "t0ken-for-alice-0123456789";

// Waits until $0 exists: a task that stays running until the test says so.
const char* kWaitCommand =
    "  wait:\n"
    "    argv: [/bin/sh, -c, 'while [ ! -e \"$0\" ]; do sleep 0.05; done', \"{release}\"]\n"
    "    params:\n"
    "      release: {pattern: '^/tmp/[A-Za-z0-9_./-]+$'}\n"
    // Each frame waits for $0.FRAME: a job that runs on while one task ends.
    "  wait_each:\n"
    "    argv: [/bin/sh, -c, 'while [ ! -e \"$0.$1\" ]; do sleep 0.05; done', \"{release}\", "
    "\"{frame}\"]\n"
    "    params:\n"
    "      release: {pattern: '^/tmp/[A-Za-z0-9_./-]+$'}\n";

class HttpE2ETest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::ofstream(tokens_.file("tokens")) << "# user token\nalice " << kToken << "\n";
    ClusterOptions options;
    options.local_workers = 1;
    options.local_slots = 3;
    options.commands_yaml = kWaitCommand;
    options.http_yaml = "  listen: 127.0.0.1:0\n  tokens_file: " + tokens_.file("tokens") + "\n";
    cluster_ = std::make_unique<Cluster>(options);
    ASSERT_TRUE(cluster_->start());
    url_ = cluster_->http_url();
    ASSERT_FALSE(url_.empty()) << read_file(cluster_->broker_log_path());
    http_ = std::make_unique<httplib::Client>(url_);
    http_->set_read_timeout(30, 0);
  }

  // GET path: (status, parsed body).
  std::pair<int, Json> get(const std::string& path) {
    auto res = http_->Get(path);
    if (!res) return {0, Json()};
    return {res->status, Json::parse(res->body, nullptr, /*allow_exceptions=*/false)};
  }

  std::pair<int, Json> post(const std::string& path, const std::string& token = "",
                            const std::string& body = "") {
    httplib::Headers headers;
    if (!token.empty()) headers.emplace("Authorization", "Bearer " + token);
    auto res = http_->Post(path, headers, body, "application/json");
    if (!res) return {0, Json()};
    return {res->status, Json::parse(res->body, nullptr, /*allow_exceptions=*/false)};
  }

  testing_support::TempDir tokens_{"fh-http"};
  std::unique_ptr<Cluster> cluster_;
  std::string url_;
  std::unique_ptr<httplib::Client> http_;
};

TEST_F(HttpE2ETest, TheApiShowsJobsAndTasksAsTheCliDoes) {
  auto [health_code, health] = get("/api/v1/health");
  ASSERT_EQ(health_code, 200) << health.dump();
  EXPECT_EQ(health["health"]["store_writes"], true);
  // Reads are open here: a stale token left in a browser tab does not stop them.
  auto stale = http_->Get("/api/v1/health", {{"Authorization", "Bearer stale-token-of-nobody-1"}});
  ASSERT_TRUE(stale);
  EXPECT_EQ(stale->status, 200) << stale->body;

  auto job = cluster_->submit({"noop", "--frames", "1-7", "--name", "api-seen"});
  ASSERT_TRUE(job) << cluster_->last_cli();
  ASSERT_TRUE(wait_until(
      [&] {
        auto status = cluster_->status_json(*job);
        return status && (*status)["job"]["state"] == "succeeded";
      },
      30s));

  auto [list_code, list] = get("/api/v1/jobs?state=succeeded&text=API-SEEN");
  ASSERT_EQ(list_code, 200) << list.dump();
  ASSERT_EQ(list["list"]["jobs"].size(), 1u) << list.dump();
  EXPECT_EQ(list["list"]["jobs"][0]["id"], std::to_string(*job));
  EXPECT_EQ(list["list"]["jobs"][0]["name"], "api-seen");
  auto [none_code, none] = get("/api/v1/jobs?state=queued");
  ASSERT_EQ(none_code, 200);
  EXPECT_TRUE(none["list"]["jobs"].empty()) << none.dump();

  auto [job_code, one] = get("/api/v1/jobs/" + std::to_string(*job) + "?tasks_limit=5");
  ASSERT_EQ(job_code, 200) << one.dump();
  EXPECT_EQ(one["status"]["job"]["state"], "JOB_SUCCEEDED");
  EXPECT_EQ(one["status"]["tasks"].size(), 5u) << one.dump();

  // Bad input: one line naming what was wrong, as a 400 or 404.
  auto [bad_code, bad] = get("/api/v1/jobs?state=bogus");
  EXPECT_EQ(bad_code, 400);
  EXPECT_EQ(bad["error"], "unknown state 'bogus'");
  auto [limit_code, limit] = get("/api/v1/jobs?limit=ten");
  EXPECT_EQ(limit_code, 400);
  EXPECT_EQ(limit["error"], "limit must be a whole number from 0 to 10000");
  auto [unknown_code, unknown] = get("/api/v1/jobs/999999");
  EXPECT_EQ(unknown_code, 404) << unknown.dump();
  auto [nowhere_code, nowhere] = get("/api/v2/jobs");
  EXPECT_EQ(nowhere_code, 404);

  // /metrics of the same broker: what it dispatched, and the requests above
  // counted by route (numbers folded into {id}).
  auto metrics = http_->Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);
  EXPECT_NE(metrics->body.find("farmhand_dispatches_total 7"), std::string::npos)
      << metrics->body.substr(0, 3000);
  EXPECT_NE(metrics->body.find(R"(route="/api/v1/jobs/{id}")"), std::string::npos)
      << metrics->body.substr(0, 3000);
}

// GET /api/v1/jobs is answered from the list the broker publishes, not by its
// loop: sorted and paged by cursor, each job once, right after the submits.
TEST_F(HttpE2ETest, JobListsSortAndPageByCursor) {
  std::vector<std::string> names = {"delta", "alpha", "echo", "charlie", "bravo"};
  std::set<std::string> submitted;
  for (const std::string& name : names) {
    auto job = cluster_->submit({"noop", "--frames", "1", "--name", name, "--project", "paging"});
    ASSERT_TRUE(job) << cluster_->last_cli();
    submitted.insert(std::to_string(*job));
  }
  std::vector<std::string> seen_names;
  std::set<std::string> seen_ids;
  std::string cursor;
  int pages = 0;
  do {
    auto [code, page] = get("/api/v1/jobs?project=paging&sort=name&limit=2" +
                            (cursor.empty() ? std::string() : "&cursor=" + cursor));
    ASSERT_EQ(code, 200) << page.dump();
    EXPECT_EQ(page["list"]["matched"], "5") << page.dump();
    EXPECT_NE(page["list"]["as_of_unix_ms"], "0");
    for (const auto& job : page["list"]["jobs"]) {
      seen_names.push_back(job["name"]);
      EXPECT_TRUE(seen_ids.insert(job["id"].get<std::string>()).second) << page.dump();
    }
    cursor = page["list"]["next_cursor"];
    ASSERT_LT(++pages, 10);
  } while (!cursor.empty());
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(seen_names, (std::vector<std::string>{"alpha", "bravo", "charlie", "delta", "echo"}));
  EXPECT_EQ(seen_ids, submitted);

  auto [newest_code, newest] = get("/api/v1/jobs?project=paging&limit=1");
  ASSERT_EQ(newest_code, 200);
  EXPECT_EQ(newest["list"]["jobs"][0]["name"], "bravo") << "newest first by default";
  EXPECT_EQ(newest["list"]["next_offset"], "1");
  auto [sort_code, sort] = get("/api/v1/jobs?sort=colour");
  EXPECT_EQ(sort_code, 400);
  EXPECT_NE(sort["error"].get<std::string>().find("unknown sort 'colour'"), std::string::npos);
  auto [cursor_code, bad_cursor] = get("/api/v1/jobs?sort=name&cursor=0123");
  EXPECT_EQ(cursor_code, 400);
  EXPECT_NE(bad_cursor["error"].get<std::string>().find("cursor not understood"),
            std::string::npos);
}

TEST_F(HttpE2ETest, ActionsNeedABearerTokenAndRecordWhoseItWas) {
  const std::string release = cluster_->path("release");
  auto job =
      cluster_->submit({"command", "wait", "--frames", "1", "--param", "release=" + release});
  ASSERT_TRUE(job) << cluster_->last_cli();
  ASSERT_TRUE(cluster_->wait_for_running(*job, 1, 30s)) << cluster_->last_cli();
  const std::string cancel = "/api/v1/jobs/" + std::to_string(*job) + "/cancel";

  auto [anonymous_code, anonymous] = post(cancel);
  EXPECT_EQ(anonymous_code, 401) << anonymous.dump();
  auto [wrong_code, wrong] = post(cancel, "not-a-token-of-this-farm");
  EXPECT_EQ(wrong_code, 403) << wrong.dump();
  auto still = cluster_->status_json(*job);
  ASSERT_TRUE(still);
  EXPECT_EQ((*still)["job"]["state"], "running") << "a refused action changed the job";

  auto [ok_code, ok] = post(cancel, kToken);
  EXPECT_EQ(ok_code, 200) << ok.dump();
  auto cancelled = cluster_->status_json(*job);
  ASSERT_TRUE(cancelled);
  EXPECT_EQ((*cancelled)["job"]["state"], "cancelled");
  EXPECT_NE(read_file(cluster_->broker_log_path()).find("by=http:alice"), std::string::npos)
      << "the cancel does not say whose token it was";
  std::ofstream(release) << "go";
}

// What the CLI does to jobs, workers and limits, the API does too, with the
// request's other fields in a JSON body; a body it cannot read is one line.
TEST_F(HttpE2ETest, EveryControlOfTheCliIsAnActionOfTheApi) {
  const std::string release = cluster_->path("release");
  auto job = cluster_->submit({"command", "wait", "--frames", "1-4", "--param",
                               "release=" + release, "--max-running", "1"});
  ASSERT_TRUE(job) << cluster_->last_cli();
  ASSERT_TRUE(cluster_->wait_for_running(*job, 1, 30s)) << cluster_->last_cli();
  const std::string at = "/api/v1/jobs/" + std::to_string(*job);

  auto [set_code, set] = post(at + "/set", kToken, R"({"priority": 87, "max_running": 2})");
  ASSERT_EQ(set_code, 200) << set.dump();
  auto status = cluster_->status_json(*job);
  ASSERT_TRUE(status);
  EXPECT_EQ((*status)["job"]["priority"], 87) << status->dump();
  EXPECT_EQ((*status)["job"]["max_running"], 2) << status->dump();

  auto [skip_code, skip] = post(at + "/skip", kToken, R"({"tasks": "3"})");
  ASSERT_EQ(skip_code, 200) << skip.dump();
  EXPECT_EQ(skip["action"]["tasks_changed"], "1") << skip.dump();
  auto tasks = cluster_->status_json(*job, {"--tasks"});
  ASSERT_TRUE(tasks);
  EXPECT_EQ((*tasks)["tasks"][3]["state"], "succeeded") << tasks->dump();

  auto [before_code, before] = get("/api/v1/workers");
  ASSERT_EQ(before_code, 200);
  ASSERT_FALSE(before["workers"]["workers"].empty()) << before.dump();
  const std::string worker = before["workers"]["workers"][0]["name"];
  auto [drain_code, drain] =
      post("/api/v1/workers/" + worker + "/drain", kToken, R"({"reason": "disk swap"})");
  ASSERT_EQ(drain_code, 200) << drain.dump();
  auto [workers_code, workers] = get("/api/v1/workers");
  ASSERT_EQ(workers_code, 200);
  EXPECT_NE(workers.dump().find("disk swap"), std::string::npos) << workers.dump();
  auto [enable_code, enable] = post("/api/v1/workers/" + worker + "/enable", kToken);
  EXPECT_EQ(enable_code, 200) << enable.dump();

  auto [limit_code, limit] = post("/api/v1/limits/nuke", kToken, R"({"capacity": 30})");
  ASSERT_EQ(limit_code, 200) << limit.dump();
  auto [limits_code, limits] = get("/api/v1/limits");
  ASSERT_EQ(limits_code, 200);
  EXPECT_NE(limits.dump().find("\"capacity\":30"), std::string::npos) << limits.dump();
  auto [no_capacity_code, no_capacity] = post("/api/v1/limits/nuke", kToken);
  EXPECT_EQ(no_capacity_code, 400) << "an empty body would have set the capacity to 0";

  auto [bad_code, bad] = post(at + "/kill", kToken, R"({"taskz": "1"})");
  EXPECT_EQ(bad_code, 400) << bad.dump();
  EXPECT_NE(bad["error"].get<std::string>().find("request body not understood"), std::string::npos)
      << bad.dump();
  auto [anonymous_code, anonymous] = post(at + "/set", "", R"({"priority": 1})");
  EXPECT_EQ(anonymous_code, 401);
  std::ofstream(release) << "go";
}

// A publish's thumbnail, shown inline by the monitor: the bytes the job wrote,
// as image/jpeg; nothing for other jobs, and no symlink put in its place.
TEST_F(HttpE2ETest, AThumbnailJobsImageIsServedAsItWasWritten) {
  const std::string input = data_dir() + "/Beachball/singlepart.####.exr";
  ASSERT_TRUE(std::filesystem::exists(data_dir() + "/Beachball/singlepart.0001.exr"))
      << "test data missing: " << data_dir();
  const std::string thumb = cluster_->path("thumb.jpg");
  auto job = cluster_->submit({"thumbnail", input, "-o", thumb, "--size", "128"});
  ASSERT_TRUE(job) << cluster_->last_cli();
  auto done = cluster_->wait_for_final_state(*job, 120s);
  ASSERT_TRUE(done);
  ASSERT_EQ((*done)["job"]["state"], "succeeded") << done->dump();

  const std::string at = "/api/v1/jobs/" + std::to_string(*job) + "/image";
  auto res = http_->Get(at);
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(res->get_header_value("Content-Type"), "image/jpeg");
  EXPECT_EQ(res->body, read_file(thumb)) << "not the bytes the job wrote";

  auto noop = cluster_->submit({"noop", "--frames", "1"});
  ASSERT_TRUE(noop);
  auto [noop_code, noop_body] = get("/api/v1/jobs/" + std::to_string(*noop) + "/image");
  EXPECT_EQ(noop_code, 404);
  EXPECT_NE(noop_body["error"].get<std::string>().find("only thumbnail, convert and contactsheet"),
            std::string::npos)
      << noop_body.dump();

  // Someone puts a symlink to a secret where the thumbnail was: not followed.
  const std::string secret = cluster_->path("secret.txt");
  std::ofstream(secret) << "not for the web";
  std::filesystem::remove(thumb);
  std::filesystem::create_symlink(secret, thumb);
  auto [link_code, link_body] = get(at);
  EXPECT_EQ(link_code, 404) << link_body.dump();
  EXPECT_EQ(link_body.dump().find("not for the web"), std::string::npos);
}

// With http.read: token, reading needs a token too: in the Authorization
// header, or for what a browser cannot give a header (the live stream, an
// image) as ?access_token=; an action never takes it from the URL.
TEST(HttpReadTokenE2ETest, ReadsNeedATokenInTheHeaderOrTheUrl) {
  testing_support::TempDir dir{"fh-http-read"};
  std::ofstream(dir.file("tokens")) << "alice " << kToken << "\n";
  ClusterOptions options;
  options.local_workers = 0;
  options.http_yaml =
      "  listen: 127.0.0.1:0\n  read: token\n  tokens_file: " + dir.file("tokens") + "\n";
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());
  auto job = cluster.submit({"noop", "--frames", "1"});
  ASSERT_TRUE(job) << cluster.last_cli();
  httplib::Client http(cluster.http_url());
  http.set_read_timeout(30, 0);

  auto anonymous = http.Get("/api/v1/jobs");
  ASSERT_TRUE(anonymous);
  EXPECT_EQ(anonymous->status, 401);
  auto header = http.Get("/api/v1/jobs", {{"Authorization", std::string("Bearer ") + kToken}});
  ASSERT_TRUE(header);
  EXPECT_EQ(header->status, 200) << header->body;
  auto url = http.Get(std::string("/api/v1/jobs?access_token=") + kToken);
  ASSERT_TRUE(url);
  EXPECT_EQ(url->status, 200) << url->body;
  auto wrong = http.Get("/api/v1/jobs?access_token=not-a-token-of-this-farm");
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 403);

  std::string head;
  auto stream = http.Get(std::string("/api/v1/stream?access_token=") + kToken,
                         [&](const char* data, size_t size) {
                           head.append(data, size);
                           return head.find("retry: ") == std::string::npos;
                         });
  EXPECT_NE(head.find("retry: "), std::string::npos) << head;

  auto action = http.Post("/api/v1/jobs/" + std::to_string(*job) + "/cancel?access_token=" + kToken,
                          "", "application/json");
  ASSERT_TRUE(action);
  EXPECT_EQ(action->status, 401) << "an action's token comes in the header only";
}

// A list of jobs needs no task indices: ?tasks=none leaves them out (their
// count stays), ?tasks=ID keeps them for that job only.
TEST_F(HttpE2ETest, AStreamReaderChoosesWhoseTaskIndicesItGets) {
  auto bad = http_->Get("/api/v1/stream?tasks=bogus");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  EXPECT_NE(bad->body.find("tasks must be all, none or a job id"), std::string::npos) << bad->body;

  // Reads a stream until a job event of `job` with changed tasks arrives (its
  // data); `opened` runs once the reader is subscribed.
  auto first_change = [&](const std::string& query, uint64_t job,
                          const std::function<void()>& opened) {
    std::string received;
    Json found;
    bool open = false;
    httplib::Client client(url_);
    client.set_read_timeout(30, 0);
    client.Get("/api/v1/stream" + query, [&](const char* data, size_t size) {
      received.append(data, size);
      if (!open) {
        open = true;
        opened();
      }
      for (size_t at = received.find("event: job\ndata: "); at != std::string::npos;
           at = received.find("event: job\ndata: ", at + 1)) {
        const size_t start = at + std::string("event: job\ndata: ").size();
        const size_t end = received.find('\n', start);
        if (end == std::string::npos) break;
        Json event = Json::parse(received.substr(start, end - start), nullptr, false);
        if (event.is_object() && event["id"] == std::to_string(job) &&
            event["tasks_changed"].get<int>() > 0) {
          found = event;
          return false;
        }
      }
      return true;
    });
    return found;
  };
  // Each job waits for its release file, made once the reader is subscribed.
  auto waiting_job = [&](const std::string& release) {
    auto job =
        cluster_->submit({"command", "wait", "--frames", "1-3", "--param", "release=" + release});
    EXPECT_TRUE(job) << cluster_->last_cli();
    return job.value_or(0);
  };
  const std::string first_release = cluster_->path("release-first");
  const uint64_t first = waiting_job(first_release);
  Json brief = first_change("?tasks=none", first, [&] { std::ofstream(first_release) << "go"; });
  ASSERT_TRUE(brief.is_object()) << "no change of job " << first << " on the stream";
  EXPECT_TRUE(brief["tasks"].empty()) << brief.dump();

  const std::string second_release = cluster_->path("release-second");
  const uint64_t second = waiting_job(second_release);
  Json full = first_change("?tasks=" + std::to_string(second), second,
                           [&] { std::ofstream(second_release) << "go"; });
  ASSERT_TRUE(full.is_object()) << "no change of job " << second << " on the stream";
  EXPECT_FALSE(full["tasks"].empty()) << full.dump();
}

// A page of jobs reads ?jobs=ID,...: every change of its rows, and only the
// moves (made, changed state, forgotten) of the others; a task of another job
// that ends while its job runs on is not sent.
TEST_F(HttpE2ETest, AStreamReaderOfAFewJobsGetsTheirChangesAndOnlyTheOthersMoves) {
  auto bad = http_->Get("/api/v1/stream?jobs=7,x");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  EXPECT_NE(bad->body.find("jobs must be all, states, none or up to"), std::string::npos)
      << bad->body;

  const std::string other_release = cluster_->path("release-other");
  const std::string listed_release = cluster_->path("release-listed");
  auto other = cluster_->submit(
      {"command", "wait_each", "--frames", "1-2", "--param", "release=" + other_release});
  ASSERT_TRUE(other) << cluster_->last_cli();
  auto listed = cluster_->submit(
      {"command", "wait", "--frames", "1", "--param", "release=" + listed_release});
  ASSERT_TRUE(listed) << cluster_->last_cli();
  ASSERT_TRUE(cluster_->wait_for_running(*other, 2, 30s));
  ASSERT_TRUE(cluster_->wait_for_running(*listed, 1, 30s));

  std::map<std::string, int> events;   // job id -> job events seen
  std::map<std::string, Json> latest;  // job id -> its last job event
  std::optional<uint64_t> made;
  bool open = false;
  httplib::Client client(url_);
  client.set_read_timeout(30, 0);
  std::string received;
  client.Get("/api/v1/stream?tasks=none&jobs=" + std::to_string(*listed), [&](const char* data,
                                                                              size_t size) {
    received.append(data, size);
    if (!open) {
      open = true;
      // One task of the other job ends while it runs on; then the
      // listed job ends; then a new job is made.
      std::ofstream(other_release + ".1") << "go";
      EXPECT_TRUE(wait_until(
          [&] {
            auto [code, states] = get("/api/v1/jobs/" + std::to_string(*other) + "/states");
            return code == 200 && states["status"]["task_states"] == "sr";
          },
          30s))
          << "the other job's first task did not end";
      std::ofstream(listed_release) << "go";
      made = cluster_->submit({"noop", "--frames", "1"});
      EXPECT_TRUE(made) << cluster_->last_cli();
    }
    size_t at = 0;
    const std::string marker = "event: job\ndata: ";
    events.clear();
    while ((at = received.find(marker, at)) != std::string::npos) {
      const size_t start = at + marker.size();
      const size_t end = received.find('\n', start);
      if (end == std::string::npos) break;
      Json event = Json::parse(received.substr(start, end - start), nullptr, false);
      if (event.is_object()) {
        ++events[event["id"].get<std::string>()];
        latest[event["id"].get<std::string>()] = event;
      }
      at = end;
    }
    return !(made && events.count(std::to_string(*made)));
  });
  ASSERT_TRUE(made);
  EXPECT_EQ(events.count(std::to_string(*made)), 1u) << "a new job is a move: " << received;
  // Another job's move is brief: what a list places and filters it by, not
  // its progress; a listed job's change is whole.
  const Json& move = latest[std::to_string(*made)];
  EXPECT_EQ(move["moved"], true) << move.dump();
  EXPECT_EQ(move["job"]["id"], std::to_string(*made)) << move.dump();
  EXPECT_EQ(move["job"]["kind"], "noop") << move.dump();
  EXPECT_TRUE(move["job"].contains("state")) << move.dump();
  EXPECT_TRUE(move["job"].contains("submitted_by")) << move.dump();
  EXPECT_FALSE(move["job"].contains("counts")) << move.dump();
  EXPECT_FALSE(move.contains("tasks_changed")) << move.dump();
  EXPECT_GE(events[std::to_string(*listed)], 1) << "the listed job's end: " << received;
  const Json& whole = latest[std::to_string(*listed)];
  EXPECT_TRUE(whole["job"].contains("counts")) << whole.dump();
  EXPECT_FALSE(whole.contains("moved")) << whole.dump();
  EXPECT_EQ(events.count(std::to_string(*other)), 0u)
      << "another job's task ended while it ran on: not this reader's business\n"
      << received;
  std::ofstream(other_release + ".2") << "go";
}

// A page about the whole farm (workers, limits) reads no job's entries: it
// reloads on the `farm` entry that ends each publish with what changed, and
// what it would have reloaded for (the jobs' entries) came before it.
TEST_F(HttpE2ETest, AStreamReaderOfNoJobsGetsOneFarmEntryAfterEachPublish) {
  const std::string release = cluster_->path("release-none");
  std::optional<uint64_t> job;
  bool open = false;
  std::optional<Json> farm;
  httplib::Client client(url_);
  client.set_read_timeout(30, 0);
  std::string received;
  // A reader of every job beside it: the job's entries it gets come before
  // the same publish's farm entry.
  std::string all_received;
  std::atomic<bool> all_open{false};
  std::atomic<bool> stop_all{false};
  std::thread all_reader([&] {
    httplib::Client all(url_);
    all.set_read_timeout(30, 0);
    all.Get("/api/v1/stream?tasks=none&jobs=all", [&](const char* data, size_t size) {
      all_received.append(data, size);
      all_open = true;
      return !(stop_all && all_received.find("event: farm") != std::string::npos);
    });
    all_open = true;  // (or failed: the asserts below say so)
  });
  EXPECT_TRUE(wait_until([&] { return all_open.load(); }, 30s));
  client.Get("/api/v1/stream?tasks=none&jobs=none", [&](const char* data, size_t size) {
    received.append(data, size);
    if (!open) {
      open = true;
      job = cluster_->submit({"command", "wait", "--frames", "1", "--param", "release=" + release});
      EXPECT_TRUE(job) << cluster_->last_cli();
      if (job) {
        EXPECT_TRUE(cluster_->wait_for_running(*job, 1, 30s));
      }
      std::ofstream(release) << "go";
      if (job) {
        EXPECT_TRUE(cluster_->wait_for_final_state(*job, 30s));
      }
    }
    // Read on until a farm entry of a publish that changed a task.
    const std::string marker = "event: farm\ndata: ";
    for (size_t at = received.find(marker); at != std::string::npos;
         at = received.find(marker, at + 1)) {
      const size_t start = at + marker.size();
      const size_t end = received.find('\n', start);
      if (end == std::string::npos) break;
      Json event = Json::parse(received.substr(start, end - start), nullptr, false);
      if (event.is_object() && event.value("tasks_changed", 0) > 0) farm = event;
    }
    return !(job && farm);
  });
  stop_all = true;
  // The all-jobs reader ends once it has a farm entry and its next data comes
  // (another job's publish).
  auto poke = cluster_->submit({"noop", "--frames", "1"});
  all_reader.join();
  ASSERT_TRUE(job && farm) << received;
  EXPECT_GE(farm->value("jobs_changed", 0), 1) << farm->dump();
  EXPECT_EQ(received.find("event: job"), std::string::npos)
      << "no job's entry for a reader of none:\n"
      << received;
  // Every farm entry comes after the job entries of its publish.
  const size_t first_job = all_received.find("event: job");
  const size_t first_farm = all_received.find("event: farm");
  ASSERT_NE(first_job, std::string::npos) << all_received;
  ASSERT_NE(first_farm, std::string::npos) << all_received;
  EXPECT_LT(first_job, first_farm) << all_received;
  EXPECT_TRUE(poke) << cluster_->last_cli();
}

// A page's reader narrows the other jobs' moves as its list is filtered, and
// to the jobs newer than its top row: a busy farm moves a thousand jobs a
// second, and a page reloads only for one that could come onto it.
TEST_F(HttpE2ETest, AStreamReaderNarrowsTheOtherJobsAsItsListIsFiltered) {
  for (const char* query : {"?newer_than=x", "?state=bogus", "?label=novalue"}) {
    auto bad = http_->Get(std::string("/api/v1/stream") + query);
    ASSERT_TRUE(bad) << query;
    EXPECT_EQ(bad->status, 400) << query;
    EXPECT_TRUE(Json::parse(bad->body, nullptr, false).contains("error")) << bad->body;
  }
  const std::string old_release = cluster_->path("release-old");
  const std::string listed_release = cluster_->path("release-listed");
  auto old_b = cluster_->submit({"command", "wait", "--frames", "1", "--project", "showB",
                                 "--param", "release=" + old_release});
  ASSERT_TRUE(old_b) << cluster_->last_cli();
  auto listed = cluster_->submit({"command", "wait", "--frames", "1", "--project", "showA",
                                  "--param", "release=" + listed_release});
  ASSERT_TRUE(listed) << cluster_->last_cli();
  ASSERT_TRUE(cluster_->wait_for_running(*old_b, 1, 30s));
  ASSERT_TRUE(cluster_->wait_for_running(*listed, 1, 30s));

  std::map<std::string, Json> latest;  // job id -> its last job event
  std::optional<uint64_t> new_a;
  std::optional<uint64_t> new_b;
  bool open = false;
  httplib::Client client(url_);
  client.set_read_timeout(30, 0);
  std::string received;
  const std::string id = std::to_string(*listed);
  client.Get("/api/v1/stream?tasks=none&jobs=" + id + "&project=showB&newer_than=" + id,
             [&](const char* data, size_t size) {
               received.append(data, size);
               if (!open) {
                 open = true;
                 // An older job of the project ends; a newer job of another
                 // project is made; the listed job ends; a newer job of the
                 // project is made (each published after the ones before).
                 std::ofstream(old_release) << "go";
                 EXPECT_TRUE(cluster_->wait_for_final_state(*old_b, 30s));
                 new_a = cluster_->submit({"noop", "--frames", "1", "--project", "showA"});
                 EXPECT_TRUE(new_a) << cluster_->last_cli();
                 std::ofstream(listed_release) << "go";
                 EXPECT_TRUE(cluster_->wait_for_final_state(*listed, 30s));
                 new_b = cluster_->submit({"noop", "--frames", "1", "--project", "showB"});
                 EXPECT_TRUE(new_b) << cluster_->last_cli();
               }
               size_t at = 0;
               const std::string marker = "event: job\ndata: ";
               while ((at = received.find(marker, at)) != std::string::npos) {
                 const size_t start = at + marker.size();
                 const size_t end = received.find('\n', start);
                 if (end == std::string::npos) break;
                 Json event = Json::parse(received.substr(start, end - start), nullptr, false);
                 if (event.is_object()) latest[event["id"].get<std::string>()] = event;
                 at = end;
               }
               const bool listed_ended =
                   latest.count(id) && latest[id]["job"]["state"] == "JOB_SUCCEEDED";
               return !(new_b && latest.count(std::to_string(*new_b)) && listed_ended);
             });
  ASSERT_TRUE(new_a && new_b);
  EXPECT_EQ(latest.count(std::to_string(*new_b)), 1u)
      << "a newer job of the project is a move this reader wants:\n"
      << received;
  EXPECT_EQ(latest[id]["job"]["state"], "JOB_SUCCEEDED")
      << "the listed job comes whatever the filter:\n"
      << received;
  EXPECT_EQ(latest.count(std::to_string(*old_b)), 0u)
      << "an older job (not newer than the top row) is not:\n"
      << received;
  EXPECT_EQ(latest.count(std::to_string(*new_a)), 0u) << "a job of another project is not:\n"
                                                      << received;
}

// http.tls_cert and http.tls_key: the front speaks TLS with that certificate;
// a client that trusts it reads the API, one that does not refuses to, and
// plain HTTP on the port is not answered.
TEST(HttpTlsTest, TheFrontServesTlsWithTheConfiguredCertificate) {
  testing_support::TempDir certs("fh-tls");
  const testing_support::TlsFiles tls =
      testing_support::make_self_signed(certs.path(), "farmhandd");
  ASSERT_FALSE(tls.cert.empty());
  ClusterOptions options;
  options.local_workers = 0;
  options.http_yaml =
      "  listen: 127.0.0.1:0\n  tls_cert: " + tls.cert + "\n  tls_key: " + tls.key + "\n";
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());
  const std::string url = cluster.http_url();
  ASSERT_EQ(url.rfind("https://127.0.0.1:", 0), 0u) << url;

  httplib::Client trusting(url);
  trusting.enable_server_certificate_verification(true);
  trusting.set_ca_cert_path(tls.cert.c_str());
  auto health = trusting.Get("/api/v1/health");
  ASSERT_TRUE(health) << httplib::to_string(health.error());
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(Json::parse(health->body, nullptr, false)["health"]["store_writes"], true);

  httplib::Client untrusting(url);
  untrusting.enable_server_certificate_verification(true);
  auto unverified = untrusting.Get("/api/v1/health");
  EXPECT_FALSE(unverified) << "a certificate no CA vouches for was accepted";

  httplib::Client plain("http://" + url.substr(std::string("https://").size()));
  plain.set_read_timeout(5, 0);
  auto answered = plain.Get("/api/v1/health");
  EXPECT_TRUE(!answered || answered->status != 200) << "plain HTTP was answered on the TLS port";
}

// docs/openapi.yaml is the API's contract: every path it documents is served,
// a GET answers 200 with the body it names, and an operation it marks as
// needing a bearer token refuses a request without one.
TEST_F(HttpE2ETest, TheServerKeepsToItsOpenApiFile) {
  const char* source = std::getenv("FARMHAND_SOURCE_DIR");
  ASSERT_NE(source, nullptr);
  YAML::Node api = YAML::LoadFile(std::string(source) + "/docs/openapi.yaml");
  ASSERT_TRUE(api["paths"].IsMap());
  auto job = cluster_->submit({"noop", "--frames", "1-3"});
  ASSERT_TRUE(job) << cluster_->last_cli();
  int operations = 0;
  for (const auto& path : api["paths"]) {
    std::string url = path.first.as<std::string>();
    if (auto at = url.find("{id}"); at != std::string::npos) {
      url.replace(at, 4, std::to_string(*job));
    }
    if (auto at = url.find("{task}"); at != std::string::npos) url.replace(at, 6, "0");
    if (auto at = url.find("{name}"); at != std::string::npos) url.replace(at, 6, "nuke");
    for (const auto& operation : path.second) {
      const std::string method = operation.first.as<std::string>();
      ++operations;
      if (method == "get" && operation.second["responses"]["200"]["x-farmhand-stream"]) {
        std::string head;
        auto res = http_->Get(url, [&](const char* data, size_t size) {
          head.append(data, size);
          return head.find("retry: ") == std::string::npos;
        });
        EXPECT_NE(head.find("retry: "), std::string::npos) << url << ": " << head;
      } else if (method == "get" && operation.second["responses"]["200"]["x-farmhand-image"]) {
        auto [code, body] = get(url);  // a noop job has no image: one line why
        EXPECT_EQ(code, 404) << url << ": " << body.dump();
        EXPECT_TRUE(body.contains("error")) << url;
      } else if (method == "get") {
        auto [code, body] = get(url);
        EXPECT_EQ(code, 200) << url << ": " << body.dump();
        const std::string field =
            operation.second["responses"]["200"]["x-farmhand-body"].as<std::string>();
        EXPECT_TRUE(body.contains(field)) << url << " has no " << field << ": " << body.dump();
        EXPECT_EQ(body["ok"], true) << url;
      } else {
        ASSERT_EQ(method, "post") << url;
        ASSERT_TRUE(operation.second["security"]) << url << " is an action without a token";
        auto [code, body] = post(url);
        EXPECT_EQ(code, 401) << url << ": " << body.dump();
      }
    }
  }
  EXPECT_GE(operations, 10);
}

// The live stream (Server-Sent Events) shows a job from submit to succeeded
// without asking again, in few events however many tasks it has, and a reader
// resuming from an id the broker cannot continue from is told to reload.
TEST_F(HttpE2ETest, TheLiveStreamFollowsAJobToItsEndAndSaysWhenToReload) {
  std::mutex mutex;
  std::string received;
  std::atomic<bool> stop{false};
  std::thread reader([&] {
    httplib::Client client(url_);
    client.set_read_timeout(60, 0);
    client.Get("/api/v1/stream", [&](const char* data, size_t size) {
      std::lock_guard lock(mutex);
      received.append(data, size);
      return !stop.load();
    });
  });
  auto seen = [&](const std::string& text) {
    std::lock_guard lock(mutex);
    return received.find(text) != std::string::npos;
  };
  ASSERT_TRUE(wait_until([&] { return seen("retry: "); }, 30s)) << "the stream did not open";
  auto job = cluster_->submit({"noop", "--frames", "1-2000", "--name", "streamed"});
  ASSERT_TRUE(job) << cluster_->last_cli();
  EXPECT_TRUE(wait_until([&] { return seen(R"("state":"JOB_SUCCEEDED")"); }, 60s))
      << "the stream never showed the job succeed";
  stop = true;
  // One more event ends the reader: a second job.
  ASSERT_TRUE(cluster_->submit({"noop", "--frames", "1"}));
  reader.join();
  std::string text;
  {
    std::lock_guard lock(mutex);
    text = received;
  }
  size_t events = 0;
  for (size_t at = text.find("event: job"); at != std::string::npos;
       at = text.find("event: job", at + 1)) {
    ++events;
  }
  EXPECT_GE(events, 2u) << text.substr(0, 2000);
  EXPECT_LT(events, 200u) << "2,000 task changes were not coalesced";
  EXPECT_NE(text.find(R"("id":")" + std::to_string(*job) + R"(","job":{)"), std::string::npos);

  // An id from beyond what the broker has sent: reload.
  httplib::Headers resume{{"Last-Event-ID", "999999999"}};
  std::string resumed;
  http_->Get("/api/v1/stream", resume, [&](const char* data, size_t size) {
    resumed.append(data, size);
    return resumed.find("event: reset") == std::string::npos;
  });
  EXPECT_NE(resumed.find("event: reset"), std::string::npos) << resumed;
}

TEST(HttpListenE2ETest, BeyondLoopbackWithoutTlsOrTokensIsRefusedWithOneLine) {
  ClusterOptions options;
  options.local_workers = 0;
  Cluster cluster(options);
  cluster.rewrite_config("");
  // Refused before anything binds: no address but loopback is ever used.
  CliResult refused =
      cluster.run_binary("farmhandd", {"--state-dir", cluster.path("state"), "--local-workers", "0",
                                       "--config", cluster.config_path(), "--http", "0.0.0.0:0"});
  EXPECT_NE(refused.exit_code, 0) << describe(refused);
  EXPECT_NE(refused.err.find("http.listen 0.0.0.0:0 is beyond loopback without TLS"),
            std::string::npos)
      << describe(refused);
  CliResult malformed = cluster.run_binary("farmhandd", {"--http", "localhost"});
  EXPECT_NE(malformed.exit_code, 0);
  EXPECT_NE(malformed.err.find("'localhost' is not HOST:PORT or off: no port"), std::string::npos)
      << describe(malformed);
}

}  // namespace
}  // namespace farmhand::e2e
