/*
 * tls.h: the server side of TLS (BoringSSL) for client streams, over
 * memory: the SSL never touches a socket. io_uring does all socket I/O;
 * the connection hands each piece of received ciphertext to its session,
 * gets the plaintext back through a callback, and the session hands every
 * piece of ciphertext it produces (handshake flights, records, alerts) to
 * another callback that queues it on the connection (rx_conn_send).
 *
 * Two objects:
 *
 * - tls_context: one per process, made at start (it reads PEM files, so
 *   never on a reactor thread) and read-only afterwards; every reactor
 *   creates its sessions from it. BoringSSL's SSL_CTX is safe to share
 *   between threads for SSL_new; its only mutable state, the session
 *   ticket keys (BoringSSL's default: generated in memory, rotated every
 *   48 hours, SSL_DEFAULT_TICKET_KEY_ROTATION_INTERVAL), sits behind
 *   BoringSSL's own lock. One context per process rather than per reactor
 *   means a ticket issued on one reactor resumes on any other. No
 *   stateful session cache is kept: resumption is by ticket only.
 *   TLS 1.2 and 1.3 (1.3 preferred: BoringSSL picks the highest version
 *   both sides have), ECDHE with AES-GCM or ChaCha20-Poly1305 for TLS 1.2
 *   (TLS 1.3's suites are all AEAD), X25519, P-256 and P-384. BoringSSL
 *   has no TLS compression and, as a server, never renegotiates. TLS 1.3
 *   tickets (LIMIT_TLS_SESSION_TICKETS) leave with the server's first
 *   record after the handshake (BoringSSL holds them until then), which in
 *   XMPP is the stream header or features.
 *   Certificates: one (chain + key, PEM) per domain, picked by SNI; the
 *   first domain is the default when SNI is absent or names no domain.
 *
 * - tls_session: one per connection, one heap object holding the SSL and
 *   its BIO. It keeps no pointer to a reactor, no thread-local state and
 *   no callback between calls (each call takes its tls_io), so the
 *   connection can move to another reactor with it as it is. The BIO
 *   reads from the span of the current tls_session_receive call and
 *   writes through the current tls_io, so no ciphertext is buffered in
 *   the session; BoringSSL releases its own record buffers when they are
 *   empty, and the handshake configuration (certificate references,
 *   cipher lists) is shed once the handshake is done. An idle established
 *   session holds the SSL, its SSL_SESSION and one small BIO (measure:
 *   bench/tls/bench_tls_memory).
 *
 * Threads: a session is used by one thread at a time (the reactor that
 * owns its connection); the context by any number.
 *
 * Wiring (c2s): at start, tls_context_from_config (cert.h). Each reactor
 * keeps one tls_io whose plaintext is a LIMIT_TLS_PLAINTEXT_BUFFER_BYTES
 * scratch buffer, on_ciphertext queues with rx_conn_send(conn, ...) ==
 * RX_OK, and on_plaintext feeds the XML tokenizer; argument is set to the
 * connection before each call. Direct TLS: tls_session_create(context,
 * TLS_MODE_DIRECT) at accept, and every received buffer goes to
 * tls_session_receive. STARTTLS: after queueing <proceed/> in plaintext,
 * tls_session_create(context, TLS_MODE_STARTTLS), and the bytes after
 * </starttls> in the same receive buffer (if any) go to
 * tls_session_receive first. Every stanza out goes through
 * tls_session_send; at close, tls_session_shutdown then rx_conn_close.
 * TLS_ERROR closes the connection (any alert BoringSSL produced has
 * already gone to on_ciphertext); tls_session_error is the log line's
 * reason.
 */
#ifndef STARLING_SERVER_TLS_TLS_H
#define STARLING_SERVER_TLS_TLS_H

#include "proto/limits.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One line saying why a context could not be made. */
#define TLS_ERROR_BYTES 512u

/* tls-exporter (RFC 9266) is 32 bytes; tls-server-end-point (RFC 5929)
 * is a digest of the certificate, SHA-512 at most. */
#define TLS_EXPORTER_BYTES      32u
#define TLS_END_POINT_BYTES_MAX 64u

typedef struct tls_context tls_context;
typedef struct tls_session tls_session;

/* A domain's certificate chain and private key, PEM files. */
typedef struct tls_certificate {
    const char *domain;    /* borrowed: the SNI name it answers */
    const char *cert_file; /* borrowed: leaf first, then intermediates */
    const char *key_file;  /* borrowed: the leaf's private key */
} tls_certificate;

/* How the stream reached TLS. */
typedef enum tls_mode {
    TLS_MODE_STARTTLS = 0, /* after <starttls/>: ALPN ignored */
    TLS_MODE_DIRECT,       /* XEP-0368: ALPN, when offered, must include xmpp-client */
} tls_mode;

