/*
 * test_tls.c: the server TLS layer (server/tls) against in-process
 * BoringSSL clients over memory BIOs: handshakes (TLS 1.3, 1.2, and the
 * refused TLS 1.1 and weak suite), SNI, ALPN, hostile bytes, data both
 * ways in 1-byte and 64 KiB pieces, close_notify, both channel bindings,
 * ticket resumption, a session moved to another thread, and the
 * self-signed certificate of a default start.
 */
#include <ftw.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "server/tls/cert.h"
#include "server/tls/tls.h"
#include "tests/harness.h"

/* A growable byte buffer. */
typedef struct bytes {
    uint8_t *data;
    size_t length;
    size_t capacity;
} bytes;

static bool bytes_append(bytes *buffer, const uint8_t *data, size_t length)
{
    if (buffer->length + length > buffer->capacity) {
        size_t capacity = buffer->capacity == 0 ? 4096 : buffer->capacity;
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

/* The server side of one connection: its session and what it produced. */
typedef struct server_side {
    tls_session *session;
    bytes to_client; /* ciphertext */
    bytes received;  /* plaintext */
    uint8_t scratch[LIMIT_TLS_PLAINTEXT_BUFFER_BYTES];
    tls_io io;
    tls_result last;
} server_side;

/* A BoringSSL client over two memory BIOs. */
typedef struct client_side {
    SSL *ssl;
    BIO *in;  /* ciphertext from the server */
    BIO *out; /* ciphertext to the server */
} client_side;

static tls_context *context;     /* a.example (default) and b.example */
static SSL_SESSION *last_ticket; /* the client's newest resumable session */
static SSL_CTX *client_context;
static char directory[] = "/tmp/test_tls_XXXXXX";

static bool on_ciphertext(void *argument, const uint8_t *data, size_t length)
{
    server_side *server = argument;
    return bytes_append(&server->to_client, data, length);
}

static bool on_plaintext(void *argument, const uint8_t *data, size_t length)
{
    server_side *server = argument;
    return bytes_append(&server->received, data, length);
}

static void server_open(server_side *server, tls_mode mode, size_t plaintext_capacity)
{
    memset(server, 0, sizeof *server);
    server->session = tls_session_create(context, mode);
    server->io = (tls_io){.plaintext = server->scratch,
                          .plaintext_capacity = plaintext_capacity,
                          .argument = server,
                          .on_ciphertext = on_ciphertext,
                          .on_plaintext = on_plaintext};
}

static void server_close(server_side *server)
{
    tls_session_destroy(server->session);
    free(server->to_client.data);
    free(server->received.data);
}

/* A client with SNI server_name (NULL: none) between versions min and
 * max, with cipher list ciphers (NULL: default) and ALPN list alpn (wire
 * format, NULL: none). */
static void client_open(client_side *client, const char *server_name, uint16_t min, uint16_t max,
                        const char *ciphers, const uint8_t *alpn, size_t alpn_length)
{
    client->ssl = SSL_new(client_context);
    client->in = BIO_new(BIO_s_mem());
    client->out = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(client->in, -1);
    BIO_set_mem_eof_return(client->out, -1);
    SSL_set_bio(client->ssl, client->in, client->out);
    SSL_set_connect_state(client->ssl);
    CHECK(SSL_set_min_proto_version(client->ssl, min) == 1);
    CHECK(SSL_set_max_proto_version(client->ssl, max) == 1);
    if (server_name != NULL)
        CHECK(SSL_set_tlsext_host_name(client->ssl, server_name) == 1);
    if (ciphers != NULL)
        CHECK(SSL_set_strict_cipher_list(client->ssl, ciphers) == 1);
    if (alpn != NULL)
        CHECK(SSL_set_alpn_protos(client->ssl, alpn, alpn_length) == 0);
}

static void client_close(client_side *client)
{
    SSL_free(client->ssl);
}

/* Moves the client's output to the server in pieces of chunk bytes. */
static void client_to_server(client_side *client, server_side *server, size_t chunk)
{
    const uint8_t *data = NULL;
    size_t length = 0;
    BIO_mem_contents(client->out, &data, &length);
    for (size_t at = 0; at < length && server->last == TLS_OK; at += chunk) {
        size_t piece = length - at < chunk ? length - at : chunk;
        server->last = tls_session_receive(server->session, data + at, piece, &server->io);
    }
    BIO_reset(client->out);
}

/* Moves the server's output to the client. */
static void server_to_client(server_side *server, client_side *client)
{
    if (server->to_client.length > 0)
        CHECK(BIO_write(client->in, server->to_client.data, (int)server->to_client.length) ==
              (int)server->to_client.length);
    server->to_client.length = 0;
}

/* Runs both handshakes over memory; true when both completed. */
static bool handshake(client_side *client, server_side *server, size_t chunk)
{
    bool client_done = false;
    for (unsigned round = 0; round < 64; round++) {
        if (!client_done) {
            int returned = SSL_do_handshake(client->ssl);
            client_done = returned == 1;
            if (returned != 1 && SSL_get_error(client->ssl, returned) != SSL_ERROR_WANT_READ) {
                client_to_server(client, server, chunk);
                return false;
            }
        }
        client_to_server(client, server, chunk);
        server_to_client(server, client);
        if (server->last != TLS_OK)
            return false;
        if (client_done && tls_session_established(server->session))
            return true;
    }
    return false;
}

/* Reads what the client can decrypt into out; returns SSL_read's last
 * error code. */
static int client_read_all(client_side *client, bytes *out)
{
    uint8_t buffer[16384];
    for (;;) {
        int returned = SSL_read(client->ssl, buffer, sizeof buffer);
        if (returned <= 0) {
            int code = SSL_get_error(client->ssl, returned);
            ERR_clear_error();
            return code;
        }
        CHECK(bytes_append(out, buffer, (size_t)returned));
    }
}

static void test_handshake_tls13(void)
{
    client_side client;
    server_side server;
    client_open(&client, "a.example", TLS1_2_VERSION, TLS1_3_VERSION, NULL, NULL, 0);
    server_open(&server, TLS_MODE_STARTTLS, sizeof server.scratch);
    CHECK(!tls_session_established(server.session));
    CHECK(handshake(&client, &server, 1 << 20));
    CHECK(tls_session_version(server.session) == TLS1_3_VERSION);
    CHECK(SSL_version(client.ssl) == TLS1_3_VERSION);
    CHECK(strcmp(tls_session_error(server.session), "") == 0);
    CHECK(!tls_session_alpn_xmpp_client(server.session));
    client_close(&client);
    server_close(&server);
}

static void test_handshake_tls12(void)
{
    client_side client;
    server_side server;
    client_open(&client, "a.example", TLS1_2_VERSION, TLS1_2_VERSION, NULL, NULL, 0);
    server_open(&server, TLS_MODE_STARTTLS, sizeof server.scratch);
    CHECK(handshake(&client, &server, 1 << 20));
    CHECK(tls_session_version(server.session) == TLS1_2_VERSION);
    const SSL_CIPHER *cipher = SSL_get_current_cipher(client.ssl);
    CHECK(cipher != NULL && SSL_CIPHER_is_aead(cipher) &&
          SSL_CIPHER_get_kx_nid(cipher) == NID_kx_ecdhe);
    /* Byte by byte as well. */
    client_side slow_client;
    server_side slow_server;
    client_open(&slow_client, "a.example", TLS1_2_VERSION, TLS1_2_VERSION, NULL, NULL, 0);
    server_open(&slow_server, TLS_MODE_STARTTLS, sizeof slow_server.scratch);
    CHECK(handshake(&slow_client, &slow_server, 1));
    client_close(&slow_client);
    server_close(&slow_server);
    client_close(&client);
    server_close(&server);
}

static void test_tls11_refused(void)
{
    client_side client;
    server_side server;
    client_open(&client, "a.example", TLS1_1_VERSION, TLS1_1_VERSION, NULL, NULL, 0);
    server_open(&server, TLS_MODE_STARTTLS, sizeof server.scratch);
    CHECK(!handshake(&client, &server, 1 << 20));
    CHECK(server.last == TLS_ERROR);
    CHECK(strcmp(tls_session_error(server.session), "") != 0);
    CHECK(!tls_session_established(server.session));
    fprintf(stderr, "   tls 1.1: %s\n", tls_session_error(server.session));
    ERR_clear_error();
    client_close(&client);
    server_close(&server);
}

static void test_weak_cipher_refused(void)
{
    static const char *const weak[] = {"ECDHE-ECDSA-AES128-SHA", "AES128-GCM-SHA256",
                                       "ECDHE-RSA-AES128-SHA"};
    for (size_t i = 0; i < sizeof weak / sizeof weak[0]; i++) {
        client_side client;
        server_side server;
        client_open(&client, "a.example", TLS1_2_VERSION, TLS1_2_VERSION, weak[i], NULL, 0);
        server_open(&server, TLS_MODE_STARTTLS, sizeof server.scratch);
        CHECK(!handshake(&client, &server, 1 << 20));
        CHECK(server.last == TLS_ERROR);
        CHECK(!tls_session_established(server.session));
        ERR_clear_error();
        client_close(&client);
        server_close(&server);
    }
}

/* Handshakes with SNI server_name and returns whether the certificate the
 * client saw names expected and the session reports domain expected. */
static bool presented_for(const char *server_name, const char *expected)
{
    client_side client;
    server_side server;
    client_open(&client, server_name, TLS1_2_VERSION, TLS1_3_VERSION, NULL, NULL, 0);
    server_open(&server, TLS_MODE_STARTTLS, sizeof server.scratch);
    bool done = handshake(&client, &server, 1 << 20);
    X509 *peer = SSL_get_peer_certificate(client.ssl);
    bool named = peer != NULL && X509_check_host(peer, expected, strlen(expected), 0, NULL) == 1;
    bool reported = strcmp(tls_session_domain(server.session), expected) == 0;
    X509_free(peer);
    client_close(&client);
    server_close(&server);
    return done && named && reported;
}

static void test_sni_selects(void)
{
    CHECK(presented_for("b.example", "b.example"));
    CHECK(presented_for("B.Example", "b.example"));
    CHECK(presented_for("a.example", "a.example"));
    CHECK(!presented_for("b.example", "a.example"));
}

static void test_sni_unknown_gets_default(void)
{
    CHECK(presented_for("unknown.example", "a.example"));
    CHECK(presented_for(NULL, "a.example"));
}

static const uint8_t alpn_xmpp_client[] = {11,  'x', 'm', 'p', 'p', '-',
                                           'c', 'l', 'i', 'e', 'n', 't'};
static const uint8_t alpn_h2_then_xmpp[] = {2,   'h', '2', 11,  'x', 'm', 'p', 'p',
                                            '-', 'c', 'l', 'i', 'e', 'n', 't'};
static const uint8_t alpn_h2[] = {2, 'h', '2'};

/* A handshake in mode with ALPN list alpn; *selected gets whether both
 * sides agreed on xmpp-client. */
static bool alpn_handshake(tls_mode mode, const uint8_t *alpn, size_t length, bool *selected)
{
    client_side client;
    server_side server;
    client_open(&client, "a.example", TLS1_2_VERSION, TLS1_3_VERSION, NULL, alpn, length);
    server_open(&server, mode, sizeof server.scratch);
    bool done = handshake(&client, &server, 1 << 20);
    const uint8_t *protocol = NULL;
    unsigned protocol_length = 0;
    SSL_get0_alpn_selected(client.ssl, &protocol, &protocol_length);
    *selected = tls_session_alpn_xmpp_client(server.session) && protocol_length == 11 &&
                memcmp(protocol, "xmpp-client", 11) == 0;
    ERR_clear_error();
    client_close(&client);
    server_close(&server);
    return done;
}

static void test_alpn(void)
{
    bool selected = false;
    CHECK(alpn_handshake(TLS_MODE_DIRECT, alpn_xmpp_client, sizeof alpn_xmpp_client, &selected));
    CHECK(selected);
    CHECK(alpn_handshake(TLS_MODE_DIRECT, alpn_h2_then_xmpp, sizeof alpn_h2_then_xmpp, &selected));
    CHECK(selected);
    /* Direct TLS without ALPN is fine (many clients send none). */
    CHECK(alpn_handshake(TLS_MODE_DIRECT, NULL, 0, &selected));
    CHECK(!selected);
    /* Direct TLS offering only another protocol: no_application_protocol. */
    CHECK(!alpn_handshake(TLS_MODE_DIRECT, alpn_h2, sizeof alpn_h2, &selected));
    /* STARTTLS ignores ALPN. */
    CHECK(alpn_handshake(TLS_MODE_STARTTLS, alpn_xmpp_client, sizeof alpn_xmpp_client, &selected));
    CHECK(!selected);
}

static void test_garbage_instead_of_client_hello(void)
{
    static const char stream[] = "<?xml version='1.0'?><stream:stream to='a.example' "
                                 "xmlns='jabber:client' version='1.0'>";
    server_side server;
    server_open(&server, TLS_MODE_DIRECT, sizeof server.scratch);
    CHECK(tls_session_receive(server.session, (const uint8_t *)stream, sizeof stream - 1,
                              &server.io) == TLS_ERROR);
    CHECK(strcmp(tls_session_error(server.session), "") != 0);
    fprintf(stderr, "   xml: %s\n", tls_session_error(server.session));
    /* A failed session stays failed. */
    CHECK(tls_session_receive(server.session, (const uint8_t *)"x", 1, &server.io) == TLS_ERROR);
    server_close(&server);

    /* Random bytes, whole and byte by byte: an error or a wait, never a
     * crash, and never an established session. */
    uint8_t noise[4096];
    srand(7);
    for (unsigned trial = 0; trial < 64; trial++) {
        for (size_t i = 0; i < sizeof noise; i++)
            noise[i] = (uint8_t)rand();
        if (trial % 2 == 0)
            noise[0] = 0x16; /* looks like a handshake record */
        server_open(&server, TLS_MODE_STARTTLS, sizeof server.scratch);
        size_t chunk = trial % 4 < 2 ? sizeof noise : 1;
        tls_result result = TLS_OK;
        for (size_t at = 0; at < sizeof noise && result == TLS_OK; at += chunk)
            result = tls_session_receive(server.session, noise + at, chunk, &server.io);
        CHECK(!tls_session_established(server.session));
        CHECK(result == TLS_OK || result == TLS_ERROR);
        server_close(&server);
    }
    ERR_clear_error();

    /* More than LIMIT_TLS_HANDSHAKE_BYTES_MAX before the handshake ends. */
    uint8_t *flood = calloc(1, LIMIT_TLS_HANDSHAKE_BYTES_MAX + 1);
    server_open(&server, TLS_MODE_STARTTLS, sizeof server.scratch);
    CHECK(tls_session_receive(server.session, flood, LIMIT_TLS_HANDSHAKE_BYTES_MAX + 1,
                              &server.io) == TLS_ERROR);
    CHECK(strcmp(tls_session_error(server.session), "handshake too large") == 0);
    server_close(&server);
    free(flood);
}

/* Fills buffer with a recognisable pattern. */
static void pattern(uint8_t *buffer, size_t length, unsigned seed)
{
    for (size_t i = 0; i < length; i++)
        buffer[i] = (uint8_t)(i * 31u + seed + (i >> 8));
}

/* Sends total bytes each way: the client's records reach the server in
 * pieces of chunk bytes (plaintext buffer of capacity bytes), and the
 * server sends its plaintext in pieces of chunk bytes. */
static void exchange(size_t total, size_t chunk, size_t capacity)
{
    client_side client;
    server_side server;
    client_open(&client, "a.example", TLS1_2_VERSION, TLS1_3_VERSION, NULL, NULL, 0);
    server_open(&server, TLS_MODE_STARTTLS, capacity);
    CHECK(handshake(&client, &server, chunk));
    uint8_t *sent = malloc(total);
    pattern(sent, total, (unsigned)chunk);
    for (size_t at = 0; at < total; at += 65536) {
        size_t piece = total - at < 65536 ? total - at : 65536;
        CHECK(SSL_write(client.ssl, sent + at, (int)piece) == (int)piece);
        client_to_server(&client, &server, chunk);
    }
    CHECK(server.last == TLS_OK);
    CHECK(server.received.length == total && memcmp(server.received.data, sent, total) == 0);

    for (size_t at = 0; at < total; at += chunk) {
        size_t piece = total - at < chunk ? total - at : chunk;
        CHECK(tls_session_send(server.session, sent + at, piece, &server.io) == TLS_OK);
    }
    server_to_client(&server, &client);
    bytes got = {0};
    CHECK(client_read_all(&client, &got) == SSL_ERROR_WANT_READ);
    CHECK(got.length == total && memcmp(got.data, sent, total) == 0);
    free(got.data);
    free(sent);
    client_close(&client);
    server_close(&server);
}

static void test_data_one_byte_chunks(void)
{
    exchange(20000, 1, LIMIT_TLS_PLAINTEXT_BUFFER_BYTES);
    exchange(5000, 1, 1);
}

static void test_data_64k_chunks(void)
{
    exchange(1u << 20, 65536, LIMIT_TLS_PLAINTEXT_BUFFER_BYTES);
    exchange(200000, 65536, 100);
}

static void test_close_notify(void)
{
    /* The server closes: the client reads close_notify. */
    client_side client;
    server_side server;
    client_open(&client, "a.example", TLS1_2_VERSION, TLS1_3_VERSION, NULL, NULL, 0);
    server_open(&server, TLS_MODE_STARTTLS, sizeof server.scratch);
    CHECK(handshake(&client, &server, 1 << 20));
    CHECK(tls_session_shutdown(server.session, &server.io) == TLS_OK);
    CHECK(server.to_client.length > 0);
    CHECK(tls_session_shutdown(server.session, &server.io) == TLS_OK);
    CHECK(tls_session_send(server.session, (const uint8_t *)"x", 1, &server.io) == TLS_ERROR);
    server_to_client(&server, &client);
    bytes got = {0};
    CHECK(client_read_all(&client, &got) == SSL_ERROR_ZERO_RETURN);
    CHECK(got.length == 0);
    client_close(&client);
    server_close(&server);

    /* The client closes after some data: the server sees the data, then
     * TLS_CLOSED. */
    client_open(&client, "a.example", TLS1_2_VERSION, TLS1_3_VERSION, NULL, NULL, 0);
    server_open(&server, TLS_MODE_STARTTLS, sizeof server.scratch);
    CHECK(handshake(&client, &server, 1 << 20));
    CHECK(SSL_write(client.ssl, "bye", 3) == 3);
    CHECK(SSL_shutdown(client.ssl) == 0);
    client_to_server(&client, &server, 1 << 20);
    CHECK(server.last == TLS_CLOSED);
    CHECK(server.received.length == 3 && memcmp(server.received.data, "bye", 3) == 0);
    client_close(&client);
    server_close(&server);
}

static void test_tls_exporter(void)
{
    client_side client;
    server_side server;
    client_open(&client, "b.example", TLS1_3_VERSION, TLS1_3_VERSION, NULL, NULL, 0);
    server_open(&server, TLS_MODE_STARTTLS, sizeof server.scratch);
    uint8_t before[TLS_EXPORTER_BYTES];
    CHECK(!tls_session_exporter(server.session, before));
    CHECK(handshake(&client, &server, 1 << 20));
    uint8_t server_value[TLS_EXPORTER_BYTES];
    uint8_t client_value[TLS_EXPORTER_BYTES];
    static const char label[] = "EXPORTER-Channel-Binding";
    CHECK(tls_session_exporter(server.session, server_value));
    CHECK(SSL_export_keying_material(client.ssl, client_value, sizeof client_value, label,
                                     sizeof label - 1, NULL, 0, 0) == 1);
    CHECK(memcmp(server_value, client_value, TLS_EXPORTER_BYTES) == 0);
    client_close(&client);
    server_close(&server);

    /* TLS 1.2: no tls-exporter (RFC 9266 section 3). */
    client_open(&client, "b.example", TLS1_2_VERSION, TLS1_2_VERSION, NULL, NULL, 0);
    server_open(&server, TLS_MODE_STARTTLS, sizeof server.scratch);
    CHECK(handshake(&client, &server, 1 << 20));
    CHECK(!tls_session_exporter(server.session, server_value));
    client_close(&client);
    server_close(&server);
}

static void test_tls_server_end_point(void)
{
    static const char *const names[] = {"a.example", "b.example"};
    for (size_t i = 0; i < 2; i++) {
        client_side client;
        server_side server;
        client_open(&client, names[i], TLS1_2_VERSION, TLS1_3_VERSION, NULL, NULL, 0);
        server_open(&server, TLS_MODE_STARTTLS, sizeof server.scratch);
        uint8_t value[TLS_END_POINT_BYTES_MAX];
        CHECK(tls_session_server_end_point(server.session, value, sizeof value) == 0);
        CHECK(handshake(&client, &server, 1 << 20));
        X509 *peer = SSL_get_peer_certificate(client.ssl);
        uint8_t *der = NULL;
        int der_length = peer != NULL ? i2d_X509(peer, &der) : -1;
        uint8_t expected[SHA256_DIGEST_LENGTH];
        CHECK(der_length > 0);
        SHA256(der, (size_t)der_length, expected);
        CHECK(tls_session_server_end_point(server.session, value, sizeof value) ==
              SHA256_DIGEST_LENGTH);
        CHECK(memcmp(value, expected, SHA256_DIGEST_LENGTH) == 0);
        CHECK(tls_session_server_end_point(server.session, value, 16) == 0);
        OPENSSL_free(der);
        X509_free(peer);
        client_close(&client);
        server_close(&server);
    }
}

/* The client context's new-session callback: BoringSSL hands TLS 1.3
 * tickets only to it. Takes ownership of session. */
static int keep_ticket(SSL *ssl, SSL_SESSION *session)
{
    (void)ssl;
    SSL_SESSION_free(last_ticket);
    last_ticket = session;
    return 1;
}

static void test_ticket_resumption(void)
{
    client_side client;
    server_side server;
    client_open(&client, "a.example", TLS1_3_VERSION, TLS1_3_VERSION, NULL, NULL, 0);
    server_open(&server, TLS_MODE_STARTTLS, sizeof server.scratch);
    CHECK(handshake(&client, &server, 1 << 20));
    /* BoringSSL sends TLS 1.3 tickets with the server's first record. */
    CHECK(tls_session_send(server.session, (const uint8_t *)"features", 8, &server.io) == TLS_OK);
    server_to_client(&server, &client);
    bytes got = {0};
    CHECK(client_read_all(&client, &got) == SSL_ERROR_WANT_READ); /* takes the ticket */
    CHECK(got.length == 8);
    SSL_SESSION *ticket = last_ticket;
    last_ticket = NULL;
    CHECK(ticket != NULL && SSL_SESSION_is_resumable(ticket));
    client_close(&client);
    server_close(&server);

    client_open(&client, "a.example", TLS1_3_VERSION, TLS1_3_VERSION, NULL, NULL, 0);
    CHECK(SSL_set_session(client.ssl, ticket) == 1);
    server_open(&server, TLS_MODE_STARTTLS, sizeof server.scratch);
    CHECK(handshake(&client, &server, 1 << 20));
    CHECK(SSL_session_reused(client.ssl) == 1);
    SSL_SESSION_free(ticket);
    free(got.data);
    client_close(&client);
    server_close(&server);
}

/* A plaintext callback that answers every piece at once, from inside the
 * receive, and stops at a '!'. */
static bool echo_until_bang(void *argument, const uint8_t *data, size_t length)
{
    server_side *server = argument;
    CHECK(bytes_append(&server->received, data, length));
    CHECK(tls_session_send(server->session, data, length, &server->io) == TLS_OK);
    return memchr(data, '!', length) == NULL;
}

static void test_send_inside_receive_and_stop(void)
{
    client_side client;
    server_side server;
    client_open(&client, "a.example", TLS1_2_VERSION, TLS1_3_VERSION, NULL, NULL, 0);
    server_open(&server, TLS_MODE_STARTTLS, sizeof server.scratch);
    CHECK(handshake(&client, &server, 1 << 20));
    server.io.on_plaintext = echo_until_bang;
    CHECK(SSL_write(client.ssl, "abc", 3) == 3);
    client_to_server(&client, &server, 1 << 20);
    CHECK(server.last == TLS_OK);
    server_to_client(&server, &client);
    bytes got = {0};
    CHECK(client_read_all(&client, &got) == SSL_ERROR_WANT_READ);
    CHECK(got.length == 3 && memcmp(got.data, "abc", 3) == 0);

    /* Two records in one receive; the callback stops at the first. */
    CHECK(SSL_write(client.ssl, "stop!", 5) == 5);
    CHECK(SSL_write(client.ssl, "lost", 4) == 4);
    client_to_server(&client, &server, 1 << 20);
    CHECK(server.last == TLS_STOPPED);
    CHECK(server.received.length == 8 && memcmp(server.received.data, "abcstop!", 8) == 0);
    /* The stream lost bytes: receiving fails, but a last word and
     * close_notify still go out. */
    CHECK(tls_session_receive(server.session, (const uint8_t *)"x", 1, &server.io) == TLS_ERROR);
    CHECK(strcmp(tls_session_error(server.session), "receive after a stopped receive") == 0);
    server_close(&server);
    client_close(&client);
    free(got.data);

    client_open(&client, "a.example", TLS1_2_VERSION, TLS1_3_VERSION, NULL, NULL, 0);
    server_open(&server, TLS_MODE_STARTTLS, sizeof server.scratch);
    CHECK(handshake(&client, &server, 1 << 20));
    server.io.on_plaintext = echo_until_bang;
    CHECK(SSL_write(client.ssl, "bad!", 4) == 4);
    client_to_server(&client, &server, 1 << 20);
    CHECK(server.last == TLS_STOPPED);
    CHECK(tls_session_send(server.session, (const uint8_t *)"</stream:stream>", 16, &server.io) ==
          TLS_OK);
    CHECK(tls_session_shutdown(server.session, &server.io) == TLS_OK);
    server_to_client(&server, &client);
    bytes last = {0};
    CHECK(client_read_all(&client, &last) == SSL_ERROR_ZERO_RETURN);
    CHECK(last.length == 20 && memcmp(last.data, "bad!</stream:stream>", 20) == 0);
    free(last.data);
    server_close(&server);
    client_close(&client);
}

typedef struct moved {
    client_side *client;
    server_side *server;
} moved;

/* The second half of test_session_moves_thread, on another thread. */
static void *exchange_elsewhere(void *argument)
{
    moved *pair = argument;
    CHECK(SSL_write(pair->client->ssl, "ping", 4) == 4);
    client_to_server(pair->client, pair->server, 1 << 20);
    CHECK(tls_session_send(pair->server->session, (const uint8_t *)"pong", 4, &pair->server->io) ==
          TLS_OK);
    return NULL;
}

static void test_session_moves_thread(void)
{
    client_side client;
    server_side server;
    client_open(&client, "a.example", TLS1_2_VERSION, TLS1_3_VERSION, NULL, NULL, 0);
    server_open(&server, TLS_MODE_STARTTLS, sizeof server.scratch);
    CHECK(handshake(&client, &server, 1 << 20));
    moved pair = {&client, &server};
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, exchange_elsewhere, &pair) == 0);
    CHECK(pthread_join(thread, NULL) == 0);
    CHECK(server.last == TLS_OK);
    CHECK(server.received.length == 4 && memcmp(server.received.data, "ping", 4) == 0);
    server_to_client(&server, &client);
    bytes got = {0};
    client_read_all(&client, &got);
    CHECK(got.length == 4 && memcmp(got.data, "pong", 4) == 0);
    free(got.data);
    client_close(&client);
    server_close(&server);
}

