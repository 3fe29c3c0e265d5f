/*
 * bench_sink.c: starling-bench sink, the cheapest XMPP server that still
 * does what the generator's scenarios need, so that a scenario run against
 * it measures the generator, not a server: the tool's own ceiling.
 *
 * It runs on Starling's runtime (server/runtime/rx.h) and reads client
 * streams with the proto/ tokenizer. A stream gets a header and features
 * offering SCRAM-SHA-256, SCRAM-SHA-1, PLAIN and ANONYMOUS. Every user has
 * the one password --password: SCRAM uses ONE fixed salt and iteration
 * count for all users, and the salted password and keys are derived once
 * at start, so a login costs the sink a few HMACs (the proof is still
 * checked properly). After the restart: bind (the resource asked for, or a
 * generated one), initial presence accepted (no roster, nothing to fan
 * out), iq ping and session answered, and a <message/> to a local part of
 * this domain (bare or full JID) forwarded, 'from' stamped, to that user's
 * online session.
 *
 * Routing across reactors: each reactor keeps a table of its own bound
 * sessions by local part; a process-wide directory (a lock-free open
 * addressed table of 64-bit name hashes) says which reactor holds a name.
 * A message for a session of another reactor is copied into a parcel and
 * posted to that reactor's mailbox, which looks the name up in its own
 * table and sends. Nothing is shared but the directory's atomics. (A
 * parcel still in a mailbox when its reactor exits at shutdown is not
 * freed: the process is ending, and traffic has stopped by then.)
 *
 * It counts what it did (streams, logins by mechanism, binds, messages
 * received, forwarded, undeliverable) and prints the counts when SIGTERM
 * or SIGINT stops it (and writes them with --json), so that a generator's
 * numbers can be checked against the server's.
 */
#include "bench/src/bench_cli.h"
#include "bench/src/bench_commands.h"
#include "bench/src/bench_json.h"
#include "bench/src/bench_server_cli.h"
#include "bench/src/bench_system.h"
#include "bench/src/xmpp_wire.h"
#include "proto/limits.h"
#include "proto/scram.h"
#include "proto/xml.h"
#include "server/runtime/rx.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/base64.h>
#include <openssl/mem.h>

#define SINK_COMMAND            "starling-bench sink"
#define SINK_DEFAULT_ADDRESS    "127.0.0.1"
#define SINK_DEFAULT_PORT       5222u
#define SINK_DEFAULT_DOMAIN     "localhost"
#define SINK_DEFAULT_PASSWORD   "password"
#define SINK_DEFAULT_TIMEOUT_MS 3600000u /* long: idle sessions are the point */
/* Local parts and resources the sink accepts: [A-Za-z0-9._+-], this long at
 * most, so that they go into JIDs and attributes without escaping. */
#define SINK_NAME_BYTES_MAX     64u
#define SINK_RESOURCE_BYTES_MAX 64u
#define SINK_DOMAIN_BYTES_MAX   128u
#define SINK_PASSWORD_BYTES_MAX 256u
/* One SASL message decoded (its text: XMPP_WIRE_TEXT_BYTES_MAX): generator messages are
 * about 100 bytes; anything near this is nonsense. */
#define SINK_SASL_BYTES_MAX 1024u
/* SCRAM: one salt and count for every user (see the file comment). */
#define SINK_SCRAM_SALT         "starling-bench-sink-salt"
#define SINK_SCRAM_ITERATIONS   4096u
#define SINK_NONCE_RANDOM_BYTES 18u
/* Bytes a stamp (from='name@domain/resource') or an answer adds to a stanza. */
#define SINK_OUT_SLACK_BYTES 1024u
/* The directory holds at least this many names per connection slot, so it
 * stays at most half full while every slot is bound once; names come back
 * to their slot when a user logs in again. */
#define SINK_DIRECTORY_SLOTS_PER_CONNECTION 2u
#define SINK_DIRECTORY_MIN                  1024u
#define SINK_DESCRIPTORS_SPARE              64u
/* Parcels a reactor keeps while a target's mailbox is full (retried every
 * message to that target and every millisecond timer tick, in order). A
 * closed loop keeps at most window x sessions in flight, far below; past
 * it the sender gets resource-constraint. About 200 bytes each. */
#define SINK_PENDING_PARCELS_MAX 262144u
#define SINK_PENDING_RETRY_MS    1u
#define SESSION_NAMESPACE        "urn:ietf:params:xml:ns:xmpp-session"
#define PING_NAMESPACE           "urn:xmpp:ping"
#define STANZAS_NAMESPACE        "urn:ietf:params:xml:ns:xmpp-stanzas"
#define CLIENT_NAMESPACE         "jabber:client"

typedef enum sink_mechanism {
    SINK_SCRAM_SHA_256 = 0,
    SINK_SCRAM_SHA_1,
    SINK_PLAIN,
    SINK_ANONYMOUS,
    SINK_MECHANISM_COUNT
} sink_mechanism;

static const char *const mechanism_names[SINK_MECHANISM_COUNT] = {"SCRAM-SHA-256", "SCRAM-SHA-1",
                                                                  "PLAIN", "ANONYMOUS"};
static const char *const mechanism_keys[SINK_MECHANISM_COUNT] = {"scram_sha_256", "scram_sha_1",
                                                                 "plain", "anonymous"};

typedef enum sink_state {
    SINK_HEADER = 0, /* awaiting the stream header */
    SINK_AUTH,       /* awaiting <auth/> */
    SINK_SCRAM,      /* server-first sent, awaiting <response/> */
    SINK_RESTART,    /* <success/> sent, awaiting the new header */
    SINK_BIND,       /* awaiting the bind iq */
    SINK_BOUND,      /* a session: stanzas are routed */
    SINK_CLOSED,     /* our closing tag is queued: input ignored */
} sink_state;

/* What one reactor did; read by the main thread after the threads exit. */
typedef struct sink_counters {
    uint64_t accepted, closed, streams, restarts;
    uint64_t sasl_success[SINK_MECHANISM_COUNT];
    uint64_t sasl_failures, binds, bind_errors, presences;
    uint64_t messages_received, messages_forwarded, messages_forwarded_cross_reactor;
    uint64_t messages_undeliverable, messages_mailbox_full, messages_mailbox_waits;
    uint64_t pings, iq_other, stream_errors;
} sink_counters;

/* A SCRAM exchange between its two messages (allocated for it). */
typedef struct sink_scram {
    scram_hash hash;
    sink_mechanism mechanism;
    size_t client_first_bytes, gs2_header_bytes, server_first_bytes, nonce_bytes;
    char client_first[SINK_SASL_BYTES_MAX];
    char server_first[SINK_SASL_BYTES_MAX];
} sink_scram;

struct sink_reactor;

typedef struct sink_conn {
    xml_tokenizer tokenizer;
    struct sink_reactor *reactor; /* borrowed */
    rx_conn *conn;
    struct sink_conn *bucket_next; /* the reactor's table of bound sessions */
    sink_scram *scram;             /* owned, only during SCRAM */
    uint64_t name_hash;
    uint32_t anonymous_number; /* 0 unless logged in with ANONYMOUS */
    uint8_t state;
    uint8_t name_bytes, resource_bytes;
    bool header_sent, reset_pending, registered;
    char name[SINK_NAME_BYTES_MAX];
    char resource[SINK_RESOURCE_BYTES_MAX];
} sink_conn;

/* A message handed to another reactor: the recipient's name, then the
 * stamped stanza. Transferred to the target, which frees it. */
typedef struct sink_parcel {
    struct sink_parcel *next; /* in the sender's queue while the mailbox is full */
    uint64_t name_hash;
    uint32_t name_bytes, stanza_bytes;
    char data[];
} sink_parcel;

