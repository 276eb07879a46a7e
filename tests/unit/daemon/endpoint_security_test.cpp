// Which endpoints may listen without CurveZMQ, and where the worker endpoint's
// public key comes from (daemon/endpoint_security.h).
#include "daemon/endpoint_security.h"

#include <filesystem>
#include <string>

#include "tests/support/temp_dir.h"
#include <gtest/gtest.h>

#include "common/curve.h"
#include "daemon/state_dir.h"

namespace farmhand::daemon {
namespace {

using testing_support::TempDir;

TEST(EndpointSecurityTest, DefaultEndpointsAreAccepted) {
  EXPECT_TRUE(check_plain_endpoints(common::BrokerConfig{}));
}

TEST(EndpointSecurityTest, PlainClientEndpointBeyondLoopbackIsRefusedUnlessAllowInsecure) {
  common::BrokerConfig broker;
  broker.client_endpoint = "tcp://0.0.0.0:7600";
  auto refused = check_plain_endpoints(broker);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().reason,
            "client endpoint tcp://0.0.0.0:7600 listens beyond loopback without CurveZMQ: set "
            "broker.client_curve_secret_key_file, or allow_insecure: true");
  broker.allow_insecure = true;
  EXPECT_TRUE(check_plain_endpoints(broker));
  broker.allow_insecure = false;
  broker.client_curve_secret_key_file = "/etc/farmhand/client.key";
  broker.client_authorized_keys_dir = "/etc/farmhand/clients";
  EXPECT_TRUE(check_plain_endpoints(broker));
}

TEST(EndpointSecurityTest, WorkerEndpointBeyondLoopbackNeedsCurveOrAllowInsecure) {
  common::BrokerConfig broker;
  broker.worker_endpoint = "tcp://0.0.0.0:7601";
  EXPECT_TRUE(check_plain_endpoints(broker));  // secured by default
  broker.worker_curve = false;
  auto refused = check_plain_endpoints(broker);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().reason,
            "worker endpoint tcp://0.0.0.0:7601 listens beyond loopback without CurveZMQ: remove "
            "broker.worker_curve: false, or allow_insecure: true");
  broker.allow_insecure = true;
  EXPECT_TRUE(check_plain_endpoints(broker));
  broker.allow_insecure = false;
  broker.worker_endpoint = "ipc:///run/farmhand/workers";
  EXPECT_TRUE(check_plain_endpoints(broker));
}

TEST(EndpointSecurityTest, WorkerPublicKeyComesFromTheStateDirOrTheConfiguredKeyFile) {
  TempDir dir;
  common::Config config;
  auto none = worker_endpoint_public_key(config, dir.path());
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().reason,
            "no broker key " + dir.path() +
                "/keys/broker.pub yet: farmhandd makes it when it first starts");
  std::filesystem::create_directories(dir.path() + "/keys");
  auto made = common::load_or_create_curve_keypair(StateDir::broker_key_prefix(dir.path()));
  ASSERT_TRUE(made) << made.error().reason;
  EXPECT_EQ(worker_endpoint_public_key(config, dir.path()).value(), made->public_key);

  auto configured = common::write_curve_keypair(dir.file("configured"));
  ASSERT_TRUE(configured);
  config.broker.worker_curve_secret_key_file = dir.file("configured.key");
  config.broker.worker_authorized_keys_dir = dir.path();
  EXPECT_EQ(worker_endpoint_public_key(config, dir.path()).value(), configured->public_key);

  common::Config plain;
  plain.broker.worker_curve = false;
  auto refused = worker_endpoint_public_key(plain, dir.path());
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().reason,
            "the worker endpoint has no key: the config says broker.worker_curve: false");
}

}  // namespace
}  // namespace farmhand::daemon
