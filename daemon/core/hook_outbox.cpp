#include "daemon/core/hook_outbox.h"

#include <algorithm>

namespace farmhand::core {

Millis hook_backoff(const HookPolicy& policy, uint32_t attempts) {
  Millis wait = policy.backoff_base;
  for (uint32_t i = 1; i < attempts && wait < policy.backoff_max; ++i) wait *= 2;
  return std::min(wait, policy.backoff_max);
}

HookPolicy HookOutbox::policy(const std::string& hook) const {
  auto it = policies_.find(hook);
  return it == policies_.end() ? HookPolicy{} : it->second;
}

void HookOutbox::add(HookDelivery delivery) {
  max_seq_ = std::max(max_seq_, delivery.seq);
  if (delivery.failed) {
    auto& list = failed_[delivery.hook];
    list.push_back(std::move(delivery));
    return;
  }
  seq_of_[delivery.id] = delivery.seq;
  pending_[delivery.seq] = std::move(delivery);
}

void HookOutbox::clear() {
  pending_.clear();
  seq_of_.clear();
  in_flight_.clear();
  delivered_.clear();
  failed_.clear();
  max_seq_ = 0;
}

std::vector<HookDelivery> HookOutbox::take_due(int64_t now_unix_ms) {
  std::vector<HookDelivery> due;
  std::set<std::pair<std::string, JobId>> blocked;  // a chain whose head is not sendable
  std::map<std::string, uint32_t> flying;
  for (const std::string& id : in_flight_) {
    if (auto it = seq_of_.find(id); it != seq_of_.end()) ++flying[pending_.at(it->second).hook];
  }
  for (auto& [seq, d] : pending_) {
    if (d.job != 0 && !blocked.emplace(d.hook, d.job).second) continue;  // not its chain's head
    if (in_flight_.count(d.id) != 0 || d.next_unix_ms > now_unix_ms) continue;
    uint32_t& n = flying[d.hook];
    if (n >= policy(d.hook).max_in_flight) continue;
    ++n;
    in_flight_.insert(d.id);
    due.push_back(d);
  }
  return due;
}

HookOutbox::Outcome HookOutbox::delivered(const std::string& id, std::string* hook) {
  in_flight_.erase(id);
  auto it = seq_of_.find(id);
  if (it == seq_of_.end()) return Outcome::kUnknown;
  const std::string& name = pending_.at(it->second).hook;
  ++delivered_[name];
  if (hook) *hook = name;
  pending_.erase(it->second);
  seq_of_.erase(it);
  return Outcome::kDelivered;
}

HookOutbox::Outcome HookOutbox::attempt_failed(const std::string& id, const std::string& error,
                                               int64_t now_unix_ms, HookDelivery* changed) {
  in_flight_.erase(id);
  auto it = seq_of_.find(id);
  if (it == seq_of_.end()) return Outcome::kUnknown;
  HookDelivery& d = pending_.at(it->second);
  const HookPolicy p = policy(d.hook);
  ++d.attempts;
  d.last_error = error;
  if (now_unix_ms - d.created_unix_ms >= p.give_up_after.count()) {
    d.failed = true;
    d.failed_unix_ms = now_unix_ms;
    if (changed) *changed = d;
    failed_[d.hook].push_back(std::move(d));
    pending_.erase(it->second);
    seq_of_.erase(it);
    return Outcome::kGaveUp;
  }
  d.next_unix_ms = now_unix_ms + hook_backoff(p, d.attempts).count();
  if (changed) *changed = d;
  return Outcome::kRetry;
}

std::optional<int64_t> HookOutbox::next_due() const {
  std::optional<int64_t> next;
  std::set<std::pair<std::string, JobId>> heads;
  for (const auto& [seq, d] : pending_) {
    if (d.job != 0 && !heads.emplace(d.hook, d.job).second) continue;
    if (in_flight_.count(d.id) != 0) continue;
    if (!next || d.next_unix_ms < *next) next = d.next_unix_ms;
  }
  return next;
}

HookOutbox::Counts HookOutbox::counts(const std::string& hook) const {
  Counts c;
  if (auto it = delivered_.find(hook); it != delivered_.end()) c.delivered = it->second;
  if (auto it = failed_.find(hook); it != failed_.end() && !it->second.empty()) {
    c.failed = it->second.size();
    c.last_failed = &it->second.back();
  }
  for (const auto& [seq, d] : pending_) {
    if (d.hook != hook) continue;
    if (!c.oldest_pending) c.oldest_pending = &d;
    ++c.pending;
  }
  return c;
}

}  // namespace farmhand::core
