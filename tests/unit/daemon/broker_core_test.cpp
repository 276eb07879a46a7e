// BrokerCore without sockets or disk: a MemoryStore behind a FaultyStore, a
// FakeClock, and ports that record what would be sent. Each scenario makes one
// kind of write hit a failing commit and checks the promise: what was
// acknowledged is on disk, what was refused is not, memory is not ahead of
// disk, no cancelled job runs, no finished task runs again, and the broker
// resumes by itself once the store writes again.
#include "daemon/broker_core.h"

#include <filesystem>
#include <fstream>
#include <functional>
#include <set>

#include "tests/support/fake_clock.h"
#include "tests/support/memory_store.h"
#include <fmt/format.h>
#include <gtest/gtest.h>

#include "common/logging.h"
#include "common/wire.h"

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

  std::vector<wire::ClientReply> take_replies() { return std::exchange(replies, {}); }

  std::vector<std::pair<std::string, wire::BrokerMessage>> take_worker_mail() {
    return std::exchange(to_workers, {});
  }

  std::vector<wire::ClientReply> replies;
  std::vector<std::pair<std::string, wire::BrokerMessage>> to_workers;
};

class BrokerCoreTest : public ::testing::Test {
 protected:
  BrokerCoreTest() : faulty_(disk_) {
    config_.broker.heartbeat_interval = std::chrono::milliseconds(1000);
    config_.broker.lease_ttl = std::chrono::milliseconds(30'000);
    config_.broker.keep_finished = std::chrono::milliseconds(0);
    start();
  }

  // A broker (re)started on what is on disk.
  void start() {
    auto log = common::logger("broker_core_test");
    log->set_level(spdlog::level::off);  // the scenarios assert what they rely on
    core_ = std::make_unique<BrokerCore>(config_, "/nonexistent/farmhand.db", clock_, faulty_,
                                         ports_, ports_, *log);
    ASSERT_TRUE(core_->restore());
    // Restored running tasks wait for their workers a few beats.
    clock_.advance(std::chrono::seconds(3));
  }

  wire::ClientReply request(const wire::ClientRequest& body) {
    wire::ClientRequest req = body;
    req.set_version(common::kProtocolVersion);
    req.set_request_id(++request_id_);
    std::string bytes = req.SerializeAsString();
    core_->on_client("client", false, bytes.data(), bytes.size());
    core_->end_turn();
    for (auto& reply : ports_.take_replies()) {
      if (reply.request_id() == request_id_) return reply;
    }
    ADD_FAILURE() << "no reply to request " << request_id_;
    return {};
  }

  wire::ClientReply submit_noop(uint32_t tasks, const std::string& key = "") {
    wire::ClientRequest req;
    req.mutable_submit()->mutable_spec()->set_kind("noop");
    req.mutable_submit()->mutable_spec()->set_tasks(tasks);
    req.mutable_submit()->mutable_spec()->set_idempotency_key(key);
    return request(req);
  }

  wire::ClientReply act(uint64_t job, wire::JobActionRequest::Action action) {
    wire::ClientRequest req;
    req.mutable_action()->set_job_id(job);
    req.mutable_action()->set_action(action);
    return request(req);
  }

  // A task-level action (retry, kill, skip, requeue) with its selection and key.
  wire::ClientReply task_act(uint64_t job, wire::JobActionRequest::Action action,
                             const std::string& tasks, const std::string& key = "") {
    wire::ClientRequest req;
    req.mutable_action()->set_job_id(job);
    req.mutable_action()->set_action(action);
    req.mutable_action()->set_tasks(tasks);
    req.mutable_action()->set_idempotency_key(key);
    return request(req);
  }

  // A task's row in the status page.
  wire::TaskInfo task_info(uint64_t job, uint64_t task) {
    const wire::ClientReply reply = status(job);
    for (const auto& t : reply.status().tasks()) {
      if (t.index() == task) return t;
    }
    ADD_FAILURE() << "no task " << task << " of job " << job << " in status";
    return {};
  }

  wire::ClientReply submit_to_pool(uint32_t tasks, const std::string& pool) {
    wire::ClientRequest req;
    req.mutable_submit()->mutable_spec()->set_kind("noop");
    req.mutable_submit()->mutable_spec()->set_tasks(tasks);
    req.mutable_submit()->mutable_spec()->set_pool(pool);
    return request(req);
  }

  wire::ClientReply health() {
    wire::ClientRequest req;
    req.mutable_health();
    return request(req);
  }

  wire::ClientReply status(uint64_t job) {
    wire::ClientRequest req;
    req.mutable_status()->set_job_id(job);
    req.mutable_status()->set_tasks(true);
    return request(req);
  }

  void from_worker(const std::string& rid, const wire::WorkerMessage& msg) {
    std::string bytes = msg.SerializeAsString();
    core_->on_worker(rid, bytes.data(), bytes.size());
  }

  void ready(const std::string& rid, const std::vector<wire::TaskRef>& running = {},
             const std::vector<std::string>& tags = {}) {
    wire::WorkerMessage msg;
    auto* r = msg.mutable_ready();
    r->set_version(common::kProtocolVersion);
    r->set_name(rid);
    r->set_slots(4);
    for (const auto& ref : running) *r->add_running() = ref;
    for (const auto& tag : tags) r->add_tags(tag);
    from_worker(rid, msg);
  }

  void result(const std::string& rid, const wire::Assign& assign, bool ok = true) {
    wire::WorkerMessage msg;
    *msg.mutable_result()->mutable_ref() = assign.ref();
    msg.mutable_result()->set_succeeded(ok);
    msg.mutable_result()->set_attempt(assign.attempt());
    from_worker(rid, msg);
  }

  // Assigns the last turn sent, and whether anything else of interest went out.
  std::vector<wire::Assign> assigns(bool* reconnect = nullptr, int* acks = nullptr) {
    std::vector<wire::Assign> out;
    for (auto& [rid, msg] : ports_.take_worker_mail()) {
      if (msg.has_assign()) out.push_back(msg.assign());
      if (reconnect && msg.has_reconnect()) *reconnect = true;
      if (acks && msg.has_ack()) *acks += msg.ack().tasks_size();
    }
    return out;
  }

  static wire::TaskRef ref_of(const wire::Assign& a) { return a.ref(); }

  common::Config config_;
  FakeClock clock_;
  MemoryStore disk_;
  FaultyStore faulty_;
  RecordingPorts ports_;
  std::unique_ptr<BrokerCore> core_;
  uint64_t request_id_ = 0;
};

TEST_F(BrokerCoreTest, SubmitHittingAFailingCommitIsRefusedWithTheCauseAndLeavesNothingBehind) {
  auto first = submit_noop(2, "first");
  ASSERT_TRUE(first.ok()) << first.error();
  ASSERT_NE(disk_.job(first.submit().job_id()), nullptr);

  faulty_.fail_writes();
  auto refused = submit_noop(3, "second");
  EXPECT_FALSE(refused.ok());
  EXPECT_EQ(refused.error(),
            "state store write failed: No space left on device (/state/farmhand.db)");
  EXPECT_EQ(disk_.job_count(), 1u);
  EXPECT_EQ(core_->store_failure()->reason, refused.error());
  // Memory is not ahead of disk: the refused job is unknown, its key is free.
  EXPECT_FALSE(status(first.submit().job_id() + 1).ok());
  EXPECT_TRUE(status(first.submit().job_id()).ok());  // reads are answered meanwhile

  // Writes are refused at once while the store cannot write, with the same line.
  auto meanwhile = submit_noop(1, "meanwhile");
  EXPECT_FALSE(meanwhile.ok());
  EXPECT_EQ(meanwhile.error(), refused.error());

  faulty_.heal();
  clock_.advance(std::chrono::seconds(1));
  core_->end_turn();
  EXPECT_FALSE(core_->store_failure());
  auto again = submit_noop(3, "second");
  ASSERT_TRUE(again.ok()) << again.error();
  EXPECT_FALSE(again.submit().duplicate());
  // Ids are not reused: the refused job's id was never acknowledged, so it may be.
  EXPECT_NE(disk_.job(again.submit().job_id()), nullptr);
  EXPECT_EQ(disk_.job_count(), 2u);
}

TEST_F(BrokerCoreTest, AssignsLeaveOnlyAfterTheirTurnIsCommitted) {
  auto job = submit_noop(2);
  ASSERT_TRUE(job.ok());
  ports_.take_worker_mail();

  faulty_.fail_writes();
  ready("w1");
  core_->end_turn();  // the worker joins and the turn dispatches to it: its commit fails
  bool reconnect = false;
  EXPECT_TRUE(assigns(&reconnect).empty()) << "an Assign left before its turn was committed";
  EXPECT_TRUE(reconnect) << "workers are asked to introduce themselves again";
  for (core::TaskIndex t : {0u, 1u}) EXPECT_EQ(disk_.task(job.submit().job_id(), t), nullptr);

  faulty_.heal();
  clock_.advance(std::chrono::seconds(1));
  core_->end_turn();  // probe succeeds
  ready("w1");
  clock_.advance(std::chrono::seconds(3));  // restored: waits for workers a few beats
  core_->end_turn();
  auto sent = assigns();
  ASSERT_EQ(sent.size(), 2u);
  for (const auto& a : sent) {
    const auto* row = disk_.task(a.ref().job_id(), a.ref().task());
    ASSERT_NE(row, nullptr);
    EXPECT_EQ(row->state, core::TaskState::kRunning);
    EXPECT_EQ(row->lease, a.ref().lease());
  }
}

TEST_F(BrokerCoreTest, ASubmittedTaskGoesOutAfterTheSubmitsOwnCommit) {
  ready("w1");
  core_->end_turn();
  ports_.take_worker_mail();
  const uint64_t commits = disk_.commits();

  auto job = submit_noop(1);  // one turn
  ASSERT_TRUE(job.ok()) << job.error();
  EXPECT_EQ(disk_.commits(), commits + 1);
  auto sent = assigns();
  ASSERT_EQ(sent.size(), 1u) << "the task waited for a second turn and commit";
  const auto* row = disk_.task(job.submit().job_id(), 0);
  ASSERT_NE(row, nullptr);
  EXPECT_EQ(row->state, core::TaskState::kRunning);
  EXPECT_EQ(row->lease, sent[0].ref().lease());

  // The same turn with a failing commit: neither the job nor its Assign exists.
  faulty_.fail_writes();
  auto refused = submit_noop(1);
  EXPECT_FALSE(refused.ok());
  EXPECT_TRUE(assigns().empty()) << "an Assign of a job that is not on disk left";
  EXPECT_EQ(disk_.job_count(), 1u);
}

TEST_F(BrokerCoreTest, CancelHittingAFailingCommitIsNotAppliedAndARepeatedCancelIsStored) {
  auto job = submit_noop(2);
  ASSERT_TRUE(job.ok());
  const uint64_t id = job.submit().job_id();
  faulty_.fail_writes();
  auto refused = act(id, wire::JobActionRequest::CANCEL);
  EXPECT_FALSE(refused.ok());
  EXPECT_FALSE(disk_.job(id)->cancelled);
  faulty_.heal();
  clock_.advance(std::chrono::seconds(1));
  core_->end_turn();
  // Memory agrees with disk: the job is not cancelled, so the cancel applies again and is stored.
  EXPECT_EQ(status(id).status().job().state(), wire::JOB_QUEUED);
  auto cancelled = act(id, wire::JobActionRequest::CANCEL);
  ASSERT_TRUE(cancelled.ok()) << cancelled.error();
  EXPECT_TRUE(disk_.job(id)->cancelled);
  // No cancelled job runs.
  ready("w1");
  clock_.advance(std::chrono::seconds(3));
  core_->end_turn();
  EXPECT_TRUE(assigns().empty());
}

TEST_F(BrokerCoreTest, PauseHittingAFailingCommitIsNotApplied) {
  auto job = submit_noop(4);
  const uint64_t id = job.submit().job_id();
  faulty_.fail_writes();
  EXPECT_FALSE(act(id, wire::JobActionRequest::PAUSE).ok());
  EXPECT_FALSE(disk_.job(id)->paused);
  faulty_.heal();
  clock_.advance(std::chrono::seconds(1));
  core_->end_turn();
  EXPECT_NE(status(id).status().job().state(), wire::JOB_PAUSED);
  ready("w1");
  clock_.advance(std::chrono::seconds(3));
  core_->end_turn();
  EXPECT_EQ(assigns().size(), 4u) << "a pause that was refused must not hold the job";
}

TEST_F(BrokerCoreTest, TaskResultHittingAFailingCommitIsNotAckedAndCountsWhenSentAgain) {
  auto job = submit_noop(1);
  const uint64_t id = job.submit().job_id();
  ready("w1");
  core_->end_turn();
  core_->end_turn();
  auto sent = assigns();
  ASSERT_EQ(sent.size(), 1u);

  faulty_.fail_writes();
  result("w1", sent[0]);
  core_->end_turn();
  int acks = 0;
  bool reconnect = false;
  assigns(&reconnect, &acks);
  EXPECT_EQ(acks, 0) << "a result was acknowledged that is not on disk";
  EXPECT_EQ(disk_.task(id, 0)->state, core::TaskState::kRunning);
  // Meanwhile a result is not taken either.
  result("w1", sent[0]);
  core_->end_turn();
  acks = 0;
  assigns(nullptr, &acks);
  EXPECT_EQ(acks, 0);

  faulty_.heal();
  clock_.advance(std::chrono::seconds(1));
  core_->end_turn();
  // The worker introduces itself with what it holds and sends its result again.
  ready("w1", {ref_of(sent[0])});
  result("w1", sent[0]);
  core_->end_turn();
  acks = 0;
  auto again = assigns(nullptr, &acks);
  EXPECT_EQ(acks, 1);
  EXPECT_TRUE(again.empty()) << "a finished task was dispatched again";
  EXPECT_EQ(disk_.task(id, 0)->state, core::TaskState::kSucceeded);
  EXPECT_EQ(status(id).status().job().state(), wire::JOB_SUCCEEDED);
}

TEST_F(BrokerCoreTest, ProbesBackOffWhileTheStoreCannotWriteAndNeverCrashLoop) {
  submit_noop(1);
  faulty_.fail_writes();
  EXPECT_FALSE(submit_noop(1).ok());
  // An hour of failing probes: the core keeps answering and backs off to its cap.
  for (int i = 0; i < 3600; ++i) {
    clock_.advance(std::chrono::seconds(1));
    core_->end_turn();
  }
  EXPECT_TRUE(core_->store_failure());
  EXPECT_LE(clock_.until(core_->next_deadline()), std::chrono::seconds(30));
  EXPECT_TRUE(status(1).ok());
  faulty_.heal();
  clock_.advance(std::chrono::seconds(31));
  core_->end_turn();
  EXPECT_FALSE(core_->store_failure());
  EXPECT_TRUE(submit_noop(1).ok());
}

TEST_F(BrokerCoreTest, AcknowledgedWorkSurvivesARestartOnWhatIsOnDisk) {
  auto a = submit_noop(2, "a");
  auto b = submit_noop(2, "b");
  ASSERT_TRUE(act(b.submit().job_id(), wire::JobActionRequest::CANCEL).ok());
  faulty_.fail_writes();
  EXPECT_FALSE(submit_noop(2, "c").ok());
  faulty_.heal();
  start();  // as after kill -9
  EXPECT_TRUE(status(a.submit().job_id()).ok());
  EXPECT_EQ(status(b.submit().job_id()).status().job().state(), wire::JOB_CANCELLED);
  EXPECT_FALSE(status(b.submit().job_id() + 1).ok());
}

TEST_F(BrokerCoreTest, HealthSaysWhyTheStoreCannotWriteAndIsHealthyOnceItWritesAgain) {
  ASSERT_TRUE(submit_noop(1).ok());
  auto healthy = health();
  ASSERT_TRUE(healthy.ok()) << healthy.error();
  EXPECT_TRUE(healthy.health().store_writes());
  EXPECT_EQ(healthy.health().store_error(), "");

  faulty_.fail_writes();
  EXPECT_FALSE(submit_noop(1).ok());
  auto sick = health();
  ASSERT_TRUE(sick.ok()) << "health is a read: answered while writes are refused";
  EXPECT_FALSE(sick.health().store_writes());
  EXPECT_EQ(sick.health().store_error(),
            "state store write failed: No space left on device (/state/farmhand.db)");
  EXPECT_EQ(sick.health().failed_commits(), 1u);
  EXPECT_DOUBLE_EQ(sick.health().store_retry_in_s(), 0.25)
      << "the first probe, a quarter second on";
  clock_.advance(std::chrono::milliseconds(100));
  EXPECT_DOUBLE_EQ(health().health().store_retry_in_s(), 0.15);

  faulty_.heal();
  clock_.advance(std::chrono::seconds(1));
  core_->end_turn();
  auto again = health();
  ASSERT_TRUE(again.ok()) << again.error();
  EXPECT_TRUE(again.health().store_writes());
  EXPECT_EQ(again.health().store_error(), "");
}

TEST_F(BrokerCoreTest, HealthCountsJobsTasksWorkersAndHeldStatusRequests) {
  auto running = submit_noop(3);
  auto cancelled = submit_noop(2);
  ASSERT_TRUE(act(cancelled.submit().job_id(), wire::JobActionRequest::CANCEL).ok());
  ready("w1");
  core_->end_turn();
  ASSERT_EQ(assigns().size(), 3u);
  // A follower waits on the running job: the request is held, not answered.
  wire::ClientRequest follow;
  follow.set_version(common::kProtocolVersion);
  follow.set_request_id(1000);
  follow.mutable_status()->set_job_id(running.submit().job_id());
  follow.mutable_status()->set_wait_ms(60'000);
  follow.mutable_status()->set_seen_version(status(running.submit().job_id()).status().version());
  const std::string bytes = follow.SerializeAsString();
  core_->on_client("follower", false, bytes.data(), bytes.size());
  core_->end_turn();
  ASSERT_TRUE(ports_.take_replies().empty());

  auto reply = health();
  ASSERT_TRUE(reply.ok()) << reply.error();
  const auto& h = reply.health();
  EXPECT_EQ(h.jobs().at("running"), 1u);
  EXPECT_EQ(h.jobs().at("cancelled"), 1u);
  EXPECT_EQ(h.jobs().at("queued"), 0u);
  EXPECT_EQ(h.tasks().at("running"), 3u);
  EXPECT_EQ(h.tasks().at("cancelled"), 2u);
  EXPECT_EQ(h.tasks().at("queued"), 0u);
  EXPECT_EQ(h.workers_alive(), 1u);
  EXPECT_EQ(h.workers_silent(), 0u);
  EXPECT_EQ(h.held_status_requests(), 1u);
  EXPECT_EQ(h.failed_commits(), 0u);
  // The broker started when the fixture built it; the fake clock moved 3 s since.
  EXPECT_EQ(h.uptime_s(), 3.0);

  // Its heartbeats stop: the worker counts as silent.
  clock_.advance(std::chrono::seconds(5));
  core_->end_turn();
  auto later = health();
  EXPECT_EQ(later.health().workers_alive(), 0u);
  EXPECT_EQ(later.health().workers_silent(), 1u);
}

TEST_F(BrokerCoreTest, ASubmitToAPoolNoLiveWorkerServesIsAcceptedWithAWarningAndStatusSaysWhy) {
  const std::string why = "no live worker serves pool 'gpu' now; the job waits until one joins";
  ready("cpu1");
  core_->end_turn();
  auto waiting = submit_to_pool(8, "gpu");
  ASSERT_TRUE(waiting.ok()) << waiting.error();
  ASSERT_EQ(waiting.submit().warnings_size(), 1);
  EXPECT_EQ(waiting.submit().warnings(0), why);
  const uint64_t id = waiting.submit().job_id();
  EXPECT_EQ(status(id).status().waiting_reason(), why);
  // A job any worker takes, or a pool a live worker serves, has nothing to say.
  EXPECT_EQ(submit_noop(1).submit().warnings_size(), 0);
  EXPECT_EQ(submit_to_pool(1, "").submit().warnings_size(), 0);

  ready("gpu1", {}, {"gpu"});  // 4 slots: half of the job still queued
  core_->end_turn();
  auto s = status(id);
  EXPECT_GT(s.status().job().counts().at("queued"), 0u);
  EXPECT_EQ(s.status().waiting_reason(), "");
  EXPECT_EQ(submit_to_pool(1, "gpu").submit().warnings_size(), 0);

  // The only gpu worker goes silent (cpu1 keeps beating): the job waits again, and says so.
  for (int i = 0; i < 5; ++i) {
    clock_.advance(std::chrono::seconds(1));
    wire::WorkerMessage beat;
    beat.mutable_heartbeat();
    from_worker("cpu1", beat);
    core_->end_turn();
  }
  EXPECT_EQ(status(id).status().waiting_reason(), why);
  EXPECT_EQ(submit_to_pool(1, "gpu").submit().warnings(0), why);
}

TEST_F(BrokerCoreTest, ARequestOverTheSizeLimitIsAnsweredWithItsSize) {
  config_.broker.max_client_message_bytes = 1 << 20;
  wire::ClientRequest req;
  req.set_version(common::kProtocolVersion);
  req.set_request_id(77);
  req.mutable_submit()->mutable_spec()->set_kind("noop");
  req.mutable_submit()->mutable_spec()->set_name(std::string(2'200'000, 'x'));
  std::string bytes = req.SerializeAsString();
  core_->on_client("client", false, bytes.data(), bytes.size());
  core_->end_turn();
  auto replies = ports_.take_replies();
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].request_id(), 77u);
  EXPECT_FALSE(replies[0].ok());
  EXPECT_EQ(replies[0].error(), "request too large: 2.1 MB over 1.0 MB");
}

}  // namespace
}  // namespace farmhand::daemon

