/*
 * test_runtime_loopback.c: the whole runtime on 127.0.0.1 against plain
 * client sockets driven from the test thread.
 *
 * One echo application serves every test; a client picks what the server
 * does with it by its first byte: 'E' echo (optionally moving between
 * reactors every few reads), 'F' flood the client with data it never reads,
 * 'P' polite (says BYE and closes on shutdown), 'S' stubborn (says BYE and
 * stays open on shutdown). Every wait is bounded in time.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/runtime/rx.h"
#include "tests/harness.h"

/* ------------------------------------------------------------- the server */

typedef struct app_conn {
    rx_conn *conn;
    rx_timer flood_timer;
    char mode;
    unsigned data_calls;
} app_conn;

static struct {
    atomic_uint opened;
    atomic_uint closed;
    atomic_uint modes_set;
    atomic_uint reasons[16];
    atomic_uint moved;
    atomic_uint moves_requested;
    atomic_uint send_failures;
    atomic_uint backpressure_on;
    atomic_uint data_calls;
    unsigned move_every;
    size_t flood_queue_bytes;
    rx_shared_buf *flood_buffer;
} app;

static void app_reset(void)
{
    memset(&app, 0, sizeof app);
}

static void flood_fill(app_conn *state)
{
    while (rx_conn_send_queue_bytes(state->conn) < app.flood_queue_bytes) {
        rx_status status = rx_conn_send_shared(state->conn, app.flood_buffer, 0,
                                               rx_shared_buf_len(app.flood_buffer));
        if (status != RX_OK) {
            break;
        }
    }
}

static void flood_tick(rx_timer *timer, void *argument)
{
    app_conn *state = argument;
    flood_fill(state);
    rx_timer_arm(timer, 20);
}

static void on_open(rx_conn *conn, void *context)
{
    (void)context;
    app_conn *state = calloc(1, sizeof *state);
    if (state == NULL) {
        abort();
    }
    state->conn = conn;
    rx_timer_init(&state->flood_timer, flood_tick, state);
    rx_conn_set_userdata(conn, state);
    atomic_fetch_add(&app.opened, 1);
}

static void echo(app_conn *state, const uint8_t *bytes, size_t len)
{
    if (len > 0 && rx_conn_send(state->conn, bytes, len) != RX_OK) {
        atomic_fetch_add(&app.send_failures, 1);
    }
    state->data_calls++;
    atomic_fetch_add(&app.data_calls, 1);
    if (app.move_every != 0 && state->data_calls % app.move_every == 0) {
        unsigned count = rx_reactor_count(rx_conn_reactor(state->conn));
        unsigned target = (rx_conn_reactor_index(state->conn) + 1) % count;
        if (rx_conn_move(state->conn, target) == RX_OK) {
            atomic_fetch_add(&app.moves_requested, 1);
        }
    }
}

static void on_data(rx_conn *conn, const uint8_t *bytes, size_t len)
{
    app_conn *state = rx_conn_userdata(conn);
    if (state->mode == 0) {
        state->mode = (char)bytes[0];
        /* The first byte is this protocol's whole handshake. */
        rx_conn_handshake_done(conn);
        bytes++;
        len--;
        atomic_fetch_add(&app.modes_set, 1);
        if (state->mode == 'F') {
            flood_fill(state);
            rx_timer_arm(&state->flood_timer, 20);
        }
    }
    if (state->mode == 'E') {
        echo(state, bytes, len);
    }
}

static void on_close(rx_conn *conn, rx_close_reason reason)
{
    app_conn *state = rx_conn_userdata(conn);
    rx_timer_cancel(&state->flood_timer);
    atomic_fetch_add(&app.reasons[reason], 1);
    atomic_fetch_add(&app.closed, 1);
    free(state);
}

/* An echo server must stop reading while its peer is not reading. */
static void on_backpressure(rx_conn *conn, bool on)
{
    if (on) {
        atomic_fetch_add(&app.backpressure_on, 1);
        rx_conn_pause_recv(conn);
    } else {
        rx_conn_resume_recv(conn);
    }
}

static void on_moved(rx_conn *conn)
{
    (void)conn;
    atomic_fetch_add(&app.moved, 1);
}

static void on_shutdown(rx_conn *conn)
{
    app_conn *state = rx_conn_userdata(conn);
    if (state->mode == 'P' || state->mode == 'S') {
        if (rx_conn_send(conn, "BYE\n", 4) != RX_OK) {
            atomic_fetch_add(&app.send_failures, 1);
        }
    }
    if (state->mode != 'S') {
        rx_conn_close(conn);
    }
}

static const rx_listener_ops echo_ops = {
    .on_open = on_open,
    .on_data = on_data,
    .on_close = on_close,
    .on_backpressure = on_backpressure,
    .on_moved = on_moved,
    .on_shutdown = on_shutdown,
};

static void test_options(rx_options *options)
{
    rx_options_init(options);
    options->reactors = 2;
    options->handle_signals = false;
}

static rx_runtime *server_start(const rx_options *options, uint16_t *port)
{
    rx_runtime *runtime = rx_runtime_create(options);
    if (runtime == NULL) {
        return NULL;
    }
    rx_listener *listener = NULL;
    if (rx_runtime_add_listener(runtime, "127.0.0.1", 0, &echo_ops, NULL, &listener) != RX_OK ||
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
        sum.accepted += one.accepted;
        sum.open_connections += one.open_connections;
        sum.closed += one.closed;
        sum.enobufs_events += one.enobufs_events;
        sum.moves_in += one.moves_in;
        sum.moves_out += one.moves_out;
        sum.write_timeouts += one.write_timeouts;
        sum.messages_received += one.messages_received;
        sum.wakes_sent += one.wakes_sent;
        sum.send_queue_bytes += one.send_queue_bytes;
    }
    return sum;
}