/* True when the PEM certificate at path verifies for host, trusted as
 * itself. */
static bool verifies_for(const char *path, const char *host)
{
    FILE *file = fopen(path, "r");
    X509 *certificate = file != NULL ? PEM_read_X509(file, NULL, NULL, NULL) : NULL;
    if (file != NULL)
        fclose(file);
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *store_context = X509_STORE_CTX_new();
    bool verified = certificate != NULL && store != NULL && store_context != NULL &&
                    X509_STORE_add_cert(store, certificate) == 1 &&
                    X509_STORE_CTX_init(store_context, store, certificate, NULL) == 1;
    if (verified) {
        X509_VERIFY_PARAM *parameters = X509_STORE_CTX_get0_param(store_context);
        X509_VERIFY_PARAM_set1_host(parameters, host, strlen(host));
        X509_STORE_CTX_set_purpose(store_context, X509_PURPOSE_SSL_SERVER);
        verified = X509_verify_cert(store_context) == 1;
    }
    X509_STORE_CTX_free(store_context);
    X509_STORE_free(store);
    X509_free(certificate);
    ERR_clear_error();
    return verified;
}

/* The bytes of the file at path, or an empty buffer. */
static bytes file_bytes(const char *path)
{
    bytes content = {0};
    FILE *file = fopen(path, "rb");
    uint8_t buffer[4096];
    size_t length = 0;
    while (file != NULL && (length = fread(buffer, 1, sizeof buffer, file)) > 0)
        CHECK(bytes_append(&content, buffer, length));
    if (file != NULL)
        fclose(file);
    return content;
}

