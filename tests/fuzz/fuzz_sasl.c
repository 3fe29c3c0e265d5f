/*
 * fuzz_sasl.c: libFuzzer target for the server side of SASL
 * (server/xmpp/sasl.h).
 *
 * An input is a stream setup byte followed by commands, each fed to one
 * sasl_session the way c2s would feed a client's elements:
 *
 *   byte 0      stream: bit 0 TLS, 1 tls-exporter data, 2 tls-server-end-point
 *               data, 3 plaintext allowed, 4 ANONYMOUS enabled, 5 deferred
 *               storage completions (delivered after each command), 6 a
 *               throttle
 *   commands    op (1 byte), length (1 byte), payload (length bytes):
 *               op % 4 == 0  <auth/>: mechanism = (op / 4) % 9 (8: the
 *                            payload up to its first ':' is the name)
 *               op % 4 == 1  <response/>
 *               op % 4 == 2  <abort/>
 *               op % 4 == 3  destroy the session and make a new one
 *               op & 0x80    the payload is sent as it is instead of being
 *                            base64-encoded first (reaches the decoder)
 *               op & 0x40    (a response) ignore the payload and answer the
 *                            last challenge as a client with the password
 *                            "pencil" would, with the binding data its
 *                            client-first asked for (reaches success)
 *
 * The fake storage knows one user ("alice", password "pencil") and
 * completes fetches inline or deferred. After every step the output must be one of the three SASL
 * elements, and a success must name a localpart.
 */
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/base64.h>

#include "server/xmpp/sasl.h"
#include "tests/xmpp/sasl_fake.h"

static fake_storage fake;
static sasl_server server;
static uint64_t clock_ms;
static unsigned ready_calls;

/* alice's keys per scram_hash, derived once: the client side of op & 0x40
 * then costs no PBKDF2. */
static scram_keys alice_keys[3];

static const uint8_t exporter_data[32] = {1, 2, 3};
static const uint8_t endpoint_data[48] = {4, 5, 6};

static uint64_t fake_now(void)
{
    return clock_ms;
}

static void check_output(const sasl_session *session, sasl_step step)
{
    static const char *const prefixes[] = {"<challenge xmlns='" SASL_NAMESPACE "'",
                                           "<success xmlns='" SASL_NAMESPACE "'",
                                           "<failure xmlns='" SASL_NAMESPACE "'><"};
    if (step == SASL_STEP_PENDING)
        return;
    xml_slice output = sasl_session_output(session);
    size_t which = step == SASL_STEP_CHALLENGE ? 0 : step == SASL_STEP_SUCCESS ? 1 : 2;
    size_t prefix_len = strlen(prefixes[which]);
    if (output.len < prefix_len || memcmp(output.ptr, prefixes[which], prefix_len) != 0)
        abort();
    if (step == SASL_STEP_SUCCESS && sasl_session_localpart(session) == NULL)
        abort();
    if ((step == SASL_STEP_FAILURE || step == SASL_STEP_FAILURE_CLOSE) &&
        sasl_session_condition(session) == SASL_CONDITION_NONE)
        abort();
}

static void on_ready(void *context, sasl_session *session, sasl_step step)
{
    (void)context;
    ready_calls++;
    if (step == SASL_STEP_PENDING)
        abort();
    check_output(session, step);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    static const scram_hash hashes[] = {SCRAM_HASH_SHA1, SCRAM_HASH_SHA256, SCRAM_HASH_SHA512};
    rx_log_set_level(RX_LOG_ERROR + 1);
    if (!fake_storage_add(&fake, "alice", "pencil", hashes, 3, LIMIT_SCRAM_ITERATIONS_MIN))
        abort();
    for (size_t i = 0; i < 3; i++) {
        const storage_credential *credential = &fake.users[0].credentials[i];
        if (scram_keys_derive(credential->hash, "pencil", 6, credential->salt, credential->salt_len,
                              credential->iterations, &alice_keys[credential->hash]) != SCRAM_OK)
            abort();
    }
    return 0;
}

static sasl_session *session_new(const sasl_stream_params *params)
{
    sasl_session *session = sasl_session_create(&server, params, on_ready, NULL);
    if (session == NULL)
        abort();
    return session;
}

/* The last client-first sent with <auth/> (for op & 0x40). */
static uint8_t last_first[256];
static size_t last_first_len;

/* Builds the client-final that answers the session's challenge to
 * last_first; returns its length, 0 when there is nothing to answer. */
