/*
 * sasl.c: the SASL exchange state machine of a client stream.
 *
 * A session moves IDLE -> (INITIAL) -> FETCHING -> SCRAM_FINAL -> DONE for
 * SCRAM, IDLE -> (INITIAL) -> FETCHING -> DONE for PLAIN, IDLE -> DONE for
 * ANONYMOUS; every failure and <abort/> goes back to IDLE, where the client
 * may try again (LIMIT_SASL_ATTEMPTS_PER_STREAM times in all).
 *
 * A credential fetch is tracked by a ticket (one of
 * LIMIT_SASL_FETCHES_IN_FLIGHT in the session), the callback context
 * handed to storage. An abort or a second attempt leaves the ticket in
 * flight but no longer current: its completion is dropped. A destroyed
 * session stays allocated until its last ticket completes, so a
 * completion never touches freed memory. Test doubles may complete a fetch
 * inside the fetch call; in_call turns that into the call's return value
 * instead of an on_ready callback.
 *
 * Secrets (a PLAIN password, the fetched keys) are wiped as soon as the
 * attempt ends, and on free.
 */
#include "server/xmpp/sasl.h"

#include <arpa/inet.h>
#include <assert.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/base64.h>
#include <openssl/crypto.h>
#include <openssl/digest.h>
#include <openssl/hmac.h>
#include <openssl/mem.h>
#include <openssl/rand.h>

#include "server/runtime/rx.h"

/* Base64 length of n bytes (without a NUL). */
#define BASE64_LENGTH(n) (4u * (((n) + 2u) / 3u))

/* server-first: "r=" nonce ",s=" salt ",i=" count. */
#define SERVER_FIRST_BYTES_MAX                                                                     \
    (2u + LIMIT_SCRAM_NONCE_BYTES_MAX + 3u + BASE64_LENGTH(LIMIT_SCRAM_SALT_BYTES_MAX) + 3u + 10u)

/* The longest element: a challenge carrying server-first, with its tags. */
#define OUTPUT_BYTES_MAX (128u + BASE64_LENGTH(SERVER_FIRST_BYTES_MAX))

/* Random bytes of the server's part of a SCRAM nonce (24 characters). */
#define SERVER_NONCE_RANDOM_BYTES 18u

/* Random bytes of an ANONYMOUS localpart (hex: twice as many characters). */
#define ANONYMOUS_RANDOM_BYTES 12u

/* Characters of a user name in a log line before it is cut. */
#define LOG_NAME_CHARS 64

typedef enum session_state {
    STATE_IDLE = 0,    /* waiting for <auth/> */
    STATE_INITIAL,     /* sent an empty challenge for the initial response */
    STATE_FETCHING,    /* a credential fetch is in flight */
    STATE_SCRAM_FINAL, /* server-first sent, waiting for client-final */
    STATE_DONE,        /* authenticated */
} session_state;

typedef struct fetch_ticket {
    sasl_session *session;
    bool in_use;
    bool current; /* the session still waits for this fetch */
} fetch_ticket;

/* The PLAIN credential search order: the user may hold any subset. */
static const scram_hash plain_hashes[] = {SCRAM_HASH_SHA256, SCRAM_HASH_SHA1, SCRAM_HASH_SHA512};
#define PLAIN_HASH_COUNT (sizeof plain_hashes / sizeof plain_hashes[0])

struct sasl_session {
    sasl_server *server;
    sasl_ready_fn *on_ready;
    void *context;
    const char *domain;
    size_t domain_len;
    bool tls;
    bool plaintext_allowed;
    bool anonymous;
    uint8_t cbind_data[SASL_CBIND_TYPE_COUNT][SASL_CBIND_DATA_BYTES_MAX];
    size_t cbind_data_len[SASL_CBIND_TYPE_COUNT];
    struct sockaddr_storage peer;
    bool has_peer;
    uint64_t address_key;

    session_state state;
    sasl_mechanism mechanism;
    bool destroyed;
    bool in_call;
    bool inline_done;
    sasl_step inline_step;
    unsigned attempts_failed;
    /* A -PLUS attempt on this stream named a channel binding type the
     * stream does not offer (tls-unique, which TLS 1.3 lacks): a later
     * "y" is then the client's honest fallback, not a downgrade. */
    bool cbind_type_refused;
    fetch_ticket tickets[LIMIT_SASL_FETCHES_IN_FLIGHT];
    unsigned fetches_in_flight;

    char localpart[LIMIT_STORAGE_JID_PART_BYTES_MAX + 1];
    size_t localpart_len;
    uint64_t account_key;
    storage_credential credential;
    bool unknown_user;
    unsigned plain_hash_index;

    union {
        struct {
            char client_first[LIMIT_SASL_MESSAGE_BYTES_MAX];
            size_t client_first_len;
            size_t gs2_header_len;
            size_t client_nonce_offset;
            size_t client_nonce_len;
            int cbind_type; /* -1: none */
            char server_first[SERVER_FIRST_BYTES_MAX];
            size_t server_first_len;
            size_t nonce_len; /* the whole nonce, at server_first + 2 */
        } scram;
        struct {
            char password[LIMIT_SASL_MESSAGE_BYTES_MAX];
            size_t password_len;
        } plain;
    } exchange;

    char output[OUTPUT_BYTES_MAX];
    size_t output_len;
    uint64_t delay_ms;
    sasl_condition condition;
};

/* ------------------------------------------------------------------ names */

static const char *const mechanism_names[SASL_MECHANISM_COUNT] = {
    "SCRAM-SHA-512-PLUS",
    "SCRAM-SHA-256-PLUS",
    "SCRAM-SHA-1-PLUS",
    "SCRAM-SHA-512",
    "SCRAM-SHA-256",
    "SCRAM-SHA-1",
    "PLAIN",
    "ANONYMOUS",
};