typedef struct sink_reactor {
    unsigned index;
    xml_scratch *scratch; /* owned */
    sink_conn **buckets;  /* owned; chains of bound sessions by name hash */
    uint32_t bucket_mask;
    char *out; /* owned: one element being built */
    size_t out_capacity;
    uint64_t next_stream;
    /* ANONYMOUS names are anon-REACTOR-NUMBER; a number comes back when its
     * session closes, so a reactor never uses more numbers than it has
     * slots and the directory never fills with the names of the past. */
    uint32_t *anonymous_free; /* owned, slots entries */
    uint32_t anonymous_free_count, anonymous_issued, slots;
    /* Parcels the target's mailbox refused, per target, oldest first. */
    sink_parcel **pending_head, **pending_tail; /* owned, one per reactor */
    uint64_t pending_count;
    rx_timer pending_timer;
    sink_counters counters;
} sink_reactor;

/* One slot of the directory: key 0 is free; reactor 0 is offline, else the
 * holding reactor's index + 1. A key once claimed keeps its slot. */
typedef struct sink_directory_entry {
    _Atomic uint64_t key;
    _Atomic uint32_t reactor;
} sink_directory_entry;

typedef struct sink_options {
    rx_options runtime;
    const char *address;
    uint64_t port;
    const char *domain;
    const char *password;
    const char *json_path;
} sink_options;

typedef struct sink {
    sink_options options;
    size_t domain_bytes, password_bytes;
    scram_keys keys_sha1, keys_sha256;
    sink_reactor *reactors; /* owned */
    unsigned reactor_count;
    sink_directory_entry *directory; /* owned */
    uint64_t directory_mask;
    uint64_t started_us, stopped_us;
    uint16_t port;
} sink;

/* The one sink of the process; set before the reactors start. */
static sink *the_sink;

static const char features_auth[] =
    "<stream:features><mechanisms xmlns='" SASL_NAMESPACE "'><mechanism>SCRAM-SHA-256</mechanism>"
    "<mechanism>SCRAM-SHA-1</mechanism><mechanism>PLAIN</mechanism>"
    "<mechanism>ANONYMOUS</mechanism></mechanisms></stream:features>";
static const char features_bind[] =
    "<stream:features><bind xmlns='" BIND_NAMESPACE "'/></stream:features>";
static const char stream_end[] = "</stream:stream>";

/* ------------------------------------------------------------- building */

/* A growing element in the reactor's out buffer. */
typedef struct out_text {
    char *bytes;
    size_t used, capacity;
    bool overflow;
} out_text;

static out_text out_begin(sink_reactor *reactor)
{
    return (out_text){.bytes = reactor->out, .capacity = reactor->out_capacity};
}

static void out_bytes(out_text *out, const char *bytes, size_t length)
{
    if (out->overflow || length > out->capacity - out->used) {
        out->overflow = true;
        return;
    }
    memcpy(out->bytes + out->used, bytes, length);
    out->used += length;
}

static void out_string(out_text *out, const char *text)
{
    out_bytes(out, text, strlen(text));
}

/* " name='value'", value as written in a view (already escaped): quoted
 * with the quote it does not contain. */
static void out_attribute(out_text *out, const char *name, const char *value, size_t value_bytes)
{
    const char *quote = memchr(value, '\'', value_bytes) != NULL ? "\"" : "'";
    out_string(out, " ");
    out_string(out, name);
    out_string(out, "=");
    out_string(out, quote);
    out_bytes(out, value, value_bytes);
    out_string(out, quote);
}

/* name@domain/resource of a bound session. */
static void out_full_jid(out_text *out, const sink_conn *session)
{
    out_bytes(out, session->name, session->name_bytes);
    out_string(out, "@");
    out_bytes(out, the_sink->options.domain, the_sink->domain_bytes);
    out_string(out, "/");
    out_bytes(out, session->resource, session->resource_bytes);
}

/* Queues bytes; a refused send has already closed the connection or will. */
static void sink_send(sink_conn *session, const char *bytes, size_t length)
{
    rx_status status = rx_conn_send(session->conn, bytes, length);
    if (status != RX_OK && status != RX_ERR_FULL && status != RX_ERR_CLOSED)
        rx_conn_abort(session->conn);
}

static void sink_send_out(sink_conn *session, const out_text *out)
{
    if (out->overflow) {
        rx_conn_abort(session->conn);
        return;
    }
    sink_send(session, out->bytes, out->used);
}

/* ------------------------------------------------------------- viewing */

static bool valid_name(const char *name, size_t bytes, size_t bytes_max)
{
    if (bytes == 0 || bytes >= bytes_max)
        return false;
    for (size_t i = 0; i < bytes; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-' || c == '+';
        if (!ok)
            return false;
    }
    return true;
}

static uint64_t name_hash_of(const char *name, size_t bytes)
{
    uint64_t hash = 14695981039346656037ull;
    for (size_t i = 0; i < bytes; i++)
        hash = (hash ^ (uint8_t)name[i]) * 1099511628211ull;
    return hash | 1u; /* 0 marks a free directory slot */
}

/* ----------------------------------------------------------- directory */

/* Says reactor holds name (hash). false when the directory is full. */
static bool directory_claim(uint64_t hash, unsigned reactor)
{
    sink_directory_entry *directory = the_sink->directory;
    uint64_t mask = the_sink->directory_mask;
    for (uint64_t probe = 0; probe <= mask; probe++) {
        sink_directory_entry *entry = &directory[(hash + probe) & mask];
        uint64_t key = atomic_load_explicit(&entry->key, memory_order_acquire);
        if (key == 0 && atomic_compare_exchange_strong_explicit(
                            &entry->key, &key, hash, memory_order_acq_rel, memory_order_acquire))
            key = hash;
        if (key == hash) {
            atomic_store_explicit(&entry->reactor, reactor + 1, memory_order_release);
            return true;
        }
    }
    return false;
}

static sink_directory_entry *directory_find(uint64_t hash)
{
    sink_directory_entry *directory = the_sink->directory;
    uint64_t mask = the_sink->directory_mask;
    for (uint64_t probe = 0; probe <= mask; probe++) {
        sink_directory_entry *entry = &directory[(hash + probe) & mask];
        uint64_t key = atomic_load_explicit(&entry->key, memory_order_acquire);
        if (key == hash)
            return entry;
        if (key == 0)
            return NULL;
    }
    return NULL;
}

/* The reactor holding name (hash), or -1 when nobody does. */
static int directory_lookup(uint64_t hash)
{
    sink_directory_entry *entry = directory_find(hash);
    uint32_t reactor =
        entry == NULL ? 0 : atomic_load_explicit(&entry->reactor, memory_order_acquire);
    return reactor == 0 ? -1 : (int)reactor - 1;
}

/* Forgets that reactor holds name (hash), unless another took it since. */
static void directory_release(uint64_t hash, unsigned reactor)
{
    sink_directory_entry *entry = directory_find(hash);
    uint32_t expected = reactor + 1;
    if (entry != NULL)
        (void)atomic_compare_exchange_strong_explicit(&entry->reactor, &expected, 0,
                                                      memory_order_acq_rel, memory_order_relaxed);
}

/* ------------------------------------------------------ session tables */

static sink_conn *table_find(sink_reactor *reactor, uint64_t hash, const char *name, size_t bytes)
{
    for (sink_conn *at = reactor->buckets[hash & reactor->bucket_mask]; at != NULL;
         at = at->bucket_next)
        if (at->name_hash == hash && at->name_bytes == bytes && memcmp(at->name, name, bytes) == 0)
            return at;
    return NULL;
}

