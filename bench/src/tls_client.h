/*
 * tls_client.h: the TLS client side of starling-bench's sessions, on
 * BoringSSL over memory BIOs. The SSL never touches a socket: the runtime's
 * io_uring does all socket I/O, the session pushes each received piece of
 * ciphertext in, reads the plaintext out into its XML tokenizer, and sends
 * whatever ciphertext the SSL produced with rx_conn_send. One context per
 * run (read-only once created, shared by every reactor thread), one
 * tls_client per session, freed when its connection closes.
 */
#ifndef STARLING_BENCH_TLS_CLIENT_H
#define STARLING_BENCH_TLS_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A plaintext buffer this large takes the biggest TLS record (2^14 bytes). */
#define TLS_CLIENT_RECORD_BYTES_MAX 16384u
/* A memory BIO whose buffer grew past this after a burst is replaced by an
 * empty one once drained, so an idle session keeps no burst-sized buffer. */
#define TLS_CLIENT_BUFFER_KEEP_BYTES 4096u

/* One line saying why a context could not be made. */
#define TLS_CLIENT_ERROR_BYTES_MAX 512u

typedef struct tls_client_context tls_client_context;
typedef struct tls_client tls_client;

typedef enum tls_client_result {
    TLS_CLIENT_OK = 0, /* done (handshake), or plaintext was read */
    TLS_CLIENT_AGAIN,  /* needs more received bytes */
    TLS_CLIENT_CLOSED, /* the peer sent close_notify */
    TLS_CLIENT_ERROR,  /* the handshake or a record failed: see the error name */
} tls_client_result;

/*
 * Creates the run's context: TLS 1.2 and 1.3, client side. With ca_path
 * (borrowed, NULL for none) the server's certificate must chain to a CA in
 * that PEM file and name the session's server name; without it nothing is
 * verified (loopback benchmarks with throwaway certificates). NULL on
 * failure, with a one-line reason in error (error_bytes,
 * TLS_CLIENT_ERROR_BYTES_MAX takes any).
 */
tls_client_context *tls_client_context_create(const char *ca_path, char *error, size_t error_bytes)
    __attribute__((warn_unused_result));
void tls_client_context_destroy(tls_client_context *context); /* owned; NULL is fine */

/*
 * A client connection in context (borrowed; it must outlive the client):
 * SNI and the verified name are server_name (borrowed, copied), and with
 * alpn_xmpp_client it offers ALPN "xmpp-client" (XEP-0368 direct TLS).
 * NULL when out of memory. Thread: whichever owns the session.
 */
tls_client *tls_client_create(tls_client_context *context, const char *server_name,
                              bool alpn_xmpp_client) __attribute__((warn_unused_result));
void tls_client_destroy(tls_client *client); /* owned; NULL is fine */

/* Hands received ciphertext (borrowed, copied) to the SSL; false when out
 * of memory. */
bool tls_client_push(tls_client *client, const uint8_t *bytes, size_t length)
    __attribute__((warn_unused_result));

/* Runs the handshake as far as the received bytes allow. On
 * TLS_CLIENT_ERROR *error_name (static) names why. */
tls_client_result tls_client_handshake(tls_client *client, const char **error_name);

/* Decrypts into buffer (capacity bytes, TLS_CLIENT_RECORD_BYTES_MAX takes
 * any record): TLS_CLIENT_OK with *read_bytes > 0, TLS_CLIENT_AGAIN when
 * no whole record is waiting, or CLOSED / ERROR (then *error_name). */
tls_client_result tls_client_read(tls_client *client, uint8_t *buffer, size_t capacity,
                                  size_t *read_bytes, const char **error_name);

/* Encrypts bytes (borrowed) into the output; false when the SSL refused. */
bool tls_client_write(tls_client *client, const void *bytes, size_t length)
    __attribute__((warn_unused_result));

/* The ciphertext waiting to be sent (borrowed until tls_client_output_sent);
 * *length 0 when there is none. */
void tls_client_output(const tls_client *client, const uint8_t **bytes, size_t *length);
/* The output was copied out: empties it (and lets a grown buffer go). */
void tls_client_output_sent(tls_client *client);

#endif