const char *sasl_mechanism_name(sasl_mechanism mechanism)
{
    return mechanism < SASL_MECHANISM_COUNT ? mechanism_names[mechanism] : "";
}

static const char *const cbind_type_names[SASL_CBIND_TYPE_COUNT] = {"tls-exporter",
                                                                    "tls-server-end-point"};

const char *sasl_cbind_type_name(sasl_cbind_type type)
{
    return type < SASL_CBIND_TYPE_COUNT ? cbind_type_names[type] : "";
}

static const char *const condition_names[] = {
    "",
    "aborted",
    "account-disabled",
    "credentials-expired",
    "encryption-required",
    "incorrect-encoding",
    "invalid-authzid",
    "invalid-mechanism",
    "malformed-request",
    "mechanism-too-weak",
    "not-authorized",
    "temporary-auth-failure",
};

const char *sasl_condition_name(sasl_condition condition)
{
    if ((size_t)condition >= sizeof condition_names / sizeof condition_names[0])
        return "";
    return condition_names[condition];
}

static bool mechanism_is_scram(sasl_mechanism mechanism)
{
    return mechanism <= SASL_MECHANISM_SCRAM_SHA_1;
}

static bool mechanism_is_plus(sasl_mechanism mechanism)
{
    return mechanism <= SASL_MECHANISM_SCRAM_SHA_1_PLUS;
}

static scram_hash mechanism_hash(sasl_mechanism mechanism)
{
    switch (mechanism) {
    case SASL_MECHANISM_SCRAM_SHA_512_PLUS:
    case SASL_MECHANISM_SCRAM_SHA_512:
        return SCRAM_HASH_SHA512;
    case SASL_MECHANISM_SCRAM_SHA_1_PLUS:
    case SASL_MECHANISM_SCRAM_SHA_1:
        return SCRAM_HASH_SHA1;
    default:
        return SCRAM_HASH_SHA256;
    }
}

/* --------------------------------------------------------------- features */

/* Channel binding data the session can hold (longer data is refused, so
 * the type is not offered). */
static bool cbind_usable(const sasl_stream_params *params, unsigned type)
{
    return params->cbind_data[type] != NULL && params->cbind_data_len[type] > 0 &&
           params->cbind_data_len[type] <= SASL_CBIND_DATA_BYTES_MAX;
}

static bool params_have_cbind(const sasl_stream_params *params)
{
    for (unsigned type = 0; type < SASL_CBIND_TYPE_COUNT; type++)
        if (cbind_usable(params, type))
            return true;
    return false;
}

bool sasl_mechanism_offered(const sasl_stream_params *params, sasl_mechanism mechanism)
{
    if (mechanism_is_plus(mechanism))
        return params_have_cbind(params);
    if (mechanism_is_scram(mechanism))
        return true;
    if (mechanism == SASL_MECHANISM_PLAIN)
        return params->tls || params->plaintext_allowed;
    if (mechanism == SASL_MECHANISM_ANONYMOUS)
        return params->anonymous;
    return false;
}

static void write_string(xml_writer *writer, const char *text)
{
    xml_write_raw(writer, text, strlen(text));
}

void sasl_features_write(const sasl_stream_params *params, xml_writer *writer)
{
    write_string(writer, "<mechanisms xmlns='" SASL_NAMESPACE "'>");
    for (unsigned mechanism = 0; mechanism < SASL_MECHANISM_COUNT; mechanism++) {
        if (!sasl_mechanism_offered(params, (sasl_mechanism)mechanism))
            continue;
        write_string(writer, "<mechanism>");
        write_string(writer, mechanism_names[mechanism]);
        write_string(writer, "</mechanism>");
    }
    write_string(writer, "</mechanisms>");
    if (!params_have_cbind(params))
        return;
    write_string(writer, "<sasl-channel-binding xmlns='" SASL_CB_NAMESPACE "'>");
    for (unsigned type = 0; type < SASL_CBIND_TYPE_COUNT; type++) {
        if (!cbind_usable(params, type))
            continue;
        write_string(writer, "<channel-binding type='");
        write_string(writer, cbind_type_names[type]);
        write_string(writer, "'/>");
    }
    write_string(writer, "</sasl-channel-binding>");
}

/* ---------------------------------------------------------------- hooks */

bool sasl_prepare_username_ascii(const char *input, size_t input_len, char *out, size_t capacity,
                                 size_t *out_len)
{
    if (input_len == 0 || input_len > LIMIT_STORAGE_JID_PART_BYTES_MAX || input_len >= capacity)
        return false;
    for (size_t i = 0; i < input_len; i++) {
        unsigned char c = (unsigned char)input[i];
        if (c <= 0x20 || c >= 0x7f || strchr("\"&'/:<>@", c) != NULL)
            return false;
        out[i] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    }
    out[input_len] = '\0';
    *out_len = input_len;
    return true;
}

bool sasl_prepare_password_bytes(const char *input, size_t input_len, char *out, size_t capacity,
                                 size_t *out_len)
{
    if (input_len == 0 || input_len > LIMIT_CTL_PASSWORD_BYTES_MAX || input_len >= capacity ||
        memchr(input, '\0', input_len) != NULL)
        return false;
    memcpy(out, input, input_len);
    out[input_len] = '\0';
    *out_len = input_len;
    return true;
}

storage_status sasl_fetch_storage(void *fetch_context, const char *domain, const char *localpart,
                                  scram_hash hash, storage_callback *callback,
                                  void *callback_context)
{
    return storage_user_credential_fetch(fetch_context, domain, localpart, hash, callback,
                                         callback_context);
}

