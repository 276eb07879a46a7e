#include "tests/support/tls_cert.h"

#include <cstdio>
#include <memory>

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace farmhand::testing_support {

namespace {

struct Deleter {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }

  void operator()(X509* p) const { X509_free(p); }

  void operator()(X509_EXTENSION* p) const { X509_EXTENSION_free(p); }

  void operator()(std::FILE* p) const { std::fclose(p); }
};

template <typename T>
using Owned = std::unique_ptr<T, Deleter>;

bool add_extension(X509* cert, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  Owned<X509_EXTENSION> ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value));
  return ext && X509_add_ext(cert, ext.get(), -1) == 1;
}

}  // namespace

TlsFiles make_self_signed(const std::string& dir, const std::string& name) {
  Owned<EVP_PKEY> key(EVP_EC_gen("P-256"));
  Owned<X509> cert(X509_new());
  if (!key || !cert) {
    ADD_FAILURE() << "OpenSSL could not make a key";
    return {};
  }
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 24 * 3600);
  X509_set_pubkey(cert.get(), key.get());
  X509_NAME* subject = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("farmhand test"), -1, -1, 0);
  X509_set_issuer_name(cert.get(), subject);
  const bool extended =
      add_extension(cert.get(), NID_basic_constraints, "critical,CA:TRUE") &&
      add_extension(cert.get(), NID_key_usage, "critical,digitalSignature,keyCertSign") &&
      add_extension(cert.get(), NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost");
  if (!extended || X509_sign(cert.get(), key.get(), EVP_sha256()) == 0) {
    ADD_FAILURE() << "OpenSSL could not sign the certificate";
    return {};
  }
  TlsFiles files{dir + "/" + name + ".crt", dir + "/" + name + ".key"};
  Owned<std::FILE> cert_out(std::fopen(files.cert.c_str(), "w"));
  Owned<std::FILE> key_out(std::fopen(files.key.c_str(), "w"));
  if (!cert_out || !key_out || PEM_write_X509(cert_out.get(), cert.get()) != 1 ||
      PEM_write_PrivateKey(key_out.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    ADD_FAILURE() << "cannot write " << files.cert << " and " << files.key;
    return {};
  }
  return files;
}

}  // namespace farmhand::testing_support