/* Waits (bounded) until *counter reaches at least target. */
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

static bool set_nonblocking(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    return flags >= 0 && fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
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

/* Reads exactly len bytes within timeout_ms (fd may be non-blocking). */
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

/* Reads until EOF or error within timeout_ms; true if the peer closed. */
static bool read_until_closed(int fd, unsigned timeout_ms)
{
    unsigned long long deadline = harness_now_ms() + timeout_ms;
    uint8_t sink[4096];
    while (harness_now_ms() < deadline) {
        struct pollfd entry = {.fd = fd, .events = POLLIN};
        if (poll(&entry, 1, 100) <= 0) {
            continue;
        }
        ssize_t got = read(fd, sink, sizeof sink);
        if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
            return true;
        }
    }
    return false;
}

static size_t resident_bytes(void)
{
    FILE *file = fopen("/proc/self/statm", "r");
    unsigned long total = 0, resident = 0;
    if (file == NULL) {
        return 0;
    }
    if (fscanf(file, "%lu %lu", &total, &resident) != 2) {
        resident = 0;
    }
    fclose(file);
    return resident * (size_t)sysconf(_SC_PAGESIZE);
}

/* ---------------------------------------------- 1. ten thousand connections */

#define MANY       10000u
#define MANY_BYTES 12u

static bool many_receive(int epoll_fd, const int *fds, char (*received)[MANY_BYTES],
                         uint8_t *filled)
{
    unsigned done = 0;
    bool intact = true;
    unsigned long long deadline = harness_now_ms() + 60000;
    while (done < MANY && harness_now_ms() < deadline) {
        struct epoll_event events[256];
        int count = epoll_wait(epoll_fd, events, 256, 200);
        for (int e = 0; e < count; e++) {
            unsigned i = events[e].data.u32;
            ssize_t got = read(fds[i], received[i] + filled[i], MANY_BYTES - filled[i]);
            if (got <= 0) {
                continue;
            }
            filled[i] += (uint8_t)got;
            if (filled[i] < MANY_BYTES) {
                continue;
            }
            char expected[MANY_BYTES + 1];
            snprintf(expected, sizeof expected, "hello %05u\n", i);
            intact = intact && memcmp(expected, received[i], MANY_BYTES) == 0;
            done++;
            (void)epoll_ctl(epoll_fd, EPOLL_CTL_DEL, fds[i], NULL);
        }
    }
    return done == MANY && intact;
}

static void test_connections(void)
{
    app_reset();
    rx_options options;
    test_options(&options);
    uint16_t port = 0;
    rx_runtime *runtime = server_start(&options, &port);
    CHECK(runtime != NULL);
    if (runtime == NULL) {
        return;
    }
    size_t resident_before = resident_bytes();
    int *fds = calloc(MANY, sizeof *fds);
    char(*received)[MANY_BYTES] = calloc(MANY, MANY_BYTES);
    uint8_t *filled = calloc(MANY, 1);
    unsigned connected = 0;
    for (; connected < MANY; connected++) {
        fds[connected] = client_connect(port);
        if (fds[connected] < 0) {
            break;
        }
    }
    CHECK(connected == MANY);
    CHECK(wait_for(&app.opened, connected, 30000));
    size_t resident_after = resident_bytes();
    fprintf(stderr, "   resident growth with %u idle connections: %zu bytes (%zu per connection)\n",
            connected, resident_after - resident_before,
            connected ? (resident_after - resident_before) / connected : 0);
    rx_reactor_stats first, second;
    CHECK(rx_runtime_stats(runtime, 0, &first) == RX_OK);
    CHECK(rx_runtime_stats(runtime, 1, &second) == RX_OK);
    fprintf(stderr, "   reactor 0 accepted %llu, reactor 1 accepted %llu\n",
            (unsigned long long)first.accepted, (unsigned long long)second.accepted);
    CHECK(first.accepted > 0 && second.accepted > 0);
    CHECK(first.accepted + second.accepted == MANY);
    CHECK(first.open_connections + second.open_connections == MANY);

    int epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    for (unsigned i = 0; i < connected; i++) {
        char message[MANY_BYTES + 2];
        snprintf(message, sizeof message, "Ehello %05u\n", i);
        CHECK(write_all(fds[i], message, MANY_BYTES + 1));
        CHECK(set_nonblocking(fds[i]));
        struct epoll_event event = {.events = EPOLLIN, .data.u32 = i};
        CHECK(epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fds[i], &event) == 0);
    }
    CHECK(connected == MANY && many_receive(epoll_fd, fds, received, filled));
    close(epoll_fd);
    for (unsigned i = 0; i < connected; i++) {
        close(fds[i]);
    }
    CHECK(wait_for(&app.closed, connected, 30000));
    rx_reactor_stats sum = stats_sum(runtime);
    CHECK(sum.open_connections == 0);
    CHECK(sum.closed == MANY);
    CHECK(atomic_load(&app.reasons[RX_CLOSE_PEER]) == MANY);
    CHECK(atomic_load(&app.send_failures) == 0);
    server_stop(runtime);
    free(fds);
    free(received);
    free(filled);
}

/* ------------------------------------------- 2. moves keep bytes in order */

#define STREAMS        3u
#define STREAM_RECORDS 1000000u
/* The client stops streaming once this many moves happened (and at least
 * STREAM_BYTES_MIN went each way), or at STREAM_RECORDS. */
#define MOVES_WANTED     100u
#define STREAM_BYTES_MIN (1024u * 1024u)
#define RECORD_BYTES     12u

typedef struct stream {
    int fd;
    uint8_t *sent;
    uint8_t *received;
    size_t total;
    size_t written;
    size_t read;
} stream;