static void test_self_signed(void)
{
    char data_dir[sizeof directory + 32];
    snprintf(data_dir, sizeof data_dir, "%s/data", directory);
    tls_cert_paths paths;
    bool generated = false;
    char error[TLS_ERROR_BYTES] = "";
    CHECK(tls_cert_self_signed(data_dir, "localhost", &paths, &generated, error, sizeof error));
    CHECK(generated);
    struct stat status;
    CHECK(stat(paths.key_file, &status) == 0 && (status.st_mode & 0777) == 0600);
    CHECK(stat(paths.cert_file, &status) == 0 && S_ISREG(status.st_mode));
    CHECK(verifies_for(paths.cert_file, "localhost"));
    CHECK(!verifies_for(paths.cert_file, "example.org"));
    bytes key_before = file_bytes(paths.key_file);
    bytes cert_before = file_bytes(paths.cert_file);
    CHECK(key_before.length > 0 && cert_before.length > 0);

    /* A second start reuses both files as they are. */
    tls_cert_paths again;
    CHECK(tls_cert_self_signed(data_dir, "localhost", &again, &generated, error, sizeof error));
    CHECK(!generated);
    CHECK(strcmp(again.key_file, paths.key_file) == 0);
    bytes key_after = file_bytes(paths.key_file);
    bytes cert_after = file_bytes(paths.cert_file);
    CHECK(key_after.length == key_before.length &&
          memcmp(key_after.data, key_before.data, key_before.length) == 0);
    CHECK(cert_after.length == cert_before.length &&
          memcmp(cert_after.data, cert_before.data, cert_before.length) == 0);

    /* A pair that no longer fits (the key lost) is made again. */
    CHECK(unlink(paths.key_file) == 0);
    CHECK(tls_cert_self_signed(data_dir, "localhost", &again, &generated, error, sizeof error));
    CHECK(generated);
    CHECK(verifies_for(paths.cert_file, "localhost"));
    CHECK(!tls_cert_self_signed(data_dir, "../escape", &again, &generated, error, sizeof error));
    CHECK(strlen(error) > 0);
    free(key_before.data);
    free(cert_before.data);
    free(key_after.data);
    free(cert_after.data);
}