static storage_status fetch_unset(void *fetch_context, const char *domain, const char *localpart,
                                  scram_hash hash, storage_callback *callback,
                                  void *callback_context)
{
    (void)fetch_context, (void)domain, (void)localpart, (void)hash, (void)callback,
        (void)callback_context;
    return STORAGE_CLOSED;
}

void sasl_server_init(sasl_server *server)
{
    memset(server, 0, sizeof *server);
    server->fetch = fetch_unset;
    server->prepare_username = sasl_prepare_username_ascii;
    server->prepare_password = sasl_prepare_password_bytes;
    server->now_ms = rx_now_ms;
    RAND_bytes(server->secret, sizeof server->secret);
}

/* ---------------------------------------------------------------- session */

sasl_session *sasl_session_create(sasl_server *server, const sasl_stream_params *params,
                                  sasl_ready_fn *on_ready, void *context)
{
    sasl_session *session = calloc(1, sizeof *session);
    if (session == NULL)
        return NULL;
    session->server = server;
    session->on_ready = on_ready;
    session->context = context;
    session->domain = params->domain;
    session->domain_len = strlen(params->domain);
    session->tls = params->tls;
    session->plaintext_allowed = params->plaintext_allowed;
    session->anonymous = params->anonymous;
    for (unsigned type = 0; type < SASL_CBIND_TYPE_COUNT; type++) {
        size_t length = params->cbind_data_len[type];
        if (!cbind_usable(params, type))
            continue;
        memcpy(session->cbind_data[type], params->cbind_data[type], length);
        session->cbind_data_len[type] = length;
    }
    if (params->peer != NULL &&
        (params->peer->sa_family == AF_INET || params->peer->sa_family == AF_INET6)) {
        size_t length = params->peer->sa_family == AF_INET ? sizeof(struct sockaddr_in)
                                                           : sizeof(struct sockaddr_in6);
        memcpy(&session->peer, params->peer, length);
        session->has_peer = true;
    }
    if (server->throttle != NULL && session->has_peer)
        session->address_key =
            auth_throttle_address_key(server->throttle, (const struct sockaddr *)&session->peer);
    for (unsigned i = 0; i < LIMIT_SASL_FETCHES_IN_FLIGHT; i++)
        session->tickets[i].session = session;
    return session;
}

static void session_free(sasl_session *session)
{
    OPENSSL_cleanse(session, sizeof *session);
    free(session);
}

/* Forgets the fetch in flight, if any: its completion will be dropped. */
static void fetch_forget(sasl_session *session)
{
    for (unsigned i = 0; i < LIMIT_SASL_FETCHES_IN_FLIGHT; i++)
        session->tickets[i].current = false;
}

void sasl_session_destroy(sasl_session *session)
{
    if (session == NULL)
        return;
    fetch_forget(session);
    if (session->fetches_in_flight > 0) {
        session->destroyed = true;
        return;
    }
    session_free(session);
}

xml_slice sasl_session_output(const sasl_session *session)
{
    return (xml_slice){session->output, session->output_len};
}

uint64_t sasl_session_delay_ms(const sasl_session *session)
{
    return session->delay_ms;
}

sasl_condition sasl_session_condition(const sasl_session *session)
{
    return session->condition;
}

const char *sasl_session_localpart(const sasl_session *session)
{
    return session->state == STATE_DONE ? session->localpart : NULL;
}

sasl_mechanism sasl_session_mechanism(const sasl_session *session)
{
    return session->mechanism;
}

/* ---------------------------------------------------------------- output */

/* Writes <name xmlns='...'>BASE64(data)</name>, or an empty element. */
static void output_element(sasl_session *session, const char *name, const uint8_t *data,
                           size_t data_len)
{
    xml_writer writer;
    xml_writer_init(&writer, session->output, sizeof session->output);
    write_string(&writer, "<");
    write_string(&writer, name);
    write_string(&writer, " xmlns='" SASL_NAMESPACE "'");
    if (data_len == 0) {
        write_string(&writer, "/>");
    } else {
        char encoded[BASE64_LENGTH(SERVER_FIRST_BYTES_MAX) + 1];
        size_t encoded_len = data_len <= SERVER_FIRST_BYTES_MAX
                                 ? EVP_EncodeBlock((uint8_t *)encoded, data, data_len)
                                 : 0;
        write_string(&writer, ">");
        xml_write_raw(&writer, encoded, encoded_len);
        write_string(&writer, "</");
        write_string(&writer, name);
        write_string(&writer, ">");
    }
    assert(!xml_writer_failed(&writer)); /* OUTPUT_BYTES_MAX covers every element */
    session->output_len = xml_writer_output(&writer).len;
}

/* Ends the attempt: wipes its secrets and forgets its state. */
static void attempt_end(sasl_session *session, session_state state)
{
    fetch_forget(session);
    OPENSSL_cleanse(&session->exchange, sizeof session->exchange);
    OPENSSL_cleanse(&session->credential, sizeof session->credential);
    session->state = state;
}

/* A failure: the attempt ends and the client may try again, except that
 * an authenticated session stays authenticated (SASL input after success
 * is refused without undoing it). */
static sasl_step fail(sasl_session *session, sasl_condition condition)
{
    if (session->state != STATE_DONE) {
        attempt_end(session, STATE_IDLE);
        session->localpart[0] = '\0';
        session->localpart_len = 0;
    }
    session->condition = condition;
    session->attempts_failed++;
    xml_writer writer;
    xml_writer_init(&writer, session->output, sizeof session->output);
    write_string(&writer, "<failure xmlns='" SASL_NAMESPACE "'><");
    write_string(&writer, sasl_condition_name(condition));
    write_string(&writer, "/></failure>");
    assert(!xml_writer_failed(&writer)); /* OUTPUT_BYTES_MAX covers every element */
    session->output_len = xml_writer_output(&writer).len;
    return session->attempts_failed >= LIMIT_SASL_ATTEMPTS_PER_STREAM ? SASL_STEP_FAILURE_CLOSE
                                                                      : SASL_STEP_FAILURE;
}

