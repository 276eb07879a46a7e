// End-to-end tests of webhooks (issue 12, events out) on the real binaries,
// with a real HTTP receiver on 127.0.0.1 in the test (cpp-httplib's server):
// every configured event arrives signed (HMAC-SHA256 of the body, verified
// here with OpenSSL), a receiver that is down for a while gets everything once
// it is up, in order per job, a broker killed -9 mid-delivery loses none
// (duplicates carry the same delivery id), a delivery too old is given up and
// `farmhand hooks` says so, and a rule that matches a farm event runs a job.
// Every wait polls a condition with a deadline.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/cluster.h"
#include "tests/support/temp_dir.h"
#include "tests/support/tls_cert.h"
#include <gtest/gtest.h>
#include <httplib.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

namespace farmhand::e2e {
namespace {

using namespace std::chrono_literals;

constexpr auto kLimit = 120s;

std::string hmac_hex(const std::string& key, const std::string& body) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(body.data()), body.size(), mac, &len);
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out += kHex[mac[i] >> 4];
    out += kHex[mac[i] & 15];
  }
  return out;
}

struct Delivery {
  std::string path;
  std::string event;  // X-Farmhand-Event
  std::string id;     // X-Farmhand-Delivery
  std::string signature;
  std::string body;
  Json json;
};

// An HTTP receiver on 127.0.0.1 and a free port, which can go down and come
// back on the same port, and can hold requests until released; over TLS with
// `tls`'s certificate when given.
class Receiver {
 public:
  explicit Receiver(testing_support::TlsFiles tls = {}) : tls_(std::move(tls)) {
    start_server(/*port=*/0);
  }

  ~Receiver() {
    release();
    stop();
  }

  int port() const { return port_; }

  std::string url(const std::string& path) const {
    return (tls_.cert.empty() ? "http" : "https") + std::string("://127.0.0.1:") +
           std::to_string(port_) + path;
  }

  void stop() {
    if (!server_) return;
    server_->stop();
    if (thread_.joinable()) thread_.join();
    server_.reset();
  }

  void start() { start_server(port_); }

  // Requests wait (unanswered) until release().
  void hold() {
    std::lock_guard lock(mu_);
    held_ = true;
  }

  void release() {
    std::lock_guard lock(mu_);
    held_ = false;
    cv_.notify_all();
  }

  void set_status(int status) { status_ = status; }

  std::vector<Delivery> deliveries() {
    std::lock_guard lock(mu_);
    return deliveries_;
  }

  size_t waiting() {
    std::lock_guard lock(mu_);
    return waiting_;
  }

 private:
  void start_server(int port) {
    if (tls_.cert.empty()) {
      server_ = std::make_unique<httplib::Server>();
    } else {
      server_ = std::make_unique<httplib::SSLServer>(tls_.cert.c_str(), tls_.key.c_str());
      ASSERT_TRUE(server_->is_valid()) << "TLS server with " << tls_.cert;
    }
    server_->Post(".*", [this](const httplib::Request& req, httplib::Response& res) {
      std::unique_lock lock(mu_);
      ++waiting_;
      cv_.wait(lock, [&] { return !held_; });
      --waiting_;
      if (status_ >= 200 && status_ < 300) {
        Delivery d;
        d.path = req.path;
        d.event = req.get_header_value("X-Farmhand-Event");
        d.id = req.get_header_value("X-Farmhand-Delivery");
        d.signature = req.get_header_value("X-Farmhand-Signature");
        d.body = req.body;
        d.json = Json::parse(req.body, nullptr, false);
        deliveries_.push_back(std::move(d));
      }
      res.status = status_;
      res.set_content("ok", "text/plain");
    });
    if (port == 0) {
      port_ = server_->bind_to_any_port("127.0.0.1");
    } else {
      ASSERT_TRUE(server_->bind_to_port("127.0.0.1", port)) << "port " << port << " taken";
    }
    ASSERT_GT(port_, 0);
    thread_ = std::thread([this] { server_->listen_after_bind(); });
    ASSERT_TRUE(wait_until([&] { return server_->is_running(); }, 10s));
  }

