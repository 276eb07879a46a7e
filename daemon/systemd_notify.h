// systemd service notifications: a thin wrapper over libsystemd's sd_notify.
//
// farmhandd runs as a Type=notify service (deploy/farmhandd.service). It tells
// the service manager when it is ready, reloading and stopping, publishes a
// one-line status for `systemctl status`, and pings the watchdog from its event
// loop so that a wedged loop is restarted.
//
// Every call is a no-op that returns false when NOTIFY_SOCKET is unset (not
// started by systemd, or by a shell, a test or the demo). Notifications are
// best effort: a failed send is logged at debug level, never an error. The
// environment is read on every call and left in place, so children inherit it;
// NotifyAccess=main makes systemd ignore anything they might send.
// Thread-safe (each call is one datagram), but the watchdog ping belongs in the
// event loop's thread, so that it stops when the loop stops turning.
#pragma once

#include <chrono>
#include <optional>
#include <string_view>

namespace farmhand::daemon::systemd {

// READY=1: start-up is complete (store open, sockets bound). Send it again,
// with a fresh status, once a reload has finished.
bool notify_ready();

// STOPPING=1: shutdown has begun (a SIGTERM or SIGINT arrived).
bool notify_stopping();

// RELOADING=1 with MONOTONIC_USEC=now: a reload (SIGHUP) has begun. systemd
// shows the unit as "reloading" until the next notify_ready().
bool notify_reloading();

// STATUS=text: a one-line status shown by `systemctl status farmhandd`.
// Newlines and other control bytes in `text` become spaces.
bool notify_status(std::string_view text);

// WATCHDOG=1: the event loop is alive. Call it at least every watchdog_interval().
bool notify_watchdog();

// How often the event loop should call notify_watchdog(): half of the unit's
// WatchdogSec= (WATCHDOG_USEC, for this process per WATCHDOG_PID), at least 1 ms.
// nullopt when the watchdog is not enabled for this process.
std::optional<std::chrono::milliseconds> watchdog_interval();

}  // namespace farmhand::daemon::systemd
