/*
 * test_conn_move.c: moving live connections between reactors
 * (rx_conn_move_to) on 127.0.0.1, against plain client sockets driven from
 * the test thread.
 *
 * The server keeps one "session" per connection, standing in for the XMPP
 * core's: it is the state pointer every move carries, it owns an app timer
 * (cancelled before each move, armed again in done), and it records every
 * move's outcome so the checks can say that done ran exactly once, on the
 * thread that owns the connection, before on_close. A client picks the
 * server's behaviour by its first byte: 'E' echoes and moves to the next
 * reactor every few reads; 'C' reads one-byte commands (see on_command).
 * Numbered bytes are i mod 251 for the i-th byte of a stream, so a lost,
 * doubled or reordered chunk shows up. Every wait is bounded.
 *
 * "bench [connections] [reactors] [seconds]" (not a ctest case) moves every
 * connection round the reactors without pause and prints moves per second.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proto/limits.h"
#include "server/runtime/rx.h"
#include "tests/harness.h"

#define NUMBER_MODULUS 251u

/* ------------------------------------------------------------- the server */

typedef struct session {
    rx_conn *conn;
    rx_timer timer;
    char mode;
    bool moving;        /* a move was asked and its done has not run */
    bool part3_pending; /* 'q': queue part 3 once the move is done */
    unsigned reads;
    unsigned move_source;
    unsigned move_target;
    uint64_t produced; /* numbered bytes queued so far */
} session;

static struct {
    atomic_uint opened;
    atomic_uint closed;
    atomic_uint reasons[16];
    atomic_uint moves_requested;
    atomic_uint done_ok;
    atomic_uint done_full;
    atomic_uint done_state;
    atomic_uint done_closed;
    atomic_uint done_other;
    atomic_uint wrong; /* a broken promise: wrong thread, state, reactor, twice */
    atomic_uint closed_while_moving;
    atomic_uint timer_fired;
    atomic_uint send_failures;
    atomic_uint api_checks_failed;
    atomic_ullong queued_at_move; /* send queue bytes when 'q' moved */
    atomic_bool bench_stop;
    unsigned move_every; /* 'E': move after every this many reads */
    size_t part_bytes[3];
} app;

static void app_reset(void)
{
    memset(&app, 0, sizeof app);
}

static void send_or_count(rx_conn *conn, const void *bytes, size_t len)
{
    if (rx_conn_send(conn, bytes, len) != RX_OK) {
        atomic_fetch_add(&app.send_failures, 1);
    }
}

/* Queues the next len numbered bytes in 4 KiB sends. */
static void produce(session *state, size_t len)
{
    uint8_t chunk[4096];
    while (len > 0) {
        size_t take = len < sizeof chunk ? len : sizeof chunk;
        for (size_t i = 0; i < take; i++) {
            chunk[i] = (uint8_t)((state->produced + i) % NUMBER_MODULUS);
        }
        send_or_count(state->conn, chunk, take);
        state->produced += take;
        len -= take;
    }
}

/* The app timer must fire on the reactor that owns the connection. */
static void session_timer_fired(rx_timer *timer, void *argument)
{
    (void)timer;
    session *state = argument;
    if (rx_reactor_current() != rx_conn_reactor(state->conn)) {
        atomic_fetch_add(&app.wrong, 1);
    }
    atomic_fetch_add(&app.timer_fired, 1);
}

static void move_done(rx_conn *conn, void *pointer, rx_status status);

static rx_status session_move(session *state, unsigned target)
{
    rx_timer_cancel(&state->timer);
    state->move_source = rx_conn_reactor_index(state->conn);
    state->move_target = target;
    state->moving = true;
    rx_status status = rx_conn_move_to(state->conn, target, state, move_done);
    if (status != RX_OK) {
        state->moving = false;
        return status;
    }
    atomic_fetch_add(&app.moves_requested, 1);
    return RX_OK;
}

static unsigned next_reactor(const session *state)
{
    unsigned count = rx_reactor_count(rx_conn_reactor(state->conn));
    return (rx_conn_reactor_index(state->conn) + 1) % count;
}

static char status_letter(rx_status status)
{
    switch (status) {
    case RX_OK:
        return 'K';
    case RX_ERR_FULL:
        return 'F';
    case RX_ERR_STATE:
        return 'S';
    default:
        return 'X';
    }
}

static void move_done_count(const session *state, rx_status status)
{
    unsigned here = rx_conn_reactor_index(state->conn);
    switch (status) {
    case RX_OK:
        atomic_fetch_add(&app.done_ok, 1);
        if (here != state->move_target) {
            atomic_fetch_add(&app.wrong, 1);
        }
        return;
    case RX_ERR_FULL:
        atomic_fetch_add(&app.done_full, 1);
        break;
    case RX_ERR_STATE:
        atomic_fetch_add(&app.done_state, 1);
        break;
    case RX_ERR_CLOSED:
        atomic_fetch_add(&app.done_closed, 1);
        break;
    default:
        atomic_fetch_add(&app.done_other, 1);
        break;
    }
    if (here != state->move_source) {
        atomic_fetch_add(&app.wrong, 1);
    }
}

