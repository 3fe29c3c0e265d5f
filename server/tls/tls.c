/*
 * tls.c: BoringSSL server sessions over memory (see tls.h).
 *
 * Each domain gets its own SSL_CTX holding its certificate; the default
 * domain's one (the first) creates every SSL, and the server-name callback
 * switches a handshake to the domain its SNI names (SSL_set_SSL_CTX).
 * Session tickets stay with the initial SSL_CTX, so every domain shares
 * the default context's ticket keys; all contexts carry the same session
 * ID context so that a ticket resumes whichever domain it was issued for.
 *
 * The BIO is our own method: reading takes bytes from the span the
 * current tls_session_receive call was given (and says "retry" when it is
 * used up, exactly as a non-blocking socket would), writing hands bytes to
 * the current tls_io's on_ciphertext. BoringSSL asks the BIO for just the
 * bytes of the record it is assembling, so a span holding several records
 * is consumed by SSL_read looping until it answers "want read"; the span
 * is then empty. Nothing is buffered in the BIO, and BoringSSL frees its
 * read and write buffers whenever they are empty (SSL_MODE_RELEASE_BUFFERS
 * is a no-op there: it always does), so an idle session holds no record
 * buffer at all.
 */
#include "server/tls/tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <openssl/bio.h>
#include <openssl/digest.h>
#include <openssl/err.h>
#include <openssl/obj.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

typedef struct tls_domain {
    SSL_CTX *ssl_context; /* owned */
    char *name;           /* owned */
    uint8_t end_point[TLS_END_POINT_BYTES_MAX];
    size_t end_point_length; /* 0: no binding defined for its signature */
} tls_domain;

struct tls_context {
    BIO_METHOD *bio_method; /* owned; read-only once made */
    size_t domain_count;
    tls_domain domains[]; /* [0] is the default */
};

struct tls_session {
    SSL *ssl;             /* owned; owns the BIO */
    tls_context *context; /* borrowed */
    /* The current call's input and output; empty between calls. */
    const uint8_t *input;
    size_t input_length;
    const tls_io *io;
    const char *error; /* static; NULL while healthy */
    size_t handshake_bytes;
    uint8_t domain_index;
    uint8_t mode; /* tls_mode */
    bool established;
    bool output_failed;
    bool shutdown_sent;
    bool input_dropped; /* a receive stopped early: the stream lost bytes */
};

_Static_assert(LIMIT_CONFIG_DOMAINS_MAX <= UINT8_MAX, "domain index fits in uint8_t");

/* ALPN protocol name of XEP-0368 direct TLS. */
static const uint8_t xmpp_client_protocol[] = {'x', 'm', 'p', 'p', '-', 'c',
                                               'l', 'i', 'e', 'n', 't'};

/* Modern suites only (TLS 1.2; TLS 1.3's are fixed and all AEAD): forward
 * secret key exchange and an AEAD, ECDSA and RSA certificates alike. */
static const char cipher_list[] = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                  "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                  "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
static const char curve_list[] = "X25519:P-256:P-384";
static const uint8_t session_id_context[] = {'s', 't', 'a', 'r', 'l', 'i', 'n', 'g'};

/* The reason of the thread's first queued BoringSSL error, or fallback. The
 * reason strings are static, so a session may keep the pointer. */
static const char *first_error_name(const char *fallback)
{
    uint32_t error = ERR_peek_error();
    const char *reason = error != 0 ? ERR_reason_error_string(error) : NULL;
    ERR_clear_error();
    return reason != NULL ? reason : fallback;
}

/* ---------------------------------------------------------------- the BIO */

static int bio_create(BIO *bio)
{
    BIO_set_init(bio, 1);
    return 1;
}

static int bio_destroy(BIO *bio)
{
    (void)bio;
    return 1;
}

static int bio_read(BIO *bio, char *out, int out_length)
{
    tls_session *session = BIO_get_data(bio);
    BIO_clear_retry_flags(bio);
    if (out_length <= 0)
        return 0;
    if (session->input_length == 0) {
        BIO_set_retry_read(bio);
        return -1;
    }
    size_t piece =
        (size_t)out_length < session->input_length ? (size_t)out_length : session->input_length;
    memcpy(out, session->input, piece);
    session->input += piece;
    session->input_length -= piece;
    return (int)piece;
}

