#include "common/curve.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string_view>
#include <system_error>

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

namespace farmhand::common {

namespace {

constexpr size_t kKeyChars = 40;

std::string trimmed(std::string_view line) {
  const auto first = line.find_first_not_of(" \t\r");
  if (first == std::string_view::npos) return {};
  const auto last = line.find_last_not_of(" \t\r");
  return std::string(line.substr(first, last - first + 1));
}

Result<void> write_new_file(const std::string& path, const std::string& text, mode_t mode) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    return fail(ErrorCode::kIo, fmt::format("cannot write {}: {}", path, std::strerror(errno)));
  }
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  const bool synced = ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || !synced) {
    return fail(ErrorCode::kIo, fmt::format("cannot write {}: {}", path, std::strerror(errno)));
  }
  return {};
}

// Writes `text` to a temporary file beside `path`, fsyncs it and renames it to
// `path` (replacing what is there), then fsyncs the directory.
Result<void> write_file_atomically(const std::string& path, const std::string& text, mode_t mode) {
  const std::filesystem::path target(path);
  const std::string temp =
      (target.parent_path() / fmt::format(".{}.tmp.{}", target.filename().string(), ::getpid()))
          .string();
  ::unlink(temp.c_str());  // a leftover of a crashed run with this pid
  if (auto ok = write_new_file(temp, text, mode); !ok) return ok;
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(temp.c_str());
    return fail(ErrorCode::kIo, fmt::format("cannot write {}: {}", path, std::strerror(err)));
  }
  const std::string dir = target.parent_path().empty() ? "." : target.parent_path().string();
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
  return {};
}

std::string secret_key_text(const std::string& key) {
  return "# farmhand CURVE secret key: keep private\n" + key + "\n";
}

std::string public_key_text(const std::string& key) {
  return "# farmhand CURVE public key\n" + key + "\n";
}

}  // namespace

bool curve_available() {
  return zmq_has("curve") != 0;
}

bool is_curve_key(const std::string& text) {
  if (text.size() != kKeyChars) return false;
  uint8_t decoded[32];
  return zmq_z85_decode(decoded, text.c_str()) != nullptr;
}

Result<CurveKeypair> curve_keypair() {
  char public_key[kKeyChars + 1] = {};
  char secret_key[kKeyChars + 1] = {};
  if (zmq_curve_keypair(public_key, secret_key) != 0) {
    return fail(ErrorCode::kInternal,
                fmt::format("cannot make a CURVE key pair: {}", zmq_strerror(zmq_errno())));
  }
  return CurveKeypair{public_key, secret_key};
}

Result<std::string> curve_public_key(const std::string& secret_key) {
  char public_key[kKeyChars + 1] = {};
  if (!is_curve_key(secret_key) || zmq_curve_public(public_key, secret_key.c_str()) != 0) {
    return fail(ErrorCode::kInvalidArgument, "not a CURVE secret key");
  }
  return std::string(public_key);
}

Result<std::string> read_curve_key_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return fail(ErrorCode::kNotFound,
                fmt::format("cannot read key file {}: {}", path, std::strerror(errno)));
  }
  // The first line that is a key; other lines are comments. (A key may itself
  // hold '#', which is a Z85 character.)
  for (std::string line; std::getline(in, line);) {
    std::string text = trimmed(line);
    if (is_curve_key(text)) return text;
  }
  return fail(ErrorCode::kInvalidArgument,
              fmt::format("no CURVE key in {} (a line of 40 Z85 characters)", path));
}

Result<CurveKeypair> write_curve_keypair(const std::string& prefix) {
  auto pair = curve_keypair();
  if (!pair) return pair;
  for (const std::string& path : {prefix + ".key", prefix + ".pub"}) {
    if (std::filesystem::exists(path)) {
      return fail(ErrorCode::kInvalidArgument, fmt::format("{} exists: not overwritten", path));
    }
  }
  if (auto ok = write_new_file(prefix + ".key", secret_key_text(pair->secret_key), 0600); !ok) {
    return fail(ok.error());
  }
  if (auto ok = write_new_file(prefix + ".pub", public_key_text(pair->public_key), 0644); !ok) {
    return fail(ok.error());
  }
  return pair;
}