static void move_done(rx_conn *conn, void *pointer, rx_status status)
{
    session *state = pointer;
    if (state != rx_conn_userdata(conn) || state->conn != conn || !state->moving ||
        rx_reactor_current() != rx_conn_reactor(conn)) {
        atomic_fetch_add(&app.wrong, 1);
    }
    state->moving = false;
    move_done_count(state, status);
    if (status == RX_ERR_CLOSED) {
        return;
    }
    rx_timer_arm(&state->timer, 1);
    if (state->part3_pending) {
        state->part3_pending = false;
        produce(state, app.part_bytes[2]);
    } else if (state->mode == 'R') {
        if (!atomic_load(&app.bench_stop)) {
            (void)session_move(state, next_reactor(state));
        }
    } else if (state->mode == 'C') {
        char letter = status_letter(status);
        send_or_count(conn, &letter, 1);
    }
}

static void on_open(rx_conn *conn, void *context)
{
    (void)context;
    session *state = calloc(1, sizeof *state);
    if (state == NULL) {
        abort();
    }
    state->conn = conn;
    rx_timer_init(&state->timer, session_timer_fired, state);
    rx_conn_set_userdata(conn, state);
    atomic_fetch_add(&app.opened, 1);
}

static void on_close(rx_conn *conn, rx_close_reason reason)
{
    session *state = rx_conn_userdata(conn);
    if (state->moving) {
        atomic_fetch_add(&app.closed_while_moving, 1);
    }
    rx_timer_cancel(&state->timer);
    atomic_fetch_add(&app.reasons[reason], 1);
    atomic_fetch_add(&app.closed, 1);
    free(state);
}

/* The ops a connection switches to on 'o': it shouts back what it reads. */
static void shout_data(rx_conn *conn, const uint8_t *bytes, size_t len)
{
    uint8_t upper[256];
    while (len > 0) {
        size_t take = len < sizeof upper ? len : sizeof upper;
        for (size_t i = 0; i < take; i++) {
            upper[i] = bytes[i] >= 'a' && bytes[i] <= 'z' ? (uint8_t)(bytes[i] - 32) : bytes[i];
        }
        send_or_count(conn, upper, take);
        bytes += take;
        len -= take;
    }
}

static const rx_listener_ops shout_ops = {
    .on_open = on_open,
    .on_data = shout_data,
    .on_close = on_close,
};

static const rx_listener_ops broken_ops = {
    .on_open = on_open,
    .on_close = on_close,
};

/* 'a': the calls a move must refuse, then a move to the reactor itself. */
static void api_checks(session *state)
{
    rx_conn *conn = state->conn;
    unsigned here = rx_conn_reactor_index(conn);
    unsigned count = rx_reactor_count(rx_conn_reactor(conn));
    bool good = rx_conn_move(conn, here) == RX_ERR_INVALID &&
                rx_conn_move_to(conn, count, state, move_done) == RX_ERR_INVALID &&
                rx_conn_move_to(conn, here, state, NULL) == RX_ERR_INVALID &&
                rx_conn_set_ops(conn, &broken_ops) == RX_ERR_INVALID &&
                session_move(state, here) == RX_OK &&
                rx_conn_move_to(conn, (here + 1) % count, state, move_done) == RX_ERR_INVALID;
    if (!good) {
        atomic_fetch_add(&app.api_checks_failed, 1);
    }
}

static void on_command(session *state, uint8_t command)
{
    rx_conn *conn = state->conn;
    switch (command) {
    case 'w': {
        char digit = (char)('0' + rx_conn_reactor_index(conn));
        send_or_count(conn, &digit, 1);
        break;
    }
    case 'm':
        if (session_move(state, next_reactor(state)) != RX_OK) {
            send_or_count(conn, "E", 1);
        }
        break;
    case 'a':
        api_checks(state);
        break;
    case 'F':
    case 'Q':
        produce(state, app.part_bytes[0]);
        break;
    case 'q':
        produce(state, app.part_bytes[1]);
        atomic_store(&app.queued_at_move, rx_conn_send_queue_bytes(conn));
        state->part3_pending = session_move(state, next_reactor(state)) == RX_OK;
        break;
    case 'M':
        (void)session_move(state, next_reactor(state));
        break;
    case 'o':
        if (rx_conn_set_ops(conn, &shout_ops) != RX_OK) {
            atomic_fetch_add(&app.api_checks_failed, 1);
        }
        (void)session_move(state, next_reactor(state));
        break;
    case 'R':
        state->mode = 'R';
        (void)session_move(state, next_reactor(state));
        break;
    default:
        break;
    }
}

static void on_data(rx_conn *conn, const uint8_t *bytes, size_t len)
{
    session *state = rx_conn_userdata(conn);
    if (state->mode == 0) {
        state->mode = (char)bytes[0];
        rx_conn_handshake_done(conn);
        bytes++;
        len--;
    }
    if (state->mode == 'E') {
        if (len > 0) {
            send_or_count(conn, bytes, len);
        }
        state->reads++;
        if (app.move_every != 0 && state->reads % app.move_every == 0 && !state->moving) {
            (void)session_move(state, next_reactor(state));
        }
        return;
    }
    for (size_t i = 0; i < len; i++) {
        /* A 'C' connection whose ops were swapped gets no more bytes here. */
        if (state->mode == 'C' || state->mode == 'R') {
            on_command(state, bytes[i]);
        }
    }
}

