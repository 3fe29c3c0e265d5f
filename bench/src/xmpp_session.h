/*
 * xmpp_session.h: the session machinery shared by the scenarios of
 * starling-bench that log XMPP sessions in (login, reconnect, chat). A run
 * owns K reactors of Starling's runtime; each reactor owns a contiguous
 * share of the sessions and drives their logins (connect, optional TLS,
 * stream, SASL, restart, bind, presence). A scenario is a table of hooks: what to do with
 * stanzas once a session is online, what to do on the main thread after
 * the logins, and what to add to the report. Everything a reactor counts is
 * its own; the main thread reads it only after the reactor threads exited,
 * except each reactor's timeline meter, built to be read every second
 * (bench_timeline.h, xmpp_live.h).
 */
#ifndef STARLING_BENCH_XMPP_SESSION_H
#define STARLING_BENCH_XMPP_SESSION_H

#include "bench/src/bench_json.h"
#include "bench/src/bench_memory.h"
#include "bench/src/bench_plot.h"
#include "bench/src/bench_system.h"
#include "bench/src/bench_timeline.h"
#include "bench/src/histogram.h"
#include "bench/src/tls_client.h"
#include "bench/src/xmpp_wire.h"
#include "proto/scram.h"
#include "proto/xml.h"
#include "server/runtime/rx.h"

#include <arpa/inet.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define SESSION_COUNT_MAX    1000000u
#define SESSION_REACTORS_MAX 64u
#define SESSION_SOURCES_MAX  254u
/* Default sessions per loopback source address (--sources): the kernel's
 * connect() port search gets slow as one source's ephemeral range fills
 * (at 20,000 of 28,232 ports 200,000 logins stalled; see bench/RESULTS.md). */
#define SESSION_SESSIONS_PER_SOURCE 5000u
#define SESSION_DESCRIPTORS_SPARE   64u
#define SESSION_NAME_BYTES_MAX      256u
#define SESSION_PASSWORD_BYTES_MAX  256u
#define SESSION_DOMAIN_BYTES_MAX    255u
#define SESSION_HEADER_BYTES_MAX    512u
#define SESSION_SASL_BYTES_MAX      1024u /* one SASL message before base64 */
#define SESSION_ELEMENT_BYTES_MAX   2048u /* one element we send */
#define SESSION_CONDITIONS_MAX      32u
#define SESSION_CONDITION_BYTES_MAX 48u
#define SESSION_CACHE_ENTRIES_MAX   16384u
#define SESSION_PACE_INTERVAL_MS    10u
#define SESSION_WAIT_STEP_MS        10u
#define SESSION_POST_ATTEMPTS_MAX   1000u
#define SESSION_IDLE_TIMEOUT_MS     86400000u
#define SESSION_LATENCY_US_MAX      3600000000ull
#define TLS_NAMESPACE               "urn:ietf:params:xml:ns:xmpp-tls"

typedef enum login_mechanism {
    MECHANISM_SCRAM_SHA_256 = 0,
    MECHANISM_SCRAM_SHA_1,
    MECHANISM_PLAIN,
    MECHANISM_ANONYMOUS, /* RFC 4505: no user, the server picks the JID */
} login_mechanism;

/* How a session's stream is protected (--tls). */
typedef enum session_tls {
    SESSION_TLS_NONE = 0, /* plaintext */
    SESSION_TLS_STARTTLS, /* RFC 6120 section 5: <starttls/>, <proceed/>, restart */
    SESSION_TLS_DIRECT,   /* XEP-0368: TLS from the first byte, ALPN xmpp-client */
} session_tls;

