/*
 * xmpp_session.c: the session machinery of starling-bench's login,
 * reconnect and chat scenarios (see xmpp_session.h). N sessions each
 * connect, open an XMPP stream (over TLS with --tls: STARTTLS or direct,
 * see tls_client.h), authenticate with SASL (SCRAM-SHA-256, SCRAM-SHA-1,
 * PLAIN or ANONYMOUS), restart the stream, bind a resource and send
 * initial presence; a session is online then. It answers: how many logins
 * per second does the server take, and how long does one take (p50 to max).
 *
 * It runs on Starling's own runtime (server/runtime/rx.h): K reactors, each
 * owning a share of the sessions, started by a message the main thread
 * posts through a producer. Connections are rx_connect's direct
 * descriptors, from source addresses 127.0.0.1..127.0.0.S, so the tool is
 * bounded by its reactors' tables, not by RLIMIT_NOFILE's ephemeral ports
 * of one address. The main thread only waits on atomics (bounded by
 * --timeout-s), holds, stops the runtime and reports; per-reactor counters
 * and histograms are read after the reactor threads have exited.
 *
 * Every phase is bounded by the runtime's handshake timeout (= --timeout-s,
 * running from rx_connect until the session is online). SCRAM's
 * SaltedPassword is cached per reactor keyed by (hash, iterations, salt):
 * it is Hi(password, salt, iterations) and the password is one for the
 * whole run, so a server with one salt for all users costs one PBKDF2 per
 * reactor and a server with per-user salts one per user, never one per
 * login (a login storm after a reconnect must not be PBKDF2-bound).
 */
#include "bench/src/xmpp_session.h"

#include "bench/src/bench_cli.h"
#include "bench/src/xmpp_live.h"
#include "bench/src/xmpp_memory.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/base64.h>
#include <stdarg.h>

static const char *const mechanism_names[] = {"SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN", "ANONYMOUS"};

static const char *const tls_names[] = {"none", "starttls", "direct"};

static const char *const failure_names[FAILURE_COUNT] = {
    "connect",  "stream_error", "auth",       "bind",         "timeout", "closed",
    "io_error", "bad_xml",      "unexpected", "no_mechanism", "dropped", "tls",
};

/* Names the phase a timeout hit, by login_state. */
static const char *const state_names[] = {
    "connect", "features",      "starttls", "tls-handshake", "challenge",
    "success", "bind-features", "bind",     "online",        "failed",
};

static const rx_listener_ops session_ops;
static const char *errno_condition(int error, char *buffer, size_t capacity);

/* The running scenario's command, for messages; set once before threads. */
static const char *command_name = "starling-bench login";

/* Prints "command: " and the message to stderr. */
__attribute__((format(printf, 1, 2))) static void complain(const char *format, ...)
{
    va_list arguments;
    va_start(arguments, format);
    fprintf(stderr, "%s: ", command_name);
    vfprintf(stderr, format, arguments);
    va_end(arguments);
}

/* ------------------------------------------------------------- options */

/* The scenario whose --help is printed; set with command_name. */
static const xmpp_scenario *usage_scenario;

static void usage(FILE *out)
{
    fprintf(out, "usage: %s [options]\n%s", command_name, usage_scenario->summary);
    fprintf(out,
            "  --host ADDR         server IPv4 address (default 127.0.0.1)\n"
            "  --port PORT         server port (default 5222)\n"
            "  --domain NAME       the stream's 'to' (default localhost)\n"
            "  --users PATTERN     user names, %%d replaced by the number (default user%%d)\n"
            "  --password TEXT     every user's password (default password)\n"
            "  --count N           sessions (default 1000, max %u)\n"
            "  --first I           number of the first user (default 1)\n"
            "  --rate R            sessions started per second (default 0: all at once)\n"
            "  --mechanism NAME    SCRAM-SHA-256, SCRAM-SHA-1 (default), PLAIN or ANONYMOUS\n"
            "                      (ANONYMOUS: no --users or --password, the server names us)\n"
            "  --tls MODE          none (default: plaintext), starttls (RFC 6120 STARTTLS)\n"
            "                      or direct (XEP-0368: TLS from the first byte)\n"
            "  --tls-ca FILE       verify the server's certificate against the CA in FILE\n"
            "                      and --domain (default: not verified)\n"
            "  --reactors K        runtime threads, sessions spread over them (default 1)\n"
            "  --sources S         bind source addresses 127.0.0.1..127.0.0.S round robin\n"
            "                      (default one per %u sessions on loopback, 0 = none)\n"
            "  --hold SECONDS      keep the sessions online this long (default 0)\n"
            "  --timeout-s T       bound of each login, connect to online (default 60)\n"
            "  --json FILE         also write the report as JSON to FILE\n"
            "  --help              this text\n",
            SESSION_COUNT_MAX, SESSION_SESSIONS_PER_SOURCE);
    fprintf(out, "%s", LIVE_USAGE);
    fprintf(out, "%s", MEMORY_USAGE);
    fprintf(out, "%s", usage_scenario->extra_usage);
}

static const struct option long_options[] = {
    {"host", required_argument, NULL, 'H'},
    {"port", required_argument, NULL, 'p'},
    {"domain", required_argument, NULL, 'd'},
    {"users", required_argument, NULL, 'u'},
    {"password", required_argument, NULL, 'w'},
    {"count", required_argument, NULL, 'n'},
    {"first", required_argument, NULL, 'f'},
    {"rate", required_argument, NULL, 'r'},
    {"mechanism", required_argument, NULL, 'm'},
    {"tls", required_argument, NULL, 'L'},
    {"tls-ca", required_argument, NULL, 'C'},
    {"reactors", required_argument, NULL, 'k'},
    {"sources", required_argument, NULL, 's'},
    {"hold", required_argument, NULL, 'o'},
    {"timeout-s", required_argument, NULL, 't'},
    {"json", required_argument, NULL, 'j'},
    {"duration", required_argument, NULL, 'D'},
    {"drain", required_argument, NULL, 'i'},
    {"window", required_argument, NULL, 'W'},
    {"roster", required_argument, NULL, 'R'},
    {"measured", required_argument, NULL, 'M'},
    {"background-rate", required_argument, NULL, 'B'},
    {"help", no_argument, NULL, 'h'},
    {"progress", no_argument, NULL, LIVE_OPTION_PROGRESS},
    {"no-progress", no_argument, NULL, LIVE_OPTION_NO_PROGRESS},
    {"plot", required_argument, NULL, LIVE_OPTION_PLOT},
    {"server-pid", required_argument, NULL, MEMORY_OPTION_SERVER_PID},
    {NULL, 0, NULL, 0},
};

static bool parse_mechanism(const char *value, login_mechanism *mechanism)
{
    for (size_t i = 0; i < sizeof mechanism_names / sizeof mechanism_names[0]; i++) {
        if (strcmp(value, mechanism_names[i]) == 0) {
            *mechanism = (login_mechanism)i;
            return true;
        }
    }
    complain("--mechanism wants SCRAM-SHA-256, SCRAM-SHA-1, PLAIN or ANONYMOUS, not '%s'\n", value);
    return false;
}

static bool parse_tls(const char *value, session_tls *tls)
{
    for (size_t i = 0; i < sizeof tls_names / sizeof tls_names[0]; i++) {
        if (strcmp(value, tls_names[i]) == 0) {
            *tls = (session_tls)i;
            return true;
        }
    }
    complain("--tls wants none, starttls or direct, not '%s'\n", value);
    return false;
}

/* Applies an option of the chat scenario only; false after an error. */
static bool apply_chat_option(int choice, const char *name, const char *value,
                              xmpp_options *options)
{
    if (!options->scenario->pairs) {
        complain("--%s is an option of chat only\n", name);
        return false;
    }
    switch (choice) {
    case 'D':
        return cli_parse_unsigned(command_name, name, value, 1, 86400, &options->duration_s);
    case 'i':
        return cli_parse_unsigned(command_name, name, value, 0, 86400, &options->drain_s);
    default:
        return cli_parse_unsigned(command_name, name, value, 0, 1000000, &options->window);
    }
}

/* Applies an option of the presence scenario only; false after an error. */
static bool apply_presence_option(int choice, const char *name, const char *value,
                                  xmpp_options *options)
{
    if (options->scenario->start_later == NULL) {
        complain("--%s is an option of presence only\n", name);
        return false;
    }
    if (choice == 'R')
        return cli_parse_unsigned(command_name, name, value, 2, 100000, &options->roster);
    if (choice == 'B') /* the engine paces the first logins, the background ones here */
        return cli_parse_unsigned(command_name, name, value, 0, 10000000,
                                  &options->rate_per_second);
    return cli_parse_unsigned(command_name, name, value, 1, SESSION_COUNT_MAX, &options->measured);
}