static const rx_listener_ops move_ops = {
    .on_open = on_open,
    .on_data = on_data,
    .on_close = on_close,
};

/* ------------------------------------------------------ server lifecycle */

static void test_options(rx_options *options, unsigned reactors)
{
    rx_options_init(options);
    options->reactors = reactors;
    options->handle_signals = false;
    options->pin_threads = false;
    options->send_queue_bytes = 64u * 1024u * 1024u;
    options->send_queue_bytes_hard = 128u * 1024u * 1024u;
    options->write_timeout_ms = 0;
}

static rx_runtime *server_start(const rx_options *options, uint16_t *port)
{
    rx_runtime *runtime = rx_runtime_create(options);
    if (runtime == NULL) {
        return NULL;
    }
    rx_listener *listener = NULL;
    if (rx_runtime_add_listener(runtime, "127.0.0.1", 0, &move_ops, NULL, &listener) != RX_OK ||
        rx_runtime_start(runtime) != RX_OK) {
        rx_runtime_destroy(runtime);
        return NULL;
    }
    *port = rx_listener_port(listener);
    return runtime;
}

static void server_stop(rx_runtime *runtime)
{
    rx_runtime_stop(runtime);
    rx_runtime_wait(runtime);
    rx_runtime_destroy(runtime);
}

static rx_reactor_stats stats_sum(rx_runtime *runtime)
{
    rx_reactor_stats sum;
    memset(&sum, 0, sizeof sum);
    for (unsigned i = 0; i < rx_runtime_reactor_count(runtime); i++) {
        rx_reactor_stats one;
        if (rx_runtime_stats(runtime, i, &one) != RX_OK) {
            continue;
        }
        sum.open_connections += one.open_connections;
        sum.closed += one.closed;
        sum.bytes_sent += one.bytes_sent;
        sum.moves_in += one.moves_in;
        sum.moves_out += one.moves_out;
        sum.send_queue_bytes += one.send_queue_bytes;
    }
    return sum;
}

static bool wait_for(atomic_uint *counter, unsigned target, unsigned timeout_ms)
{
    unsigned long long deadline = harness_now_ms() + timeout_ms;
    while (atomic_load(counter) < target) {
        if (harness_now_ms() > deadline) {
            return false;
        }
        usleep(1000);
    }
    return true;
}

/* Waits (bounded) until every connection is closed, every move counted on
 * both sides (the source counts its move out when the kernel confirms the
 * hand-off, which may come after the target counted it in) and every queue
 * dropped (a closed connection drops its queue once its ops are done). */
static rx_reactor_stats wait_settled(rx_runtime *runtime)
{
    unsigned long long deadline = harness_now_ms() + 10000;
    rx_reactor_stats sum = stats_sum(runtime);
    while (
        (sum.open_connections != 0 || sum.moves_in != sum.moves_out || sum.send_queue_bytes != 0) &&
        harness_now_ms() < deadline) {
        usleep(1000);
        sum = stats_sum(runtime);
    }
    return sum;
}

/* The promises every test checks at its end. */
static void check_invariants(rx_runtime *runtime, unsigned connections)
{
    CHECK(wait_for(&app.closed, connections, 20000));
    rx_reactor_stats sum = wait_settled(runtime);
    unsigned done = atomic_load(&app.done_ok) + atomic_load(&app.done_full) +
                    atomic_load(&app.done_state) + atomic_load(&app.done_closed) +
                    atomic_load(&app.done_other);
    CHECK(done == atomic_load(&app.moves_requested));
    CHECK(atomic_load(&app.wrong) == 0);
    CHECK(atomic_load(&app.closed_while_moving) == 0);
    CHECK(atomic_load(&app.send_failures) == 0);
    CHECK(atomic_load(&app.api_checks_failed) == 0);
    CHECK(atomic_load(&app.closed) == connections);
    CHECK(sum.open_connections == 0);
    CHECK(sum.send_queue_bytes == 0);
    CHECK(sum.moves_in == sum.moves_out);
}

/* ------------------------------------------------------------- the client */

static int client_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(port)};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static bool write_all(int fd, const void *bytes, size_t len)
{
    const uint8_t *cursor = bytes;
    unsigned long long deadline = harness_now_ms() + 10000;
    while (len > 0 && harness_now_ms() < deadline) {
        ssize_t written = write(fd, cursor, len);
        if (written > 0) {
            cursor += written;
            len -= (size_t)written;
        } else if (written < 0 && errno != EAGAIN && errno != EINTR) {
            return false;
        } else {
            struct pollfd entry = {.fd = fd, .events = POLLOUT};
            (void)poll(&entry, 1, 100);
        }
    }
    return len == 0;
}

static bool read_exact(int fd, void *bytes, size_t len, unsigned timeout_ms)
{
    uint8_t *cursor = bytes;
    unsigned long long deadline = harness_now_ms() + timeout_ms;
    while (len > 0 && harness_now_ms() < deadline) {
        struct pollfd entry = {.fd = fd, .events = POLLIN};
        if (poll(&entry, 1, 100) <= 0) {
            continue;
        }
        ssize_t got = read(fd, cursor, len);
        if (got > 0) {
            cursor += got;
            len -= (size_t)got;
        } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
            return false;
        }
    }
    return len == 0;
}

