// End-to-end tests of the broker's state dir and its backups, on the real binaries
// (tests/support/cluster.h): one broker per state dir, a lost or damaged database
// refuses to start instead of starting an empty farm, and `farmhand admin backup`
// never writes where it could lose acknowledged work. Every wait polls a condition
// with a deadline; the deadlines bound a hung test and are never timing expectations.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/cluster.h"
#include "tests/support/oracles.h"
#include "tests/support/temp_dir.h"
#include <gtest/gtest.h>
#include <signal.h>

namespace farmhand::e2e {
namespace {

namespace fs = std::filesystem;
using testing_support::TempDir;

size_t line_count(const std::string& text) {
  return static_cast<size_t>(std::count(text.begin(), text.end(), '\n'));
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  ASSERT_TRUE(out.good()) << "cannot write " << path;
}

std::string replaced(std::string text, const std::string& from, const std::string& to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
  return text;
}

std::string jobs_in(const std::string& db) {
  return run("sqlite3 -readonly '" + db + "' 'select count(*) from jobs'");
}

// farmhandd on the cluster's config and state dir, without local workers; returns
// when it exits (a refusal) or after the cluster's hard limit.
CliResult start_another_broker(Cluster& cluster, const std::string& config) {
  return cluster.run_binary("farmhandd", {"--config", config, "--state-dir", cluster.path("state"),
                                          "--local-workers", "0"});
}

// ------------------------------------------------------------------ one broker per state dir

TEST(StateDirE2ETest, SecondBrokerOnTheSameStateDirRefusesNamingThePidAndTheFirstKeepsServing) {
  ClusterOptions options;
  options.local_workers = 1;
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());
  // Its own endpoints: only the state dir is shared.
  const std::string config = cluster.path("second.yaml");
  write_text(config,
             replaced(replaced(read_file(cluster.config_path()), "/client.ipc", "/client2.ipc"),
                      "/worker.ipc", "/worker2.ipc"));

  CliResult second = start_another_broker(cluster, config);
  EXPECT_EQ(second.exit_code, 1) << describe(second);
  EXPECT_EQ(second.err, "farmhandd: state dir " + cluster.path("state") +
                            " is in use by farmhandd pid " + std::to_string(cluster.broker_pid()) +
                            "\n")
      << describe(second);

  ASSERT_TRUE(cluster.broker_running());
  auto job = cluster.submit({"noop", "--tasks", "5"});
  ASSERT_TRUE(job) << cluster.last_cli();
  auto done = cluster.wait_for_final_state(*job, std::chrono::seconds(120));
  ASSERT_TRUE(done) << cluster.last_cli();
  EXPECT_EQ((*done)["job"]["state"], "succeeded") << done->dump();
}

// ------------------------------------------------------------------ lost or damaged database

TEST(StateDirE2ETest, EmptyDatabaseWithTheMarkerRefusesToStartUntilABackupIsRestored) {
  ClusterOptions options;
  options.local_workers = 0;
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());  // a fresh, empty state dir starts
  auto job = cluster.submit({"noop", "--tasks", "3"});
  ASSERT_TRUE(job) << cluster.last_cli();
  const std::string copy = cluster.path("before.db");
  CliResult backup = cluster.run_cli({"admin", "backup", copy});
  ASSERT_EQ(backup.exit_code, 0) << describe(backup);
  cluster.kill_broker(SIGTERM);

  // The database is truncated (a bad copy, a full disk during a restore).
  const std::string db = cluster.path("state/farmhand.db");
  fs::resize_file(db, 0);
  fs::remove(db + "-wal");
  fs::remove(db + "-shm");
  CliResult refused = start_another_broker(cluster, cluster.config_path());
  EXPECT_EQ(refused.exit_code, 1) << describe(refused);
  EXPECT_EQ(line_count(refused.err), 1u) << describe(refused);
  EXPECT_NE(refused.err.find(db + " is empty"), std::string::npos) << describe(refused);
  EXPECT_NE(refused.err.find("farmhand admin backup"), std::string::npos) << describe(refused);
  EXPECT_EQ(fs::file_size(db), 0u) << "the refused start wrote a new database";

  // The recovery it names: restore the backup, and the job is back with its id.
  fs::copy_file(copy, db, fs::copy_options::overwrite_existing);
  ASSERT_TRUE(cluster.restart_broker());
  auto status = cluster.status_json(*job);
  ASSERT_TRUE(status) << cluster.last_cli();
  EXPECT_EQ((*status)["job"]["task_count"], 3u) << status->dump();
}