static bool stream_init(stream *s, unsigned index, uint16_t port)
{
    s->total = (size_t)STREAM_RECORDS * RECORD_BYTES;
    s->sent = malloc(s->total + 1);
    s->received = malloc(s->total);
    s->written = 0;
    s->read = 0;
    for (unsigned r = 0; r < STREAM_RECORDS; r++) {
        snprintf((char *)s->sent + (size_t)r * RECORD_BYTES, RECORD_BYTES + 1, "%u:%09u\n", index,
                 r);
    }
    s->fd = client_connect(port);
    return s->fd >= 0 && write_all(s->fd, "E", 1) && set_nonblocking(s->fd);
}

/* Ends every stream where it is once enough moves happened. */
static bool streams_enough(stream *streams)
{
    if (atomic_load(&app.moved) < MOVES_WANTED) {
        return false;
    }
    for (unsigned i = 0; i < STREAMS; i++) {
        if (streams[i].written < STREAM_BYTES_MIN) {
            return false;
        }
    }
    for (unsigned i = 0; i < STREAMS; i++) {
        streams[i].total = streams[i].written;
    }
    return true;
}

/* Streams every connection both ways at once until all echoes are back. */
static void streams_pump(stream *streams)
{
    unsigned long long deadline = harness_now_ms() + 60000;
    bool stopped = false;
    for (;;) {
        stopped = stopped || streams_enough(streams);
        struct pollfd entries[STREAMS];
        unsigned pending = 0;
        for (unsigned i = 0; i < STREAMS; i++) {
            entries[i].fd = streams[i].fd;
            entries[i].events = POLLIN | (streams[i].written < streams[i].total ? POLLOUT : 0);
            pending += streams[i].read < streams[i].total;
        }
        if (pending == 0 || harness_now_ms() > deadline) {
            return;
        }
        if (poll(entries, STREAMS, 100) <= 0) {
            continue;
        }
        for (unsigned i = 0; i < STREAMS; i++) {
            stream *s = &streams[i];
            if ((entries[i].revents & POLLOUT) && s->written < s->total) {
                size_t chunk = s->total - s->written < 3000 ? s->total - s->written : 3000;
                ssize_t wrote = write(s->fd, s->sent + s->written, chunk);
                s->written += wrote > 0 ? (size_t)wrote : 0;
            }
            if (entries[i].revents & (POLLIN | POLLHUP | POLLERR)) {
                ssize_t got = read(s->fd, s->received + s->read, s->total - s->read);
                s->read += got > 0 ? (size_t)got : 0;
            }
        }
    }
}

static void test_move_order(void)
{
    app_reset();
    app.move_every = 2;
    rx_options options;
    test_options(&options);
    /* Few buffers: the kernel cannot run far ahead of a move with
     * completions already posted, so moves come often. */
    options.recv_buffers = 16;
    /* More reactors than the machine has cores must work too. */
    options.reactors = 3;
    uint16_t port = 0;
    rx_runtime *runtime = server_start(&options, &port);
    CHECK(runtime != NULL);
    if (runtime == NULL) {
        return;
    }
    stream streams[STREAMS];
    for (unsigned i = 0; i < STREAMS; i++) {
        CHECK(stream_init(&streams[i], i, port));
    }
    streams_pump(streams);
    for (unsigned i = 0; i < STREAMS; i++) {
        CHECK(streams[i].read == streams[i].total);
        CHECK(memcmp(streams[i].sent, streams[i].received, streams[i].read) == 0);
        close(streams[i].fd);
        free(streams[i].sent);
        free(streams[i].received);
    }
    CHECK(wait_for(&app.closed, STREAMS, 10000));
    CHECK(atomic_load(&app.reasons[RX_CLOSE_PEER]) == STREAMS);
    /* The source counts a move out when the kernel confirms the descriptor
     * left, which may come just after the target counted it in. */
    rx_reactor_stats sum = stats_sum(runtime);
    unsigned long long settle = harness_now_ms() + 5000;
    while ((sum.moves_out != sum.moves_in || sum.open_connections != 0) &&
           harness_now_ms() < settle) {
        usleep(1000);
        sum = stats_sum(runtime);
    }
    fprintf(stderr, "   %u reads, moves requested %u, completed %u (in %llu, out %llu)\n",
            atomic_load(&app.data_calls), atomic_load(&app.moves_requested),
            atomic_load(&app.moved), (unsigned long long)sum.moves_in,
            (unsigned long long)sum.moves_out);
    CHECK(atomic_load(&app.moved) >= MOVES_WANTED);
    CHECK(sum.moves_in == atomic_load(&app.moved));
    CHECK(sum.moves_out == sum.moves_in);
    CHECK(sum.open_connections == 0);
    CHECK(atomic_load(&app.send_failures) == 0);
    server_stop(runtime);
}

/* ------------------------------------------------ 3. write timeout closes */

static bool echo_round(int fd, unsigned round)
{
    char line[32], back[32];
    int len = snprintf(line, sizeof line, "round %08u\n", round);
    return write_all(fd, line, (size_t)len) && read_exact(fd, back, (size_t)len, 5000) &&
           memcmp(line, back, (size_t)len) == 0;
}