/* Sends command and returns the one-byte reply, or 0. */
static char ask(int fd, char command)
{
    char reply = 0;
    if (!write_all(fd, &command, 1) || !read_exact(fd, &reply, 1, 10000)) {
        return 0;
    }
    return reply;
}

/* Reads len numbered bytes starting at number *offset; false on a gap. */
static bool read_numbered(int fd, uint64_t *offset, size_t len)
{
    uint8_t chunk[65536];
    while (len > 0) {
        size_t take = len < sizeof chunk ? len : sizeof chunk;
        if (!read_exact(fd, chunk, take, 20000)) {
            return false;
        }
        for (size_t i = 0; i < take; i++) {
            if (chunk[i] != (uint8_t)((*offset + i) % NUMBER_MODULUS)) {
                fprintf(stderr, "   byte %llu wrong\n", (unsigned long long)(*offset + i));
                return false;
            }
        }
        *offset += take;
        len -= take;
    }
    return true;
}

static void close_all(int *fds, unsigned count)
{
    for (unsigned i = 0; i < count; i++) {
        if (fds[i] >= 0) {
            close(fds[i]);
            fds[i] = -1;
        }
    }
}

/* ---------------------------------------- 1. a stream across many moves */

#define STREAM_CLIENTS 8u
#define STREAM_BYTES   (1024u * 1024u)

typedef struct stream_client {
    int fd;
    size_t sent;
    size_t received;
    bool intact;
} stream_client;

static void stream_send(stream_client *client)
{
    uint8_t chunk[8192];
    size_t take = 1 + (size_t)rand() % sizeof chunk;
    if (take > STREAM_BYTES - client->sent) {
        take = STREAM_BYTES - client->sent;
    }
    for (size_t i = 0; i < take; i++) {
        chunk[i] = (uint8_t)((client->sent + i) % NUMBER_MODULUS);
    }
    ssize_t written = write(client->fd, chunk, take);
    if (written > 0) {
        client->sent += (size_t)written;
    }
}

static void stream_receive(stream_client *client)
{
    uint8_t chunk[16384];
    ssize_t got = read(client->fd, chunk, sizeof chunk);
    if (got <= 0) {
        client->intact = client->intact && got < 0 && errno == EAGAIN;
        return;
    }
    for (ssize_t i = 0; i < got; i++) {
        client->intact = client->intact &&
                         chunk[i] == (uint8_t)((client->received + (size_t)i) % NUMBER_MODULUS);
    }
    client->received += (size_t)got;
}

/* Drives every client: send while there is room, check every echo. */
static bool stream_run(stream_client *clients)
{
    unsigned long long deadline = harness_now_ms() + 60000;
    for (;;) {
        struct pollfd entries[STREAM_CLIENTS];
        unsigned finished = 0;
        for (unsigned i = 0; i < STREAM_CLIENTS; i++) {
            entries[i].fd = clients[i].fd;
            entries[i].events = POLLIN | (clients[i].sent < STREAM_BYTES ? POLLOUT : 0);
            entries[i].revents = 0;
            finished += clients[i].received == STREAM_BYTES || !clients[i].intact;
        }
        if (finished == STREAM_CLIENTS || harness_now_ms() > deadline) {
            break;
        }
        if (poll(entries, STREAM_CLIENTS, 100) <= 0) {
            continue;
        }
        for (unsigned i = 0; i < STREAM_CLIENTS; i++) {
            if (entries[i].revents & POLLOUT) {
                stream_send(&clients[i]);
            }
            if (entries[i].revents & (POLLIN | POLLERR | POLLHUP)) {
                stream_receive(&clients[i]);
            }
        }
    }
    bool all = true;
    for (unsigned i = 0; i < STREAM_CLIENTS; i++) {
        all = all && clients[i].intact && clients[i].received == STREAM_BYTES;
    }
    return all;
}

static void test_stream(void)
{
    app_reset();
    app.move_every = 2;
    rx_options options;
    test_options(&options, 3);
    /* Few buffers: the kernel cannot run far ahead of a move. */
    options.recv_buffers = 64;
    uint16_t port = 0;
    rx_runtime *runtime = server_start(&options, &port);
    CHECK(runtime != NULL);
    if (runtime == NULL) {
        return;
    }
    stream_client clients[STREAM_CLIENTS];
    for (unsigned i = 0; i < STREAM_CLIENTS; i++) {
        clients[i] = (stream_client){.fd = client_connect(port), .intact = true};
        CHECK(clients[i].fd >= 0 && write_all(clients[i].fd, "E", 1));
        CHECK(fcntl(clients[i].fd, F_SETFL, O_NONBLOCK) == 0);
    }
    CHECK(stream_run(clients));
    fprintf(stderr, "   moves requested %u, arrived %u, closed on the way %u, timers %u\n",
            atomic_load(&app.moves_requested), atomic_load(&app.done_ok),
            atomic_load(&app.done_closed), atomic_load(&app.timer_fired));
    /* Every client moved, most of them many times, while streaming; the
     * app timer armed by the last done fires on the reactor that owns the
     * connection now (each move cancelled the one before). */
    CHECK(atomic_load(&app.done_ok) >= STREAM_CLIENTS);
    CHECK(wait_for(&app.timer_fired, 1, 10000));
    for (unsigned i = 0; i < STREAM_CLIENTS; i++) {
        close(clients[i].fd);
    }
    check_invariants(runtime, STREAM_CLIENTS);
    CHECK(atomic_load(&app.done_ok) + atomic_load(&app.done_closed) ==
          atomic_load(&app.moves_requested));
    CHECK(atomic_load(&app.reasons[RX_CLOSE_PEER]) == STREAM_CLIENTS);
    CHECK(stats_sum(runtime).moves_in == atomic_load(&app.done_ok));
    server_stop(runtime);
}

