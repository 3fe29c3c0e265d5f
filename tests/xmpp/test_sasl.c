/*
 * test_sasl.c: the server side of SASL (server/xmpp/sasl.h) driven by a
 * client made of proto/scram.h's client role, over the fake storage of
 * sasl_fake.h (inline and deferred completions), and once over the real
 * SQLite driver. The clock is the test's, so throttling delays are
 * asserted as values, never measured.
 *
 * Usage: test_xmpp_sasl [test-name]
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/base64.h>

#include "server/xmpp/auth_throttle.h"
#include "server/xmpp/sasl.h"
#include "storage/storage.h"
#include "tests/harness.h"
#include "tests/xmpp/sasl_fake.h"

#define DOMAIN     "example.com"
#define TEXT_BYTES 8192u

static fake_storage fake;
static sasl_server server;
static uint64_t clock_ms;
static unsigned ready_calls;
static sasl_step ready_step;
static sasl_session *ready_session;

static const scram_hash every_hash[] = {SCRAM_HASH_SHA1, SCRAM_HASH_SHA256, SCRAM_HASH_SHA512};
static const uint8_t exporter_data[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11,
                                          12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
                                          23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
static const uint8_t endpoint_data[48] = {0xe0, 0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7,
                                          0xe8, 0xe9, 0xea, 0xeb, 0xec, 0xed, 0xee, 0xef};

/* Log lines captured from rx_log (the throttle's). */
static char log_lines[16][600];
static unsigned log_count;

static void log_capture(void *context, rx_log_level level, const char *message)
{
    (void)context, (void)level;
    snprintf(log_lines[log_count % 16], sizeof log_lines[0], "%s", message);
    log_count++;
}

static bool logged(const char *needle)
{
    for (unsigned i = 0; i < log_count && i < 16; i++)
        if (strstr(log_lines[i], needle) != NULL)
            return true;
    return false;
}

static uint64_t fake_now(void)
{
    return clock_ms;
}

static void on_ready(void *context, sasl_session *session, sasl_step step)
{
    (void)context;
    ready_calls++;
    ready_step = step;
    ready_session = session;
}

static void setup(void)
{
    memset(&fake, 0, sizeof fake);
    sasl_server_init(&server);
    server.fetch = fake_storage_fetch;
    server.fetch_context = &fake;
    server.now_ms = fake_now;
    clock_ms = 1000000;
    ready_calls = 0;
    ready_session = NULL;
    log_count = 0;
    CHECK(fake_storage_add(&fake, "alice", "pencil", every_hash, 3, 4096));
}

typedef struct stream_kind {
    bool tls;
    bool exporter;
    bool endpoint;
    bool plaintext_allowed;
    bool anonymous;
} stream_kind;

static struct sockaddr_in peer_v4(uint32_t address)
{
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(address)};
    return in;
}

static struct sockaddr_in default_peer;

static sasl_stream_params params_of(stream_kind kind)
{
    sasl_stream_params params = {
        .domain = DOMAIN,
        .tls = kind.tls,
        .plaintext_allowed = kind.plaintext_allowed,
        .anonymous = kind.anonymous,
        .peer = (const struct sockaddr *)&default_peer,
    };
    if (kind.exporter) {
        params.cbind_data[SASL_CBIND_TLS_EXPORTER] = exporter_data;
        params.cbind_data_len[SASL_CBIND_TLS_EXPORTER] = sizeof exporter_data;
    }
    if (kind.endpoint) {
        params.cbind_data[SASL_CBIND_TLS_SERVER_END_POINT] = endpoint_data;
        params.cbind_data_len[SASL_CBIND_TLS_SERVER_END_POINT] = sizeof endpoint_data;
    }
    return params;
}

static const stream_kind tls13 = {.tls = true, .exporter = true, .endpoint = true};
static const stream_kind tls12 = {.tls = true, .endpoint = true};
static const stream_kind plaintext = {0};

static sasl_session *session_for(stream_kind kind)
{
    default_peer = peer_v4(0xc0000201);
    sasl_stream_params params = params_of(kind);
    sasl_session *session = sasl_session_create(&server, &params, on_ready, NULL);
    CHECK(session != NULL);
    return session;
}

/* ------------------------------------------------------------- helpers */

static size_t base64(const void *bytes, size_t length, char *out)
{
    if (length == 0) {
        strcpy(out, "=");
        return 1;
    }
    return EVP_EncodeBlock((uint8_t *)out, bytes, length);
}

/* The base64 content of <name xmlns='...'>TEXT</name>, decoded into out;
 * false when the output is another element. Empty element: length 0. */
static bool element_data(const sasl_session *session, const char *name, char *out, size_t *out_len)
{
    xml_slice output = sasl_session_output(session);
    char text[TEXT_BYTES];
    char open[64], close[64], empty[96];
    if (output.len >= sizeof text)
        return false;
    memcpy(text, output.ptr, output.len);
    text[output.len] = '\0';
    snprintf(empty, sizeof empty, "<%s xmlns='" SASL_NAMESPACE "'/>", name);
    if (strcmp(text, empty) == 0) {
        *out_len = 0;
        return true;
    }
    snprintf(open, sizeof open, "<%s xmlns='" SASL_NAMESPACE "'>", name);
    snprintf(close, sizeof close, "</%s>", name);
    size_t open_len = strlen(open), close_len = strlen(close);
    if (output.len < open_len + close_len || strncmp(text, open, open_len) != 0 ||
        strcmp(text + output.len - close_len, close) != 0)
        return false;
    return EVP_DecodeBase64((uint8_t *)out, out_len, TEXT_BYTES, (uint8_t *)text + open_len,
                            output.len - open_len - close_len) == 1;
}

static bool is_failure(const sasl_session *session, const char *condition)
{
    char expected[256];
    snprintf(expected, sizeof expected, "<failure xmlns='" SASL_NAMESPACE "'><%s/></failure>",
             condition);
    xml_slice output = sasl_session_output(session);
    return output.len == strlen(expected) && memcmp(output.ptr, expected, output.len) == 0 &&
           strcmp(sasl_condition_name(sasl_session_condition(session)), condition) == 0;
}

/* Waits out a PENDING step the way c2s does: the storage completes on a
 * later loop iteration and on_ready brings the step. */
static sasl_step settle(sasl_session *session, sasl_step step)
{
    for (unsigned round = 0; round < 4 && step == SASL_STEP_PENDING; round++) {
        unsigned before = ready_calls;
        fake_storage_deliver(&fake);
        if (ready_calls == before + 1 && ready_session == session)
            step = ready_step;
    }
    return step;
}

typedef struct login {
    const char *mechanism;
    scram_cbind cbind;
    const char *cbind_name;
    const uint8_t *cbind_data; /* what the client binds (may differ from the server's) */
    size_t cbind_len;
    const char *username;
    const char *password;
    const char *authzid;
    bool no_initial_response;
    const char *final_gs2_header; /* c= carries this header instead of the one sent */
    /* results */
    char server_first[1024];
    size_t server_first_len;
    bool server_verified; /* the client checked the server's signature */
} login;