static void test_write_timeout(void)
{
    app_reset();
    app.flood_buffer = rx_shared_buf_create(64 * 1024);
    memset(rx_shared_buf_bytes(app.flood_buffer), 'x', 64 * 1024);
    app.flood_queue_bytes = 256 * 1024;
    rx_options options;
    test_options(&options);
    options.write_timeout_ms = 500;
    options.send_queue_bytes = 256 * 1024;
    options.send_queue_bytes_hard = 1024 * 1024;
    uint16_t port = 0;
    rx_runtime *runtime = server_start(&options, &port);
    CHECK(runtime != NULL);
    if (runtime == NULL) {
        return;
    }
    int echo_fd = client_connect(port);
    int flood_fd = client_connect(port);
    CHECK(echo_fd >= 0 && flood_fd >= 0 && write_all(echo_fd, "E", 1));
    CHECK(write_all(flood_fd, "F", 1));
    unsigned long long start = harness_now_ms();
    unsigned round = 0;
    bool echo_ok = true;
    while (atomic_load(&app.reasons[RX_CLOSE_WRITE_TIMEOUT]) == 0 &&
           harness_now_ms() < start + 15000) {
        echo_ok = echo_ok && echo_round(echo_fd, round++);
    }
    unsigned long long closed_after = harness_now_ms() - start;
    fprintf(stderr, "   flooded peer closed after %llu ms, %u echo rounds meanwhile\n",
            closed_after, round);
    CHECK(atomic_load(&app.reasons[RX_CLOSE_WRITE_TIMEOUT]) == 1);
    CHECK(closed_after >= 500);
    for (unsigned i = 0; i < 200; i++) {
        echo_ok = echo_ok && echo_round(echo_fd, round++);
    }
    CHECK(echo_ok);
    CHECK(atomic_load(&app.backpressure_on) >= 1);
    rx_reactor_stats sum = stats_sum(runtime);
    CHECK(sum.write_timeouts == 1);
    CHECK(atomic_load(&app.closed) == 1);
    CHECK(read_until_closed(flood_fd, 10000));
    close(flood_fd);
    close(echo_fd);
    CHECK(wait_for(&app.closed, 2, 10000));
    server_stop(runtime);
    rx_shared_buf_release(app.flood_buffer);
}

/* ------------------------------------- 4. the buffer ring running dry */

#define DRY_CLIENTS 64u
#define DRY_BYTES   (32u * 1024u)

static void dry_pump(const int *fds, uint8_t (*sent)[DRY_BYTES], uint8_t (*received)[DRY_BYTES])
{
    size_t written[DRY_CLIENTS] = {0}, read_bytes[DRY_CLIENTS] = {0};
    unsigned long long deadline = harness_now_ms() + 60000;
    for (;;) {
        struct pollfd entries[DRY_CLIENTS];
        unsigned pending = 0;
        for (unsigned i = 0; i < DRY_CLIENTS; i++) {
            entries[i].fd = fds[i];
            entries[i].events = POLLIN | (written[i] < DRY_BYTES ? POLLOUT : 0);
            pending += read_bytes[i] < DRY_BYTES;
        }
        if (pending == 0 || harness_now_ms() > deadline) {
            return;
        }
        if (poll(entries, DRY_CLIENTS, 100) <= 0) {
            continue;
        }
        for (unsigned i = 0; i < DRY_CLIENTS; i++) {
            if ((entries[i].revents & POLLOUT) && written[i] < DRY_BYTES) {
                ssize_t wrote = write(fds[i], sent[i] + written[i], DRY_BYTES - written[i]);
                written[i] += wrote > 0 ? (size_t)wrote : 0;
            }
            if (entries[i].revents & (POLLIN | POLLHUP | POLLERR)) {
                ssize_t got = read(fds[i], received[i] + read_bytes[i], DRY_BYTES - read_bytes[i]);
                read_bytes[i] += got > 0 ? (size_t)got : 0;
            }
        }
    }
}

static void test_enobufs(void)
{
    app_reset();
    rx_options options;
    test_options(&options);
    options.recv_buffers = 4;
    options.recv_buffer_bytes = 512;
    uint16_t port = 0;
    rx_runtime *runtime = server_start(&options, &port);
    CHECK(runtime != NULL);
    if (runtime == NULL) {
        return;
    }
    int fds[DRY_CLIENTS];
    uint8_t(*sent)[DRY_BYTES] = malloc((size_t)DRY_CLIENTS * DRY_BYTES);
    uint8_t(*received)[DRY_BYTES] = calloc(DRY_CLIENTS, DRY_BYTES);
    for (unsigned i = 0; i < DRY_CLIENTS; i++) {
        for (unsigned b = 0; b < DRY_BYTES; b++) {
            sent[i][b] = (uint8_t)(i * 31u + b * 7u + b / 251u);
        }
        fds[i] = client_connect(port);
        CHECK(fds[i] >= 0 && write_all(fds[i], "E", 1) && set_nonblocking(fds[i]));
    }
    CHECK(wait_for(&app.modes_set, DRY_CLIENTS, 10000));
    dry_pump(fds, sent, received);
    CHECK(memcmp(sent, received, (size_t)DRY_CLIENTS * DRY_BYTES) == 0);
    rx_reactor_stats sum = stats_sum(runtime);
    fprintf(stderr, "   enobufs events: %llu\n", (unsigned long long)sum.enobufs_events);
    CHECK(sum.enobufs_events > 0);
    for (unsigned i = 0; i < DRY_CLIENTS; i++) {
        close(fds[i]);
    }
    CHECK(wait_for(&app.closed, DRY_CLIENTS, 10000));
    server_stop(runtime);
    free(sent);
    free(received);
}

/* ------------------------------------------------- 5. graceful shutdown */

#define SHUTDOWN_CLIENTS   20u
#define SHUTDOWN_GRACE_MS  1000u
#define SHUTDOWN_MARGIN_MS 700u