Result<CurveKeypair> load_or_create_curve_keypair(const std::string& prefix, bool* created) {
  const std::string key_path = prefix + ".key";
  const std::string pub_path = prefix + ".pub";
  if (created != nullptr) *created = false;
  CurveKeypair pair;

  struct stat st {};

  if (::lstat(key_path.c_str(), &st) != 0) {
    if (errno != ENOENT) {
      return fail(ErrorCode::kIo,
                  fmt::format("cannot read key file {}: {}", key_path, std::strerror(errno)));
    }
    auto made = curve_keypair();
    if (!made) return made;
    pair = *made;
    if (auto ok = write_file_atomically(key_path, secret_key_text(pair.secret_key), 0600); !ok) {
      return fail(ok.error());
    }
    if (created != nullptr) *created = true;
  } else {
    if (!S_ISREG(st.st_mode)) {
      return fail(ErrorCode::kInvalidArgument,
                  fmt::format("key file {} is not a regular file", key_path));
    }
    // Group or others could read (or swap) the secret: refuse, as ssh does.
    if ((st.st_mode & 077) != 0) {
      return fail(ErrorCode::kInvalidArgument,
                  fmt::format("key file {} has mode {:04o}, wider than 0600: chmod 600 it",
                              key_path, st.st_mode & 07777));
    }
    auto secret = read_curve_key_file(key_path);
    if (!secret) return fail(secret.error());
    auto public_key = curve_public_key(*secret);
    if (!public_key) {
      return fail(ErrorCode::kInvalidArgument,
                  fmt::format("{}: {}", key_path, public_key.error().reason));
    }
    pair = CurveKeypair{*public_key, *secret};
  }
  auto published = read_curve_key_file(pub_path);
  if (!published || *published != pair.public_key) {
    if (auto ok = write_file_atomically(pub_path, public_key_text(pair.public_key), 0644); !ok) {
      return fail(ok.error());
    }
  }
  return pair;
}

bool is_loopback_endpoint(const std::string& endpoint) {
  if (endpoint.rfind("ipc://", 0) == 0 || endpoint.rfind("inproc://", 0) == 0) return true;
  if (endpoint.rfind("tcp://", 0) != 0) return false;
  const std::string_view address = std::string_view(endpoint).substr(6);
  // An interface or source address (tcp://eth0:7600, tcp://a;b:7600) is not loopback.
  if (address.find(';') != std::string_view::npos) return false;
  if (address.rfind("[::1]:", 0) == 0) return true;
  const auto colon = address.rfind(':');
  if (colon == std::string_view::npos) return false;
  const std::string_view host = address.substr(0, colon);
  if (host == "localhost" || host == "lo") return true;  // lo: Linux's loopback interface
  // 127.0.0.0/8: four dotted decimal numbers, the first 127.
  if (host.rfind("127.", 0) != 0) return false;
  int parts = 0;
  size_t digits = 0;
  for (const char c : host) {
    if (c == '.') {
      if (digits == 0 || digits > 3) return false;
      ++parts;
      digits = 0;
    } else if (c >= '0' && c <= '9') {
      ++digits;
    } else {
      return false;
    }
  }
  return parts == 3 && digits > 0 && digits <= 3;
}

Result<std::optional<CurveClientKeys>> curve_client_keys(const std::string& server_key_or_file,
                                                         const std::string& secret_key_file) {
  if (server_key_or_file.empty() && secret_key_file.empty()) return std::nullopt;
  if (server_key_or_file.empty() || secret_key_file.empty()) {
    return fail(ErrorCode::kInvalidArgument,
                "CurveZMQ needs both the broker's public key and a secret key file");
  }
  CurveClientKeys keys;
  if (server_key_or_file.front() == '@') {
    auto key = read_curve_key_file(server_key_or_file.substr(1));
    if (!key) return fail(key.error());
    keys.server_key = *key;
  } else if (is_curve_key(server_key_or_file)) {
    keys.server_key = server_key_or_file;
  } else {
    return fail(ErrorCode::kInvalidArgument,
                "the broker's CURVE key must be 40 Z85 characters, or @FILE holding it");
  }
  auto secret = read_curve_key_file(secret_key_file);
  if (!secret) return fail(secret.error());
  auto public_key = curve_public_key(*secret);
  if (!public_key) {
    return fail(ErrorCode::kInvalidArgument,
                fmt::format("{}: {}", secret_key_file, public_key.error().reason));
  }
  keys.secret_key = *secret;
  keys.public_key = *public_key;
  return keys;
}

Result<std::map<std::string, std::string>> read_authorized_keys(const std::string& dir,
                                                                size_t* skipped) {
  std::map<std::string, std::string> keys;
  size_t bad = 0;
  std::error_code ec;
  std::filesystem::directory_iterator it(dir, ec);
  if (ec) {
    return fail(ErrorCode::kNotFound,
                fmt::format("cannot list authorised keys in {}: {}", dir, ec.message()));
  }
  for (const auto& entry : it) {
    std::error_code type_ec;
    // Only *.pub: a secret key copied here by mistake is not a public key.
    if (!entry.is_regular_file(type_ec) || entry.path().extension() != ".pub") continue;
    auto key = read_curve_key_file(entry.path().string());
    if (key) {
      keys.emplace(*key, entry.path().stem().string());
    } else {
      ++bad;
    }
  }
  if (skipped != nullptr) *skipped = bad;
  return keys;
}

}  // namespace farmhand::common
