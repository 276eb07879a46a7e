#include "daemon/core/hook_outbox.h"

#include <gtest/gtest.h>

namespace farmhand::core {
namespace {

constexpr int64_t kT0 = 1'800'000'000'000;

HookDelivery make(uint64_t seq, JobId job, std::string hook = "tracker") {
  HookDelivery d;
  d.id = "d" + std::to_string(seq);
  d.seq = seq;
  d.hook = std::move(hook);
  d.event = "job.succeeded";
  d.job = job;
  d.created_unix_ms = kT0;
  return d;
}

std::vector<std::string> ids(const std::vector<HookDelivery>& due) {
  std::vector<std::string> out;
  for (const auto& d : due) out.push_back(d.id);
  return out;
}

HookOutbox outbox_with(HookPolicy policy) {
  HookOutbox box;
  box.set_policy("tracker", policy);
  return box;
}

TEST(HookOutboxTest, DeliveriesOfOneJobGoOneAtATimeInOrder) {
  HookOutbox box;
  box.add(make(1, 7));
  box.add(make(2, 7));
  box.add(make(3, 8));
  EXPECT_EQ(ids(box.take_due(kT0)), (std::vector<std::string>{"d1", "d3"}));
  EXPECT_TRUE(box.take_due(kT0).empty());  // in flight, and d2 waits for d1
  EXPECT_EQ(box.delivered("d1"), HookOutbox::Outcome::kDelivered);
  EXPECT_EQ(ids(box.take_due(kT0)), (std::vector<std::string>{"d2"}));
}

TEST(HookOutboxTest, DeliveriesNotAboutAJobAreNotOrdered) {
  HookOutbox box;
  box.add(make(1, 0));
  box.add(make(2, 0));
  EXPECT_EQ(ids(box.take_due(kT0)), (std::vector<std::string>{"d1", "d2"}));
}

TEST(HookOutboxTest, HooksAreOrderedSeparately) {
  HookOutbox box;
  box.add(make(1, 7, "a"));
  box.add(make(2, 7, "b"));
  EXPECT_EQ(ids(box.take_due(kT0)), (std::vector<std::string>{"d1", "d2"}));
}

TEST(HookOutboxTest, FailedAttemptRetriesAfterDoublingBackoffUpToTheCap) {
  HookPolicy policy;
  policy.backoff_base = Millis(1000);
  policy.backoff_max = Millis(5000);
  HookOutbox box = outbox_with(policy);
  box.add(make(1, 7));
  box.add(make(2, 7));
  int64_t now = kT0;
  const int64_t waits[] = {1000, 2000, 4000, 5000, 5000};
  for (int64_t wait : waits) {
    ASSERT_EQ(ids(box.take_due(now)), (std::vector<std::string>{"d1"}));
    HookDelivery changed;
    EXPECT_EQ(box.attempt_failed("d1", "connection refused", now, &changed),
              HookOutbox::Outcome::kRetry);
    EXPECT_EQ(changed.next_unix_ms, now + wait);
    EXPECT_EQ(box.next_due(), now + wait);
    EXPECT_TRUE(box.take_due(now + wait - 1).empty());  // d2 never overtakes d1
    now += wait;
  }
  EXPECT_EQ(box.counts("tracker").oldest_pending->last_error, "connection refused");
  EXPECT_EQ(box.counts("tracker").oldest_pending->attempts, 5u);
}

TEST(HookOutboxTest, GivesUpOnceOlderThanTheLimitAndTheNextOfTheJobGoes) {
  HookPolicy policy;
  policy.give_up_after = Millis(60'000);
  HookOutbox box = outbox_with(policy);
  box.add(make(1, 7));
  box.add(make(2, 7));
  ASSERT_EQ(ids(box.take_due(kT0)), (std::vector<std::string>{"d1"}));
  EXPECT_EQ(box.attempt_failed("d1", "503", kT0 + 59'999, nullptr), HookOutbox::Outcome::kRetry);
  const int64_t later = *box.next_due();
  ASSERT_EQ(ids(box.take_due(later)), (std::vector<std::string>{"d1"}));
  HookDelivery changed;
  EXPECT_EQ(box.attempt_failed("d1", "503", kT0 + 60'000, &changed), HookOutbox::Outcome::kGaveUp);
  EXPECT_TRUE(changed.failed);
  auto counts = box.counts("tracker");
  EXPECT_EQ(counts.failed, 1u);
  EXPECT_EQ(counts.pending, 1u);
  EXPECT_EQ(counts.last_failed->id, "d1");
  EXPECT_EQ(ids(box.take_due(kT0 + 60'000)), (std::vector<std::string>{"d2"}));
}

TEST(HookOutboxTest, CountsDeliveredPendingAndOldest) {
  HookOutbox box;
  box.set_delivered("tracker", 5);
  box.add(make(3, 1));
  box.add(make(4, 2));
  ASSERT_EQ(box.take_due(kT0).size(), 2u);
  box.delivered("d3");
  auto counts = box.counts("tracker");
  EXPECT_EQ(counts.delivered, 6u);
  EXPECT_EQ(counts.pending, 1u);
  EXPECT_EQ(counts.oldest_pending->id, "d4");
  EXPECT_EQ(box.delivered("d3"), HookOutbox::Outcome::kUnknown);  // a duplicate outcome
}

TEST(HookOutboxTest, InFlightIsCappedPerHook) {
  HookPolicy policy;
  policy.max_in_flight = 2;
  HookOutbox box = outbox_with(policy);
  for (uint64_t i = 1; i <= 4; ++i) box.add(make(i, i));
  EXPECT_EQ(box.take_due(kT0).size(), 2u);
  EXPECT_TRUE(box.take_due(kT0).empty());
  box.delivered("d1");
  EXPECT_EQ(ids(box.take_due(kT0)), (std::vector<std::string>{"d3"}));
}

TEST(HookOutboxTest, AfterARestartInFlightDeliveriesAreSentAgain) {
  HookOutbox box;
  box.add(make(1, 7));
  ASSERT_EQ(box.take_due(kT0).size(), 1u);
  box.forget_in_flight();
  EXPECT_EQ(ids(box.take_due(kT0)), (std::vector<std::string>{"d1"}));
}

}  // namespace
}  // namespace farmhand::core