  testing_support::TlsFiles tls_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  bool held_ = false;
  size_t waiting_ = 0;
  std::atomic<int> status_{200};
  std::vector<Delivery> deliveries_;
};

const char* kCommands =
    "  ok:\n"
    "    argv: [/bin/true]\n"
    "  fail:\n"
    "    argv: [/bin/false]\n"
    "  wait:\n"
    "    argv: [/bin/sleep, '60']\n"
    "  note:\n"
    "    argv: [/bin/sh, -c, 'echo \"$1 $2\" >> \"$0\"', \"{out}\", \"{id}\", \"{state}\"]\n"
    "    params:\n"
    "      out: {pattern: '^/tmp/[A-Za-z0-9_./-]+$'}\n"
    "      id: {pattern: '^[0-9]+$'}\n"
    "      state: {pattern: '^[a-z]+$'}\n";

ClusterOptions options_with(const std::string& hooks_yaml) {
  ClusterOptions options;
  options.commands_yaml = kCommands;
  options.extra_yaml = hooks_yaml;
  return options;
}

// Deliveries of one event about one job.
std::vector<Delivery> of(const std::vector<Delivery>& all, const std::string& event, uint64_t job) {
  std::vector<Delivery> out;
  for (const auto& d : all) {
    if (d.event == event && d.json.contains("job") && d.json["job"]["id"] == job) out.push_back(d);
  }
  return out;
}

bool has(Receiver& receiver, const std::string& event, uint64_t job) {
  return !of(receiver.deliveries(), event, job).empty();
}

TEST(HooksTest, EveryConfiguredEventIsDeliveredSignedWithItsHooksSecret) {
  Receiver receiver;
  auto options = options_with("");
  options.workers.emplace_back("standalone-1");
  Cluster cluster(options);
  const std::string secret_file = cluster.path("tracker.secret");
  std::ofstream(secret_file) << "s3cret-from-a-file\n";
  cluster.rewrite_config(
      "hooks:\n"
      "  - name: all\n"
      "    url: " +
      receiver.url("/all") +
      "\n"
      "    secret: 'top secret'\n"
      "    events: [job.succeeded, job.failed, job.cancelled, task.failed, task.dead,\n"
      "             worker.lost, publish.processed]\n"
      "  - url: " +
      receiver.url("/tracker") +
      "\n"
      "    secret_file: " +
      secret_file +
      "\n"
      "    events: [job.succeeded]\n");
  ASSERT_TRUE(cluster.start());

  auto ok = cluster.submit(
      {"command", "ok", "--frames", "1-2", "--name", "comp sh010", "--label", "shot=sh010"});
  auto bad = cluster.submit({"command", "fail", "--frames", "1", "--max-attempts", "2"});
  ASSERT_TRUE(ok && bad) << cluster.last_cli();
  ASSERT_TRUE(cluster.wait_for_final_state(*ok, kLimit));
  ASSERT_TRUE(cluster.wait_for_final_state(*bad, kLimit));
  auto held = cluster.submit({"command", "wait", "--frames", "1"});
  ASSERT_TRUE(held) << cluster.last_cli();
  ASSERT_TRUE(cluster.cli_json({"cancel", std::to_string(*held)})) << cluster.last_cli();
  std::ofstream(cluster.path("plate.txt")) << "x";
  ASSERT_TRUE(cluster.cli_json({"publish", cluster.path("plate.txt")})) << cluster.last_cli();
  cluster.kill_worker(0, SIGKILL);

  ASSERT_TRUE(wait_until(
      [&] {
        auto all = receiver.deliveries();
        auto count = [&](const std::string& event) {
          return std::count_if(all.begin(), all.end(), [&](const Delivery& d) {
            return d.path == "/all" && d.event == event;
          });
        };
        return has(receiver, "job.succeeded", *ok) && has(receiver, "job.failed", *bad) &&
               has(receiver, "task.dead", *bad) && has(receiver, "task.failed", *bad) &&
               count("publish.processed") > 0 && count("worker.lost") > 0 &&
               has(receiver, "job.cancelled", *held);
      },
      kLimit))
      << receiver.deliveries().size() << " deliveries";
  auto stats = cluster.cli_json({"hooks"});
  ASSERT_TRUE(wait_until(
      [&] {
        stats = cluster.cli_json({"hooks"});
        return stats && (*stats)[1]["delivered"] == 1 && (*stats)[0]["pending"] == 0;
      },
      kLimit))
      << cluster.last_cli();

  std::set<std::string> ids;
  for (const Delivery& d : receiver.deliveries()) {
    SCOPED_TRACE(d.body);
    ASSERT_FALSE(d.json.is_discarded());
    const std::string key = d.path == "/all" ? "top secret" : "s3cret-from-a-file";
    EXPECT_EQ(d.signature, "sha256=" + hmac_hex(key, d.body));
    EXPECT_EQ(d.json["event"], d.event);
    EXPECT_EQ(d.json["delivery_id"], d.id);
    EXPECT_TRUE(ids.insert(d.id).second) << "one delivery id per delivery";
    if (d.path == "/tracker") {
      EXPECT_EQ(d.event, "job.succeeded");
    }
  }
  auto succeeded = of(receiver.deliveries(), "job.succeeded", *ok);
  ASSERT_EQ(succeeded.size(), 2u);  // one per hook
  const Json& job = succeeded[0].json["job"];
  EXPECT_EQ(job["name"], "comp sh010");
  EXPECT_EQ(job["state"], "succeeded");
  EXPECT_EQ(job["labels"]["shot"], "sh010");
  EXPECT_EQ(job["tasks"]["succeeded"], 2);
  EXPECT_EQ(job["tasks"]["total"], 2);
  auto dead = of(receiver.deliveries(), "task.dead", *bad);
  ASSERT_FALSE(dead.empty());
  EXPECT_EQ(dead[0].json["task"]["index"], 0);
  EXPECT_EQ((*stats)[0]["name"], "all");
  EXPECT_EQ((*stats)[1]["name"], "hook-2");
  EXPECT_EQ((*stats)[0]["failed"], 0);
}