namespace farmhand::daemon {
namespace {

TEST_F(BrokerCoreTest, AStoreThatFailsAgainSoonAfterItCameBackIsProbedLessOften) {
  ASSERT_TRUE(submit_noop(1).ok());
  faulty_.fail_writes();
  EXPECT_FALSE(submit_noop(1).ok());
  EXPECT_EQ(clock_.until(core_->next_deadline()), std::chrono::milliseconds(250));
  // A few bytes free: the probe passes, the next commit fails again.
  faulty_.heal();
  clock_.advance(std::chrono::milliseconds(250));
  core_->end_turn();
  ASSERT_FALSE(core_->store_failure());
  faulty_.fail_writes();
  EXPECT_FALSE(submit_noop(1).ok());
  EXPECT_EQ(clock_.until(core_->next_deadline()), std::chrono::milliseconds(500));
  // Long healthy: a new failure starts from the first delay again.
  faulty_.heal();
  clock_.advance(std::chrono::milliseconds(500));
  core_->end_turn();
  ASSERT_FALSE(core_->store_failure());
  clock_.advance(std::chrono::minutes(2));
  core_->end_turn();
  faulty_.fail_writes();
  EXPECT_FALSE(submit_noop(1).ok());
  EXPECT_EQ(clock_.until(core_->next_deadline()), std::chrono::milliseconds(250));
}

}  // namespace
}  // namespace farmhand::daemon

