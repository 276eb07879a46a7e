// MediaServer: the loop of the farmhand-media process.
//
// Reads media::Request frames from an fd (the worker's socketpair), runs each
// with image_ops / transcode, and writes media::Event frames back: `reading`
// before every decode (so a crash names its file), `progress`, `log` (lines
// for the task's log: what was read and written, timings), then `done`.
// One request at a time. A C++ exception becomes a failed `done`; an abort or
// a segfault inside a decoder ends the process, and the worker turns that into
// a classified task failure and starts a fresh media process.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>

#include "common/result.h"

namespace farmhand::media {

class Request;

class MediaServer {
 public:
  MediaServer(int in_fd, int out_fd) : in_fd_(in_fd), out_fd_(out_fd) {}

  // Serves until the worker closes its end. Errors are stream failures.
  [[nodiscard]] Result<void> serve();

 private:
  Result<void> handle(const Request& request);
  void send_reading(uint64_t id, const std::string& path);
  void send_progress(uint64_t id, uint64_t done, uint64_t total);
  void send_log(uint64_t id, const std::string& text);

  int in_fd_;
  int out_fd_;
  std::mutex write_mutex_;  // transcode reports `reading` from its decode threads
};

}  // namespace farmhand::media
