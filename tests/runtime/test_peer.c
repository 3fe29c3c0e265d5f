/*
 * test_peer.c: rx_conn_peer, the address of a connection's other end.
 *
 * Accepted connections are direct descriptors, so the runtime asks the
 * kernel for their peer through io_uring; these tests check that what
 * on_open reads is exactly what the client's own socket says (address and
 * port), for IPv4, IPv6 and IPv4 clients of a dual-stack listener, for a
 * burst of clients accepted together (each must get its own address), after
 * a move, and for rx_connect (the address connected to). Every wait is
 * bounded in time.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/runtime/rx.h"
#include "tests/harness.h"

#define PEERS_MAX 64u

/* What the server saw: one record per on_open (or per completed move). */
typedef struct peer_record {
    bool known;
    struct sockaddr_storage address;
    size_t length;
} peer_record;

static struct {
    pthread_mutex_t lock;
    peer_record opened[PEERS_MAX];
    unsigned opened_count;
    peer_record moved[PEERS_MAX];
    unsigned moved_count;
    atomic_uint closed;
} seen = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void seen_reset(void)
{
    pthread_mutex_lock(&seen.lock);
    seen.opened_count = 0;
    seen.moved_count = 0;
    atomic_store(&seen.closed, 0);
    pthread_mutex_unlock(&seen.lock);
}

static void record(rx_conn *conn, peer_record *records, unsigned *count)
{
    peer_record one;
    memset(&one, 0xAB, sizeof one);
    one.known = rx_conn_peer(conn, &one.address, &one.length);
    pthread_mutex_lock(&seen.lock);
    if (*count < PEERS_MAX) {
        records[(*count)++] = one;
    }
    pthread_mutex_unlock(&seen.lock);
}

static unsigned seen_count(const unsigned *count)
{
    pthread_mutex_lock(&seen.lock);
    unsigned value = *count;
    pthread_mutex_unlock(&seen.lock);
    return value;
}

static bool wait_count(const unsigned *count, unsigned want)
{
    unsigned long long deadline = harness_now_ms() + 10000;
    while (harness_now_ms() < deadline) {
        if (seen_count(count) >= want) {
            return true;
        }
        usleep(1000);
    }
    return false;
}

/* ------------------------------------------------------------- the server */

static void server_on_open(rx_conn *conn, void *context)
{
    (void)context;
    record(conn, seen.opened, &seen.opened_count);
}

/* 'M' asks for a move to the next reactor; anything else is ignored. */
static void server_on_data(rx_conn *conn, const uint8_t *bytes, size_t len)
{
    if (len > 0 && bytes[0] == 'M') {
        unsigned count = rx_reactor_count(rx_conn_reactor(conn));
        unsigned target = (rx_conn_reactor_index(conn) + 1) % count;
        if (rx_conn_move(conn, target) != RX_OK) {
            rx_conn_abort(conn);
        }
    }
}

static void server_on_close(rx_conn *conn, rx_close_reason reason)
{
    (void)conn;
    (void)reason;
    atomic_fetch_add(&seen.closed, 1);
}

static void server_on_moved(rx_conn *conn)
{
    record(conn, seen.moved, &seen.moved_count);
}

static const rx_listener_ops server_ops = {
    .on_open = server_on_open,
    .on_data = server_on_data,
    .on_close = server_on_close,
    .on_moved = server_on_moved,
};

static rx_runtime *server_start(const char *address, uint16_t *port, rx_producer **producer)
{
    rx_options options;
    rx_options_init(&options);
    options.reactors = 2;
    options.handle_signals = false;
    options.connections_per_reactor = 256;
    rx_runtime *runtime = rx_runtime_create(&options);
    if (runtime == NULL) {
        return NULL;
    }
    rx_listener *listener = NULL;
    if (producer != NULL) {
        *producer = rx_producer_create(runtime);
    }
    if ((producer != NULL && *producer == NULL) ||
        (address != NULL &&
         rx_runtime_add_listener(runtime, address, 0, &server_ops, NULL, &listener) != RX_OK) ||
        rx_runtime_start(runtime) != RX_OK) {
        rx_runtime_destroy(runtime);
        return NULL;
    }
    *port = listener != NULL ? rx_listener_port(listener) : 0;
    return runtime;
}

static void server_stop(rx_runtime *runtime)
{
    rx_runtime_stop(runtime);
    rx_runtime_wait(runtime);
    rx_runtime_destroy(runtime);
}