namespace farmhand::daemon {
namespace {

wire::WorkerMessage ready_of(const std::string& name, const std::string& instance) {
  wire::WorkerMessage msg;
  auto* r = msg.mutable_ready();
  r->set_version(common::kProtocolVersion);
  r->set_name(name);
  r->set_instance(instance);
  r->set_slots(1);
  return msg;
}

TEST_F(BrokerCoreTest, ACloneUnderALiveWorkersNameIsRefusedOrRenamedAsConfigured) {
  from_worker("route-a", ready_of("render01", "aaaa"));
  from_worker("route-b", ready_of("render01", "bbbb"));
  core_->end_turn();
  bool welcomed_a = false;
  std::string refusal;
  for (auto& [rid, msg] : ports_.take_worker_mail()) {
    if (rid == "route-a" && msg.has_welcome()) welcomed_a = true;
    if (rid == "route-b" && msg.has_welcome()) ADD_FAILURE() << "the clone was welcomed";
    if (rid == "route-b" && msg.has_refused()) refusal = msg.refused().reason();
  }
  EXPECT_TRUE(welcomed_a);
  EXPECT_EQ(refusal.rfind("worker name \"render01\" is in use by a live worker", 0), 0u) << refusal;

  config_.broker.rename_duplicate_workers = true;
  start();
  from_worker("route-c", ready_of("render02", "cccc"));
  from_worker("route-d", ready_of("render02", "dddd"));
  core_->end_turn();
  int welcomed = 0;
  for (auto& [rid, msg] : ports_.take_worker_mail()) welcomed += msg.has_welcome() ? 1 : 0;
  EXPECT_EQ(welcomed, 2);
  wire::ClientRequest req;
  req.mutable_workers();
  std::set<std::string> names;
  const wire::ClientReply listed = request(req);
  for (const auto& w : listed.workers().workers()) names.insert(w.name());
  EXPECT_TRUE(names.count("render02") && names.count("render02-2")) << names.size();
}

}  // namespace
}  // namespace farmhand::daemon

