/*
 * bench_idle.c: the idle scenario of starling-bench. It opens N connections
 * to a server, optionally opens an XMPP stream on each (sends the client
 * header, waits for the server's <stream:features>), holds them all idle,
 * then closes them. It answers two questions: how fast does the server
 * accept and answer new streams (connects/s as the client sees it), and
 * what does an idle connection cost (the server's RSS and Pss growth per
 * connection, the kernel's socket memory per connection).
 *
 * One thread, non-blocking sockets, level-triggered epoll. Connections are
 * started in index order, at --rate per second or as fast as --in-flight
 * allows, from source addresses 127.0.0.1..127.0.0.K (bound before connect
 * with IP_BIND_ADDRESS_NO_PORT, so each source has its own ephemeral port
 * space). Every phase has a deadline and every loop a count bound: the open
 * phase ends at --open-timeout-s, a connection fails after
 * --connect-timeout-ms, the hold lasts --hold seconds.
 *
 * The server's bytes are read with the proto tokenizer, which is allocated
 * only while a connection awaits its features, so the tool itself stays
 * small (about 48 bytes per held connection plus the kernel's socket).
 */
#include "bench/src/bench_cli.h"
#include "bench/src/bench_commands.h"
#include "bench/src/bench_json.h"
#include "bench/src/bench_memory.h"
#include "bench/src/bench_system.h"
#include "proto/xml.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define IDLE_COMMAND                "starling-bench idle"
#define IDLE_COUNT_MAX              1000000u
#define IDLE_SOURCES_MAX            254u
#define IDLE_CONNECTIONS_PER_SOURCE 20000u
#define IDLE_DESCRIPTORS_SPARE      64u
#define IDLE_EVENTS_PER_WAIT        1024
#define IDLE_READS_PER_EVENT        8
#define IDLE_READ_BUFFER_BYTES      16384u
#define IDLE_WAIT_MS_MAX            10
#define IDLE_HOLD_WAIT_MS_MAX       1000
#define IDLE_DOMAIN_BYTES_MAX       255u
#define IDLE_HEADER_BYTES_MAX       512u
#define STREAM_NAMESPACE            "http://etherx.jabber.org/streams"

typedef struct idle_options {
    const char *host;
    struct sockaddr_in target;
    uint64_t port;
    uint64_t count;
    uint64_t rate_per_second; /* 0: as fast as in_flight_max allows */
    uint64_t in_flight_max;
    uint64_t sources; /* 0: let the kernel pick the source address */
    bool sources_given;
    bool xmpp;
    const char *domain;
    uint64_t hold_s;
    uint64_t connect_timeout_ms;
    uint64_t open_timeout_s;
    uint64_t server_pid; /* 0: none */
    const char *json_path;
} idle_options;

/* Why a connection did not make it, or did not stay. */
typedef enum idle_failure {
    FAILURE_SOCKET = 0,      /* socket() failed: descriptors or memory */
    FAILURE_BIND,            /* the source address could not be bound */
    FAILURE_REFUSED,         /* nothing listening, or the accept queue overflowed */
    FAILURE_CONNECT_ERROR,   /* any other connect error (EADDRNOTAVAIL: ports ran out) */
    FAILURE_CONNECT_TIMEOUT, /* TCP did not connect within --connect-timeout-ms */
    FAILURE_RESET,           /* the server reset the connection before answering */
    FAILURE_IO_ERROR,        /* another send or receive error before answering */
    FAILURE_CLOSED,          /* the server closed before answering */
    FAILURE_BAD_XML,         /* the server's bytes were not a well-formed stream */
    FAILURE_UNEXPECTED,      /* something other than <stream:features> came first */
    FAILURE_ANSWER_TIMEOUT,  /* no <stream:features> within --connect-timeout-ms */
    FAILURE_DROPPED,         /* the server closed an answered connection before we did */
    FAILURE_NOT_STARTED,     /* the open phase ended before this one was started */
    FAILURE_SYSTEM,          /* epoll refused the descriptor */
    FAILURE_COUNT
} idle_failure;

static const char *const failure_names[FAILURE_COUNT] = {
    "socket",         "bind",     "refused",     "connect_error", "connect_timeout",
    "reset",          "io_error", "closed",      "bad_xml",       "unexpected_element",
    "answer_timeout", "dropped",  "not_started", "system",
};

enum connection_state {
    STATE_NEW = 0,
    STATE_CONNECTING,
    STATE_SENDING_HEADER,
    STATE_AWAITING_FEATURES,
    STATE_OPEN,
    STATE_DONE, /* failed or closed by us; fd is -1 */
};

typedef struct idle_connection {
    int fd;
    uint8_t state;
    bool stream_opened; /* the server's stream header arrived */
    uint16_t header_sent_bytes;
    uint64_t started_us;
    uint64_t connected_us;    /* 0 until TCP connected */
    uint64_t answered_us;     /* 0 until answered (raw: = connected_us) */
    xml_tokenizer *tokenizer; /* owned; only while awaiting features */
} idle_connection;

