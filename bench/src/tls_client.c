/*
 * tls_client.c: BoringSSL client connections over memory BIOs (see
 * tls_client.h). Each SSL reads from one memory BIO (received ciphertext
 * the session pushed) and writes into another (ciphertext the session
 * takes out and queues on its connection). An empty read BIO answers "retry",
 * so SSL_do_handshake and SSL_read report SSL_ERROR_WANT_READ until more
 * bytes arrive, exactly as on a non-blocking socket.
 *
 * Memory per idle session: BoringSSL always releases its record buffers
 * when idle (SSL_MODE_RELEASE_BUFFERS is a no-op there, set anyway for the
 * record), and a memory BIO that grew during a burst (the server's
 * certificate chain, a large stanza) is swapped for an empty one once it is
 * drained, so an idle session holds the SSL and two small BIOs.
 */
#include "bench/src/tls_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/buf.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

struct tls_client_context {
    SSL_CTX *ssl_context; /* owned */
};

struct tls_client {
    SSL *ssl;      /* owned; owns both BIOs */
    BIO *received; /* borrowed from ssl: ciphertext in */
    BIO *to_send;  /* borrowed from ssl: ciphertext out */
};

/* ALPN wire format: one length-prefixed protocol name (XEP-0368). */
static const uint8_t xmpp_client_alpn[] = {11,  'x', 'm', 'p', 'p', '-',
                                           'c', 'l', 'i', 'e', 'n', 't'};

/* The reason of the thread's first queued error, or fallback. */
static const char *first_error_name(const char *fallback)
{
    uint32_t error = ERR_peek_error();
    const char *reason = error != 0 ? ERR_reason_error_string(error) : NULL;
    ERR_clear_error();
    return reason != NULL ? reason : fallback;
}

tls_client_context *tls_client_context_create(const char *ca_path, char *error, size_t error_bytes)
{
    tls_client_context *context = calloc(1, sizeof *context);
    SSL_CTX *ssl_context = SSL_CTX_new(TLS_client_method());
    if (context == NULL || ssl_context == NULL) {
        snprintf(error, error_bytes, "out of memory for the TLS context");
        free(context);
        SSL_CTX_free(ssl_context);
        return NULL;
    }
    context->ssl_context = ssl_context;
    bool configured = SSL_CTX_set_min_proto_version(ssl_context, TLS1_2_VERSION) == 1 &&
                      SSL_CTX_set_max_proto_version(ssl_context, TLS1_3_VERSION) == 1;
    SSL_CTX_set_mode(ssl_context, SSL_MODE_RELEASE_BUFFERS);
    if (configured && ca_path != NULL) {
        if (SSL_CTX_load_verify_locations(ssl_context, ca_path, NULL) != 1) {
            snprintf(error, error_bytes, "--tls-ca '%s': no CA certificate loaded (%s)", ca_path,
                     first_error_name("unreadable"));
            tls_client_context_destroy(context);
            return NULL;
        }
        SSL_CTX_set_verify(ssl_context, SSL_VERIFY_PEER, NULL);
    } else {
        SSL_CTX_set_verify(ssl_context, SSL_VERIFY_NONE, NULL);
    }
    if (!configured) {
        snprintf(error, error_bytes, "TLS versions 1.2 to 1.3 refused (%s)",
                 first_error_name("unknown"));
        tls_client_context_destroy(context);
        return NULL;
    }
    return context;
}

void tls_client_context_destroy(tls_client_context *context)
{
    if (context == NULL)
        return;
    SSL_CTX_free(context->ssl_context);
    free(context);
}

/* A memory BIO that answers "retry" (not EOF) when empty. */
static BIO *memory_bio_new(void)
{
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio != NULL)
        BIO_set_mem_eof_return(bio, -1);
    return bio;
}

