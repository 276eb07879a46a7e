#include "daemon/endpoint_security.h"

#include <fmt/format.h>

namespace farmhand::daemon {

Result<void> EndpointSecurity::secure(zmq::context_t& context, zmq::socket_t& clients,
                                      zmq::socket_t& workers, bool local_workers) {
  const auto& broker = config_.broker;
  const bool secure_workers = !broker.worker_curve_secret_key_file.empty();
  const bool secure_clients = !broker.client_curve_secret_key_file.empty();
  if (!secure_workers && !secure_clients) return {};
  if (!common::curve_available()) {
    return fail(ErrorCode::kInternal, "CurveZMQ is configured but libzmq has no CURVE support");
  }
  if (secure_workers && local_workers) {
    auto pair = common::curve_keypair();
    if (!pair) return fail(pair.error());
    local_worker_key_ = *pair;
  }
  zap_ = std::make_unique<ZapHandler>(context);
  if (auto ok = zap_->start(); !ok) return ok;
  // Each secured socket: its server key, and the keys its ZAP domain admits.
  auto secure_one = [&](zmq::socket_t& socket, const char* domain, const std::string& secret_file,
                        const std::string& keys_dir, std::string& server_public) -> Result<void> {
    auto secret = common::read_curve_key_file(secret_file);
    if (!secret) return fail(secret.error());
    auto public_key = common::curve_public_key(*secret);
    if (!public_key) {
      return fail(ErrorCode::kInvalidArgument,
                  fmt::format("{}: {}", secret_file, public_key.error().reason));
    }
    server_public = *public_key;
    auto admitted = load_authorized_keys(domain);
    if (!admitted) return fail(admitted.error());  // fail closed: no broker without its keys
    socket.set(zmq::sockopt::curve_server, true);
    socket.set(zmq::sockopt::curve_secretkey, *secret);
    socket.set(zmq::sockopt::zap_domain, domain);
    log_.info("{} endpoint secured with CurveZMQ server_key={} authorized_keys={} dir={}",
              domain == std::string_view(ZapHandler::kWorkers) ? "worker" : "client", server_public,
              *admitted, keys_dir);
    return {};
  };
  if (secure_workers) {
    if (auto ok = secure_one(workers, ZapHandler::kWorkers, broker.worker_curve_secret_key_file,
                             broker.worker_authorized_keys_dir, worker_server_public_);
        !ok) {
      return ok;
    }
  }
  if (secure_clients) {
    std::string client_public;
    if (auto ok = secure_one(clients, ZapHandler::kClients, broker.client_curve_secret_key_file,
                             broker.client_authorized_keys_dir, client_public);
        !ok) {
      return ok;
    }
  }
  return {};
}

std::vector<std::string> EndpointSecurity::local_worker_env() const {
  if (!local_worker_key_) return {};
  return {"FARMHAND_CURVE_SERVER_KEY=" + worker_server_public_,
          "FARMHAND_CURVE_SECRET_KEY=" + local_worker_key_->secret_key};
}

Result<size_t> EndpointSecurity::load_authorized_keys(const char* domain) {
  const bool workers = domain == std::string_view(ZapHandler::kWorkers);
  const std::string& dir = workers ? config_.broker.worker_authorized_keys_dir
                                   : config_.broker.client_authorized_keys_dir;
  size_t skipped = 0;
  auto keys = common::read_authorized_keys(dir, &skipped);
  if (!keys) return fail(keys.error());
  if (skipped > 0) {
    log_.warn("authorised keys: {} file(s) in {} hold no CURVE public key and were skipped",
              skipped, dir);
  }
  const size_t count = keys->size();
  if (workers && local_worker_key_) keys->insert(local_worker_key_->public_key);
  zap_->set_keys(domain, std::move(*keys));
  return count;
}

void EndpointSecurity::reload_keys() {
  if (!zap_) return;
  const auto& broker = config_.broker;
  for (const auto& [domain, who, secured] :
       {std::tuple{ZapHandler::kWorkers, "worker", !broker.worker_curve_secret_key_file.empty()},
        std::tuple{ZapHandler::kClients, "client", !broker.client_curve_secret_key_file.empty()}}) {
    if (!secured) continue;
    if (auto keys = load_authorized_keys(domain); keys) {
      log_.info("authorised {} keys reloaded keys={}", who, *keys);
    } else {
      log_.error("authorised {} keys not reloaded, the old ones stay: {}", who,
                 keys.error().reason);
    }
  }
}

void EndpointSecurity::log_refusals() {
  if (!zap_ || zap_->refused() == refused_logged_) return;
  const auto now = clock_.steady();
  if (now - last_refusal_log_ <= std::chrono::seconds(10)) return;
  last_refusal_log_ = now;
  refused_logged_ = zap_->refused();
  log_.warn("connection refused reason=\"{}\" total_refused={}", zap_->last_refused(),
            refused_logged_);
}

}  // namespace farmhand::daemon