static void table_remove(sink_conn *session)
{
    sink_reactor *reactor = session->reactor;
    sink_conn **link = &reactor->buckets[session->name_hash & reactor->bucket_mask];
    while (*link != NULL && *link != session)
        link = &(*link)->bucket_next;
    if (*link == session)
        *link = session->bucket_next;
    session->bucket_next = NULL;
    session->registered = false;
    directory_release(session->name_hash, reactor->index);
}

/* Makes session the one that receives its name's messages (the last bind
 * of a name wins). false when the directory is full. */
static bool table_insert(sink_conn *session)
{
    sink_reactor *reactor = session->reactor;
    session->name_hash = name_hash_of(session->name, session->name_bytes);
    sink_conn *previous =
        table_find(reactor, session->name_hash, session->name, session->name_bytes);
    if (previous != NULL)
        table_remove(previous);
    if (!directory_claim(session->name_hash, reactor->index))
        return false;
    sink_conn **bucket = &reactor->buckets[session->name_hash & reactor->bucket_mask];
    session->bucket_next = *bucket;
    *bucket = session;
    session->registered = true;
    return true;
}

/* ------------------------------------------------------------- streams */

/* Sends the stream header (with features, unless NULL). */
static void send_header(sink_conn *session, const char *features)
{
    sink_reactor *reactor = session->reactor;
    char id[32];
    snprintf(id, sizeof id, "%u-%" PRIu64, reactor->index, ++reactor->next_stream);
    out_text out = out_begin(reactor);
    out_string(&out, "<?xml version='1.0'?><stream:stream xmlns='" CLIENT_NAMESPACE
                     "' xmlns:stream='" STREAM_NAMESPACE "' version='1.0'");
    out_attribute(&out, "id", id, strlen(id));
    out_attribute(&out, "from", the_sink->options.domain, the_sink->domain_bytes);
    out_string(&out, ">");
    if (features != NULL)
        out_string(&out, features);
    session->header_sent = true;
    sink_send_out(session, &out);
}

/* A stream error with condition (an RFC 6120 name), then the close. */
static void stream_fail(sink_conn *session, const char *condition)
{
    session->reactor->counters.stream_errors++;
    if (!session->header_sent)
        send_header(session, NULL);
    out_text out = out_begin(session->reactor);
    out_string(&out, "<stream:error><");
    out_string(&out, condition);
    out_string(&out, " xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>");
    out_string(&out, stream_end);
    sink_send_out(session, &out);
    session->state = SINK_CLOSED;
    rx_conn_close(session->conn);
}

/* The client closed its stream: close ours. */
static void stream_finish(sink_conn *session)
{
    sink_send(session, stream_end, sizeof stream_end - 1);
    session->state = SINK_CLOSED;
    rx_conn_close(session->conn);
}

static void on_stream_open(sink_conn *session)
{
    if (!xmpp_slice_is(xml_stream_default_namespace(&session->tokenizer), CLIENT_NAMESPACE)) {
        stream_fail(session, "invalid-namespace");
        return;
    }
    if (session->state == SINK_HEADER) {
        session->reactor->counters.streams++;
        session->state = SINK_AUTH;
        send_header(session, features_auth);
    } else {
        session->reactor->counters.restarts++;
        session->state = SINK_BIND;
        send_header(session, features_bind);
    }
}

/* ---------------------------------------------------------------- SASL */

static void sasl_failure(sink_conn *session, const char *condition)
{
    session->reactor->counters.sasl_failures++;
    free(session->scram);
    session->scram = NULL;
    session->state = SINK_AUTH; /* RFC 6120 6.4.5: the client may try again */
    out_text out = out_begin(session->reactor);
    out_string(&out, "<failure xmlns='" SASL_NAMESPACE "'><");
    out_string(&out, condition);
    out_string(&out, "/></failure>");
    sink_send_out(session, &out);
}

/* <success/> with optional additional data; the stream restarts. */
static void sasl_success(sink_conn *session, sink_mechanism mechanism, const char *data,
                         size_t data_bytes)
{
    session->reactor->counters.sasl_success[mechanism]++;
    free(session->scram);
    session->scram = NULL;
    out_text out = out_begin(session->reactor);
    out_string(&out, "<success xmlns='" SASL_NAMESPACE "'>");
    char encoded[SINK_SASL_BYTES_MAX * 4 / 3 + 8];
    if (data_bytes > 0 && data_bytes <= SINK_SASL_BYTES_MAX)
        out_bytes(&out, encoded,
                  EVP_EncodeBlock((uint8_t *)encoded, (const uint8_t *)data, data_bytes));
    out_string(&out, "</success>");
    sink_send_out(session, &out);
    session->state = SINK_RESTART;
    session->header_sent = false;
    session->reset_pending = true;
}

static bool set_name(sink_conn *session, const char *name, size_t bytes)
{
    if (!valid_name(name, bytes, SINK_NAME_BYTES_MAX))
        return false;
    memcpy(session->name, name, bytes);
    session->name_bytes = (uint8_t)bytes;
    return true;
}

/* PLAIN (RFC 4616): [authzid] NUL authcid NUL password. */
static void auth_plain(sink_conn *session, const char *message, size_t bytes)
{
    const char *first_nul = memchr(message, '\0', bytes);
    const char *second_nul =
        first_nul == NULL ? NULL
                          : memchr(first_nul + 1, '\0', bytes - (size_t)(first_nul + 1 - message));
    if (second_nul == NULL) {
        sasl_failure(session, "malformed-request");
        return;
    }
    const char *name = first_nul + 1;
    size_t name_bytes = (size_t)(second_nul - name);
    const char *password = second_nul + 1;
    size_t password_bytes = bytes - (size_t)(password - message);
    size_t authzid_bytes = (size_t)(first_nul - message);
    if (authzid_bytes > 0 &&
        (authzid_bytes != name_bytes || memcmp(message, name, name_bytes) != 0)) {
        sasl_failure(session, "invalid-authzid");
        return;
    }
    if (!set_name(session, name, name_bytes) || password_bytes != the_sink->password_bytes ||
        CRYPTO_memcmp(password, the_sink->options.password, password_bytes) != 0) {
        sasl_failure(session, "not-authorized");
        return;
    }
    sasl_success(session, SINK_PLAIN, NULL, 0);
}

static void auth_anonymous(sink_conn *session)
{
    sink_reactor *reactor = session->reactor;
    uint32_t number = reactor->anonymous_free_count > 0
                          ? reactor->anonymous_free[--reactor->anonymous_free_count]
                          : ++reactor->anonymous_issued;
    char name[SINK_NAME_BYTES_MAX];
    int bytes = snprintf(name, sizeof name, "anon-%u-%" PRIu32, reactor->index, number);
    session->anonymous_number = number;
    if (bytes <= 0 || !set_name(session, name, (size_t)bytes)) {
        sasl_failure(session, "temporary-auth-failure");
        return;
    }
    sasl_success(session, SINK_ANONYMOUS, NULL, 0);
}

