/*
 * sasl.h: the server side of SASL for client streams (RFC 6120 section 6).
 *
 * Mechanisms: SCRAM-SHA-1, SCRAM-SHA-256, SCRAM-SHA-512 (RFC 5802, RFC
 * 7677), each with its -PLUS variant (channel binding tls-exporter, RFC
 * 9266, and tls-server-end-point, RFC 5929), PLAIN (RFC 4616) and
 * ANONYMOUS (RFC 4505). The SCRAM messages themselves are proto/scram.h's.
 *
 * Two parts:
 *
 *   - sasl_features_write: the <mechanisms/> stream feature for a stream
 *     (what it offers depends on TLS, the channel bindings the TLS layer
 *     can give, the listener and the domain), strongest first, and the
 *     XEP-0440 <sasl-channel-binding/> feature listing the binding types.
 *
 *   - sasl_session: one exchange state machine per stream. c2s hands it
 *     the character data of <auth mechanism='...'/>, <response/> and
 *     <abort/>; each call returns a sasl_step saying what to send
 *     (sasl_session_output: a <challenge/>, <success/> or <failure/>
 *     element, complete) or that the answer will come later
 *     (SASL_STEP_PENDING: a credential fetch is in flight; on_ready runs on
 *     this reactor when it completes, and the output is then ready).
 *
 * Credentials come from storage through a fetch hook (sasl_fetch_fn; the
 * default, sasl_fetch_storage, is storage_user_credential_fetch). Nothing
 * blocks: a SCRAM or PLAIN exchange starts the fetch and resumes in its
 * completion. For an unknown user a SCRAM exchange goes on with a salt
 * derived from the username and the server's secret (the same salt on
 * every attempt, as for a real user) and fails with not-authorized at the
 * end, so the exchange does not reveal whether the account exists.
 *
 * Usernames are JID localparts prepared with PRECIS UsernameCaseMapped (RFC
 * 7622). That preparation is a hook (sasl_server.prepare_username); the
 * default, sasl_prepare_username_ascii, accepts ASCII localparts only and
 * lower-cases them. The integrator swaps in an adapter over proto/jid.h's
 * jid_prepare_localpart. PLAIN's password goes through prepare_password
 * (default: the bytes as given; the client applied OpaqueString, RFC 8265,
 * and so did starlingctl); SCRAM takes the client's proof as it comes.
 *
 * Failed logins are throttled (server/xmpp/auth_throttle.h) per account and
 * per source address when sasl_server.throttle is set: a failure caused by
 * wrong credentials carries a delay (sasl_session_delay_ms) for which c2s
 * holds the failure element back, and an attempt during an account's or
 * address's delay gets temporary-auth-failure at once. RFC 6120 section
 * 6.4.5 leaves the retry policy to the server; holding the response back
 * is the usual defence and costs a sequential client nothing but time.
 * Each throttle event logs one line.
 *
 * Threads: a sasl_server belongs to one reactor (its throttle is that
 * reactor's); a sasl_session is used on that reactor only.
 *
 * Memory: a session is about 7 KB (it keeps client-first, up to
 * LIMIT_SASL_MESSAGE_BYTES_MAX, for the AuthMessage), allocated when SASL
 * starts and meant to be destroyed at success, so an idle authenticated
 * stream holds none of it.
 *
 * Conditions produced: aborted, encryption-required (PLAIN without TLS on a
 * listener that does not allow it), incorrect-encoding, invalid-authzid,
 * invalid-mechanism, malformed-request, not-authorized and
 * temporary-auth-failure. account-disabled, credentials-expired and
 * mechanism-too-weak are named for completeness: storage has no disabled
 * or expired accounts yet, and no policy refuses an offered mechanism.
 */
#ifndef STARLING_SERVER_XMPP_SASL_H
#define STARLING_SERVER_XMPP_SASL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "proto/limits.h"
#include "proto/scram.h"
#include "proto/xml.h"
#include "proto/xml_writer.h"
#include "server/xmpp/auth_throttle.h"
#include "storage/storage.h"

#define SASL_NAMESPACE    "urn:ietf:params:xml:ns:xmpp-sasl"
#define SASL_CB_NAMESPACE "urn:xmpp:sasl-cb:0"

/* Mechanisms, strongest first (the order they are advertised in). */
typedef enum sasl_mechanism {
    SASL_MECHANISM_SCRAM_SHA_512_PLUS = 0,
    SASL_MECHANISM_SCRAM_SHA_256_PLUS,
    SASL_MECHANISM_SCRAM_SHA_1_PLUS,
    SASL_MECHANISM_SCRAM_SHA_512,
    SASL_MECHANISM_SCRAM_SHA_256,
    SASL_MECHANISM_SCRAM_SHA_1,
    SASL_MECHANISM_PLAIN,
    SASL_MECHANISM_ANONYMOUS,
    SASL_MECHANISM_COUNT,
} sasl_mechanism;