static void shutdown_case(bool by_signal)
{
    app_reset();
    rx_options options;
    test_options(&options);
    options.shutdown_grace_ms = SHUTDOWN_GRACE_MS;
    options.handle_signals = by_signal;
    uint16_t port = 0;
    rx_runtime *runtime = server_start(&options, &port);
    CHECK(runtime != NULL);
    if (runtime == NULL) {
        return;
    }
    int fds[SHUTDOWN_CLIENTS];
    for (unsigned i = 0; i < SHUTDOWN_CLIENTS; i++) {
        fds[i] = client_connect(port);
        /* Even clients are polite, odd ones stubborn (their server side
         * says goodbye but never closes; the grace period ends them). */
        CHECK(fds[i] >= 0 && write_all(fds[i], i % 2 == 0 ? "P" : "S", 1));
    }
    CHECK(wait_for(&app.modes_set, SHUTDOWN_CLIENTS, 10000));
    unsigned long long start = harness_now_ms();
    if (by_signal) {
        CHECK(kill(getpid(), SIGTERM) == 0);
    } else {
        rx_runtime_stop(runtime);
    }
    rx_runtime_wait(runtime);
    unsigned long long elapsed = harness_now_ms() - start;
    fprintf(stderr, "   runtime returned %llu ms after the stop (grace %u ms)\n", elapsed,
            SHUTDOWN_GRACE_MS);
    CHECK(elapsed + 50 >= SHUTDOWN_GRACE_MS);
    CHECK(elapsed <= SHUTDOWN_GRACE_MS + SHUTDOWN_MARGIN_MS);
    CHECK(atomic_load(&app.closed) == SHUTDOWN_CLIENTS);
    CHECK(atomic_load(&app.reasons[RX_CLOSE_LOCAL]) == SHUTDOWN_CLIENTS / 2);
    CHECK(atomic_load(&app.reasons[RX_CLOSE_SHUTDOWN]) == SHUTDOWN_CLIENTS / 2);
    for (unsigned i = 0; i < SHUTDOWN_CLIENTS; i++) {
        char bye[4];
        CHECK(read_exact(fds[i], bye, 4, 2000) && memcmp(bye, "BYE\n", 4) == 0);
        CHECK(read_until_closed(fds[i], 2000));
        close(fds[i]);
    }
    rx_reactor_stats sum = stats_sum(runtime);
    CHECK(sum.open_connections == 0);
    rx_runtime_destroy(runtime);
}

static void test_shutdown_signal(void)
{
    shutdown_case(true);
}

static void test_shutdown_stop(void)
{
    shutdown_case(false);
}

/* ------------------------------------------------------------ 6. mailboxes */

#define POST_MESSAGES 2000u

static struct {
    atomic_uint blocker_running;
    atomic_bool blocker_release;
    atomic_uint producer_next[2];
    atomic_uint relay_next[2];
    atomic_uint relay_last[2];
    atomic_uint out_of_order;
    atomic_uint post_failures;
} post_state;

static void blocker(const rx_message *message)
{
    (void)message;
    atomic_store(&post_state.blocker_running, 1);
    unsigned long long deadline = harness_now_ms() + 10000;
    while (!atomic_load(&post_state.blocker_release) && harness_now_ms() < deadline) {
        usleep(100);
    }
}

static void relayed(const rx_message *message)
{
    /* Relays refused by a full mailbox leave gaps, never reorderings. */
    unsigned here = rx_reactor_index(rx_reactor_current());
    if (message->words[0] + 1 <= atomic_load(&post_state.relay_last[here])) {
        atomic_fetch_add(&post_state.out_of_order, 1);
    }
    atomic_store(&post_state.relay_last[here], (unsigned)message->words[0] + 1);
    atomic_fetch_add(&post_state.relay_next[here], 1);
}

/* Runs on reactor `here`: checks the producer's order, then relays the
 * number to the other reactor through the reactor-to-reactor mailbox. */
static void from_producer(const rx_message *message)
{
    unsigned here = rx_reactor_index(rx_reactor_current());
    if (message->words[0] != atomic_load(&post_state.producer_next[here])) {
        atomic_fetch_add(&post_state.out_of_order, 1);
    }
    atomic_fetch_add(&post_state.producer_next[here], 1);
    rx_message relay = {.function = relayed, .words = {message->words[0], 0}};
    if (rx_post(1 - here, &relay) != RX_OK) {
        atomic_fetch_add(&post_state.post_failures, 1);
    }
}

static void test_post(void)
{
    memset(&post_state, 0, sizeof post_state);
    rx_options options;
    test_options(&options);
    options.mailbox_messages = 16;
    uint16_t port = 0;
    rx_runtime *runtime = server_start(&options, &port);
    CHECK(runtime != NULL);
    if (runtime == NULL) {
        return;
    }
    rx_producer *producer = rx_producer_create(runtime);
    CHECK(producer != NULL);
    /* Hold reactor 0 inside a message, then fill its mailbox: the 17th post
     * must be refused. */
    rx_message block = {.function = blocker};
    CHECK(rx_producer_post(producer, 0, &block) == RX_OK);
    CHECK(wait_for(&post_state.blocker_running, 1, 5000));
    unsigned accepted = 0;
    for (unsigned i = 0; i < 100; i++) {
        rx_message message = {.function = from_producer, .words = {i, 0}};
        if (rx_producer_post(producer, 0, &message) != RX_OK) {
            break;
        }
        accepted++;
    }
    CHECK(accepted == 16);
    rx_message refused = {.function = from_producer, .words = {accepted, 0}};
    CHECK(rx_producer_post(producer, 0, &refused) == RX_ERR_FULL);
    atomic_store(&post_state.blocker_release, true);
    CHECK(wait_for(&post_state.producer_next[0], accepted, 5000));
    /* Then a steady stream to both reactors, retried when full. */
    unsigned next[2] = {accepted, 0};
    unsigned long long deadline = harness_now_ms() + 30000;
    while ((next[0] < POST_MESSAGES || next[1] < POST_MESSAGES) && harness_now_ms() < deadline) {
        for (unsigned target = 0; target < 2; target++) {
            rx_message message = {.function = from_producer, .words = {next[target], 0}};
            if (next[target] < POST_MESSAGES &&
                rx_producer_post(producer, target, &message) == RX_OK) {
                next[target]++;
            }
        }
    }
    CHECK(wait_for(&post_state.producer_next[0], POST_MESSAGES, 10000));
    CHECK(wait_for(&post_state.producer_next[1], POST_MESSAGES, 10000));
    unsigned relays = 2 * POST_MESSAGES - atomic_load(&post_state.post_failures);
    CHECK(wait_for(&post_state.relay_next[0], 1, 10000));
    unsigned long long settle = harness_now_ms() + 5000;
    while (atomic_load(&post_state.relay_next[0]) + atomic_load(&post_state.relay_next[1]) <
               2 * POST_MESSAGES - atomic_load(&post_state.post_failures) &&
           harness_now_ms() < settle) {
        usleep(1000);
    }
    rx_reactor_stats sum = stats_sum(runtime);
    fprintf(stderr, "   relays %u (refused %u), wakes sent %llu, messages received %llu\n", relays,
            atomic_load(&post_state.post_failures), (unsigned long long)sum.wakes_sent,
            (unsigned long long)sum.messages_received);
    CHECK(atomic_load(&post_state.out_of_order) == 0);
    CHECK(sum.wakes_sent > 0);
    server_stop(runtime);
}