static sasl_step succeed(sasl_session *session, const uint8_t *data, size_t data_len)
{
    if (session->server->throttle != NULL)
        auth_throttle_reset(session->server->throttle, AUTH_THROTTLE_ACCOUNT, session->account_key);
    output_element(session, "success", data, data_len);
    attempt_end(session, STATE_DONE);
    return SASL_STEP_SUCCESS;
}

/* ------------------------------------------------------------- throttling */

static void peer_text(const sasl_session *session, char *out, size_t capacity)
{
    snprintf(out, capacity, "unknown address");
    if (!session->has_peer)
        return;
    if (session->peer.ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)&session->peer)->sin_addr, out,
                  (socklen_t)capacity);
    else
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)&session->peer)->sin6_addr, out,
                  (socklen_t)capacity);
}

/* An attempt during the account's or the address's delay: refused before
 * its credentials are looked at. account_key may be 0 (not known yet). */
static bool throttled(sasl_session *session)
{
    auth_throttle *throttle = session->server->throttle;
    if (throttle == NULL)
        return false;
    uint64_t now = session->server->now_ms();
    uint64_t account_wait =
        auth_throttle_wait_ms(throttle, AUTH_THROTTLE_ACCOUNT, session->account_key, now);
    uint64_t address_wait =
        auth_throttle_wait_ms(throttle, AUTH_THROTTLE_ADDRESS, session->address_key, now);
    if (account_wait == 0 && address_wait == 0)
        return false;
    char peer[INET6_ADDRSTRLEN];
    peer_text(session, peer, sizeof peer);
    rx_log(RX_LOG_WARNING,
           "sasl: login attempt for %.*s%s%s from %s refused (temporary-auth-failure): "
           "throttled for %llu ms more (account %llu ms, address %llu ms)",
           LOG_NAME_CHARS, session->localpart, session->localpart_len > 0 ? "@" : "",
           session->domain, peer,
           (unsigned long long)(account_wait > address_wait ? account_wait : address_wait),
           (unsigned long long)account_wait, (unsigned long long)address_wait);
    return true;
}

/* Wrong credentials (or an unknown user): not-authorized, held back by the
 * throttle's delay. */
static sasl_step fail_credentials(sasl_session *session)
{
    auth_throttle *throttle = session->server->throttle;
    uint64_t delay = 0;
    if (throttle != NULL) {
        uint64_t now = session->server->now_ms();
        auth_throttle_verdict account =
            auth_throttle_fail(throttle, AUTH_THROTTLE_ACCOUNT, session->account_key, now);
        auth_throttle_verdict address =
            auth_throttle_fail(throttle, AUTH_THROTTLE_ADDRESS, session->address_key, now);
        delay = account.delay_ms > address.delay_ms ? account.delay_ms : address.delay_ms;
        if (delay > 0) {
            char peer[INET6_ADDRSTRLEN];
            peer_text(session, peer, sizeof peer);
            rx_log(RX_LOG_WARNING,
                   "sasl: login failed for %.*s@%s from %s (%s): failure %u of the account, "
                   "%u of the address; response held back %llu ms",
                   LOG_NAME_CHARS, session->localpart, session->domain, peer,
                   mechanism_names[session->mechanism], account.failures, address.failures,
                   (unsigned long long)delay);
        }
    }
    sasl_step step = fail(session, SASL_CONDITION_NOT_AUTHORIZED);
    session->delay_ms = delay;
    return step;
}

/* ---------------------------------------------------------------- decoding */

typedef enum decode_result {
    DECODE_OK = 0,
    DECODE_ABSENT,   /* no text: no initial response */
    DECODE_BAD,      /* not base64 (incorrect-encoding) */
    DECODE_TOO_LONG, /* over LIMIT_SASL_MESSAGE_BYTES_MAX (malformed-request) */
} decode_result;

/* Bytes of a decode buffer: the longest accepted base64 text may decode to
 * two bytes over the limit, which decode then reports as too long. */
#define DECODE_BUFFER_BYTES (LIMIT_SASL_MESSAGE_BYTES_MAX + 3u)

/* Decodes SASL's base64 (RFC 6120 section 6.4.2: "=" is empty, no line
 * breaks, padding required) into out (DECODE_BUFFER_BYTES). */
static decode_result decode(const char *text, size_t text_len, uint8_t *out, size_t *out_len)
{
    *out_len = 0;
    if (text_len == 0)
        return DECODE_ABSENT;
    if (text_len == 1 && text[0] == '=')
        return DECODE_OK;
    if (text_len > BASE64_LENGTH(LIMIT_SASL_MESSAGE_BYTES_MAX))
        return DECODE_TOO_LONG;
    if (text_len % 4 != 0 ||
        !EVP_DecodeBase64(out, out_len, DECODE_BUFFER_BYTES, (const uint8_t *)text, text_len))
        return DECODE_BAD;
    return *out_len > LIMIT_SASL_MESSAGE_BYTES_MAX ? DECODE_TOO_LONG : DECODE_OK;
}

static sasl_condition decode_condition(decode_result result)
{
    return result == DECODE_TOO_LONG ? SASL_CONDITION_MALFORMED_REQUEST
                                     : SASL_CONDITION_INCORRECT_ENCODING;
}

/* ---------------------------------------------------------------- identity */

/* Prepares the authentication identity into session->localpart and
 * computes its throttle key. */
