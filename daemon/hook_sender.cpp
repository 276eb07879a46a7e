#include "daemon/hook_sender.h"

#include <cctype>

#include <fmt/format.h>
#include <httplib.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/signal_free_thread.h"

namespace farmhand::daemon {

std::string hook_signature(const std::string& secret, const std::string& body) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(body.data()), body.size(), mac, &len);
  std::string out = "sha256=";
  for (unsigned int i = 0; i < len; ++i) out += fmt::format("{:02x}", mac[i]);
  return out;
}

struct HookSender::Lane {
  common::Hook hook;
  std::string base;  // scheme://host[:port]
  std::string path;  // the rest, "/" when none
  std::mutex mu;
  std::condition_variable cv;
  std::deque<HookRequest> queue;
  bool stop = false;
  httplib::Client* client = nullptr;  // while a POST is under way (for stop())
  std::thread thread;
};

HookSender::HookSender(const std::vector<common::Hook>& hooks) {
  event_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  for (const common::Hook& hook : hooks) {
    auto lane = std::make_unique<Lane>();
    lane->hook = hook;
    const size_t host = hook.url.find("://") + 3;
    const size_t slash = hook.url.find('/', host);
    lane->base = hook.url.substr(0, slash);
    lane->path = slash == std::string::npos ? "/" : hook.url.substr(slash);
    Lane& ref = *lane;
    lanes_.push_back(std::move(lane));
    ref.thread = common::start_signal_free_thread("fh-hooks", [this, &ref] { run(ref); });
  }
}

HookSender::~HookSender() {
  for (auto& lane : lanes_) {
    std::lock_guard lock(lane->mu);
    lane->stop = true;
    if (lane->client) lane->client->stop();
    lane->cv.notify_all();
  }
  for (auto& lane : lanes_) {
    if (lane->thread.joinable()) lane->thread.join();
  }
  if (event_fd_ >= 0) ::close(event_fd_);
}

void HookSender::send(HookRequest request) {
  for (auto& lane : lanes_) {
    if (lane->hook.name != request.hook) continue;
    std::lock_guard lock(lane->mu);
    lane->queue.push_back(std::move(request));
    lane->cv.notify_one();
    return;
  }
}

std::vector<HookOutcome> HookSender::take_outcomes() {
  std::lock_guard lock(outcomes_mu_);
  return std::exchange(outcomes_, {});
}

void HookSender::on_readable() {
  uint64_t n = 0;
  if (event_fd_ >= 0) (void)!::read(event_fd_, &n, sizeof n);
}

void HookSender::report(HookOutcome outcome) {
  {
    std::lock_guard lock(outcomes_mu_);
    outcomes_.push_back(std::move(outcome));
  }
  const uint64_t one = 1;
  if (event_fd_ >= 0) (void)!::write(event_fd_, &one, sizeof one);
}

void HookSender::run(Lane& lane) {
  httplib::Client client(lane.base);
  const auto timeout = lane.hook.timeout;
  client.set_connection_timeout(timeout);
  client.set_read_timeout(timeout);
  client.set_write_timeout(timeout);
  client.set_keep_alive(true);
  // An https receiver's certificate is checked (against the hook's ca_file,
  // else the system's CAs), its name too: a delivery is signed, not secret-proof.
  client.enable_server_certificate_verification(true);
  if (!lane.hook.ca_file.empty()) client.set_ca_cert_path(lane.hook.ca_file.c_str());
  for (;;) {
    HookRequest request;
    {
      std::unique_lock lock(lane.mu);
      lane.cv.wait(lock, [&] { return lane.stop || !lane.queue.empty(); });
      if (lane.stop) return;
      request = std::move(lane.queue.front());
      lane.queue.pop_front();
      lane.client = &client;
    }
    httplib::Headers headers = {
        {"X-Farmhand-Event", request.event},
        {"X-Farmhand-Delivery", request.delivery_id},
        {"X-Farmhand-Signature", hook_signature(lane.hook.secret, request.body)},
        {"User-Agent", "farmhandd"},
    };
    auto res = client.Post(lane.path, headers, request.body, "application/json");
    HookOutcome outcome;
    outcome.delivery_id = request.delivery_id;
    if (!res) {
      std::string what = httplib::to_string(res.error());
      for (char& c : what) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      outcome.error = what + " error";
    } else if (res->status >= 200 && res->status < 300) {
      outcome.delivered = true;
    } else {
      outcome.error = fmt::format("http {}", res->status);
    }
    {
      std::lock_guard lock(lane.mu);
      lane.client = nullptr;
      if (lane.stop) return;
    }
    report(std::move(outcome));
  }
}

}  // namespace farmhand::daemon