/* ------------------------------------------- 7. handshake and idle timers */

static void test_timeouts(void)
{
    app_reset();
    rx_options options;
    test_options(&options);
    options.handshake_timeout_ms = 300;
    options.idle_timeout_ms = 700;
    uint16_t port = 0;
    rx_runtime *runtime = server_start(&options, &port);
    CHECK(runtime != NULL);
    if (runtime == NULL) {
        return;
    }
    int silent = client_connect(port);
    int idle = client_connect(port);
    int busy = client_connect(port);
    CHECK(silent >= 0 && idle >= 0 && busy >= 0);
    CHECK(write_all(idle, "E", 1) && write_all(busy, "E", 1));
    unsigned long long start = harness_now_ms();
    bool echo_ok = true;
    for (unsigned round = 0; harness_now_ms() < start + 1500; round++) {
        echo_ok = echo_ok && echo_round(busy, round);
        usleep(50 * 1000);
    }
    CHECK(echo_ok);
    CHECK(atomic_load(&app.reasons[RX_CLOSE_HANDSHAKE_TIMEOUT]) == 1);
    CHECK(atomic_load(&app.reasons[RX_CLOSE_IDLE_TIMEOUT]) == 1);
    CHECK(atomic_load(&app.closed) == 2);
    CHECK(read_until_closed(silent, 1000) && read_until_closed(idle, 1000));
    close(silent);
    close(idle);
    close(busy);
    CHECK(wait_for(&app.closed, 3, 5000));
    server_stop(runtime);
}

/* ------------------------------------------------ 8. outbound connections */

/* The connecting side: a second runtime in this process whose reactors
 * call rx_connect, kicked off through a producer. Each connection sends
 * 'E' and its number as 8 digits, expects the 8 digits back, and closes
 * (or, with hold set, stays open until the client runtime stops). */
#define NUMBER_BYTES 8

typedef struct client_conn {
    unsigned number;
    unsigned received;
    char expected[NUMBER_BYTES + 1];
} client_conn;

static struct {
    atomic_uint opened;
    atomic_uint closed;
    atomic_uint echo_ok;
    atomic_uint echo_bad;
    atomic_uint failed;
    atomic_uint connect_refusals;
    atomic_int last_error;
    uint16_t port;
    bool hold;
    bool with_sources;
} client;

static void client_on_open(rx_conn *conn, void *context)
{
    client_conn *state = calloc(1, sizeof *state);
    if (state == NULL) {
        abort();
    }
    state->number = (unsigned)(uintptr_t)context;
    snprintf(state->expected, sizeof state->expected, "%08u", state->number);
    rx_conn_set_userdata(conn, state);
    atomic_fetch_add(&client.opened, 1);
    rx_conn_handshake_done(conn);
    if (!client.hold && (rx_conn_send(conn, "E", 1) != RX_OK ||
                         rx_conn_send(conn, state->expected, NUMBER_BYTES) != RX_OK)) {
        atomic_fetch_add(&client.echo_bad, 1);
    }
}

static void client_on_data(rx_conn *conn, const uint8_t *bytes, size_t len)
{
    client_conn *state = rx_conn_userdata(conn);
    for (size_t i = 0; i < len; i++) {
        if (state->received >= NUMBER_BYTES || bytes[i] != state->expected[state->received]) {
            atomic_fetch_add(&client.echo_bad, 1);
            rx_conn_abort(conn);
            return;
        }
        state->received++;
    }
    if (state->received == NUMBER_BYTES) {
        atomic_fetch_add(&client.echo_ok, 1);
        rx_conn_close(conn);
    }
}

static void client_on_close(rx_conn *conn, rx_close_reason reason)
{
    (void)reason;
    free(rx_conn_userdata(conn));
    atomic_fetch_add(&client.closed, 1);
}

static void client_on_connect_failed(void *context, int error)
{
    (void)context;
    atomic_store(&client.last_error, error);
    atomic_fetch_add(&client.failed, 1);
}

static const rx_listener_ops client_ops = {
    .on_open = client_on_open,
    .on_data = client_on_data,
    .on_close = client_on_close,
    .on_connect_failed = client_on_connect_failed,
};

/* words[0]: first number, words[1]: how many. Sources cycle through
 * 127.0.0.1..127.0.0.4 when asked. */