/* Applies an option that takes a number; false after a one-line error. */
static bool apply_number(int choice, const char *name, const char *value, xmpp_options *options)
{
    switch (choice) {
    case 'p':
        return cli_parse_unsigned(command_name, name, value, 1, 65535, &options->port);
    case 'n':
        return cli_parse_unsigned(command_name, name, value, 1, SESSION_COUNT_MAX, &options->count);
    case 'f':
        return cli_parse_unsigned(command_name, name, value, 0, 1000000000, &options->first);
    case 'r':
        return cli_parse_unsigned(command_name, name, value, 0, 10000000,
                                  options->scenario->pairs ? &options->message_rate_per_second
                                  : options->scenario->start_later != NULL
                                      ? &options->measured_rate_per_second
                                      : &options->rate_per_second);
    case 'k':
        return cli_parse_unsigned(command_name, name, value, 1, SESSION_REACTORS_MAX,
                                  &options->reactors);
    case 's':
        options->sources_given = true;
        return cli_parse_unsigned(command_name, name, value, 0, SESSION_SOURCES_MAX,
                                  &options->sources);
    case 'o':
        return cli_parse_unsigned(command_name, name, value, 0, 86400, &options->hold_s);
    case 't':
        return cli_parse_unsigned(command_name, name, value, 1, 86400, &options->timeout_s);
    case 'D':
    case 'i':
    case 'W':
        return apply_chat_option(choice, name, value, options);
    case 'R':
    case 'M':
    case 'B':
        return apply_presence_option(choice, name, value, options);
    default:
        return false;
    }
}

/* Applies one parsed option; false after a one-line error. */
static bool apply_option(int choice, const char *value, void *context)
{
    xmpp_options *options = context;
    switch (choice) {
    case 'H':
        options->host = value;
        return true;
    case 'd':
        options->domain = value;
        return true;
    case 'u':
        options->users = value;
        return true;
    case 'w':
        options->password = value;
        return true;
    case 'j':
        options->json_path = value;
        return true;
    case 'm':
        return parse_mechanism(value, &options->mechanism);
    case 'L':
        return parse_tls(value, &options->tls);
    case 'C':
        options->tls_ca_path = value;
        return true;
    case LIVE_OPTION_PROGRESS:
    case LIVE_OPTION_NO_PROGRESS:
    case LIVE_OPTION_PLOT:
        return xmpp_live_apply_option(choice, value, options);
    case MEMORY_OPTION_SERVER_PID:
        return xmpp_memory_apply_option(command_name, value, options);
    default:
        return apply_number(choice, cli_option_name(long_options, choice), value, options);
    }
}

/* A string that goes into a quoted attribute as is must need no escaping. */
static bool plain_text(const char *text, size_t bytes_max)
{
    size_t length = strlen(text);
    return length > 0 && length <= bytes_max && strpbrk(text, "'\"<>& \t\r\n") == NULL;
}

/* The users pattern holds exactly one %d and no other '%'. */
static bool users_pattern_valid(const char *pattern)
{
    const char *marker = strstr(pattern, "%d");
    return marker != NULL && strchr(marker + 2, '%') == NULL &&
           memchr(pattern, '%', (size_t)(marker - pattern)) == NULL &&
           strlen(pattern) < SESSION_NAME_BYTES_MAX - 12;
}

/* Checks what single options cannot. */
static bool options_consistent(xmpp_options *options)
{
    struct in_addr address;
    if (inet_pton(AF_INET, options->host, &address) != 1) {
        complain("--host wants an IPv4 address, not '%s'\n", options->host);
        return false;
    }
    if (!plain_text(options->domain, SESSION_DOMAIN_BYTES_MAX)) {
        complain("--domain '%s' is not a plain domain name\n", options->domain);
        return false;
    }
    bool anonymous = options->mechanism == MECHANISM_ANONYMOUS;
    if (anonymous && options->scenario->pairs) {
        complain("--mechanism ANONYMOUS cannot name chat partners (the server picks the JIDs)\n");
        return false;
    }
    if (!anonymous && !users_pattern_valid(options->users)) {
        complain("--users wants a pattern with one %%d, not '%s'\n", options->users);
        return false;
    }
    size_t password_bytes = strlen(options->password);
    if (password_bytes == 0 || password_bytes > SESSION_PASSWORD_BYTES_MAX) {
        complain("--password wants 1 to %u bytes\n", SESSION_PASSWORD_BYTES_MAX);
        return false;
    }
    if (options->tls_ca_path != NULL && options->tls == SESSION_TLS_NONE) {
        complain("--tls-ca needs --tls starttls or --tls direct\n");
        return false;
    }
    if (options->count / options->reactors + 1 > LIMIT_CONNECTIONS_PER_REACTOR) {
        complain("--count over --reactors passes %u sessions per reactor\n",
                 LIMIT_CONNECTIONS_PER_REACTOR);
        return false;
    }
    bool loopback = (ntohl(address.s_addr) >> 24) == 127;
    if (!options->sources_given)
        options->sources = loopback ? (options->count + SESSION_SESSIONS_PER_SOURCE - 1) /
                                          SESSION_SESSIONS_PER_SOURCE
                                    : 0;
    if (options->sources > 0 && !loopback) {
        complain("--sources binds 127.0.0.x, so --host must be in 127/8\n");
        return false;
    }
    return true;
}

int xmpp_parse_options(int argc, char **argv, const xmpp_scenario *scenario, xmpp_options *options)
{
    command_name = scenario->command;
    usage_scenario = scenario;
    *options = (xmpp_options){
        .scenario = scenario,
        .message_rate_per_second = 1000,
        .duration_s = 10,
        .drain_s = 2,
        .roster = 20,
        .measured = 50,
        .measured_rate_per_second = 100,
        .host = "127.0.0.1",
        .port = 5222,
        .domain = "localhost",
        .users = "user%d",
        .password = "password",
        .count = 1000,
        .first = 1,
        .mechanism = MECHANISM_SCRAM_SHA_1,
        .reactors = 1,
        .timeout_s = 60,
        .progress = -1,
    };
    int status =
        cli_parse_options(command_name, argc, argv, long_options, usage, apply_option, options);
    if (status != CLI_EXIT_OK)
        return status;
    if (!options_consistent(options) || !xmpp_live_options_check(command_name, options))
        return CLI_EXIT_USAGE;
    if (!xmpp_memory_options_check(command_name, options))
        return CLI_EXIT_USAGE;
    if (scenario->options_check != NULL && !scenario->options_check(options))
        return CLI_EXIT_USAGE;
    return CLI_EXIT_OK;
}

/* ------------------------------------------------------------ outcomes */

static void conditions_add(login_conditions *conditions, login_failure failure, const char *name,
                           size_t name_bytes, uint64_t count)
{
    if (name_bytes >= SESSION_CONDITION_BYTES_MAX)
        name_bytes = SESSION_CONDITION_BYTES_MAX - 1;
    for (unsigned i = 0; i < conditions->used; i++) {
        login_condition *entry = &conditions->entries[i];
        if (entry->failure == failure && strlen(entry->name) == name_bytes &&
            memcmp(entry->name, name, name_bytes) == 0) {
            entry->count += count;
            return;
        }
    }
    if (conditions->used == SESSION_CONDITIONS_MAX) {
        conditions->other += count;
        return;
    }
    login_condition *entry = &conditions->entries[conditions->used++];
    entry->failure = (uint8_t)failure;
    memcpy(entry->name, name, name_bytes);
    entry->name[name_bytes] = '\0';
    entry->count = count;
}

static void scram_exchange_free(xmpp_session *session)
{
    free(session->scram);
    session->scram = NULL;
}

/* Records the session's one failure (later ones are ignored). condition is
 * borrowed; the caller aborts the connection if there is one. */
static void session_fail_slice(xmpp_session *session, login_failure failure, const char *condition,
                               size_t condition_bytes)
{
    if (session->state == STATE_ONLINE || session->state == STATE_FAILED)
        return;
    xmpp_reactor *reactor = session->reactor;
    session->state = STATE_FAILED;
    scram_exchange_free(session);
    reactor->counters.failures[failure]++;
    conditions_add(&reactor->counters.conditions, failure, condition, condition_bytes, 1);
    timeline_meter_count(&reactor->meter, TIMELINE_FAILURES, 1);
    atomic_fetch_add_explicit(&reactor->run->finished, 1, memory_order_release);
}

static void session_fail(xmpp_session *session, login_failure failure, const char *condition)
{
    session_fail_slice(session, failure, condition, strlen(condition));
}

/* Fails the session and closes its connection at once. */
static void session_abort(xmpp_session *session, login_failure failure, const char *condition)
{
    session_fail(session, failure, condition);
    if (session->conn != NULL)
        rx_conn_abort(session->conn);
}

