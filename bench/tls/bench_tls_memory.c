/*
 * bench_tls_memory.c: heap bytes per idle established server TLS session
 * (server/tls), measured in process with jemalloc's own statistics.
 *
 * It makes a context from a self-signed P-256 certificate, then
 * establishes --count sessions one after another against BoringSSL
 * clients over memory, each as an XMPP stream would: the handshake, the
 * client's stream header in, the server's features out (which also
 * carries the TLS 1.3 ticket BoringSSL holds until the first record).
 * Each client is freed at once, so what stays allocated is the server
 * sessions. stats.allocated (after an epoch refresh) before and after,
 * divided by the count, is the figure: everything a session keeps
 * (tls_session, SSL, SSL_SESSION, BIO, BoringSSL's per-connection
 * state), nothing it released.
 *
 * Usage: starling-bench-tls-memory [--count N] [--tls12]
 * Prints one line: the version, the count and the bytes per session.
 * jemalloc's size classes round each allocation up, and that rounding is
 * part of the real cost, so it is counted.
 */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jemalloc/jemalloc.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "server/tls/cert.h"
#include "server/tls/tls.h"

typedef struct sink {
    uint8_t *data;
    size_t length;
    size_t capacity;
} sink;

static bool sink_append(sink *buffer, const uint8_t *data, size_t length)
{
    if (buffer->length + length > buffer->capacity) {
        size_t capacity = buffer->capacity == 0 ? 8192 : buffer->capacity;
        while (capacity < buffer->length + length)
            capacity *= 2;
        uint8_t *grown = realloc(buffer->data, capacity);
        if (grown == NULL)
            return false;
        buffer->data = grown;
        buffer->capacity = capacity;
    }
    memcpy(buffer->data + buffer->length, data, length);
    buffer->length += length;
    return true;
}

static bool on_ciphertext(void *argument, const uint8_t *data, size_t length)
{
    return sink_append(argument, data, length);
}

static bool on_plaintext(void *argument, const uint8_t *data, size_t length)
{
    (void)argument;
    (void)data;
    (void)length;
    return true;
}

/* jemalloc's bytes allocated by the application, refreshed. */
static size_t allocated_bytes(void)
{
    uint64_t epoch = 1;
    size_t epoch_size = sizeof epoch;
    size_t allocated = 0;
    size_t size = sizeof allocated;
    /* Objects parked in the thread cache count as allocated: flush it so
     * both samples see only live objects. */
    if (mallctl("thread.tcache.flush", NULL, NULL, NULL, 0) != 0 ||
        mallctl("epoch", &epoch, &epoch_size, &epoch, epoch_size) != 0 ||
        mallctl("stats.allocated", &allocated, &size, NULL, 0) != 0) {
        fprintf(stderr, "jemalloc statistics unavailable (not linked with jemalloc?)\n");
        exit(1);
    }
    return allocated;
}

/* Moves what the client wrote into the server session. */
static bool client_to_server(BIO *client_out, tls_session *session, const tls_io *io)
{
    const uint8_t *data = NULL;
    size_t length = 0;
    BIO_mem_contents(client_out, &data, &length);
    bool ok = tls_session_receive(session, data, length, io) == TLS_OK;
    BIO_reset(client_out);
    return ok;
}

static void server_to_client(sink *to_client, BIO *client_in)
{
    if (to_client->length > 0)
        BIO_write(client_in, to_client->data, (int)to_client->length);
    to_client->length = 0;
}