/* ------------------------------- 2. sends queued at the move keep order */

static void test_queued_sends(void)
{
    app_reset();
    app.part_bytes[0] = 4u * 1024u * 1024u;
    app.part_bytes[1] = 1024u * 1024u;
    app.part_bytes[2] = 1024u * 1024u;
    rx_options options;
    test_options(&options, 2);
    uint16_t port = 0;
    rx_runtime *runtime = server_start(&options, &port);
    CHECK(runtime != NULL);
    if (runtime == NULL) {
        return;
    }
    int fd = client_connect(port);
    CHECK(fd >= 0);
    char start = 0;
    CHECK(write_all(fd, "Cw", 2) && read_exact(fd, &start, 1, 10000));
    CHECK(start == '0' || start == '1');
    CHECK(write_all(fd, "Q", 1));
    /* The first numbered byte: part 1 is being written, with more queued
     * than the socket holds, when 'q' asks for the move. */
    uint64_t offset = 0;
    CHECK(read_numbered(fd, &offset, 1));
    CHECK(write_all(fd, "q", 1));
    CHECK(
        read_numbered(fd, &offset, app.part_bytes[0] + app.part_bytes[1] + app.part_bytes[2] - 1));
    CHECK(wait_for(&app.done_ok, 1, 10000));
    fprintf(stderr, "   %llu bytes were queued when the move was asked\n",
            (unsigned long long)atomic_load(&app.queued_at_move));
    CHECK(atomic_load(&app.queued_at_move) >= app.part_bytes[1]);
    CHECK(ask(fd, 'w') == (start == '0' ? '1' : '0'));
    close(fd);
    check_invariants(runtime, 1);
    CHECK(atomic_load(&app.done_ok) == 1);
    server_stop(runtime);
}

/* ------------------------------------------- 3. a move to the same reactor */

static void test_same_reactor(void)
{
    app_reset();
    rx_options options;
    test_options(&options, 2);
    uint16_t port = 0;
    rx_runtime *runtime = server_start(&options, &port);
    CHECK(runtime != NULL);
    if (runtime == NULL) {
        return;
    }
    int fd = client_connect(port);
    char start = 0;
    CHECK(fd >= 0 && write_all(fd, "Cw", 2) && read_exact(fd, &start, 1, 10000));
    /* 'a' runs the refused calls, then moves to its own reactor. */
    CHECK(ask(fd, 'a') == 'K');
    CHECK(ask(fd, 'w') == start);
    CHECK(atomic_load(&app.done_ok) == 1);
    close(fd);
    check_invariants(runtime, 1);
    CHECK(stats_sum(runtime).moves_in == 0);
    server_stop(runtime);
}

/* ------------------------------------------ 4. the peer closes mid-move */

/* Waits (bounded) until the server's bytes_sent stops growing: the client's
 * receive buffer and the server's send buffer are full, so the send the
 * server has in flight cannot complete. */
static bool wait_send_stuck(rx_runtime *runtime)
{
    unsigned long long deadline = harness_now_ms() + 10000;
    uint64_t last = 0;
    unsigned still = 0;
    while (still < 5 && harness_now_ms() < deadline) {
        usleep(20 * 1000);
        uint64_t now = stats_sum(runtime).bytes_sent;
        still = now > 0 && now == last ? still + 1 : 0;
        last = now;
    }
    return still >= 5;
}

static void test_peer_closed(void)
{
    app_reset();
    app.part_bytes[0] = 32u * 1024u * 1024u;
    rx_options options;
    test_options(&options, 2);
    uint16_t port = 0;
    rx_runtime *runtime = server_start(&options, &port);
    CHECK(runtime != NULL);
    if (runtime == NULL) {
        return;
    }
    /* A move that waits for a send which cannot finish, then a reset. */
    int fd = client_connect(port);
    CHECK(fd >= 0 && write_all(fd, "CF", 2));
    CHECK(wait_send_stuck(runtime));
    CHECK(write_all(fd, "M", 1));
    CHECK(wait_for(&app.moves_requested, 1, 10000));
    struct linger linger = {.l_onoff = 1, .l_linger = 0};
    CHECK(setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, sizeof linger) == 0);
    close(fd);
    check_invariants(runtime, 1);
    CHECK(atomic_load(&app.done_closed) == 1);
    CHECK(atomic_load(&app.done_ok) == 0);
    CHECK(atomic_load(&app.reasons[RX_CLOSE_ERROR]) == 1);
    CHECK(stats_sum(runtime).moves_in == 0);
    server_stop(runtime);
}