static sasl_step send_auth(sasl_session *session, const char *mechanism, const void *message,
                           size_t message_len)
{
    char text[TEXT_BYTES];
    size_t text_len = base64(message, message_len, text);
    return settle(session,
                  sasl_session_auth(session, mechanism, strlen(mechanism), text, text_len));
}

static sasl_step send_response(sasl_session *session, const void *message, size_t message_len)
{
    char text[TEXT_BYTES];
    size_t text_len = base64(message, message_len, text);
    return settle(session, sasl_session_response(session, text, text_len));
}

/* A SCRAM exchange as a client does it; returns the last step. */
static sasl_step scram_login(sasl_session *session, login *l)
{
    scram_mechanism mechanism;
    if (!scram_mechanism_parse(l->mechanism, strlen(l->mechanism), &mechanism))
        return SASL_STEP_PENDING;
    char nonce[64], first[2048];
    size_t nonce_len = 0, first_len = 0, gs2_len = 0;
    CHECK(scram_nonce_make(18, nonce, sizeof nonce, &nonce_len) == SCRAM_OK);
    scram_client_first_params params = {
        .cbind = l->cbind,
        .cbind_name = l->cbind_name,
        .authzid = l->authzid,
        .authzid_len = l->authzid != NULL ? strlen(l->authzid) : 0,
        .username = l->username,
        .username_len = strlen(l->username),
        .nonce = nonce,
        .nonce_len = nonce_len,
    };
    CHECK(scram_client_first_build(&params, first, sizeof first, &first_len, &gs2_len) == SCRAM_OK);
    sasl_step step;
    char data[TEXT_BYTES];
    size_t data_len = 0;
    if (l->no_initial_response) {
        step =
            settle(session, sasl_session_auth(session, l->mechanism, strlen(l->mechanism), "", 0));
        if (step != SASL_STEP_CHALLENGE || !element_data(session, "challenge", data, &data_len) ||
            data_len != 0)
            return step == SASL_STEP_CHALLENGE ? SASL_STEP_PENDING : step;
        step = send_response(session, first, first_len);
    } else {
        step = send_auth(session, l->mechanism, first, first_len);
    }
    if (step != SASL_STEP_CHALLENGE)
        return step;
    CHECK(element_data(session, "challenge", l->server_first, &l->server_first_len));
    scram_server_first server_first;
    if (scram_server_first_parse(l->server_first, l->server_first_len,
                                 (scram_slice){nonce, nonce_len}, &server_first) != SCRAM_OK)
        return SASL_STEP_PENDING;
    scram_keys keys;
    CHECK(scram_keys_derive(mechanism.hash, l->password, strlen(l->password), server_first.salt,
                            server_first.salt_len, server_first.iterations, &keys) == SCRAM_OK);
    char final[2048];
    size_t final_len = 0, without_proof_len = 0;
    scram_slice gs2_header = {first, gs2_len};
    if (l->final_gs2_header != NULL)
        gs2_header = (scram_slice){l->final_gs2_header, strlen(l->final_gs2_header)};
    CHECK(scram_client_final_build(&keys, gs2_header, l->cbind_data, l->cbind_len,
                                   server_first.nonce,
                                   (scram_slice){first + gs2_len, first_len - gs2_len},
                                   (scram_slice){l->server_first, l->server_first_len}, final,
                                   sizeof final, &final_len, &without_proof_len) == SCRAM_OK);
    step = send_response(session, final, final_len);
    if (step != SASL_STEP_SUCCESS)
        return step;
    scram_server_final server_final;
    CHECK(element_data(session, "success", data, &data_len));
    CHECK(scram_server_final_parse(data, data_len, &server_final) == SCRAM_OK);
    scram_auth_message message = {
        .client_first_bare = {first + gs2_len, first_len - gs2_len},
        .server_first = {l->server_first, l->server_first_len},
        .client_final_without_proof = {final, without_proof_len},
    };
    l->server_verified = scram_client_verify_server(&keys, &message, &server_final) == SCRAM_OK;
    return step;
}

static sasl_step plain_login(sasl_session *session, const char *authzid, const char *username,
                             const char *password)
{
    char message[512];
    int length = snprintf(message, sizeof message, "%s%c%s%c%s", authzid, 0, username, 0, password);
    return send_auth(session, "PLAIN", message, (size_t)length);
}

/* PLAIN's <auth/> without waiting for the storage. */
static sasl_step plain_raw(sasl_session *session, const char *username, const char *password)
{
    char message[512], text[TEXT_BYTES];
    int length = snprintf(message, sizeof message, "%c%s%c%s", 0, username, 0, password);
    size_t text_len = base64(message, (size_t)length, text);
    return sasl_session_auth(session, "PLAIN", 5, text, text_len);
}

static login scram_basic(const char *mechanism, const char *username, const char *password)
{
    login l = {.mechanism = mechanism, .username = username, .password = password};
    return l;
}

/* ------------------------------------------------------------ features */

static void features_of(stream_kind kind, char *out, size_t capacity)
{
    sasl_stream_params params = params_of(kind);
    xml_writer writer;
    xml_writer_init(&writer, out, capacity - 1);
    sasl_features_write(&params, &writer);
    CHECK(!xml_writer_failed(&writer));
    out[xml_writer_output(&writer).len] = '\0';
}

#define MECHANISM(name) "<mechanism>" name "</mechanism>"

static void test_features(void)
{
    char out[2048];
    features_of(plaintext, out, sizeof out);
    CHECK(strcmp(out,
                 "<mechanisms xmlns='" SASL_NAMESPACE "'>" MECHANISM("SCRAM-SHA-512")
                     MECHANISM("SCRAM-SHA-256") MECHANISM("SCRAM-SHA-1") "</mechanisms>") == 0);

    features_of((stream_kind){.plaintext_allowed = true, .anonymous = true}, out, sizeof out);
    CHECK(strcmp(out, "<mechanisms xmlns='" SASL_NAMESPACE "'>" MECHANISM("SCRAM-SHA-512")
                          MECHANISM("SCRAM-SHA-256") MECHANISM("SCRAM-SHA-1") MECHANISM("PLAIN")
                              MECHANISM("ANONYMOUS") "</mechanisms>") == 0);

    features_of(tls13, out, sizeof out);
    CHECK(strcmp(out, "<mechanisms xmlns='" SASL_NAMESPACE "'>" MECHANISM("SCRAM-SHA-512-PLUS")
                          MECHANISM("SCRAM-SHA-256-PLUS") MECHANISM("SCRAM-SHA-1-PLUS") MECHANISM(
                              "SCRAM-SHA-512") MECHANISM("SCRAM-SHA-256") MECHANISM("SCRAM-SHA-1")
                              MECHANISM("PLAIN") "</mechanisms>"
                                                 "<sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'>"
                                                 "<channel-binding type='tls-exporter'/>"
                                                 "<channel-binding type='tls-server-end-point'/>"
                                                 "</sasl-channel-binding>") == 0);

    features_of(tls12, out, sizeof out);
    CHECK(strstr(out, "SCRAM-SHA-256-PLUS") != NULL);
    CHECK(strstr(out, "tls-exporter") == NULL);
    CHECK(strstr(out, "<channel-binding type='tls-server-end-point'/>") != NULL);

    /* TLS without any binding (a client certificate-less TLS 1.2 without
     * end-point data): no -PLUS, no XEP-0440 element. */
    features_of((stream_kind){.tls = true}, out, sizeof out);
    CHECK(strstr(out, "PLUS") == NULL);
    CHECK(strstr(out, "sasl-channel-binding") == NULL);
    CHECK(strstr(out, MECHANISM("PLAIN")) != NULL);

    /* A writer too small reports overflow instead of writing half. */
    char small[40];
    sasl_stream_params params = params_of(tls13);
    xml_writer writer;
    xml_writer_init(&writer, small, sizeof small);
    sasl_features_write(&params, &writer);
    CHECK(xml_writer_failed(&writer));
}

