#include "daemon/zap.h"

#include <chrono>
#include <system_error>
#include <vector>

#include <fmt/format.h>

#include "common/signal_free_thread.h"

namespace farmhand::daemon {

ZapHandler::ZapHandler(zmq::context_t& context)
    : context_(context), socket_(context, zmq::socket_type::rep) {}

ZapHandler::~ZapHandler() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

Result<void> ZapHandler::start() {
  try {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.bind("inproc://zeromq.zap.01");
  } catch (const zmq::error_t& e) {
    return fail(ErrorCode::kInternal, fmt::format("cannot start the ZAP handler: {}", e.what()));
  }
  // No signal for it: a SIGHUP or SIGTERM delivered to this thread would end
  // the whole process (the broker reads them from a signalfd).
  try {
    thread_ = common::start_signal_free_thread("fh-zap", [this] { run(); });
  } catch (const std::system_error& e) {
    return fail(ErrorCode::kInternal, fmt::format("cannot start the ZAP handler: {}", e.what()));
  }
  return {};
}

void ZapHandler::set_keys(const std::string& domain, std::map<std::string, std::string> keys) {
  std::lock_guard lock(mutex_);
  keys_[domain] = std::move(keys);
}

std::string ZapHandler::last_refused() {
  std::lock_guard lock(mutex_);
  return last_refused_;
}

void ZapHandler::run() {
  while (!stop_) {
    zmq::pollitem_t items[] = {{socket_.handle(), 0, ZMQ_POLLIN, 0}};
    try {
      zmq::poll(items, 1, std::chrono::milliseconds(100));
    } catch (const zmq::error_t&) {
      continue;
    }
    if (!(items[0].revents & ZMQ_POLLIN)) continue;
    // [version, request id, domain, address, identity, mechanism, credentials...]
    std::vector<zmq::message_t> frames;
    try {
      do {
        frames.emplace_back();
        (void)socket_.recv(frames.back(), zmq::recv_flags::none);
      } while (frames.back().more() && frames.size() < 16);
      while (frames.back().more()) {  // drop the rest of an absurd request
        zmq::message_t rest;
        (void)socket_.recv(rest, zmq::recv_flags::none);
        if (!rest.more()) break;
      }
    } catch (const zmq::error_t&) {
      continue;
    }
    bool admitted = false;
    std::string key;
    std::string user_id;
    if (frames.size() >= 7 && frames[0].to_string() == "1.0" && frames[5].to_string() == "CURVE" &&
        frames[6].size() == 32) {
      char z85[41] = {};
      if (zmq_z85_encode(z85, frames[6].data<uint8_t>(), 32) != nullptr) {
        key = z85;
        std::lock_guard lock(mutex_);
        auto domain = keys_.find(frames[2].to_string());
        if (domain != keys_.end()) {
          if (auto it = domain->second.find(key); it != domain->second.end()) {
            admitted = true;
            user_id = it->second.empty() ? key : it->second;
          }
        }
      }
    }
    if (!admitted) {
      std::lock_guard lock(mutex_);
      const std::string domain = frames.size() > 2 ? frames[2].to_string() : std::string();
      last_refused_ = (key.empty() ? "not a CURVE client" : "key " + key + " not authorised") +
                      (domain == kClients ? " (client port)" : "");
      ++refused_;
    }
    const std::string request_id = frames.size() > 1 ? frames[1].to_string() : std::string();
    try {
      socket_.send(zmq::buffer(std::string("1.0")), zmq::send_flags::sndmore);
      socket_.send(zmq::buffer(request_id), zmq::send_flags::sndmore);
      socket_.send(zmq::buffer(std::string(admitted ? "200" : "400")), zmq::send_flags::sndmore);
      socket_.send(zmq::buffer(std::string(admitted ? "OK" : "not authorised")),
                   zmq::send_flags::sndmore);
      socket_.send(zmq::buffer(admitted ? user_id : std::string()), zmq::send_flags::sndmore);
      socket_.send(zmq::message_t(), zmq::send_flags::none);
    } catch (const zmq::error_t&) {
      // The REP socket recovers with the next request.
    }
  }
}

}  // namespace farmhand::daemon
