/*
 * cert.h: the certificates the TLS context is made from.
 *
 * A domain the configuration gives no certificate gets a self-signed one,
 * so that a default start needs nothing: an EC P-256 key and an X.509 v3
 * certificate naming the domain (subject CN and SAN DNS), valid
 * LIMIT_TLS_SELF_SIGNED_DAYS, made with BoringSSL (no openssl command).
 * They are written as PEM files under the data directory, in
 * <data_dir>/certs/<domain>.pem and <domain>.key (the key 0600), each
 * atomically (a temporary file, fsync, rename), and reused by later starts
 * while they still match: same key, the domain named, not expired.
 *
 * Everything here reads or writes files: call it at start, before the
 * reactors run, never on a reactor thread.
 */
#ifndef STARLING_SERVER_TLS_CERT_H
#define STARLING_SERVER_TLS_CERT_H

#include "server/config/config.h"
#include "server/tls/tls.h"

#include <stdbool.h>
#include <stddef.h>

/* Room for a path under the data directory. */
#define TLS_CERT_PATH_BYTES (2u * CONFIG_STRING_BYTES + 32u)

/* Paths of one domain's certificate chain and key. */
typedef struct tls_cert_paths {
    char cert_file[TLS_CERT_PATH_BYTES];
    char key_file[TLS_CERT_PATH_BYTES];
} tls_cert_paths;

/*
 * Makes sure directory/certs/<domain>.pem and .key hold a usable
 * self-signed certificate for domain (both borrowed): reuses them when
 * they match, else generates and writes new ones (creating directory and
 * certs/ as needed, mode 0700). Fills out with their paths and sets
 * *generated. Returns true, or false with one line in error.
 */
bool tls_cert_self_signed(const char *directory, const char *domain, tls_cert_paths *out,
                          bool *generated, char *error, size_t error_bytes)
    __attribute__((warn_unused_result));

/*
 * Makes the process's TLS context from the configuration (borrowed): each
 * served domain, in order (the first is the default), with its
 * `certificates` entry (paths resolved under data_dir), or else a
 * self-signed certificate from tls_cert_self_signed; then any further
 * `certificates` entries, so SNI finds them too. NULL on failure with one
 * line in error (TLS_ERROR_BYTES takes any).
 */
tls_context *tls_context_from_config(const config *settings, char *error, size_t error_bytes)
    __attribute__((warn_unused_result));

#endif