typedef struct idle_run {
    idle_options options;
    idle_connection *connections; /* owned, options.count of them */
    int epoll_fd;
    xml_scratch *scratch; /* owned */
    char header[IDLE_HEADER_BYTES_MAX];
    size_t header_bytes;
    uint64_t started, connected, answered, pending, open_now, failed;
    uint64_t failures[FAILURE_COUNT];
    int first_error[FAILURE_COUNT]; /* errno of the first failure of each kind */
    uint64_t next_deadline_index;
    uint64_t open_start_us, last_answer_us, close_elapsed_us;
    uint64_t unexpected_bytes, close_errors;
    uint64_t held_at_sample;
    memory_sample before, after;
    bool usage_available;
    tool_usage usage;
    char read_buffer[IDLE_READ_BUFFER_BYTES];
} idle_run;

/* ------------------------------------------------------------- options */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: " IDLE_COMMAND " [options]\n"
            "Opens N connections, optionally an XMPP stream on each (client header sent,\n"
            "server's <stream:features> awaited), holds them idle, closes them, and reports\n"
            "connects/s and, with --server-pid, the server's memory per connection.\n"
            "  --host ADDR              server IPv4 address (default 127.0.0.1)\n"
            "  --port PORT              server port (default 5222)\n"
            "  --count N                connections to open (default 1000, max %u)\n"
            "  --rate R                 connections started per second (default 0: as fast\n"
            "                           as --in-flight allows)\n"
            "  --in-flight N            connections connecting or awaiting an answer at once\n"
            "                           (default 256)\n"
            "  --sources K              bind source addresses 127.0.0.1..127.0.0.K round robin\n"
            "                           (default one per %u connections on loopback, 0 = none)\n"
            "  --xmpp                   open an XMPP stream on each connection (default)\n"
            "  --raw                    only connect\n"
            "  --login                  log sessions in instead (SASL, bind, presence, TLS)\n"
            "                           on the session engine: see idle --login --help\n"
            "  --domain NAME            the stream header's 'to' (default localhost)\n"
            "  --hold SECONDS           hold every connection this long (default 5)\n"
            "  --connect-timeout-ms MS  per connection, until connected and answered\n"
            "                           (default 10000)\n"
            "  --open-timeout-s S       bound of the whole open phase (default 300)\n"
            "  --server-pid PID         sample this process's VmRSS and Pss before and after\n"
            "  --json FILE              also write the report as JSON to FILE\n"
            "  --help                   this text\n"
            "Exit status: 0 when all N were answered and held, 1 otherwise, 2 for usage.\n",
            IDLE_COUNT_MAX, IDLE_CONNECTIONS_PER_SOURCE);
}

