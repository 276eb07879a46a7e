// Turn: what one event-loop turn decided, held until the turn is committed.
//
// Components stage the turn's durable changes in `batch`, and everything that
// acknowledges or acts on them — client replies, and Assign, Cancel and result
// acks to workers — in the mail. The loop commits the batch in one transaction
// and only then hands the mail to the ports (STYLE.md 2.2: a decision that is
// not on disk must not reach a worker). When the commit fails nothing of the
// mail to workers leaves, and every reply that would acknowledge a write
// becomes the commit's error instead.
//
// The ports are the broker's only way out: the loop implements them over its
// ZeroMQ sockets; unit tests record what is sent.
#pragma once

#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "farmhand.pb.h"

#include "common/result.h"
#include "daemon/core/scheduler.h"
#include "daemon/store/store.h"

namespace farmhand::daemon {

// A client's reply and where it goes.
struct PendingReply {
  std::string routing_id;
  bool req_envelope = false;  // a REQ socket wants an empty delimiter frame back
  wire::ClientReply reply;
};

// Marks `reply` failed with `error`.
void set_error(wire::ClientReply& reply, const Error& error);

// True for replies that acknowledge a change of state (submit, action, publish).
bool acknowledges_write(const wire::ClientReply& reply);

class ClientPort {
 public:
  virtual ~ClientPort() = default;
  virtual void send(const PendingReply& reply) = 0;
};

class WorkerPort {
 public:
  virtual ~WorkerPort() = default;
  // False when the peer is gone or its queue is full (the message is lost).
  virtual bool send(const std::string& routing_id, const wire::BrokerMessage& msg) = 0;
};

struct Turn {
  Batch batch;
  std::vector<PendingReply> replies;
  std::vector<std::pair<std::string, wire::BrokerMessage>> worker_mail;
  std::unordered_map<std::string, wire::ResultAck> acks;  // by worker routing id
  std::vector<core::JobId> new_jobs;  // submitted in this turn, committed with its Assigns

  void clear() {
    batch.clear();
    replies.clear();
    worker_mail.clear();
    acks.clear();
    new_jobs.clear();
  }
};

}  // namespace farmhand::daemon
