#include "daemon/systemd_notify.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>

#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "common/logging.h"

namespace farmhand::daemon::systemd {

namespace {

bool under_systemd() {
  const char* socket = std::getenv("NOTIFY_SOCKET");
  return socket != nullptr && *socket != '\0';
}

// Sends one notification; true only if systemd got it.
bool send(const std::string& state) {
  if (!under_systemd()) return false;
  int rc = sd_notify(/*unset_environment=*/0, state.c_str());
  if (rc <= 0) {
    common::logger("systemd")->debug("sd_notify failed state={} rc={}", state, rc);
    return false;
  }
  return true;
}

uint64_t monotonic_usec() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000u + static_cast<uint64_t>(ts.tv_nsec) / 1000u;
}

}  // namespace

bool notify_ready() {
  return send("READY=1");
}

bool notify_stopping() {
  return send("STOPPING=1");
}

bool notify_reloading() {
  // MONOTONIC_USEC lets systemd (253+, Type=notify-reload) match the reload to
  // this message; older versions ignore the field.
  return send("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(monotonic_usec()));
}

bool notify_status(std::string_view text) {
  std::string state = "STATUS=";
  state.reserve(state.size() + text.size());
  for (char c : text) {
    state.push_back(static_cast<unsigned char>(c) < 0x20 || c == 0x7f ? ' ' : c);
  }
  return send(state);
}

bool notify_watchdog() {
  return send("WATCHDOG=1");
}

std::optional<std::chrono::milliseconds> watchdog_interval() {
  uint64_t usec = 0;
  if (sd_watchdog_enabled(/*unset_environment=*/0, &usec) <= 0 || usec == 0) return std::nullopt;
  auto half = std::chrono::milliseconds(usec / 2 / 1000);
  return std::max(half, std::chrono::milliseconds(1));
}

}  // namespace farmhand::daemon::systemd
