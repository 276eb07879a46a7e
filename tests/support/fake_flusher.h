// FakeFlusher: a daemon::Flusher over a MemoryStore, for unit tests.
//
// By default every request is flushed at once (the store's commits count as
// durable when they return). hold() makes requests wait until the test calls
// complete(), which flushes the store as an fdatasync of the WAL would;
// fail() makes the flush in progress fail, as a disk's I/O error does.
#pragma once

#include <algorithm>
#include <optional>
#include <string>

#include "tests/support/memory_store.h"

#include "daemon/store/flusher.h"

namespace farmhand::testing {

class FakeFlusher final : public daemon::Flusher {
 public:
  explicit FakeFlusher(MemoryStore& disk) : disk_(disk) {}

  void hold() { held_ = true; }

  // Flushes everything written so far; stops holding when `and_stop_holding`.
  void complete(bool and_stop_holding = false) {
    disk_.flush();
    done_ = requested_;
    if (and_stop_holding) held_ = false;
  }

  void fail(std::string reason =
                "state store flush failed: Input/output error "
                "(/state/farmhand.db-wal)") {
    error_ = Error{ErrorCode::kIo, std::move(reason)};
  }

  uint64_t requested() const { return requested_; }

  void request(uint64_t seq) override {
    requested_ = std::max(requested_, seq);
    if (!held_ && !error_) complete();
  }

  Result<uint64_t> flushed() override {
    if (error_) return farmhand::fail(*error_);
    return done_;
  }

  int fd() const override { return -1; }

  Result<uint64_t> wait(uint64_t seq) override {
    requested_ = std::max(requested_, seq);
    if (!error_) complete();
    return flushed();
  }

 private:
  MemoryStore& disk_;
  bool held_ = false;
  uint64_t requested_ = 0;
  uint64_t done_ = 0;
  std::optional<Error> error_;
};

}  // namespace farmhand::testing
