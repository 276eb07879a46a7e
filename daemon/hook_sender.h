// HookSender: the webhooks' HTTP side — POSTs signed deliveries on threads of
// its own, so the event loop never waits on the network.
//
// One thread per hook (a receiver that hangs delays only its own hook), each
// with a queue, started with common::start_signal_free_thread (a thread that
// could take SIGTERM would kill the broker). Each POST carries the body as it
// was stored, signed with HMAC-SHA256 under the hook's secret
// (X-Farmhand-Signature: sha256=<hex>), with X-Farmhand-Event and
// X-Farmhand-Delivery. An outcome is a 2xx (delivered) or one line saying why
// not; outcomes wait in a queue that the loop drains, and fd() (an eventfd)
// becomes readable when one is there. Thread-safe: send() and take_outcomes()
// are called by the loop, the rest runs on the hook threads. The destructor
// aborts a POST under way and joins the threads.
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/config.h"

namespace farmhand::daemon {

struct HookRequest {
  std::string delivery_id;
  std::string hook;
  std::string event;
  std::string body;
};

struct HookOutcome {
  std::string delivery_id;
  bool delivered = false;
  std::string error;  // when not: "connection refused", "http 503", ...
};

// "sha256=<hex>" of HMAC-SHA256(secret, body): the X-Farmhand-Signature value.
std::string hook_signature(const std::string& secret, const std::string& body);

class HookSender {
 public:
  explicit HookSender(const std::vector<common::Hook>& hooks);
  ~HookSender();
  HookSender(const HookSender&) = delete;
  HookSender& operator=(const HookSender&) = delete;

  // Queues a POST to the hook named in the request (ignored for an unknown hook).
  void send(HookRequest request);
  std::vector<HookOutcome> take_outcomes();

  // Readable while outcomes wait; read it (on_readable) to rearm.
  int fd() const { return event_fd_; }

  void on_readable();

 private:
  struct Lane;
  void run(Lane& lane);
  void report(HookOutcome outcome);

  int event_fd_ = -1;
  std::vector<std::unique_ptr<Lane>> lanes_;
  std::mutex outcomes_mu_;
  std::vector<HookOutcome> outcomes_;
};

}  // namespace farmhand::daemon