static void connects_start(const rx_message *message)
{
    static const char *const sources[] = {"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"};
    for (uint64_t i = 0; i < message->words[1]; i++) {
        unsigned number = (unsigned)(message->words[0] + i);
        const char *source = client.with_sources ? sources[number % 4] : NULL;
        rx_status status =
            rx_connect("127.0.0.1", client.port, source, &client_ops, (void *)(uintptr_t)number);
        if (status != RX_OK) {
            atomic_fetch_add(&client.connect_refusals, 1);
        }
    }
}

static rx_runtime *client_start(rx_producer **producer)
{
    rx_options options;
    test_options(&options);
    rx_runtime *runtime = rx_runtime_create(&options);
    if (runtime == NULL) {
        return NULL;
    }
    *producer = rx_producer_create(runtime);
    if (*producer == NULL || rx_runtime_start(runtime) != RX_OK) {
        rx_runtime_destroy(runtime);
        return NULL;
    }
    return runtime;
}

/* Splits count connects evenly over the client's reactors. */
static bool connects_post(rx_runtime *runtime, rx_producer *producer, unsigned count)
{
    unsigned reactors = rx_runtime_reactor_count(runtime);
    bool ok = true;
    for (unsigned i = 0; i < reactors; i++) {
        unsigned first = count * i / reactors;
        rx_message message = {.function = connects_start};
        message.words[0] = first;
        message.words[1] = count * (i + 1) / reactors - first;
        ok = ok && rx_producer_post(producer, i, &message) == RX_OK;
    }
    return ok;
}

static rx_reactor_stats connect_stats_sum(rx_runtime *runtime)
{
    rx_reactor_stats sum;
    memset(&sum, 0, sizeof sum);
    for (unsigned i = 0; i < rx_runtime_reactor_count(runtime); i++) {
        rx_reactor_stats one;
        if (rx_runtime_stats(runtime, i, &one) == RX_OK) {
            sum.open_connections += one.open_connections;
            sum.connects_started += one.connects_started;
            sum.connects_succeeded += one.connects_succeeded;
            sum.connects_failed += one.connects_failed;
        }
    }
    return sum;
}

#define CONNECT_ECHO_COUNT 1000u

static void test_connect_echo(void)
{
    app_reset();
    memset(&client, 0, sizeof client);
    rx_options options;
    test_options(&options);
    rx_runtime *server = server_start(&options, &client.port);
    rx_producer *producer = NULL;
    rx_runtime *runtime = client_start(&producer);
    CHECK(server != NULL && runtime != NULL);
    if (server == NULL || runtime == NULL) {
        return;
    }
    CHECK(connects_post(runtime, producer, CONNECT_ECHO_COUNT));
    CHECK(wait_for(&client.closed, CONNECT_ECHO_COUNT, 30000));
    CHECK(wait_for(&app.closed, CONNECT_ECHO_COUNT, 10000));
    CHECK(atomic_load(&client.opened) == CONNECT_ECHO_COUNT);
    CHECK(atomic_load(&client.echo_ok) == CONNECT_ECHO_COUNT);
    CHECK(atomic_load(&client.echo_bad) == 0);
    CHECK(atomic_load(&client.failed) == 0 && atomic_load(&client.connect_refusals) == 0);
    CHECK(atomic_load(&app.opened) == CONNECT_ECHO_COUNT);
    rx_reactor_stats sum = connect_stats_sum(runtime);
    CHECK(sum.connects_started == CONNECT_ECHO_COUNT);
    CHECK(sum.connects_succeeded == CONNECT_ECHO_COUNT && sum.connects_failed == 0);
    CHECK(sum.open_connections == 0);
    CHECK(stats_sum(server).open_connections == 0);
    server_stop(runtime);
    server_stop(server);
}

/* Ordinary descriptors this process holds now. */
static unsigned process_fd_count(void)
{
    DIR *directory = opendir("/proc/self/fd");
    if (directory == NULL) {
        return UINT32_MAX;
    }
    unsigned count = 0;
    while (readdir(directory) != NULL) {
        count++;
    }
    (void)closedir(directory);
    return count;
}

#define BEYOND_COUNT 25000u

/* Polls until both sides hold every connection, tracking the process's
 * ordinary descriptors all along. */
static bool beyond_wait_open(rx_runtime *server, rx_runtime *runtime, unsigned *fds_max)
{
    unsigned long long deadline = harness_now_ms() + 45000;
    while (harness_now_ms() < deadline) {
        unsigned fds = process_fd_count();
        *fds_max = fds > *fds_max ? fds : *fds_max;
        if (connect_stats_sum(runtime).open_connections == BEYOND_COUNT &&
            stats_sum(server).open_connections == BEYOND_COUNT) {
            return true;
        }
        if (atomic_load(&client.failed) + atomic_load(&client.connect_refusals) > 0) {
            return false;
        }
        usleep(2000);
    }
    return false;
}

static void test_connect_beyond_fd_limit(void)
{
    app_reset();
    memset(&client, 0, sizeof client);
    client.hold = true;
    client.with_sources = true;
    rx_options options;
    test_options(&options);
    rx_runtime *server = server_start(&options, &client.port);
    rx_producer *producer = NULL;
    rx_runtime *runtime = client_start(&producer);
    CHECK(server != NULL && runtime != NULL);
    if (server == NULL || runtime == NULL) {
        return;
    }
    unsigned long long start = harness_now_ms();
    unsigned fds_max = 0;
    CHECK(connects_post(runtime, producer, BEYOND_COUNT));
    CHECK(beyond_wait_open(server, runtime, &fds_max));
    unsigned long long opened_ms = harness_now_ms() - start;
    rx_reactor_stats sum = connect_stats_sum(runtime);
    fprintf(stderr, "   %u open on each side after %llu ms, ordinary fds at most %u\n",
            (unsigned)sum.open_connections, opened_ms, fds_max);
    CHECK(atomic_load(&client.opened) == BEYOND_COUNT);
    CHECK(atomic_load(&client.failed) == 0 && atomic_load(&client.connect_refusals) == 0);
    CHECK(fds_max < 2000);
    server_stop(runtime);
    unsigned long long client_closed_ms = harness_now_ms() - start;
    CHECK(atomic_load(&client.closed) == BEYOND_COUNT);
    CHECK(wait_for(&app.closed, BEYOND_COUNT, 20000));
    CHECK(stats_sum(server).open_connections == 0);
    unsigned long long server_closed_ms = harness_now_ms() - start;
    server_stop(server);
    fprintf(stderr, "   client closed at %llu ms, server side at %llu ms, whole test %llu ms\n",
            client_closed_ms, server_closed_ms, harness_now_ms() - start);
}