static void test_context_from_config(void)
{
    config settings;
    config_defaults(&settings);
    snprintf(settings.data_dir, sizeof settings.data_dir, "%s/config-data", directory);
    char error[TLS_ERROR_BYTES] = "";
    tls_context *made = tls_context_from_config(&settings, error, sizeof error);
    CHECK(made != NULL);
    if (made == NULL) {
        fprintf(stderr, "   %s\n", error);
        return;
    }
    tls_context *saved = context;
    context = made;
    CHECK(presented_for("localhost", "localhost"));
    CHECK(presented_for(NULL, "localhost"));
    context = saved;
    tls_context_destroy(made);

    /* A configured entry whose files are missing fails with its path. */
    settings.certificate_count = 1;
    snprintf(settings.certificates[0].domain, CONFIG_STRING_BYTES, "localhost");
    snprintf(settings.certificates[0].cert_file, CONFIG_STRING_BYTES, "missing.pem");
    snprintf(settings.certificates[0].key_file, CONFIG_STRING_BYTES, "missing.key");
    CHECK(tls_context_from_config(&settings, error, sizeof error) == NULL);
    CHECK(strstr(error, "missing.pem") != NULL);
}

/* A certificate for common_name (also its SAN DNS name when not a CA)
 * holding key's public half, signed by issuer_key with digest; issuer
 * NULL makes it self-signed. */