// An https receiver (a tracker behind a studio's own CA): a hook whose
// ca_file trusts its certificate delivers, signed; one that only trusts the
// system's CAs delivers nothing, and `farmhand hooks` says why.
TEST(HooksTest, AnHttpsReceiverIsReachedThroughTheHooksCaFileAndRefusedWithoutIt) {
  testing_support::TempDir certs("fh-tls");
  const testing_support::TlsFiles tls = testing_support::make_self_signed(certs.path(), "tracker");
  ASSERT_FALSE(tls.cert.empty());
  Receiver receiver(tls);
  Cluster cluster(
      options_with("hooks:\n"
                   "  - name: trusted\n"
                   "    url: " +
                   receiver.url("/trusted") +
                   "\n"
                   "    secret: s1\n"
                   "    ca_file: " +
                   tls.cert +
                   "\n"
                   "    events: [job.succeeded]\n"
                   "  - name: untrusted\n"
                   "    url: " +
                   receiver.url("/untrusted") +
                   "\n"
                   "    secret: s2\n"
                   "    events: [job.succeeded]\n"));
  ASSERT_TRUE(cluster.start());
  auto ok = cluster.submit({"command", "ok", "--frames", "1"});
  ASSERT_TRUE(ok) << cluster.last_cli();
  ASSERT_TRUE(wait_until([&] { return has(receiver, "job.succeeded", *ok); }, kLimit));
  std::optional<Json> stats;
  ASSERT_TRUE(wait_until(
      [&] {
        stats = cluster.cli_json({"hooks"});
        return stats && (*stats)[0]["delivered"] == 1 && (*stats)[1]["pending"] == 1 &&
               !(*stats)[1]["oldest_pending"]["last_error"].get<std::string>().empty();
      },
      kLimit))
      << cluster.last_cli();
  const std::string why = (*stats)[1]["oldest_pending"]["last_error"];
  EXPECT_NE(why.find("ssl"), std::string::npos) << why;
  for (const Delivery& d : receiver.deliveries()) {
    EXPECT_EQ(d.path, "/trusted") << "delivered to a receiver it does not trust";
    EXPECT_EQ(d.signature, "sha256=" + hmac_hex("s1", d.body));
  }
}