static void session_online(xmpp_session *session)
{
    xmpp_reactor *reactor = session->reactor;
    uint64_t now_us = system_now_us();
    session->state = STATE_ONLINE;
    rx_conn_handshake_done(session->conn);
    histogram_record(reactor->counters.latency_us, now_us - session->started_us);
    reactor->counters.online++;
    timeline_meter_count(&reactor->meter, TIMELINE_LOGINS, 1);
    if (!reactor->run->options.scenario->timeline_own_latency)
        timeline_meter_latency(&reactor->meter, now_us - session->started_us);
    if (now_us > reactor->counters.last_online_us)
        reactor->counters.last_online_us = now_us;
    atomic_fetch_add_explicit(&reactor->run->online_now, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&reactor->run->finished, 1, memory_order_release);
}

/* Queues the ciphertext the session's SSL produced; false when the
 * connection refused it (and aborted itself). */
static bool tls_flush(xmpp_session *session)
{
    const uint8_t *bytes = NULL;
    size_t length = 0;
    tls_client_output(session->tls, &bytes, &length);
    if (length == 0)
        return true;
    bool queued = rx_conn_send(session->conn, bytes, length) == RX_OK;
    tls_client_output_sent(session->tls);
    return queued;
}

bool xmpp_session_write(xmpp_session *session, const void *bytes, size_t length)
{
    if (session->tls == NULL)
        return rx_conn_send(session->conn, bytes, length) == RX_OK;
    if (!tls_client_write(session->tls, bytes, length)) {
        rx_conn_abort(session->conn);
        return false;
    }
    return tls_flush(session);
}

/* Queues bytes; on refusal fails the session (its state says so). */
static void session_send(xmpp_session *session, const char *bytes, size_t length)
{
    if (!xmpp_session_write(session, bytes, length))
        session_abort(session, FAILURE_IO_ERROR, "send-refused");
}

/* ------------------------------------------------- SaltedPassword cache */

static uint32_t cache_slot_of(scram_hash hash, uint32_t iterations, const unsigned char *salt,
                              size_t salt_bytes)
{
    uint32_t value = 2166136261u ^ (uint32_t)hash ^ (iterations * 16777619u);
    for (size_t i = 0; i < salt_bytes; i++)
        value = (value ^ salt[i]) * 16777619u;
    return value;
}

/* The cached entry for the key, or the free slot to fill, or NULL (full). */
static salted_entry *cache_find(xmpp_reactor *reactor, scram_hash hash,
                                const scram_server_first *first)
{
    uint32_t mask = reactor->cache_capacity - 1;
    uint32_t slot = cache_slot_of(hash, first->iterations, first->salt, first->salt_len) & mask;
    for (uint32_t probe = 0; probe < reactor->cache_capacity; probe++) {
        salted_entry *entry = &reactor->cache[(slot + probe) & mask];
        if (entry->salt_bytes == 0)
            return reactor->cache_used * 2 < reactor->cache_capacity ? entry : NULL;
        if (entry->hash == hash && entry->iterations == first->iterations &&
            entry->salt_bytes == first->salt_len &&
            memcmp(entry->salt, first->salt, first->salt_len) == 0)
            return entry;
    }
    return NULL;
}

/* Fills keys for the server-first's salt and iterations: from the cache,
 * or with PBKDF2 (then cached while there is room). */
static scram_result keys_for(xmpp_reactor *reactor, scram_hash hash,
                             const scram_server_first *first, scram_keys *keys)
{
    salted_entry *entry = cache_find(reactor, hash, first);
    if (entry != NULL && entry->salt_bytes != 0) {
        reactor->cache_hits++;
        return scram_keys_from_salted(hash, entry->salted_password, keys);
    }
    const char *password = reactor->run->options.password;
    reactor->pbkdf2_runs++;
    scram_result result = scram_keys_derive(hash, password, strlen(password), first->salt,
                                            first->salt_len, first->iterations, keys);
    if (result != SCRAM_OK || entry == NULL || first->salt_len == 0)
        return result;
    entry->hash = (uint8_t)hash;
    entry->iterations = first->iterations;
    entry->salt_bytes = (uint8_t)first->salt_len;
    memcpy(entry->salt, first->salt, first->salt_len);
    memcpy(entry->salted_password, keys->salted_password, scram_hash_bytes(hash));
    reactor->cache_used++;
    return SCRAM_OK;
}

/* ---------------------------------------------------------------- SASL */

/* Writes the user name of the session into name (SESSION_NAME_BYTES_MAX). */
size_t xmpp_user_name(const xmpp_run *run, uint64_t index, char *name)
{
    const char *pattern = run->options.users;
    size_t prefix = run->users_prefix_bytes;
    int written = snprintf(name, SESSION_NAME_BYTES_MAX, "%.*s%" PRIu64 "%s", (int)prefix, pattern,
                           run->options.first + index, pattern + prefix + 2);
    return written > 0 && written < (int)SESSION_NAME_BYTES_MAX ? (size_t)written : 0;
}

/* Sends <element xmlns=SASL [mechanism=...]>base64(message)</element>. */
static void send_sasl(xmpp_session *session, const char *element, const char *mechanism,
                      const char *message, size_t message_bytes)
{
    char encoded[SESSION_SASL_BYTES_MAX * 4 / 3 + 8];
    size_t encoded_bytes =
        EVP_EncodeBlock((uint8_t *)encoded, (const uint8_t *)message, message_bytes);
    char text[SESSION_ELEMENT_BYTES_MAX];
    int length;
    if (mechanism != NULL)
        length =
            snprintf(text, sizeof text, "<%s xmlns='" SASL_NAMESPACE "' mechanism='%s'>%.*s</%s>",
                     element, mechanism, (int)encoded_bytes, encoded, element);
    else
        length = snprintf(text, sizeof text, "<%s xmlns='" SASL_NAMESPACE "'>%.*s</%s>", element,
                          (int)encoded_bytes, encoded, element);
    if (length < 0 || (size_t)length >= sizeof text) {
        session_abort(session, FAILURE_AUTH, "message-too-long");
        return;
    }
    session_send(session, text, (size_t)length);
}

static void start_plain(xmpp_session *session, const char *name, size_t name_bytes)
{
    const char *password = session->reactor->run->options.password;
    size_t password_bytes = strlen(password);
    char message[SESSION_SASL_BYTES_MAX];
    if (name_bytes + password_bytes + 2 > sizeof message) {
        session_abort(session, FAILURE_AUTH, "message-too-long");
        return;
    }
    message[0] = '\0';
    memcpy(message + 1, name, name_bytes);
    message[1 + name_bytes] = '\0';
    memcpy(message + 2 + name_bytes, password, password_bytes);
    session->state = STATE_SUCCESS;
    send_sasl(session, "auth", "PLAIN", message, name_bytes + password_bytes + 2);
}

static void start_scram(xmpp_session *session, const char *name, size_t name_bytes)
{
    scram_exchange *scram = calloc(1, sizeof *scram);
    if (scram == NULL) {
        session_abort(session, FAILURE_AUTH, "out-of-memory");
        return;
    }
    session->scram = scram;
    scram_client_first_params params = {
        .cbind = SCRAM_CBIND_NONE, .username = name, .username_len = name_bytes};
    scram_result result =
        scram_nonce_make(18, scram->nonce, sizeof scram->nonce, &scram->nonce_bytes);
    params.nonce = scram->nonce;
    params.nonce_len = scram->nonce_bytes;
    if (result == SCRAM_OK)
        result = scram_client_first_build(&params, scram->client_first, sizeof scram->client_first,
                                          &scram->client_first_bytes, &scram->gs2_header_bytes);
    if (result != SCRAM_OK) {
        session_abort(session, FAILURE_AUTH, scram_result_name(result));
        return;
    }
    session->state = STATE_CHALLENGE;
    const xmpp_options *options = &session->reactor->run->options;
    send_sasl(session, "auth", mechanism_names[options->mechanism], scram->client_first,
              scram->client_first_bytes);
}

/* True when the features' <mechanisms/> lists ours. */
static bool mechanism_offered(const xml_view *view, const char *wanted)
{
    xml_node_id mechanisms = xml_element_child(view, xml_view_root(view), "mechanisms", 10,
                                               SASL_NAMESPACE, strlen(SASL_NAMESPACE));
    if (mechanisms == XML_NODE_NONE)
        return false;
    for (xml_node_id node = xml_node_first_child(view, mechanisms); node != XML_NODE_NONE;
         node = xml_node_next_sibling(view, node)) {
        char buffer[64];
        xml_slice text;
        if (xml_node_kind_of(view, node) == XML_NODE_ELEMENT &&
            xml_element_text(view, node, buffer, sizeof buffer, &text) &&
            text.len == strlen(wanted) && memcmp(text.ptr, wanted, text.len) == 0)
            return true;
    }
    return false;
}