static X509 *make_certificate(const char *common_name, EVP_PKEY *key, X509 *issuer,
                              EVP_PKEY *issuer_key, bool ca, const EVP_MD *digest)
{
    X509 *certificate = X509_new();
    X509_set_version(certificate, X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(certificate), ca ? 1 : 2);
    X509_gmtime_adj(X509_getm_notBefore(certificate), -3600);
    X509_gmtime_adj(X509_getm_notAfter(certificate), 86400);
    X509_NAME *name = X509_get_subject_name(certificate);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const uint8_t *)common_name, -1, -1, 0);
    X509_set_issuer_name(certificate, issuer != NULL ? X509_get_subject_name(issuer) : name);
    X509_set_pubkey(certificate, key);
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, issuer != NULL ? issuer : certificate, certificate, NULL, NULL, 0);
    char san[128];
    snprintf(san, sizeof san, "DNS:%s", common_name);
    X509_EXTENSION *extensions[] = {
        X509V3_EXT_nconf_nid(NULL, &v3, NID_basic_constraints,
                             ca ? "critical,CA:TRUE" : "critical,CA:FALSE"),
        ca ? X509V3_EXT_nconf_nid(NULL, &v3, NID_key_usage, "critical,keyCertSign,cRLSign")
           : X509V3_EXT_nconf_nid(NULL, &v3, NID_subject_alt_name, san)};
    for (size_t i = 0; i < 2; i++) {
        CHECK(extensions[i] != NULL && X509_add_ext(certificate, extensions[i], -1) == 1);
        X509_EXTENSION_free(extensions[i]);
    }
    CHECK(X509_sign(certificate, issuer_key, digest) > 0);
    return certificate;
}

