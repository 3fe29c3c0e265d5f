/*
 * connect.c: outbound connections (rx_connect) on a reactor.
 *
 * An outbound socket must end up as a direct descriptor like an accepted
 * one, so that the process descriptor table (RLIMIT_NOFILE) bounds nothing.
 * The socket is created, tuned and bound with ordinary system calls (none
 * of them blocks), then IORING_OP_FILES_UPDATE with IORING_FILE_INDEX_ALLOC
 * lets the kernel place it in a free slot of the ring's table: the same
 * allocator multishot accept and moved descriptors use, so the runtime
 * never guesses a free slot while an accept may be filling it. The
 * completion reports the slot; the ordinary descriptor is closed right
 * then (the table holds its own reference) and IORING_OP_CONNECT runs on
 * the fixed file. Only when the connect succeeds does an rx_conn exist;
 * until then the request carries the application's ops and context, and a
 * failure frees its slot and reports once through on_connect_failed.
 *
 * Every request sits in reactor->connects until its outcome; those still
 * waiting for a socket also sit in a FIFO, drained a bounded number per
 * loop iteration so a burst of connects never floods the process table.
 * A request is abandoned (timeout, shutdown) by recording the error: a
 * queued or installing one fails at its next step, a connecting one gets
 * its connect cancelled. A connect that succeeds despite the cancel wins:
 * the connection is open and is handled like any other.
 */
#include "server/runtime/internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum connect_stage {
    STAGE_QUEUED = 0, /* waiting for a socket */
    STAGE_INSTALLING, /* files_update in flight; fd still open */
    STAGE_CONNECTING, /* connect in flight on the fixed slot */
};

typedef struct rx_connect_request {
    struct rx_connect_request *next; /* reactor->connects */
    struct rx_connect_request *previous;
    struct rx_connect_request *next_queued;
    rx_reactor *reactor;
    const rx_listener_ops *ops;
    void *context;
    rx_timer timer;
    uint64_t started_ms;
    struct sockaddr_storage destination;
    struct sockaddr_storage source;
    socklen_t address_length;
    bool has_source;
    enum connect_stage stage;
    int fd;      /* the ordinary descriptor while it exists, else -1 */
    int install; /* files_update reads the fd here and writes the slot back */
    int slot;
    int error; /* positive errno fixed by an abandon, else 0 */
} rx_connect_request;

static void connect_timer_fired(rx_timer *timer, void *argument);

static rx_status request_prepare(rx_connect_request *request, const char *address, uint16_t port,
                                 const char *source_address)
{
    if (!rx_address_parse(address, port, &request->destination, &request->address_length)) {
        return RX_ERR_INVALID;
    }
    if (source_address != NULL) {
        socklen_t source_length = 0;
        if (!rx_address_parse(source_address, 0, &request->source, &source_length) ||
            request->source.ss_family != request->destination.ss_family) {
            return RX_ERR_INVALID;
        }
        request->has_source = true;
    }
    return RX_OK;
}

rx_status rx_connect(const char *address, uint16_t port, const char *source_address,
                     const rx_listener_ops *ops, void *context)
{
    rx_reactor *reactor = rx_reactor_current();
    RX_ASSERT(reactor != NULL);
    if (address == NULL || ops == NULL || ops->on_open == NULL || ops->on_data == NULL ||
        ops->on_close == NULL) {
        return RX_ERR_INVALID;
    }
    if (reactor->shutting_down || atomic_load(&reactor->runtime->stop_requested)) {
        return RX_ERR_STATE;
    }
    /* A pending connect will need a slot: count it against the table now so
     * that the table, not the kernel's ENFILE, is the bound callers see. */
    if (reactor->connection_count + reactor->connects_pending + reactor->peer_lookups_pending >=
        reactor->slot_count) {
        return RX_ERR_FULL;
    }
    rx_connect_request *request = calloc(1, sizeof *request);
    if (request == NULL) {
        return RX_ERR_NOMEM;
    }
    rx_status status = request_prepare(request, address, port, source_address);
    if (status != RX_OK) {
        free(request);
        return status;
    }
    request->reactor = reactor;
    request->ops = ops;
    request->context = context;
    request->started_ms = reactor->now_ms;
    request->fd = -1;
    request->slot = -1;
    request->next = reactor->connects;
    if (reactor->connects != NULL) {
        reactor->connects->previous = request;
    }
    reactor->connects = request;
    if (reactor->connect_queue_tail != NULL) {
        reactor->connect_queue_tail->next_queued = request;
    } else {
        reactor->connect_queue_head = request;
    }
    reactor->connect_queue_tail = request;
    reactor->connects_pending++;
    rx_timer_init(&request->timer, connect_timer_fired, request);
    if (reactor->runtime->options.handshake_timeout_ms != 0) {
        rx_wheel_arm(&reactor->wheel, &request->timer,
                     request->started_ms + reactor->runtime->options.handshake_timeout_ms);
    }
    rx_stat_add(&reactor->stats.connects_started, 1);
    return RX_OK;
}