/* --tls starttls: ask for TLS if the features offer it (RFC 6120 5.4.2). */
static void start_starttls(xmpp_session *session, const xml_view *view)
{
    static const char starttls[] = "<starttls xmlns='" TLS_NAMESPACE "'/>";
    xml_node_id offer = xml_element_child(view, xml_view_root(view), "starttls", 8, TLS_NAMESPACE,
                                          strlen(TLS_NAMESPACE));
    if (offer == XML_NODE_NONE) {
        session_abort(session, FAILURE_TLS, "starttls-not-offered");
        return;
    }
    session->state = STATE_STARTTLS;
    session_send(session, starttls, sizeof starttls - 1);
}

/* The first <stream:features/>: STARTTLS first if asked, then start the
 * chosen mechanism. */
static void on_features(xmpp_session *session, const xml_view *view)
{
    const xmpp_options *options = &session->reactor->run->options;
    if (options->tls == SESSION_TLS_STARTTLS && session->tls == NULL) {
        start_starttls(session, view);
        return;
    }
    if (!mechanism_offered(view, mechanism_names[options->mechanism])) {
        session_abort(session, FAILURE_NO_MECHANISM, mechanism_names[options->mechanism]);
        return;
    }
    if (options->mechanism == MECHANISM_ANONYMOUS) {
        /* RFC 4505 allows an empty trace; RFC 6120 6.4.2 sends it as "=". */
        static const char anonymous[] =
            "<auth xmlns='" SASL_NAMESPACE "' mechanism='ANONYMOUS'>=</auth>";
        session->state = STATE_SUCCESS;
        session_send(session, anonymous, sizeof anonymous - 1);
        return;
    }
    char name[SESSION_NAME_BYTES_MAX];
    size_t name_bytes = xmpp_user_name(session->reactor->run, session->index, name);
    if (name_bytes == 0) {
        session_abort(session, FAILURE_AUTH, "user-name");
        return;
    }
    if (options->mechanism == MECHANISM_PLAIN)
        start_plain(session, name, name_bytes);
    else
        start_scram(session, name, name_bytes);
}

static scram_hash mechanism_hash(login_mechanism mechanism)
{
    return mechanism == MECHANISM_SCRAM_SHA_256 ? SCRAM_HASH_SHA256 : SCRAM_HASH_SHA1;
}

/* <challenge/> carries server-first: answer with client-final. */
static void on_challenge(xmpp_session *session, const xml_view *view)
{
    scram_exchange *scram = session->scram;
    if (!xmpp_sasl_decode(view, scram->server_first, sizeof scram->server_first,
                          &scram->server_first_bytes)) {
        session_abort(session, FAILURE_AUTH, "bad-challenge");
        return;
    }
    scram_server_first first;
    scram_slice client_nonce = {scram->nonce, scram->nonce_bytes};
    scram_result result = scram_server_first_parse(scram->server_first, scram->server_first_bytes,
                                                   client_nonce, &first);
    scram_hash hash = mechanism_hash(session->reactor->run->options.mechanism);
    if (result == SCRAM_OK)
        result = keys_for(session->reactor, hash, &first, &scram->keys);
    scram_slice gs2_header = {scram->client_first, scram->gs2_header_bytes};
    scram_slice bare = {scram->client_first + scram->gs2_header_bytes,
                        scram->client_first_bytes - scram->gs2_header_bytes};
    scram_slice server_first = {scram->server_first, scram->server_first_bytes};
    if (result == SCRAM_OK)
        result = scram_client_final_build(
            &scram->keys, gs2_header, NULL, 0, first.nonce, bare, server_first, scram->client_final,
            sizeof scram->client_final, &scram->client_final_bytes, &scram->without_proof_bytes);
    if (result != SCRAM_OK) {
        session_abort(session, FAILURE_AUTH, scram_result_name(result));
        return;
    }
    session->state = STATE_SUCCESS;
    send_sasl(session, "response", NULL, scram->client_final, scram->client_final_bytes);
}

/* SCRAM's <success/> carries server-final: the server must prove it knows
 * the password too. */
static bool server_verified(xmpp_session *session, const xml_view *view)
{
    scram_exchange *scram = session->scram;
    char message[SESSION_SASL_BYTES_MAX];
    size_t message_bytes = 0;
    if (!xmpp_sasl_decode(view, message, sizeof message, &message_bytes) || message_bytes == 0) {
        session_abort(session, FAILURE_AUTH, "no-server-signature");
        return false;
    }
    scram_server_final final;
    scram_result result = scram_server_final_parse(message, message_bytes, &final);
    scram_auth_message auth_message = {
        .client_first_bare = {scram->client_first + scram->gs2_header_bytes,
                              scram->client_first_bytes - scram->gs2_header_bytes},
        .server_first = {scram->server_first, scram->server_first_bytes},
        .client_final_without_proof = {scram->client_final, scram->without_proof_bytes},
    };
    if (result == SCRAM_OK)
        result = scram_client_verify_server(&scram->keys, &auth_message, &final);
    if (result != SCRAM_OK) {
        session_abort(session, FAILURE_AUTH,
                      result == SCRAM_ERROR_NOT_AUTHORIZED ? "bad-server-signature"
                                                           : scram_result_name(result));
        return false;
    }
    return true;
}

/* <success/>: restart the stream (the tokenizer and the header). */
static void on_success(xmpp_session *session, const xml_view *view)
{
    if (session->scram != NULL && !server_verified(session, view))
        return;
    scram_exchange_free(session);
    xml_tokenizer_reset(&session->tokenizer);
    session->state = STATE_BIND_FEATURES;
    const xmpp_run *run = session->reactor->run;
    session_send(session, run->header, run->header_bytes);
}

/* The condition of a <failure/>, <stream:error/> or <iq type='error'/>:
 * the name of the first child element (of <error/> for an iq). */
static xml_slice condition_of(const xml_view *view, xml_node_id element)
{
    xml_node_id node = xmpp_first_child_element(view, element);
    return node != XML_NODE_NONE ? xml_element_name(view, node) : (xml_slice){"none", 4};
}

bool xmpp_attribute_is(const xml_view *view, const char *qname, const char *value)
{
    xml_attribute attribute;
    return xml_element_attribute(view, xml_view_root(view), qname, strlen(qname), &attribute) &&
           attribute.raw_value.len == strlen(value) &&
           memcmp(attribute.raw_value.ptr, value, attribute.raw_value.len) == 0;
}

static const char bind_request[] =
    "<iq type='set' id='b'><bind xmlns='" BIND_NAMESPACE "'><resource>bench</resource></bind></iq>";
static const char initial_presence[] = "<presence/>";

/* Sends the scenario's initial presence, or <presence/>. */
static void send_initial_presence(xmpp_session *session)
{
    const xmpp_scenario *scenario = session->reactor->run->options.scenario;
    char text[SESSION_ELEMENT_BYTES_MAX];
    size_t length = scenario->initial_presence == NULL
                        ? 0
                        : scenario->initial_presence(session, text, sizeof text);
    if (length > 0 && length < sizeof text)
        session_send(session, text, length);
    else
        session_send(session, initial_presence, sizeof initial_presence - 1);
}

/* The bind iq's answer: a result puts the session online. */
static void on_bind_answer(xmpp_session *session, const xml_view *view)
{
    if (xmpp_attribute_is(view, "type", "result")) {
        send_initial_presence(session);
        if (session->state == STATE_BIND)
            session_online(session);
        return;
    }
    xml_node_id error = xml_element_child(view, xml_view_root(view), "error", 5, NULL, 0);
    xml_slice condition =
        error != XML_NODE_NONE ? condition_of(view, error) : (xml_slice){"unexpected-type", 15};
    session_fail_slice(session, FAILURE_BIND, condition.ptr, condition.len);
    rx_conn_abort(session->conn);
}

/* ----------------------------------------------------------------- TLS */

/* Runs the TLS handshake as far as it goes; once done, restarts the stream
 * over TLS (a fresh tokenizer and the header again, RFC 6120 5.4.3.3). */
static void tls_handshake_step(xmpp_session *session)
{
    const char *error_name = "tls-error";
    tls_client_result result = tls_client_handshake(session->tls, &error_name);
    if (!tls_flush(session)) {
        session_abort(session, FAILURE_IO_ERROR, "send-refused");
        return;
    }
    if (result == TLS_CLIENT_AGAIN)
        return;
    if (result != TLS_CLIENT_OK) {
        session_abort(session, FAILURE_TLS, error_name);
        return;
    }
    const xmpp_run *run = session->reactor->run;
    xml_tokenizer_reset(&session->tokenizer);
    session->state = STATE_FEATURES;
    session_send(session, run->header, run->header_bytes);
}

/* Puts the session's stream under TLS: after <proceed/>, or at once for
 * direct TLS (then with ALPN xmpp-client, XEP-0368). */