static bool identity_set(sasl_session *session, const char *name, size_t name_len)
{
    if (!session->server->prepare_username(name, name_len, session->localpart,
                                           sizeof session->localpart, &session->localpart_len) ||
        session->localpart_len == 0 || session->localpart_len >= sizeof session->localpart) {
        session->localpart[0] = '\0';
        session->localpart_len = 0;
        return false;
    }
    session->localpart[session->localpart_len] = '\0';
    if (session->server->throttle != NULL)
        session->account_key =
            auth_throttle_account_key(session->server->throttle, session->localpart,
                                      session->localpart_len, session->domain, session->domain_len);
    return true;
}

/* An authorization identity is allowed only when it names the
 * authenticated account itself: localpart@domain (RFC 6120 section 6.3.8
 * leaves it to the server; Starling has no proxy authorisation). */
static bool authzid_allowed(const sasl_session *session, const char *authzid, size_t authzid_len)
{
    if (authzid_len == 0)
        return true;
    const char *at = memchr(authzid, '@', authzid_len);
    if (at == NULL || memchr(authzid, '/', authzid_len) != NULL)
        return false;
    size_t local_len = (size_t)(at - authzid);
    size_t domain_len = authzid_len - local_len - 1;
    char prepared[LIMIT_STORAGE_JID_PART_BYTES_MAX + 1];
    size_t prepared_len = 0;
    if (!session->server->prepare_username(authzid, local_len, prepared, sizeof prepared,
                                           &prepared_len))
        return false;
    if (prepared_len != session->localpart_len ||
        memcmp(prepared, session->localpart, prepared_len) != 0 ||
        domain_len != session->domain_len)
        return false;
    for (size_t i = 0; i < domain_len; i++) {
        char c = at[1 + i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != session->domain[i])
            return false;
    }
    return true;
}

/* ------------------------------------------------------------------ fetch */

static sasl_step resume(sasl_session *session, const storage_result *result);

static void fetch_done(void *context, const storage_result *result)
{
    fetch_ticket *ticket = context;
    sasl_session *session = ticket->session;
    assert(ticket->in_use && session->fetches_in_flight > 0);
    bool current = ticket->current;
    ticket->in_use = false;
    ticket->current = false;
    session->fetches_in_flight--;
    if (session->destroyed) {
        if (session->fetches_in_flight == 0)
            session_free(session);
        return;
    }
    if (!current || session->state != STATE_FETCHING)
        return;
    sasl_step step = resume(session, result);
    if (step == SASL_STEP_PENDING)
        return;
    if (session->in_call) {
        session->inline_done = true;
        session->inline_step = step;
        return;
    }
    session->on_ready(session->context, session, step);
}

/* Starts fetching the user's credential for hash. */
static sasl_step fetch_start(sasl_session *session, scram_hash hash)
{
    fetch_ticket *ticket = NULL;
    for (unsigned i = 0; i < LIMIT_SASL_FETCHES_IN_FLIGHT && ticket == NULL; i++)
        if (!session->tickets[i].in_use)
            ticket = &session->tickets[i];
    if (ticket == NULL)
        return fail(session, SASL_CONDITION_TEMPORARY_AUTH_FAILURE);
    ticket->in_use = true;
    ticket->current = true;
    session->fetches_in_flight++;
    session->state = STATE_FETCHING;
    session->inline_done = false;
    bool outer_call = session->in_call;
    session->in_call = true;
    storage_status status = session->server->fetch(session->server->fetch_context, session->domain,
                                                   session->localpart, hash, fetch_done, ticket);
    session->in_call = outer_call;
    if (status != STORAGE_OK) {
        ticket->in_use = false;
        ticket->current = false;
        session->fetches_in_flight--;
        rx_log(RX_LOG_WARNING, "sasl: credential fetch for %.*s@%s not started: %s", LOG_NAME_CHARS,
               session->localpart, session->domain, storage_status_name(status));
        return fail(session, SASL_CONDITION_TEMPORARY_AUTH_FAILURE);
    }
    if (session->inline_done) {
        session->inline_done = false;
        return session->inline_step;
    }
    return SASL_STEP_PENDING;
}

/* The credential of an unknown user: a salt derived from the name and the
 * server secret (stable across attempts, like a real one), keys that no
 * proof matches in practice (unknown_user fails the attempt anyway). */
static void credential_fake(sasl_session *session, scram_hash hash)
{
    static const char label[] = "starling sasl unknown user";
    uint8_t digest[EVP_MAX_MD_SIZE];
    unsigned digest_len = 0;
    HMAC_CTX hmac;
    HMAC_CTX_init(&hmac);
    uint8_t hash_byte = (uint8_t)hash;
    uint8_t separator = 0;
    if (!HMAC_Init_ex(&hmac, session->server->secret, sizeof session->server->secret, EVP_sha256(),
                      NULL) ||
        !HMAC_Update(&hmac, (const uint8_t *)label, sizeof label - 1) ||
        !HMAC_Update(&hmac, &hash_byte, 1) ||
        !HMAC_Update(&hmac, (const uint8_t *)session->domain, session->domain_len) ||
        !HMAC_Update(&hmac, &separator, 1) ||
        !HMAC_Update(&hmac, (const uint8_t *)session->localpart, session->localpart_len) ||
        !HMAC_Final(&hmac, digest, &digest_len))
        memset(digest, 0, sizeof digest);
    HMAC_CTX_cleanup(&hmac);
    storage_credential *credential = &session->credential;
    memset(credential, 0, sizeof *credential);
    credential->hash = hash;
    credential->iterations = LIMIT_SCRAM_STORED_ITERATIONS;
    credential->salt_len = LIMIT_SCRAM_STORED_SALT_BYTES;
    memcpy(credential->salt, digest, LIMIT_SCRAM_STORED_SALT_BYTES);
    credential->key_len = scram_hash_bytes(hash);
    RAND_bytes(credential->stored_key, credential->key_len);
    RAND_bytes(credential->server_key, credential->key_len);
    session->unknown_user = true;
}