static EVP_PKEY *make_key(void)
{
    EVP_PKEY *key = EVP_PKEY_new();
    EC_KEY *ec_key = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
    CHECK(EC_KEY_generate_key(ec_key) == 1 && EVP_PKEY_assign_EC_KEY(key, ec_key) == 1);
    return key;
}

/* A root, an intermediate and a leaf for c.example signed with SHA-384:
 * the server's file holds leaf and intermediate, the client trusts the
 * root alone, so verification needs the intermediate the server sent; and
 * tls-server-end-point is SHA-384 (the leaf's signature hash). */
static void test_chain_and_sha384_end_point(void)
{
    EVP_PKEY *root_key = make_key(), *middle_key = make_key(), *leaf_key = make_key();
    X509 *root = make_certificate("Test Root", root_key, NULL, root_key, true, EVP_sha256());
    X509 *middle =
        make_certificate("Test Intermediate", middle_key, root, root_key, true, EVP_sha256());
    X509 *leaf = make_certificate("c.example", leaf_key, middle, middle_key, false, EVP_sha384());
    char chain_path[sizeof directory + 32], key_path[sizeof directory + 32];
    snprintf(chain_path, sizeof chain_path, "%s/chain.pem", directory);
    snprintf(key_path, sizeof key_path, "%s/chain.key", directory);
    FILE *file = fopen(chain_path, "w");
    CHECK(file != NULL && PEM_write_X509(file, leaf) == 1 && PEM_write_X509(file, middle) == 1);
    if (file != NULL)
        fclose(file);
    file = fopen(key_path, "w");
    CHECK(file != NULL && PEM_write_PrivateKey(file, leaf_key, NULL, NULL, 0, NULL, NULL) == 1);
    if (file != NULL)
        fclose(file);

    tls_certificate entry = {"c.example", chain_path, key_path};
    char error[TLS_ERROR_BYTES] = "";
    tls_context *chained = tls_context_create(&entry, 1, error, sizeof error);
    CHECK(chained != NULL);
    SSL_CTX *verifying = SSL_CTX_new(TLS_method());
    X509_STORE_add_cert(SSL_CTX_get_cert_store(verifying), root);
    SSL_CTX_set_verify(verifying, SSL_VERIFY_PEER, NULL);
    if (chained != NULL && verifying != NULL) {
        tls_context *saved_context = context;
        SSL_CTX *saved_client_context = client_context;
        context = chained;
        client_context = verifying;
        client_side client;
        server_side server;
        client_open(&client, "c.example", TLS1_2_VERSION, TLS1_3_VERSION, NULL, NULL, 0);
        CHECK(SSL_set1_host(client.ssl, "c.example") == 1);
        server_open(&server, TLS_MODE_STARTTLS, sizeof server.scratch);
        CHECK(handshake(&client, &server, 1 << 20));
        CHECK(SSL_get_verify_result(client.ssl) == X509_V_OK);
        uint8_t *der = NULL;
        int der_length = i2d_X509(leaf, &der);
        uint8_t expected[SHA384_DIGEST_LENGTH];
        SHA384(der, (size_t)der_length, expected);
        uint8_t value[TLS_END_POINT_BYTES_MAX];
        CHECK(tls_session_server_end_point(server.session, value, sizeof value) ==
              SHA384_DIGEST_LENGTH);
        CHECK(memcmp(value, expected, SHA384_DIGEST_LENGTH) == 0);
        OPENSSL_free(der);
        client_close(&client);
        server_close(&server);
        context = saved_context;
        client_context = saved_client_context;
    }
    SSL_CTX_free(verifying);
    tls_context_destroy(chained);
    X509_free(root);
    X509_free(middle);
    X509_free(leaf);
    EVP_PKEY_free(root_key);
    EVP_PKEY_free(middle_key);
    EVP_PKEY_free(leaf_key);
}