/* ----------------------------------------------------------------- SCRAM */

static void scram_each_hash(bool deferred)
{
    static const char *const mechanisms[] = {"SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512"};
    for (size_t i = 0; i < 3; i++) {
        setup();
        fake.deferred = deferred;
        sasl_session *session = session_for(tls12);
        login l = scram_basic(mechanisms[i], "alice", "pencil");
        CHECK(scram_login(session, &l) == SASL_STEP_SUCCESS);
        CHECK(l.server_verified);
        CHECK(sasl_session_localpart(session) != NULL &&
              strcmp(sasl_session_localpart(session), "alice") == 0);
        CHECK(strcmp(sasl_mechanism_name(sasl_session_mechanism(session)), mechanisms[i]) == 0);
        CHECK(fake.fetches == 1);
        CHECK(ready_calls == (deferred ? 1u : 0u));
        sasl_session_destroy(session);
    }
}

static void test_scram_inline(void)
{
    scram_each_hash(false);
}

static void test_scram_deferred(void)
{
    scram_each_hash(true);
}

static void test_scram_case_and_no_initial_response(void)
{
    setup();
    sasl_session *session = session_for(tls13);
    login l = scram_basic("SCRAM-SHA-256", "ALICE", "pencil");
    l.no_initial_response = true;
    CHECK(scram_login(session, &l) == SASL_STEP_SUCCESS);
    CHECK(strcmp(sasl_session_localpart(session), "alice") == 0);
    sasl_session_destroy(session);
}

static void test_scram_wrong_password(void)
{
    setup();
    sasl_session *session = session_for(tls12);
    login l = scram_basic("SCRAM-SHA-256", "alice", "pen");
    CHECK(scram_login(session, &l) == SASL_STEP_FAILURE);
    CHECK(is_failure(session, "not-authorized"));
    CHECK(sasl_session_localpart(session) == NULL);
    /* The client may try again on the same stream. */
    l = scram_basic("SCRAM-SHA-256", "alice", "pencil");
    CHECK(scram_login(session, &l) == SASL_STEP_SUCCESS);
    sasl_session_destroy(session);
}

static void test_scram_plus(void)
{
    for (int type = 0; type < 2; type++) {
        setup();
        sasl_session *session = session_for(tls13);
        login l = scram_basic("SCRAM-SHA-256-PLUS", "alice", "pencil");
        l.cbind = SCRAM_CBIND_REQUIRED;
        l.cbind_name = type == 0 ? "tls-exporter" : "tls-server-end-point";
        l.cbind_data = type == 0 ? exporter_data : endpoint_data;
        l.cbind_len = type == 0 ? sizeof exporter_data : sizeof endpoint_data;
        CHECK(scram_login(session, &l) == SASL_STEP_SUCCESS);
        CHECK(l.server_verified);
        sasl_session_destroy(session);
    }
    setup();
    sasl_session *session = session_for(tls13);
    login l = scram_basic("SCRAM-SHA-512-PLUS", "alice", "pencil");
    l.cbind = SCRAM_CBIND_REQUIRED;
    l.cbind_name = "tls-exporter";
    l.cbind_data = exporter_data;
    l.cbind_len = sizeof exporter_data;
    CHECK(scram_login(session, &l) == SASL_STEP_SUCCESS);
    sasl_session_destroy(session);
}

static void test_scram_plus_mismatch(void)
{
    setup();
    sasl_session *session = session_for(tls13);
    /* The client's TLS view differs (a man in the middle terminated TLS). */
    uint8_t other[32];
    memcpy(other, exporter_data, sizeof other);
    other[31] ^= 1;
    login l = scram_basic("SCRAM-SHA-256-PLUS", "alice", "pencil");
    l.cbind = SCRAM_CBIND_REQUIRED;
    l.cbind_name = "tls-exporter";
    l.cbind_data = other;
    l.cbind_len = sizeof other;
    CHECK(scram_login(session, &l) == SASL_STEP_FAILURE);
    CHECK(is_failure(session, "not-authorized"));
    /* The end-point data sent for the exporter type: also a mismatch. */
    l.cbind_data = endpoint_data;
    l.cbind_len = sizeof endpoint_data;
    CHECK(scram_login(session, &l) == SASL_STEP_FAILURE);
    CHECK(is_failure(session, "not-authorized"));
    /* The right binding data, but c= names another gs2 header than the
     * one client-first carried. */
    l.cbind_data = exporter_data;
    l.cbind_len = sizeof exporter_data;
    l.final_gs2_header = "p=tls-server-end-point,,";
    CHECK(scram_login(session, &l) == SASL_STEP_FAILURE);
    CHECK(is_failure(session, "not-authorized"));
    l.final_gs2_header = NULL;
    CHECK(scram_login(session, &l) == SASL_STEP_SUCCESS);
    sasl_session_destroy(session);
}

static void test_scram_plus_type_unavailable(void)
{
    setup();
    sasl_session *session = session_for(tls12);
    login l = scram_basic("SCRAM-SHA-256-PLUS", "alice", "pencil");
    l.cbind = SCRAM_CBIND_REQUIRED;
    l.cbind_name = "tls-exporter"; /* TLS 1.2: not available */
    l.cbind_data = exporter_data;
    l.cbind_len = sizeof exporter_data;
    CHECK(scram_login(session, &l) == SASL_STEP_FAILURE);
    CHECK(is_failure(session, "not-authorized"));
    l.cbind_name = "tls-unique"; /* not supported at all */
    CHECK(scram_login(session, &l) == SASL_STEP_FAILURE);
    CHECK(is_failure(session, "not-authorized"));
    CHECK(fake.fetches == 0);
    sasl_session_destroy(session);
}