/* Takes a fetched credential after checking it is one we can use. */
static bool credential_take(sasl_session *session, const storage_credential *credential,
                            scram_hash hash)
{
    if (credential == NULL || credential->hash != hash ||
        credential->key_len != scram_hash_bytes(hash) || credential->salt_len == 0 ||
        credential->salt_len > LIMIT_SCRAM_SALT_BYTES_MAX || credential->iterations == 0 ||
        credential->iterations > LIMIT_SCRAM_ITERATIONS_MAX) {
        rx_log(RX_LOG_ERROR, "sasl: the stored %s credential of %.*s@%s is unusable",
               scram_mechanism_name((scram_mechanism){hash, false}), LOG_NAME_CHARS,
               session->localpart, session->domain);
        return false;
    }
    session->credential = *credential;
    session->unknown_user = false;
    return true;
}

/* ------------------------------------------------------------------ SCRAM */

/* Whether this stream offered -PLUS (some channel binding type is there). */
static bool session_has_cbind(const sasl_session *session)
{
    for (unsigned type = 0; type < SASL_CBIND_TYPE_COUNT; type++)
        if (session->cbind_data_len[type] > 0)
            return true;
    return false;
}

/* client-first-message: checks the gs2 header against what this stream
 * offers, takes the identity, and starts the fetch. */
static sasl_step scram_first(sasl_session *session, const uint8_t *message, size_t message_len)
{
    scram_client_first first;
    scram_result result = scram_client_first_parse((const char *)message, message_len, &first);
    if (result != SCRAM_OK)
        return fail(session, SASL_CONDITION_MALFORMED_REQUEST);

    /* RFC 5802 section 6: a -PLUS mechanism needs p=, a plain one must not
     * carry it, and "y" (the client could bind but thinks we cannot) from a
     * client to which we offered -PLUS is a downgrade. */
    bool plus = mechanism_is_plus(session->mechanism);
    int cbind_type = -1;
    if (first.cbind == SCRAM_CBIND_REQUIRED) {
        if (!plus)
            return fail(session, SASL_CONDITION_NOT_AUTHORIZED);
        for (unsigned type = 0; type < SASL_CBIND_TYPE_COUNT; type++)
            if (first.cbind_name.len == strlen(cbind_type_names[type]) &&
                memcmp(first.cbind_name.ptr, cbind_type_names[type], first.cbind_name.len) == 0)
                cbind_type = (int)type;
        if (cbind_type < 0 || session->cbind_data_len[cbind_type] == 0) {
            /* Not a guess at credentials: it neither counts towards the
             * stream's attempts nor feeds the throttle. */
            session->cbind_type_refused = true;
            sasl_step step = fail(session, SASL_CONDITION_NOT_AUTHORIZED);
            session->attempts_failed--;
            return step == SASL_STEP_FAILURE_CLOSE ? SASL_STEP_FAILURE : step;
        }
    } else if (plus) {
        return fail(session, SASL_CONDITION_NOT_AUTHORIZED);
    } else if (first.cbind == SCRAM_CBIND_NOT_OFFERED && session_has_cbind(session) &&
               !session->cbind_type_refused) {
        /* A man in the middle who strips -PLUS from the features gets this
         * "y" without any -PLUS attempt before it on the stream. */
        return fail(session, SASL_CONDITION_NOT_AUTHORIZED);
    }

    char name[LIMIT_SASL_MESSAGE_BYTES_MAX];
    size_t name_len = 0;
    if (scram_saslname_unescape(first.username.ptr, first.username.len, name, sizeof name,
                                &name_len) != SCRAM_OK)
        return fail(session, SASL_CONDITION_MALFORMED_REQUEST);
    if (!identity_set(session, name, name_len))
        return fail(session, SASL_CONDITION_NOT_AUTHORIZED);
    if (first.authzid.len > 0) {
        if (scram_saslname_unescape(first.authzid.ptr, first.authzid.len, name, sizeof name,
                                    &name_len) != SCRAM_OK)
            return fail(session, SASL_CONDITION_MALFORMED_REQUEST);
        if (!authzid_allowed(session, name, name_len))
            return fail(session, SASL_CONDITION_INVALID_AUTHZID);
    }
    if (throttled(session))
        return fail(session, SASL_CONDITION_TEMPORARY_AUTH_FAILURE);

    assert(message_len <= sizeof session->exchange.scram.client_first);
    memcpy(session->exchange.scram.client_first, message, message_len);
    session->exchange.scram.client_first_len = message_len;
    session->exchange.scram.gs2_header_len = first.gs2_header.len;
    session->exchange.scram.client_nonce_offset = (size_t)(first.nonce.ptr - (const char *)message);
    session->exchange.scram.client_nonce_len = first.nonce.len;
    session->exchange.scram.cbind_type = cbind_type;
    return fetch_start(session, mechanism_hash(session->mechanism));
}

/* The credential is here (real or fake): server-first as a challenge. */
static sasl_step scram_challenge(sasl_session *session)
{
    char server_nonce[BASE64_LENGTH(SERVER_NONCE_RANDOM_BYTES) + 1];
    size_t server_nonce_len = 0;
    if (scram_nonce_make(SERVER_NONCE_RANDOM_BYTES, server_nonce, sizeof server_nonce,
                         &server_nonce_len) != SCRAM_OK)
        return fail(session, SASL_CONDITION_TEMPORARY_AUTH_FAILURE);
    scram_slice client_nonce = {session->exchange.scram.client_first +
                                    session->exchange.scram.client_nonce_offset,
                                session->exchange.scram.client_nonce_len};
    const storage_credential *credential = &session->credential;
    scram_result result = scram_server_first_build(
        client_nonce, (scram_slice){server_nonce, server_nonce_len}, credential->salt,
        credential->salt_len, credential->iterations, session->exchange.scram.server_first,
        sizeof session->exchange.scram.server_first, &session->exchange.scram.server_first_len);
    if (result != SCRAM_OK)
        return fail(session, SASL_CONDITION_MALFORMED_REQUEST);
    session->exchange.scram.nonce_len = client_nonce.len + server_nonce_len;
    session->state = STATE_SCRAM_FINAL;
    output_element(session, "challenge", (const uint8_t *)session->exchange.scram.server_first,
                   session->exchange.scram.server_first_len);
    return SASL_STEP_CHALLENGE;
}

