// Metrics as a user reads them at /metrics: a BrokerCore (memory store, fake
// clock, recording ports) driven through submit, dispatch and results, and the
// values its Metrics::text() shows; bounded labels under a hostile client;
// `promtool check metrics` on a busy broker's text; and the Grafana dashboard
// (deploy/grafana/farmhand.json) asking only for metrics the text has.
#include "daemon/metrics.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "tests/support/fake_clock.h"
#include "tests/support/memory_store.h"
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <re2/re2.h>
#include <sys/wait.h>

#include "common/logging.h"
#include "common/wire.h"
#include "daemon/broker_core.h"

namespace farmhand::daemon {
namespace {

using testing::FakeClock;
using testing::FaultyStore;
using testing::MemoryStore;

struct RecordingPorts final : ClientPort, WorkerPort {
  void send(const PendingReply& reply) override { replies.push_back(reply.reply); }

  bool send(const std::string& routing_id, const wire::BrokerMessage& msg) override {
    to_workers.emplace_back(routing_id, msg);
    return true;
  }

  std::vector<wire::ClientReply> replies;
  std::vector<std::pair<std::string, wire::BrokerMessage>> to_workers;
};

// The value of one series (`name{labels}` exactly as the text writes it), or
// nullopt when the text has no such series.
std::optional<double> value(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 &&
        line[series.size()] == ' ') {
      return std::stod(line.substr(series.size() + 1));
    }
  }
  return std::nullopt;
}

// How many series of the metric `name` the text has.
size_t series_count(const std::string& text, const std::string& name) {
  std::istringstream in(text);
  std::string line;
  size_t n = 0;
  while (std::getline(in, line)) {
    if (line.rfind(name + "{", 0) == 0 || line.rfind(name + " ", 0) == 0) ++n;
  }
  return n;
}