/* Unlinks and frees the request; the caller has taken what it needs. */
static void request_finish(rx_reactor *reactor, rx_connect_request *request)
{
    RX_ASSERT(request->fd < 0 && reactor->connects_pending > 0);
    rx_wheel_cancel(&reactor->wheel, &request->timer);
    if (request->previous != NULL) {
        request->previous->next = request->next;
    } else {
        reactor->connects = request->next;
    }
    if (request->next != NULL) {
        request->next->previous = request->previous;
    }
    reactor->connects_pending--;
    free(request);
}

static void connect_fail(rx_reactor *reactor, rx_connect_request *request, int error)
{
    RX_ASSERT(error > 0);
    const rx_listener_ops *ops = request->ops;
    void *context = request->context;
    request_finish(reactor, request);
    rx_stat_add(&reactor->stats.connects_failed, 1);
    if (ops->on_connect_failed != NULL) {
        ops->on_connect_failed(context, error);
    }
}

/* socket + TCP_NODELAY + optional source bind. The socket stays in
 * blocking mode like accepted ones: io_uring never blocks on it, and a
 * blocking-mode socket lets IORING_OP_CONNECT wait for the handshake
 * itself instead of handing EINPROGRESS back. Returns the fd or -errno. */
static int connect_socket_open(const rx_connect_request *request)
{
    int fd = socket(request->destination.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    int one = 1;
    bool ok = setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0;
    if (ok && request->has_source) {
        /* Without NO_PORT, bind would reserve a port for every possible
         * destination and one source address would run out at ~28,000. */
        ok = setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one) == 0 &&
             bind(fd, (const struct sockaddr *)&request->source, request->address_length) == 0;
    }
    if (!ok) {
        int error = errno;
        (void)close(fd);
        return -error;
    }
    return fd;
}

static uint64_t request_user_data(enum rx_op op, const rx_connect_request *request)
{
    RX_ASSERT(((uintptr_t)request & RX_USER_DATA_POINTER_MASK) == (uintptr_t)request);
    return ((uint64_t)op << 56) | (uint64_t)(uintptr_t)request;
}

static void connect_install(rx_reactor *reactor, rx_connect_request *request)
{
    int fd = connect_socket_open(request);
    if (fd < 0) {
        connect_fail(reactor, request, -fd);
        return;
    }
    request->fd = fd;
    request->install = fd;
    request->stage = STAGE_INSTALLING;
    reactor->connect_sockets_open++;
    struct io_uring_sqe *sqe = rx_reactor_sqe(reactor);
    io_uring_prep_files_update(sqe, &request->install, 1, (int)IORING_FILE_INDEX_ALLOC);
    io_uring_sqe_set_data64(sqe, request_user_data(RX_OP_CONNECT_INSTALL, request));
    reactor->misc_inflight++;
}

bool rx_reactor_connects_runnable(const rx_reactor *reactor)
{
    return reactor->connect_queue_head != NULL &&
           reactor->connect_sockets_open < LIMIT_CONNECT_SOCKETS_PER_REACTOR;
}

void rx_reactor_run_connects(rx_reactor *reactor)
{
    while (rx_reactor_connects_runnable(reactor)) {
        rx_connect_request *request = reactor->connect_queue_head;
        reactor->connect_queue_head = request->next_queued;
        if (reactor->connect_queue_head == NULL) {
            reactor->connect_queue_tail = NULL;
        }
        request->next_queued = NULL;
        if (request->error != 0) {
            connect_fail(reactor, request, request->error);
        } else {
            connect_install(reactor, request);
        }
    }
}

static void connect_start(rx_reactor *reactor, rx_connect_request *request)
{
    request->stage = STAGE_CONNECTING;
    struct io_uring_sqe *sqe = rx_reactor_sqe(reactor);
    io_uring_prep_connect(sqe, request->slot, (const struct sockaddr *)&request->destination,
                          request->address_length);
    sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, request_user_data(RX_OP_CONNECT, request));
    reactor->misc_inflight++;
}

