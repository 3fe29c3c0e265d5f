/*
 * cert.c: the self-signed certificate of a default start, and the TLS
 * context made from the configuration (see cert.h).
 *
 * The files are written key first, then certificate, each through a
 * temporary file in the same directory that is fsynced and renamed over
 * the final name, so a crash leaves either the old file or the new one,
 * never half of one. A start that finds the key without the certificate
 * (a crash between the two) or a pair that no longer fits (another key,
 * another domain, expired) makes a new pair.
 */
#include "server/tls/cert.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* A domain used as a file name: no path separators, no leading dot. */
static bool domain_is_file_name(const char *domain)
{
    return domain[0] != '\0' && domain[0] != '.' && strchr(domain, '/') == NULL;
}

/* Creates path (mode 0700) unless it is already a directory. */
static bool make_directory(const char *path, char *error, size_t error_bytes)
{
    struct stat status;
    if (mkdir(path, 0700) == 0 ||
        (errno == EEXIST && stat(path, &status) == 0 && S_ISDIR(status.st_mode)))
        return true;
    snprintf(error, error_bytes, "%s: cannot create the directory (%s)", path,
             errno == EEXIST ? "not a directory" : strerror(errno));
    return false;
}

/* Writes length bytes to path through a temporary file and rename, the
 * file with mode (set before any byte is written). */
static bool write_atomically(const char *path, const uint8_t *bytes, size_t length, mode_t mode,
                             char *error, size_t error_bytes)
{
    char temporary[TLS_CERT_PATH_BYTES + 16];
    if ((size_t)snprintf(temporary, sizeof temporary, "%s.XXXXXX", path) >= sizeof temporary) {
        snprintf(error, error_bytes, "%s: path too long", path);
        return false;
    }
    int fd = mkstemp(temporary);
    if (fd < 0) {
        snprintf(error, error_bytes, "%s: cannot create a temporary file (%s)", path,
                 strerror(errno));
        return false;
    }
    bool written = fchmod(fd, mode) == 0;
    size_t done = 0;
    while (written && done < length) {
        ssize_t piece = write(fd, bytes + done, length - done);
        if (piece < 0 && errno == EINTR)
            continue;
        written = piece > 0;
        if (written)
            done += (size_t)piece;
    }
    written = written && fsync(fd) == 0;
    int saved = errno;
    written = close(fd) == 0 && written;
    if (!written || rename(temporary, path) != 0) {
        saved = written ? errno : saved;
        unlink(temporary);
        snprintf(error, error_bytes, "%s: cannot write (%s)", path, strerror(saved));
        return false;
    }
    return true;
}

/* Reads the first PEM object of path (at most LIMIT_TLS_PEM_FILE_BYTES_MAX
 * bytes) as a certificate (want_key false) or a private key. */
static void *read_pem(const char *path, bool want_key)
{
    struct stat status;
    if (stat(path, &status) != 0 || !S_ISREG(status.st_mode) ||
        (unsigned long long)status.st_size > LIMIT_TLS_PEM_FILE_BYTES_MAX)
        return NULL;
    BIO *file = BIO_new_file(path, "r");
    if (file == NULL)
        return NULL;
    void *object = want_key ? (void *)PEM_read_bio_PrivateKey(file, NULL, NULL, NULL)
                            : (void *)PEM_read_bio_X509(file, NULL, NULL, NULL);
    BIO_free(file);
    return object;
}

/* True when the pair at paths is a matching key and certificate that
 * names domain and has not expired. */
static bool existing_pair_usable(const tls_cert_paths *paths, const char *domain)
{
    EVP_PKEY *key = read_pem(paths->key_file, true);
    X509 *certificate = read_pem(paths->cert_file, false);
    bool usable = key != NULL && certificate != NULL &&
                  X509_check_private_key(certificate, key) == 1 &&
                  X509_check_host(certificate, domain, strlen(domain), 0, NULL) == 1 &&
                  X509_cmp_current_time(X509_get0_notAfter(certificate)) > 0;
    EVP_PKEY_free(key);
    X509_free(certificate);
    ERR_clear_error();
    return usable;
}

/* A fresh EC P-256 key, or NULL. */
static EVP_PKEY *generate_key(void)
{
    EVP_PKEY *key = EVP_PKEY_new();
    EC_KEY *ec_key = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
    if (key == NULL || ec_key == NULL || EC_KEY_generate_key(ec_key) != 1 ||
        EVP_PKEY_assign_EC_KEY(key, ec_key) != 1) {
        EVP_PKEY_free(key);
        EC_KEY_free(ec_key);
        return NULL;
    }
    return key;
}

/* Adds subjectAltName DNS:domain, basicConstraints CA:FALSE (critical) and
 * extendedKeyUsage serverAuth. */