/* client-final-message: channel binding, nonce, proof. */
static sasl_step scram_final(sasl_session *session, const uint8_t *message, size_t message_len)
{
    scram_client_final final;
    if (scram_client_final_parse((const char *)message, message_len, &final) != SCRAM_OK)
        return fail(session, SASL_CONDITION_MALFORMED_REQUEST);
    int type = session->exchange.scram.cbind_type;
    const uint8_t *cbind = type >= 0 ? session->cbind_data[type] : NULL;
    size_t cbind_len = type >= 0 ? session->cbind_data_len[type] : 0;
    scram_slice nonce = {session->exchange.scram.server_first + 2,
                         session->exchange.scram.nonce_len};
    scram_slice gs2_header = {session->exchange.scram.client_first,
                              session->exchange.scram.gs2_header_len};
    scram_result result = scram_client_final_check(&final, nonce, gs2_header, cbind, cbind_len);
    if (result == SCRAM_ERROR_NONCE_MISMATCH || result == SCRAM_ERROR_CHANNEL_BINDING)
        return fail_credentials(session);
    if (result != SCRAM_OK)
        return fail(session, SASL_CONDITION_MALFORMED_REQUEST);
    scram_auth_message auth_message = {
        .client_first_bare = {gs2_header.ptr + gs2_header.len,
                              session->exchange.scram.client_first_len - gs2_header.len},
        .server_first = {session->exchange.scram.server_first,
                         session->exchange.scram.server_first_len},
        .client_final_without_proof = final.without_proof,
    };
    unsigned char signature[SCRAM_HASH_BYTES_MAX];
    scram_hash hash = mechanism_hash(session->mechanism);
    result = scram_server_verify_proof(hash, session->credential.stored_key,
                                       session->credential.server_key, &auth_message, final.proof,
                                       final.proof_len, signature);
    if (result == SCRAM_ERROR_CRYPTO)
        return fail(session, SASL_CONDITION_TEMPORARY_AUTH_FAILURE);
    if (result != SCRAM_OK || session->unknown_user)
        return fail_credentials(session);
    char server_final[8 + BASE64_LENGTH(SCRAM_HASH_BYTES_MAX)];
    size_t server_final_len = 0;
    if (scram_server_final_build(hash, signature, server_final, sizeof server_final,
                                 &server_final_len) != SCRAM_OK)
        return fail(session, SASL_CONDITION_TEMPORARY_AUTH_FAILURE);
    return succeed(session, (const uint8_t *)server_final, server_final_len);
}

/* ------------------------------------------------------------------ PLAIN */

/* message = [authzid] NUL authcid NUL passwd (RFC 4616 section 2). */
static sasl_step plain_start(sasl_session *session, const uint8_t *message, size_t message_len)
{
    const uint8_t *first_nul = memchr(message, '\0', message_len);
    if (first_nul == NULL)
        return fail(session, SASL_CONDITION_MALFORMED_REQUEST);
    const uint8_t *authcid = first_nul + 1;
    size_t rest = message_len - (size_t)(authcid - message);
    const uint8_t *second_nul = memchr(authcid, '\0', rest);
    if (second_nul == NULL)
        return fail(session, SASL_CONDITION_MALFORMED_REQUEST);
    size_t authzid_len = (size_t)(first_nul - message);
    size_t authcid_len = (size_t)(second_nul - authcid);
    const uint8_t *password = second_nul + 1;
    size_t password_len = message_len - (size_t)(password - message);
    if (authcid_len == 0 || password_len == 0 || memchr(password, '\0', password_len) != NULL)
        return fail(session, SASL_CONDITION_MALFORMED_REQUEST);
    if (!identity_set(session, (const char *)authcid, authcid_len))
        return fail(session, SASL_CONDITION_NOT_AUTHORIZED);
    if (!authzid_allowed(session, (const char *)message, authzid_len))
        return fail(session, SASL_CONDITION_INVALID_AUTHZID);
    if (!session->server->prepare_password(
            (const char *)password, password_len, session->exchange.plain.password,
            sizeof session->exchange.plain.password, &session->exchange.plain.password_len))
        return fail(session, SASL_CONDITION_NOT_AUTHORIZED);
    if (throttled(session))
        return fail(session, SASL_CONDITION_TEMPORARY_AUTH_FAILURE);
    session->plain_hash_index = 0;
    return fetch_start(session, plain_hashes[0]);
}

/* SaltedPassword -> StoredKey from the password and the credential's salt,
 * compared in constant time with the stored one. */
static sasl_step plain_verify(sasl_session *session)
{
    const storage_credential *credential = &session->credential;
    scram_keys keys;
    scram_result result = scram_keys_derive(credential->hash, session->exchange.plain.password,
                                            session->exchange.plain.password_len, credential->salt,
                                            credential->salt_len, credential->iterations, &keys);
    bool match = result == SCRAM_OK &&
                 CRYPTO_memcmp(keys.stored_key, credential->stored_key, credential->key_len) == 0;
    OPENSSL_cleanse(&keys, sizeof keys);
    if (result == SCRAM_ERROR_CRYPTO)
        return fail(session, SASL_CONDITION_TEMPORARY_AUTH_FAILURE);
    if (!match || session->unknown_user)
        return fail_credentials(session);
    return succeed(session, NULL, 0);
}