static int bio_write(BIO *bio, const char *bytes, int length)
{
    tls_session *session = BIO_get_data(bio);
    BIO_clear_retry_flags(bio);
    if (length <= 0)
        return 0;
    /* Output outside a call (none is expected) or refused by the caller
     * fails the SSL: ciphertext is never dropped silently. */
    if (session->io == NULL || !session->io->on_ciphertext(
                                   session->io->argument, (const uint8_t *)bytes, (size_t)length)) {
        session->output_failed = true;
        return -1;
    }
    return length;
}

static long bio_ctrl(BIO *bio, int command, long number, void *pointer)
{
    (void)bio;
    (void)number;
    (void)pointer;
    return command == BIO_CTRL_FLUSH ? 1 : 0;
}

static BIO_METHOD *bio_method_new(void)
{
    BIO_METHOD *method = BIO_meth_new(BIO_TYPE_SOURCE_SINK, "starling-tls");
    if (method == NULL)
        return NULL;
    if (BIO_meth_set_create(method, bio_create) != 1 ||
        BIO_meth_set_destroy(method, bio_destroy) != 1 ||
        BIO_meth_set_read(method, bio_read) != 1 || BIO_meth_set_write(method, bio_write) != 1 ||
        BIO_meth_set_ctrl(method, bio_ctrl) != 1) {
        BIO_meth_free(method);
        return NULL;
    }
    return method;
}

/* ------------------------------------------------------------- callbacks */

/* SNI: switch to the named domain's certificate; an absent or unknown
 * name keeps the default one (and SNI is not acknowledged). */