static void tls_begin(xmpp_session *session)
{
    const xmpp_run *run = session->reactor->run;
    session->tls = tls_client_create(run->tls_context, run->options.domain,
                                     run->options.tls == SESSION_TLS_DIRECT);
    if (session->tls == NULL) {
        session_abort(session, FAILURE_TLS, "out-of-memory");
        return;
    }
    session->state = STATE_TLS_HANDSHAKE;
    tls_handshake_step(session);
}

/* ---------------------------------------------------------- the stream */

/* Handles the element the state waits for; false when it is not that one
 * (a SASL <failure/> or something unexpected, which fails the session). */
static bool on_expected(xmpp_session *session, const xml_view *view)
{
    xml_node_id root = xml_view_root(view);
    bool features = xmpp_named(view, root, "features", STREAM_NAMESPACE);
    if (session->state == STATE_FEATURES && features) {
        on_features(session, view);
    } else if (session->state == STATE_STARTTLS &&
               xmpp_named(view, root, "proceed", TLS_NAMESPACE)) {
        tls_begin(session);
    } else if (session->state == STATE_CHALLENGE &&
               xmpp_named(view, root, "challenge", SASL_NAMESPACE)) {
        on_challenge(session, view);
    } else if (session->state == STATE_SUCCESS &&
               xmpp_named(view, root, "success", SASL_NAMESPACE)) {
        on_success(session, view);
    } else if (session->state == STATE_BIND_FEATURES && features) {
        session->state = STATE_BIND;
        session_send(session, bind_request, sizeof bind_request - 1);
    } else if (session->state == STATE_BIND) {
        /* Anything before the answer (a push, a message) is not ours. */
        if (xmpp_named(view, root, "iq", "jabber:client") && xmpp_attribute_is(view, "id", "b"))
            on_bind_answer(session, view);
    } else {
        return session->state >= STATE_ONLINE; /* online: the server may say what it likes */
    }
    return true;
}

/* One top-level element from the server, by the session's state. */
static void on_stanza(xmpp_session *session, const xml_view *view)
{
    xml_node_id root = xml_view_root(view);
    const xmpp_scenario *scenario = session->reactor->run->options.scenario;
    if (session->state == STATE_ONLINE && scenario->on_online_stanza != NULL &&
        !xmpp_named(view, root, "error", STREAM_NAMESPACE)) {
        scenario->on_online_stanza(session, view);
        return;
    }
    if (xmpp_named(view, root, "error", STREAM_NAMESPACE)) {
        xml_slice condition = condition_of(view, root);
        session_fail_slice(session, FAILURE_STREAM_ERROR, condition.ptr, condition.len);
        rx_conn_abort(session->conn);
        return;
    }
    if (on_expected(session, view))
        return;
    if (xmpp_named(view, root, "failure", SASL_NAMESPACE)) {
        xml_slice condition = condition_of(view, root);
        session_fail_slice(session, FAILURE_AUTH, condition.ptr, condition.len);
    } else if (xmpp_named(view, root, "failure", TLS_NAMESPACE)) {
        session_fail(session, FAILURE_TLS, "starttls-failure");
    } else {
        xml_slice name = xml_element_name(view, root);
        session_fail_slice(session, FAILURE_UNEXPECTED, name.ptr, name.len);
    }
    rx_conn_abort(session->conn);
}

/* Feeds one piece of the stream through the tokenizer until it is used up
 * or the session is decided (or went over to TLS: after <proceed/> the
 * server sends nothing before our ClientHello). */
static void session_on_plaintext(xmpp_session *session, const uint8_t *bytes, size_t length)
{
    size_t at = 0;
    bool keep_reading = session->reactor->run->options.scenario->on_online_stanza != NULL;
    while (at < length && session->state != STATE_TLS_HANDSHAKE &&
           (session->state < STATE_ONLINE ||
            (keep_reading && session->state == STATE_ONLINE && !session->closing))) {
        size_t used = 0;
        xml_view view;
        xml_event event = xml_tokenizer_feed(&session->tokenizer, session->reactor->scratch,
                                             (const char *)bytes + at, length - at, &used, &view);
        at += used;
        if (event == XML_EVENT_STANZA) {
            on_stanza(session, &view);
        } else if (event == XML_EVENT_STREAM_CLOSE) {
            session_abort(session, FAILURE_CLOSED, "stream-closed");
        } else if (event == XML_EVENT_ERROR) {
            session_abort(session, FAILURE_BAD_XML,
                          xml_error_condition_name(xml_tokenizer_error(&session->tokenizer)));
        }
    }
}

/* Every read that returns plaintext consumes at least one buffered byte, and
 * what is buffered is this piece plus at most one partial record from the
 * last: 2^14 bytes of plaintext, 2048 of expansion, a 5-byte header (RFC
 * 5246 6.2.3; TLS 1.3 records are smaller). */
#define SESSION_TLS_PARTIAL_RECORD_BYTES_MAX (TLS_CLIENT_RECORD_BYTES_MAX + 2048u + 5u)

/* A piece of ciphertext: the handshake, then every whole record decrypted
 * (also when nobody reads them, so nothing piles up in the SSL). */
static void session_on_ciphertext(xmpp_session *session, const uint8_t *bytes, size_t length)
{
    if (!tls_client_push(session->tls, bytes, length)) {
        session_abort(session, FAILURE_TLS, "out-of-memory");
        return;
    }
    if (session->state == STATE_TLS_HANDSHAKE)
        tls_handshake_step(session);
    uint8_t plaintext[TLS_CLIENT_RECORD_BYTES_MAX];
    for (size_t reads = 0; reads <= length + SESSION_TLS_PARTIAL_RECORD_BYTES_MAX; reads++) {
        if (session->state == STATE_TLS_HANDSHAKE || session->state == STATE_FAILED)
            return;
        const char *error_name = "tls-error";
        size_t plaintext_bytes = 0;
        tls_client_result result = tls_client_read(session->tls, plaintext, sizeof plaintext,
                                                   &plaintext_bytes, &error_name);
        if (result == TLS_CLIENT_AGAIN)
            break;
        if (result == TLS_CLIENT_CLOSED) {
            session_abort(session, FAILURE_CLOSED, "tls-close-notify");
            return;
        }
        if (result == TLS_CLIENT_ERROR) {
            session_abort(session, FAILURE_TLS, error_name);
            return;
        }
        session_on_plaintext(session, plaintext, plaintext_bytes);
    }
    if (!tls_flush(session))
        session_abort(session, FAILURE_IO_ERROR, "send-refused");
}

static void session_on_data(rx_conn *conn, const uint8_t *bytes, size_t length)
{
    xmpp_session *session = rx_conn_userdata(conn);
    if (session->tls != NULL)
        session_on_ciphertext(session, bytes, length);
    else
        session_on_plaintext(session, bytes, length);
}

static void session_on_open(rx_conn *conn, void *context)
{
    xmpp_session *session = context;
    const xmpp_run *run = session->reactor->run;
    session->conn = conn;
    rx_conn_set_userdata(conn, session);
    xml_tokenizer_init(&session->tokenizer);
    if (run->options.tls == SESSION_TLS_DIRECT) {
        tls_begin(session);
        return;
    }
    session->state = STATE_FEATURES;
    session_send(session, run->header, run->header_bytes);
}

/* The connection closed: what the session held for it goes. */
static void session_release(xmpp_session *session)
{
    xml_tokenizer_fini(&session->tokenizer);
    scram_exchange_free(session);
    tls_client_destroy(session->tls);
    session->tls = NULL;
    session->conn = NULL;
}

/* A session the scenario dropped closed: clean up and tell the scenario. */
static void session_on_dropped_close(xmpp_session *session)
{
    if (session->state == STATE_ONLINE)
        atomic_fetch_sub_explicit(&session->reactor->run->online_now, 1, memory_order_relaxed);
    session_release(session);
    session->dropping = false;
    const xmpp_scenario *scenario = session->reactor->run->options.scenario;
    if (scenario->on_dropped != NULL)
        scenario->on_dropped(session);
}