/* -------------------------------------------------------------- ANONYMOUS */

static sasl_step anonymous_start(sasl_session *session)
{
    uint8_t random[ANONYMOUS_RANDOM_BYTES];
    RAND_bytes(random, sizeof random);
    for (size_t i = 0; i < sizeof random; i++)
        snprintf(session->localpart + 2 * i, 3, "%02x", random[i]);
    session->localpart_len = 2 * sizeof random;
    session->account_key = 0;
    return succeed(session, NULL, 0);
}

/* --------------------------------------------------------------- resuming */

static sasl_step resume(sasl_session *session, const storage_result *result)
{
    bool scram = mechanism_is_scram(session->mechanism);
    scram_hash hash =
        scram ? mechanism_hash(session->mechanism) : plain_hashes[session->plain_hash_index];
    if (result->status == STORAGE_OK) {
        if (!credential_take(session, result->credential, hash))
            return fail(session, SASL_CONDITION_TEMPORARY_AUTH_FAILURE);
    } else if (result->status == STORAGE_NOT_FOUND) {
        if (!scram && session->plain_hash_index + 1 < PLAIN_HASH_COUNT) {
            session->plain_hash_index++;
            return fetch_start(session, plain_hashes[session->plain_hash_index]);
        }
        credential_fake(session, hash);
    } else {
        rx_log(RX_LOG_WARNING, "sasl: credential fetch for %.*s@%s failed: %s (%s)", LOG_NAME_CHARS,
               session->localpart, session->domain, storage_status_name(result->status),
               result->reason);
        return fail(session, SASL_CONDITION_TEMPORARY_AUTH_FAILURE);
    }
    return scram ? scram_challenge(session) : plain_verify(session);
}

/* ------------------------------------------------------------ public calls */

static void step_begin(sasl_session *session)
{
    session->delay_ms = 0;
    session->condition = SASL_CONDITION_NONE;
    session->output_len = 0;
}

/* The mechanism's first message (the initial response, or the response to
 * the empty challenge). */
static sasl_step first_message(sasl_session *session, const uint8_t *message, size_t message_len)
{
    if (mechanism_is_scram(session->mechanism))
        return scram_first(session, message, message_len);
    return plain_start(session, message, message_len);
}

sasl_step sasl_session_auth(sasl_session *session, const char *mechanism, size_t mechanism_len,
                            const char *text, size_t text_len)
{
    step_begin(session);
    if (session->state != STATE_IDLE)
        return fail(session, SASL_CONDITION_MALFORMED_REQUEST);
    unsigned found = 0;
    while (found < SASL_MECHANISM_COUNT &&
           (strlen(mechanism_names[found]) != mechanism_len ||
            memcmp(mechanism_names[found], mechanism, mechanism_len) != 0))
        found++;
    if (found == SASL_MECHANISM_COUNT)
        return fail(session, SASL_CONDITION_INVALID_MECHANISM);
    session->mechanism = (sasl_mechanism)found;
    sasl_stream_params offered = {
        .tls = session->tls,
        .plaintext_allowed = session->plaintext_allowed,
        .anonymous = session->anonymous,
        .cbind_data = {session->cbind_data[0], session->cbind_data[1]},
        .cbind_data_len = {session->cbind_data_len[0], session->cbind_data_len[1]},
    };
    if (!sasl_mechanism_offered(&offered, session->mechanism))
        return fail(session, session->mechanism == SASL_MECHANISM_PLAIN
                                 ? SASL_CONDITION_ENCRYPTION_REQUIRED
                                 : SASL_CONDITION_INVALID_MECHANISM);
    session->account_key = 0;
    session->localpart[0] = '\0';
    session->localpart_len = 0;
    uint8_t message[DECODE_BUFFER_BYTES];
    size_t message_len = 0;
    decode_result decoded = decode(text, text_len, message, &message_len);
    if (decoded == DECODE_BAD || decoded == DECODE_TOO_LONG)
        return fail(session, decode_condition(decoded));
    if (session->mechanism == SASL_MECHANISM_ANONYMOUS)
        return anonymous_start(session);
    if (throttled(session))
        return fail(session, SASL_CONDITION_TEMPORARY_AUTH_FAILURE);
    if (decoded == DECODE_ABSENT) {
        session->state = STATE_INITIAL;
        output_element(session, "challenge", NULL, 0);
        return SASL_STEP_CHALLENGE;
    }
    sasl_step step = first_message(session, message, message_len);
    OPENSSL_cleanse(message, message_len); /* PLAIN's password */
    return step;
}

sasl_step sasl_session_response(sasl_session *session, const char *text, size_t text_len)
{
    step_begin(session);
    if (session->state != STATE_INITIAL && session->state != STATE_SCRAM_FINAL)
        return fail(session, SASL_CONDITION_MALFORMED_REQUEST);
    uint8_t message[DECODE_BUFFER_BYTES];
    size_t message_len = 0;
    decode_result decoded = decode(text, text_len, message, &message_len);
    if (decoded == DECODE_BAD || decoded == DECODE_TOO_LONG)
        return fail(session, decode_condition(decoded));
    sasl_step step = session->state == STATE_INITIAL ? first_message(session, message, message_len)
                                                     : scram_final(session, message, message_len);
    OPENSSL_cleanse(message, message_len); /* PLAIN's password */
    return step;
}

sasl_step sasl_session_abort(sasl_session *session)
{
    step_begin(session);
    if (session->state == STATE_DONE)
        return fail(session, SASL_CONDITION_MALFORMED_REQUEST);
    return fail(session, SASL_CONDITION_ABORTED);
}