static bool add_extensions(X509 *certificate, const char *domain)
{
    GENERAL_NAMES *names = GENERAL_NAMES_new();
    GENERAL_NAME *name = GENERAL_NAME_new();
    ASN1_IA5STRING *dns = ASN1_IA5STRING_new();
    bool added = names != NULL && name != NULL && dns != NULL &&
                 ASN1_STRING_set(dns, domain, (int)strlen(domain)) == 1;
    if (added) {
        GENERAL_NAME_set0_value(name, GEN_DNS, dns);
        dns = NULL;
        added = sk_GENERAL_NAME_push(names, name) != 0;
        if (added)
            name = NULL;
    }
    added = added &&
            X509_add1_ext_i2d(certificate, NID_subject_alt_name, names, 0, X509V3_ADD_DEFAULT) == 1;
    ASN1_IA5STRING_free(dns);
    GENERAL_NAME_free(name);
    GENERAL_NAMES_free(names);

    BASIC_CONSTRAINTS *constraints = BASIC_CONSTRAINTS_new();
    added = added && constraints != NULL &&
            X509_add1_ext_i2d(certificate, NID_basic_constraints, constraints, 1,
                              X509V3_ADD_DEFAULT) == 1;
    BASIC_CONSTRAINTS_free(constraints);

    EXTENDED_KEY_USAGE *usage = sk_ASN1_OBJECT_new_null();
    added = added && usage != NULL &&
            sk_ASN1_OBJECT_push(usage, OBJ_nid2obj(NID_server_auth)) != 0 &&
            X509_add1_ext_i2d(certificate, NID_ext_key_usage, usage, 0, X509V3_ADD_DEFAULT) == 1;
    sk_ASN1_OBJECT_free(usage); /* OBJ_nid2obj's objects are static */
    return added;
}

/* A random positive 128-bit serial number (RFC 5280 section 4.1.2.2). */
static bool set_serial(X509 *certificate)
{
    uint8_t bytes[16];
    RAND_bytes(bytes, sizeof bytes);
    bytes[0] = (uint8_t)((bytes[0] & 0x7f) | 0x01);
    BIGNUM *number = BN_bin2bn(bytes, sizeof bytes, NULL);
    bool set = number != NULL && BN_to_ASN1_INTEGER(number, X509_get_serialNumber(certificate));
    BN_free(number);
    return set;
}

/* A self-signed certificate for domain with key, or NULL. */
static X509 *generate_certificate(EVP_PKEY *key, const char *domain)
{
    X509 *certificate = X509_new();
    if (certificate == NULL)
        return NULL;
    X509_NAME *name = X509_get_subject_name(certificate);
    bool made = X509_set_version(certificate, X509_VERSION_3) == 1 && set_serial(certificate) &&
                X509_gmtime_adj(X509_getm_notBefore(certificate), -3600) != NULL &&
                X509_time_adj_ex(X509_getm_notAfter(certificate), (int)LIMIT_TLS_SELF_SIGNED_DAYS,
                                 0, NULL) != NULL &&
                X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const uint8_t *)domain, -1,
                                           -1, 0) == 1 &&
                X509_set_issuer_name(certificate, name) == 1 &&
                X509_set_pubkey(certificate, key) == 1 && add_extensions(certificate, domain) &&
                X509_sign(certificate, key, EVP_sha256()) > 0;
    if (!made) {
        X509_free(certificate);
        return NULL;
    }
    return certificate;
}

/* PEM text of key (PKCS#8) or certificate in a memory BIO, written to path
 * atomically with mode. */
static bool write_pem(const char *path, EVP_PKEY *key, X509 *certificate, mode_t mode, char *error,
                      size_t error_bytes)
{
    BIO *memory = BIO_new(BIO_s_mem());
    const uint8_t *bytes = NULL;
    size_t length = 0;
    bool encoded =
        memory != NULL &&
        (key != NULL ? PEM_write_bio_PrivateKey(memory, key, NULL, NULL, 0, NULL, NULL) == 1
                     : PEM_write_bio_X509(memory, certificate) == 1) &&
        BIO_mem_contents(memory, &bytes, &length) == 1;
    bool written = encoded && write_atomically(path, bytes, length, mode, error, error_bytes);
    if (!encoded)
        snprintf(error, error_bytes, "%s: cannot encode PEM", path);
    BIO_free(memory);
    return written;
}

/* Generates a key and certificate for domain and writes them to paths. */
static bool generate_pair(const tls_cert_paths *paths, const char *domain, char *error,
                          size_t error_bytes)
{
    EVP_PKEY *key = generate_key();
    X509 *certificate = key != NULL ? generate_certificate(key, domain) : NULL;
    bool done = false;
    if (certificate == NULL)
        snprintf(error, error_bytes, "%s: cannot generate a self-signed certificate (%s)", domain,
                 ERR_reason_error_string(ERR_peek_error()) != NULL
                     ? ERR_reason_error_string(ERR_peek_error())
                     : "out of memory");
    else
        done = write_pem(paths->key_file, key, NULL, 0600, error, error_bytes) &&
               write_pem(paths->cert_file, NULL, certificate, 0644, error, error_bytes);
    X509_free(certificate);
    EVP_PKEY_free(key);
    ERR_clear_error();
    return done;
}