#define CLOSERS 64u

/* Peers that ask for a move and close at once: the end of file lands
 * before or after the hand-off; either way done runs once, before
 * on_close, on the reactor that owns the connection then. */
static void test_peer_closed_many(void)
{
    app_reset();
    rx_options options;
    test_options(&options, 2);
    uint16_t port = 0;
    rx_runtime *runtime = server_start(&options, &port);
    CHECK(runtime != NULL);
    if (runtime == NULL) {
        return;
    }
    for (unsigned i = 0; i < CLOSERS; i++) {
        int fd = client_connect(port);
        CHECK(fd >= 0 && write_all(fd, "CM", 2));
        close(fd);
    }
    check_invariants(runtime, CLOSERS);
    fprintf(stderr, "   %u moved then closed, %u closed on the way\n", atomic_load(&app.done_ok),
            atomic_load(&app.done_closed));
    CHECK(atomic_load(&app.moves_requested) == CLOSERS);
    CHECK(atomic_load(&app.done_ok) + atomic_load(&app.done_closed) == CLOSERS);
    /* One that arrived answers 'K' to a closed socket: a reset may end it. */
    CHECK(atomic_load(&app.reasons[RX_CLOSE_PEER]) >= atomic_load(&app.done_closed));
    CHECK(atomic_load(&app.reasons[RX_CLOSE_PEER]) + atomic_load(&app.reasons[RX_CLOSE_ERROR]) ==
          CLOSERS);
    CHECK(stats_sum(runtime).moves_in == atomic_load(&app.done_ok));
    server_stop(runtime);
}

/* ------------------------------------------- 5. the target's table is full */

#define TABLE_SLOTS     8u
#define TABLE_ATTEMPTS  200u
#define TABLE_RETRY_MAX 500u

static void test_target_full(void)
{
    app_reset();
    rx_options options;
    test_options(&options, 2);
    options.connections_per_reactor = TABLE_SLOTS;
    uint16_t port = 0;
    rx_runtime *runtime = server_start(&options, &port);
    CHECK(runtime != NULL);
    if (runtime == NULL) {
        return;
    }
    /* Fill reactor 1's table; keep one connection of reactor 0. */
    int fds[TABLE_ATTEMPTS];
    int on_zero = -1;
    int on_one = -1;
    unsigned count_one = 0;
    for (unsigned i = 0; i < TABLE_ATTEMPTS; i++) {
        fds[i] = -1;
        if (count_one == TABLE_SLOTS && on_zero >= 0) {
            continue;
        }
        int fd = client_connect(port);
        char digit = 0;
        if (fd < 0 || !write_all(fd, "Cw", 2) || !read_exact(fd, &digit, 1, 2000)) {
            if (fd >= 0) {
                close(fd); /* refused: that reactor's table was full */
            }
            continue;
        }
        fds[i] = fd;
        if (digit == '1') {
            count_one++;
            on_one = (int)i;
        } else if (on_zero < 0) {
            on_zero = (int)i;
        }
    }
    CHECK(count_one == TABLE_SLOTS && on_zero >= 0);
    if (count_one == TABLE_SLOTS && on_zero >= 0) {
        int fd = fds[on_zero];
        /* Refused by the kernel (ENFILE): the connection stays, working. */
        CHECK(ask(fd, 'm') == 'F');
        CHECK(ask(fd, 'w') == '0');
        CHECK(atomic_load(&app.done_full) == 1);
        /* Once a slot frees on reactor 1 the same move goes through. */
        close(fds[on_one]);
        fds[on_one] = -1;
        char reply = 'F';
        for (unsigned retry = 0; retry < TABLE_RETRY_MAX && reply == 'F'; retry++) {
            usleep(10 * 1000);
            reply = ask(fd, 'm');
        }
        CHECK(reply == 'K');
        CHECK(ask(fd, 'w') == '1');
    }
    close_all(fds, TABLE_ATTEMPTS);
    check_invariants(runtime, atomic_load(&app.opened));
    CHECK(atomic_load(&app.done_ok) == 1);
    server_stop(runtime);
}

/* --------------------------------------- 6. many connections move at once */

#define MANY_CONNECTIONS 2000u
#define MANY_REACTORS    4u
#define MANY_ROUNDS      3u

static bool many_read_all(const int *fds, char expected_base, const char *starts, unsigned round)
{
    bool all = true;
    for (unsigned i = 0; i < MANY_CONNECTIONS; i++) {
        char reply = 0;
        char expected = expected_base;
        if (starts != NULL) {
            expected = (char)('0' + ((unsigned)(starts[i] - '0') + round) % MANY_REACTORS);
        }
        all = all && read_exact(fds[i], &reply, 1, 20000) && reply == expected;
    }
    return all;
}