static void session_on_close(rx_conn *conn, rx_close_reason reason)
{
    xmpp_session *session = rx_conn_userdata(conn);
    if (session->dropping) {
        session_on_dropped_close(session);
        return;
    }
    if (session->state == STATE_ONLINE && !session->closing) {
        session->reactor->counters.dropped++;
        session->reactor->counters.failures[FAILURE_DROPPED]++;
        timeline_meter_count(&session->reactor->meter, TIMELINE_FAILURES, 1);
        conditions_add(&session->reactor->counters.conditions, FAILURE_DROPPED,
                       rx_close_reason_name(reason), strlen(rx_close_reason_name(reason)), 1);
    } else if (reason == RX_CLOSE_HANDSHAKE_TIMEOUT || reason == RX_CLOSE_SHUTDOWN ||
               (session->closing && session->state != STATE_ONLINE)) {
        session_fail(session, FAILURE_TIMEOUT, state_names[session->state]);
    } else if (reason == RX_CLOSE_PEER) {
        session_fail(session, FAILURE_CLOSED, state_names[session->state]);
    } else if (reason == RX_CLOSE_ERROR && rx_conn_close_errno(conn) == ECONNRESET) {
        /* The server closed without reading what we sent: a close too. */
        char condition[SESSION_CONDITION_BYTES_MAX];
        snprintf(condition, sizeof condition, "reset-in-%s", state_names[session->state]);
        session_fail(session, FAILURE_CLOSED, condition);
    } else if (reason == RX_CLOSE_ERROR && rx_conn_close_errno(conn) != 0) {
        char condition[SESSION_CONDITION_BYTES_MAX];
        session_fail(session, FAILURE_IO_ERROR,
                     errno_condition(rx_conn_close_errno(conn), condition, sizeof condition));
    } else {
        session_fail(session, FAILURE_IO_ERROR, rx_close_reason_name(reason));
    }
    if (session->state == STATE_ONLINE)
        atomic_fetch_sub_explicit(&session->reactor->run->online_now, 1, memory_order_relaxed);
    session_release(session);
}

/* A short name for a connect or socket error (strerror is not thread-safe). */
static const char *errno_condition(int error, char *buffer, size_t capacity)
{
    switch (error) {
    case ECONNREFUSED:
        return "connection-refused";
    case ECONNRESET:
        return "connection-reset";
    case EPIPE:
        return "broken-pipe";
    case EADDRNOTAVAIL:
        return "address-not-available";
    case EADDRINUSE:
        return "address-in-use";
    case ENETUNREACH:
        return "network-unreachable";
    case ENFILE:
        return "table-full";
    case ENOMEM:
        return "out-of-memory";
    default:
        break;
    }
    int written = snprintf(buffer, capacity, "errno-%d", error);
    return written > 0 ? buffer : "errno";
}

static void session_on_connect_failed(void *context, int error)
{
    xmpp_session *session = context;
    char condition[SESSION_CONDITION_BYTES_MAX];
    if (error == ETIMEDOUT || error == ECANCELED)
        session_fail(session, FAILURE_TIMEOUT, "connect");
    else
        session_fail(session, FAILURE_CONNECT, errno_condition(error, condition, sizeof condition));
}

/* The run is ending: close the stream politely. */
static void session_on_shutdown(rx_conn *conn)
{
    xmpp_session *session = rx_conn_userdata(conn);
    static const char stream_end[] = "</stream:stream>";
    session->closing = true;
    if (!xmpp_session_write(session, stream_end, sizeof stream_end - 1))
        rx_conn_abort(conn);
    else
        rx_conn_close(conn);
}

static const rx_listener_ops session_ops = {
    .on_open = session_on_open,
    .on_data = session_on_data,
    .on_close = session_on_close,
    .on_connect_failed = session_on_connect_failed,
    .on_shutdown = session_on_shutdown,
};

/* ----------------------------------------------------------- reactors */

void xmpp_session_start(xmpp_reactor *reactor, xmpp_session *session)
{
    const xmpp_run *run = reactor->run;
    session->state = STATE_CONNECTING;
    session->closing = false;
    const char *source =
        run->options.sources == 0 ? NULL : run->sources[session->index % run->options.sources];
    session->started_us = system_now_us();
    rx_status status =
        rx_connect(run->options.host, (uint16_t)run->options.port, source, &session_ops, session);
    if (status != RX_OK)
        session_fail(session, FAILURE_CONNECT, status == RX_ERR_FULL ? "reactor-full" : "refused");
}

/* Starts the sessions that are due by now at this reactor's rate. */
static void start_due(xmpp_reactor *reactor)
{
    uint64_t due = reactor->share;
    if (reactor->rate_per_second > 0) {
        double elapsed_s = (double)(system_now_us() - reactor->start_us) / 1e6;
        double wanted = elapsed_s * reactor->rate_per_second + 1.0;
        if (wanted < (double)reactor->share)
            due = (uint64_t)wanted;
    }
    const xmpp_scenario *scenario = reactor->run->options.scenario;
    while (reactor->started < due) {
        xmpp_session *session = &reactor->sessions[reactor->started++];
        if (scenario->start_later == NULL || !scenario->start_later(reactor->run, session->index))
            xmpp_session_start(reactor, session);
    }
}

static void on_pace_timer(rx_timer *timer, void *argument)
{
    (void)timer;
    xmpp_reactor *reactor = argument;
    start_due(reactor);
    if (reactor->started < reactor->share)
        rx_timer_arm(&reactor->pace_timer, SESSION_PACE_INTERVAL_MS);
}

/* Runs on the reactor: message.pointer is its xmpp_reactor. */
static void reactor_start(const rx_message *message)
{
    xmpp_reactor *reactor = message->pointer;
    reactor->start_us = system_now_us();
    rx_timer_init(&reactor->pace_timer, on_pace_timer, reactor);
    on_pace_timer(&reactor->pace_timer, reactor);
}

bool xmpp_post_to_reactors(xmpp_run *run, rx_message_fn *function)
{
    for (unsigned i = 0; i < run->reactor_count; i++) {
        rx_message message = {.function = function, .pointer = &run->reactors[i]};
        rx_status status = RX_ERR_FULL;
        for (unsigned attempt = 0; attempt < SESSION_POST_ATTEMPTS_MAX && status == RX_ERR_FULL;
             attempt++) {
            status = rx_producer_post(run->producer, i, &message);
            if (status == RX_ERR_FULL)
                nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
        }
        if (status != RX_OK) {
            complain("could not post to reactor %u\n", i);
            return false;
        }
    }
    return true;
}

void xmpp_sleep_ms(uint64_t milliseconds)
{
    struct timespec delay = {.tv_sec = (time_t)(milliseconds / 1000),
                             .tv_nsec = (long)(milliseconds % 1000) * 1000000L};
    while (nanosleep(&delay, &delay) != 0 && errno == EINTR)
        continue;
}

/* Waits until every session is online or failed, bounded by the time the
 * last start is due plus --timeout-s and a second. */
void xmpp_wait_for_logins(xmpp_run *run, uint64_t since_us)
{
    const xmpp_options *options = &run->options;
    uint64_t spread_us =
        options->rate_per_second == 0 ? 0 : options->count * 1000000u / options->rate_per_second;
    uint64_t deadline_us = since_us + spread_us + (options->timeout_s + 1) * 1000000u;
    while (atomic_load_explicit(&run->finished, memory_order_acquire) <
               options->count - run->deferred &&
           system_now_us() < deadline_us)
        xmpp_wait_ms(run, SESSION_WAIT_STEP_MS);
    run->wait_end_us = system_now_us();
}

/* ------------------------------------------------------------- the run */

static uint32_t cache_capacity_for(uint64_t share)
{
    uint32_t capacity = 16;
    while (capacity < SESSION_CACHE_ENTRIES_MAX && capacity < share * 2)
        capacity *= 2;
    return capacity;
}

static bool reactor_prepare(xmpp_run *run, unsigned index)
{
    xmpp_reactor *reactor = &run->reactors[index];
    uint64_t count = run->options.count;
    reactor->run = run;
    reactor->index = index;
    /* With pairs, both users of a pair live on one reactor (count is even). */
    uint64_t unit = run->options.scenario->pairs ? 2 : 1;
    reactor->first_index = count / unit * index / run->reactor_count * unit;
    reactor->share = count / unit * (index + 1) / run->reactor_count * unit - reactor->first_index;
    reactor->rate_per_second =
        (double)run->options.rate_per_second * (double)reactor->share / (double)count;
    reactor->cache_capacity = cache_capacity_for(reactor->share);
    reactor->sessions = calloc(reactor->share + 1, sizeof *reactor->sessions);
    reactor->cache = calloc(reactor->cache_capacity, sizeof *reactor->cache);
    reactor->scratch = xml_scratch_create();
    reactor->counters.latency_us = histogram_create(1, SESSION_LATENCY_US_MAX, 3);
    if (reactor->sessions == NULL || reactor->cache == NULL || reactor->scratch == NULL ||
        reactor->counters.latency_us == NULL)
        return false;
    for (uint64_t i = 0; i < reactor->share; i++) {
        reactor->sessions[i].reactor = reactor;
        reactor->sessions[i].index = reactor->first_index + i;
    }
    const xmpp_scenario *scenario = run->options.scenario;
    return scenario->reactor_prepare == NULL || scenario->reactor_prepare(reactor);
}

static rx_runtime *runtime_create(const xmpp_options *options)
{
    rx_options runtime_options;
    rx_options_init(&runtime_options);
    runtime_options.reactors = (unsigned)options->reactors;
    runtime_options.handle_signals = false;
    runtime_options.pin_threads = false; /* the operator pins with taskset */
    runtime_options.handshake_timeout_ms = (unsigned)(options->timeout_s * 1000u);
    runtime_options.idle_timeout_ms = SESSION_IDLE_TIMEOUT_MS;
    /* Closing every session at the end is bounded like a login: 200,000
     * closes at once (both ends in one kernel) outlast the server default. */
    runtime_options.shutdown_grace_ms = (unsigned)(options->timeout_s * 1000u);
    return rx_runtime_create(&runtime_options);
}