static void test_context_refuses_bad_files(void)
{
    char path[sizeof directory + 32];
    snprintf(path, sizeof path, "%s/garbage.pem", directory);
    FILE *file = fopen(path, "w");
    CHECK(file != NULL);
    if (file != NULL) {
        fputs("not a certificate\n", file);
        fclose(file);
    }
    tls_certificate bad = {"a.example", path, path};
    char error[TLS_ERROR_BYTES] = "";
    CHECK(tls_context_create(&bad, 1, error, sizeof error) == NULL);
    CHECK(strstr(error, "garbage.pem") != NULL);
    CHECK(tls_context_create(&bad, 0, error, sizeof error) == NULL);

    /* b.example's key with a.example's certificate. */
    tls_cert_paths a, b;
    bool generated = false;
    CHECK(tls_cert_self_signed(directory, "a.example", &a, &generated, error, sizeof error));
    CHECK(tls_cert_self_signed(directory, "b.example", &b, &generated, error, sizeof error));
    tls_certificate mismatched = {"a.example", a.cert_file, b.key_file};
    CHECK(tls_context_create(&mismatched, 1, error, sizeof error) == NULL);
    CHECK(strstr(error, "does not match") != NULL);
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
    const char *filter = argc > 1 ? argv[1] : NULL;
    if (mkdtemp(directory) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    tls_cert_paths a, b;
    bool generated = false;
    char error[TLS_ERROR_BYTES] = "";
    if (!tls_cert_self_signed(directory, "a.example", &a, &generated, error, sizeof error) ||
        !tls_cert_self_signed(directory, "b.example", &b, &generated, error, sizeof error)) {
        fprintf(stderr, "test certificates: %s\n", error);
        return 1;
    }
    tls_certificate certificates[] = {{"a.example", a.cert_file, a.key_file},
                                      {"b.example", b.cert_file, b.key_file}};
    context = tls_context_create(certificates, 2, error, sizeof error);
    client_context = SSL_CTX_new(TLS_method());
    if (context == NULL || client_context == NULL) {
        fprintf(stderr, "contexts: %s\n", error);
        return 1;
    }
    SSL_CTX_set_session_cache_mode(client_context, SSL_SESS_CACHE_CLIENT);
    SSL_CTX_sess_set_new_cb(client_context, keep_ticket);

    harness_run("handshake_tls13", test_handshake_tls13, filter);
    harness_run("handshake_tls12", test_handshake_tls12, filter);
    harness_run("tls11_refused", test_tls11_refused, filter);
    harness_run("weak_cipher_refused", test_weak_cipher_refused, filter);
    harness_run("sni_selects", test_sni_selects, filter);
    harness_run("sni_unknown_gets_default", test_sni_unknown_gets_default, filter);
    harness_run("alpn", test_alpn, filter);
    harness_run("garbage_instead_of_client_hello", test_garbage_instead_of_client_hello, filter);
    harness_run("data_one_byte_chunks", test_data_one_byte_chunks, filter);
    harness_run("data_64k_chunks", test_data_64k_chunks, filter);
    harness_run("close_notify", test_close_notify, filter);
    harness_run("tls_exporter", test_tls_exporter, filter);
    harness_run("tls_server_end_point", test_tls_server_end_point, filter);
    harness_run("ticket_resumption", test_ticket_resumption, filter);
    harness_run("send_inside_receive_and_stop", test_send_inside_receive_and_stop, filter);
    harness_run("session_moves_thread", test_session_moves_thread, filter);
    harness_run("self_signed", test_self_signed, filter);
    harness_run("context_from_config", test_context_from_config, filter);
    harness_run("chain_and_sha384_end_point", test_chain_and_sha384_end_point, filter);
    harness_run("context_refuses_bad_files", test_context_refuses_bad_files, filter);

    tls_context_destroy(context);
    SSL_CTX_free(client_context);
    SSL_SESSION_free(last_ticket);
    if (nftw(directory, remove_entry, 8, FTW_DEPTH | FTW_PHYS) != 0)
        fprintf(stderr, "could not remove %s\n", directory);
    return harness_finish();
}