static void test_scram_downgrade(void)
{
    setup();
    sasl_session *session = session_for(tls13);
    /* 'y': the client could bind but believes the server cannot, while
     * -PLUS was offered: someone removed it from the features. */
    login l = scram_basic("SCRAM-SHA-256", "alice", "pencil");
    l.cbind = SCRAM_CBIND_NOT_OFFERED;
    CHECK(scram_login(session, &l) == SASL_STEP_FAILURE);
    CHECK(is_failure(session, "not-authorized"));
    /* p= with a mechanism without -PLUS, and -PLUS without p=. */
    l.cbind = SCRAM_CBIND_REQUIRED;
    l.cbind_name = "tls-exporter";
    l.cbind_data = exporter_data;
    l.cbind_len = sizeof exporter_data;
    CHECK(scram_login(session, &l) == SASL_STEP_FAILURE);
    CHECK(is_failure(session, "not-authorized"));
    l = scram_basic("SCRAM-SHA-256-PLUS", "alice", "pencil");
    CHECK(scram_login(session, &l) == SASL_STEP_FAILURE);
    CHECK(is_failure(session, "not-authorized"));
    CHECK(fake.fetches == 0);
    sasl_session_destroy(session);

    /* Without TLS nothing was offered with -PLUS: 'y' is honest. */
    setup();
    session = session_for(plaintext);
    l = scram_basic("SCRAM-SHA-1", "alice", "pencil");
    l.cbind = SCRAM_CBIND_NOT_OFFERED;
    CHECK(scram_login(session, &l) == SASL_STEP_SUCCESS);
    sasl_session_destroy(session);
    setup();
    session = session_for(plaintext);
    l = scram_basic("SCRAM-SHA-1-PLUS", "alice", "pencil");
    l.cbind = SCRAM_CBIND_REQUIRED;
    l.cbind_name = "tls-exporter";
    CHECK(scram_login(session, &l) == SASL_STEP_FAILURE);
    CHECK(is_failure(session, "invalid-mechanism"));
    sasl_session_destroy(session);
}

/* A client that knows only tls-unique (slixmpp) tries each -PLUS
 * mechanism with it, then falls back with 'y': after a -PLUS attempt on
 * the stream, 'y' is its honest answer, not a downgrade (a man in the
 * middle who strips -PLUS leaves no such attempt). The refused types cost
 * no attempt and no throttle. */
static void test_scram_fallback_after_unsupported_type(void)
{
    setup();
    sasl_session *session = session_for(tls13);
    login plus = scram_basic("SCRAM-SHA-256-PLUS", "alice", "pencil");
    plus.cbind = SCRAM_CBIND_REQUIRED;
    plus.cbind_name = "tls-unique";
    plus.cbind_data = exporter_data;
    plus.cbind_len = sizeof exporter_data;
    for (unsigned i = 0; i < LIMIT_SASL_ATTEMPTS_PER_STREAM + 1; i++) {
        CHECK(scram_login(session, &plus) == SASL_STEP_FAILURE);
        CHECK(is_failure(session, "not-authorized"));
    }
    CHECK(fake.fetches == 0);
    login fallback = scram_basic("SCRAM-SHA-256", "alice", "pencil");
    fallback.cbind = SCRAM_CBIND_NOT_OFFERED;
    CHECK(scram_login(session, &fallback) == SASL_STEP_SUCCESS);
    sasl_session_destroy(session);
}

static void test_unknown_user(void)
{
    setup();
    fake.deferred = true;
    sasl_session *session = session_for(tls12);
    login first = scram_basic("SCRAM-SHA-256", "mallory", "guess");
    CHECK(scram_login(session, &first) == SASL_STEP_FAILURE);
    CHECK(is_failure(session, "not-authorized"));
    login second = scram_basic("SCRAM-SHA-256", "mallory", "other");
    CHECK(scram_login(session, &second) == SASL_STEP_FAILURE);
    CHECK(is_failure(session, "not-authorized"));
    /* Compare s= and i= (the nonces differ). */
    const char *salt_a = strstr(first.server_first, ",s=");
    const char *salt_b = strstr(second.server_first, ",s=");
    CHECK(salt_a != NULL && salt_b != NULL);
    if (salt_a != NULL && salt_b != NULL) {
        size_t len_a = first.server_first_len - (size_t)(salt_a - first.server_first);
        size_t len_b = second.server_first_len - (size_t)(salt_b - second.server_first);
        CHECK(len_a == len_b && memcmp(salt_a, salt_b, len_a) == 0);
        CHECK(strstr(salt_a, ",i=4096") != NULL);
    }
    /* Another unknown name gets another salt. */
    login third = scram_basic("SCRAM-SHA-256", "trudy", "guess");
    CHECK(scram_login(session, &third) == SASL_STEP_FAILURE);
    const char *salt_c = strstr(third.server_first, ",s=");
    CHECK(salt_c != NULL && salt_a != NULL && strcmp(salt_c, salt_a) != 0);
    sasl_session_destroy(session);

    /* A different server secret (another node with another secret) would
     * give another salt: the salt is the secret's. */
    setup();
    session = session_for(tls12);
    login fourth = scram_basic("SCRAM-SHA-256", "mallory", "guess");
    CHECK(scram_login(session, &fourth) == SASL_STEP_FAILURE);
    const char *salt_d = strstr(fourth.server_first, ",s=");
    CHECK(salt_d != NULL && salt_a != NULL && strcmp(salt_d, salt_a) != 0);
    sasl_session_destroy(session);
}

static void test_authzid(void)
{
    setup();
    sasl_session *session = session_for(tls12);
    login l = scram_basic("SCRAM-SHA-256", "alice", "pencil");
    l.authzid = "bob@" DOMAIN;
    CHECK(scram_login(session, &l) == SASL_STEP_FAILURE);
    CHECK(is_failure(session, "invalid-authzid"));
    l.authzid = "alice@other.example";
    CHECK(scram_login(session, &l) == SASL_STEP_FAILURE);
    CHECK(is_failure(session, "invalid-authzid"));
    l.authzid = "alice@" DOMAIN "/phone";
    CHECK(scram_login(session, &l) == SASL_STEP_FAILURE);
    CHECK(is_failure(session, "invalid-authzid"));
    CHECK(fake.fetches == 0);
    l.authzid = "Alice@EXAMPLE.com";
    CHECK(scram_login(session, &l) == SASL_STEP_SUCCESS);
    sasl_session_destroy(session);

    setup();
    session = session_for(tls12);
    CHECK(plain_login(session, "bob@" DOMAIN, "alice", "pencil") == SASL_STEP_FAILURE);
    CHECK(is_failure(session, "invalid-authzid"));
    CHECK(plain_login(session, "alice@" DOMAIN, "alice", "pencil") == SASL_STEP_SUCCESS);
    sasl_session_destroy(session);
}

/* ----------------------------------------------------------------- PLAIN */

static void test_plain(void)
{
    setup();
    sasl_session *session = session_for(tls12);
    CHECK(plain_login(session, "", "alice", "wrong") == SASL_STEP_FAILURE);
    CHECK(is_failure(session, "not-authorized"));
    CHECK(plain_login(session, "", "nobody", "pencil") == SASL_STEP_FAILURE);
    CHECK(is_failure(session, "not-authorized"));
    CHECK(plain_login(session, "", "alice", "pencil") == SASL_STEP_SUCCESS);
    CHECK(strcmp(sasl_session_localpart(session), "alice") == 0);
    CHECK(sasl_session_output(session).len == strlen("<success xmlns='" SASL_NAMESPACE "'/>"));
    sasl_session_destroy(session);

    /* Deferred completions, and a user with only a SHA-1 credential (the
     * search falls back from SHA-256). */
    setup();
    fake.deferred = true;
    CHECK(fake_storage_add(&fake, "old", "secret", every_hash, 1, 4096));
    session = session_for(tls12);
    CHECK(plain_login(session, "", "old", "secret") == SASL_STEP_SUCCESS);
    CHECK(fake.fetches == 2);
    sasl_session_destroy(session);

    /* Malformed PLAIN messages. */
    setup();
    session = session_for(tls12);
    CHECK(send_auth(session, "PLAIN", "alice", 5) == SASL_STEP_FAILURE);
    CHECK(is_failure(session, "malformed-request"));
    CHECK(send_auth(session, "PLAIN", "\0alice\0", 7) == SASL_STEP_FAILURE);
    CHECK(is_failure(session, "malformed-request"));
    CHECK(send_auth(session, "PLAIN", "\0alice\0pw\0x", 11) == SASL_STEP_FAILURE);
    CHECK(is_failure(session, "malformed-request"));
    sasl_session_destroy(session);
}