/* One session as an XMPP stream opens it; NULL on failure. */
static tls_session *establish(tls_context *context, SSL_CTX *client_context, uint16_t version,
                              sink *to_client, uint8_t *scratch)
{
    static const char header[] = "<?xml version='1.0'?><stream:stream to='localhost' "
                                 "xmlns='jabber:client' "
                                 "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";
    static const char features[] =
        "<?xml version='1.0'?><stream:stream from='localhost' id='abcdef0123456789' "
        "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
        "version='1.0'><stream:features><mechanisms "
        "xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-256</mechanism>"
        "</mechanisms></stream:features>";
    tls_session *session = tls_session_create(context, TLS_MODE_DIRECT);
    SSL *client = SSL_new(client_context);
    BIO *client_in = BIO_new(BIO_s_mem());
    BIO *client_out = BIO_new(BIO_s_mem());
    if (session == NULL || client == NULL || client_in == NULL || client_out == NULL)
        return NULL;
    BIO_set_mem_eof_return(client_in, -1);
    SSL_set_bio(client, client_in, client_out);
    SSL_set_connect_state(client);
    SSL_set_max_proto_version(client, version);
    SSL_set_tlsext_host_name(client, "localhost");
    tls_io io = {.plaintext = scratch,
                 .plaintext_capacity = LIMIT_TLS_PLAINTEXT_BUFFER_BYTES,
                 .argument = to_client,
                 .on_ciphertext = on_ciphertext,
                 .on_plaintext = on_plaintext};
    bool ok = true;
    for (unsigned round = 0; ok && round < 16 && !tls_session_established(session); round++) {
        int returned = SSL_do_handshake(client);
        ok = returned == 1 || SSL_get_error(client, returned) == SSL_ERROR_WANT_READ;
        ok = ok && client_to_server(client_out, session, &io);
        server_to_client(to_client, client_in);
    }
    ok = ok && SSL_do_handshake(client) == 1 &&
         SSL_write(client, header, (int)sizeof header - 1) == (int)sizeof header - 1 &&
         client_to_server(client_out, session, &io) &&
         tls_session_send(session, (const uint8_t *)features, sizeof features - 1, &io) == TLS_OK;
    server_to_client(to_client, client_in);
    uint8_t buffer[4096];
    while (ok && SSL_read(client, buffer, sizeof buffer) > 0)
        continue;
    ERR_clear_error();
    SSL_free(client);
    if (!ok) {
        tls_session_destroy(session);
        return NULL;
    }
    return session;
}

static int remove_entry(const char *path, const struct stat *status, int type, struct FTW *walk)
{
    (void)status;
    (void)type;
    (void)walk;
    return remove(path);
}

int main(int argc, char **argv)
{
    size_t count = 1000;
    uint16_t version = TLS1_3_VERSION;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--count") == 0 && i + 1 < argc && atol(argv[i + 1]) > 0) {
            count = (size_t)atol(argv[++i]);
        } else if (strcmp(argv[i], "--tls12") == 0) {
            version = TLS1_2_VERSION;
        } else {
            fprintf(stderr, "usage: starling-bench-tls-memory [--count N] [--tls12]\n");
            return 2;
        }
    }
    char directory[] = "/tmp/bench_tls_memory_XXXXXX";
    if (mkdtemp(directory) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    tls_cert_paths paths;
    bool generated = false;
    char error[TLS_ERROR_BYTES] = "";
    tls_context *context = NULL;
    if (tls_cert_self_signed(directory, "localhost", &paths, &generated, error, sizeof error)) {
        tls_certificate certificate = {"localhost", paths.cert_file, paths.key_file};
        context = tls_context_create(&certificate, 1, error, sizeof error);
    }
    SSL_CTX *client_context = SSL_CTX_new(TLS_method());
    tls_session **sessions = calloc(count, sizeof *sessions);
    uint8_t *scratch = malloc(LIMIT_TLS_PLAINTEXT_BUFFER_BYTES);
    sink to_client = {0};
    if (context == NULL || client_context == NULL || sessions == NULL || scratch == NULL) {
        fprintf(stderr, "setup: %s\n", error);
        return 1;
    }
    /* One session first, so that lazily made shared state (ticket keys,
     * BoringSSL's tables) is not counted against the measured ones. */
    tls_session_destroy(establish(context, client_context, version, &to_client, scratch));

    size_t before = allocated_bytes();
    size_t made = 0;
    for (; made < count; made++) {
        sessions[made] = establish(context, client_context, version, &to_client, scratch);
        if (sessions[made] == NULL)
            break;
    }
    size_t after = allocated_bytes();
    int status = made == count ? 0 : 1;
    if (made == count)
        printf("tls %s (negotiated 0x%04x): %zu idle established sessions, %.0f heap bytes "
               "each\n",
               version == TLS1_3_VERSION ? "1.3" : "1.2", tls_session_version(sessions[0]), count,
               (double)(after - before) / (double)count);
    else
        fprintf(stderr, "session %zu failed to establish\n", made);
    for (size_t i = 0; i < made; i++)
        tls_session_destroy(sessions[i]);
    free(sessions);
    free(scratch);
    free(to_client.data);
    SSL_CTX_free(client_context);
    tls_context_destroy(context);
    nftw(directory, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    return status;
}