class MetricsTest : public ::testing::Test {
 protected:
  MetricsTest() : faulty_(disk_) {
    config_.broker.heartbeat_interval = std::chrono::milliseconds(1000);
    config_.broker.lease_ttl = std::chrono::milliseconds(30'000);
    config_.broker.keep_finished = std::chrono::milliseconds(0);
    log_ = common::logger("metrics_test");
    log_->set_level(spdlog::level::off);
    core_ = std::make_unique<BrokerCore>(config_, "/nonexistent/farmhand.db", clock_, faulty_,
                                         ports_, ports_, *log_);
    EXPECT_TRUE(core_->restore());
  }

  wire::ClientReply request(wire::ClientRequest req) {
    req.set_version(common::kProtocolVersion);
    req.set_request_id(++request_id_);
    std::string bytes = req.SerializeAsString();
    core_->on_client("client", false, bytes.data(), bytes.size());
    core_->end_turn();
    for (auto& reply : std::exchange(ports_.replies, {})) {
      if (reply.request_id() == request_id_) return reply;
    }
    ADD_FAILURE() << "no reply to request " << request_id_;
    return {};
  }

  uint64_t submit(uint32_t tasks, const std::string& project = "", const std::string& pool = "") {
    wire::ClientRequest req;
    auto* spec = req.mutable_submit()->mutable_spec();
    spec->set_kind("noop");
    spec->set_tasks(tasks);
    spec->set_project(project);
    spec->set_pool(pool);
    auto reply = request(req);
    EXPECT_TRUE(reply.ok()) << reply.error();
    return reply.submit().job_id();
  }

  void from_worker(const std::string& rid, const wire::WorkerMessage& msg) {
    std::string bytes = msg.SerializeAsString();
    core_->on_worker(rid, bytes.data(), bytes.size());
  }

  void ready(const std::string& rid, uint32_t slots = 4) {
    wire::WorkerMessage msg;
    msg.mutable_ready()->set_version(common::kProtocolVersion);
    msg.mutable_ready()->set_name(rid);
    msg.mutable_ready()->set_slots(slots);
    from_worker(rid, msg);
  }

  void result(const std::string& rid, const wire::Assign& assign, bool ok, double elapsed_s = 2) {
    wire::WorkerMessage msg;
    *msg.mutable_result()->mutable_ref() = assign.ref();
    msg.mutable_result()->set_succeeded(ok);
    msg.mutable_result()->set_attempt(assign.attempt());
    msg.mutable_result()->set_elapsed_s(elapsed_s);
    if (!ok) msg.mutable_result()->set_error("exit 1");
    from_worker(rid, msg);
  }

  std::vector<wire::Assign> assigns() {
    std::vector<wire::Assign> out;
    for (auto& [rid, msg] : std::exchange(ports_.to_workers, {})) {
      if (msg.has_assign()) out.push_back(msg.assign());
    }
    return out;
  }

  // The text once the gauges are refreshed (they are at most once a second).
  std::string refreshed_text() {
    clock_.advance(BrokerCore::kMetricsRefresh);
    core_->end_turn();
    return core_->metrics().text();
  }

  // A farm at work: two workers, jobs of two projects and two pools, running,
  // succeeded, failed and queued tasks, a limit, a bad message, HTTP requests.
  std::string busy_text() {
    config_.limits["nuke"] = 2;
    core_->reload_limits({});
    ready("render01");
    wire::WorkerMessage gpu;
    gpu.mutable_ready()->set_version(common::kProtocolVersion);
    gpu.mutable_ready()->set_name("gpu01");
    gpu.mutable_ready()->set_slots(2);
    gpu.mutable_ready()->add_tags("gpu");
    from_worker("gpu01", gpu);
    core_->end_turn();
    submit(5, "alpha");
    submit(3, "beta", "gpu");
    wire::ClientRequest limited;
    limited.mutable_submit()->mutable_spec()->set_kind("noop");
    limited.mutable_submit()->mutable_spec()->set_tasks(4);
    limited.mutable_submit()->mutable_spec()->add_limits("nuke");
    EXPECT_TRUE(request(limited).ok());
    auto mail = std::exchange(ports_.to_workers, {});
    int results = 0;
    for (const auto& [rid, msg] : mail) {
      if (msg.has_assign() && results++ < 2) result(rid, msg.assign(), results == 1);
    }
    EXPECT_EQ(results, 6);  // 4 on render01, 2 on gpu01
    const char garbage[] = "\x01\x02not a worker message";
    core_->on_worker("render01", garbage, sizeof garbage);
    core_->end_turn();
    core_->metrics().count_http_request("/api/v1/jobs", 200);
    core_->metrics().count_http_request("/metrics", 200);
    core_->metrics().count_http_request("/api/v1/jobs/{id}", 404);
    return refreshed_text();
  }

  common::Config config_;
  FakeClock clock_;
  MemoryStore disk_;
  FaultyStore faulty_;
  RecordingPorts ports_;
  std::shared_ptr<spdlog::logger> log_;
  std::unique_ptr<BrokerCore> core_;
  uint64_t request_id_ = 0;
};

TEST_F(MetricsTest, DispatchesResultsAndTaskStatesShowAsTheFarmWorks) {
  const std::string before = refreshed_text();
  EXPECT_EQ(value(before, "farmhand_dispatches_total"), 0);
  EXPECT_EQ(value(before, "farmhand_tasks{state=\"queued\"}"), 0);
  EXPECT_EQ(value(before, "farmhand_workers{state=\"idle\"}"), 0);

  ready("render01");
  core_->end_turn();
  submit(5);  // a worker of 4 slots: 4 run, 1 waits
  auto sent = assigns();
  ASSERT_EQ(sent.size(), 4u);
  std::string text = refreshed_text();
  EXPECT_EQ(value(text, "farmhand_dispatches_total"), 4);
  EXPECT_EQ(value(text, "farmhand_tasks{state=\"running\"}"), 4);
  EXPECT_EQ(value(text, "farmhand_tasks{state=\"queued\"}"), 1);
  EXPECT_EQ(value(text, "farmhand_jobs{state=\"running\"}"), 1);
  EXPECT_EQ(value(text, "farmhand_workers{state=\"busy\"}"), 1);
  EXPECT_EQ(value(text, "farmhand_slots"), 4);
  EXPECT_EQ(value(text, "farmhand_slots_busy"), 4);
  EXPECT_EQ(value(text, "farmhand_pool_running_tasks{pool=\"any\"}"), 4);
  EXPECT_EQ(value(text, "farmhand_project_running_tasks{project=\"none\"}"), 4);
  EXPECT_EQ(value(text, "farmhand_task_wait_seconds_count{kind=\"noop\"}"), 4);

  result("render01", sent[0], true, 2);
  result("render01", sent[1], true, 2);
  result("render01", sent[2], false, 40);
  core_->end_turn();  // the fifth task goes out on a freed slot
  text = refreshed_text();
  EXPECT_EQ(value(text, "farmhand_dispatches_total"), 5);
  EXPECT_EQ(value(text, "farmhand_results_total{outcome=\"succeeded\"}"), 2);
  EXPECT_EQ(value(text, "farmhand_results_total{outcome=\"failed\"}"), 1);
  EXPECT_EQ(value(text, "farmhand_tasks{state=\"succeeded\"}"), 2);
  EXPECT_EQ(value(text, "farmhand_tasks{state=\"running\"}"), 2);
  EXPECT_EQ(value(text, "farmhand_tasks{state=\"queued\"}"), 1);  // the failed one backs off
  EXPECT_EQ(value(text, "farmhand_task_run_seconds_count{kind=\"noop\"}"), 3);
  EXPECT_EQ(value(text, "farmhand_task_run_seconds_sum{kind=\"noop\"}"), 44);
  EXPECT_EQ(value(text, "farmhand_task_run_seconds_bucket{kind=\"noop\",le=\"5\"}"), 2);

  // A result for a lease no longer current is stale.
  result("render01", sent[0], true);
  core_->end_turn();
  EXPECT_EQ(value(core_->metrics().text(), "farmhand_results_total{outcome=\"stale\"}"), 1);
  EXPECT_GT(*value(core_->metrics().text(), "farmhand_store_commit_seconds_count"), 0);
  EXPECT_GT(*value(core_->metrics().text(), "farmhand_store_flush_seconds_count"), 0);
}

TEST_F(MetricsTest, WaitTimeIsFromSubmissionToTheFirstDispatch) {
  submit(2);
  clock_.advance(std::chrono::seconds(20));
  ready("render01");
  core_->end_turn();
  ASSERT_EQ(assigns().size(), 2u);
  const std::string text = core_->metrics().text();
  EXPECT_EQ(value(text, "farmhand_task_wait_seconds_count{kind=\"noop\"}"), 2);
  EXPECT_EQ(value(text, "farmhand_task_wait_seconds_sum{kind=\"noop\"}"), 40);
  EXPECT_EQ(value(text, "farmhand_task_wait_seconds_bucket{kind=\"noop\",le=\"10\"}"), 0);
  EXPECT_EQ(value(text, "farmhand_task_wait_seconds_bucket{kind=\"noop\",le=\"30\"}"), 2);
}

TEST_F(MetricsTest, WorkersByStateAndLimits) {
  config_.limits["nuke"] = 3;
  core_->reload_limits({});
  ready("render01");
  ready("render02");
  ready("render03");
  core_->end_turn();
  wire::ClientRequest drain;
  drain.mutable_worker_control()->set_name("render02");
  drain.mutable_worker_control()->set_action(wire::WorkerControlRequest::DRAIN);
  ASSERT_TRUE(request(drain).ok());
  wire::ClientRequest limited;
  limited.mutable_submit()->mutable_spec()->set_kind("noop");
  limited.mutable_submit()->mutable_spec()->set_tasks(5);
  limited.mutable_submit()->mutable_spec()->add_limits("nuke");
  ASSERT_TRUE(request(limited).ok());
  ASSERT_EQ(assigns().size(), 3u);
  // render03 falls silent while the others beat: its liveness (3 beats) runs out.
  wire::WorkerMessage beat;
  beat.mutable_heartbeat();
  for (int i = 0; i < 4; ++i) {
    clock_.advance(std::chrono::seconds(1));
    from_worker("render01", beat);
    from_worker("render02", beat);
    core_->end_turn();
  }

  const std::string text = refreshed_text();
  EXPECT_EQ(value(text, "farmhand_limit_capacity{limit=\"nuke\"}"), 3);
  EXPECT_EQ(value(text, "farmhand_limit_in_use{limit=\"nuke\"}"), 3);
  EXPECT_EQ(value(text, "farmhand_limit_waiting_jobs{limit=\"nuke\"}"), 1);
  EXPECT_EQ(value(text, "farmhand_workers{state=\"draining\"}"), 1);
  EXPECT_EQ(value(text, "farmhand_workers{state=\"lost\"}"), 1);
  EXPECT_EQ(value(text, "farmhand_workers{state=\"busy\"}"), 1);
  EXPECT_EQ(value(text, "farmhand_workers{state=\"idle\"}"), 0);
  EXPECT_EQ(value(text, "farmhand_workers{state=\"disabled\"}"), 0);
  EXPECT_EQ(value(text, "farmhand_slots"), 8);  // the two live workers'
}

TEST_F(MetricsTest, InventedProjectsAndPoolsCannotGrowTheOutput) {
  for (int i = 0; i < 150; ++i) {
    submit(1, "project" + std::to_string(i), "pool" + std::to_string(i));
  }
  const std::string text = refreshed_text();
  EXPECT_EQ(series_count(text, "farmhand_project_running_tasks"), Metrics::kMaxLabelValues);
  EXPECT_EQ(series_count(text, "farmhand_pool_running_tasks"), Metrics::kMaxLabelValues);
  EXPECT_EQ(value(text, "farmhand_project_running_tasks{project=\"other\"}"), 0);
  EXPECT_EQ(value(text, "farmhand_jobs{state=\"queued\"}"), 150);

  for (int i = 0; i < 150; ++i) {
    core_->metrics().count_http_request("/invented/" + std::to_string(i), 404);
  }
  const std::string after = core_->metrics().text();
  EXPECT_EQ(series_count(after, "farmhand_http_requests_total"), Metrics::kMaxLabelValues + 1);
  EXPECT_EQ(value(after, "farmhand_http_requests_total{code=\"404\",route=\"other\"}"), 50);
}

TEST_F(MetricsTest, TheLargestKeepTheirSeriesAndTheRestAreSummedUnderOther) {
  prometheus::Registry registry;
  auto& family = prometheus::BuildGauge().Name("g").Help("h").Register(registry);
  BoundedGauges gauges(family, "project", 3);
  gauges.set({{"a", 1}, {"b", 5}, {"c", 2}, {"d", 7}});
  gauges.set({{"a", 1}, {"b", 5}, {"c", 2}, {"d", 7}, {"e", 1}});
  std::map<std::string, double> seen;
  for (const auto& f : registry.Collect()) {
    for (const auto& m : f.metric) seen[m.label.at(0).value] = m.gauge.value;
  }
  EXPECT_EQ(seen, (std::map<std::string, double>{{"b", 5}, {"d", 7}, {"other", 4}}));
  gauges.set({{"a", 1}});  // gone series are removed
  seen.clear();
  for (const auto& f : registry.Collect()) {
    for (const auto& m : f.metric) seen[m.label.at(0).value] = m.gauge.value;
  }
  EXPECT_EQ(seen, (std::map<std::string, double>{{"a", 1}}));
}

TEST_F(MetricsTest, HttpRequestsCountFromManyThreadsWhileTheTextIsRead) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 1000; ++i) {
        core_->metrics().count_http_request(t % 2 ? "/api/v1/jobs" : "/metrics", 200);
        if (i % 100 == 0) {
          EXPECT_FALSE(core_->metrics().text().empty());
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  const std::string text = core_->metrics().text();
  EXPECT_EQ(value(text, "farmhand_http_requests_total{code=\"200\",route=\"/api/v1/jobs\"}"), 2000);
  EXPECT_EQ(value(text, "farmhand_http_requests_total{code=\"200\",route=\"/metrics\"}"), 2000);
}

TEST_F(MetricsTest, FailedCommitsAndBadMessagesAreCounted) {
  submit(1);
  faulty_.fail_writes();
  wire::ClientRequest req;
  req.mutable_submit()->mutable_spec()->set_kind("noop");
  req.mutable_submit()->mutable_spec()->set_tasks(1);
  EXPECT_FALSE(request(req).ok());
  const char garbage[] = "\xff\xfe not protobuf";
  core_->on_client("client", false, garbage, sizeof garbage);
  core_->end_turn();
  const std::string text = core_->metrics().text();
  EXPECT_EQ(value(text, "farmhand_store_errors_total{op=\"commit\"}"), 1);
  EXPECT_EQ(value(text, "farmhand_store_errors_total{op=\"flush\"}"), 0);
  EXPECT_EQ(value(text, "farmhand_bad_messages_total"), 1);
}

TEST_F(MetricsTest, APublishIsTimedToItsFirstOutput) {
  char dir_template[] = "/tmp/fhmetXXXXXX";
  const std::string dir = mkdtemp(dir_template);
  { std::ofstream(dir + "/plate.exr") << "not read by the broker"; }
  auto loaded = common::load_config_text(
      "rules:\n"
      "  - name: thumbs\n"
      "    match: { path: \"*.exr\" }\n"
      "    jobs:\n"
      "      thumb: { kind: thumbnail, output: \"" +
          dir +
          "/{name}.jpg\" }\n"
          "      proxy: { kind: thumbnail, output: \"" +
          dir + "/{name}.proxy.jpg\" }\n",
      "<test>");
  ASSERT_TRUE(loaded) << loaded.error().reason;
  config_.rules = loaded->rules;
  wire::ClientRequest req;
  req.mutable_publish()->set_path(dir + "/plate.exr");
  auto reply = request(req);
  ASSERT_TRUE(reply.ok()) << reply.error();
  ASSERT_EQ(reply.publish().job_ids_size(), 2);
  EXPECT_EQ(value(core_->metrics().text(), "farmhand_publishes_total"), 1);

  clock_.advance(std::chrono::milliseconds(1500));
  ready("render01");
  core_->end_turn();
  auto sent = assigns();
  std::filesystem::remove_all(dir);
  ASSERT_EQ(sent.size(), 2u);
  result("render01", sent[0], true);
  core_->end_turn();
  result("render01", sent[1], true);  // the second output does not count again
  core_->end_turn();
  const std::string text = core_->metrics().text();
  EXPECT_EQ(value(text, "farmhand_publish_first_output_seconds_count"), 1);
  EXPECT_EQ(value(text, "farmhand_publish_first_output_seconds_sum"), 1.5);
  EXPECT_EQ(value(text, "farmhand_publish_first_output_seconds_bucket{le=\"1\"}"), 0);
  EXPECT_EQ(value(text, "farmhand_publish_first_output_seconds_bucket{le=\"2\"}"), 1);
}

// promtool is the judge of the format (names, HELP, TYPE, histograms); CI
// installs it (Debian's prometheus package), so its absence is a failure.
TEST_F(MetricsTest, PromtoolAcceptsTheTextOfABusyBroker) {
  const std::string text = busy_text();
  ASSERT_GT(value(text, "farmhand_dispatches_total").value_or(0), 0);
  const char* promtool = "/usr/bin/promtool";
  ASSERT_TRUE(std::filesystem::exists(promtool))
      << "promtool not found at " << promtool << " (Debian package prometheus)";
  const std::string out_path =
      (std::filesystem::temp_directory_path() / ("fh-promtool-" + std::to_string(getpid())))
          .string();
  const std::string command = std::string(promtool) + " check metrics > " + out_path + " 2>&1";
  FILE* pipe = popen(command.c_str(), "w");
  ASSERT_NE(pipe, nullptr);
  fwrite(text.data(), 1, text.size(), pipe);
  const int status = pclose(pipe);
  std::ifstream in(out_path);
  const std::string said((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::filesystem::remove(out_path);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "promtool check metrics failed:\n"
                                                             << said << "\non:\n"
                                                             << text;
  EXPECT_EQ(said, "") << "promtool found problems:\n" << said;
}

// Every metric the dashboard's queries name is one the broker exposes.
TEST_F(MetricsTest, TheGrafanaDashboardAsksOnlyForExposedMetrics) {
  const char* source = std::getenv("FARMHAND_SOURCE_DIR");
  ASSERT_NE(source, nullptr);
  std::ifstream in(std::string(source) + "/deploy/grafana/farmhand.json");
  ASSERT_TRUE(in) << "deploy/grafana/farmhand.json missing";
  nlohmann::json dashboard;
  ASSERT_NO_THROW(dashboard = nlohmann::json::parse(in));

  std::set<std::string> exposed;
  std::istringstream text(busy_text());
  std::string line;
  while (std::getline(text, line)) {
    std::string name;
    std::string type;
    if (!RE2::FullMatch(line, R"(# TYPE (\w+) (\w+))", &name, &type)) continue;
    exposed.insert(name);
    if (type == "histogram") {
      for (const char* suffix : {"_bucket", "_sum", "_count"}) exposed.insert(name + suffix);
    }
  }

  bool uses_input = false;
  for (const auto& input : dashboard.value("__inputs", nlohmann::json::array())) {
    uses_input |= input.value("name", "") == "DS_PROMETHEUS";
  }
  EXPECT_TRUE(uses_input) << "the dashboard has no DS_PROMETHEUS input";

  size_t exprs = 0;
  std::set<std::string> used;
  std::function<void(const nlohmann::json&)> walk = [&](const nlohmann::json& node) {
    if (node.is_object()) {
      for (const auto& [key, child] : node.items()) {
        if (key == "expr" && child.is_string()) {
          ++exprs;
          const std::string expr = child.get<std::string>();
          static const RE2 kName(R"((farmhand_\w+))");
          re2::StringPiece rest(expr);
          std::string name;
          while (RE2::FindAndConsume(&rest, kName, &name)) used.insert(name);
        }
        walk(child);
      }
    } else if (node.is_array()) {
      for (const auto& child : node) walk(child);
    }
  };
  walk(dashboard);
  EXPECT_GE(exprs, 10u);
  for (const std::string& name : used) {
    EXPECT_TRUE(exposed.count(name))
        << "the dashboard asks for " << name << ", which /metrics does not expose";
  }
  // Every panel's datasource is the input.
  for (const auto& panel : dashboard.at("panels")) {
    if (panel.value("type", "") == "row") continue;
    EXPECT_EQ(panel.at("datasource").at("uid"), "${DS_PROMETHEUS}") << panel.value("title", "");
  }
}

}  // namespace
}  // namespace farmhand::daemon