namespace farmhand::daemon {
namespace {

TEST_F(BrokerCoreTest, APublishWhoseRuleMakesAJobForAnUnservedPoolSaysSo) {
  char dir_template[] = "/tmp/fhcoreXXXXXX";
  const std::string dir = mkdtemp(dir_template);
  { std::ofstream(dir + "/plate.exr") << "not read at submit"; }
  auto loaded = common::load_config_text(
      "rules:\n"
      "  - name: thumbs\n"
      "    match: { path: \"*.exr\" }\n"
      "    jobs:\n"
      "      thumb: { kind: thumbnail, output: \"" +
          dir + "/{name}.jpg\", pool: gpu }\n",
      "<test>");
  ASSERT_TRUE(loaded) << loaded.error().reason;
  config_.rules = loaded->rules;
  wire::ClientRequest req;
  req.mutable_publish()->set_path(dir + "/plate.exr");
  auto reply = request(req);
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(reply.ok()) << reply.error();
  ASSERT_EQ(reply.publish().job_ids_size(), 1);
  bool warned = false;
  for (const auto& w : reply.publish().warnings()) {
    warned |= w.find("no live worker serves pool 'gpu' now") != std::string::npos;
  }
  EXPECT_TRUE(warned) << reply.DebugString();
}

// ------------------------------------------------------------------ commit, then flush

// A turn's Assigns leave once its commit is written, so the workers run them
// while the store flushes; replies and result acks, which acknowledge, only
// once the commit is flushed.
TEST_F(BrokerCoreTest, AssignsLeaveOnceWrittenRepliesAndAcksOnceFlushed) {
  struct Watch final : ClientPort, WorkerPort {
    Watch(const MemoryStore& disk, RecordingPorts& inner) : disk_(disk), inner_(inner) {}

    void send(const PendingReply& reply) override {
      if (!disk_.flushed()) ++unflushed_replies;
      inner_.send(reply);
    }

    bool send(const std::string& rid, const wire::BrokerMessage& msg) override {
      if (msg.has_ack() && !disk_.flushed()) ++unflushed_acks;
      if (msg.has_assign() && !disk_.flushed()) ++assigns_during_flush;
      return inner_.send(rid, msg);
    }

    const MemoryStore& disk_;
    RecordingPorts& inner_;
    int unflushed_replies = 0;
    int unflushed_acks = 0;
    int assigns_during_flush = 0;
  } watch(disk_, ports_);

  auto log = common::logger("broker_core_test");
  core_ = std::make_unique<BrokerCore>(config_, "/nonexistent/farmhand.db", clock_, faulty_, watch,
                                       watch, *log);
  ASSERT_TRUE(core_->restore());

  ready("w1");
  core_->end_turn();
  auto job = submit_noop(3);  // accepted and dispatched in one turn
  ASSERT_TRUE(job.ok()) << job.error();
  auto sent = assigns();
  ASSERT_EQ(sent.size(), 3u);
  for (const auto& a : sent) {
    const auto* row = disk_.task(a.ref().job_id(), a.ref().task());
    ASSERT_NE(row, nullptr) << "an Assign left before its commit was written";
    EXPECT_EQ(row->lease, a.ref().lease());
  }
  for (const auto& a : sent) result("w1", a);
  core_->end_turn();
  int acks = 0;
  assigns(nullptr, &acks);
  EXPECT_EQ(acks, 3);
  EXPECT_EQ(watch.unflushed_replies, 0) << "a reply left before its commit was flushed";
  EXPECT_EQ(watch.unflushed_acks, 0) << "a result was acked before its commit was flushed";
  EXPECT_EQ(watch.assigns_during_flush, 3) << "the workers waited for the flush";
  core_.reset();  // before `watch` goes
}

// A failed fdatasync may have dropped what it could not write: nothing of the
// turn is acknowledged, and the broker stops, to restart on what the disk has.
TEST_F(BrokerCoreTest, AFailedFlushAcknowledgesNothingAndStopsTheBroker) {
  ready("w1");
  core_->end_turn();
  auto job = submit_noop(2);
  ASSERT_TRUE(job.ok()) << job.error();
  auto sent = assigns();
  ASSERT_EQ(sent.size(), 2u);

  faulty_.fail_flushes();
  result("w1", sent[0]);
  wire::ClientRequest submit;
  submit.set_version(common::kProtocolVersion);
  submit.set_request_id(301);
  submit.mutable_submit()->mutable_spec()->set_kind("noop");
  submit.mutable_submit()->mutable_spec()->set_tasks(2);
  std::string bytes = submit.SerializeAsString();
  core_->on_client("client", false, bytes.data(), bytes.size());
  core_->end_turn();

  ASSERT_TRUE(core_->fatal());
  EXPECT_EQ(core_->fatal()->reason,
            "state store flush failed: Input/output error (/state/farmhand.db-wal)");
  auto replies = ports_.take_replies();
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_FALSE(replies[0].ok());
  EXPECT_FALSE(replies[0].has_submit());
  EXPECT_EQ(replies[0].error(),
            "state store flush failed: Input/output error (/state/farmhand.db-wal); the outcome "
            "is unknown, ask again once farmhandd is back");
  int acks = 0;
  assigns(nullptr, &acks);
  EXPECT_EQ(acks, 0) << "a result was acknowledged although its flush failed";

  // Nothing more is committed or sent.
  const uint64_t commits = disk_.commits();
  ready("w2");
  core_->end_turn();
  core_->shutdown();
  EXPECT_EQ(disk_.commits(), commits);
  EXPECT_TRUE(assigns().empty());
}

// The host loses power while the disk writes a turn (its commit written, the
// flush never done): what was acknowledged before survives, and the job of
// that turn, never acknowledged, may be gone.
TEST_F(BrokerCoreTest, APowerCutLosesNothingThatWasAcknowledged) {
  auto kept = submit_noop(1, "kept");
  ASSERT_TRUE(kept.ok()) << kept.error();

  faulty_.fail_flushes("Input/output error (/state/farmhand.db-wal)", [&] { disk_.power_cut(); });
  auto lost = submit_noop(1, "written");
  EXPECT_FALSE(lost.ok());
  ASSERT_TRUE(core_->fatal());

  core_.reset();
  faulty_.heal();
  start();
  EXPECT_TRUE(status(kept.submit().job_id()).ok()) << "an acknowledged job was lost";
  EXPECT_EQ(disk_.job_count(), 1u);
}

// The same power cut after an Assign left: on restart the task is queued again
// on disk, but its worker reports it when it reconnects and the scheduler
// adopts it before it dispatches anything: it runs once.
TEST_F(BrokerCoreTest, AnAssignThatOutlivesAPowerCutIsAdoptedNotRunTwice) {
  auto job = submit_noop(1, "durable");
  ASSERT_TRUE(job.ok()) << job.error();
  faulty_.fail_flushes("Input/output error (/state/farmhand.db-wal)", [&] { disk_.power_cut(); });
  ready("w1");
  core_->end_turn();
  auto sent = assigns();
  ASSERT_EQ(sent.size(), 1u);
  ASSERT_TRUE(core_->fatal());

  core_.reset();
  faulty_.heal();
  auto log = common::logger("broker_core_test");
  core_ = std::make_unique<BrokerCore>(config_, "/nonexistent/farmhand.db", clock_, faulty_, ports_,
                                       ports_, *log);
  ASSERT_TRUE(core_->restore());
  const auto* row = disk_.task(job.submit().job_id(), 0);
  EXPECT_TRUE(row == nullptr || row->state == core::TaskState::kQueued);

  ready("w2");  // another worker first: nothing is dispatched while workers may report
  core_->end_turn();
  EXPECT_TRUE(assigns().empty()) << "dispatched before the workers could report";
  ready("w1", {ref_of(sent[0])});
  core_->end_turn();
  clock_.advance(std::chrono::seconds(3));
  core_->end_turn();
  EXPECT_TRUE(assigns().empty()) << "the adopted task was dispatched again";
  result("w1", sent[0]);
  core_->end_turn();
  auto done = status(job.submit().job_id());
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(done.status().job().counts().at("succeeded"), 1u);
}

// Under load a turn drains thousands of worker messages, commits and flushes:
// a read that waited for all that took half a second. At rest (nothing handled
// since the last flush) it shows only durable state, so it is answered at once.
TEST_F(BrokerCoreTest, AReadAtRestIsAnsweredAtOnceAndOneAfterAChangeWaitsForTheFlush) {
  ready("w1");
  core_->end_turn();
  auto job = submit_noop(2);
  ASSERT_TRUE(job.ok()) << job.error();
  const uint64_t id = job.submit().job_id();
  auto sent = assigns();
  ASSERT_EQ(sent.size(), 2u);
  ports_.take_replies();

  auto send_status = [&](uint64_t request_id) {
    wire::ClientRequest req;
    req.set_version(common::kProtocolVersion);
    req.set_request_id(request_id);
    req.mutable_status()->set_job_id(id);
    std::string bytes = req.SerializeAsString();
    core_->on_client("client", false, bytes.data(), bytes.size());
  };
  send_status(501);
  auto now = ports_.take_replies();
  ASSERT_EQ(now.size(), 1u) << "a read at rest waited for the turn";
  EXPECT_EQ(now[0].request_id(), 501u);
  EXPECT_EQ(now[0].status().job().counts().at("running"), 2u);

  // A result changes state that is not flushed yet: a read now waits for the
  // turn's flush, and then shows the result.
  result("w1", sent[0]);
  send_status(502);
  EXPECT_TRUE(ports_.replies.empty()) << "a read showed state that is not durable yet";
  core_->end_turn();
  auto later = ports_.take_replies();
  ASSERT_EQ(later.size(), 1u);
  EXPECT_EQ(later[0].request_id(), 502u);
  EXPECT_EQ(later[0].status().job().counts().at("succeeded"), 1u);
  ASSERT_NE(disk_.task(id, sent[0].ref().task()), nullptr);
  EXPECT_TRUE(disk_.flushed());

  // After a write in the same turn a read waits too, and never overtakes it.
  send_status(503);
  ASSERT_EQ(ports_.take_replies().size(), 1u) << "the next turn starts at rest";
  wire::ClientRequest pause;
  pause.set_version(common::kProtocolVersion);
  pause.set_request_id(504);
  pause.mutable_action()->set_job_id(id);
  pause.mutable_action()->set_action(wire::JobActionRequest::PAUSE);
  std::string bytes = pause.SerializeAsString();
  core_->on_client("client", false, bytes.data(), bytes.size());
  send_status(505);
  EXPECT_TRUE(ports_.replies.empty());
  core_->end_turn();
  auto after_write = ports_.take_replies();
  ASSERT_EQ(after_write.size(), 2u);
  EXPECT_EQ(after_write[0].request_id(), 504u);
  EXPECT_EQ(after_write[1].request_id(), 505u);
  EXPECT_EQ(after_write[1].status().job().state(), wire::JOB_PAUSED);
}

// A burst of freed slots is filled over several turns, the next one due at
// once: a read that comes between them is answered without waiting for the
// whole burst's dispatch, commit and Assigns.
TEST_F(BrokerCoreTest, ABigFillIsSpreadOverTurnsAndReadsAreAnsweredBetween) {
  const size_t cap = BrokerCore::kMaxDispatchesPerTurn;
  const size_t workers = cap / 4 + 50;  // 4 slots each: more slots than one turn fills
  for (size_t w = 0; w < workers; ++w) ready(fmt::format("w{}", w));
  core_->end_turn();
  auto job = submit_noop(static_cast<uint32_t>(workers * 4));
  ASSERT_TRUE(job.ok()) << job.error();
  EXPECT_EQ(assigns().size(), cap) << "one turn filled more than its share";
  EXPECT_LE(core_->next_deadline(), clock_.steady()) << "the rest waits for a timeout";

  wire::ClientRequest req;
  req.set_version(common::kProtocolVersion);
  req.set_request_id(900);
  req.mutable_status()->set_job_id(job.submit().job_id());
  std::string bytes = req.SerializeAsString();
  core_->on_client("client", false, bytes.data(), bytes.size());
  auto replies = ports_.take_replies();
  ASSERT_EQ(replies.size(), 1u) << "a read waited for the rest of the fill";
  EXPECT_EQ(replies[0].status().job().counts().at("running"), cap);

  core_->end_turn();
  EXPECT_EQ(assigns().size(), workers * 4 - cap);
  EXPECT_GT(core_->next_deadline(), clock_.steady()) << "nothing more to fill: the loop may wait";
}

// The loop stops taking worker messages once the turn is full, by time: a
// flood of results is committed (and acknowledged, and reads answered) every
// few milliseconds, not once per 20,000 messages.
TEST_F(BrokerCoreTest, ATurnIsFullAfterItsTimeBudgetOfWorkerMessages) {
  EXPECT_FALSE(core_->turn_full()) << "an empty turn is full";
  wire::WorkerMessage beat;
  beat.mutable_heartbeat();
  ready("w1");
  for (int i = 0; i < 100; ++i) from_worker("w1", beat);
  EXPECT_FALSE(core_->turn_full()) << "no time has passed";
  clock_.advance(BrokerCore::kWorkerTurnBudget);
  EXPECT_TRUE(core_->turn_full());
  core_->end_turn();
  EXPECT_FALSE(core_->turn_full()) << "the next turn starts empty";

  // However fast they come, a turn takes at most so many.
  for (int i = 0; i < BrokerCore::kMaxWorkerMessagesPerTurn; ++i) from_worker("w1", beat);
  EXPECT_TRUE(core_->turn_full());
}

// A Ready forgets the sessions it replaced, not by walking every peer.
TEST_F(BrokerCoreTest, AWorkerReconnectingOnANewSocketLeavesNothingOfItsOldSession) {
  ready("old-socket");
  core_->end_turn();
  wire::WorkerMessage again;
  auto* r = again.mutable_ready();
  r->set_version(common::kProtocolVersion);
  r->set_name("old-socket");  // the same worker (no instance), from another connection
  r->set_slots(4);
  from_worker("new-socket", again);
  core_->end_turn();
  ports_.take_worker_mail();
  wire::WorkerMessage beat;
  beat.mutable_heartbeat();
  from_worker("old-socket", beat);
  from_worker("new-socket", beat);
  bool reconnect = false;
  for (auto& [rid, msg] : ports_.take_worker_mail()) {
    if (msg.has_reconnect()) {
      EXPECT_EQ(rid, "old-socket");
      reconnect = true;
    }
  }
  EXPECT_TRUE(reconnect) << "the replaced session was still served";
  EXPECT_EQ(core_->farm().scheduler->workers().size(), 1u);
}

// Sessions the scheduler forgot (silent for 100 liveness periods) are dropped
// by the heartbeat round, which no longer beats them.
TEST_F(BrokerCoreTest, ASessionLostLongAgoGetsNoMoreHeartbeats) {
  ready("w1");
  ready("w2");
  core_->end_turn();
  ports_.take_worker_mail();
  clock_.advance(std::chrono::seconds(400));
  wire::WorkerMessage beat;
  beat.mutable_heartbeat();
  from_worker("w2", beat);  // w2 stays in touch; w1 went silent long ago
  core_->end_turn();
  std::set<std::string> beaten;
  for (auto& [rid, msg] : ports_.take_worker_mail()) {
    if (msg.has_heartbeat()) beaten.insert(rid);
  }
  EXPECT_EQ(beaten, std::set<std::string>{"w2"});
}

// A big farm's heartbeats go out a slice per turn, the next turn due at once,
// and every session gets one per interval: none is skipped or beaten twice.
TEST_F(BrokerCoreTest, HeartbeatsOfABigFarmAreSpreadOverTurnsAndReachEverySessionOnce) {
  const size_t workers = WorkerLink::kBeatsPerTurn * 2 + 10;
  for (size_t w = 0; w < workers; ++w) ready(fmt::format("w{}", w));
  for (int turn = 0; turn < 10; ++turn) {  // the round the joining started
    core_->end_turn();
    if (core_->next_deadline() > clock_.steady()) break;
  }
  ports_.take_worker_mail();
  auto beats = [&] {
    std::vector<std::string> out;
    for (auto& [rid, msg] : ports_.take_worker_mail()) {
      if (msg.has_heartbeat()) out.push_back(rid);
    }
    return out;
  };
  for (int round = 0; round < 2; ++round) {
    clock_.advance(config_.broker.heartbeat_interval);
    // The workers stay in touch: none is lost while the round goes out.
    wire::WorkerMessage beat;
    beat.mutable_heartbeat();
    for (size_t w = 0; w < workers; ++w) from_worker(fmt::format("w{}", w), beat);
    std::multiset<std::string> beaten;
    int turns = 0;
    do {
      core_->end_turn();
      ++turns;
      std::vector<std::string> sent = beats();
      EXPECT_LE(sent.size(), WorkerLink::kBeatsPerTurn) << "one turn sent the whole round";
      beaten.insert(sent.begin(), sent.end());
    } while (core_->next_deadline() <= clock_.steady() && turns < 10);
    EXPECT_EQ(turns, 3) << "round " << round;
    EXPECT_EQ(beaten.size(), workers);
    EXPECT_EQ(std::set<std::string>(beaten.begin(), beaten.end()).size(), workers)
        << "a session was beaten twice in one round";
    EXPECT_GT(core_->next_deadline(), clock_.steady()) << "the loop may wait for the next round";
  }
}

// ------------------------------------------------------------------ action keys

TEST_F(BrokerCoreTest, ARetryResentWithItsKeyRetriesOnceAndGetsTheFirstReply) {
  wire::ClientRequest submit;
  submit.mutable_submit()->mutable_spec()->set_kind("noop");
  submit.mutable_submit()->mutable_spec()->set_tasks(2);
  submit.mutable_submit()->mutable_spec()->set_max_attempts(1);
  const uint64_t id = request(submit).submit().job_id();
  ready("w1");
  clock_.advance(std::chrono::seconds(3));
  core_->end_turn();
  for (const auto& a : assigns()) result("w1", a, false);
  core_->end_turn();
  ASSERT_EQ(status(id).status().job().state(), wire::JOB_FAILED);

  auto first = task_act(id, wire::JobActionRequest::RETRY, "", "retry-1");
  ASSERT_TRUE(first.ok()) << first.error();
  EXPECT_EQ(first.action().tasks_changed(), 2u);
  // The retried attempts run and fail again: the job is failed once more.
  core_->end_turn();
  std::vector<wire::Assign> second = assigns();
  ASSERT_EQ(second.size(), 2u);
  for (const auto& a : second) {
    EXPECT_EQ(a.attempt(), 2u);
    result("w1", a, false);
  }
  core_->end_turn();
  ASSERT_EQ(status(id).status().job().state(), wire::JOB_FAILED);

  // The first reply was "lost": the client sends the same request again.
  auto again = task_act(id, wire::JobActionRequest::RETRY, "", "retry-1");
  ASSERT_TRUE(again.ok()) << again.error();
  EXPECT_EQ(again.action().tasks_changed(), 2u);
  EXPECT_EQ(again.action().state(), first.action().state());
  EXPECT_EQ(status(id).status().job().state(), wire::JOB_FAILED) << "retried twice";
  EXPECT_EQ(task_info(id, 0).attempts(), 2u);
  core_->end_turn();
  EXPECT_TRUE(assigns().empty());

  // The same key with another request is refused.
  auto other = task_act(id, wire::JobActionRequest::RETRY, "0", "retry-1");
  EXPECT_FALSE(other.ok());
  EXPECT_EQ(other.error(),
            "idempotency key 'retry-1' was used for another request; use a new key for a new "
            "action");
  // ... and the key outlives a restart.
  start();
  auto after_restart = task_act(id, wire::JobActionRequest::RETRY, "", "retry-1");
  ASSERT_TRUE(after_restart.ok()) << after_restart.error();
  EXPECT_EQ(status(id).status().job().state(), wire::JOB_FAILED) << "retried after a restart";
  // A new key acts.
  auto fresh = task_act(id, wire::JobActionRequest::RETRY, "", "retry-2");
  ASSERT_TRUE(fresh.ok()) << fresh.error();
  EXPECT_EQ(fresh.action().tasks_changed(), 2u);
}

TEST_F(BrokerCoreTest, AnActionKeyIsStoredOnlyWithItsEffect) {
  const uint64_t id = submit_noop(2).submit().job_id();
  wire::ClientRequest pause;
  pause.mutable_action()->set_job_id(id);
  pause.mutable_action()->set_action(wire::JobActionRequest::PAUSE);
  pause.mutable_action()->set_idempotency_key("pause-1");
  faulty_.fail_writes();
  EXPECT_FALSE(request(pause).ok());
  EXPECT_EQ(disk_.action_key_count(), 0u);
  faulty_.heal();
  clock_.advance(std::chrono::seconds(1));
  core_->end_turn();
  // Not stored with a refused commit: the resend acts, and is stored with its effect.
  auto paused = request(pause);
  ASSERT_TRUE(paused.ok()) << paused.error();
  EXPECT_EQ(paused.action().state(), wire::JOB_PAUSED);
  EXPECT_TRUE(disk_.job(id)->paused);
  EXPECT_EQ(disk_.action_key_count(), 1u);
}

TEST_F(BrokerCoreTest, KeysOfJobSetWorkerControlAndLimitSetAnswerRepeatsFromTheStore) {
  const uint64_t id = submit_noop(1).submit().job_id();
  wire::ClientRequest set;
  set.mutable_job_set()->set_job_id(id);
  set.mutable_job_set()->set_priority(5);
  set.mutable_job_set()->set_idempotency_key("set-1");
  ASSERT_TRUE(request(set).ok());
  ready("w1");
  core_->end_turn();
  wire::ClientRequest control;
  control.mutable_worker_control()->set_name("w1");
  control.mutable_worker_control()->set_action(wire::WorkerControlRequest::DISABLE);
  control.mutable_worker_control()->set_idempotency_key("control-1");
  ASSERT_TRUE(request(control).ok());
  wire::ClientRequest limit;
  limit.mutable_limits()->mutable_set()->set_name("nuke");
  limit.mutable_limits()->mutable_set()->set_capacity(3);
  limit.mutable_limits()->mutable_set()->set_idempotency_key("limit-1");
  ASSERT_TRUE(request(limit).ok());
  EXPECT_EQ(disk_.action_key_count(), 3u);
  // A key reused by another kind of request is refused.
  limit.mutable_limits()->mutable_set()->set_idempotency_key("set-1");
  auto reused = request(limit);
  EXPECT_FALSE(reused.ok());
  EXPECT_EQ(reused.error(),
            "idempotency key 'set-1' was used for another request; use a new key for a new action");
}

TEST_F(BrokerCoreTest, KilledAndSkippedTasksComeBackAsTheyWereAfterARestart) {
  wire::ClientRequest submit;
  submit.mutable_submit()->mutable_spec()->set_kind("noop");
  submit.mutable_submit()->mutable_spec()->set_tasks(3);
  const uint64_t id = request(submit).submit().job_id();
  ready("w1");
  clock_.advance(std::chrono::seconds(3));
  core_->end_turn();
  std::vector<wire::Assign> first = assigns();
  ASSERT_EQ(first.size(), 3u);
  auto killed = task_act(id, wire::JobActionRequest::KILL, "0");
  ASSERT_TRUE(killed.ok()) << killed.error();
  EXPECT_EQ(killed.action().tasks_changed(), 1u);
  auto skipped = task_act(id, wire::JobActionRequest::SKIP, "1");
  ASSERT_TRUE(skipped.ok()) << skipped.error();
  EXPECT_EQ(skipped.action().tasks_changed(), 1u);
  // The killed task went back to the queue and out again as attempt 2 (the
  // worker has a free slot) in the turn that killed it.
  std::vector<wire::Assign> rerun = assigns();
  ASSERT_EQ(rerun.size(), 1u);
  EXPECT_EQ(rerun[0].ref().task(), 0u);
  EXPECT_EQ(rerun[0].attempt(), 2u);
  start();
  EXPECT_EQ(task_info(id, 0).state(), wire::TASK_RUNNING);
  EXPECT_EQ(task_info(id, 0).attempts(), 2u);
  EXPECT_EQ(task_info(id, 1).state(), wire::TASK_SUCCEEDED);
  EXPECT_EQ(task_info(id, 1).error(), "skipped (farmhand skip)");
  EXPECT_EQ(task_info(id, 2).state(), wire::TASK_RUNNING);
  ready("w1", {rerun[0].ref(), first[2].ref()});
  // The killed attempt's late success is stale: attempt 2 still runs.
  result("w1", first[0], true);
  core_->end_turn();
  EXPECT_EQ(task_info(id, 0).state(), wire::TASK_RUNNING) << "the killed attempt counted";
  result("w1", rerun[0], true);
  result("w1", first[2], true);
  core_->end_turn();
  EXPECT_EQ(status(id).status().job().state(), wire::JOB_SUCCEEDED);
}

TEST_F(BrokerCoreTest, StatusSaysWhenTheJobAndEachTaskRanAndOnWhichWorkerAlsoOnceFinished) {
  // Two command-like tasks: their results carry a log, so their attempts are stored.
  const uint64_t id = submit_noop(2).submit().job_id();
  EXPECT_EQ(status(id).status().job().started_unix_ms(), 0) << "started before any dispatch";
  clock_.advance(std::chrono::seconds(2));
  ready("w1");
  core_->end_turn();
  core_->end_turn();
  auto sent = assigns();
  ASSERT_EQ(sent.size(), 2u);
  const int64_t dispatched = clock_.unix_ms();

  clock_.advance(std::chrono::seconds(3));
  auto running = status(id).status();
  EXPECT_EQ(running.job().started_unix_ms(), dispatched);
  ASSERT_EQ(running.tasks_size(), 2);
  for (const auto& task : running.tasks()) {
    EXPECT_EQ(task.worker(), "w1");
    EXPECT_EQ(task.started_unix_ms(), dispatched);
    EXPECT_DOUBLE_EQ(task.elapsed_s(), 3.0);
  }
  ASSERT_EQ(running.running_size(), 2);
  EXPECT_EQ(running.running(0).started_unix_ms(), dispatched);

  for (size_t i = 0; i < sent.size(); ++i) {
    wire::WorkerMessage msg;
    auto* r = msg.mutable_result();
    *r->mutable_ref() = sent[i].ref();
    r->set_succeeded(true);
    r->set_attempt(sent[i].attempt());
    r->set_log_tail("rendered\n");
    if (i == 0) {
      r->mutable_stats()->set_wall_s(2.5);  // measured: the start is the end minus it
    } else {
      r->set_elapsed_s(1.25);  // unmeasured: its elapsed time
    }
    from_worker("w1", msg);
  }
  core_->end_turn();
  const int64_t finished = clock_.unix_ms();

  auto check = [&](const char* when) {
    SCOPED_TRACE(when);
    auto done = status(id).status();
    EXPECT_EQ(done.job().state(), wire::JOB_SUCCEEDED);
    EXPECT_EQ(done.job().started_unix_ms(), dispatched);
    EXPECT_EQ(done.job().finished_unix_ms(), finished);
    ASSERT_EQ(done.tasks_size(), 2);
    EXPECT_EQ(done.tasks(0).worker(), "w1") << "a finished task lost its worker";
    EXPECT_EQ(done.tasks(0).started_unix_ms(), finished - 2500);
    EXPECT_DOUBLE_EQ(done.tasks(0).elapsed_s(), 2.5);
    EXPECT_EQ(done.tasks(1).worker(), "w1");
    EXPECT_EQ(done.tasks(1).started_unix_ms(), finished - 1250);
    EXPECT_DOUBLE_EQ(done.tasks(1).elapsed_s(), 1.25);
  };
  check("finished");
  clock_.advance(std::chrono::seconds(10));
  start();
  check("after a restart");
}

}  // namespace
}  // namespace farmhand::daemon

