// A self-signed certificate for 127.0.0.1 and localhost, made with OpenSSL in
// the test (no openssl command needed): the server's certificate and, passed
// as a CA file, the client's trust in it. Valid from an hour ago for a day.
#pragma once

#include <string>

namespace farmhand::testing_support {

struct TlsFiles {
  std::string cert;  // PEM certificate (also the CA file that trusts it)
  std::string key;   // PEM private key
};

// Writes DIR/NAME.crt and DIR/NAME.key; empty paths (and a test failure) if
// OpenSSL refused.
TlsFiles make_self_signed(const std::string& dir, const std::string& name);

}  // namespace farmhand::testing_support