static void test_plain_plaintext(void)
{
    setup();
    sasl_session *session = session_for(plaintext);
    CHECK(plain_login(session, "", "alice", "pencil") == SASL_STEP_FAILURE);
    CHECK(is_failure(session, "encryption-required"));
    CHECK(fake.fetches == 0);
    sasl_session_destroy(session);
    session = session_for((stream_kind){.plaintext_allowed = true});
    CHECK(plain_login(session, "", "alice", "pencil") == SASL_STEP_SUCCESS);
    sasl_session_destroy(session);
}

/* ------------------------------------------------------------- ANONYMOUS */

static void test_anonymous(void)
{
    setup();
    sasl_session *session = session_for((stream_kind){.tls = true, .anonymous = true});
    CHECK(sasl_session_auth(session, "ANONYMOUS", 9, "", 0) == SASL_STEP_SUCCESS);
    const char *first = sasl_session_localpart(session);
    CHECK(first != NULL && strlen(first) == 24);
    char saved[32];
    snprintf(saved, sizeof saved, "%s", first != NULL ? first : "");
    sasl_session_destroy(session);
    session = session_for((stream_kind){.tls = true, .anonymous = true});
    CHECK(sasl_session_auth(session, "ANONYMOUS", 9, "dHJhY2U=", 8) == SASL_STEP_SUCCESS);
    CHECK(strcmp(sasl_session_localpart(session), saved) != 0);
    CHECK(sasl_session_mechanism(session) == SASL_MECHANISM_ANONYMOUS);
    sasl_session_destroy(session);

    session = session_for(tls12);
    CHECK(sasl_session_auth(session, "ANONYMOUS", 9, "", 0) == SASL_STEP_FAILURE);
    CHECK(is_failure(session, "invalid-mechanism"));
    CHECK(sasl_session_localpart(session) == NULL);
    sasl_session_destroy(session);
}

/* ------------------------------------------------------- protocol errors */

static void test_bad_base64(void)
{
    static const char *const bad[] = {"abc", "ab!=", "YW Jj", "YWJj\n", "====", "Y===", "*"};
    setup();
    sasl_session *session = session_for(tls12);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sasl_step step = sasl_session_auth(session, "SCRAM-SHA-1", 11, bad[i], strlen(bad[i]));
        CHECK(step == SASL_STEP_FAILURE || step == SASL_STEP_FAILURE_CLOSE);
        CHECK(is_failure(session, "incorrect-encoding"));
    }
    sasl_session_destroy(session);

    setup();
    session = session_for(tls12);
    CHECK(sasl_session_auth(session, "PLAIN", 5, "", 0) == SASL_STEP_CHALLENGE);
    CHECK(sasl_session_response(session, "a=b=", 4) == SASL_STEP_FAILURE);
    CHECK(is_failure(session, "incorrect-encoding"));
    /* Over the message bound: malformed-request. */
    static char huge[8192];
    memset(huge, 'A', sizeof huge);
    CHECK(sasl_session_auth(session, "PLAIN", 5, huge, sizeof huge) == SASL_STEP_FAILURE);
    CHECK(is_failure(session, "malformed-request"));
    sasl_session_destroy(session);
}

static void test_invalid_mechanism(void)
{
    setup();
    sasl_session *session = session_for(plaintext);
    CHECK(sasl_session_auth(session, "scram-sha-1", 11, "=", 1) == SASL_STEP_FAILURE);
    CHECK(is_failure(session, "invalid-mechanism"));
    CHECK(sasl_session_auth(session, "DIGEST-MD5", 10, "=", 1) == SASL_STEP_FAILURE);
    CHECK(is_failure(session, "invalid-mechanism"));
    CHECK(sasl_session_auth(session, "SCRAM-SHA-1-PLUS", 16, "=", 1) == SASL_STEP_FAILURE);
    CHECK(is_failure(session, "invalid-mechanism"));
    /* The fifth failure on one stream: the stream is to be closed. */
    CHECK(sasl_session_auth(session, "X", 1, "=", 1) == SASL_STEP_FAILURE);
    CHECK(sasl_session_auth(session, "X", 1, "=", 1) == SASL_STEP_FAILURE_CLOSE);
    sasl_session_destroy(session);
}

static void test_abort(void)
{
    setup();
    sasl_session *session = session_for(tls12);
    const char first[] = "n,,n=alice,r=abcdefghijklmnop";
    CHECK(send_auth(session, "SCRAM-SHA-256", first, sizeof first - 1) == SASL_STEP_CHALLENGE);
    CHECK(sasl_session_abort(session) == SASL_STEP_FAILURE);
    CHECK(is_failure(session, "aborted"));
    /* The exchange is gone: a response now is unexpected. */
    CHECK(send_response(session, "c=biws", 6) == SASL_STEP_FAILURE);
    CHECK(is_failure(session, "malformed-request"));
    login l = scram_basic("SCRAM-SHA-256", "alice", "pencil");
    CHECK(scram_login(session, &l) == SASL_STEP_SUCCESS);
    sasl_session_destroy(session);

    /* Abort while the fetch is in flight: its completion is dropped. */
    setup();
    fake.deferred = true;
    session = session_for(tls12);
    CHECK(sasl_session_auth(session, "SCRAM-SHA-256", 13, "biwsbj1hbGljZSxyPWFiY2Q=", 24) ==
          SASL_STEP_PENDING);
    CHECK(sasl_session_abort(session) == SASL_STEP_FAILURE);
    CHECK(is_failure(session, "aborted"));
    CHECK(fake_storage_deliver(&fake) == 1);
    CHECK(ready_calls == 0);
    l = scram_basic("SCRAM-SHA-256", "alice", "pencil");
    CHECK(scram_login(session, &l) == SASL_STEP_SUCCESS);
    CHECK(ready_calls == 1);
    sasl_session_destroy(session);
}

static void test_unexpected_response(void)
{
    setup();
    sasl_session *session = session_for(tls12);
    CHECK(sasl_session_response(session, "=", 1) == SASL_STEP_FAILURE);
    CHECK(is_failure(session, "malformed-request"));
    /* A second <auth/> in the middle of an exchange. */
    const char first[] = "n,,n=alice,r=abcdefghijklmnop";
    CHECK(send_auth(session, "SCRAM-SHA-256", first, sizeof first - 1) == SASL_STEP_CHALLENGE);
    CHECK(send_auth(session, "SCRAM-SHA-256", first, sizeof first - 1) == SASL_STEP_FAILURE);
    CHECK(is_failure(session, "malformed-request"));
    /* Garbage as client-final, and a client-final with another nonce. */
    CHECK(send_auth(session, "SCRAM-SHA-256", first, sizeof first - 1) == SASL_STEP_CHALLENGE);
    CHECK(send_response(session, "hello", 5) == SASL_STEP_FAILURE);
    CHECK(is_failure(session, "malformed-request"));
    sasl_session_destroy(session);

    /* After success, SASL input is refused and the session stays
     * authenticated. */
    setup();
    session = session_for(tls12);
    CHECK(plain_login(session, "", "alice", "pencil") == SASL_STEP_SUCCESS);
    CHECK(sasl_session_response(session, "=", 1) == SASL_STEP_FAILURE);
    CHECK(is_failure(session, "malformed-request"));
    CHECK(sasl_session_localpart(session) != NULL);
    sasl_session_destroy(session);
}