namespace farmhand::daemon {
namespace {

TEST_F(BrokerCoreTest, ProgressShowsWhatTheLeaseHolderReportedForTheAttemptThatRuns) {
  const uint64_t id = submit_noop(1).submit().job_id();
  ready("w1");
  ready("w2");
  clock_.advance(std::chrono::seconds(3));
  core_->end_turn();
  std::string holder;
  std::vector<wire::Assign> first;
  for (auto& [rid, msg] : ports_.take_worker_mail()) {
    if (!msg.has_assign()) continue;
    holder = rid;
    first.push_back(msg.assign());
  }
  ASSERT_EQ(first.size(), 1u);
  const std::string other = holder == "w1" ? "w2" : "w1";
  auto report = [&](const std::string& rid, const wire::TaskRef& ref, uint64_t done,
                    uint64_t total) {
    wire::WorkerMessage msg;
    *msg.mutable_progress()->mutable_ref() = ref;
    msg.mutable_progress()->set_done(done);
    msg.mutable_progress()->set_total(total);
    from_worker(rid, msg);
    core_->end_turn();
  };
  auto shown = [&]() -> std::pair<uint64_t, uint64_t> {
    const wire::StatusReply s = status(id).status();
    EXPECT_EQ(s.running_size(), 1);
    if (s.running_size() != 1) return {0, 0};
    return {s.running(0).progress_done(), s.running(0).progress_total()};
  };

  report(holder, first[0].ref(), 3, 240);
  EXPECT_EQ(shown(), std::make_pair(uint64_t{3}, uint64_t{240}));
  // Another worker naming the same task and lease is not its holder.
  report(other, first[0].ref(), 200, 240);
  EXPECT_EQ(shown(), std::make_pair(uint64_t{3}, uint64_t{240})) << "a forged report showed";
  // More done than there is: as much as there is.
  report(holder, first[0].ref(), 999, 240);
  EXPECT_EQ(shown(), std::make_pair(uint64_t{240}, uint64_t{240}));

  // Killed, the task runs again as a new attempt: the old attempt's frames are not its own.
  ASSERT_TRUE(task_act(id, wire::JobActionRequest::KILL, "0").ok());
  std::vector<wire::Assign> rerun = assigns();
  ASSERT_EQ(rerun.size(), 1u);
  EXPECT_EQ(shown(), std::make_pair(uint64_t{0}, uint64_t{0})) << "the killed attempt's progress";
  // A late report of the killed attempt does not show either.
  report(holder, first[0].ref(), 120, 240);
  EXPECT_EQ(shown(), std::make_pair(uint64_t{0}, uint64_t{0})) << "a stale report showed";
}

// What the broker sets of adaptive chunks is refused from a client, and a
// chunk target is refused where chunks must stay short.
TEST_F(BrokerCoreTest, AdaptiveChunkFieldsTheBrokerSetsAreRefusedFromAClient) {
  struct Case {
    std::function<void(wire::JobSpec&)> set;
    std::string says;
  };

  const std::vector<Case> cases = {
      {[](wire::JobSpec& s) { s.add_chunk_runs()->set_tasks(1); }, "broker's to set"},
      {[](wire::JobSpec& s) { s.set_chunk_now(5); }, "broker's to set"},
      {[](wire::JobSpec& s) { s.mutable_openjd_chunking()->set_stride(4); }, "broker's to set"},
      {[](wire::JobSpec& s) { s.set_chunk_max_gap(1); }, "chunk_max_gap needs a chunk target"},
      {[](wire::JobSpec& s) { s.set_chunk_target_s(8 * 24 * 3600); }, "over the limit"},
      {[](wire::JobSpec& s) {
         s.set_kind("thumbnail");
         s.set_lane("interactive");
         s.set_chunk_target_s(60);
       },
       "the interactive lane's tasks keep their size"},
      {[](wire::JobSpec& s) { s.add_tag_choices(); }, "a tag choice has 0 tags"},
  };
  for (const Case& c : cases) {
    wire::ClientRequest req;
    wire::JobSpec& spec = *req.mutable_submit()->mutable_spec();
    spec.set_kind("noop");
    spec.set_frames("1-10");
    c.set(spec);
    const wire::ClientReply reply = request(req);
    EXPECT_FALSE(reply.ok()) << c.says;
    EXPECT_NE(reply.error().find(c.says), std::string::npos) << reply.error();
  }
  EXPECT_EQ(disk_.job(1), nullptr);
  // A chunk target alone is a job in balanced chunks.
  wire::ClientRequest ok;
  wire::JobSpec& spec = *ok.mutable_submit()->mutable_spec();
  spec.set_kind("noop");
  spec.set_frames("1-12");
  spec.set_chunk(5);
  spec.set_chunk_target_s(60);
  const wire::ClientReply made = request(ok);
  ASSERT_TRUE(made.ok()) << made.error();
  EXPECT_EQ(made.submit().task_count(), 3u);
  wire::JobSpec stored;
  ASSERT_NE(disk_.job(made.submit().job_id()), nullptr);
  ASSERT_TRUE(stored.ParseFromString(disk_.job(made.submit().job_id())->spec));
  ASSERT_EQ(stored.chunk_runs_size(), 1);  // kept with the job: 3 tasks of 4 frames
  EXPECT_EQ(stored.chunk_runs(0).tasks(), 3u);
  EXPECT_EQ(stored.chunk_runs(0).frames(), 4u);
  EXPECT_EQ(stored.chunk_now(), 5u);
}

// ------------------------------------------------------------ Open Job Description

// A render in chunks of 4, an encode after it, and a report beside them.
constexpr const char* kOpenJdTemplate = R"(specificationVersion: jobtemplate-2023-09
extensions: [TASK_CHUNKING]
name: Shot {{Param.Shot}}
parameterDefinitions:
  - name: Shot
    type: STRING
  - name: Frames
    type: INT
    default: 10
    minValue: 1
steps:
  - name: Render
    parameterSpace:
      taskParameterDefinitions:
        - name: Frame
          type: CHUNK[INT]
          range: "1-{{Param.Frames}}"
          chunks:
            defaultTaskCount: 4
            rangeConstraint: CONTIGUOUS
    hostRequirements:
      amounts:
        - name: amount.worker.vcpu
          min: 2
        - name: amount.worker.memory
          min: 1024
    script:
      actions:
        onRun:
          command: render
          args: ["{{Task.Param.Frame}}"]
  - name: Encode
    dependencies:
      - dependsOn: Render
    script:
      actions:
        onRun:
          command: encode
  - name: Report
    script:
      actions:
        onRun:
          command: report
)";

class OpenJdSubmitTest : public BrokerCoreTest {
 protected:
  OpenJdSubmitTest() {
    config_.openjd.enabled = true;
    config_.openjd.executables = {"render", "encode", "report"};
    start();  // on this config
  }