TEST(HooksTest, ReceiverDownForAWhileThenUpGetsEverythingInOrderPerJob) {
  Receiver receiver;
  receiver.stop();
  Cluster cluster(
      options_with("hooks:\n"
                   "  - url: " +
                   receiver.url("/farm") +
                   "\n"
                   "    secret: k\n"
                   "    backoff_base_s: 0.05\n"
                   "    backoff_max_s: 0.3\n"
                   "    events: [task.failed, task.dead, job.failed, job.succeeded]\n"));
  ASSERT_TRUE(cluster.start());
  std::vector<uint64_t> failing;
  std::vector<uint64_t> passing;
  for (int i = 0; i < 3; ++i) {
    auto bad = cluster.submit({"command", "fail", "--frames", "1", "--max-attempts", "3"});
    auto ok = cluster.submit({"command", "ok", "--frames", "1"});
    ASSERT_TRUE(bad && ok) << cluster.last_cli();
    failing.push_back(*bad);
    passing.push_back(*ok);
  }
  for (uint64_t job : failing) ASSERT_TRUE(cluster.wait_for_final_state(job, kLimit));
  for (uint64_t job : passing) ASSERT_TRUE(cluster.wait_for_final_state(job, kLimit));
  // Down: the outbox holds them and says why.
  std::optional<Json> stats;
  ASSERT_TRUE(wait_until(
      [&] {
        stats = cluster.cli_json({"hooks"});
        return stats && (*stats)[0]["pending"] >= 9 &&
               !(*stats)[0]["oldest_pending"]["last_error"].get<std::string>().empty();
      },
      kLimit))
      << cluster.last_cli();
  EXPECT_EQ((*stats)[0]["delivered"], 0);

  receiver.start();
  ASSERT_TRUE(wait_until(
      [&] {
        for (uint64_t job : failing) {
          if (!has(receiver, "job.failed", job)) return false;
        }
        for (uint64_t job : passing) {
          if (!has(receiver, "job.succeeded", job)) return false;
        }
        auto s = cluster.cli_json({"hooks"});
        return s && (*s)[0]["pending"] == 0;
      },
      kLimit));
  const auto all = receiver.deliveries();
  for (uint64_t job : failing) {
    SCOPED_TRACE("job " + std::to_string(job));
    // The order they arrived in (first arrival of each delivery).
    std::vector<std::string> order;
    std::set<std::string> seen;
    for (const auto& d : all) {
      if (d.json["job"]["id"] == job && seen.insert(d.id).second) order.push_back(d.event);
    }
    ASSERT_GE(order.size(), 3u);
    EXPECT_EQ(order.back(), "job.failed");
    EXPECT_EQ(order[order.size() - 2], "task.dead");
    for (size_t i = 0; i + 2 < order.size(); ++i) EXPECT_EQ(order[i], "task.failed");
  }
}

