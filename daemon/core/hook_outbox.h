// HookOutbox: the webhook deliveries not yet delivered, and which of them to
// send now — the ordering and retry policy of daemon/hooks.h, without a socket,
// store or clock.
//
// Deliveries of one hook about one job go out one at a time, in the order the
// events happened: a later one waits until every earlier one was delivered or
// given up. Deliveries not about a job (job 0) are not ordered. A failed
// attempt is tried again after backoff_base, doubling up to backoff_max; a
// delivery that fails once it is older than give_up_after is given up.
// Time arrives as wall-clock milliseconds (deliveries outlive the process).
// Not thread-safe: the event loop owns it.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "daemon/core/scheduler.h"

namespace farmhand::core {

struct HookDelivery {
  std::string id;    // unique; the receiver's deduplication key (X-Farmhand-Delivery)
  uint64_t seq = 0;  // creation order, over every hook
  std::string hook;  // the hook's name
  std::string event;
  JobId job = 0;     // 0: not about a job
  std::string body;  // the exact JSON sent
  int64_t created_unix_ms = 0;
  uint32_t attempts = 0;
  int64_t next_unix_ms = 0;  // not before
  std::string last_error;
  bool failed = false;  // given up
  int64_t failed_unix_ms = 0;
};

struct HookPolicy {
  Millis backoff_base{1'000};
  Millis backoff_max{300'000};
  Millis give_up_after{3LL * 24 * 3600 * 1000};
  // Attempts of one hook in flight at once: a receiver that hangs holds a few.
  uint32_t max_in_flight = 16;
};

class HookOutbox {
 public:
  void set_policy(const std::string& hook, HookPolicy policy) { policies_[hook] = policy; }

  // A new delivery, or one loaded from the store (pending or failed).
  void add(HookDelivery delivery);

  // Deliveries acknowledged before (the store's count), for counts().
  void set_delivered(const std::string& hook, uint64_t count) { delivered_[hook] = count; }

  // The pending deliveries to send now, in order; each is in flight until its
  // outcome is reported. Returns copies (the sender keeps them).
  std::vector<HookDelivery> take_due(int64_t now_unix_ms);

  enum class Outcome { kDelivered, kRetry, kGaveUp, kUnknown };

  // An attempt's outcome. The delivery after it (kRetry, kGaveUp) is written
  // to `changed`; kDelivered removes it (and names its hook in `hook`).
  Outcome delivered(const std::string& id, std::string* hook = nullptr);
  Outcome attempt_failed(const std::string& id, const std::string& error, int64_t now_unix_ms,
                         HookDelivery* changed);

  // Nothing is in flight any more (the sender was restarted with the store).
  void forget_in_flight() { in_flight_.clear(); }

  void clear();

  // When take_due() next has something (nullopt: nothing pending that is not in flight).
  std::optional<int64_t> next_due() const;

  struct Counts {
    uint64_t pending = 0;
    uint64_t delivered = 0;
    uint64_t failed = 0;
    const HookDelivery* oldest_pending = nullptr;
    const HookDelivery* last_failed = nullptr;
  };

  Counts counts(const std::string& hook) const;

  size_t pending_size() const { return pending_.size(); }

  uint64_t max_seq() const { return max_seq_; }

 private:
  HookPolicy policy(const std::string& hook) const;

  std::map<uint64_t, HookDelivery> pending_;  // by seq
  std::unordered_map<std::string, uint64_t> seq_of_;
  std::set<std::string> in_flight_;
  std::map<std::string, uint64_t> delivered_;
  std::map<std::string, std::vector<HookDelivery>> failed_;  // by hook, oldest first
  std::map<std::string, HookPolicy> policies_;
  uint64_t max_seq_ = 0;
};

// The wait before attempt `attempts + 1` after `attempts` failed ones.
Millis hook_backoff(const HookPolicy& policy, uint32_t attempts);

}  // namespace farmhand::core