  wire::ClientReply submit_openjd(const std::string& text,
                                  const std::map<std::string, std::string>& values,
                                  const std::string& key = "") {
    wire::ClientRequest req;
    wire::OpenJdSource& source = *req.mutable_submit_openjd()->mutable_source();
    source.set_template_(text);
    source.set_template_name("shot.yaml");
    source.set_template_dir("/tmp");
    source.set_working_dir("/tmp");
    for (const auto& [name, value] : values) {
      wire::OpenJdParam& p = *source.add_parameters();
      p.set_name(name);
      p.set_value(value);
    }
    req.mutable_submit_openjd()->mutable_options()->set_idempotency_key(key);
    req.mutable_submit_openjd()->mutable_options()->set_priority(7);
    return request(req);
  }

  // A worker that says what it has (64 GiB of memory).
  void sized_worker(const std::string& name, uint32_t slots, uint32_t cores) {
    wire::WorkerMessage msg;
    auto* r = msg.mutable_ready();
    r->set_version(common::kProtocolVersion);
    r->set_name(name);
    r->set_slots(slots);
    r->set_cores(cores);
    r->set_memory_bytes(64ull << 30);
    from_worker(name, msg);
  }

  static std::string with(const std::string& text, const std::string& from, const std::string& to) {
    std::string out = text;
    out.replace(out.find(from), from.size(), to);
    return out;
  }
};

TEST_F(OpenJdSubmitTest, RefusedWithOneLineWhileTheConfigLeavesTemplatesOff) {
  config_.openjd.enabled = false;
  start();
  const wire::ClientReply reply = submit_openjd(kOpenJdTemplate, {{"Shot", "sh010"}});
  EXPECT_FALSE(reply.ok());
  EXPECT_EQ(reply.error().find('\n'), std::string::npos);
  EXPECT_NE(reply.error().find("Open Job Description jobs are off on this farm"), std::string::npos)
      << reply.error();
  EXPECT_EQ(disk_.job(1), nullptr);
}

TEST_F(OpenJdSubmitTest, ATemplateBecomesOneJobPerStepEachAfterTheStepsItDependsOn) {
  const wire::ClientReply reply = submit_openjd(kOpenJdTemplate, {{"Shot", "sh010"}});
  ASSERT_TRUE(reply.ok()) << reply.error();
  const wire::SubmitOpenJdReply& out = reply.submit_openjd();
  EXPECT_EQ(out.job_name(), "Shot sh010");
  ASSERT_EQ(out.steps_size(), 3);
  EXPECT_EQ(out.steps(0).step(), "Render");
  EXPECT_EQ(out.steps(0).task_count(), 3u);  // 1-10 in chunks of 4: 1-4, 5-7, 8-10
  EXPECT_EQ(out.steps(1).step(), "Encode");
  EXPECT_EQ(out.steps(1).task_count(), 1u);
  EXPECT_EQ(out.steps(2).step(), "Report");
  const uint64_t render = out.steps(0).job_id();
  const uint64_t encode = out.steps(1).job_id();
  const uint64_t report = out.steps(2).job_id();
  for (uint64_t id : {render, encode, report}) ASSERT_NE(disk_.job(id), nullptr) << id;

  const wire::JobSummary job = status(encode).status().job();
  EXPECT_EQ(job.kind(), "openjd");
  EXPECT_EQ(job.name(), "Shot sh010 / Encode");
  EXPECT_EQ(job.labels().at("openjd.step"), "Encode");
  EXPECT_EQ(job.labels().at("openjd.job"), "Shot sh010");
  EXPECT_EQ(job.priority(), 7);
  ASSERT_EQ(job.after_size(), 1);
  EXPECT_EQ(job.after(0), render);
  EXPECT_EQ(status(report).status().job().after_size(), 0);

  // Render and Report run; Encode waits for Render. Host requirements became
  // the Render job's request, so a 1-core worker takes none of its tasks.
  sized_worker("small", 4, 1);
  core_->end_turn();
  std::set<uint64_t> jobs;
  for (const wire::Assign& a : assigns()) jobs.insert(a.ref().job_id());
  EXPECT_EQ(jobs, (std::set<uint64_t>{report}));
  const wire::JobSummary render_job = status(render).status().job();
  EXPECT_EQ(render_job.cores(), 2u);
  EXPECT_EQ(render_job.memory_bytes(), 1024ull << 20);
}

TEST_F(OpenJdSubmitTest, EachTaskCarriesTheTemplateItsStepAndTheFarmsRules) {
  config_.path_mapping.push_back({"WINDOWS", "Z:\\projects", "/mnt/projects", 1});
  start();
  const wire::ClientReply reply = submit_openjd(kOpenJdTemplate, {{"Shot", "sh010"}});
  ASSERT_TRUE(reply.ok()) << reply.error();
  sized_worker("big", 8, 16);
  core_->end_turn();
  std::map<std::pair<uint64_t, uint64_t>, wire::Assign> sent;
  for (const wire::Assign& a : assigns()) sent[{a.ref().job_id(), a.ref().task()}] = a;
  const uint64_t render = reply.submit_openjd().steps(0).job_id();
  ASSERT_EQ(sent.count({render, 2}), 1u);
  const wire::Assign& a = sent.at({render, 2});
  EXPECT_EQ(a.kind(), "openjd");
  ASSERT_TRUE(a.has_openjd());
  EXPECT_EQ(a.openjd().step(), "Render");
  EXPECT_EQ(a.openjd().source().template_(), kOpenJdTemplate);
  ASSERT_EQ(a.openjd().source().parameters_size(), 1);
  EXPECT_EQ(a.openjd().source().parameters(0).value(), "sh010");
  EXPECT_EQ(
      std::vector<std::string>(a.openjd().executables().begin(), a.openjd().executables().end()),
      config_.openjd.executables);
  EXPECT_FALSE(a.openjd().any_executable());
  EXPECT_FALSE(a.openjd().allow_root());
  ASSERT_EQ(a.openjd().path_mapping_size(), 1);
  EXPECT_EQ(a.openjd().path_mapping(0).destination_path(), "/mnt/projects");
  // The steps of one submission share sessions on a worker: keyed by its first job.
  EXPECT_EQ(a.openjd().session_key(), render);
  const uint64_t report = reply.submit_openjd().steps(2).job_id();
  ASSERT_EQ(sent.count({report, 0}), 1u);
  EXPECT_EQ(sent.at({report, 0}).openjd().session_key(), render);
}

TEST_F(OpenJdSubmitTest, WhatTheSpecificationRefusesMakesNoJobAtAll) {
  struct Case {
    std::string text;
    std::map<std::string, std::string> values;
    std::string says;
  };

  const std::vector<Case> cases = {
      {kOpenJdTemplate, {}, "Shot"},  // a parameter without a default, not given
      {kOpenJdTemplate, {{"Shot", "a"}, {"Frames", "0"}}, "Frames"},  // under minValue
      {with(kOpenJdTemplate, "dependsOn: Render", "dependsOn: Paint"), {{"Shot", "a"}}, "Paint"},
      {with(kOpenJdTemplate,
            "    script:\n      actions:\n        onRun:\n          command: report",
            "    hostRequirements:\n      attributes:\n        - name: attr.worker.os.family\n"
            "          anyOf: [windows]\n    script:\n      actions:\n        onRun:\n"
            "          command: report"),
       {{"Shot", "a"}},
       "os.family"},
      {with(kOpenJdTemplate, "name: amount.worker.memory", "name: amount.worker.disk.scratch"),
       {{"Shot", "a"}},
       "amount.worker.disk.scratch"},
  };
  for (const Case& c : cases) {
    const wire::ClientReply reply = submit_openjd(c.text, c.values);
    EXPECT_FALSE(reply.ok()) << c.says;
    SCOPED_TRACE(reply.error());
    EXPECT_EQ(reply.error().find('\n'), std::string::npos) << reply.error();
    EXPECT_NE(reply.error().find(c.says), std::string::npos) << reply.error();
  }
  // Not one step of any of them was made.
  EXPECT_EQ(disk_.job(1), nullptr);
  ASSERT_TRUE(submit_openjd(kOpenJdTemplate, {{"Shot", "ok"}}).ok());
  EXPECT_NE(disk_.job(1), nullptr);
}

TEST_F(OpenJdSubmitTest, AResentKeyGetsTheSameJobsAndAnotherTemplateUnderItIsRefused) {
  const wire::ClientReply first = submit_openjd(kOpenJdTemplate, {{"Shot", "sh010"}}, "k-1");
  ASSERT_TRUE(first.ok()) << first.error();
  EXPECT_FALSE(first.submit_openjd().duplicate());
  const wire::ClientReply again = submit_openjd(kOpenJdTemplate, {{"Shot", "sh010"}}, "k-1");
  ASSERT_TRUE(again.ok()) << again.error();
  EXPECT_TRUE(again.submit_openjd().duplicate());
  ASSERT_EQ(again.submit_openjd().steps_size(), 3);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(again.submit_openjd().steps(i).job_id(), first.submit_openjd().steps(i).job_id());
  }
  EXPECT_EQ(disk_.job(4), nullptr);
  const wire::ClientReply other = submit_openjd(kOpenJdTemplate, {{"Shot", "sh020"}}, "k-1");
  EXPECT_FALSE(other.ok());
  EXPECT_NE(other.error().find("idempotency key 'k-1' was used"), std::string::npos)
      << other.error();
  // And after a restart, on what is on disk.
  start();
  const wire::ClientReply later = submit_openjd(kOpenJdTemplate, {{"Shot", "sh010"}}, "k-1");
  ASSERT_TRUE(later.ok()) << later.error();
  EXPECT_EQ(later.submit_openjd().steps(0).job_id(), first.submit_openjd().steps(0).job_id());
}