typedef enum tls_result {
    TLS_OK = 0,  /* the call did what it was asked */
    TLS_CLOSED,  /* the peer sent close_notify: no more plaintext comes */
    TLS_STOPPED, /* the plaintext callback returned false: the rest of the
                  * input was dropped, so later receives fail; sending
                  * (a stream error) and shutdown still work */
    TLS_ERROR,   /* fatal: tls_session_error names why; close the connection */
} tls_result;

/* Called with ciphertext to send (borrowed for the call: copy it). Returns
 * false when it could not be queued; the session then fails. */
typedef bool tls_output_fn(void *argument, const uint8_t *bytes, size_t length);

/* Called with decrypted plaintext (borrowed for the call: it lives in
 * tls_io.plaintext). Returns false to stop (the connection is closing). It
 * may call tls_session_send on the same session. */
typedef bool tls_plaintext_fn(void *argument, const uint8_t *bytes, size_t length);

/* Where a call's output goes. A reactor keeps one (its plaintext buffer is
 * reactor-owned scratch) and passes it with each call; the session keeps
 * nothing of it after the call returns. */
typedef struct tls_io {
    uint8_t *plaintext;             /* borrowed scratch for decrypted bytes */
    size_t plaintext_capacity;      /* LIMIT_TLS_PLAINTEXT_BUFFER_BYTES takes a whole record */
    void *argument;                 /* passed to both callbacks (the connection) */
    tls_output_fn *on_ciphertext;   /* required */
    tls_plaintext_fn *on_plaintext; /* required for tls_session_receive */
} tls_io;

/*
 * Makes the process's context from count (1 to LIMIT_CONFIG_DOMAINS_MAX)
 * certificates (borrowed; read now, not kept); certificates[0] is the
 * default domain. Reads files: call it at start, not on a reactor. NULL on
 * failure with one line in error (error_bytes; TLS_ERROR_BYTES takes any)
 * naming the file and what was wrong.
 */
tls_context *tls_context_create(const tls_certificate *certificates, size_t count, char *error,
                                size_t error_bytes) __attribute__((warn_unused_result));
/* Owned; NULL is fine. Every session made from it must be gone first. */
void tls_context_destroy(tls_context *context);

/*
 * A server session in context (borrowed; it must outlive the session).
 * NULL when out of memory. The first tls_session_receive starts the
 * handshake.
 */
tls_session *tls_session_create(tls_context *context, tls_mode mode)
    __attribute__((warn_unused_result));
void tls_session_destroy(tls_session *session); /* owned; NULL is fine */

/*
 * Consumes all length bytes of received ciphertext (borrowed: nothing of
 * it is kept after the call, so a provided receive buffer can go back at
 * once). Advances the handshake, sends what it produces through
 * io->on_ciphertext, and hands every decrypted piece to io->on_plaintext.
 * Returns TLS_OK when the input is used up (more may come), TLS_CLOSED,
 * TLS_STOPPED or TLS_ERROR. More than LIMIT_TLS_HANDSHAKE_BYTES_MAX bytes
 * received before the handshake completes is an error.
 */
tls_result tls_session_receive(tls_session *session, const uint8_t *bytes, size_t length,
                               const tls_io *io);

/* Encrypts length bytes (borrowed) into records sent through
 * io->on_ciphertext. Only once established. TLS_OK or TLS_ERROR. */
tls_result tls_session_send(tls_session *session, const uint8_t *bytes, size_t length,
                            const tls_io *io);

/* Sends close_notify through io->on_ciphertext (once; later calls, and a
 * call before the handshake completed, send nothing). TLS_OK or
 * TLS_ERROR. */
tls_result tls_session_shutdown(tls_session *session, const tls_io *io);

/* True once the handshake has completed. */
bool tls_session_established(const tls_session *session);

/* Why the session failed: a short static string ("handshake too large",
 * BoringSSL's reason such as "WRONG_VERSION_NUMBER"), or "" when it has
 * not. */
const char *tls_session_error(const tls_session *session);

/* After the handshake: the negotiated version (TLS1_2_VERSION,
 * TLS1_3_VERSION), the domain whose certificate was presented (borrowed
 * from the context), and whether ALPN chose xmpp-client. */
uint16_t tls_session_version(const tls_session *session);
const char *tls_session_domain(const tls_session *session);
bool tls_session_alpn_xmpp_client(const tls_session *session);

/* tls-exporter channel binding (RFC 9266): 32 bytes of
 * SSL_export_keying_material, label "EXPORTER-Channel-Binding", empty
 * context, into out. TLS 1.3 only (RFC 9266 section 3). False before the
 * handshake or on TLS 1.2. */
bool tls_session_exporter(const tls_session *session, uint8_t out[TLS_EXPORTER_BYTES]);

/* tls-server-end-point channel binding (RFC 5929 section 4.1): the hash
 * of the presented certificate (DER) with its signature's hash, SHA-256
 * for MD5 and SHA-1. Copies into out (out_size bytes; TLS_END_POINT_BYTES_MAX
 * takes any) and returns its length, or 0 before the handshake. */
size_t tls_session_server_end_point(const tls_session *session, uint8_t *out, size_t out_size);

#endif