static void connect_installed(rx_reactor *reactor, rx_connect_request *request, int result)
{
    RX_ASSERT(request->stage == STAGE_INSTALLING && request->fd >= 0);
    /* The table holds its own reference: the ordinary descriptor goes now. */
    (void)close(request->fd);
    request->fd = -1;
    reactor->connect_sockets_open--;
    if (result < 0) {
        connect_fail(reactor, request, -result);
        return;
    }
    RX_ASSERT(result == 1 && request->install >= 0 &&
              (unsigned)request->install < reactor->slot_count);
    request->slot = request->install;
    if (request->error != 0) {
        rx_slot_close(reactor, (uint32_t)request->slot);
        connect_fail(reactor, request, request->error);
        return;
    }
    connect_start(reactor, request);
}

static void connect_completed(rx_reactor *reactor, rx_connect_request *request, int result)
{
    RX_ASSERT(request->stage == STAGE_CONNECTING);
    if (result < 0) {
        rx_slot_close(reactor, (uint32_t)request->slot);
        bool abandoned = result == -ECANCELED && request->error != 0;
        connect_fail(reactor, request, abandoned ? request->error : -result);
        return;
    }
    int slot = request->slot;
    const rx_listener_ops *ops = request->ops;
    void *context = request->context;
    uint64_t started_ms = request->started_ms;
    struct sockaddr_storage destination = request->destination;
    request_finish(reactor, request);
    rx_conn *conn = rx_conn_create(reactor, slot, ops, started_ms);
    if (conn == NULL) {
        rx_stat_add(&reactor->stats.connects_failed, 1);
        if (ops->on_connect_failed != NULL) {
            ops->on_connect_failed(context, ENOMEM);
        }
        return;
    }
    rx_stat_add(&reactor->stats.connects_succeeded, 1);
    rx_conn_peer_store(conn, (const struct sockaddr *)&destination);
    rx_conn_opened(conn, context);
}

void rx_connect_on_cqe(rx_reactor *reactor, enum rx_op op, uint64_t user_data, int result)
{
    RX_ASSERT(reactor->misc_inflight > 0);
    reactor->misc_inflight--;
    rx_connect_request *request =
        (rx_connect_request *)(uintptr_t)(user_data & RX_USER_DATA_POINTER_MASK);
    switch (op) {
    case RX_OP_CONNECT_INSTALL:
        connect_installed(reactor, request, result);
        break;
    case RX_OP_CONNECT:
        connect_completed(reactor, request, result);
        break;
    case RX_OP_CONNECT_CANCEL:
        /* The pointer may be gone: the connect's own completion decides. */
        break;
    default:
        RX_ASSERT(false);
    }
}

/* Records why the request must end; the step it is at acts on it. */
static void connect_abandon(rx_reactor *reactor, rx_connect_request *request, int error)
{
    if (request->error != 0) {
        return;
    }
    request->error = error;
    if (request->stage != STAGE_CONNECTING) {
        return;
    }
    struct io_uring_sqe *sqe = rx_reactor_sqe(reactor);
    io_uring_prep_cancel64(sqe, request_user_data(RX_OP_CONNECT, request), 0);
    io_uring_sqe_set_data64(sqe, request_user_data(RX_OP_CONNECT_CANCEL, request));
    reactor->misc_inflight++;
}

static void connect_timer_fired(rx_timer *timer, void *argument)
{
    (void)timer;
    rx_connect_request *request = argument;
    connect_abandon(request->reactor, request, ETIMEDOUT);
}

void rx_reactor_connects_shutdown(rx_reactor *reactor)
{
    for (rx_connect_request *request = reactor->connects; request != NULL;
         request = request->next) {
        connect_abandon(reactor, request, ECANCELED);
    }
}

/* Only for a reactor that left its loop with connects unfinished (the hard
 * shutdown deadline): nothing will complete them any more. */
void rx_reactor_connects_free_all(rx_reactor *reactor)
{
    while (reactor->connects != NULL) {
        rx_connect_request *request = reactor->connects;
        if (request->fd >= 0) {
            (void)close(request->fd);
            request->fd = -1;
        }
        request_finish(reactor, request);
    }
    reactor->connect_queue_head = NULL;
    reactor->connect_queue_tail = NULL;
}