typedef struct xmpp_options {
    const char *host;
    uint64_t port;
    const char *domain;
    const char *users; /* a pattern with one %d */
    const char *password;
    uint64_t count;
    uint64_t first;
    uint64_t rate_per_second; /* 0: all at once */
    login_mechanism mechanism;
    session_tls tls;
    const char *tls_ca_path; /* NULL: certificates not verified */
    uint64_t reactors;
    uint64_t sources; /* 0: let the kernel pick the source address */
    bool sources_given;
    uint64_t hold_s;
    uint64_t timeout_s;
    const char *json_path;
    const struct xmpp_scenario *scenario; /* borrowed, static */
    uint64_t message_rate_per_second;     /* chat: aggregate --rate, open loop */
    uint64_t window;                      /* chat: --window, closed loop when > 0 */
    uint64_t duration_s;                  /* chat: sending period */
    uint64_t drain_s;                     /* chat: wait for stragglers */
    int progress;                         /* --progress 1, --no-progress 0, -1: if a tty */
    const char *plot_prefix;              /* --plot, NULL: no plots */
    char gnuplot[PLOT_PATH_BYTES_MAX];    /* gnuplot found on PATH for --plot */
    uint64_t server_pid;                  /* --server-pid, 0: none (xmpp_memory.h) */
    uint64_t roster;                      /* presence: contacts per user (--roster) */
    uint64_t measured;                    /* presence: logins timed in phase 2 (--measured) */
    uint64_t measured_rate_per_second;    /* presence: --rate of those logins; 0: at once */
} xmpp_options;

/* Why a session did not get online, or did not stay. */
typedef enum login_failure {
    FAILURE_CONNECT = 0,  /* rx_connect refused or the TCP connect failed */
    FAILURE_STREAM_ERROR, /* the server sent <stream:error/> */
    FAILURE_AUTH,         /* <failure/>, or a SCRAM step or verifier went wrong */
    FAILURE_BIND,         /* the bind iq came back as an error */
    FAILURE_TIMEOUT,      /* a phase did not end within --timeout-s */
    FAILURE_CLOSED,       /* the server closed the stream or connection mid-login */
    FAILURE_IO_ERROR,     /* a socket error, or a send was refused */
    FAILURE_BAD_XML,      /* the server's bytes were not a well-formed stream */
    FAILURE_UNEXPECTED,   /* an element the login did not expect at that point */
    FAILURE_NO_MECHANISM, /* the server did not offer --mechanism */
    FAILURE_DROPPED,      /* an online session closed by the server before the end */
    FAILURE_TLS,          /* STARTTLS refused, or the TLS handshake or a record failed */
    FAILURE_COUNT
} login_failure;

typedef enum login_state {
    STATE_CONNECTING = 0,
    STATE_FEATURES,      /* header sent, awaiting the first <stream:features/> */
    STATE_STARTTLS,      /* <starttls/> sent, awaiting <proceed/> */
    STATE_TLS_HANDSHAKE, /* TLS handshake under way (STARTTLS or direct) */
    STATE_CHALLENGE,     /* SCRAM client-first sent, awaiting <challenge/> */
    STATE_SUCCESS,       /* PLAIN or SCRAM client-final sent, awaiting <success/> */
    STATE_BIND_FEATURES, /* stream restarted, awaiting the second features */
    STATE_BIND,          /* bind iq sent, awaiting its result */
    STATE_ONLINE,
    STATE_FAILED,
} login_state;

typedef struct login_condition {
    uint8_t failure;
    char name[SESSION_CONDITION_BYTES_MAX];
    uint64_t count;
} login_condition;

typedef struct login_conditions {
    login_condition entries[SESSION_CONDITIONS_MAX];
    unsigned used;
    uint64_t other; /* conditions past the table's bound */
} login_conditions;

/* One cached SaltedPassword; salt_bytes 0 marks a free slot. */
typedef struct salted_entry {
    uint8_t hash;
    uint8_t salt_bytes;
    uint32_t iterations;
    unsigned char salt[LIMIT_SCRAM_SALT_BYTES_MAX];
    unsigned char salted_password[SCRAM_HASH_BYTES_MAX];
} salted_entry;

/* What a SCRAM exchange keeps between its messages (allocated for it). */
typedef struct scram_exchange {
    scram_keys keys;
    size_t gs2_header_bytes, client_first_bytes, server_first_bytes, client_final_bytes;
    size_t without_proof_bytes, nonce_bytes;
    char nonce[64];
    char client_first[SESSION_SASL_BYTES_MAX];
    char server_first[SESSION_SASL_BYTES_MAX];
    char client_final[SESSION_SASL_BYTES_MAX];
} scram_exchange;

/* What a reactor counts of one wave of logins. */
typedef struct xmpp_counters {
    histogram *latency_us; /* owned */
    uint64_t online, dropped, last_online_us;
    uint64_t failures[FAILURE_COUNT];
    login_conditions conditions;
} xmpp_counters;

struct xmpp_reactor;