bool tls_cert_self_signed(const char *directory, const char *domain, tls_cert_paths *out,
                          bool *generated, char *error, size_t error_bytes)
{
    *generated = false;
    if (!domain_is_file_name(domain)) {
        snprintf(error, error_bytes, "%s: not usable as a certificate file name", domain);
        return false;
    }
    char certs[TLS_CERT_PATH_BYTES];
    if ((size_t)snprintf(certs, sizeof certs, "%s/certs", directory) >= sizeof certs ||
        (size_t)snprintf(out->cert_file, sizeof out->cert_file, "%s/%s.pem", certs, domain) >=
            sizeof out->cert_file ||
        (size_t)snprintf(out->key_file, sizeof out->key_file, "%s/%s.key", certs, domain) >=
            sizeof out->key_file) {
        snprintf(error, error_bytes, "%s: certificate path too long", directory);
        return false;
    }
    if (existing_pair_usable(out, domain))
        return true;
    if (!make_directory(directory, error, error_bytes) ||
        !make_directory(certs, error, error_bytes) ||
        !generate_pair(out, domain, error, error_bytes))
        return false;
    *generated = true;
    return true;
}

/* The configured certificate entry of domain, or NULL. */
static const config_certificate *configured_certificate(const config *settings, const char *domain)
{
    for (unsigned i = 0; i < settings->certificate_count; i++)
        if (strcmp(settings->certificates[i].domain, domain) == 0)
            return &settings->certificates[i];
    return NULL;
}

/* Whether domain is one of the served domains. */
static bool served(const config *settings, const char *domain)
{
    for (unsigned i = 0; i < settings->domain_count; i++)
        if (strcmp(settings->domains[i], domain) == 0)
            return true;
    return false;
}

/* Fills *slot (paths in *paths) for domain from its entry or a self-signed
 * pair. */
static bool resolve_domain(const config *settings, const char *domain, tls_cert_paths *paths,
                           tls_certificate *slot, char *error, size_t error_bytes)
{
    const config_certificate *entry = configured_certificate(settings, domain);
    if (entry == NULL) {
        bool generated = false;
        if (!tls_cert_self_signed(settings->data_dir, domain, paths, &generated, error,
                                  error_bytes))
            return false;
    } else if (config_data_path(settings, entry->cert_file, paths->cert_file,
                                sizeof paths->cert_file) != 0 ||
               config_data_path(settings, entry->key_file, paths->key_file,
                                sizeof paths->key_file) != 0) {
        snprintf(error, error_bytes, "%s: certificate path too long", domain);
        return false;
    }
    slot->domain = domain;
    slot->cert_file = paths->cert_file;
    slot->key_file = paths->key_file;
    return true;
}

tls_context *tls_context_from_config(const config *settings, char *error, size_t error_bytes)
{
    /* Served domains and certificate entries are both bounded by
     * LIMIT_CONFIG_DOMAINS_MAX, and every entry beyond the served ones
     * names another domain, so the table never holds more than that. */
    _Static_assert(LIMIT_CONFIG_DOMAINS_MAX <= 64u, "paths stay a modest heap block");
    tls_cert_paths *paths = calloc(LIMIT_CONFIG_DOMAINS_MAX, sizeof *paths);
    tls_certificate certificates[LIMIT_CONFIG_DOMAINS_MAX];
    if (paths == NULL) {
        snprintf(error, error_bytes, "out of memory for certificate paths");
        return NULL;
    }
    size_t count = 0;
    bool resolved = true;
    for (unsigned i = 0; resolved && i < settings->domain_count; i++) {
        resolved = resolve_domain(settings, settings->domains[i], &paths[count],
                                  &certificates[count], error, error_bytes);
        count += resolved ? 1u : 0u;
    }
    for (unsigned i = 0; resolved && i < settings->certificate_count; i++) {
        const char *domain = settings->certificates[i].domain;
        if (served(settings, domain))
            continue;
        if (count == LIMIT_CONFIG_DOMAINS_MAX) {
            snprintf(error, error_bytes, "more than %u domains with certificates",
                     LIMIT_CONFIG_DOMAINS_MAX);
            resolved = false;
            break;
        }
        resolved = resolve_domain(settings, domain, &paths[count], &certificates[count], error,
                                  error_bytes);
        count += resolved ? 1u : 0u;
    }
    tls_context *context =
        resolved ? tls_context_create(certificates, count, error, error_bytes) : NULL;
    free(paths);
    return context;
}