tls_client *tls_client_create(tls_client_context *context, const char *server_name,
                              bool alpn_xmpp_client)
{
    tls_client *client = calloc(1, sizeof *client);
    SSL *ssl = SSL_new(context->ssl_context);
    BIO *received = memory_bio_new();
    BIO *to_send = memory_bio_new();
    if (client == NULL || ssl == NULL || received == NULL || to_send == NULL) {
        free(client);
        SSL_free(ssl);
        BIO_free(received);
        BIO_free(to_send);
        return NULL;
    }
    SSL_set0_rbio(ssl, received);
    SSL_set0_wbio(ssl, to_send);
    SSL_set_connect_state(ssl);
    client->ssl = ssl;
    client->received = received;
    client->to_send = to_send;
    bool configured = SSL_set_tlsext_host_name(ssl, server_name) == 1 &&
                      SSL_set1_host(ssl, server_name) == 1 &&
                      (!alpn_xmpp_client ||
                       SSL_set_alpn_protos(ssl, xmpp_client_alpn, sizeof xmpp_client_alpn) == 0);
    if (!configured) {
        ERR_clear_error();
        tls_client_destroy(client);
        return NULL;
    }
    return client;
}

void tls_client_destroy(tls_client *client)
{
    if (client == NULL)
        return;
    SSL_free(client->ssl);
    free(client);
}

bool tls_client_push(tls_client *client, const uint8_t *bytes, size_t length)
{
    while (length > 0) {
        int piece = length > (size_t)INT32_MAX ? INT32_MAX : (int)length;
        int written = BIO_write(client->received, bytes, piece);
        if (written <= 0)
            return false;
        bytes += written;
        length -= (size_t)written;
    }
    return true;
}

/* Classifies a failed SSL call's return value. */
static tls_client_result failure_of(tls_client *client, int returned, const char **error_name)
{
    switch (SSL_get_error(client->ssl, returned)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        return TLS_CLIENT_AGAIN;
    case SSL_ERROR_ZERO_RETURN:
        *error_name = "close-notify";
        return TLS_CLIENT_CLOSED;
    default:
        *error_name = first_error_name("tls-error");
        return TLS_CLIENT_ERROR;
    }
}

/* Swaps a drained read BIO whose buffer grew for an empty one. */
static void release_received(tls_client *client)
{
    BUF_MEM *memory = NULL;
    if (BIO_pending(client->received) != 0 || BIO_get_mem_ptr(client->received, &memory) != 1 ||
        memory->max <= TLS_CLIENT_BUFFER_KEEP_BYTES)
        return;
    BIO *fresh = memory_bio_new();
    if (fresh == NULL)
        return; /* keep the big one; nothing is lost */
    SSL_set0_rbio(client->ssl, fresh);
    client->received = fresh;
}

tls_client_result tls_client_handshake(tls_client *client, const char **error_name)
{
    ERR_clear_error();
    int returned = SSL_do_handshake(client->ssl);
    if (returned == 1) {
        release_received(client);
        return TLS_CLIENT_OK;
    }
    return failure_of(client, returned, error_name);
}

tls_client_result tls_client_read(tls_client *client, uint8_t *buffer, size_t capacity,
                                  size_t *read_bytes, const char **error_name)
{
    *read_bytes = 0;
    ERR_clear_error();
    int piece = capacity > (size_t)INT32_MAX ? INT32_MAX : (int)capacity;
    int returned = SSL_read(client->ssl, buffer, piece);
    if (returned > 0) {
        *read_bytes = (size_t)returned;
        return TLS_CLIENT_OK;
    }
    tls_client_result result = failure_of(client, returned, error_name);
    if (result == TLS_CLIENT_AGAIN)
        release_received(client);
    return result;
}

bool tls_client_write(tls_client *client, const void *bytes, size_t length)
{
    if (length == 0)
        return true;
    if (length > (size_t)INT32_MAX)
        return false;
    ERR_clear_error();
    /* The write BIO grows as needed, so one SSL_write takes everything. */
    int written = SSL_write(client->ssl, bytes, (int)length);
    if (written != (int)length) {
        ERR_clear_error();
        return false;
    }
    return true;
}

void tls_client_output(const tls_client *client, const uint8_t **bytes, size_t *length)
{
    if (BIO_mem_contents(client->to_send, bytes, length) != 1)
        *length = 0;
}

void tls_client_output_sent(tls_client *client)
{
    BUF_MEM *memory = NULL;
    if (BIO_get_mem_ptr(client->to_send, &memory) == 1 &&
        memory->max > TLS_CLIENT_BUFFER_KEEP_BYTES) {
        BIO *fresh = memory_bio_new();
        if (fresh != NULL) {
            SSL_set0_wbio(client->ssl, fresh);
            client->to_send = fresh;
            return;
        }
    }
    BIO_reset(client->to_send);
}