/* ------------------------------------------------------------ the clients */

static void address_make(int family, const char *text, uint16_t port,
                         struct sockaddr_storage *address, socklen_t *length)
{
    memset(address, 0, sizeof *address);
    if (family == AF_INET) {
        struct sockaddr_in *v4 = (struct sockaddr_in *)address;
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        (void)inet_pton(AF_INET, text, &v4->sin_addr);
        *length = sizeof *v4;
    } else {
        struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)address;
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        (void)inet_pton(AF_INET6, text, &v6->sin6_addr);
        *length = sizeof *v6;
    }
}

/* A client socket bound to source (port 0), connected to target:port.
 * Returns the fd and the port the kernel picked, or -1. */
static int client_connect(int family, const char *source, const char *target, uint16_t port,
                          uint16_t *source_port)
{
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    struct sockaddr_storage address;
    socklen_t length;
    address_make(family, source, 0, &address, &length);
    bool ok = bind(fd, (struct sockaddr *)&address, length) == 0;
    address_make(family, target, port, &address, &length);
    ok = ok && connect(fd, (struct sockaddr *)&address, length) == 0;
    length = sizeof address;
    ok = ok && getsockname(fd, (struct sockaddr *)&address, &length) == 0;
    if (!ok) {
        (void)close(fd);
        return -1;
    }
    *source_port = family == AF_INET ? ntohs(((struct sockaddr_in *)&address)->sin_port)
                                     : ntohs(((struct sockaddr_in6 *)&address)->sin6_port);
    return fd;
}

/* Whether one record is exactly family/text/port, of the family's size. */
static bool record_is(const peer_record *one, int family, const char *text, uint16_t port)
{
    struct sockaddr_storage want;
    socklen_t length;
    address_make(family, text, port, &want, &length);
    return one->known && one->length == length && memcmp(&one->address, &want, length) == 0;
}

/* One client from source to a listener on listen_address; the server's
 * view of it must be expected (the source itself, or its mapped form). */
static void one_client(int family, const char *listen_address, const char *source,
                       int expected_family, const char *expected)
{
    seen_reset();
    uint16_t port = 0;
    rx_runtime *server = server_start(listen_address, &port, NULL);
    CHECK(server != NULL);
    if (server == NULL) {
        return;
    }
    uint16_t source_port = 0;
    const char *target = strcmp(listen_address, "::") == 0 ? "127.0.0.1" : listen_address;
    int fd = client_connect(family, source, target, port, &source_port);
    CHECK(fd >= 0 && source_port != 0);
    CHECK(wait_count(&seen.opened_count, 1));
    CHECK(seen_count(&seen.opened_count) == 1);
    CHECK(record_is(&seen.opened[0], expected_family, expected, source_port));
    /* A different port must not match: the check above compares ports. */
    CHECK(!record_is(&seen.opened[0], expected_family, expected, (uint16_t)(source_port + 1)));
    if (fd >= 0) {
        (void)close(fd);
    }
    server_stop(server);
}

static void test_accept_ipv4(void)
{
    one_client(AF_INET, "127.0.0.1", "127.0.0.2", AF_INET, "127.0.0.2");
}

static void test_accept_ipv6(void)
{
    one_client(AF_INET6, "::1", "::1", AF_INET6, "::1");
}

/* An IPv4 client of a dual-stack listener shows as IPv4-mapped IPv6. */
static void test_accept_mapped(void)
{
    one_client(AF_INET, "::", "127.0.0.2", AF_INET6, "::ffff:127.0.0.2");
}

/* A burst accepted together: every connection gets its own client's
 * address, none another's (the lookups' buffers are reused). */
#define BURST 40u

static void test_accept_burst(void)
{
    seen_reset();
    uint16_t port = 0;
    rx_runtime *server = server_start("127.0.0.1", &port, NULL);
    CHECK(server != NULL);
    if (server == NULL) {
        return;
    }
    int fds[BURST];
    uint16_t ports[BURST];
    static const char *const sources[] = {"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"};
    for (unsigned i = 0; i < BURST; i++) {
        fds[i] = client_connect(AF_INET, sources[i % 4], "127.0.0.1", port, &ports[i]);
        CHECK(fds[i] >= 0);
    }
    CHECK(wait_count(&seen.opened_count, BURST));
    unsigned matched = 0;
    pthread_mutex_lock(&seen.lock);
    for (unsigned i = 0; i < BURST; i++) {
        unsigned hits = 0;
        for (unsigned j = 0; j < seen.opened_count; j++) {
            hits += record_is(&seen.opened[j], AF_INET, sources[i % 4], ports[i]) ? 1u : 0u;
        }
        matched += hits == 1 ? 1u : 0u;
    }
    pthread_mutex_unlock(&seen.lock);
    CHECK(matched == BURST);
    for (unsigned i = 0; i < BURST; i++) {
        if (fds[i] >= 0) {
            (void)close(fds[i]);
        }
    }
    server_stop(server);
}