typedef struct xmpp_session {
    struct xmpp_reactor *reactor; /* borrowed */
    rx_conn *conn;                /* NULL unless connected */
    scram_exchange *scram;        /* owned; only during SCRAM */
    tls_client *tls;              /* owned; NULL on a plaintext stream */
    uint64_t index;               /* 0..count-1 over the whole run */
    uint64_t started_us;
    uint8_t state;
    bool closing;  /* we started the close (shutdown) */
    bool dropping; /* reconnect: we aborted it to log it in again */
    xml_tokenizer tokenizer;
} xmpp_session;

struct xmpp_run;

typedef struct xmpp_reactor {
    struct xmpp_run *run; /* borrowed */
    unsigned index;
    xmpp_session *sessions; /* owned, share of them */
    uint64_t first_index, share, started;
    double rate_per_second; /* this reactor's part of --rate; 0: all at once */
    uint64_t start_us;
    rx_timer pace_timer;
    xml_scratch *scratch;    /* owned */
    salted_entry *cache;     /* owned, cache_capacity slots */
    uint32_t cache_capacity; /* power of two */
    uint32_t cache_used;
    uint64_t pbkdf2_runs, cache_hits;
    xmpp_counters counters;   /* of the current wave of logins */
    xmpp_counters first_wave; /* reconnect: the counters before the drop */
    void *scenario_state;     /* owned by the scenario (its hooks free it) */
    timeline_meter meter;     /* what the per-second timeline reads (bench_timeline.h) */
} xmpp_reactor;

typedef struct xmpp_run {
    xmpp_options options;
    rx_runtime *runtime;   /* owned */
    rx_producer *producer; /* owned by the runtime */
    xmpp_reactor *reactors;
    unsigned reactor_count;
    tls_client_context *tls_context; /* owned; NULL without --tls */
    char header[SESSION_HEADER_BYTES_MAX];
    size_t header_bytes;
    char sources[SESSION_SOURCES_MAX][INET_ADDRSTRLEN];
    size_t users_prefix_bytes; /* bytes of the pattern before %d */
    uint64_t start_us, wait_end_us;
    _Atomic uint64_t finished; /* sessions online or failed */
    _Atomic uint64_t online_now;
    uint64_t drop_us;             /* reconnect: when the drop was posted */
    uint64_t first_wave_finished; /* reconnect: finished before the drop */
    uint64_t deferred;            /* sessions start_later keeps out of the first logins */
    /* chat, open loop: the pacer's ticks (bench_chat.c pace_until), how
     * many woke over CHAT_PACE_LATE_US past their deadline, and the latest
     * wake-up: the tool's own stalls, which its latency includes. */
    uint64_t pace_ticks, pace_late_ticks, pace_late_max_us;
    bool usage_available;
    tool_usage usage;
    timeline *timeline;         /* owned; the main thread's alone (see xmpp_live.c) */
    uint64_t timeline_next_us;  /* when the next second closes */
    uint64_t timeline_asked_us; /* when the reactors were asked to rotate, 0: not yet */
    size_t progress_width;      /* widest progress line so far, to overwrite it */

    /* --server-pid (xmpp_memory.h): the samples around the hold. */
    memory_sample memory_before; /* before the first connect */
    memory_sample memory_after;  /* at the end of --hold */
    uint64_t memory_online;      /* sessions online at memory_after */
    uint64_t memory_sampled_us;  /* when memory_after was taken, 0: not yet */
} xmpp_run;

typedef struct xmpp_results {
    uint64_t online, failed, dropped, not_started, pbkdf2_runs, cache_hits;
    uint64_t failures[FAILURE_COUNT];
    login_conditions conditions;
    histogram *latency_us; /* owned: all reactors' merged */
    double all_online_ms;
    double logins_per_second;
} xmpp_results;