/* The registered name, e.g. "SCRAM-SHA-256-PLUS" (static, never NULL). */
const char *sasl_mechanism_name(sasl_mechanism mechanism);

/* Channel binding types (XEP-0440 names them in the feature). */
typedef enum sasl_cbind_type {
    SASL_CBIND_TLS_EXPORTER = 0,     /* RFC 9266, TLS 1.3 only */
    SASL_CBIND_TLS_SERVER_END_POINT, /* RFC 5929, any TLS with a certificate */
    SASL_CBIND_TYPE_COUNT,
} sasl_cbind_type;

/* "tls-exporter", "tls-server-end-point" (static). */
const char *sasl_cbind_type_name(sasl_cbind_type type);

/* Bytes of channel binding data: tls-exporter gives 32, tls-server-end-point
 * a certificate hash (at most SHA-512's 64). */
#define SASL_CBIND_DATA_BYTES_MAX 64u

/* The failure conditions of RFC 6120 section 6.5. */
typedef enum sasl_condition {
    SASL_CONDITION_NONE = 0,
    SASL_CONDITION_ABORTED,
    SASL_CONDITION_ACCOUNT_DISABLED,
    SASL_CONDITION_CREDENTIALS_EXPIRED,
    SASL_CONDITION_ENCRYPTION_REQUIRED,
    SASL_CONDITION_INCORRECT_ENCODING,
    SASL_CONDITION_INVALID_AUTHZID,
    SASL_CONDITION_INVALID_MECHANISM,
    SASL_CONDITION_MALFORMED_REQUEST,
    SASL_CONDITION_MECHANISM_TOO_WEAK,
    SASL_CONDITION_NOT_AUTHORIZED,
    SASL_CONDITION_TEMPORARY_AUTH_FAILURE,
} sasl_condition;

/* The element name, e.g. "not-authorized" (static; "" for NONE). */
const char *sasl_condition_name(sasl_condition condition);

/* ------------------------------------------------------------- the stream */

/* What SASL needs to know of a stream. Copied by sasl_session_create
 * except domain, which is borrowed for the session's life (c2s's domain
 * outlives every stream). */
typedef struct sasl_stream_params {
    const char *domain;     /* the served domain, prepared, NUL-terminated */
    bool tls;               /* the stream is encrypted */
    bool plaintext_allowed; /* the listener allows PLAIN without TLS */
    bool anonymous;         /* ANONYMOUS is enabled for the domain */
    /* Channel binding data per type; NULL (or length 0) when the TLS layer
     * cannot give that type on this stream (no TLS, tls-exporter before TLS
     * 1.3). At most SASL_CBIND_DATA_BYTES_MAX bytes each; borrowed. */
    const uint8_t *cbind_data[SASL_CBIND_TYPE_COUNT];
    size_t cbind_data_len[SASL_CBIND_TYPE_COUNT];
    const struct sockaddr *peer; /* the client's address (borrowed), or NULL */
} sasl_stream_params;

/* Writes the <mechanisms/> feature and, when the stream has channel
 * binding, the XEP-0440 <sasl-channel-binding/> feature into writer
 * (borrowed); the caller wraps them in <stream:features/> with its other
 * features. Offers:
 *   - SCRAM-SHA-{512,256,1}-PLUS when some channel binding type is there;
 *   - SCRAM-SHA-{512,256,1} always;
 *   - PLAIN over TLS, or when the listener allows plaintext;
 *   - ANONYMOUS when the domain enables it.
 * Check xml_writer_failed for overflow. */
void sasl_features_write(const sasl_stream_params *params, xml_writer *writer);

/* Whether params' stream offers mechanism (what sasl_features_write lists). */
bool sasl_mechanism_offered(const sasl_stream_params *params, sasl_mechanism mechanism);

/* ------------------------------------------------------------------ hooks */

/* Prepares a name (a username, a password) into out (capacity bytes, NUL
 * terminated by the hook). input is borrowed and not NUL-terminated.
 * Returns false when the input is not acceptable. */
typedef bool sasl_prepare_fn(const char *input, size_t input_len, char *out, size_t capacity,
                             size_t *out_len);

/* Default username preparation: 1..LIMIT_STORAGE_JID_PART_BYTES_MAX bytes
 * of printable ASCII without the characters RFC 7622 section 3.3.1 forbids
 * in a localpart (space " & ' / : < > @), upper-case letters lowered. Any
 * byte over 0x7f is refused: non-ASCII names need the PRECIS preparation
 * that the integrator hooks in (jid_prepare_localpart). */
bool sasl_prepare_username_ascii(const char *input, size_t input_len, char *out, size_t capacity,
                                 size_t *out_len);

/* Default password preparation: the bytes as given (1..
 * LIMIT_CTL_PASSWORD_BYTES_MAX, no NUL). */
bool sasl_prepare_password_bytes(const char *input, size_t input_len, char *out, size_t capacity,
                                 size_t *out_len);