TEST(StateDirE2ETest, MalformedDatabaseRefusesToStartNamingTheFile) {
  ClusterOptions options;
  options.local_workers = 0;
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());
  ASSERT_TRUE(cluster.submit({"noop", "--tasks", "1"})) << cluster.last_cli();
  cluster.kill_broker(SIGTERM);

  const std::string db = cluster.path("state/farmhand.db");
  std::string junk;
  for (int i = 0; i < 200; ++i) junk += "not a sqlite database\n";
  write_text(db, junk);
  fs::remove(db + "-wal");
  fs::remove(db + "-shm");
  CliResult refused = start_another_broker(cluster, cluster.config_path());
  EXPECT_EQ(refused.exit_code, 1) << describe(refused);
  EXPECT_EQ(line_count(refused.err), 1u) << describe(refused);
  EXPECT_NE(refused.err.find("state file " + db + " is damaged"), std::string::npos)
      << describe(refused);
  EXPECT_NE(refused.err.find("farmhand admin backup"), std::string::npos) << describe(refused);
  EXPECT_TRUE(read_file(db) == junk) << "the refused start changed " << db;
}

// ------------------------------------------------------------------ backups

TEST(StateDirE2ETest, BackupIntoTheStateDirIsRefusedAndTheAcknowledgedJobSurvivesKill9) {
  ClusterOptions options;
  options.local_workers = 0;  // the job stays queued: only the store holds it
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());
  auto job = cluster.submit({"noop", "--tasks", "3"});
  ASSERT_TRUE(job) << cluster.last_cli();

  const std::string state = cluster.path("state");
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"admin", "backup", state + "/farmhand.db-wal"},
        {"admin", "backup", state + "/farmhand.db-wal", "--force"},
        {"admin", "backup", state + "/farmhand.db-shm", "--force"},
        {"admin", "backup", state + "/copy.db"}}) {
    CliResult r = cluster.run_cli(args);
    EXPECT_EQ(r.exit_code, 1) << describe(r);
    EXPECT_EQ(line_count(r.err), 1u) << describe(r);
    EXPECT_NE(r.err.find("is in the state dir " + state), std::string::npos) << describe(r);
  }
  EXPECT_FALSE(fs::exists(state + "/copy.db"));

  cluster.kill_broker(SIGKILL);
  ASSERT_TRUE(cluster.restart_broker());
  auto status = cluster.status_json(*job);
  ASSERT_TRUE(status) << "acknowledged job lost: " << cluster.last_cli();
  EXPECT_EQ((*status)["job"]["task_count"], 3u) << status->dump();
}

TEST(StateDirE2ETest, BackupOutsideTheBackupDirAndAllowedRootsIsRefused) {
  TempDir backups("fh-bk");
  ASSERT_FALSE(backups.path().empty());
  ClusterOptions options;
  options.local_workers = 0;
  options.broker_yaml = "  backup_dir: " + backups.path() + "\n";
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());
  ASSERT_TRUE(cluster.submit({"noop", "--tasks", "1"})) << cluster.last_cli();

  const std::string outside = cluster.path("elsewhere.db");
  CliResult refused = cluster.run_cli({"admin", "backup", outside});
  EXPECT_EQ(refused.exit_code, 1) << describe(refused);
  EXPECT_EQ(refused.err, "farmhand: backup path " + outside +
                             " is outside broker.backup_dir and broker.allowed_roots (" +
                             backups.path() + ")\n")
      << describe(refused);
  EXPECT_FALSE(fs::exists(outside));

  const std::string inside = backups.file("farm.db");
  CliResult done = cluster.run_cli({"admin", "backup", inside});
  ASSERT_EQ(done.exit_code, 0) << describe(done);
  EXPECT_EQ(jobs_in(inside), "1\n");
}

TEST(StateDirE2ETest, BackupOverAnExistingFileNeedsForce) {
  ClusterOptions options;
  options.local_workers = 0;
  Cluster cluster(options);
  ASSERT_TRUE(cluster.start());
  ASSERT_TRUE(cluster.submit({"noop", "--tasks", "1"})) << cluster.last_cli();

  const std::string target = cluster.path("farm.db");
  write_text(target, "precious");
  CliResult refused = cluster.run_cli({"admin", "backup", target});
  EXPECT_EQ(refused.exit_code, 1) << describe(refused);
  EXPECT_EQ(refused.err, "farmhand: backup path " + target + " exists; add --force to replace it\n")
      << describe(refused);
  EXPECT_TRUE(read_file(target) == "precious") << "the existing file was replaced";

  CliResult forced = cluster.run_cli({"admin", "backup", target, "--force"});
  ASSERT_EQ(forced.exit_code, 0) << describe(forced);
  EXPECT_EQ(jobs_in(target), "1\n");
}

}  // namespace
}  // namespace farmhand::e2e