/* SCRAM client-first: answer with server-first. */
static void auth_scram(sink_conn *session, sink_mechanism mechanism, const char *message,
                       size_t bytes)
{
    scram_client_first first;
    scram_result result = scram_client_first_parse(message, bytes, &first);
    if (result != SCRAM_OK || first.cbind == SCRAM_CBIND_REQUIRED) {
        sasl_failure(session, "malformed-request");
        return;
    }
    char name[SINK_NAME_BYTES_MAX];
    size_t name_bytes = 0;
    if (first.authzid.len > 0 ||
        scram_saslname_unescape(first.username.ptr, first.username.len, name, sizeof name,
                                &name_bytes) != SCRAM_OK ||
        !set_name(session, name, name_bytes)) {
        sasl_failure(session, first.authzid.len > 0 ? "invalid-authzid" : "not-authorized");
        return;
    }
    sink_scram *scram = calloc(1, sizeof *scram);
    if (scram == NULL) {
        sasl_failure(session, "temporary-auth-failure");
        return;
    }
    session->scram = scram;
    scram->mechanism = mechanism;
    scram->hash = mechanism == SINK_SCRAM_SHA_1 ? SCRAM_HASH_SHA1 : SCRAM_HASH_SHA256;
    memcpy(scram->client_first, message, bytes);
    scram->client_first_bytes = bytes;
    scram->gs2_header_bytes = first.gs2_header.len;
    char server_nonce[64];
    size_t server_nonce_bytes = 0;
    result = scram_nonce_make(SINK_NONCE_RANDOM_BYTES, server_nonce, sizeof server_nonce,
                              &server_nonce_bytes);
    scram_slice server_part = {server_nonce, server_nonce_bytes};
    if (result == SCRAM_OK)
        result = scram_server_first_build((scram_slice){first.nonce.ptr, first.nonce.len},
                                          server_part, (const unsigned char *)SINK_SCRAM_SALT,
                                          sizeof SINK_SCRAM_SALT - 1, SINK_SCRAM_ITERATIONS,
                                          scram->server_first, sizeof scram->server_first,
                                          &scram->server_first_bytes);
    if (result != SCRAM_OK) {
        sasl_failure(session, "temporary-auth-failure");
        return;
    }
    scram->nonce_bytes = first.nonce.len + server_nonce_bytes;
    session->state = SINK_SCRAM;
    out_text out = out_begin(session->reactor);
    char encoded[SINK_SASL_BYTES_MAX * 4 / 3 + 8];
    out_string(&out, "<challenge xmlns='" SASL_NAMESPACE "'>");
    out_bytes(&out, encoded,
              EVP_EncodeBlock((uint8_t *)encoded, (const uint8_t *)scram->server_first,
                              scram->server_first_bytes));
    out_string(&out, "</challenge>");
    sink_send_out(session, &out);
}

/* SCRAM client-final: check the proof, answer with the verifier. */
static void scram_response(sink_conn *session, const xml_view *view)
{
    sink_scram *scram = session->scram;
    char message[SINK_SASL_BYTES_MAX];
    size_t bytes = 0;
    scram_client_final final;
    if (!xmpp_sasl_decode(view, message, sizeof message, &bytes) ||
        scram_client_final_parse(message, bytes, &final) != SCRAM_OK) {
        sasl_failure(session, "malformed-request");
        return;
    }
    scram_slice nonce = {scram->server_first + 2, scram->nonce_bytes}; /* after "r=" */
    scram_slice gs2_header = {scram->client_first, scram->gs2_header_bytes};
    scram_result result = scram_client_final_check(&final, nonce, gs2_header, NULL, 0);
    scram_auth_message auth_message = {
        .client_first_bare = {scram->client_first + scram->gs2_header_bytes,
                              scram->client_first_bytes - scram->gs2_header_bytes},
        .server_first = {scram->server_first, scram->server_first_bytes},
        .client_final_without_proof = final.without_proof,
    };
    const scram_keys *keys =
        scram->hash == SCRAM_HASH_SHA1 ? &the_sink->keys_sha1 : &the_sink->keys_sha256;
    unsigned char signature[SCRAM_HASH_BYTES_MAX];
    if (result == SCRAM_OK)
        result = scram_server_verify_proof(scram->hash, keys->stored_key, keys->server_key,
                                           &auth_message, final.proof, final.proof_len, signature);
    char server_final[SINK_SASL_BYTES_MAX];
    size_t server_final_bytes = 0;
    if (result == SCRAM_OK)
        result = scram_server_final_build(scram->hash, signature, server_final, sizeof server_final,
                                          &server_final_bytes);
    if (result != SCRAM_OK) {
        sasl_failure(session, scram_result_sasl_condition(result));
        return;
    }
    sasl_success(session, scram->mechanism, server_final, server_final_bytes);
}

/* <auth mechanism='...'>: start the mechanism. */
static void on_auth(sink_conn *session, const xml_view *view)
{
    xml_attribute attribute;
    int mechanism = -1;
    if (xml_element_attribute(view, xml_view_root(view), "mechanism", 9, &attribute))
        for (int i = 0; i < SINK_MECHANISM_COUNT; i++)
            if (xmpp_slice_is(attribute.raw_value, mechanism_names[i]))
                mechanism = i;
    char message[SINK_SASL_BYTES_MAX];
    size_t bytes = 0;
    if (mechanism < 0) {
        sasl_failure(session, "invalid-mechanism");
    } else if (!xmpp_sasl_decode(view, message, sizeof message, &bytes)) {
        sasl_failure(session, "incorrect-encoding");
    } else if (mechanism == SINK_PLAIN) {
        auth_plain(session, message, bytes);
    } else if (mechanism == SINK_ANONYMOUS) {
        auth_anonymous(session);
    } else {
        auth_scram(session, (sink_mechanism)mechanism, message, bytes);
    }
}

/* ------------------------------------------------------------------ iq */

/* <iq type='result|error' id=ID [to=JID] [from=domain]>inner</iq> */
static void iq_answer(sink_conn *session, const xml_view *view, const char *type, const char *inner)
{
    xml_routing routing;
    xml_view_routing(view, &routing);
    out_text out = out_begin(session->reactor);
    out_string(&out, "<iq");
    out_attribute(&out, "type", type, strlen(type));
    if (routing.has_id)
        out_attribute(&out, "id", routing.id.raw_value.ptr, routing.id.raw_value.len);
    if (routing.has_to)
        out_attribute(&out, "from", routing.to.raw_value.ptr, routing.to.raw_value.len);
    if (inner == NULL) {
        out_string(&out, "/>");
    } else {
        out_string(&out, ">");
        out_string(&out, inner);
        out_string(&out, "</iq>");
    }
    sink_send_out(session, &out);
}

static void iq_error(sink_conn *session, const xml_view *view, const char *error_type,
                     const char *condition)
{
    char inner[160];
    snprintf(inner, sizeof inner, "<error type='%s'><%s xmlns='" STANZAS_NAMESPACE "'/></error>",
             error_type, condition);
    iq_answer(session, view, "error", inner);
}

static bool iq_is_request(const xml_view *view)
{
    xml_attribute type;
    return xml_element_attribute(view, xml_view_root(view), "type", 4, &type) &&
           (xmpp_slice_is(type.raw_value, "get") || xmpp_slice_is(type.raw_value, "set"));
}