static int select_domain(SSL *ssl, int *alert, void *argument)
{
    (void)alert;
    tls_context *context = argument;
    tls_session *session = SSL_get_app_data(ssl);
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (name == NULL)
        return SSL_TLSEXT_ERR_NOACK;
    for (size_t i = 0; i < context->domain_count; i++) {
        if (strcasecmp(name, context->domains[i].name) != 0)
            continue;
        session->domain_index = (uint8_t)i;
        if (i != 0 && SSL_set_SSL_CTX(ssl, context->domains[i].ssl_context) == NULL) {
            *alert = SSL_AD_INTERNAL_ERROR;
            return SSL_TLSEXT_ERR_ALERT_FATAL;
        }
        return SSL_TLSEXT_ERR_OK;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

/* ALPN: on direct TLS, a client that offers protocols must offer
 * xmpp-client (XEP-0368; RFC 7301 section 3.2 names the alert for none
 * in common); STARTTLS ignores ALPN. BoringSSL has checked the list's
 * encoding before calling. */
static int select_protocol(SSL *ssl, const uint8_t **out, uint8_t *out_length,
                           const uint8_t *offered, unsigned offered_length, void *argument)
{
    (void)argument;
    const tls_session *session = SSL_get_app_data(ssl);
    if (session->mode != TLS_MODE_DIRECT)
        return SSL_TLSEXT_ERR_NOACK;
    size_t at = 0;
    while (at < offered_length) {
        size_t name_length = offered[at];
        const uint8_t *name = offered + at + 1;
        if (at + 1 + name_length > offered_length)
            break;
        if (name_length == sizeof xmpp_client_protocol &&
            memcmp(name, xmpp_client_protocol, name_length) == 0) {
            *out = name;
            *out_length = (uint8_t)name_length;
            return SSL_TLSEXT_ERR_OK;
        }
        at += 1 + name_length;
    }
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* -------------------------------------------------------------- context */

/* The settings every domain's SSL_CTX shares (the handshake reads them
 * from whichever context SNI switched to). */
static bool configure(SSL_CTX *ssl_context, tls_context *context)
{
    SSL_CTX_set_session_cache_mode(ssl_context, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_mode(ssl_context, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_options(ssl_context, SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_tlsext_servername_callback(ssl_context, select_domain);
    SSL_CTX_set_tlsext_servername_arg(ssl_context, context);
    SSL_CTX_set_alpn_select_cb(ssl_context, select_protocol, context);
    return SSL_CTX_set_min_proto_version(ssl_context, TLS1_2_VERSION) == 1 &&
           SSL_CTX_set_max_proto_version(ssl_context, TLS1_3_VERSION) == 1 &&
           SSL_CTX_set_strict_cipher_list(ssl_context, cipher_list) == 1 &&
           SSL_CTX_set1_curves_list(ssl_context, curve_list) == 1 &&
           SSL_CTX_set_num_tickets(ssl_context, LIMIT_TLS_SESSION_TICKETS) == 1 &&
           SSL_CTX_set_session_id_context(ssl_context, session_id_context,
                                          sizeof session_id_context) == 1;
}

/* RFC 5929 section 4.1: the certificate's signature hash, SHA-256 in
 * place of MD5 and SHA-1; none for a signature without a separate hash
 * (Ed25519), where the binding is undefined. */
static void compute_end_point(tls_domain *domain)
{
    domain->end_point_length = 0;
    X509 *leaf = SSL_CTX_get0_certificate(domain->ssl_context);
    int digest_nid = NID_undef;
    int key_nid = NID_undef;
    if (leaf == NULL ||
        OBJ_find_sigid_algs(X509_get_signature_nid(leaf), &digest_nid, &key_nid) != 1)
        return;
    const EVP_MD *digest = NULL;
    if (digest_nid == NID_md5 || digest_nid == NID_sha1)
        digest = EVP_sha256();
    else if (digest_nid != NID_undef)
        digest = EVP_get_digestbynid(digest_nid);
    unsigned length = 0;
    if (digest != NULL && EVP_MD_size(digest) <= TLS_END_POINT_BYTES_MAX &&
        X509_digest(leaf, digest, domain->end_point, &length) == 1)
        domain->end_point_length = length;
}

/* Loads one domain's chain and key into domain (ssl_context made). */
static bool load_certificate(tls_domain *domain, const tls_certificate *certificate, char *error,
                             size_t error_bytes)
{
    const char *files[] = {certificate->cert_file, certificate->key_file};
    for (size_t i = 0; i < 2; i++) {
        struct stat status;
        if (stat(files[i], &status) != 0 || !S_ISREG(status.st_mode)) {
            snprintf(error, error_bytes, "%s: %s: not a readable file", certificate->domain,
                     files[i]);
            return false;
        }
        if ((unsigned long long)status.st_size > LIMIT_TLS_PEM_FILE_BYTES_MAX) {
            snprintf(error, error_bytes, "%s: %s: over %u bytes", certificate->domain, files[i],
                     LIMIT_TLS_PEM_FILE_BYTES_MAX);
            return false;
        }
    }
    if (SSL_CTX_use_certificate_chain_file(domain->ssl_context, certificate->cert_file) != 1) {
        snprintf(error, error_bytes, "%s: %s: no PEM certificate chain (%s)", certificate->domain,
                 certificate->cert_file, first_error_name("unreadable"));
        return false;
    }
    if (SSL_CTX_use_PrivateKey_file(domain->ssl_context, certificate->key_file, SSL_FILETYPE_PEM) !=
        1) {
        uint32_t reason = ERR_peek_error();
        bool mismatch = ERR_GET_LIB(reason) == ERR_LIB_X509 &&
                        ERR_GET_REASON(reason) == X509_R_KEY_VALUES_MISMATCH;
        snprintf(error, error_bytes, "%s: %s: %s (%s)", certificate->domain, certificate->key_file,
                 mismatch ? "does not match the certificate" : "no PEM private key",
                 first_error_name("unreadable"));
        return false;
    }
    if (SSL_CTX_check_private_key(domain->ssl_context) != 1) {
        snprintf(error, error_bytes, "%s: %s does not match the certificate in %s",
                 certificate->domain, certificate->key_file, certificate->cert_file);
        ERR_clear_error();
        return false;
    }
    compute_end_point(domain);
    return true;
}

tls_context *tls_context_create(const tls_certificate *certificates, size_t count, char *error,
                                size_t error_bytes)
{
    if (count == 0 || count > LIMIT_CONFIG_DOMAINS_MAX) {
        snprintf(error, error_bytes, "%zu certificates: 1 to %u are allowed", count,
                 LIMIT_CONFIG_DOMAINS_MAX);
        return NULL;
    }
    tls_context *context = calloc(1, sizeof *context + count * sizeof(tls_domain));
    if (context == NULL || (context->bio_method = bio_method_new()) == NULL) {
        snprintf(error, error_bytes, "out of memory for the TLS context");
        free(context);
        return NULL;
    }
    ERR_clear_error();
    for (size_t i = 0; i < count; i++) {
        tls_domain *domain = &context->domains[i];
        context->domain_count = i + 1;
        domain->name = strdup(certificates[i].domain);
        domain->ssl_context = SSL_CTX_new(TLS_server_method());
        if (domain->name == NULL || domain->ssl_context == NULL) {
            snprintf(error, error_bytes, "out of memory for the TLS context");
            tls_context_destroy(context);
            return NULL;
        }
        if (!configure(domain->ssl_context, context)) {
            snprintf(error, error_bytes, "TLS settings refused (%s)", first_error_name("unknown"));
            tls_context_destroy(context);
            return NULL;
        }
        if (!load_certificate(domain, &certificates[i], error, error_bytes)) {
            tls_context_destroy(context);
            return NULL;
        }
    }
    return context;
}

void tls_context_destroy(tls_context *context)
{
    if (context == NULL)
        return;
    for (size_t i = 0; i < context->domain_count; i++) {
        SSL_CTX_free(context->domains[i].ssl_context);
        free(context->domains[i].name);
    }
    BIO_meth_free(context->bio_method);
    free(context);
}

/* -------------------------------------------------------------- session */

tls_session *tls_session_create(tls_context *context, tls_mode mode)
{
    tls_session *session = calloc(1, sizeof *session);
    SSL *ssl = SSL_new(context->domains[0].ssl_context);
    BIO *bio = BIO_new(context->bio_method);
    if (session == NULL || ssl == NULL || bio == NULL) {
        free(session);
        SSL_free(ssl);
        BIO_free(bio);
        return NULL;
    }
    session->ssl = ssl;
    session->context = context;
    session->mode = (uint8_t)mode;
    BIO_set_data(bio, session);
    /* The one BIO reads and writes: each set0 takes a reference. */
    BIO_up_ref(bio);
    SSL_set0_rbio(ssl, bio);
    SSL_set0_wbio(ssl, bio);
    SSL_set_app_data(ssl, session);
    SSL_set_accept_state(ssl);
    /* Free the certificate references and cipher lists copied into the
     * SSL once the handshake is over: they are only used during it. */
    SSL_set_shed_handshake_config(ssl, 1);
    return session;
}

void tls_session_destroy(tls_session *session)
{
    if (session == NULL)
        return;
    SSL_free(session->ssl);
    free(session);
}

/* Marks the session failed with reason (static) and returns TLS_ERROR. */
static tls_result fail(tls_session *session, const char *reason)
{
    if (session->error == NULL)
        session->error = reason;
    return TLS_ERROR;
}

/* Classifies a failed SSL call. *again is set for "needs more input". */
static tls_result failure_of(tls_session *session, int returned, bool *again)
{
    *again = false;
    switch (SSL_get_error(session->ssl, returned)) {
    case SSL_ERROR_WANT_READ:
        *again = true;
        return TLS_OK;
    case SSL_ERROR_ZERO_RETURN:
        return TLS_CLOSED;
    default:
        if (session->output_failed) {
            ERR_clear_error();
            return fail(session, "output refused");
        }
        return fail(session, first_error_name("tls error"));
    }
}

/* Decrypts everything the input holds. Every SSL_read that returns data
 * consumed at least one input byte or drained plaintext BoringSSL held
 * from a record, so the loop is bounded by the input and a record. */
static tls_result read_all(tls_session *session, const tls_io *io, size_t length)
{
    size_t rounds_max = length + LIMIT_TLS_PLAINTEXT_BUFFER_BYTES + 2;
    int capacity =
        io->plaintext_capacity > (size_t)INT32_MAX ? INT32_MAX : (int)io->plaintext_capacity;
    for (size_t round = 0; round < rounds_max; round++) {
        ERR_clear_error();
        int returned = SSL_read(session->ssl, io->plaintext, capacity);
        if (returned > 0) {
            if (!io->on_plaintext(io->argument, io->plaintext, (size_t)returned)) {
                session->input_dropped = true;
                return TLS_STOPPED;
            }
            continue;
        }
        bool again = false;
        tls_result result = failure_of(session, returned, &again);
        if (again && session->input_length != 0)
            return fail(session, "input left unread");
        return result;
    }
    return fail(session, "read loop bound passed");
}

/* Runs the handshake, then reads, over the current input. */
static tls_result receive_current(tls_session *session, const tls_io *io, size_t length)
{
    if (!session->established) {
        ERR_clear_error();
        int returned = SSL_do_handshake(session->ssl);
        if (returned != 1) {
            bool again = false;
            tls_result result = failure_of(session, returned, &again);
            if (result == TLS_CLOSED)
                return fail(session, "closed during the handshake");
            return result;
        }
        session->established = true;
        session->handshake_bytes = 0;
    }
    return read_all(session, io, length);
}

tls_result tls_session_receive(tls_session *session, const uint8_t *bytes, size_t length,
                               const tls_io *io)
{
    if (session->error != NULL)
        return TLS_ERROR;
    if (session->input != NULL)
        return fail(session, "receive called from inside receive");
    if (session->input_dropped)
        return fail(session, "receive after a stopped receive");
    if (io->plaintext == NULL || io->plaintext_capacity == 0 || io->on_plaintext == NULL ||
        io->on_ciphertext == NULL)
        return fail(session, "incomplete tls_io");
    if (!session->established) {
        if (length > LIMIT_TLS_HANDSHAKE_BYTES_MAX - session->handshake_bytes)
            return fail(session, "handshake too large");
        session->handshake_bytes += length;
    }
    static const uint8_t nothing[1];
    session->input = length > 0 ? bytes : nothing;
    session->input_length = length;
    const tls_io *previous_io = session->io;
    session->io = io;
    tls_result result = receive_current(session, io, length);
    session->input = NULL;
    session->input_length = 0;
    session->io = previous_io;
    return result;
}

tls_result tls_session_send(tls_session *session, const uint8_t *bytes, size_t length,
                            const tls_io *io)
{
    if (session->error != NULL)
        return TLS_ERROR;
    if (!session->established || session->shutdown_sent)
        return fail(session, "send outside an established session");
    const tls_io *previous_io = session->io;
    session->io = io;
    tls_result result = TLS_OK;
    while (length > 0 && result == TLS_OK) {
        int piece = length > (size_t)INT32_MAX ? INT32_MAX : (int)length;
        ERR_clear_error();
        int written = SSL_write(session->ssl, bytes, piece);
        if (written <= 0) {
            bool again = false;
            result = failure_of(session, written, &again);
            if (result == TLS_OK)
                result = fail(session, "write wants a read");
            else if (result == TLS_CLOSED)
                result = fail(session, "write after close_notify");
            break;
        }
        bytes += written;
        length -= (size_t)written;
    }
    session->io = previous_io;
    return result;
}

tls_result tls_session_shutdown(tls_session *session, const tls_io *io)
{
    if (session->error != NULL)
        return TLS_ERROR;
    if (session->shutdown_sent || !session->established) {
        session->shutdown_sent = true;
        return TLS_OK;
    }
    session->shutdown_sent = true;
    const tls_io *previous_io = session->io;
    session->io = io;
    ERR_clear_error();
    int returned = SSL_shutdown(session->ssl);
    session->io = previous_io;
    if (returned >= 0)
        return TLS_OK;
    if (session->output_failed) {
        ERR_clear_error();
        return fail(session, "output refused");
    }
    return fail(session, first_error_name("shutdown failed"));
}

bool tls_session_established(const tls_session *session)
{
    return session->established;
}

const char *tls_session_error(const tls_session *session)
{
    return session->error != NULL ? session->error : "";
}

uint16_t tls_session_version(const tls_session *session)
{
    return session->established ? SSL_version(session->ssl) : 0;
}

const char *tls_session_domain(const tls_session *session)
{
    return session->context->domains[session->domain_index].name;
}

bool tls_session_alpn_xmpp_client(const tls_session *session)
{
    const uint8_t *protocol = NULL;
    unsigned length = 0;
    SSL_get0_alpn_selected(session->ssl, &protocol, &length);
    return length == sizeof xmpp_client_protocol &&
           memcmp(protocol, xmpp_client_protocol, length) == 0;
}

bool tls_session_exporter(const tls_session *session, uint8_t out[TLS_EXPORTER_BYTES])
{
    static const char label[] = "EXPORTER-Channel-Binding";
    if (!session->established || SSL_version(session->ssl) != TLS1_3_VERSION)
        return false;
    return SSL_export_keying_material(session->ssl, out, TLS_EXPORTER_BYTES, label,
                                      sizeof label - 1, NULL, 0, 0) == 1;
}

size_t tls_session_server_end_point(const tls_session *session, uint8_t *out, size_t out_size)
{
    const tls_domain *domain = &session->context->domains[session->domain_index];
    if (!session->established || domain->end_point_length > out_size)
        return 0;
    memcpy(out, domain->end_point, domain->end_point_length);
    return domain->end_point_length;
}