static void test_many(void)
{
    app_reset();
    rx_options options;
    test_options(&options, MANY_REACTORS);
    uint16_t port = 0;
    rx_runtime *runtime = server_start(&options, &port);
    CHECK(runtime != NULL);
    if (runtime == NULL) {
        return;
    }
    int *fds = calloc(MANY_CONNECTIONS, sizeof *fds);
    char *starts = calloc(MANY_CONNECTIONS, 1);
    bool connected = fds != NULL && starts != NULL;
    for (unsigned i = 0; connected && i < MANY_CONNECTIONS; i++) {
        fds[i] = client_connect(port);
        connected =
            fds[i] >= 0 && write_all(fds[i], "Cw", 2) && read_exact(fds[i], &starts[i], 1, 10000);
    }
    CHECK(connected);
    for (unsigned round = 1; connected && round <= MANY_ROUNDS; round++) {
        for (unsigned i = 0; i < MANY_CONNECTIONS; i++) {
            CHECK(write_all(fds[i], "m", 1));
        }
        CHECK(many_read_all(fds, 'K', NULL, 0));
        for (unsigned i = 0; i < MANY_CONNECTIONS; i++) {
            CHECK(write_all(fds[i], "w", 1));
        }
        CHECK(many_read_all(fds, 0, starts, round));
    }
    if (fds != NULL) {
        close_all(fds, MANY_CONNECTIONS);
    }
    check_invariants(runtime, MANY_CONNECTIONS);
    CHECK(atomic_load(&app.done_ok) == MANY_CONNECTIONS * MANY_ROUNDS);
    CHECK(stats_sum(runtime).moves_in == MANY_CONNECTIONS * MANY_ROUNDS);
    server_stop(runtime);
    free(fds);
    free(starts);
}

/* --------------------------------- 7. swapped callbacks travel with a move */

static void test_ops_swap(void)
{
    app_reset();
    rx_options options;
    test_options(&options, 2);
    uint16_t port = 0;
    rx_runtime *runtime = server_start(&options, &port);
    CHECK(runtime != NULL);
    if (runtime == NULL) {
        return;
    }
    int fd = client_connect(port);
    CHECK(fd >= 0 && write_all(fd, "C", 1));
    CHECK(ask(fd, 'o') == 'K');
    char shouted[4] = {0};
    CHECK(write_all(fd, "abc", 3) && read_exact(fd, shouted, 3, 10000));
    CHECK(memcmp(shouted, "ABC", 3) == 0);
    close(fd);
    check_invariants(runtime, 1);
    CHECK(atomic_load(&app.done_ok) == 1);
    server_stop(runtime);
}

/* ------------------------------------------- 8. shutdown while moving */

#define SHUTDOWN_CONNECTIONS 200u

static void test_shutdown_moving(void)
{
    app_reset();
    rx_options options;
    test_options(&options, 3);
    options.shutdown_grace_ms = 2000;
    uint16_t port = 0;
    rx_runtime *runtime = server_start(&options, &port);
    CHECK(runtime != NULL);
    if (runtime == NULL) {
        return;
    }
    int fds[SHUTDOWN_CONNECTIONS];
    for (unsigned i = 0; i < SHUTDOWN_CONNECTIONS; i++) {
        fds[i] = client_connect(port);
        CHECK(fds[i] >= 0 && write_all(fds[i], "CR", 2));
    }
    /* Every connection now moves round the reactors without pause. */
    CHECK(wait_for(&app.opened, SHUTDOWN_CONNECTIONS, 30000));
    CHECK(wait_for(&app.done_ok, 10u * SHUTDOWN_CONNECTIONS, 30000));
    rx_runtime_stop(runtime);
    rx_runtime_wait(runtime);
    rx_reactor_stats sum = stats_sum(runtime);
    fprintf(stderr, "   moves %u, refused at shutdown %u, closed %u, open %llu, in %llu out %llu\n",
            atomic_load(&app.done_ok), atomic_load(&app.done_state), atomic_load(&app.closed),
            (unsigned long long)sum.open_connections, (unsigned long long)sum.moves_in,
            (unsigned long long)sum.moves_out);
    CHECK(atomic_load(&app.closed) == SHUTDOWN_CONNECTIONS);
    unsigned done = atomic_load(&app.done_ok) + atomic_load(&app.done_full) +
                    atomic_load(&app.done_state) + atomic_load(&app.done_closed) +
                    atomic_load(&app.done_other);
    CHECK(done == atomic_load(&app.moves_requested));
    CHECK(atomic_load(&app.wrong) == 0);
    CHECK(atomic_load(&app.closed_while_moving) == 0);
    CHECK(sum.open_connections == 0);
    CHECK(sum.moves_in == sum.moves_out);
    rx_runtime_destroy(runtime);
    close_all(fds, SHUTDOWN_CONNECTIONS);
}

/* ---------------------------------- 9. a storm of moves fits the tables */

#define STORM_CONNECTIONS 1000u
#define STORM_MOVES       (30u * STORM_CONNECTIONS)

/* Every connection moves back and forth without pause. A table holds every
 * connection plus LIMIT_MOVES_IN_FLIGHT_PER_REACTOR hand-offs awaiting the
 * kernel's word and some room for closes in progress, so no move and no
 * accept may meet a full table however late the confirmations come. */
