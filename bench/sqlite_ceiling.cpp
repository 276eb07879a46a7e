// farmhand_bench_sqlite: the durable-state ceiling for dispatch.
//
// Writes what the broker's store writes per task, and nothing else, into a fresh
// database with the broker's own schema (daemon/store/migrations/0001_init.sql,
// read at run time) and pragmas (WAL, synchronous as given, FULL by default): one
// upsert marking the task running with its lease and worker, and one marking it
// succeeded, with the store's exact upsert statement. Group commit as in the event
// loop: each transaction holds one turn, i.e. the running upserts of --batch
// dispatches and the succeeded upserts of the --batch tasks dispatched in the
// previous turn. Prints tasks_per_s and the number of commits.
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <string>

#include "bench/support.h"
#include <CLI/CLI.hpp>
#include <sqlite3.h>

namespace {

using farmhand::bench::Clock;
using farmhand::bench::emit;

// The store's statement (daemon/store/sqlite_store.cpp), verbatim.
constexpr const char* kUpsertTask =
    "INSERT INTO tasks (job_id, idx, state, attempts, lease, worker, error) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (job_id, idx) DO UPDATE SET "
    "state = excluded.state, attempts = excluded.attempts, lease = excluded.lease, "
    "worker = excluded.worker, error = excluded.error";

// Store states (0001_init.sql): 2 running, 3 succeeded.
constexpr int kRunning = 2;
constexpr int kSucceeded = 3;

bool exec(sqlite3* db, const std::string& sql) {
  char* message = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &message) != SQLITE_OK) {
    std::fprintf(stderr, "farmhand_bench_sqlite: %s\n", message ? message : "unknown error");
    sqlite3_free(message);
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"farmhand_bench_sqlite: per-task store writes ceiling"};
  std::string path;
  std::string schema_path = FARMHAND_BENCH_SCHEMA;
  uint64_t tasks = 100'000;
  uint64_t batch = 32;
  std::string synchronous = "FULL";
  app.add_option("--db", path, "a database file that does not exist yet")->required();
  app.add_option("--schema", schema_path, "schema to create (default: the broker's migration)");
  app.add_option("--tasks", tasks, "tasks to write");
  app.add_option("--batch", batch, "tasks dispatched (and finished) per transaction")
      ->check(CLI::PositiveNumber);
  app.add_option("--synchronous", synchronous, "FULL | NORMAL | OFF");
  CLI11_PARSE(app, argc, argv);

  std::ifstream schema_file(schema_path);
  if (!schema_file) {
    std::fprintf(stderr, "farmhand_bench_sqlite: cannot read %s\n", schema_path.c_str());
    return 1;
  }
  std::stringstream schema;
  schema << schema_file.rdbuf();

  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
      SQLITE_OK) {
    std::fprintf(stderr, "farmhand_bench_sqlite: cannot open %s\n", path.c_str());
    return 1;
  }
  // The broker's pragmas (SqliteStore::open).
  if (!exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=" + synchronous +
                    "; PRAGMA foreign_keys=OFF; PRAGMA temp_store=MEMORY;") ||
      !exec(db, "BEGIN; " + schema.str() + " PRAGMA user_version=1; COMMIT;")) {
    sqlite3_close_v2(db);
    return 1;
  }
  sqlite3_stmt* upsert = nullptr;
  if (sqlite3_prepare_v3(db, kUpsertTask, -1, SQLITE_PREPARE_PERSISTENT, &upsert, nullptr) !=
      SQLITE_OK) {
    std::fprintf(stderr, "farmhand_bench_sqlite: %s\n", sqlite3_errmsg(db));
    sqlite3_close_v2(db);
    return 1;
  }
  const std::string worker = "local-1";
  const std::string empty;
  std::mt19937_64 rng(1);
  auto write = [&](uint64_t task, int state, uint64_t lease, const std::string& name) {
    sqlite3_bind_int64(upsert, 1, 1);
    sqlite3_bind_int64(upsert, 2, static_cast<sqlite3_int64>(task));
    sqlite3_bind_int(upsert, 3, state);
    sqlite3_bind_int(upsert, 4, 1);
    sqlite3_bind_int64(upsert, 5, static_cast<sqlite3_int64>(lease));
    sqlite3_bind_text(upsert, 6, name.data(), static_cast<int>(name.size()), SQLITE_TRANSIENT);
    sqlite3_bind_text(upsert, 7, empty.data(), 0, SQLITE_TRANSIENT);
    int rc = sqlite3_step(upsert);
    sqlite3_reset(upsert);
    sqlite3_clear_bindings(upsert);
    return rc == SQLITE_DONE;
  };

  uint64_t commits = 0;
  auto started = Clock::now();
  // Turn k dispatches tasks [k*batch, (k+1)*batch) and finishes those of turn k-1.
  for (uint64_t first = 0; first < tasks + batch; first += batch) {
    if (!exec(db, "BEGIN IMMEDIATE")) return 1;
    for (uint64_t t = first >= batch ? first - batch : tasks; t < std::min(first, tasks); ++t) {
      if (!write(t, kSucceeded, 0, empty)) return 1;
    }
    for (uint64_t t = first; t < std::min(first + batch, tasks); ++t) {
      if (!write(t, kRunning, rng() >> 1, worker)) return 1;
    }
    if (!exec(db, "COMMIT")) return 1;
    ++commits;
  }
  double seconds = farmhand::bench::ms_between(started, Clock::now()) / 1000.0;
  sqlite3_finalize(upsert);
  sqlite3_close_v2(db);
  emit("tasks", static_cast<double>(tasks));
  emit("batch", static_cast<double>(batch));
  emit("commits", static_cast<double>(commits));
  emit("seconds", seconds);
  emit("tasks_per_s", static_cast<double>(tasks) / seconds);
  return 0;
}