static void test_connect_refused(void)
{
    memset(&client, 0, sizeof client);
    /* Bound but not listening: nothing else can take the port, and a SYN to
     * it is answered with a reset. */
    int holder = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t length = sizeof address;
    CHECK(holder >= 0 && bind(holder, (struct sockaddr *)&address, sizeof address) == 0 &&
          getsockname(holder, (struct sockaddr *)&address, &length) == 0);
    client.port = ntohs(address.sin_port);
    rx_producer *producer = NULL;
    rx_runtime *runtime = client_start(&producer);
    CHECK(runtime != NULL);
    if (runtime == NULL) {
        close(holder);
        return;
    }
    rx_message message = {.function = connects_start};
    message.words[1] = 1;
    CHECK(rx_producer_post(producer, 0, &message) == RX_OK);
    CHECK(wait_for(&client.failed, 1, 10000));
    usleep(200 * 1000);
    CHECK(atomic_load(&client.failed) == 1);
    CHECK(atomic_load(&client.last_error) == ECONNREFUSED);
    CHECK(atomic_load(&client.opened) == 0);
    rx_reactor_stats sum = connect_stats_sum(runtime);
    CHECK(sum.connects_started == 1 && sum.connects_failed == 1 && sum.connects_succeeded == 0);
    server_stop(runtime);
    close(holder);
}

/* A client runtime with the given handshake timeout that starts two
 * connects to client.port from reactor 0. */
static rx_runtime *connects_two(unsigned handshake_timeout_ms)
{
    rx_options options;
    test_options(&options);
    options.handshake_timeout_ms = handshake_timeout_ms;
    rx_runtime *runtime = rx_runtime_create(&options);
    rx_producer *producer = runtime != NULL ? rx_producer_create(runtime) : NULL;
    if (producer == NULL || rx_runtime_start(runtime) != RX_OK) {
        if (runtime != NULL) {
            rx_runtime_destroy(runtime);
        }
        return NULL;
    }
    rx_message message = {.function = connects_start};
    message.words[1] = 2;
    if (rx_producer_post(producer, 0, &message) != RX_OK) {
        server_stop(runtime);
        return NULL;
    }
    return runtime;
}

/* A listener with backlog 0 whose one queued connection is never accepted
 * drops every further SYN, so a connect to it hangs until the handshake
 * timeout ends it (ETIMEDOUT), or a shutdown does (ECANCELED). */
static void test_connect_timeout(void)
{
    memset(&client, 0, sizeof client);
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t length = sizeof address;
    CHECK(listener >= 0 && bind(listener, (struct sockaddr *)&address, sizeof address) == 0 &&
          getsockname(listener, (struct sockaddr *)&address, &length) == 0 &&
          listen(listener, 0) == 0);
    client.port = ntohs(address.sin_port);
    int filler = client_connect(client.port);
    CHECK(filler >= 0);
    usleep(20 * 1000);
    unsigned long long start = harness_now_ms();
    rx_runtime *runtime = connects_two(300);
    CHECK(runtime != NULL && wait_for(&client.failed, 2, 10000));
    unsigned long long elapsed_ms = harness_now_ms() - start;
    fprintf(stderr, "   timed out after %llu ms\n", elapsed_ms);
    CHECK(elapsed_ms >= 300 && elapsed_ms < 3000);
    CHECK(atomic_load(&client.last_error) == ETIMEDOUT);
    rx_reactor_stats sum = connect_stats_sum(runtime);
    CHECK(sum.connects_started == 2 && sum.connects_failed == 2);
    server_stop(runtime);
    runtime = connects_two(0);
    CHECK(runtime != NULL);
    usleep(100 * 1000);
    CHECK(atomic_load(&client.failed) == 2);
    server_stop(runtime);
    CHECK(atomic_load(&client.failed) == 4);
    CHECK(atomic_load(&client.last_error) == ECANCELED);
    CHECK(atomic_load(&client.opened) == 0);
    close(filler);
    close(listener);
}

int main(int argc, char **argv)
{
    const char *filter = argc > 1 ? argv[1] : NULL;
    /* A peer closing early must show up as a failed check, not kill us. */
    (void)signal(SIGPIPE, SIG_IGN);
    harness_run("connections", test_connections, filter);
    harness_run("move_order", test_move_order, filter);
    harness_run("write_timeout", test_write_timeout, filter);
    harness_run("enobufs", test_enobufs, filter);
    harness_run("shutdown_stop", test_shutdown_stop, filter);
    harness_run("post", test_post, filter);
    harness_run("timeouts", test_timeouts, filter);
    harness_run("connect_echo", test_connect_echo, filter);
    harness_run("connect_beyond_fd_limit", test_connect_beyond_fd_limit, filter);
    harness_run("connect_refused", test_connect_refused, filter);
    harness_run("connect_timeout", test_connect_timeout, filter);
    /* Last: it leaves SIGTERM blocked in this thread. */
    harness_run("shutdown_signal", test_shutdown_signal, filter);
    return harness_finish();
}