/* A scenario: its name and hooks. NULL hooks are skipped. */
typedef struct xmpp_scenario {
    const char *command;     /* "starling-bench chat", prefix of messages */
    const char *name;        /* the JSON report's "scenario" */
    const char *summary;     /* first lines of --help */
    const char *extra_usage; /* the scenario's own options in --help */
    bool pairs;              /* sessions 2k and 2k+1 share a reactor */
    /* Checks the scenario's options; false after a one-line error. */
    bool (*options_check)(xmpp_options *options);
    /* Main thread, before start: allocates reactor->scenario_state; false:
     * out of memory. reactor_free frees it (also after a failed prepare). */
    bool (*reactor_prepare)(xmpp_reactor *reactor);
    void (*reactor_free)(xmpp_reactor *reactor);
    /* True for a session the first logins skip: the scenario starts it
     * (xmpp_session_start) from run_phase; xmpp_wait_for_logins waits for
     * the others only while run->deferred counts them. */
    bool (*start_later)(const xmpp_run *run, uint64_t index);
    /* Reactor thread, the bind just succeeded: writes the session's initial
     * presence into text (capacity bytes); its length, 0 for <presence/>. */
    size_t (*initial_presence)(xmpp_session *session, char *text, size_t capacity);
    /* Reactor thread: a stanza arrived for an online session. */
    void (*on_online_stanza)(xmpp_session *session, const xml_view *view);
    /* Reactor thread: a session the scenario dropped has closed. */
    void (*on_dropped)(xmpp_session *session);
    /* Main thread, after the logins and --hold, before the runtime stops;
     * false when the phase could not run. */
    bool (*run_phase)(xmpp_run *run);
    /* Main thread, after the reactors exited: print and write the scenario's
     * part; succeeded says whether it passed. */
    void (*report_human)(const xmpp_run *run);
    void (*report_json)(json_writer *writer, const xmpp_run *run);
    bool (*succeeded)(const xmpp_run *run);
    /* The scenario records its own latency (chat: per message) into
     * reactor->meter; otherwise login latency goes into the timeline. */
    bool timeline_own_latency;
} xmpp_scenario;

/* Parses argv (after the subcommand) and runs the scenario; the exit status. */
int xmpp_bench_main(int argc, char **argv, const xmpp_scenario *scenario);

/*
 * Parses argv (after the subcommand; argv[0] is skipped) into options for
 * scenario (borrowed, static) without running anything: CLI_EXIT_OK,
 * CLI_EXIT_HELP after --help was printed, or CLI_EXIT_USAGE after one line
 * on stderr. options borrows the strings of argv.
 */
int xmpp_parse_options(int argc, char **argv, const xmpp_scenario *scenario, xmpp_options *options)
    __attribute__((warn_unused_result));

/* Reactor thread: queues bytes (borrowed, copied) on an online or logging-in
 * session's stream, through TLS when the stream has it; false when the
 * connection refused them (it is aborted then). */
bool xmpp_session_write(xmpp_session *session, const void *bytes, size_t length)
    __attribute__((warn_unused_result));

/* Reactor thread: starts (or restarts) the login of a session with no
 * connection. */
void xmpp_session_start(xmpp_reactor *reactor, xmpp_session *session);
/* Posts function to every reactor with pointer = its xmpp_reactor. */
bool xmpp_post_to_reactors(xmpp_run *run, rx_message_fn *function);
void xmpp_sleep_ms(uint64_t milliseconds);
/* Main thread: closes the timeline's second when due (and prints the
 * progress line); cheap when not due. Every main-thread wait calls it. */
void xmpp_timeline_poll(xmpp_run *run);
/* Main thread: sleeps milliseconds, polling the timeline meanwhile. */
void xmpp_wait_ms(xmpp_run *run, uint64_t milliseconds);
/* Waits (bounded by --timeout-s past since_us) until run->finished reaches
 * --count less run->deferred. */
void xmpp_wait_for_logins(xmpp_run *run, uint64_t since_us);
/* Writes user name number first+index into name (SESSION_NAME_BYTES_MAX);
 * its length, 0 when it did not fit. */
size_t xmpp_user_name(const xmpp_run *run, uint64_t index, char *name);
bool xmpp_attribute_is(const xml_view *view, const char *qname, const char *value);
/* Merges one wave's counters (first_wave or the current) of all reactors
 * into results, measuring from since_us, with the wave's finished sessions.
 * results->latency_us is a new histogram the caller destroys (also after
 * false). Only after the reactor threads have exited. */
bool xmpp_compute_results(const xmpp_run *run, bool first_wave, uint64_t since_us,
                          uint64_t finished, xmpp_results *results);
double xmpp_latency_ms(const xmpp_results *results, double percentile);
void xmpp_print_failures(const xmpp_results *results);
/* Writes {requested, online, failed, failures, conditions} under key. */
void xmpp_json_sessions(json_writer *writer, const char *key, const xmpp_results *results,
                        uint64_t count);

#endif