static const struct option long_options[] = {
    {"host", required_argument, NULL, 'H'},
    {"port", required_argument, NULL, 'p'},
    {"count", required_argument, NULL, 'n'},
    {"rate", required_argument, NULL, 'r'},
    {"in-flight", required_argument, NULL, 'f'},
    {"sources", required_argument, NULL, 's'},
    {"xmpp", no_argument, NULL, 'x'},
    {"raw", no_argument, NULL, 'R'},
    {"domain", required_argument, NULL, 'd'},
    {"hold", required_argument, NULL, 'o'},
    {"connect-timeout-ms", required_argument, NULL, 'c'},
    {"open-timeout-s", required_argument, NULL, 't'},
    {"server-pid", required_argument, NULL, 'P'},
    {"json", required_argument, NULL, 'j'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* Applies one parsed option; false after a one-line error. */
static bool apply_option(int choice, const char *value, void *context)
{
    idle_options *options = context;
    const char *name = cli_option_name(long_options, choice);
    switch (choice) {
    case 'H':
        options->host = value;
        return true;
    case 'p':
        return cli_parse_unsigned(IDLE_COMMAND, name, value, 1, 65535, &options->port);
    case 'n':
        return cli_parse_unsigned(IDLE_COMMAND, name, value, 1, IDLE_COUNT_MAX, &options->count);
    case 'r':
        return cli_parse_unsigned(IDLE_COMMAND, name, value, 0, 10000000,
                                  &options->rate_per_second);
    case 'f':
        return cli_parse_unsigned(IDLE_COMMAND, name, value, 1, 65536, &options->in_flight_max);
    case 's':
        options->sources_given = true;
        return cli_parse_unsigned(IDLE_COMMAND, name, value, 0, IDLE_SOURCES_MAX,
                                  &options->sources);
    case 'x':
        options->xmpp = true;
        return true;
    case 'R':
        options->xmpp = false;
        return true;
    case 'd':
        options->domain = value;
        return true;
    case 'o':
        return cli_parse_unsigned(IDLE_COMMAND, name, value, 0, 86400, &options->hold_s);
    case 'c':
        return cli_parse_unsigned(IDLE_COMMAND, name, value, 1, 600000,
                                  &options->connect_timeout_ms);
    case 't':
        return cli_parse_unsigned(IDLE_COMMAND, name, value, 1, 86400, &options->open_timeout_s);
    case 'P':
        return cli_parse_unsigned(IDLE_COMMAND, name, value, 1, 4194304, &options->server_pid);
    case 'j':
        options->json_path = value;
        return true;
    default:
        return false;
    }
}

/* A domain goes into a quoted attribute as is, so it must need no escaping. */
static bool domain_valid(const char *domain)
{
    size_t length = strlen(domain);
    return length > 0 && length <= IDLE_DOMAIN_BYTES_MAX &&
           strpbrk(domain, "'\"<>& \t\r\n") == NULL;
}

/* Checks what single options cannot: the host, the domain, the sources. */
static bool options_consistent(idle_options *options)
{
    memset(&options->target, 0, sizeof options->target);
    options->target.sin_family = AF_INET;
    options->target.sin_port = htons((uint16_t)options->port);
    if (inet_pton(AF_INET, options->host, &options->target.sin_addr) != 1) {
        fprintf(stderr, IDLE_COMMAND ": --host wants an IPv4 address, not '%s'\n", options->host);
        return false;
    }
    if (!domain_valid(options->domain)) {
        fprintf(stderr, IDLE_COMMAND ": --domain '%s' is not a plain domain name\n",
                options->domain);
        return false;
    }
    bool loopback = (ntohl(options->target.sin_addr.s_addr) >> 24) == 127;
    if (!options->sources_given)
        options->sources = loopback ? (options->count + IDLE_CONNECTIONS_PER_SOURCE - 1) /
                                          IDLE_CONNECTIONS_PER_SOURCE
                                    : 0;
    if (options->sources > 0 && !loopback) {
        fprintf(stderr, IDLE_COMMAND ": --sources binds 127.0.0.x, so --host must be in 127/8\n");
        return false;
    }
    if (options->server_pid != 0 && kill((pid_t)options->server_pid, 0) != 0 && errno == ESRCH) {
        fprintf(stderr, IDLE_COMMAND ": --server-pid %" PRIu64 ": no such process\n",
                options->server_pid);
        return false;
    }
    return true;
}

/* Returns CLI_EXIT_OK to run, or the exit status to leave with. */
static int parse_options(int argc, char **argv, idle_options *options)
{
    *options = (idle_options){
        .host = "127.0.0.1",
        .port = 5222,
        .count = 1000,
        .in_flight_max = 256,
        .xmpp = true,
        .domain = "localhost",
        .hold_s = 5,
        .connect_timeout_ms = 10000,
        .open_timeout_s = 300,
    };
    int status =
        cli_parse_options(IDLE_COMMAND, argc, argv, long_options, usage, apply_option, options);
    if (status != CLI_EXIT_OK)
        return status;
    return options_consistent(options) ? CLI_EXIT_OK : CLI_EXIT_USAGE;
}

/* --------------------------------------------------------- connections */

static bool state_pending(uint8_t state)
{
    return state == STATE_CONNECTING || state == STATE_SENDING_HEADER ||
           state == STATE_AWAITING_FEATURES;
}

static void release_tokenizer(idle_connection *connection)
{
    if (connection->tokenizer == NULL)
        return;
    xml_tokenizer_fini(connection->tokenizer);
    free(connection->tokenizer);
    connection->tokenizer = NULL;
}

/* Closes our side of a connection (closing also leaves the epoll set). */
static void connection_close(idle_run *run, idle_connection *connection)
{
    if (connection->fd >= 0 && close(connection->fd) != 0)
        run->close_errors++;
    connection->fd = -1;
    release_tokenizer(connection);
    if (state_pending(connection->state))
        run->pending--;
    if (connection->state == STATE_OPEN)
        run->open_now--;
    connection->state = STATE_DONE;
}

static void connection_fail(idle_run *run, idle_connection *connection, idle_failure failure,
                            int error)
{
    connection_close(run, connection);
    run->failed++;
    run->failures[failure]++;
    if (run->first_error[failure] == 0)
        run->first_error[failure] = error;
}

/* Adds or changes the connection's epoll interest; on failure the
 * connection fails (FAILURE_SYSTEM), which callers see in its state. */
static void watch(idle_run *run, idle_connection *connection, int operation, uint32_t events)
{
    struct epoll_event event = {
        .events = events,
        .data.u64 = (uint64_t)(connection - run->connections),
    };
    if (epoll_ctl(run->epoll_fd, operation, connection->fd, &event) != 0)
        connection_fail(run, connection, FAILURE_SYSTEM, errno);
}

static void mark_answered(idle_run *run, idle_connection *connection, uint64_t now_us)
{
    connection->answered_us = now_us;
    connection->state = STATE_OPEN;
    release_tokenizer(connection);
    run->pending--;
    run->answered++;
    run->open_now++;
    run->last_answer_us = now_us;
}

/* Binds fd to 127.0.0.(1 + source) with the port left to connect, which
 * then picks one unique for the whole 4-tuple rather than for the address
 * alone. false with errno set. */
static bool bind_source(int fd, uint64_t source)
{
    int one = 1;
    struct sockaddr_in address = {.sin_family = AF_INET};
    address.sin_addr.s_addr = htonl((127u << 24) | (uint32_t)(1 + source));
    return setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one) == 0 &&
           bind(fd, (const struct sockaddr *)&address, sizeof address) == 0;
}

/* Binds the source address of connection index (round robin), then
 * connects without blocking. */
static void connection_start(idle_run *run, uint64_t index)
{
    idle_connection *connection = &run->connections[index];
    connection->started_us = system_now_us();
    connection->state = STATE_CONNECTING;
    run->started++;
    run->pending++;
    connection->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (connection->fd < 0) {
        connection_fail(run, connection, FAILURE_SOCKET, errno);
        return;
    }
    if (run->options.sources > 0 && !bind_source(connection->fd, index % run->options.sources)) {
        connection_fail(run, connection, FAILURE_BIND, errno);
        return;
    }
    if (connect(connection->fd, (const struct sockaddr *)&run->options.target,
                sizeof run->options.target) != 0 &&
        errno != EINPROGRESS) {
        connection_fail(run, connection,
                        errno == ECONNREFUSED ? FAILURE_REFUSED : FAILURE_CONNECT_ERROR, errno);
        return;
    }
    /* A connect that finished at once is reported writable just the same. */
    watch(run, connection, EPOLL_CTL_ADD, EPOLLOUT);
}

static void send_header(idle_run *run, idle_connection *connection)
{
    size_t sent = connection->header_sent_bytes;
    ssize_t written =
        send(connection->fd, run->header + sent, run->header_bytes - sent, MSG_NOSIGNAL);
    if (written < 0) {
        if (errno == EAGAIN || errno == EINTR)
            return; /* still watched for EPOLLOUT */
        connection_fail(run, connection, errno == ECONNRESET ? FAILURE_RESET : FAILURE_IO_ERROR,
                        errno);
        return;
    }
    connection->header_sent_bytes = (uint16_t)(sent + (size_t)written);
    if (connection->header_sent_bytes < run->header_bytes)
        return;
    connection->state = STATE_AWAITING_FEATURES;
    watch(run, connection, EPOLL_CTL_MOD, EPOLLIN | EPOLLRDHUP);
}

static void finish_connect(idle_run *run, idle_connection *connection, uint64_t now_us)
{
    int error = 0;
    socklen_t error_length = sizeof error;
    if (getsockopt(connection->fd, SOL_SOCKET, SO_ERROR, &error, &error_length) != 0)
        error = errno;
    if (error != 0) {
        connection_fail(run, connection,
                        error == ECONNREFUSED ? FAILURE_REFUSED : FAILURE_CONNECT_ERROR, error);
        return;
    }
    connection->connected_us = now_us;
    run->connected++;
    if (!run->options.xmpp) {
        watch(run, connection, EPOLL_CTL_MOD, EPOLLIN | EPOLLRDHUP);
        if (connection->state == STATE_CONNECTING)
            mark_answered(run, connection, now_us);
        return;
    }
    connection->tokenizer = malloc(sizeof *connection->tokenizer);
    if (connection->tokenizer == NULL) {
        connection_fail(run, connection, FAILURE_SYSTEM, ENOMEM);
        return;
    }
    xml_tokenizer_init(connection->tokenizer);
    connection->state = STATE_SENDING_HEADER;
    send_header(run, connection);
}

/* Is the stanza the server's <stream:features>? */
static bool is_features(const xml_view *view)
{
    xml_node_id root = xml_view_root(view);
    xml_slice name = xml_element_name(view, root);
    xml_slice namespace_name = xml_element_namespace(view, root);
    return name.len == strlen("features") && memcmp(name.ptr, "features", name.len) == 0 &&
           namespace_name.len == strlen(STREAM_NAMESPACE) &&
           memcmp(namespace_name.ptr, STREAM_NAMESPACE, namespace_name.len) == 0;
}

/* Feeds received bytes to the connection's tokenizer until the features
 * arrive or the stream goes wrong. */
static void feed_answer(idle_run *run, idle_connection *connection, const char *bytes,
                        size_t length, uint64_t now_us)
{
    size_t at = 0;
    /* Every event but NEED_MORE consumes at least one byte, and NEED_MORE
     * consumes the rest, so length + 1 rounds bound the loop. */
    for (size_t round = 0; round <= length && at < length; round++) {
        size_t used = 0;
        xml_view view;
        xml_event event = xml_tokenizer_feed(connection->tokenizer, run->scratch, bytes + at,
                                             length - at, &used, &view);
        at += used;
        switch (event) {
        case XML_EVENT_NEED_MORE:
            break;
        case XML_EVENT_STREAM_OPEN:
            connection->stream_opened = true;
            break;
        case XML_EVENT_STANZA:
            if (!connection->stream_opened || !is_features(&view)) {
                connection_fail(run, connection, FAILURE_UNEXPECTED, EPROTO);
                return;
            }
            run->unexpected_bytes += length - at;
            mark_answered(run, connection, now_us);
            return;
        case XML_EVENT_STREAM_CLOSE:
            connection_fail(run, connection, FAILURE_UNEXPECTED, EPROTO);
            return;
        case XML_EVENT_ERROR:
            connection_fail(run, connection, FAILURE_BAD_XML, EPROTO);
            return;
        }
    }
}

/* Reads what the socket holds (a bounded number of reads per event; level
 * triggering brings the rest back). Returns the bytes read, 0 when nothing
 * more is there now, -1 after failing the connection with failure_on_end
 * (end of stream) or an error-specific reason. */
static ssize_t receive(idle_run *run, idle_connection *connection, idle_failure failure_on_end)
{
    ssize_t received = recv(connection->fd, run->read_buffer, sizeof run->read_buffer, 0);
    if (received > 0)
        return received;
    if (received < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    if (received == 0) {
        connection_fail(run, connection, failure_on_end, 0);
    } else if (failure_on_end == FAILURE_DROPPED) {
        connection_fail(run, connection, FAILURE_DROPPED, errno);
    } else {
        connection_fail(run, connection, errno == ECONNRESET ? FAILURE_RESET : FAILURE_IO_ERROR,
                        errno);
    }
    return -1;
}

static void read_answer(idle_run *run, idle_connection *connection, uint64_t now_us)
{
    for (int reads = 0; reads < IDLE_READS_PER_EVENT; reads++) {
        ssize_t received = receive(run, connection, FAILURE_CLOSED);
        if (received <= 0)
            return;
        feed_answer(run, connection, run->read_buffer, (size_t)received, now_us);
        if (connection->state != STATE_AWAITING_FEATURES)
            return;
    }
}

/* An answered connection should stay silent; anything it says is counted,
 * its end is a drop. */
static void read_while_open(idle_run *run, idle_connection *connection)
{
    for (int reads = 0; reads < IDLE_READS_PER_EVENT; reads++) {
        ssize_t received = receive(run, connection, FAILURE_DROPPED);
        if (received <= 0)
            return;
        run->unexpected_bytes += (uint64_t)received;
    }
}

static void on_event(idle_run *run, const struct epoll_event *event, uint64_t now_us)
{
    if (event->data.u64 >= run->options.count)
        return;
    idle_connection *connection = &run->connections[event->data.u64];
    switch (connection->state) {
    case STATE_CONNECTING:
        finish_connect(run, connection, now_us);
        break;
    case STATE_SENDING_HEADER:
        send_header(run, connection);
        break;
    case STATE_AWAITING_FEATURES:
        read_answer(run, connection, now_us);
        break;
    case STATE_OPEN:
        read_while_open(run, connection);
        break;
    default:
        break; /* closed earlier in this batch: its event is stale */
    }
}

/* Waits up to wait_ms and handles what arrived. false when epoll failed. */
static bool poll_once(idle_run *run, int wait_ms)
{
    struct epoll_event events[IDLE_EVENTS_PER_WAIT];
    int ready = epoll_wait(run->epoll_fd, events, IDLE_EVENTS_PER_WAIT, wait_ms);
    if (ready < 0) {
        if (errno == EINTR)
            return true;
        fprintf(stderr, IDLE_COMMAND ": epoll_wait: %s\n", strerror(errno));
        return false;
    }
    uint64_t now_us = system_now_us();
    for (int i = 0; i < ready; i++)
        on_event(run, &events[i], now_us);
    return true;
}

/* Fails pending connections older than the connect timeout. Connections
 * start in index order with one timeout, so deadlines rise with the index
 * and the scan stops at the first pending one still in time. */
static void expire_deadlines(idle_run *run, uint64_t now_us)
{
    uint64_t timeout_us = run->options.connect_timeout_ms * 1000u;
    while (run->next_deadline_index < run->started) {
        idle_connection *connection = &run->connections[run->next_deadline_index];
        if (state_pending(connection->state)) {
            if (connection->started_us + timeout_us > now_us)
                return;
            connection_fail(run, connection,
                            connection->state == STATE_CONNECTING ? FAILURE_CONNECT_TIMEOUT
                                                                  : FAILURE_ANSWER_TIMEOUT,
                            ETIMEDOUT);
        }
        run->next_deadline_index++;
    }
}

/* ---------------------------------------------------------------- phases */

/* Starts what the rate and the in-flight bound allow now; returns how long
 * to wait (ms) before the next start is due. */
static int start_due(idle_run *run, uint64_t now_us)
{
    const idle_options *options = &run->options;
    uint64_t allowed = options->count;
    if (options->rate_per_second > 0) {
        uint64_t due = 1 + (now_us - run->open_start_us) * options->rate_per_second / 1000000u;
        allowed = due < allowed ? due : allowed;
    }
    while (run->started < allowed && run->pending < options->in_flight_max)
        connection_start(run, run->started);
    if (options->rate_per_second == 0 || run->started >= options->count ||
        run->pending >= options->in_flight_max)
        return IDLE_WAIT_MS_MAX;
    uint64_t next_us = run->open_start_us + run->started * 1000000u / options->rate_per_second;
    uint64_t wait_ms = next_us > now_us ? (next_us - now_us + 999u) / 1000u : 0;
    return wait_ms < IDLE_WAIT_MS_MAX ? (int)wait_ms : IDLE_WAIT_MS_MAX;
}

/* Opens every connection; bounded by --open-timeout-s. false on an epoll
 * failure (the run is void). */
static bool phase_open(idle_run *run)
{
    uint64_t now_us = system_now_us();
    uint64_t deadline_us = now_us + run->options.open_timeout_s * 1000000u;
    run->open_start_us = now_us;
    while ((run->started < run->options.count || run->pending > 0) && now_us < deadline_us) {
        int wait_ms = start_due(run, now_us);
        if (!poll_once(run, wait_ms))
            return false;
        now_us = system_now_us();
        expire_deadlines(run, now_us);
    }
    for (uint64_t index = run->next_deadline_index; index < run->started; index++) {
        idle_connection *connection = &run->connections[index];
        if (state_pending(connection->state))
            connection_fail(run, connection,
                            connection->state == STATE_CONNECTING ? FAILURE_CONNECT_TIMEOUT
                                                                  : FAILURE_ANSWER_TIMEOUT,
                            ETIMEDOUT);
    }
    uint64_t never_started = run->options.count - run->started;
    run->failures[FAILURE_NOT_STARTED] += never_started;
    run->failed += never_started;
    return true;
}

/* Holds the answered connections for --hold seconds, noting drops. */
static bool phase_hold(idle_run *run)
{
    uint64_t now_us = system_now_us();
    uint64_t hold_end_us = now_us + run->options.hold_s * 1000000u;
    while (now_us < hold_end_us) {
        uint64_t left_ms = (hold_end_us - now_us + 999u) / 1000u;
        if (!poll_once(run, left_ms < IDLE_HOLD_WAIT_MS_MAX ? (int)left_ms : IDLE_HOLD_WAIT_MS_MAX))
            return false;
        now_us = system_now_us();
    }
    return true;
}

static void phase_close(idle_run *run)
{
    uint64_t start_us = system_now_us();
    for (uint64_t index = 0; index < run->options.count; index++)
        if (run->connections[index].fd >= 0)
            connection_close(run, &run->connections[index]);
    run->close_elapsed_us = system_now_us() - start_us;
}

/* ---------------------------------------------------------------- report */

typedef struct latency_summary {
    bool available;
    double p50_ms, p99_ms, max_ms;
} latency_summary;

typedef struct idle_results {
    double open_elapsed_ms; /* first start to last answer */
    double connects_per_second;
    latency_summary connect_latency, answer_latency;
    memory_results memory;
} idle_results;

static int compare_unsigned(const void *left, const void *right)
{
    uint64_t a = *(const uint64_t *)left, b = *(const uint64_t *)right;
    return (a > b) - (a < b);
}

/* Percentiles of (connected or answered) - started over the connections
 * that got there. */
static latency_summary summarize_latency(const idle_run *run, bool answered)
{
    latency_summary summary = {0};
    uint64_t *values = malloc((run->options.count + 1) * sizeof *values);
    if (values == NULL)
        return summary;
    size_t used = 0;
    for (uint64_t index = 0; index < run->options.count; index++) {
        const idle_connection *connection = &run->connections[index];
        uint64_t end_us = answered ? connection->answered_us : connection->connected_us;
        if (end_us != 0)
            values[used++] = end_us - connection->started_us;
    }
    if (used > 0) {
        qsort(values, used, sizeof *values, compare_unsigned);
        summary.available = true;
        summary.p50_ms = (double)values[(used - 1) / 2] / 1000.0;
        summary.p99_ms = (double)values[(used * 99 + 99) / 100 - 1] / 1000.0;
        summary.max_ms = (double)values[used - 1] / 1000.0;
    }
    free(values);
    return summary;
}

static idle_results compute_results(const idle_run *run)
{
    idle_results results = {0};
    if (run->answered > 0) {
        results.open_elapsed_ms = (double)(run->last_answer_us - run->open_start_us) / 1000.0;
        results.connects_per_second = results.open_elapsed_ms > 0
                                          ? (double)run->answered * 1000.0 / results.open_elapsed_ms
                                          : 0;
    }
    results.connect_latency = summarize_latency(run, false);
    results.answer_latency = summarize_latency(run, true);
    results.memory = memory_compute(&run->before, &run->after, run->held_at_sample);
    return results;
}

static double mebibytes(uint64_t bytes)
{
    return (double)bytes / (1024.0 * 1024.0);
}

static void print_failures(const idle_run *run)
{
    if (run->failed == 0) {
        printf("  failures: none\n");
        return;
    }
    printf("  failures: %" PRIu64 "\n", run->failed);
    for (int failure = 0; failure < FAILURE_COUNT; failure++) {
        if (run->failures[failure] == 0)
            continue;
        printf("    %-20s %8" PRIu64, failure_names[failure], run->failures[failure]);
        if (run->first_error[failure] != 0)
            printf("  (first: %s)", strerror(run->first_error[failure]));
        printf("\n");
    }
}

static void print_latency(const char *label, const latency_summary *latency)
{
    if (latency->available)
        printf("  %-22s p50 %.2f ms  p99 %.2f ms  max %.2f ms\n", label, latency->p50_ms,
               latency->p99_ms, latency->max_ms);
}

static void report_human(const idle_run *run, const idle_results *results)
{
    const idle_options *options = &run->options;
    printf(IDLE_COMMAND ": %" PRIu64 " of %" PRIu64 " %s to %s:%" PRIu64 " (%" PRIu64
                        " source addresses)\n",
           run->answered, options->count,
           options->xmpp ? "XMPP streams opened" : "connections made", options->host, options->port,
           options->sources);
    print_failures(run);
    if (run->answered > 0)
        printf("  open phase             %.1f ms until the last answer, %.0f connects/s\n",
               results->open_elapsed_ms, results->connects_per_second);
    else
        printf("  open phase             nothing answered\n");
    print_latency("connect latency", &results->connect_latency);
    if (options->xmpp)
        print_latency("features latency", &results->answer_latency);
    printf("  held                   %" PRIu64 " connections for %" PRIu64
           " s, closed in %.1f ms\n",
           run->held_at_sample, options->hold_s, (double)run->close_elapsed_us / 1000.0);
    memory_print(&results->memory, "connection");
    if (run->usage_available)
        printf("  tool CPU               user %.0f ms, system %.0f ms, peak RSS %.1f MiB\n",
               (double)run->usage.user_us / 1000.0, (double)run->usage.system_us / 1000.0,
               mebibytes(run->usage.max_rss_bytes));
}

static void json_latency(json_writer *writer, const char *key, const latency_summary *latency)
{
    json_object_begin(writer, key);
    json_optional_number(writer, "p50", latency->available, latency->p50_ms);
    json_optional_number(writer, "p99", latency->available, latency->p99_ms);
    json_optional_number(writer, "max", latency->available, latency->max_ms);
    json_object_end(writer);
}

static void json_options(json_writer *writer, const idle_options *options)
{
    json_object_begin(writer, "options");
    json_string(writer, "host", options->host);
    json_unsigned(writer, "port", options->port);
    json_unsigned(writer, "count", options->count);
    json_unsigned(writer, "rate_per_second", options->rate_per_second);
    json_unsigned(writer, "in_flight_max", options->in_flight_max);
    json_unsigned(writer, "sources", options->sources);
    json_string(writer, "mode", options->xmpp ? "xmpp" : "raw");
    json_string(writer, "domain", options->domain);
    json_unsigned(writer, "hold_s", options->hold_s);
    json_unsigned(writer, "connect_timeout_ms", options->connect_timeout_ms);
    json_unsigned(writer, "open_timeout_s", options->open_timeout_s);
    json_optional_unsigned(writer, "server_pid", options->server_pid != 0, options->server_pid);
    json_object_end(writer);
}

static void json_connections(json_writer *writer, const idle_run *run)
{
    json_object_begin(writer, "connections");
    json_unsigned(writer, "requested", run->options.count);
    json_unsigned(writer, "started", run->started);
    json_unsigned(writer, "connected", run->connected);
    json_unsigned(writer, "established", run->answered);
    json_unsigned(writer, "held_at_sample", run->held_at_sample);
    json_unsigned(writer, "failed", run->failed);
    json_unsigned(writer, "unexpected_bytes", run->unexpected_bytes);
    json_unsigned(writer, "close_errors", run->close_errors);
    json_object_begin(writer, "failures");
    for (int failure = 0; failure < FAILURE_COUNT; failure++)
        json_unsigned(writer, failure_names[failure], run->failures[failure]);
    json_object_end(writer);
    json_object_begin(writer, "first_errors");
    for (int failure = 0; failure < FAILURE_COUNT; failure++)
        if (run->first_error[failure] != 0)
            json_string(writer, failure_names[failure], strerror(run->first_error[failure]));
    json_object_end(writer);
    json_object_end(writer);
}

static void json_measurements(json_writer *writer, const idle_run *run, const idle_results *results)
{
    json_object_begin(writer, "timing");
    json_number(writer, "open_elapsed_ms", results->open_elapsed_ms);
    json_number(writer, "connects_per_second", results->connects_per_second);
    json_latency(writer, "connect_latency_ms", &results->connect_latency);
    json_latency(writer, "answer_latency_ms", &results->answer_latency);
    json_number(writer, "close_elapsed_ms", (double)run->close_elapsed_us / 1000.0);
    json_object_end(writer);
    memory_json(writer, run->options.server_pid, &run->before, &run->after, &results->memory);
    json_object_begin(writer, "tool_usage");
    json_optional_unsigned(writer, "user_cpu_us", run->usage_available, run->usage.user_us);
    json_optional_unsigned(writer, "system_cpu_us", run->usage_available, run->usage.system_us);
    json_optional_unsigned(writer, "max_rss_bytes", run->usage_available, run->usage.max_rss_bytes);
    json_object_end(writer);
}

typedef struct idle_report {
    const idle_run *run;
    const idle_results *results;
} idle_report;

static void report_body(json_writer *writer, const void *context)
{
    const idle_report *report = context;
    json_options(writer, &report->run->options);
    json_connections(writer, report->run);
    json_measurements(writer, report->run, report->results);
}

static bool report_json(const idle_run *run, const idle_results *results, const char *path)
{
    idle_report report = {run, results};
    return json_write_report(IDLE_COMMAND, path, STARLING_VERSION, "idle", report_body, &report);
}

/* ------------------------------------------------------------------ main */

static bool run_prepare(idle_run *run)
{
    uint64_t limit = 0;
    if (!system_reserve_descriptors(run->options.count + IDLE_DESCRIPTORS_SPARE, &limit)) {
        fprintf(stderr,
                IDLE_COMMAND ": --count %" PRIu64 " needs %" PRIu64
                             " descriptors but RLIMIT_NOFILE allows %" PRIu64
                             "; run several processes\n",
                run->options.count, run->options.count + IDLE_DESCRIPTORS_SPARE, limit);
        return false;
    }
    run->epoll_fd = -1;
    run->connections = calloc(run->options.count, sizeof *run->connections);
    if (run->connections == NULL)
        return false;
    for (uint64_t index = 0; index < run->options.count; index++)
        run->connections[index].fd = -1;
    run->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (run->epoll_fd < 0) {
        fprintf(stderr, IDLE_COMMAND ": epoll_create1: %s\n", strerror(errno));
        return false;
    }
    int length = snprintf(run->header, sizeof run->header,
                          "<?xml version='1.0'?><stream:stream to='%s' xmlns='jabber:client' "
                          "xmlns:stream='" STREAM_NAMESPACE "' version='1.0'>",
                          run->options.domain);
    if (length < 0 || (size_t)length >= sizeof run->header)
        return false;
    run->header_bytes = (size_t)length;
    if (run->options.xmpp && (run->scratch = xml_scratch_create()) == NULL) {
        fprintf(stderr, IDLE_COMMAND ": out of memory for the tokenizer scratch\n");
        return false;
    }
    return true;
}

static void run_free(idle_run *run)
{
    if (run->connections != NULL)
        phase_close(run);
    if (run->epoll_fd >= 0 && close(run->epoll_fd) != 0)
        run->close_errors++;
    if (run->scratch != NULL)
        xml_scratch_destroy(run->scratch);
    free(run->connections);
    free(run);
}

/* Runs the phases and reports; returns the exit status. */
static int run_phases(idle_run *run)
{
    memory_sample_take(IDLE_COMMAND, run->options.server_pid, &run->before);
    if (!phase_open(run) || !phase_hold(run))
        return CLI_EXIT_FAILED;
    memory_sample_take(IDLE_COMMAND, run->options.server_pid, &run->after);
    run->held_at_sample = run->open_now;
    phase_close(run);
    run->usage_available = system_tool_usage(&run->usage);
    idle_results results = compute_results(run);
    report_human(run, &results);
    if (run->options.json_path != NULL && !report_json(run, &results, run->options.json_path))
        return CLI_EXIT_FAILED;
    bool complete = run->answered == run->options.count && run->failed == 0;
    return complete ? CLI_EXIT_OK : CLI_EXIT_FAILED;
}

int bench_idle_main(int argc, char **argv)
{
    if (bench_idle_wants_login(argc, argv))
        return bench_idle_login_main(argc, argv);
    idle_run *run = calloc(1, sizeof *run);
    if (run == NULL) {
        fprintf(stderr, IDLE_COMMAND ": out of memory\n");
        return CLI_EXIT_FAILED;
    }
    run->epoll_fd = -1;
    int status = parse_options(argc, argv, &run->options);
    if (status == CLI_EXIT_OK)
        status = run_prepare(run) ? run_phases(run) : CLI_EXIT_FAILED;
    else if (status == CLI_EXIT_HELP)
        status = CLI_EXIT_OK;
    run_free(run);
    return status;
}