static void test_storage_errors(void)
{
    setup();
    fake.refuse = STORAGE_BUSY;
    sasl_session *session = session_for(tls12);
    CHECK(plain_login(session, "", "alice", "pencil") == SASL_STEP_FAILURE);
    CHECK(is_failure(session, "temporary-auth-failure"));
    fake.refuse = STORAGE_OK;
    fake.complete = STORAGE_UNAVAILABLE;
    fake.deferred = true;
    login l = scram_basic("SCRAM-SHA-1", "alice", "pencil");
    CHECK(scram_login(session, &l) == SASL_STEP_FAILURE);
    CHECK(is_failure(session, "temporary-auth-failure"));
    sasl_session_destroy(session);

    /* The default fetch hook (none set) fails softly. */
    sasl_server_init(&server);
    server.now_ms = fake_now;
    session = session_for(tls12);
    CHECK(plain_login(session, "", "alice", "pencil") == SASL_STEP_FAILURE);
    CHECK(is_failure(session, "temporary-auth-failure"));
    sasl_session_destroy(session);
}

static void test_destroy_in_flight(void)
{
    setup();
    fake.deferred = true;
    sasl_session *session = session_for(tls12);
    CHECK(plain_raw(session, "alice", "pencil") == SASL_STEP_PENDING);
    /* Abort and start again: two fetches in flight, the bound. */
    CHECK(sasl_session_abort(session) == SASL_STEP_FAILURE);
    CHECK(plain_raw(session, "alice", "pencil") == SASL_STEP_PENDING);
    CHECK(sasl_session_abort(session) == SASL_STEP_FAILURE);
    CHECK(plain_raw(session, "alice", "pencil") == SASL_STEP_FAILURE);
    CHECK(is_failure(session, "temporary-auth-failure"));
    CHECK(fake.pending_count == 2);
    sasl_session_destroy(session);
    /* The session lives until its completions come (ASan checks). */
    CHECK(fake_storage_deliver(&fake) == 2);
    CHECK(ready_calls == 0);
}

static void test_username_preparation(void)
{
    char out[LIMIT_STORAGE_JID_PART_BYTES_MAX + 1];
    size_t out_len = 0;
    CHECK(sasl_prepare_username_ascii("Alice.B-1", 9, out, sizeof out, &out_len));
    CHECK(out_len == 9 && strcmp(out, "alice.b-1") == 0);
    CHECK(!sasl_prepare_username_ascii("", 0, out, sizeof out, &out_len));
    CHECK(!sasl_prepare_username_ascii("a b", 3, out, sizeof out, &out_len));
    CHECK(!sasl_prepare_username_ascii("a@b", 3, out, sizeof out, &out_len));
    CHECK(!sasl_prepare_username_ascii("a:b", 3, out, sizeof out, &out_len));
    CHECK(!sasl_prepare_username_ascii("\xc3\xa9", 2, out, sizeof out, &out_len));

    /* A refused name is not-authorized, without a fetch. */
    setup();
    sasl_session *session = session_for(tls12);
    CHECK(plain_login(session, "", "a<b", "pencil") == SASL_STEP_FAILURE);
    CHECK(is_failure(session, "not-authorized"));
    CHECK(fake.fetches == 0);
    sasl_session_destroy(session);
}

/* ------------------------------------------------------------- throttling */

static uint64_t last_delay;
static char last_condition[64];

static sasl_step plain_attempt(uint32_t address, const char *username, const char *password)
{
    default_peer = peer_v4(address);
    sasl_stream_params params = params_of(tls12);
    sasl_session *session = sasl_session_create(&server, &params, on_ready, NULL);
    sasl_step step = plain_login(session, "", username, password);
    last_delay = sasl_session_delay_ms(session);
    snprintf(last_condition, sizeof last_condition, "%s",
             sasl_condition_name(sasl_session_condition(session)));
    sasl_session_destroy(session);
    return step;
}

static void test_throttle_delays(void)
{
    setup();
    rx_log_set_hook(log_capture, NULL);
    auth_throttle *throttle = auth_throttle_create(0, 0);
    CHECK(throttle != NULL);
    server.throttle = throttle;

    /* One address guessing alice's password, waiting out each delay as a
     * sequential client does. The address cap (60 s) is the larger. */
    static const uint64_t expected[] = {0, 0, 1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000};
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        CHECK(plain_attempt(0x0a000001, "alice", "wrong") == SASL_STEP_FAILURE);
        CHECK(strcmp(last_condition, "not-authorized") == 0);
        CHECK(last_delay == expected[i]);
        clock_ms += last_delay;
    }
    CHECK(logged("held back 1000 ms"));
    CHECK(logged("alice@" DOMAIN " from 10.0.0.1"));

    /* During a delay, another connection from the address is refused
     * before its password is looked at, even with the right password. */
    CHECK(plain_attempt(0x0a000001, "alice", "wrong") == SASL_STEP_FAILURE);
    unsigned fetches = fake.fetches;
    CHECK(plain_attempt(0x0a000001, "bob", "anything") == SASL_STEP_FAILURE);
    CHECK(strcmp(last_condition, "temporary-auth-failure") == 0);
    CHECK(fake.fetches == fetches);
    CHECK(logged("refused (temporary-auth-failure)"));

    /* The account is in its delay too (capped at 15 s): another address is
     * refused for alice until it passes. */
    CHECK(plain_attempt(0x0a000002, "alice", "pencil") == SASL_STEP_FAILURE);
    CHECK(strcmp(last_condition, "temporary-auth-failure") == 0);
    clock_ms += LIMIT_AUTH_THROTTLE_ACCOUNT_DELAY_MS_MAX;
    CHECK(plain_attempt(0x0a000002, "alice", "pencil") == SASL_STEP_SUCCESS);

    /* Success reset alice's counter: from a fresh address, her next
     * failures are free again. */
    CHECK(plain_attempt(0x0a000003, "alice", "wrong") == SASL_STEP_FAILURE);
    CHECK(last_delay == 0);
    CHECK(plain_attempt(0x0a000004, "alice", "wrong") == SASL_STEP_FAILURE);
    CHECK(last_delay == 0);
    CHECK(plain_attempt(0x0a000005, "alice", "wrong") == SASL_STEP_FAILURE);
    CHECK(last_delay == 1000);

    /* Forgetting: long after the last failure the count starts over. */
    clock_ms += LIMIT_AUTH_THROTTLE_FORGET_MS;
    CHECK(plain_attempt(0x0a000001, "carol", "x") == SASL_STEP_FAILURE);
    CHECK(last_delay == 0);

    /* Unknown users count like known ones, over SCRAM too. */
    login l = scram_basic("SCRAM-SHA-1", "ghost", "x");
    for (int i = 0; i < 3; i++) {
        default_peer = peer_v4(0x0d000000 + (uint32_t)i);
        sasl_stream_params params = params_of(tls12);
        sasl_session *session = sasl_session_create(&server, &params, on_ready, NULL);
        CHECK(scram_login(session, &l) == SASL_STEP_FAILURE);
        CHECK(sasl_session_delay_ms(session) == (i < 2 ? 0u : 1000u));
        sasl_session_destroy(session);
    }
    auth_throttle_destroy(throttle);
    rx_log_set_hook(NULL, NULL);
}