TEST(HooksTest, BrokerKilledMidDeliveryLosesNoneAndResendsUnderTheSameId) {
  Receiver receiver;
  receiver.hold();
  Cluster cluster(
      options_with("hooks:\n"
                   "  - url: " +
                   receiver.url("/farm") +
                   "\n"
                   "    secret: k\n"
                   "    backoff_base_s: 0.05\n"
                   "    backoff_max_s: 0.3\n"
                   "    events: [job.succeeded]\n"));
  ASSERT_TRUE(cluster.start());
  std::vector<uint64_t> jobs;
  for (int i = 0; i < 4; ++i) {
    auto job = cluster.submit({"command", "ok", "--frames", "1"});
    ASSERT_TRUE(job) << cluster.last_cli();
    jobs.push_back(*job);
  }
  for (uint64_t job : jobs) ASSERT_TRUE(cluster.wait_for_final_state(job, kLimit));
  // Mid-delivery: the receiver has the requests and has not answered.
  ASSERT_TRUE(wait_until([&] { return receiver.waiting() >= 1; }, kLimit));
  cluster.kill_broker(SIGKILL);
  // The held requests are now answered (200) to a broker that is gone.
  receiver.release();
  ASSERT_TRUE(cluster.restart_broker());
  ASSERT_TRUE(wait_until(
      [&] {
        return std::all_of(jobs.begin(), jobs.end(),
                           [&](uint64_t job) { return has(receiver, "job.succeeded", job); });
      },
      kLimit));
  ASSERT_TRUE(wait_until(
      [&] {
        auto s = cluster.cli_json({"hooks"});
        return s && (*s)[0]["pending"] == 0;
      },
      kLimit));
  for (uint64_t job : jobs) {
    std::set<std::string> ids;
    for (const auto& d : of(receiver.deliveries(), "job.succeeded", job)) ids.insert(d.id);
    EXPECT_EQ(ids.size(), 1u) << "job " << job << ": a duplicate carries the same delivery id";
  }
}

TEST(HooksTest, DeliveryTooOldIsGivenUpAndHooksSaysSo) {
  Receiver receiver;
  receiver.set_status(503);
  Cluster cluster(
      options_with("hooks:\n"
                   "  - name: tracker\n"
                   "    url: " +
                   receiver.url("/farm") +
                   "\n"
                   "    secret: k\n"
                   "    backoff_base_s: 0.05\n"
                   "    backoff_max_s: 0.1\n"
                   "    give_up_after_s: 0.5\n"
                   "    events: [job.succeeded]\n"));
  ASSERT_TRUE(cluster.start());
  auto job = cluster.submit({"command", "ok", "--frames", "1"});
  ASSERT_TRUE(job && cluster.wait_for_final_state(*job, kLimit));
  ASSERT_TRUE(wait_until(
      [&] {
        auto r = cluster.run_cli({"hooks", "--json"});
        auto s = Json::parse(r.out, nullptr, false);
        return r.exit_code == 1 && !s.is_discarded() && s[0]["failed"] == 1 &&
               s[0]["pending"] == 0 && s[0]["last_failed"]["last_error"] == "http 503";
      },
      kLimit))
      << cluster.last_cli();
  auto text = cluster.run_cli({"hooks"});
  EXPECT_NE(text.out.find("given up:"), std::string::npos) << describe(text);
  EXPECT_NE(read_file(cluster.broker_log_path()).find("hook delivery given up hook=tracker"),
            std::string::npos);
}