/* The RLIMIT_NOFILE the run needs. Sessions live as direct descriptors in
 * their reactor's ring table, which the kernel caps at RLIMIT_NOFILE, so a
 * reactor's share must fit under it; the process table holds only the
 * rings, eventfds and the sockets still connecting (at most
 * LIMIT_CONNECT_SOCKETS_PER_REACTOR per reactor). More sessions than the
 * limit therefore take more reactors, not a higher limit. */
static uint64_t descriptors_needed(const xmpp_options *options)
{
    uint64_t share = (options->count + options->reactors - 1) / options->reactors + 2;
    uint64_t process = options->reactors * (LIMIT_CONNECT_SOCKETS_PER_REACTOR + 4);
    return (share > process ? share : process) + SESSION_DESCRIPTORS_SPARE;
}

static bool run_prepare(xmpp_run *run)
{
    const xmpp_options *options = &run->options;
    uint64_t limit = 0;
    uint64_t needed = descriptors_needed(options);
    if (!system_reserve_descriptors(needed, &limit)) {
        complain("--count %" PRIu64 " over --reactors %" PRIu64 " needs %" PRIu64
                 " descriptors per reactor but RLIMIT_NOFILE allows %" PRIu64
                 ": use more reactors\n",
                 options->count, options->reactors, needed, limit);
        return false;
    }
    const char *marker = strstr(options->users, "%d");
    run->users_prefix_bytes = marker != NULL ? (size_t)(marker - options->users) : 0;
    if (options->tls != SESSION_TLS_NONE) {
        char error[TLS_CLIENT_ERROR_BYTES_MAX];
        run->tls_context = tls_client_context_create(options->tls_ca_path, error, sizeof error);
        if (run->tls_context == NULL) {
            complain("%s\n", error);
            return false;
        }
    }
    for (uint64_t i = 0; options->scenario->start_later != NULL && i < options->count; i++)
        run->deferred += options->scenario->start_later(run, i);
    for (uint64_t i = 0; i < options->sources; i++)
        snprintf(run->sources[i], sizeof run->sources[i], "127.0.0.%u", (unsigned)(uint8_t)(i + 1));
    int length = snprintf(run->header, sizeof run->header,
                          "<?xml version='1.0'?><stream:stream to='%s' xmlns='jabber:client' "
                          "xmlns:stream='" STREAM_NAMESPACE "' version='1.0'>",
                          options->domain);
    if (length < 0 || (size_t)length >= sizeof run->header)
        return false;
    run->header_bytes = (size_t)length;
    rx_log_set_level(RX_LOG_WARNING);
    run->runtime = runtime_create(options);
    if (run->runtime == NULL)
        return false;
    run->producer = rx_producer_create(run->runtime);
    run->reactor_count = rx_runtime_reactor_count(run->runtime);
    run->reactors = calloc(run->reactor_count, sizeof *run->reactors);
    if (run->producer == NULL || run->reactors == NULL)
        return false;
    for (unsigned i = 0; i < run->reactor_count; i++)
        if (!reactor_prepare(run, i)) {
            complain("out of memory for reactor %u\n", i);
            return false;
        }
    if (!xmpp_live_prepare(run)) {
        complain("out of memory for the timeline\n");
        return false;
    }
    return true;
}

static void run_free(xmpp_run *run)
{
    if (run->runtime != NULL)
        rx_runtime_destroy(run->runtime);
    xmpp_live_free(run);
    for (unsigned i = 0; run->reactors != NULL && i < run->reactor_count; i++) {
        xmpp_reactor *reactor = &run->reactors[i];
        free(reactor->sessions);
        free(reactor->cache);
        if (reactor->scratch != NULL)
            xml_scratch_destroy(reactor->scratch);
        histogram_destroy(reactor->counters.latency_us);
        histogram_destroy(reactor->first_wave.latency_us);
        if (run->options.scenario->reactor_free != NULL)
            run->options.scenario->reactor_free(reactor);
    }
    free(run->reactors);
    tls_client_context_destroy(run->tls_context);
    free(run);
}

/* Starts the reactors, lets them log in, holds, stops. false when the
 * runtime could not run at all. */
static bool run_sessions(xmpp_run *run)
{
    if (rx_runtime_start(run->runtime) != RX_OK)
        return false;
    run->start_us = system_now_us();
    xmpp_live_start(run);
    xmpp_memory_before(run);
    bool posted = xmpp_post_to_reactors(run, reactor_start);
    if (posted) {
        xmpp_wait_for_logins(run, run->start_us);
        if (run->options.hold_s > 0)
            xmpp_wait_ms(run, run->options.hold_s * 1000u);
        xmpp_memory_after(run);
        if (run->options.scenario->run_phase != NULL)
            posted = run->options.scenario->run_phase(run);
    }
    xmpp_live_before_stop(run);
    rx_runtime_stop(run->runtime);
    rx_runtime_wait(run->runtime);
    xmpp_live_finish(run);
    return posted;
}

/* ------------------------------------------------------------- report */

static void results_add_reactor(xmpp_results *results, const xmpp_reactor *reactor,
                                const xmpp_counters *counters)
{
    results->online += counters->online;
    results->dropped += counters->dropped;
    results->pbkdf2_runs += reactor->pbkdf2_runs;
    results->cache_hits += reactor->cache_hits;
    for (unsigned failure = 0; failure < FAILURE_COUNT; failure++)
        results->failures[failure] += counters->failures[failure];
    for (unsigned i = 0; i < counters->conditions.used; i++) {
        const login_condition *entry = &counters->conditions.entries[i];
        conditions_add(&results->conditions, (login_failure)entry->failure, entry->name,
                       strlen(entry->name), entry->count);
    }
    results->conditions.other += counters->conditions.other;
}

/* Merges the reactors' counters and histograms; only after the reactor
 * threads have exited. */
bool xmpp_compute_results(const xmpp_run *run, bool first_wave, uint64_t since_us,
                          uint64_t finished, xmpp_results *results)
{
    memset(results, 0, sizeof *results);
    results->latency_us = histogram_create(1, SESSION_LATENCY_US_MAX, 3);
    if (results->latency_us == NULL)
        return false;
    uint64_t last_online_us = 0;
    for (unsigned i = 0; i < run->reactor_count; i++) {
        const xmpp_reactor *reactor = &run->reactors[i];
        const xmpp_counters *counters = first_wave ? &reactor->first_wave : &reactor->counters;
        results_add_reactor(results, reactor, counters);
        if (counters->last_online_us > last_online_us)
            last_online_us = counters->last_online_us;
        if (counters->latency_us != NULL &&
            !histogram_merge(results->latency_us, counters->latency_us))
            return false;
    }
    results->not_started = run->options.count - finished;
    results->failures[FAILURE_TIMEOUT] += results->not_started;
    if (results->not_started > 0)
        conditions_add(&results->conditions, FAILURE_TIMEOUT, "not-started", 11,
                       results->not_started);
    for (unsigned failure = 0; failure < FAILURE_COUNT; failure++)
        results->failed += results->failures[failure];
    if (results->online > 0 && last_online_us > since_us) {
        results->all_online_ms = (double)(last_online_us - since_us) / 1000.0;
        results->logins_per_second = (double)results->online * 1000.0 / results->all_online_ms;
    }
    return true;
}

double xmpp_latency_ms(const xmpp_results *results, double percentile)
{
    return (double)histogram_value_at_percentile(results->latency_us, percentile) / 1000.0;
}

void xmpp_print_failures(const xmpp_results *results)
{
    for (unsigned failure = 0; failure < FAILURE_COUNT; failure++) {
        if (results->failures[failure] == 0)
            continue;
        printf("  failed %-13s %8" PRIu64 " :", failure_names[failure], results->failures[failure]);
        for (unsigned i = 0; i < results->conditions.used; i++)
            if (results->conditions.entries[i].failure == failure)
                printf(" %s %" PRIu64, results->conditions.entries[i].name,
                       results->conditions.entries[i].count);
        printf("\n");
    }
    if (results->conditions.other > 0)
        printf("  (%" PRIu64 " more failures with conditions past the table)\n",
               results->conditions.other);
}