static void test_throttle_account_cap(void)
{
    CHECK(auth_throttle_delay_ms(AUTH_THROTTLE_ACCOUNT, 1) == 0);
    CHECK(auth_throttle_delay_ms(AUTH_THROTTLE_ACCOUNT, 2) == 0);
    CHECK(auth_throttle_delay_ms(AUTH_THROTTLE_ACCOUNT, 3) == 1000);
    CHECK(auth_throttle_delay_ms(AUTH_THROTTLE_ACCOUNT, 6) == 8000);
    CHECK(auth_throttle_delay_ms(AUTH_THROTTLE_ACCOUNT, 7) == 15000);
    CHECK(auth_throttle_delay_ms(AUTH_THROTTLE_ACCOUNT, 4000000000u) == 15000);
    CHECK(auth_throttle_delay_ms(AUTH_THROTTLE_ADDRESS, 9) == 60000);
    CHECK(auth_throttle_delay_ms(AUTH_THROTTLE_ADDRESS, 100) == 60000);

    /* Guesses spread over many addresses: the account delay governs. */
    setup();
    auth_throttle *throttle = auth_throttle_create(0, 0);
    server.throttle = throttle;
    rx_log_set_hook(log_capture, NULL);
    for (uint32_t i = 0; i < 8; i++) {
        CHECK(plain_attempt(0x0b000000 + i, "alice", "wrong") == SASL_STEP_FAILURE);
        CHECK(last_delay == auth_throttle_delay_ms(AUTH_THROTTLE_ACCOUNT, i + 1));
        clock_ms += last_delay;
    }
    CHECK(last_delay == 15000);
    rx_log_set_hook(NULL, NULL);
    auth_throttle_destroy(throttle);
}

static void test_throttle_table_bounds(void)
{
    auth_throttle *throttle = auth_throttle_create(16, 8);
    CHECK(throttle != NULL);
    auth_throttle_stats stats;
    auth_throttle_get_stats(throttle, &stats);
    CHECK(stats.capacity[AUTH_THROTTLE_ACCOUNT] == 16);
    CHECK(stats.capacity[AUTH_THROTTLE_ADDRESS] == 8);

    uint64_t now = 5000;
    uint64_t victim = auth_throttle_account_key(throttle, "victim", 6, DOMAIN, strlen(DOMAIN));
    for (int i = 0; i < 3; i++)
        auth_throttle_fail(throttle, AUTH_THROTTLE_ACCOUNT, victim, now);
    CHECK(auth_throttle_wait_ms(throttle, AUTH_THROTTLE_ACCOUNT, victim, now) == 1000);

    /* Flood with fresh names, each failing once, each later than the
     * victim's: the table never holds more than its capacity, and the
     * victim (least recently failed of its set) is evicted. */
    char name[32];
    for (int i = 0; i < 200; i++) {
        snprintf(name, sizeof name, "user%d", i);
        uint64_t key =
            auth_throttle_account_key(throttle, name, strlen(name), DOMAIN, strlen(DOMAIN));
        auth_throttle_fail(throttle, AUTH_THROTTLE_ACCOUNT, key, now + 1 + (uint64_t)i);
        auth_throttle_get_stats(throttle, &stats);
        CHECK(stats.entries[AUTH_THROTTLE_ACCOUNT] <= 16);
    }
    auth_throttle_get_stats(throttle, &stats);
    CHECK(stats.entries[AUTH_THROTTLE_ACCOUNT] == 16);
    CHECK(stats.evictions == 201 - 16);
    CHECK(stats.failures == 203);
    CHECK(auth_throttle_wait_ms(throttle, AUTH_THROTTLE_ACCOUNT, victim, now) == 0);

    /* Addresses: an IPv6 /64 is one key, an IPv4-mapped address is its
     * IPv4 address, other families have none. */
    struct sockaddr_in6 a = {.sin6_family = AF_INET6}, b = a, c = a, mapped = a;
    inet_pton(AF_INET6, "2001:db8:1:2::1", &a.sin6_addr);
    inet_pton(AF_INET6, "2001:db8:1:2:ffff::9", &b.sin6_addr);
    inet_pton(AF_INET6, "2001:db8:1:3::1", &c.sin6_addr);
    inet_pton(AF_INET6, "::ffff:10.0.0.1", &mapped.sin6_addr);
    struct sockaddr_in v4 = peer_v4(0x0a000001);
    struct sockaddr unix_like = {.sa_family = AF_UNIX};
    uint64_t key_a = auth_throttle_address_key(throttle, (struct sockaddr *)&a);
    CHECK(key_a != 0);
    CHECK(key_a == auth_throttle_address_key(throttle, (struct sockaddr *)&b));
    CHECK(key_a != auth_throttle_address_key(throttle, (struct sockaddr *)&c));
    CHECK(auth_throttle_address_key(throttle, (struct sockaddr *)&mapped) ==
          auth_throttle_address_key(throttle, (struct sockaddr *)&v4));
    CHECK(auth_throttle_address_key(throttle, &unix_like) == 0);
    CHECK(auth_throttle_address_key(throttle, NULL) == 0);
    auth_throttle_verdict verdict = auth_throttle_fail(throttle, AUTH_THROTTLE_ADDRESS, 0, now);
    CHECK(verdict.failures == 0 && verdict.delay_ms == 0);

    /* The address table's bound, with one set of 8. */
    for (uint32_t i = 0; i < 20; i++) {
        struct sockaddr_in address = peer_v4(0x0c000000 + i);
        uint64_t key = auth_throttle_address_key(throttle, (struct sockaddr *)&address);
        verdict = auth_throttle_fail(throttle, AUTH_THROTTLE_ADDRESS, key, now + i);
        CHECK(verdict.evicted == (i >= 8));
    }
    auth_throttle_get_stats(throttle, &stats);
    CHECK(stats.entries[AUTH_THROTTLE_ADDRESS] == 8);
    auth_throttle_destroy(throttle);

    /* The defaults, and a request over the limit, give the limits. */
    throttle = auth_throttle_create(0, 1000000);
    CHECK(throttle != NULL);
    auth_throttle_get_stats(throttle, &stats);
    CHECK(stats.capacity[AUTH_THROTTLE_ACCOUNT] == LIMIT_AUTH_THROTTLE_ACCOUNTS);
    CHECK(stats.capacity[AUTH_THROTTLE_ADDRESS] == LIMIT_AUTH_THROTTLE_ADDRESSES);
    auth_throttle_destroy(throttle);
}

