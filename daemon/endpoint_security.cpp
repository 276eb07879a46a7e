#include "daemon/endpoint_security.h"

#include <filesystem>
#include <system_error>

#include <fmt/format.h>

#include "daemon/state_dir.h"

namespace farmhand::daemon {

Result<void> check_plain_endpoints(const common::BrokerConfig& broker) {
  if (broker.allow_insecure) return {};
  if (broker.client_curve_secret_key_file.empty() &&
      !common::is_loopback_endpoint(broker.client_endpoint)) {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("client endpoint {} listens beyond loopback without CurveZMQ: set "
                            "broker.client_curve_secret_key_file, or allow_insecure: true",
                            broker.client_endpoint));
  }
  if (!broker.worker_curve && broker.worker_curve_secret_key_file.empty() &&
      !common::is_loopback_endpoint(broker.worker_endpoint)) {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("worker endpoint {} listens beyond loopback without CurveZMQ: "
                            "remove broker.worker_curve: false, or allow_insecure: true",
                            broker.worker_endpoint));
  }
  return {};
}

Result<std::string> worker_endpoint_public_key(const common::Config& config,
                                               const std::string& state_dir) {
  const auto& broker = config.broker;
  if (!broker.worker_curve_secret_key_file.empty()) {
    auto secret = common::read_curve_key_file(broker.worker_curve_secret_key_file);
    if (!secret) return fail(secret.error());
    auto public_key = common::curve_public_key(*secret);
    if (!public_key) {
      return fail(
          ErrorCode::kInvalidArgument,
          fmt::format("{}: {}", broker.worker_curve_secret_key_file, public_key.error().reason));
    }
    return public_key;
  }
  if (!broker.worker_curve) {
    return fail(ErrorCode::kInvalidArgument,
                "the worker endpoint has no key: the config says broker.worker_curve: false");
  }
  const std::string path = StateDir::broker_key_prefix(state_dir) + ".pub";
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return fail(ErrorCode::kNotFound,
                fmt::format("no broker key {} yet: farmhandd makes it when it first starts", path));
  }
  return common::read_curve_key_file(path);
}

Result<void> EndpointSecurity::secure(zmq::context_t& context, zmq::socket_t& clients,
                                      zmq::socket_t& workers, bool local_workers,
                                      const std::string& state_dir) {
  const auto& broker = config_.broker;
  const bool configured_workers = !broker.worker_curve_secret_key_file.empty();
  secure_workers_ = configured_workers || broker.worker_curve;
  const bool secure_clients = !broker.client_curve_secret_key_file.empty();
  // Refused before anything binds: nothing plain ever listens beyond this host.
  if (auto ok = check_plain_endpoints(broker); !ok) return ok;
  if (!secure_workers_ && !secure_clients) return {};
  if (!common::curve_available()) {
    return fail(ErrorCode::kInternal, "CurveZMQ is configured but libzmq has no CURVE support");
  }
  // The worker endpoint's secret key: configured, or the broker's own pair.
  std::string worker_secret;
  if (secure_workers_) {
    if (configured_workers) {
      auto secret = common::read_curve_key_file(broker.worker_curve_secret_key_file);
      if (!secret) return fail(secret.error());
      worker_secret = *secret;
      worker_keys_dir_ = broker.worker_authorized_keys_dir;
    } else {
      worker_keys_dir_ = StateDir::worker_keys_dir(state_dir);
      std::error_code ec;
      std::filesystem::create_directories(worker_keys_dir_, ec);
      if (ec) {
        return fail(ErrorCode::kIo,
                    fmt::format("cannot create {}: {}", worker_keys_dir_, ec.message()));
      }
      const std::string prefix = StateDir::broker_key_prefix(state_dir);
      bool created = false;
      auto pair = common::load_or_create_curve_keypair(prefix, &created);
      if (!pair) return fail(pair.error());
      if (created) log_.info("broker key pair created path={}.key", prefix);
      worker_secret = pair->secret_key;
    }
  }
  if (secure_workers_ && local_workers) {
    auto pair = common::curve_keypair();
    if (!pair) return fail(pair.error());
    local_worker_key_ = *pair;
  }
  zap_ = std::make_unique<ZapHandler>(context);
  if (auto ok = zap_->start(); !ok) return ok;
  // Each secured socket: its server key, and the keys its ZAP domain admits.
  auto secure_one = [&](zmq::socket_t& socket, const char* domain, const std::string& secret_file,
                        const std::string& secret, const std::string& keys_dir,
                        std::string& server_public) -> Result<void> {
    auto public_key = common::curve_public_key(secret);
    if (!public_key) {
      return fail(ErrorCode::kInvalidArgument,
                  fmt::format("{}: {}", secret_file, public_key.error().reason));
    }
    server_public = *public_key;
    auto admitted = load_authorized_keys(domain);
    if (!admitted) return fail(admitted.error());  // fail closed: no broker without its keys
    socket.set(zmq::sockopt::curve_server, true);
    socket.set(zmq::sockopt::curve_secretkey, secret);
    socket.set(zmq::sockopt::zap_domain, domain);
    log_.info("{} endpoint secured with CurveZMQ server_key={} authorized_keys={} dir={}",
              domain == std::string_view(ZapHandler::kWorkers) ? "worker" : "client", server_public,
              *admitted, keys_dir);
    return {};
  };
  if (secure_workers_) {
    const std::string secret_file = configured_workers
                                        ? broker.worker_curve_secret_key_file
                                        : StateDir::broker_key_prefix(state_dir) + ".key";
    if (auto ok = secure_one(workers, ZapHandler::kWorkers, secret_file, worker_secret,
                             worker_keys_dir_, worker_server_public_);
        !ok) {
      return ok;
    }
  }
  if (secure_clients) {
    auto secret = common::read_curve_key_file(broker.client_curve_secret_key_file);
    if (!secret) return fail(secret.error());
    std::string client_public;
    if (auto ok = secure_one(clients, ZapHandler::kClients, broker.client_curve_secret_key_file,
                             *secret, broker.client_authorized_keys_dir, client_public);
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
  const std::string& dir = workers ? worker_keys_dir_ : config_.broker.client_authorized_keys_dir;
  size_t skipped = 0;
  auto keys = common::read_authorized_keys(dir, &skipped);
  if (!keys) return fail(keys.error());
  if (skipped > 0) {
    log_.warn("authorised keys: {} file(s) in {} hold no CURVE public key and were skipped",
              skipped, dir);
  }
  const size_t count = keys->size();
  if (workers && local_worker_key_) keys->emplace(local_worker_key_->public_key, "local");
  zap_->set_keys(domain, std::move(*keys));
  return count;
}

void EndpointSecurity::reload_keys() {
  if (!zap_) return;
  const auto& broker = config_.broker;
  for (const auto& [domain, who, secured] :
       {std::tuple{ZapHandler::kWorkers, "worker", secure_workers_},
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