TEST_F(OpenJdSubmitTest, PathValuesMappedAsWorkersMapThemMustLieUnderTheAllowedRoots) {
  config_.broker.allowed_roots = {"/mnt/projects"};
  config_.path_mapping.push_back({"WINDOWS", "Z:\\projects", "/mnt/projects", 1});
  start();
  const std::string text = with(kOpenJdTemplate, "  - name: Frames\n",
                                "  - name: Scene\n    type: PATH\n  - name: Frames\n");
  EXPECT_TRUE(submit_openjd(text, {{"Shot", "a"}, {"Scene", "Z:\\projects\\a\\a.ma"}}).ok());
  const wire::ClientReply outside = submit_openjd(text, {{"Shot", "b"}, {"Scene", "/etc/passwd"}});
  EXPECT_FALSE(outside.ok());
  EXPECT_NE(outside.error().find("parameter Scene /etc/passwd is outside the allowed roots"),
            std::string::npos)
      << outside.error();
}

TEST_F(OpenJdSubmitTest, AnOpenJdJobSentAsAPlainSubmitRunsOnlyWhatItsStepHas) {
  const wire::ClientReply made = submit_openjd(kOpenJdTemplate, {{"Shot", "sh010"}});
  ASSERT_TRUE(made.ok()) << made.error();
  wire::JobSpec spec;
  ASSERT_NE(disk_.job(made.submit_openjd().steps(0).job_id()), nullptr);
  ASSERT_TRUE(spec.ParseFromString(disk_.job(made.submit_openjd().steps(0).job_id())->spec));
  // Frames the step does not have are replaced by its own tasks.
  wire::ClientRequest req;
  *req.mutable_submit()->mutable_spec() = spec;
  req.mutable_submit()->mutable_spec()->set_frames("1-100000");
  req.mutable_submit()->mutable_spec()->clear_request_fingerprint();
  const wire::ClientReply forged = request(req);
  ASSERT_TRUE(forged.ok()) << forged.error();
  EXPECT_EQ(forged.submit().task_count(), 3u);
  // A step the template does not have is refused.
  req.mutable_submit()->mutable_spec()->set_openjd_step("Composite");
  const wire::ClientReply unknown = request(req);
  EXPECT_FALSE(unknown.ok());
  EXPECT_NE(unknown.error().find("the template has no step Composite"), std::string::npos)
      << unknown.error();
}