/* ---------------------------------------------------------- real storage */

static void real_done(void *context, const storage_result *result)
{
    *(storage_status *)context = result->status;
}

static sasl_step real_settle(storage_waiter *waiter, sasl_step step)
{
    for (unsigned round = 0; round < 50 && step == SASL_STEP_PENDING; round++) {
        unsigned before = ready_calls;
        storage_waiter_run(waiter, 200);
        if (ready_calls > before)
            step = ready_step;
    }
    return step;
}

static void test_sqlite(void)
{
    setup();
    char directory[] = "/tmp/starling-sasl-XXXXXX";
    CHECK(mkdtemp(directory) != NULL);
    char path[128];
    snprintf(path, sizeof path, "%s/starling.db", directory);
    storage_option options[] = {{"path", path}};
    char error[256];
    storage *store = storage_create("sqlite", options, 1, NULL, error, sizeof error);
    CHECK(store != NULL);
    if (store == NULL)
        return;
    CHECK(storage_open(store, error, sizeof error) == STORAGE_OK);
    storage_waiter *waiter = storage_waiter_create();
    storage_waiter_attach(waiter);

    /* The user, as starlingctl creates one: a random salt per hash,
     * LIMIT_SCRAM_STORED_ITERATIONS, only StoredKey and ServerKey kept. */
    fake_storage derive;
    memset(&derive, 0, sizeof derive);
    CHECK(
        fake_storage_add(&derive, "juliet", "r0meo", every_hash, 3, LIMIT_SCRAM_STORED_ITERATIONS));
    storage_status created = STORAGE_ERROR;
    CHECK(storage_user_create(store, DOMAIN, "juliet", derive.users[0].credentials, 3, real_done,
                              &created) == STORAGE_OK);
    storage_waiter_run(waiter, 5000);
    CHECK(created == STORAGE_OK);

    server.fetch = sasl_fetch_storage;
    server.fetch_context = store;
    sasl_session *session = session_for(tls13);
    char nonce[64], first[512], text[TEXT_BYTES];
    size_t nonce_len = 0, first_len = 0, gs2_len = 0;
    CHECK(scram_nonce_make(18, nonce, sizeof nonce, &nonce_len) == SCRAM_OK);
    scram_client_first_params params = {.cbind = SCRAM_CBIND_REQUIRED,
                                        .cbind_name = "tls-exporter",
                                        .username = "juliet",
                                        .username_len = 6,
                                        .nonce = nonce,
                                        .nonce_len = nonce_len};
    CHECK(scram_client_first_build(&params, first, sizeof first, &first_len, &gs2_len) == SCRAM_OK);
    size_t text_len = base64(first, first_len, text);
    sasl_step step = sasl_session_auth(session, "SCRAM-SHA-256-PLUS", 18, text, text_len);
    CHECK(step == SASL_STEP_PENDING);
    step = real_settle(waiter, step);
    CHECK(step == SASL_STEP_CHALLENGE);
    char server_first[1024];
    size_t server_first_len = 0;
    CHECK(element_data(session, "challenge", server_first, &server_first_len));
    scram_server_first parsed;
    CHECK(scram_server_first_parse(server_first, server_first_len, (scram_slice){nonce, nonce_len},
                                   &parsed) == SCRAM_OK);
    scram_keys keys;
    CHECK(scram_keys_derive(SCRAM_HASH_SHA256, "r0meo", 5, parsed.salt, parsed.salt_len,
                            parsed.iterations, &keys) == SCRAM_OK);
    char final[1024];
    size_t final_len = 0, without_proof_len = 0;
    CHECK(scram_client_final_build(&keys, (scram_slice){first, gs2_len}, exporter_data,
                                   sizeof exporter_data, parsed.nonce,
                                   (scram_slice){first + gs2_len, first_len - gs2_len},
                                   (scram_slice){server_first, server_first_len}, final,
                                   sizeof final, &final_len, &without_proof_len) == SCRAM_OK);
    text_len = base64(final, final_len, text);
    CHECK(sasl_session_response(session, text, text_len) == SASL_STEP_SUCCESS);
    CHECK(sasl_session_localpart(session) != NULL &&
          strcmp(sasl_session_localpart(session), "juliet") == 0);
    sasl_session_destroy(session);

    /* PLAIN, right and wrong, and an unknown user, on the same database. */
    session = session_for(tls13);
    CHECK(real_settle(waiter, plain_login(session, "", "juliet", "r0meo")) == SASL_STEP_SUCCESS);
    sasl_session_destroy(session);
    session = session_for(tls13);
    CHECK(real_settle(waiter, plain_login(session, "", "juliet", "romeo")) == SASL_STEP_FAILURE);
    CHECK(is_failure(session, "not-authorized"));
    CHECK(real_settle(waiter, plain_login(session, "", "nurse", "r0meo")) == SASL_STEP_FAILURE);
    CHECK(is_failure(session, "not-authorized"));
    sasl_session_destroy(session);

    storage_waiter_attach(NULL);
    storage_close(store);
    storage_waiter_destroy(waiter);
    unlink(path);
    char wal[160];
    snprintf(wal, sizeof wal, "%s-wal", path);
    unlink(wal);
    snprintf(wal, sizeof wal, "%s-shm", path);
    unlink(wal);
    rmdir(directory);
}

int main(int argc, char **argv)
{
    const char *filter = argc > 1 ? argv[1] : NULL;
    harness_run("features", test_features, filter);
    harness_run("scram_inline", test_scram_inline, filter);
    harness_run("scram_deferred", test_scram_deferred, filter);
    harness_run("scram_case_and_no_initial_response", test_scram_case_and_no_initial_response,
                filter);
    harness_run("scram_wrong_password", test_scram_wrong_password, filter);
    harness_run("scram_plus", test_scram_plus, filter);
    harness_run("scram_plus_mismatch", test_scram_plus_mismatch, filter);
    harness_run("scram_plus_type_unavailable", test_scram_plus_type_unavailable, filter);
    harness_run("scram_downgrade", test_scram_downgrade, filter);
    harness_run("scram_fallback_after_unsupported_type", test_scram_fallback_after_unsupported_type,
                filter);
    harness_run("unknown_user", test_unknown_user, filter);
    harness_run("authzid", test_authzid, filter);
    harness_run("plain", test_plain, filter);
    harness_run("plain_plaintext", test_plain_plaintext, filter);
    harness_run("anonymous", test_anonymous, filter);
    harness_run("bad_base64", test_bad_base64, filter);
    harness_run("invalid_mechanism", test_invalid_mechanism, filter);
    harness_run("abort", test_abort, filter);
    harness_run("unexpected_response", test_unexpected_response, filter);
    harness_run("storage_errors", test_storage_errors, filter);
    harness_run("destroy_in_flight", test_destroy_in_flight, filter);
    harness_run("username_preparation", test_username_preparation, filter);
    harness_run("throttle_delays", test_throttle_delays, filter);
    harness_run("throttle_account_cap", test_throttle_account_cap, filter);
    harness_run("throttle_table_bounds", test_throttle_table_bounds, filter);
    harness_run("sqlite", test_sqlite, filter);
    return harness_finish();
}
