// CurveZMQ keys for the worker endpoint (ARCHITECTURE.md, "Security model").
//
// Keys are Z85 text, 40 characters, as libzmq's zmq_curve_keypair() makes
// them. A key file holds the key on a line of its own; other lines are
// comments. `farmhand admin keygen PREFIX` writes PREFIX.key (the secret key,
// mode 0600) and PREFIX.pub (the public key). The broker admits the workers
// whose public keys are *.pub files in its authorised-keys directory.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>

#include "common/result.h"

namespace farmhand::common {

struct CurveKeypair {
  std::string public_key;  // Z85
  std::string secret_key;  // Z85
};

// Whether libzmq was built with CURVE (Debian's is, with libsodium).
bool curve_available();

bool is_curve_key(const std::string& text);

[[nodiscard]] Result<CurveKeypair> curve_keypair();

// The public key that belongs to a secret key.
[[nodiscard]] Result<std::string> curve_public_key(const std::string& secret_key);

// The key in a key file. Errors name the file: "cannot read key file X: ...",
// "no CURVE key in X".
[[nodiscard]] Result<std::string> read_curve_key_file(const std::string& path);

// Writes PREFIX.key (secret, 0600) and PREFIX.pub; refuses to overwrite either.
[[nodiscard]] Result<CurveKeypair> write_curve_keypair(const std::string& prefix);

// A server's own key pair, made on first use and reused after: PREFIX.key (the
// secret key, 0600) and PREFIX.pub, each written to a temporary name, fsynced
// and renamed into place, so a crash never leaves half a key. Refuses (one line
// naming the file) a PREFIX.key that cannot be read, holds no key, or may be
// read by anyone but its owner. A missing or stale PREFIX.pub is written again.
// `created` says whether the pair is new. The directory must exist.
[[nodiscard]] Result<CurveKeypair> load_or_create_curve_keypair(const std::string& prefix,
                                                                bool* created = nullptr);

// Whether a ZeroMQ endpoint listens only on this host: ipc://, inproc://,
// tcp://127.x.x.x, tcp://[::1] and tcp://localhost.
bool is_loopback_endpoint(const std::string& endpoint);

// What a CurveZMQ client sets on its socket.
struct CurveClientKeys {
  std::string server_key;  // the broker's public key
  std::string public_key;
  std::string secret_key;
};

// Client keys from the broker's public key (the key itself, or @FILE holding
// it) and a secret key file: none when both are empty; an error when only one
// is given or a key does not read.
[[nodiscard]] Result<std::optional<CurveClientKeys>> curve_client_keys(
    const std::string& server_key_or_file, const std::string& secret_key_file);

// Public keys of the *.pub files in `dir`, each with its name (the file's
// name without .pub: "alice" for alice.pub; files without a key are skipped
// and counted in `skipped`; other files are ignored). Error when the directory
// cannot be listed: the caller then admits nobody.
[[nodiscard]] Result<std::map<std::string, std::string>> read_authorized_keys(
    const std::string& dir, size_t* skipped = nullptr);

}  // namespace farmhand::common