/* The bind iq: take the resource (or make one), answer with the JID. */
static void on_bind(sink_conn *session, const xml_view *view)
{
    xml_node_id root = xml_view_root(view);
    xml_node_id bind = xmpp_first_child_element(view, root);
    if (!xmpp_named(view, root, "iq", CLIENT_NAMESPACE) || bind == XML_NODE_NONE ||
        !xmpp_named(view, bind, "bind", BIND_NAMESPACE) || !iq_is_request(view)) {
        stream_fail(session, "not-authorized");
        return;
    }
    xml_node_id resource = xml_element_child(view, bind, "resource", 8, NULL, 0);
    char buffer[SINK_RESOURCE_BYTES_MAX];
    xml_slice text = {NULL, 0};
    if (resource != XML_NODE_NONE &&
        !xml_element_text(view, resource, buffer, sizeof buffer, &text))
        text.len = SINK_RESOURCE_BYTES_MAX; /* too long: refused below */
    if (text.len == 0) {
        int bytes = snprintf(session->resource, sizeof session->resource, "sink-%" PRIu64,
                             session->reactor->next_stream);
        session->resource_bytes = (uint8_t)bytes;
    } else if (valid_name(text.ptr, text.len, SINK_RESOURCE_BYTES_MAX)) {
        memcpy(session->resource, text.ptr, text.len);
        session->resource_bytes = (uint8_t)text.len;
    } else {
        session->reactor->counters.bind_errors++;
        iq_error(session, view, "modify", "bad-request");
        return;
    }
    if (!table_insert(session)) {
        session->reactor->counters.bind_errors++;
        iq_error(session, view, "wait", "resource-constraint");
        return;
    }
    session->reactor->counters.binds++;
    session->state = SINK_BOUND;
    rx_conn_handshake_done(session->conn);
    out_text out = out_begin(session->reactor);
    xml_routing routing;
    xml_view_routing(view, &routing);
    out_string(&out, "<iq type='result'");
    if (routing.has_id)
        out_attribute(&out, "id", routing.id.raw_value.ptr, routing.id.raw_value.len);
    out_string(&out, "><bind xmlns='" BIND_NAMESPACE "'><jid>");
    out_full_jid(&out, session);
    out_string(&out, "</jid></bind></iq>");
    sink_send_out(session, &out);
}

static void on_iq(sink_conn *session, const xml_view *view)
{
    if (!iq_is_request(view))
        return; /* results and errors: nothing asked them */
    xml_node_id child = xmpp_first_child_element(view, xml_view_root(view));
    if (child != XML_NODE_NONE && (xmpp_named(view, child, "ping", PING_NAMESPACE) ||
                                   xmpp_named(view, child, "session", SESSION_NAMESPACE))) {
        session->reactor->counters.pings++;
        iq_answer(session, view, "result", NULL);
        return;
    }
    session->reactor->counters.iq_other++;
    iq_error(session, view, "cancel", "service-unavailable");
}

/* ------------------------------------------------------------- messages */

/* Writes the stanza with from='sender's full JID' (replacing any 'from')
 * into the reactor's out buffer. */
static out_text stamp(sink_conn *sender, const xml_view *view, const xml_routing *routing)
{
    xml_slice bytes = xml_view_bytes(view);
    uint32_t name_end = xml_element_name_end(view, xml_view_root(view));
    out_text out = out_begin(sender->reactor);
    out_bytes(&out, bytes.ptr, name_end);
    out_string(&out, " from='");
    out_full_jid(&out, sender);
    out_string(&out, "'");
    if (routing->has_from) {
        out_bytes(&out, bytes.ptr + name_end, routing->from.whitespace_offset - name_end);
        out_bytes(&out, bytes.ptr + routing->from.end_offset, bytes.len - routing->from.end_offset);
    } else {
        out_bytes(&out, bytes.ptr + name_end, bytes.len - name_end);
    }
    return out;
}

/* Tells the sender its message had nowhere to go (never for errors). */
static void bounce(sink_conn *sender, const xml_view *view, const xml_routing *routing,
                   const char *condition)
{
    if (routing->has_type && xmpp_slice_is(routing->type.raw_value, "error"))
        return;
    out_text out = out_begin(sender->reactor);
    out_string(&out, "<message type='error'");
    if (routing->has_to)
        out_attribute(&out, "from", routing->to.raw_value.ptr, routing->to.raw_value.len);
    if (routing->has_id)
        out_attribute(&out, "id", routing->id.raw_value.ptr, routing->id.raw_value.len);
    out_string(&out, " to='");
    out_full_jid(&out, sender);
    out_string(&out, "'><error type='cancel'><");
    out_string(&out, condition);
    out_string(&out, " xmlns='" STANZAS_NAMESPACE "'/></error></message>");
    sink_send_out(sender, &out);
    (void)view;
}

/* Runs on the recipient's reactor: message.pointer is a sink_parcel. */
static void deliver_parcel(const rx_message *message)
{
    sink_parcel *parcel = message->pointer;
    sink_reactor *reactor = &the_sink->reactors[rx_reactor_index(rx_reactor_current())];
    sink_conn *recipient = table_find(reactor, parcel->name_hash, parcel->data, parcel->name_bytes);
    if (recipient == NULL || recipient->state != SINK_BOUND) {
        reactor->counters.messages_undeliverable++;
    } else {
        reactor->counters.messages_forwarded++;
        reactor->counters.messages_forwarded_cross_reactor++;
        sink_send(recipient, parcel->data + parcel->name_bytes, parcel->stanza_bytes);
    }
    free(parcel);
}

/* Hands the stamped stanza to reactor target; false when it could not. */
/* Posts the oldest parcels queued for target until its mailbox refuses;
 * a target that has exited (shutdown) drops them. */
static void pending_flush(sink_reactor *reactor, unsigned target)
{
    while (reactor->pending_head[target] != NULL) {
        sink_parcel *parcel = reactor->pending_head[target];
        rx_message message = {.function = deliver_parcel, .pointer = parcel};
        rx_status status = rx_post(target, &message);
        if (status == RX_ERR_FULL)
            return;
        reactor->pending_head[target] = parcel->next;
        reactor->pending_count--;
        if (status != RX_OK) {
            reactor->counters.messages_undeliverable++;
            free(parcel);
        }
    }
    reactor->pending_tail[target] = NULL;
}

static void on_pending_timer(rx_timer *timer, void *argument)
{
    sink_reactor *reactor = argument;
    for (unsigned target = 0; target < the_sink->reactor_count; target++)
        pending_flush(reactor, target);
    if (reactor->pending_count > 0)
        rx_timer_arm(timer, SINK_PENDING_RETRY_MS);
}

/* Hands the stamped stanza to reactor target, behind what is queued for it;
 * false when the queue is at its bound (or memory ran out). */
static bool post_parcel(sink_reactor *reactor, unsigned target, uint64_t hash, const char *name,
                        size_t name_bytes, const out_text *stanza)
{
    pending_flush(reactor, target);
    if (reactor->pending_count >= SINK_PENDING_PARCELS_MAX)
        return false;
    sink_parcel *parcel = malloc(sizeof *parcel + name_bytes + stanza->used);
    if (parcel == NULL)
        return false;
    parcel->next = NULL;
    parcel->name_hash = hash;
    parcel->name_bytes = (uint32_t)name_bytes;
    parcel->stanza_bytes = (uint32_t)stanza->used;
    memcpy(parcel->data, name, name_bytes);
    memcpy(parcel->data + name_bytes, stanza->bytes, stanza->used);
    if (reactor->pending_head[target] == NULL) {
        rx_message message = {.function = deliver_parcel, .pointer = parcel};
        rx_status status = rx_post(target, &message);
        if (status == RX_OK)
            return true;
        if (status != RX_ERR_FULL) {
            free(parcel);
            return false;
        }
    }
    if (reactor->pending_tail[target] != NULL)
        reactor->pending_tail[target]->next = parcel;
    else
        reactor->pending_head[target] = parcel;
    reactor->pending_tail[target] = parcel;
    reactor->pending_count++;
    reactor->counters.messages_mailbox_waits++;
    if (!rx_timer_armed(&reactor->pending_timer))
        rx_timer_arm(&reactor->pending_timer, SINK_PENDING_RETRY_MS);
    return true;
}