// Frames 1-10 in chunks of 4 that should take a minute each, alone and for
// each of two layers.
constexpr const char* kAdaptiveTemplate = R"(specificationVersion: jobtemplate-2023-09
extensions: [TASK_CHUNKING]
name: Adaptive
steps:
  - name: Render
    parameterSpace:
      taskParameterDefinitions:
        - name: Frame
          type: CHUNK[INT]
          range: "1-10"
          chunks:
            defaultTaskCount: 4
            targetRuntimeSeconds: 60
            rangeConstraint: CONTIGUOUS
    script:
      actions:
        onRun:
          command: render
          args: ["{{Task.Param.Frame}}"]
  - name: Layers
    parameterSpace:
      taskParameterDefinitions:
        - name: Layer
          type: STRING
          range: [fg, bg]
        - name: Frame
          type: CHUNK[INT]
          range: "1-10"
          chunks:
            defaultTaskCount: 4
            targetRuntimeSeconds: 60
            rangeConstraint: NONCONTIGUOUS
    script:
      actions:
        onRun:
          command: render
          args: ["{{Task.Param.Layer}}", "{{Task.Param.Frame}}"]
)";

TEST_F(OpenJdSubmitTest, AStepWithATargetRuntimeIsAJobOfItsFramesInChunksThatAdapt) {
  const wire::ClientReply reply = submit_openjd(kAdaptiveTemplate, {});
  ASSERT_TRUE(reply.ok()) << reply.error();
  EXPECT_EQ(reply.submit_openjd().warnings_size(), 0);
  const uint64_t render = reply.submit_openjd().steps(0).job_id();
  const uint64_t layers = reply.submit_openjd().steps(1).job_id();
  EXPECT_EQ(reply.submit_openjd().steps(0).task_count(), 3u);
  const wire::JobSummary job = status(render).status().job();
  EXPECT_EQ(job.frames(), "1-10");  // the values themselves
  EXPECT_EQ(job.chunk_target_s(), 60u);
  EXPECT_EQ(job.chunk_now(), 4u);
  EXPECT_EQ(job.task_count(), 3u);
  // Beside another parameter, each layer's frames stand apart.
  const wire::JobSummary layered = status(layers).status().job();
  EXPECT_EQ(layered.chunk_target_s(), 60u);
  EXPECT_EQ(layered.task_count(), 6u);
  EXPECT_EQ(layered.frames_total(), 20u);

  sized_worker("big", 8, 16);
  core_->end_turn();
  std::map<std::pair<uint64_t, uint64_t>, wire::OpenJdTask> sent;
  for (const wire::Assign& a : assigns()) sent[{a.ref().job_id(), a.ref().task()}] = a.openjd();
  ASSERT_EQ(sent.size(), 8u);
  // Balanced, as the template's own chunks: 1-4, 5-7, 8-10.
  EXPECT_EQ(sent.at({render, 0}).chunk(), "1-4");
  EXPECT_EQ(sent.at({render, 1}).chunk(), "5-7");
  EXPECT_EQ(sent.at({render, 2}).chunk(), "8-10");
  EXPECT_EQ(sent.at({render, 0}).task_parameters_size(), 0);
  // Each layer's task is a chunk of that layer's frames (in task order, the
  // two of fg, then bg's).
  const std::vector<std::string> expected = {"fg 1-4", "fg 5-7", "fg 8-10",
                                             "bg 1-4", "bg 5-7", "bg 8-10"};
  size_t seen = 0;
  for (const auto& [key, task] : sent) {
    if (key.first != layers) continue;
    ASSERT_EQ(task.task_parameters_size(), 1) << key.second;
    EXPECT_EQ(task.task_parameters(0).name(), "Layer");
    EXPECT_EQ(task.task_parameters(0).value() + " " + task.chunk(), expected.at(key.second));
    ++seen;
  }
  EXPECT_GE(seen, 4u);  // bg's first at least
}

// Custom host attributes and cpu.arch as tags a worker must have.
constexpr const char* kAttributesTemplate = R"(specificationVersion: jobtemplate-2023-09
name: Attributes
steps:
  - name: Render
    hostRequirements:
      attributes:
        - name: attr.worker.os.family
          anyOf: [linux, windows]
        - name: ATTR.WORKER.CPU.ARCH
          anyOf: [x86_64, arm64]
        - name: attr.site
          allOf: [london]
    script:
      actions:
        onRun:
          command: render
)";

TEST_F(OpenJdSubmitTest, HostAttributesAreTagsAWorkerMustHave) {
  const wire::ClientReply reply = submit_openjd(kAttributesTemplate, {});
  ASSERT_TRUE(reply.ok()) << reply.error();
  EXPECT_EQ(reply.submit_openjd().warnings_size(), 0);
  const uint64_t render = reply.submit_openjd().steps(0).job_id();
  const wire::JobSummary job = status(render).status().job();
  EXPECT_EQ(std::vector<std::string>(job.tag_choices().begin(), job.tag_choices().end()),
            (std::vector<std::string>{"cpu.arch=x86_64|cpu.arch=arm64", "site=london"}));

  auto tagged = [&](const std::string& name, std::vector<std::string> tags) {
    wire::WorkerMessage msg;
    auto* r = msg.mutable_ready();
    r->set_version(common::kProtocolVersion);
    r->set_name(name);
    r->set_slots(1);
    for (const std::string& tag : tags) r->add_tags(tag);
    from_worker(name, msg);
    core_->end_turn();
  };
  // A worker in Paris takes nothing, and the job says why.
  tagged("paris", {"os.family=linux", "cpu.arch=x86_64", "site=paris"});
  EXPECT_TRUE(assigns().empty());
  const std::string waiting = status(render).status().waiting_reason();
  EXPECT_NE(waiting.find("no live worker that serves the job has the tags it needs "
                         "(cpu.arch=x86_64|cpu.arch=arm64, site=london"),
            std::string::npos)
      << waiting;
  // An arm64 worker in London takes it.
  tagged("london", {"os.family=linux", "cpu.arch=arm64", "site=london"});
  std::vector<wire::Assign> sent = assigns();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].ref().job_id(), render);
  EXPECT_EQ(status(render).status().waiting_reason(), "");
}

// amount.worker.gpu: a worker's GPUs, packed as cores are.
TEST_F(OpenJdSubmitTest, GpusAStepAsksForGoOnlyToWorkersWithThatManyFree) {
  const std::string text = with(kAttributesTemplate, "      attributes:\n",
                                "      amounts:\n        - name: amount.worker.gpu\n"
                                "          min: 1\n      attributes:\n");
  const wire::ClientReply reply = submit_openjd(text, {});
  ASSERT_TRUE(reply.ok()) << reply.error();
  const uint64_t render = reply.submit_openjd().steps(0).job_id();
  EXPECT_EQ(status(render).status().job().gpus(), 1u);
  auto worker = [&](const std::string& name, uint32_t gpus) {
    wire::WorkerMessage msg;
    auto* r = msg.mutable_ready();
    r->set_version(common::kProtocolVersion);
    r->set_name(name);
    r->set_slots(4);
    r->set_gpus(gpus);
    for (const char* tag : {"cpu.arch=x86_64", "site=london"}) r->add_tags(tag);
    from_worker(name, msg);
    core_->end_turn();
  };
  worker("cpu-only", 0);
  EXPECT_TRUE(assigns().empty());
  const std::string waiting = status(render).status().waiting_reason();
  EXPECT_NE(waiting.find("each asks for 1 GPU, and the largest worker that serves any pool has "
                         "0 GPUs"),
            std::string::npos)
      << waiting;
  worker("gpu", 2);
  std::vector<wire::Assign> sent = assigns();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].gpus(), 1u);
}

}  // namespace
}  // namespace farmhand::daemon