static void test_storm(void)
{
    app_reset();
    rx_options options;
    test_options(&options, 2);
    options.connections_per_reactor = STORM_CONNECTIONS + LIMIT_MOVES_IN_FLIGHT_PER_REACTOR + 256u;
    uint16_t port = 0;
    rx_runtime *runtime = server_start(&options, &port);
    CHECK(runtime != NULL);
    if (runtime == NULL) {
        return;
    }
    int *fds = calloc(STORM_CONNECTIONS, sizeof *fds);
    CHECK(fds != NULL);
    for (unsigned i = 0; fds != NULL && i < STORM_CONNECTIONS; i++) {
        fds[i] = client_connect(port);
        CHECK(fds[i] >= 0 && write_all(fds[i], "C", 1));
    }
    CHECK(wait_for(&app.opened, STORM_CONNECTIONS, 20000));
    for (unsigned i = 0; fds != NULL && i < STORM_CONNECTIONS; i++) {
        CHECK(write_all(fds[i], "R", 1));
    }
    CHECK(wait_for(&app.done_ok, STORM_MOVES, 60000));
    atomic_store(&app.bench_stop, true);
    if (fds != NULL) {
        close_all(fds, STORM_CONNECTIONS);
    }
    check_invariants(runtime, STORM_CONNECTIONS);
    fprintf(stderr, "   %u moves, %u refused for a full table\n", atomic_load(&app.done_ok),
            atomic_load(&app.done_full));
    CHECK(atomic_load(&app.done_full) == 0);
    for (unsigned i = 0; i < 2; i++) {
        rx_reactor_stats one;
        CHECK(rx_runtime_stats(runtime, i, &one) == RX_OK && one.accept_refused == 0);
    }
    server_stop(runtime);
    free(fds);
}

/* ------------------------------------------------------------- the bench */

static int bench(unsigned connections, unsigned reactors, unsigned seconds)
{
    app_reset();
    rx_options options;
    test_options(&options, reactors);
    uint16_t port = 0;
    rx_runtime *runtime = server_start(&options, &port);
    int *fds = calloc(connections, sizeof *fds);
    if (runtime == NULL || fds == NULL) {
        fprintf(stderr, "bench: cannot start\n");
        free(fds);
        return 1;
    }
    for (unsigned i = 0; i < connections; i++) {
        fds[i] = client_connect(port);
        if (fds[i] < 0 || !write_all(fds[i], "CR", 2)) {
            fprintf(stderr, "bench: connection %u failed\n", i);
            return 1;
        }
    }
    if (!wait_for(&app.opened, connections, 30000)) {
        fprintf(stderr, "bench: only %u opened\n", atomic_load(&app.opened));
        for (unsigned i = 0; i < reactors; i++) {
            rx_reactor_stats one;
            if (rx_runtime_stats(runtime, i, &one) == RX_OK) {
                fprintf(stderr, "reactor %u: accepted %llu refused %llu\n", i,
                        (unsigned long long)one.accepted, (unsigned long long)one.accept_refused);
            }
        }
    }
    unsigned long long start_ms = harness_now_ms();
    unsigned start_moves = atomic_load(&app.done_ok);
    usleep(seconds * 1000000u);
    unsigned moves = atomic_load(&app.done_ok) - start_moves;
    unsigned long long elapsed_ms = harness_now_ms() - start_ms;
    atomic_store(&app.bench_stop, true);
    printf("%u connections, %u reactors: %u moves in %llu ms = %.0f moves/s\n", connections,
           reactors, moves, elapsed_ms, (double)moves * 1000.0 / (double)elapsed_ms);
    close_all(fds, connections);
    check_invariants(runtime, connections);
    rx_reactor_stats sum = stats_sum(runtime);
    printf("descriptors handed over: %llu in, %llu out; done(RX_OK) %u\n",
           (unsigned long long)sum.moves_in, (unsigned long long)sum.moves_out,
           atomic_load(&app.done_ok));
    CHECK(sum.moves_in == atomic_load(&app.done_ok));
    server_stop(runtime);
    free(fds);
    return harness_current_failed ? 1 : 0;
}

int main(int argc, char **argv)
{
    /* A peer closing early must show up as a failed check, not kill us. */
    (void)signal(SIGPIPE, SIG_IGN);
    rx_log_set_level(getenv("RX_TEST_VERBOSE") != NULL ? RX_LOG_DEBUG : RX_LOG_ERROR);
    if (argc > 1 && strcmp(argv[1], "bench") == 0) {
        unsigned connections = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10) : 10000u;
        unsigned reactors = argc > 3 ? (unsigned)strtoul(argv[3], NULL, 10) : 4u;
        unsigned seconds = argc > 4 ? (unsigned)strtoul(argv[4], NULL, 10) : 3u;
        return bench(connections, reactors, seconds);
    }
    const char *filter = argc > 1 ? argv[1] : NULL;
    harness_run("stream", test_stream, filter);
    harness_run("queued_sends", test_queued_sends, filter);
    harness_run("same_reactor", test_same_reactor, filter);
    harness_run("peer_closed", test_peer_closed, filter);
    harness_run("peer_closed_many", test_peer_closed_many, filter);
    harness_run("target_full", test_target_full, filter);
    harness_run("many", test_many, filter);
    harness_run("ops_swap", test_ops_swap, filter);
    harness_run("shutdown_moving", test_shutdown_moving, filter);
    harness_run("storm", test_storm, filter);
    return harness_finish();
}