/* The address travels with a moved connection. */
static void test_after_move(void)
{
    seen_reset();
    uint16_t port = 0;
    rx_runtime *server = server_start("127.0.0.1", &port, NULL);
    CHECK(server != NULL);
    if (server == NULL) {
        return;
    }
    uint16_t source_port = 0;
    int fd = client_connect(AF_INET, "127.0.0.2", "127.0.0.1", port, &source_port);
    CHECK(fd >= 0);
    CHECK(wait_count(&seen.opened_count, 1));
    CHECK(fd >= 0 && write(fd, "M", 1) == 1);
    CHECK(wait_count(&seen.moved_count, 1));
    CHECK(seen_count(&seen.moved_count) == 1 &&
          record_is(&seen.moved[0], AF_INET, "127.0.0.2", source_port));
    if (fd >= 0) {
        (void)close(fd);
    }
    server_stop(server);
}

/* -------------------------------------------------------------- rx_connect */

static struct {
    const char *target;
    uint16_t port;
    atomic_uint failed;
} outbound;

static void outbound_failed(void *context, int error)
{
    (void)context;
    (void)error;
    atomic_fetch_add(&outbound.failed, 1);
}

static const rx_listener_ops outbound_ops = {
    .on_open = server_on_open,
    .on_data = server_on_data,
    .on_close = server_on_close,
    .on_connect_failed = outbound_failed,
};

static void outbound_start(const rx_message *message)
{
    (void)message;
    if (rx_connect(outbound.target, outbound.port, NULL, &outbound_ops, NULL) != RX_OK) {
        atomic_fetch_add(&outbound.failed, 1);
    }
}

static void connect_one(int family, const char *target)
{
    seen_reset();
    atomic_store(&outbound.failed, 0);
    int listener = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_storage address;
    socklen_t length;
    address_make(family, target, 0, &address, &length);
    CHECK(listener >= 0 && bind(listener, (struct sockaddr *)&address, length) == 0 &&
          listen(listener, 4) == 0);
    length = sizeof address;
    CHECK(getsockname(listener, (struct sockaddr *)&address, &length) == 0);
    outbound.target = target;
    outbound.port = family == AF_INET ? ntohs(((struct sockaddr_in *)&address)->sin_port)
                                      : ntohs(((struct sockaddr_in6 *)&address)->sin6_port);
    uint16_t unused = 0;
    rx_producer *producer = NULL;
    rx_runtime *runtime = server_start(NULL, &unused, &producer);
    CHECK(runtime != NULL);
    if (runtime == NULL) {
        (void)close(listener);
        return;
    }
    rx_message message = {.function = outbound_start};
    CHECK(rx_producer_post(producer, 0, &message) == RX_OK);
    CHECK(wait_count(&seen.opened_count, 1));
    CHECK(atomic_load(&outbound.failed) == 0);
    CHECK(record_is(&seen.opened[0], family, target, outbound.port));
    server_stop(runtime);
    (void)close(listener);
}

static void test_connect_ipv4(void)
{
    connect_one(AF_INET, "127.0.0.1");
}

static void test_connect_ipv6(void)
{
    connect_one(AF_INET6, "::1");
}

int main(int argc, char **argv)
{
    const char *filter = argc > 1 ? argv[1] : NULL;
    (void)signal(SIGPIPE, SIG_IGN);
    harness_run("accept_ipv4", test_accept_ipv4, filter);
    harness_run("accept_ipv6", test_accept_ipv6, filter);
    harness_run("accept_mapped", test_accept_mapped, filter);
    harness_run("accept_burst", test_accept_burst, filter);
    harness_run("after_move", test_after_move, filter);
    harness_run("connect_ipv4", test_connect_ipv4, filter);
    harness_run("connect_ipv6", test_connect_ipv6, filter);
    return harness_finish();
}