static void report_human(const xmpp_run *run, const xmpp_results *results)
{
    const xmpp_options *options = &run->options;
    printf("%s: %" PRIu64 " of %" PRIu64 " online, %" PRIu64
           " failed (%s, tls %s, %u reactor%s, %s:%" PRIu64 ")\n",
           command_name, results->online, options->count, results->failed,
           mechanism_names[options->mechanism], tls_names[options->tls], run->reactor_count,
           run->reactor_count == 1 ? "" : "s", options->host, options->port);
    if (histogram_count(results->latency_us) > 0) {
        printf("  all online after   %10.1f ms   %10.1f logins/s\n", results->all_online_ms,
               results->logins_per_second);
        printf("  login latency ms   p50 %.2f  p90 %.2f  p99 %.2f  max %.2f\n",
               xmpp_latency_ms(results, 50), xmpp_latency_ms(results, 90),
               xmpp_latency_ms(results, 99), xmpp_latency_ms(results, 100));
    }
    xmpp_print_failures(results);
    printf("  scram              %" PRIu64 " PBKDF2 runs, %" PRIu64 " cache hits\n",
           results->pbkdf2_runs, results->cache_hits);
    if (run->usage_available)
        printf("  tool cpu           user %.3f s  system %.3f s  max rss %.1f MiB\n",
               (double)run->usage.user_us / 1e6, (double)run->usage.system_us / 1e6,
               (double)run->usage.max_rss_bytes / 1048576.0);
}

static void json_options(json_writer *writer, const xmpp_run *run)
{
    const xmpp_options *options = &run->options;
    json_object_begin(writer, "options");
    json_string(writer, "host", options->host);
    json_unsigned(writer, "port", options->port);
    json_string(writer, "domain", options->domain);
    json_string(writer, "users", options->users);
    json_unsigned(writer, "count", options->count);
    json_unsigned(writer, "first", options->first);
    json_unsigned(writer, "rate_per_second", options->rate_per_second);
    json_string(writer, "mechanism", mechanism_names[options->mechanism]);
    json_string(writer, "tls", tls_names[options->tls]);
    json_boolean(writer, "tls_verified", options->tls_ca_path != NULL);
    json_unsigned(writer, "reactors", run->reactor_count);
    json_unsigned(writer, "sources", options->sources);
    json_unsigned(writer, "hold_s", options->hold_s);
    json_unsigned(writer, "timeout_s", options->timeout_s);
    json_object_end(writer);
}

void xmpp_json_sessions(json_writer *writer, const char *key, const xmpp_results *results,
                        uint64_t count)
{
    json_object_begin(writer, key);
    json_unsigned(writer, "requested", count);
    json_unsigned(writer, "online", results->online);
    json_unsigned(writer, "failed", results->failed);
    json_object_begin(writer, "failures");
    for (unsigned failure = 0; failure < FAILURE_COUNT; failure++)
        json_unsigned(writer, failure_names[failure], results->failures[failure]);
    json_object_end(writer);
    json_object_begin(writer, "conditions");
    for (unsigned failure = 0; failure < FAILURE_COUNT; failure++) {
        if (results->failures[failure] == 0)
            continue;
        json_object_begin(writer, failure_names[failure]);
        for (unsigned i = 0; i < results->conditions.used; i++)
            if (results->conditions.entries[i].failure == failure)
                json_unsigned(writer, results->conditions.entries[i].name,
                              results->conditions.entries[i].count);
        json_object_end(writer);
    }
    json_unsigned(writer, "other", results->conditions.other);
    json_object_end(writer);
    json_object_end(writer);
}

static void json_timing(json_writer *writer, const xmpp_run *run, const xmpp_results *results)
{
    bool measured = histogram_count(results->latency_us) > 0;
    json_object_begin(writer, "timing");
    json_optional_number(writer, "all_online_ms", measured, results->all_online_ms);
    json_optional_number(writer, "logins_per_second", measured, results->logins_per_second);
    json_number(writer, "wait_ms", (double)(run->wait_end_us - run->start_us) / 1000.0);
    json_object_begin(writer, "login_latency_ms");
    json_optional_number(writer, "p50", measured, measured ? xmpp_latency_ms(results, 50) : 0);
    json_optional_number(writer, "p90", measured, measured ? xmpp_latency_ms(results, 90) : 0);
    json_optional_number(writer, "p99", measured, measured ? xmpp_latency_ms(results, 99) : 0);
    json_optional_number(writer, "max", measured, measured ? xmpp_latency_ms(results, 100) : 0);
    json_object_end(writer);
    json_object_end(writer);
    json_object_begin(writer, "scram");
    json_unsigned(writer, "pbkdf2_runs", results->pbkdf2_runs);
    json_unsigned(writer, "cache_hits", results->cache_hits);
    json_object_end(writer);
    json_object_begin(writer, "tool_usage");
    json_optional_unsigned(writer, "user_cpu_us", run->usage_available, run->usage.user_us);
    json_optional_unsigned(writer, "system_cpu_us", run->usage_available, run->usage.system_us);
    json_optional_unsigned(writer, "max_rss_bytes", run->usage_available, run->usage.max_rss_bytes);
    json_object_end(writer);
}

typedef struct xmpp_report {
    const xmpp_run *run;
    const xmpp_results *results;
} xmpp_report;

static void report_body(json_writer *writer, const void *context)
{
    const xmpp_report *report = context;
    const xmpp_run *run = report->run;
    json_options(writer, run);
    xmpp_json_sessions(writer, "sessions", report->results, run->options.count);
    json_timing(writer, run, report->results);
    xmpp_memory_report_json(writer, run);
    if (run->options.scenario->report_json != NULL)
        run->options.scenario->report_json(writer, run);
    xmpp_live_report_json(writer, run);
}

static bool report_json(const xmpp_run *run, const xmpp_results *results, const char *path)
{
    xmpp_report report = {run, results};
    return json_write_report(command_name, path, STARLING_VERSION, run->options.scenario->name,
                             report_body, &report);
}

/* One line on stderr when sessions did not get online: how many, and the
 * commonest reason with its commonest condition, so a script's log says
 * why without reading the summary. */
static void complain_goal_missed(const xmpp_run *run, const xmpp_results *results)
{
    unsigned worst = 0;
    for (unsigned i = 1; i < FAILURE_COUNT; i++)
        if (results->failures[i] > results->failures[worst])
            worst = i;
    const login_condition *condition = NULL;
    for (unsigned i = 0; i < results->conditions.used; i++) {
        const login_condition *entry = &results->conditions.entries[i];
        if (entry->failure == worst && (condition == NULL || entry->count > condition->count))
            condition = entry;
    }
    if (results->failures[worst] == 0) {
        complain("goal missed: %" PRIu64 " of %" PRIu64 " sessions online\n", results->online,
                 run->options.count);
        return;
    }
    complain("goal missed: %" PRIu64 " of %" PRIu64 " sessions online; %" PRIu64
             " failed with %s%s%s\n",
             results->online, run->options.count, results->failures[worst], failure_names[worst],
             condition != NULL ? " / " : "", condition != NULL ? condition->name : "");
}

/* Runs the sessions and reports; returns the exit status. */
static int run_and_report(xmpp_run *run)
{
    if (!run_sessions(run))
        return CLI_EXIT_FAILED;
    run->usage_available = system_tool_usage(&run->usage);
    xmpp_results results;
    uint64_t since_us = run->drop_us != 0 ? run->drop_us : run->start_us;
    if (!xmpp_compute_results(run, false, since_us, atomic_load(&run->finished), &results)) {
        histogram_destroy(results.latency_us);
        complain("the reactors' histograms do not merge\n");
        return CLI_EXIT_FAILED;
    }
    report_human(run, &results);
    xmpp_memory_report_human(run);
    const xmpp_scenario *scenario = run->options.scenario;
    if (scenario->report_human != NULL)
        scenario->report_human(run);
    xmpp_live_report_human(run);
    bool written =
        run->options.json_path == NULL || report_json(run, &results, run->options.json_path);
    histogram_destroy(results.latency_us);
    if (!xmpp_live_plot(run))
        written = false;
    if (!written)
        return CLI_EXIT_FAILED;
    bool sessions_complete = results.online == run->options.count && results.failed == 0;
    bool complete = sessions_complete && (scenario->succeeded == NULL || scenario->succeeded(run));
    if (!sessions_complete)
        complain_goal_missed(run, &results);
    else if (!complete)
        complain("goal missed: all %" PRIu64 " sessions online, the scenario's checks failed "
                 "(see the summary)\n",
                 run->options.count);
    return complete ? CLI_EXIT_OK : CLI_EXIT_FAILED;
}

int xmpp_bench_main(int argc, char **argv, const xmpp_scenario *scenario)
{
    command_name = scenario->command;
    xmpp_run *run = calloc(1, sizeof *run);
    if (run == NULL) {
        complain("out of memory\n");
        return CLI_EXIT_FAILED;
    }
    int status = xmpp_parse_options(argc, argv, scenario, &run->options);
    if (status == CLI_EXIT_OK)
        status = run_prepare(run) ? run_and_report(run) : CLI_EXIT_FAILED;
    else if (status == CLI_EXIT_HELP)
        status = CLI_EXIT_OK;
    run_free(run);
    return status;
}