// SIGHUP reloads the hooks: a new one delivers, a removed one stops; its
// delivery still pending stays in the store and goes out once the hook is
// configured again.
TEST(HooksTest, AReloadAppliesChangedHooksAndKeepsARemovedOnesPendingDeliveries) {
  Receiver receiver;
  Cluster cluster(options_with(""));
  const std::string first = "  - name: first\n    url: " + receiver.url("/first") +
                            "\n    secret: one\n    backoff_base_s: 1\n    backoff_max_s: 1\n"
                            "    events: [job.succeeded]\n";
  const std::string second = "  - name: second\n    url: " + receiver.url("/second") +
                             "\n    secret: two\n    events: [job.succeeded]\n";
  cluster.rewrite_config("hooks:\n" + first);
  ASSERT_TRUE(cluster.start());
  auto reloaded = [&](size_t times) {
    return wait_until(
        [&] {
          const std::string log = read_file(cluster.broker_log_path());
          size_t n = 0;
          for (size_t at = log.find("hooks reloaded"); at != std::string::npos;
               at = log.find("hooks reloaded", at + 1)) {
            ++n;
          }
          return n >= times;
        },
        30s, 50ms);
  };

  // The receiver refuses: first's delivery of `early` stays pending.
  receiver.set_status(503);
  auto early = cluster.submit({"noop", "--frames", "1"});
  ASSERT_TRUE(early) << cluster.last_cli();
  ASSERT_TRUE(wait_until(
      [&] {
        auto stats = cluster.cli_json({"hooks"});
        return stats && (*stats)[0]["pending"] == 1 &&
               !(*stats)[0]["oldest_pending"]["last_error"].get<std::string>().empty();
      },
      kLimit))
      << cluster.last_cli();

  cluster.rewrite_config("hooks:\n" + second);
  ASSERT_TRUE(cluster.signal_broker(SIGHUP));
  ASSERT_TRUE(reloaded(1)) << read_file(cluster.broker_log_path());
  EXPECT_NE(read_file(cluster.broker_log_path()).find(R"(before="first" after="second")"),
            std::string::npos);
  receiver.set_status(200);
  auto later = cluster.submit({"noop", "--frames", "1"});
  ASSERT_TRUE(later) << cluster.last_cli();
  ASSERT_TRUE(wait_until([&] { return has(receiver, "job.succeeded", *later); }, kLimit))
      << "the new hook did not deliver";
  auto stats = cluster.cli_json({"hooks"});
  ASSERT_TRUE(stats) << cluster.last_cli();
  ASSERT_EQ(stats->size(), 1u) << stats->dump();
  EXPECT_EQ((*stats)[0]["name"], "second");
  for (const Delivery& d : receiver.deliveries()) {
    EXPECT_EQ(d.path, "/second") << "the removed hook delivered";
    EXPECT_EQ(d.signature, "sha256=" + hmac_hex("two", d.body));
  }

  cluster.rewrite_config("hooks:\n" + first + second);
  ASSERT_TRUE(cluster.signal_broker(SIGHUP));
  ASSERT_TRUE(reloaded(2)) << read_file(cluster.broker_log_path());
  ASSERT_TRUE(wait_until(
      [&] {
        auto got = of(receiver.deliveries(), "job.succeeded", *early);
        return !got.empty() && got[0].path == "/first";
      },
      kLimit))
      << "the delivery kept for the removed hook never went out";
}

TEST(HooksTest, RuleMatchingAFarmEventRunsItsJobOnTheFarm) {
  ClusterOptions options = options_with("");
  Cluster cluster(options);
  const std::string out = cluster.path("notes");
  cluster.rewrite_config(
      "rules:\n"
      "  - name: tracker\n"
      "    match: {event: [job.succeeded, job.failed], label: {shot: 'sh*'}}\n"
      "    jobs:\n"
      "      update:\n"
      "        kind: command\n"
      "        command: note\n"
      "        params: {out: " +
      out +
      ", id: '{meta.job}', "
      "state: '{meta.job_state}'}\n");
  ASSERT_TRUE(cluster.start());
  auto shot = cluster.submit({"command", "ok", "--frames", "1", "--label", "shot=sh010"});
  auto other = cluster.submit({"command", "ok", "--frames", "1", "--label", "shot=x"});
  auto failed = cluster.submit(
      {"command", "fail", "--frames", "1", "--max-attempts", "1", "--label", "shot=sh020"});
  ASSERT_TRUE(shot && other && failed) << cluster.last_cli();
  for (uint64_t job : {*shot, *other, *failed}) {
    ASSERT_TRUE(cluster.wait_for_final_state(job, kLimit));
  }
  ASSERT_TRUE(wait_until(
      [&] {
        const std::string text = read_file(out);
        return text.find(std::to_string(*shot) + " succeeded") != std::string::npos &&
               text.find(std::to_string(*failed) + " failed") != std::string::npos;
      },
      kLimit))
      << read_file(out);
  EXPECT_EQ(read_file(out).find(std::to_string(*other) + " "), std::string::npos);
  // The update jobs are ordinary jobs, labelled with what made them.
  auto list = cluster.cli_json({"ls", "--label", "farm_event=job.succeeded"});
  ASSERT_TRUE(list) << cluster.last_cli();
  EXPECT_EQ(list->size(), 1u) << list->dump();
}

}  // namespace
}  // namespace farmhand::e2e