static size_t client_final_for(const sasl_session *session, char *out, size_t capacity)
{
    scram_client_first first;
    if (scram_client_first_parse((const char *)last_first, last_first_len, &first) != SCRAM_OK)
        return 0;
    static const char prefix[] = "<challenge xmlns='" SASL_NAMESPACE "'>";
    xml_slice output = sasl_session_output(session);
    size_t prefix_len = sizeof prefix - 1, suffix_len = strlen("</challenge>");
    if (output.len <= prefix_len + suffix_len || memcmp(output.ptr, prefix, prefix_len) != 0)
        return 0;
    char server_first_text[1024];
    size_t server_first_len = 0;
    if (!EVP_DecodeBase64((uint8_t *)server_first_text, &server_first_len, sizeof server_first_text,
                          (const uint8_t *)output.ptr + prefix_len,
                          output.len - prefix_len - suffix_len))
        return 0;
    scram_server_first server_first;
    if (scram_server_first_parse(server_first_text, server_first_len, first.nonce, &server_first) !=
        SCRAM_OK)
        return 0;
    scram_mechanism mechanism;
    const char *name = sasl_mechanism_name(sasl_session_mechanism(session));
    if (!scram_mechanism_parse(name, strlen(name), &mechanism))
        return 0;
    const scram_keys keys = alice_keys[mechanism.hash];
    const uint8_t *cbind = NULL;
    size_t cbind_len = 0;
    if (first.cbind_name.len == 12 && memcmp(first.cbind_name.ptr, "tls-exporter", 12) == 0) {
        cbind = exporter_data;
        cbind_len = sizeof exporter_data;
    } else if (first.cbind_name.len > 0) {
        cbind = endpoint_data;
        cbind_len = sizeof endpoint_data;
    }
    size_t final_len = 0, without_proof_len = 0;
    if (scram_client_final_build(&keys, first.gs2_header, cbind, cbind_len, server_first.nonce,
                                 first.bare, (scram_slice){server_first_text, server_first_len},
                                 out, capacity, &final_len, &without_proof_len) != SCRAM_OK)
        return 0;
    return final_len;
}

static sasl_step run_command(sasl_session *session, uint8_t op, const uint8_t *payload,
                             size_t length)
{
    char final[1024];
    if (op % 4 == 1 && (op & 0x40)) {
        length = client_final_for(session, final, sizeof final);
        payload = (const uint8_t *) final;
        op &= 0x7f;
    }
    if (op % 4 == 0) {
        memcpy(last_first, payload, length);
        last_first_len = length;
    }
    static char text[4 * 1024 / 3 + 8];
    size_t text_len = length;
    if (op & 0x80) {
        memcpy(text, payload, length);
    } else if (length == 0) {
        text[0] = '=';
        text_len = 1;
    } else {
        text_len = EVP_EncodeBlock((uint8_t *)text, payload, length);
    }
    switch (op % 4) {
    case 0: {
        unsigned mechanism = (op / 4u) % 9u;
        if (mechanism < SASL_MECHANISM_COUNT) {
            const char *name = sasl_mechanism_name((sasl_mechanism)mechanism);
            return sasl_session_auth(session, name, strlen(name), text, text_len);
        }
        const uint8_t *colon = memchr(payload, ':', length);
        size_t name_len = colon != NULL ? (size_t)(colon - payload) : length;
        return sasl_session_auth(session, (const char *)payload, name_len, "=", 1);
    }
    case 1:
        return sasl_session_response(session, text, text_len);
    default:
        return sasl_session_abort(session);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t setup = data[0];
    sasl_server_init(&server);
    server.fetch = fake_storage_fetch;
    server.fetch_context = &fake;
    server.now_ms = fake_now;
    memset(server.secret, 7, sizeof server.secret);
    auth_throttle *throttle = NULL;
    if (setup & 0x40) {
        throttle = auth_throttle_create(16, 8);
        if (throttle == NULL)
            abort();
        server.throttle = throttle;
    }
    fake.deferred = (setup & 0x20) != 0;
    fake.pending_count = 0;
    struct sockaddr_in peer = {.sin_family = AF_INET, .sin_addr.s_addr = 0x0100007f};
    sasl_stream_params params = {
        .domain = "example.com",
        .tls = setup & 1,
        .plaintext_allowed = (setup & 8) != 0,
        .anonymous = (setup & 16) != 0,
        .peer = (const struct sockaddr *)&peer,
    };
    if (setup & 2) {
        params.cbind_data[SASL_CBIND_TLS_EXPORTER] = exporter_data;
        params.cbind_data_len[SASL_CBIND_TLS_EXPORTER] = sizeof exporter_data;
    }
    if (setup & 4) {
        params.cbind_data[SASL_CBIND_TLS_SERVER_END_POINT] = endpoint_data;
        params.cbind_data_len[SASL_CBIND_TLS_SERVER_END_POINT] = sizeof endpoint_data;
    }
    sasl_session *session = session_new(&params);
    size_t at = 1;
    while (at + 2 <= size) {
        uint8_t op = data[at];
        size_t length = data[at + 1];
        at += 2;
        if (length > size - at)
            length = size - at;
        const uint8_t *payload = data + at;
        at += length;
        clock_ms += 500;
        if (op % 4 == 3) {
            sasl_session_destroy(session);
            session = session_new(&params);
            continue;
        }
        check_output(session, run_command(session, op, payload, length));
        fake_storage_deliver(&fake);
    }
    sasl_session_destroy(session);
    fake_storage_deliver(&fake);
    auth_throttle_destroy(throttle);
    return 0;
}