/* Starts fetching a user's credential for hash (arguments borrowed for the
 * call), exactly as storage_user_credential_fetch: returns STORAGE_OK and
 * runs callback(callback_context, result) exactly once later (or, for test
 * doubles, possibly inside this call), or returns another status and never
 * runs it. */
typedef storage_status sasl_fetch_fn(void *fetch_context, const char *domain, const char *localpart,
                                     scram_hash hash, storage_callback *callback,
                                     void *callback_context);

/* The default fetch: fetch_context is a storage handle (borrowed). */
storage_status sasl_fetch_storage(void *fetch_context, const char *domain, const char *localpart,
                                  scram_hash hash, storage_callback *callback,
                                  void *callback_context);

/* The loop clock in ms (default rx_now_ms). */
typedef uint64_t sasl_clock_fn(void);

/* Bytes of the server secret that derives unknown users' salts. */
#define SASL_SECRET_BYTES 32u

/* One reactor's SASL setup: fill with sasl_server_init, then set fetch
 * (and what else differs). Every pointer is borrowed for as long as
 * sessions use the server. */
typedef struct sasl_server {
    sasl_fetch_fn *fetch;
    void *fetch_context;
    sasl_prepare_fn *prepare_username;
    sasl_prepare_fn *prepare_password;
    sasl_clock_fn *now_ms;
    auth_throttle *throttle; /* NULL: no throttling */
    /* Derives the fake salts of unknown users. sasl_server_init draws it at
     * random; give every reactor (and every node of a cluster) the same
     * persistent value, or a restart changes fake salts but not real ones,
     * which tells an observer which accounts exist. */
    uint8_t secret[SASL_SECRET_BYTES];
} sasl_server;

/* Defaults: no fetch (every login fails with temporary-auth-failure until
 * it is set), the ASCII username and byte password preparations, rx_now_ms,
 * no throttle, a random secret. */
void sasl_server_init(sasl_server *server);

/* ---------------------------------------------------------------- session */

typedef struct sasl_session sasl_session;

/* What to do after a call. */
typedef enum sasl_step {
    SASL_STEP_PENDING = 0,   /* nothing to send yet: on_ready will run */
    SASL_STEP_CHALLENGE,     /* send the output (<challenge/>) and wait for <response/> */
    SASL_STEP_SUCCESS,       /* send the output (<success/>); the stream restarts */
    SASL_STEP_FAILURE,       /* send the output (<failure/>) after sasl_session_delay_ms;
                                the client may try again */
    SASL_STEP_FAILURE_CLOSE, /* as FAILURE, then close the stream with policy-violation:
                                LIMIT_SASL_ATTEMPTS_PER_STREAM failures (RFC 6120 6.4.5) */
} sasl_step;

/* Runs on the session's reactor when a PENDING step completes, with the
 * step that the output now holds (never PENDING). session and context are
 * borrowed; the callback may destroy the session. */
typedef void sasl_ready_fn(void *context, sasl_session *session, sasl_step step);

/* Creates a session for one stream. server and params are borrowed (params
 * copied, except params->domain: see sasl_stream_params); context is passed
 * to on_ready. Returns an owned session, or NULL when allocation fails. */
sasl_session *sasl_session_create(sasl_server *server, const sasl_stream_params *params,
                                  sasl_ready_fn *on_ready, void *context)
    __attribute__((warn_unused_result));

/* Ends a session (owned). Safe with a fetch in flight: the session is then
 * freed when the fetch completes, and on_ready is never called again. */
void sasl_session_destroy(sasl_session *session);

/* <auth mechanism='mechanism'>text</auth>: mechanism and text are borrowed
 * (text is the element's character data: base64, "=" for an empty initial
 * response, empty for none). */
sasl_step sasl_session_auth(sasl_session *session, const char *mechanism, size_t mechanism_len,
                            const char *text, size_t text_len);

/* <response>text</response> (text borrowed, as for auth). */
sasl_step sasl_session_response(sasl_session *session, const char *text, size_t text_len);

/* <abort/>: a <failure><aborted/></failure>; any exchange in progress ends
 * (a fetch in flight is forgotten). */
sasl_step sasl_session_abort(sasl_session *session);

/* The element to send after a step other than PENDING (borrowed from the
 * session until its next call). */
xml_slice sasl_session_output(const sasl_session *session);

/* How long to hold the output back before sending it (throttling of a
 * failed login), in ms; 0 for every step but a failure. c2s must not hand
 * the session further input until it has sent the output. */
uint64_t sasl_session_delay_ms(const sasl_session *session);

/* The condition of the last failure (NONE after other steps). */
sasl_condition sasl_session_condition(const sasl_session *session);

/* After SASL_STEP_SUCCESS: the authenticated localpart (prepared; for
 * ANONYMOUS a random one), NUL-terminated, borrowed from the session; and
 * the mechanism used. NULL before success. */
const char *sasl_session_localpart(const sasl_session *session);
sasl_mechanism sasl_session_mechanism(const sasl_session *session);

#endif