/* The local part of to='name@domain[/resource]' when domain is ours. */
static bool local_part_of(const xml_routing *routing, xml_slice *name)
{
    if (!routing->has_to || routing->to.needs_unescape)
        return false;
    xml_slice to = routing->to.raw_value;
    const char *at = memchr(to.ptr, '@', to.len);
    if (at == NULL)
        return false;
    const char *domain = at + 1;
    const char *slash = memchr(domain, '/', to.len - (size_t)(domain - to.ptr));
    size_t domain_bytes = (slash != NULL ? slash : to.ptr + to.len) - domain;
    *name = (xml_slice){to.ptr, (size_t)(at - to.ptr)};
    return domain_bytes == the_sink->domain_bytes &&
           memcmp(domain, the_sink->options.domain, domain_bytes) == 0 && name->len > 0;
}

static void on_message(sink_conn *sender, const xml_view *view)
{
    sink_reactor *reactor = sender->reactor;
    reactor->counters.messages_received++;
    xml_routing routing;
    xml_view_routing(view, &routing);
    xml_slice name;
    if (!local_part_of(&routing, &name)) {
        reactor->counters.messages_undeliverable++;
        bounce(sender, view, &routing, "service-unavailable");
        return;
    }
    uint64_t hash = name_hash_of(name.ptr, name.len);
    sink_conn *recipient = table_find(reactor, hash, name.ptr, name.len);
    int target = recipient != NULL ? (int)reactor->index : directory_lookup(hash);
    if (target < 0 || (recipient == NULL && target == (int)reactor->index)) {
        reactor->counters.messages_undeliverable++;
        bounce(sender, view, &routing, "service-unavailable");
        return;
    }
    out_text stanza = stamp(sender, view, &routing);
    if (stanza.overflow) {
        reactor->counters.messages_undeliverable++;
        bounce(sender, view, &routing, "policy-violation");
    } else if (recipient != NULL) {
        reactor->counters.messages_forwarded++;
        sink_send(recipient, stanza.bytes, stanza.used);
    } else if (!post_parcel(reactor, (unsigned)target, hash, name.ptr, name.len, &stanza)) {
        reactor->counters.messages_mailbox_full++;
        bounce(sender, view, &routing, "resource-constraint");
    }
}

/* ------------------------------------------------------------ dispatch */

static void on_bound_stanza(sink_conn *session, const xml_view *view)
{
    xml_node_id root = xml_view_root(view);
    xml_slice ns = xml_element_namespace(view, root);
    if (!xmpp_slice_is(ns, CLIENT_NAMESPACE)) {
        stream_fail(session, "unsupported-stanza-type");
    } else if (xmpp_slice_is(xml_element_name(view, root), "message")) {
        on_message(session, view);
    } else if (xmpp_slice_is(xml_element_name(view, root), "presence")) {
        session->reactor->counters.presences++; /* no roster: nothing to fan out */
    } else if (xmpp_slice_is(xml_element_name(view, root), "iq")) {
        on_iq(session, view);
    } else {
        stream_fail(session, "unsupported-stanza-type");
    }
}

static void on_stanza(sink_conn *session, const xml_view *view)
{
    xml_node_id root = xml_view_root(view);
    switch (session->state) {
    case SINK_AUTH:
        if (xmpp_named(view, root, "auth", SASL_NAMESPACE))
            on_auth(session, view);
        else
            stream_fail(session, "not-authorized");
        break;
    case SINK_SCRAM:
        if (xmpp_named(view, root, "response", SASL_NAMESPACE))
            scram_response(session, view);
        else if (xmpp_named(view, root, "abort", SASL_NAMESPACE))
            sasl_failure(session, "aborted");
        else
            stream_fail(session, "not-authorized");
        break;
    case SINK_BIND:
        on_bind(session, view);
        break;
    case SINK_BOUND:
        on_bound_stanza(session, view);
        break;
    default:
        stream_fail(session, "not-authorized");
        break;
    }
}

/* ------------------------------------------------------------ callbacks */

static void sink_on_open(rx_conn *conn, void *listener_context)
{
    (void)listener_context;
    sink_reactor *reactor = &the_sink->reactors[rx_conn_reactor_index(conn)];
    sink_conn *session = calloc(1, sizeof *session);
    if (session == NULL) {
        rx_conn_abort(conn);
        return;
    }
    reactor->counters.accepted++;
    session->reactor = reactor;
    session->conn = conn;
    xml_tokenizer_init(&session->tokenizer);
    rx_conn_set_userdata(conn, session);
}

static void sink_on_data(rx_conn *conn, const uint8_t *bytes, size_t length)
{
    sink_conn *session = rx_conn_userdata(conn);
    size_t at = 0;
    while (session != NULL && at < length && session->state != SINK_CLOSED) {
        size_t used = 0;
        xml_view view;
        xml_event event = xml_tokenizer_feed(&session->tokenizer, session->reactor->scratch,
                                             (const char *)bytes + at, length - at, &used, &view);
        at += used;
        if (event == XML_EVENT_STREAM_OPEN)
            on_stream_open(session);
        else if (event == XML_EVENT_STANZA)
            on_stanza(session, &view);
        else if (event == XML_EVENT_STREAM_CLOSE)
            stream_finish(session);
        else if (event == XML_EVENT_ERROR)
            stream_fail(session,
                        xml_error_condition_name(xml_tokenizer_error(&session->tokenizer)));
        if (session->reset_pending) {
            xml_tokenizer_reset(&session->tokenizer);
            session->reset_pending = false;
        }
    }
}

static void sink_on_close(rx_conn *conn, rx_close_reason reason)
{
    (void)reason;
    sink_conn *session = rx_conn_userdata(conn);
    if (session == NULL)
        return;
    sink_reactor *reactor = session->reactor;
    reactor->counters.closed++;
    if (session->anonymous_number != 0 && reactor->anonymous_free_count < reactor->slots)
        reactor->anonymous_free[reactor->anonymous_free_count++] = session->anonymous_number;
    if (session->registered)
        table_remove(session);
    xml_tokenizer_fini(&session->tokenizer);
    free(session->scram);
    free(session);
}

static void sink_on_shutdown(rx_conn *conn)
{
    sink_conn *session = rx_conn_userdata(conn);
    if (session != NULL && session->state != SINK_CLOSED)
        stream_finish(session);
    else
        rx_conn_close(conn);
}

static const rx_listener_ops sink_ops = {
    .on_open = sink_on_open,
    .on_data = sink_on_data,
    .on_close = sink_on_close,
    .on_shutdown = sink_on_shutdown,
};

/* ------------------------------------------------------------- options */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: " SINK_COMMAND " [options]\n"
            "The cheapest XMPP server for the generator's scenarios: SASL (SCRAM-SHA-256,\n"
            "SCRAM-SHA-1, PLAIN, ANONYMOUS; one password for everyone), bind, presence\n"
            "accepted, messages to user@DOMAIN forwarded, iq ping answered. Run a scenario\n"
            "against it to measure the generator's own ceiling. SIGTERM or SIGINT stop it;\n"
            "it then prints what it counted.\n"
            "  --address ADDR               listener address (default %s)\n"
            "  --port PORT                  listener port (default %u; 0 picks a free one)\n"
            "  --domain NAME                the served domain (default %s)\n"
            "  --password TEXT              every user's password (default %s)\n"
            "  --reactors N                 reactor threads (default: one per core)\n"
            "  --connections-per-reactor N  connection bound per reactor (default: runtime's,\n"
            "                               capped at RLIMIT_NOFILE)\n"
            "  --handshake-timeout-ms MS    accept to bind (default %u)\n"
            "  --idle-timeout-ms MS         silence before a close (default %u)\n"
            "  --no-pin                     do not pin reactor threads to cores\n"
            "  --json FILE                  write the counters as JSON to FILE at exit\n"
            "  --help                       this text\n",
            SINK_DEFAULT_ADDRESS, SINK_DEFAULT_PORT, SINK_DEFAULT_DOMAIN, SINK_DEFAULT_PASSWORD,
            SINK_DEFAULT_TIMEOUT_MS, SINK_DEFAULT_TIMEOUT_MS);
}

static const struct option long_options[] = {
    {"address", required_argument, NULL, 'a'},
    {"port", required_argument, NULL, 'p'},
    {"domain", required_argument, NULL, 'd'},
    {"password", required_argument, NULL, 'w'},
    SERVER_CLI_RUNTIME_LONG_OPTIONS, /* --reactors to --no-pin */
    {"json", required_argument, NULL, 'j'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static bool apply_option(int choice, const char *value, void *context)
{
    sink_options *options = context;
    switch (choice) {
    case 'a':
        options->address = value;
        return true;
    case 'p':
        return cli_parse_unsigned(SINK_COMMAND, "port", value, 0, 65535, &options->port);
    case 'd':
        options->domain = value;
        return true;
    case 'w':
        options->password = value;
        return true;
    case 'j':
        options->json_path = value;
        return true;
    default:
        return server_cli_apply_runtime_option(SINK_COMMAND, long_options, choice, value,
                                               &options->runtime);
    }
}

static bool options_consistent(sink *sink)
{
    sink_options *options = &sink->options;
    sink->domain_bytes = strlen(options->domain);
    sink->password_bytes = strlen(options->password);
    for (size_t i = 0; i < sink->domain_bytes; i++)
        if (!valid_name(options->domain + i, 1, 2)) {
            fprintf(stderr, SINK_COMMAND ": --domain '%s' is not a plain domain name\n",
                    options->domain);
            return false;
        }
    if (sink->domain_bytes == 0 || sink->domain_bytes >= SINK_DOMAIN_BYTES_MAX) {
        fprintf(stderr, SINK_COMMAND ": --domain wants 1 to %u bytes\n", SINK_DOMAIN_BYTES_MAX - 1);
        return false;
    }
    if (sink->password_bytes == 0 || sink->password_bytes > SINK_PASSWORD_BYTES_MAX) {
        fprintf(stderr, SINK_COMMAND ": --password wants 1 to %u bytes\n", SINK_PASSWORD_BYTES_MAX);
        return false;
    }
    return true;
}

/* ---------------------------------------------------------------- setup */

static uint64_t power_of_two_at_least(uint64_t value)
{
    uint64_t result = 1;
    while (result < value)
        result *= 2;
    return result;
}

/* Keys, reactors' tables and the directory, for slots connections per
 * reactor. false when out of memory or the keys cannot be derived. */
static bool sink_prepare(sink *sink, unsigned slots)
{
    const char *password = sink->options.password;
    const unsigned char *salt = (const unsigned char *)SINK_SCRAM_SALT;
    if (scram_keys_derive(SCRAM_HASH_SHA1, password, sink->password_bytes, salt,
                          sizeof SINK_SCRAM_SALT - 1, SINK_SCRAM_ITERATIONS,
                          &sink->keys_sha1) != SCRAM_OK ||
        scram_keys_derive(SCRAM_HASH_SHA256, password, sink->password_bytes, salt,
                          sizeof SINK_SCRAM_SALT - 1, SINK_SCRAM_ITERATIONS,
                          &sink->keys_sha256) != SCRAM_OK)
        return false;
    uint64_t names = (uint64_t)slots * sink->reactor_count * SINK_DIRECTORY_SLOTS_PER_CONNECTION;
    uint64_t capacity =
        power_of_two_at_least(names < SINK_DIRECTORY_MIN ? SINK_DIRECTORY_MIN : names);
    sink->directory = calloc(capacity, sizeof *sink->directory);
    sink->directory_mask = capacity - 1;
    sink->reactors = calloc(sink->reactor_count, sizeof *sink->reactors);
    if (sink->directory == NULL || sink->reactors == NULL)
        return false;
    uint64_t buckets = power_of_two_at_least(slots);
    for (unsigned i = 0; i < sink->reactor_count; i++) {
        sink_reactor *reactor = &sink->reactors[i];
        reactor->index = i;
        reactor->scratch = xml_scratch_create();
        reactor->buckets = calloc(buckets, sizeof *reactor->buckets);
        reactor->bucket_mask = (uint32_t)(buckets - 1);
        reactor->out_capacity = LIMIT_STANZA_BYTES_MAX + SINK_OUT_SLACK_BYTES;
        reactor->out = malloc(reactor->out_capacity);
        reactor->slots = slots;
        reactor->anonymous_free = calloc(slots, sizeof *reactor->anonymous_free);
        reactor->pending_head = calloc(sink->reactor_count, sizeof *reactor->pending_head);
        reactor->pending_tail = calloc(sink->reactor_count, sizeof *reactor->pending_tail);
        rx_timer_init(&reactor->pending_timer, on_pending_timer, reactor);
        if (reactor->scratch == NULL || reactor->buckets == NULL || reactor->out == NULL ||
            reactor->anonymous_free == NULL || reactor->pending_head == NULL ||
            reactor->pending_tail == NULL)
            return false;
    }
    return true;
}

static void sink_free(sink *sink)
{
    for (unsigned i = 0; sink->reactors != NULL && i < sink->reactor_count; i++) {
        sink_reactor *reactor = &sink->reactors[i];
        if (reactor->scratch != NULL)
            xml_scratch_destroy(reactor->scratch);
        free(reactor->buckets);
        free(reactor->out);
        free(reactor->anonymous_free);
        for (unsigned target = 0; reactor->pending_head != NULL && target < sink->reactor_count;
             target++)
            while (reactor->pending_head[target] != NULL) {
                sink_parcel *parcel = reactor->pending_head[target];
                reactor->pending_head[target] = parcel->next;
                free(parcel);
            }
        free(reactor->pending_head);
        free(reactor->pending_tail);
    }
    free(sink->reactors);
    free(sink->directory);
    free(sink);
}

/* --------------------------------------------------------------- report */

static void counters_total(const sink *sink, sink_counters *total)
{
    memset(total, 0, sizeof *total);
    for (unsigned r = 0; r < sink->reactor_count; r++) {
        const sink_counters *c = &sink->reactors[r].counters;
        total->accepted += c->accepted;
        total->closed += c->closed;
        total->streams += c->streams;
        total->restarts += c->restarts;
        for (unsigned m = 0; m < SINK_MECHANISM_COUNT; m++)
            total->sasl_success[m] += c->sasl_success[m];
        total->sasl_failures += c->sasl_failures;
        total->binds += c->binds;
        total->bind_errors += c->bind_errors;
        total->presences += c->presences;
        total->messages_received += c->messages_received;
        total->messages_forwarded += c->messages_forwarded;
        total->messages_forwarded_cross_reactor += c->messages_forwarded_cross_reactor;
        total->messages_undeliverable += c->messages_undeliverable;
        total->messages_mailbox_full += c->messages_mailbox_full;
        total->messages_mailbox_waits += c->messages_mailbox_waits;
        total->pings += c->pings;
        total->iq_other += c->iq_other;
        total->stream_errors += c->stream_errors;
    }
}

typedef struct sink_report {
    const sink *sink;
    sink_counters total;
    bool usage_available;
    tool_usage usage;
} sink_report;

static void report_human(const sink_report *report)
{
    const sink_counters *t = &report->total;
    printf(SINK_COMMAND ": stopped after %.1f s (%u reactor%s, port %u)\n",
           (double)(report->sink->stopped_us - report->sink->started_us) / 1e6,
           report->sink->reactor_count, report->sink->reactor_count == 1 ? "" : "s",
           (unsigned)report->sink->port);
    printf("  connections  accepted %" PRIu64 "  closed %" PRIu64 "\n", t->accepted, t->closed);
    printf("  streams      %" PRIu64 "  restarts %" PRIu64 "  stream errors %" PRIu64 "\n",
           t->streams, t->restarts, t->stream_errors);
    printf("  sasl         ");
    for (unsigned m = 0; m < SINK_MECHANISM_COUNT; m++)
        printf("%s %" PRIu64 "  ", mechanism_names[m], t->sasl_success[m]);
    printf("failed %" PRIu64 "\n", t->sasl_failures);
    printf("  binds        %" PRIu64 "  errors %" PRIu64 "  presences %" PRIu64 "\n", t->binds,
           t->bind_errors, t->presences);
    printf("  messages     received %" PRIu64 "  forwarded %" PRIu64 " (cross-reactor %" PRIu64
           ")  undeliverable %" PRIu64 "\n",
           t->messages_received, t->messages_forwarded, t->messages_forwarded_cross_reactor,
           t->messages_undeliverable);
    printf("  mailboxes    waited for %" PRIu64 "  refused (queue at its bound) %" PRIu64 "\n",
           t->messages_mailbox_waits, t->messages_mailbox_full);
    printf("  iq           pings %" PRIu64 "  other %" PRIu64 "\n", t->pings, t->iq_other);
    if (report->usage_available)
        printf("  sink cpu     user %.3f s  system %.3f s  max rss %.1f MiB\n",
               (double)report->usage.user_us / 1e6, (double)report->usage.system_us / 1e6,
               (double)report->usage.max_rss_bytes / 1048576.0);
}

static void report_body(json_writer *writer, const void *context)
{
    const sink_report *report = context;
    const sink_counters *t = &report->total;
    json_object_begin(writer, "options");
    json_string(writer, "address", report->sink->options.address);
    json_unsigned(writer, "port", report->sink->port);
    json_string(writer, "domain", report->sink->options.domain);
    json_unsigned(writer, "reactors", report->sink->reactor_count);
    json_object_end(writer);
    json_number(writer, "elapsed_s",
                (double)(report->sink->stopped_us - report->sink->started_us) / 1e6);
    json_object_begin(writer, "counters");
    json_unsigned(writer, "accepted", t->accepted);
    json_unsigned(writer, "closed", t->closed);
    json_unsigned(writer, "streams", t->streams);
    json_unsigned(writer, "restarts", t->restarts);
    json_unsigned(writer, "stream_errors", t->stream_errors);
    json_object_begin(writer, "sasl_success");
    for (unsigned m = 0; m < SINK_MECHANISM_COUNT; m++)
        json_unsigned(writer, mechanism_keys[m], t->sasl_success[m]);
    json_object_end(writer);
    json_unsigned(writer, "sasl_failures", t->sasl_failures);
    json_unsigned(writer, "binds", t->binds);
    json_unsigned(writer, "bind_errors", t->bind_errors);
    json_unsigned(writer, "presences", t->presences);
    json_unsigned(writer, "messages_received", t->messages_received);
    json_unsigned(writer, "messages_forwarded", t->messages_forwarded);
    json_unsigned(writer, "messages_forwarded_cross_reactor", t->messages_forwarded_cross_reactor);
    json_unsigned(writer, "messages_undeliverable", t->messages_undeliverable);
    json_unsigned(writer, "messages_mailbox_full", t->messages_mailbox_full);
    json_unsigned(writer, "messages_mailbox_waits", t->messages_mailbox_waits);
    json_unsigned(writer, "pings", t->pings);
    json_unsigned(writer, "iq_other", t->iq_other);
    json_object_end(writer);
    json_object_begin(writer, "tool_usage");
    json_optional_unsigned(writer, "user_cpu_us", report->usage_available, report->usage.user_us);
    json_optional_unsigned(writer, "system_cpu_us", report->usage_available,
                           report->usage.system_us);
    json_optional_unsigned(writer, "max_rss_bytes", report->usage_available,
                           report->usage.max_rss_bytes);
    json_object_end(writer);
}

/* ----------------------------------------------------------------- main */

/* The connection slots each reactor will have: the runtime caps them at
 * RLIMIT_NOFILE, which is first raised as far as the hard limit allows. */
static unsigned slots_per_reactor(const rx_options *runtime)
{
    uint64_t limit = 0;
    if (!system_reserve_descriptors(runtime->connections_per_reactor + SINK_DESCRIPTORS_SPARE,
                                    &limit) &&
        limit < runtime->connections_per_reactor)
        return (unsigned)limit;
    return runtime->connections_per_reactor;
}

/* Runs the listener until a signal stops it; the exit status. */
static int sink_run(sink *sink)
{
    unsigned slots = slots_per_reactor(&sink->options.runtime);
    rx_runtime *runtime = rx_runtime_create(&sink->options.runtime);
    if (runtime == NULL)
        return CLI_EXIT_FAILED;
    sink->reactor_count = rx_runtime_reactor_count(runtime);
    rx_listener *listener = NULL;
    if (!sink_prepare(sink, slots)) {
        fprintf(stderr, SINK_COMMAND ": out of memory or SCRAM keys failed\n");
        rx_runtime_destroy(runtime);
        return CLI_EXIT_FAILED;
    }
    if (rx_runtime_add_listener(runtime, sink->options.address, (uint16_t)sink->options.port,
                                &sink_ops, NULL, &listener) != RX_OK) {
        fprintf(stderr, SINK_COMMAND ": cannot listen on %s port %" PRIu64 "\n",
                sink->options.address, sink->options.port);
        rx_runtime_destroy(runtime);
        return CLI_EXIT_FAILED;
    }
    sink->port = rx_listener_port(listener);
    the_sink = sink;
    rx_status status = rx_runtime_start(runtime);
    sink->started_us = system_now_us();
    if (status == RX_OK) {
        printf(SINK_COMMAND " %s listening on %s:%u with %u reactors\n", STARLING_VERSION,
               sink->options.address, (unsigned)sink->port, sink->reactor_count);
        fflush(stdout);
        rx_runtime_wait(runtime);
    }
    sink->stopped_us = system_now_us();
    rx_runtime_destroy(runtime);
    if (status != RX_OK)
        return CLI_EXIT_FAILED;
    sink_report report = {.sink = sink};
    counters_total(sink, &report.total);
    report.usage_available = system_tool_usage(&report.usage);
    report_human(&report);
    if (sink->options.json_path != NULL &&
        !json_write_report(SINK_COMMAND, sink->options.json_path, STARLING_VERSION, "sink",
                           report_body, &report))
        return CLI_EXIT_FAILED;
    return CLI_EXIT_OK;
}

int bench_sink_main(int argc, char **argv)
{
    sink *sink = calloc(1, sizeof *sink);
    if (sink == NULL) {
        fprintf(stderr, SINK_COMMAND ": out of memory\n");
        return CLI_EXIT_FAILED;
    }
    sink->options = (sink_options){.address = SINK_DEFAULT_ADDRESS,
                                   .port = SINK_DEFAULT_PORT,
                                   .domain = SINK_DEFAULT_DOMAIN,
                                   .password = SINK_DEFAULT_PASSWORD};
    server_cli_runtime_defaults(&sink->options.runtime, SINK_DEFAULT_TIMEOUT_MS);
    int status = cli_parse_options(SINK_COMMAND, argc, argv, long_options, usage, apply_option,
                                   &sink->options);
    if (status == CLI_EXIT_OK)
        status = options_consistent(sink) ? sink_run(sink) : CLI_EXIT_USAGE;
    else if (status == CLI_EXIT_HELP)
        status = CLI_EXIT_OK;
    sink_free(sink);
    return status;
}
