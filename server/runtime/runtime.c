/*
 * runtime.c: the control side of the runtime: options, logging, creating the
 * reactors and their listening sockets, starting and joining the threads,
 * stopping, statistics, producers and shared buffers.
 *
 * Everything here runs on the control thread except rx_runtime_stop,
 * rx_producer_post and the shared-buffer calls, which any thread may make.
 * Listening sockets are opened here, before the threads start, so that a
 * port collision is reported by rx_runtime_add_listener, not by a thread.
 */
#include "server/runtime/internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

const char *rx_close_reason_name(rx_close_reason reason)
{
    static const char *const names[] = {
        "local",        "abort",         "peer",          "error",    "handshake-timeout",
        "idle-timeout", "write-timeout", "send-overflow", "shutdown",
    };
    if ((unsigned)reason >= sizeof names / sizeof names[0]) {
        return "unknown";
    }
    return names[reason];
}

/* ------------------------------------------------------------------ options */

void rx_options_init(rx_options *options)
{
    memset(options, 0, sizeof *options);
    options->reactors = 0;
    options->connections_per_reactor = LIMIT_CONNECTIONS_PER_REACTOR;
    options->recv_buffers = LIMIT_RECV_BUFFERS;
    options->recv_buffer_bytes = LIMIT_RECV_BUFFER_BYTES;
    options->send_queue_bytes = LIMIT_SEND_QUEUE_BYTES;
    options->send_queue_bytes_hard = LIMIT_SEND_QUEUE_BYTES_HARD;
    options->write_timeout_ms = LIMIT_WRITE_TIMEOUT_MS;
    options->handshake_timeout_ms = LIMIT_HANDSHAKE_TIMEOUT_MS;
    options->idle_timeout_ms = LIMIT_IDLE_TIMEOUT_MS;
    options->shutdown_grace_ms = LIMIT_SHUTDOWN_GRACE_MS;
    options->mailbox_messages = LIMIT_MAILBOX_MESSAGES;
    options->producers_max = 4;
    options->pin_threads = true;
    options->handle_signals = true;
}

static bool power_of_two(unsigned value)
{
    return value != 0 && (value & (value - 1)) == 0;
}

static bool options_valid(const rx_options *options)
{
    if (options->reactors > LIMIT_REACTORS_MAX || options->connections_per_reactor == 0) {
        return false;
    }
    if (!power_of_two(options->recv_buffers) || options->recv_buffers > 32768) {
        return false;
    }
    if (options->recv_buffer_bytes == 0 || !power_of_two(options->mailbox_messages)) {
        return false;
    }
    if (options->send_queue_bytes == 0 ||
        options->send_queue_bytes_hard < options->send_queue_bytes ||
        options->send_queue_bytes_hard > UINT32_MAX / 2) {
        return false;
    }
    return true;
}

/* The direct-descriptor table of a ring may not exceed RLIMIT_NOFILE. */
static unsigned slot_count_for(unsigned connections_per_reactor)
{
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
        return connections_per_reactor;
    }
    if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < connections_per_reactor) {
        rx_log(RX_LOG_INFO, "connections per reactor capped at RLIMIT_NOFILE %llu (asked %u)",
               (unsigned long long)limit.rlim_cur, connections_per_reactor);
        return (unsigned)limit.rlim_cur;
    }
    return connections_per_reactor;
}

/* ------------------------------------------------------------------ runtime */

static bool reactor_init(rx_runtime *runtime, rx_reactor *reactor, unsigned index, unsigned slots)
{
    reactor->runtime = runtime;
    reactor->index = index;
    reactor->ring_fd = -1;
    reactor->signal_fd = -1;
    reactor->slot_count = slots;
    for (unsigned i = 0; i < LIMIT_LISTENERS_PER_REACTOR; i++) {
        reactor->listen_fds[i] = -1;
    }
    atomic_init(&reactor->wake_pending, false);
    atomic_init(&reactor->external_wake_pending, false);
    atomic_init(&reactor->exited, false);
    unsigned sources = runtime->reactor_count + runtime->options.producers_max;
    reactor->inboxes = calloc(sources, sizeof *reactor->inboxes);
    reactor->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (reactor->inboxes == NULL || reactor->event_fd < 0) {
        rx_log(RX_LOG_ERROR, "reactor %u: cannot allocate inboxes or eventfd: %s", index,
               strerror(errno));
        return false;
    }
    return true;
}

rx_runtime *rx_runtime_create(const rx_options *options)
{
    rx_options defaults;
    if (options == NULL) {
        rx_options_init(&defaults);
        options = &defaults;
    }
    if (!options_valid(options)) {
        rx_log(RX_LOG_ERROR, "invalid runtime options");
        return NULL;
    }
    rx_runtime *runtime = calloc(1, sizeof *runtime);
    if (runtime == NULL) {
        return NULL;
    }
    runtime->options = *options;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    runtime->reactor_count = options->reactors != 0 ? options->reactors
                             : cores > 0            ? (unsigned)cores
                                                    : 1;
    if (runtime->reactor_count > LIMIT_REACTORS_MAX) {
        runtime->reactor_count = LIMIT_REACTORS_MAX;
    }
    runtime->signal_fd = -1;
    atomic_init(&runtime->producer_count, 0);
    atomic_init(&runtime->stop_requested, false);
    atomic_init(&runtime->stop_deadline_ms, 0);
    atomic_init(&runtime->moves_in_flight, 0);
    pthread_mutex_init(&runtime->start_lock, NULL);
    pthread_cond_init(&runtime->start_cond, NULL);
    runtime->reactors = calloc(runtime->reactor_count, sizeof *runtime->reactors);
    runtime->producers = calloc(options->producers_max + 1, sizeof *runtime->producers);
    if (runtime->reactors == NULL || runtime->producers == NULL) {
        rx_runtime_destroy(runtime);
        return NULL;
    }
    unsigned slots = slot_count_for(options->connections_per_reactor);
    for (unsigned i = 0; i < runtime->reactor_count; i++) {
        if (!reactor_init(runtime, &runtime->reactors[i], i, slots)) {
            rx_runtime_destroy(runtime);
            return NULL;
        }
    }
    return runtime;
}

unsigned rx_runtime_reactor_count(const rx_runtime *runtime)
{
    return runtime->reactor_count;
}

/* ---------------------------------------------------------------- listeners */

static int listen_socket_open(const struct sockaddr_storage *address, socklen_t length)
{
    int fd = socket(address->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    int one = 1;
    /* Accepted sockets inherit TCP_NODELAY from the listener on Linux, which
     * saves a setsockopt per accepted (direct) descriptor. */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0 ||
        bind(fd, (const struct sockaddr *)address, length) != 0 ||
        listen(fd, (int)LIMIT_LISTEN_BACKLOG) != 0) {
        int saved = errno;
        (void)close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

bool rx_address_parse(const char *text, uint16_t port, struct sockaddr_storage *address,
                      socklen_t *length)
{
    memset(address, 0, sizeof *address);
    struct sockaddr_in *v4 = (struct sockaddr_in *)address;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)address;
    if (inet_pton(AF_INET, text, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        *length = sizeof *v4;
        return true;
    }
    if (inet_pton(AF_INET6, text, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        *length = sizeof *v6;
        return true;
    }
    return false;
}

static void address_set_port(struct sockaddr_storage *address, uint16_t port)
{
    if (address->ss_family == AF_INET) {
        ((struct sockaddr_in *)address)->sin_port = htons(port);
    } else {
        ((struct sockaddr_in6 *)address)->sin6_port = htons(port);
    }
}

static uint16_t socket_port(int fd)
{
    struct sockaddr_storage bound;
    socklen_t length = sizeof bound;
    if (getsockname(fd, (struct sockaddr *)&bound, &length) != 0) {
        return 0;
    }
    if (bound.ss_family == AF_INET) {
        return ntohs(((struct sockaddr_in *)&bound)->sin_port);
    }
    return ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
}

rx_status rx_runtime_add_listener(rx_runtime *runtime, const char *address, uint16_t port,
                                  const rx_listener_ops *ops, void *context,
                                  rx_listener **listener_out)
{
    if (runtime->started || runtime->listener_count >= LIMIT_LISTENERS_PER_REACTOR || ops == NULL ||
        ops->on_open == NULL || ops->on_data == NULL || ops->on_close == NULL) {
        return RX_ERR_INVALID;
    }
    struct sockaddr_storage storage;
    socklen_t length;
    if (!rx_address_parse(address, port, &storage, &length)) {
        rx_log(RX_LOG_ERROR, "listener address '%s' is not an IP literal", address);
        return RX_ERR_INVALID;
    }
    unsigned index = runtime->listener_count;
    for (unsigned i = 0; i < runtime->reactor_count; i++) {
        int fd = listen_socket_open(&storage, length);
        if (fd < 0) {
            rx_log(RX_LOG_ERROR, "listen on %s port %u: %s", address, port, strerror(errno));
            for (unsigned j = 0; j < i; j++) {
                (void)close(runtime->reactors[j].listen_fds[index]);
                runtime->reactors[j].listen_fds[index] = -1;
            }
            return RX_ERR_SYSTEM;
        }
        runtime->reactors[i].listen_fds[index] = fd;
        if (port == 0) {
            /* Every reactor must share one port for SO_REUSEPORT to spread. */
            port = socket_port(fd);
            address_set_port(&storage, port);
        }
    }
    rx_listener *listener = &runtime->listeners[index];
    listener->ops = ops;
    listener->context = context;
    listener->port = port;
    listener->index = index;
    runtime->listener_count++;
    if (listener_out != NULL) {
        *listener_out = listener;
    }
    return RX_OK;
}

uint16_t rx_listener_port(const rx_listener *listener)
{
    return listener->port;
}

/* ------------------------------------------------------------ start / stop */

static bool signals_setup(rx_runtime *runtime)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    /* Blocked here, inherited by every reactor thread created below, so the
     * signals stay pending for the signalfd instead of killing the process. */
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0) {
        return false;
    }
    runtime->signal_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (runtime->signal_fd < 0) {
        rx_log(RX_LOG_ERROR, "signalfd: %s", strerror(errno));
        return false;
    }
    runtime->reactors[0].signal_fd = runtime->signal_fd;
    return true;
}

/* Waits until every thread reported its setup, then tells them to go (or to
 * give up when one failed). */
static bool start_barrier(rx_runtime *runtime, unsigned threads)
{
    pthread_mutex_lock(&runtime->start_lock);
    while (runtime->ready_count < threads) {
        pthread_cond_wait(&runtime->start_cond, &runtime->start_lock);
    }
    bool ok = !runtime->start_failed && threads == runtime->reactor_count;
    runtime->start_failed = !ok;
    runtime->go = true;
    pthread_cond_broadcast(&runtime->start_cond);
    pthread_mutex_unlock(&runtime->start_lock);
    return ok;
}

static void join_threads(rx_runtime *runtime, unsigned threads)
{
    for (unsigned i = 0; i < threads; i++) {
        int error = pthread_join(runtime->reactors[i].thread, NULL);
        RX_ASSERT(error == 0);
    }
    runtime->joined = true;
    rx_log_stop();
}

rx_status rx_runtime_start(rx_runtime *runtime)
{
    if (runtime->started) {
        return RX_ERR_STATE;
    }
    runtime->started = true;
    if (runtime->options.handle_signals && !signals_setup(runtime)) {
        return RX_ERR_SYSTEM;
    }
    if (rx_log_start() != RX_OK) {
        rx_log(RX_LOG_ERROR, "cannot start the logger thread");
        return RX_ERR_SYSTEM;
    }
    unsigned threads = 0;
    for (; threads < runtime->reactor_count; threads++) {
        rx_reactor *reactor = &runtime->reactors[threads];
        if (pthread_create(&reactor->thread, NULL, rx_reactor_main, reactor) != 0) {
            rx_log(RX_LOG_ERROR, "cannot create reactor thread %u", threads);
            pthread_mutex_lock(&runtime->start_lock);
            runtime->start_failed = true;
            pthread_mutex_unlock(&runtime->start_lock);
            break;
        }
    }
    if (!start_barrier(runtime, threads)) {
        join_threads(runtime, threads);
        return RX_ERR_SYSTEM;
    }
    rx_log(RX_LOG_INFO, "runtime started: %u reactors, %u connection slots each",
           runtime->reactor_count, runtime->reactors[0].slot_count);
    return RX_OK;
}

static void stop_wake(const rx_message *message)
{
    (void)message;
}

void rx_runtime_stop(rx_runtime *runtime)
{
    /* The deadline is published before the flag: a reactor that sees the
     * flag must not read a deadline of 0 (it would abort every connection
     * at once and leave with moves unfinished). The first caller's wins. */
    uint64_t unset = 0;
    (void)atomic_compare_exchange_strong(&runtime->stop_deadline_ms, &unset,
                                         rx_clock_ms() + runtime->options.shutdown_grace_ms);
    if (atomic_exchange(&runtime->stop_requested, true)) {
        return;
    }
    rx_reactor *self = rx_reactor_current();
    rx_message wake = {.function = stop_wake};
    for (unsigned i = 0; i < runtime->reactor_count; i++) {
        rx_reactor *reactor = &runtime->reactors[i];
        if (reactor == self) {
            continue;
        }
        /* A reactor tells the others by mailbox (woken with msg_ring); a
         * plain thread, or a full mailbox, falls back to the eventfd. */
        if (self == NULL || self->runtime != runtime || rx_post(i, &wake) != RX_OK) {
            rx_reactor_wake_external(reactor);
        }
    }
}

void rx_runtime_wait(rx_runtime *runtime)
{
    if (runtime->started && !runtime->joined) {
        join_threads(runtime, runtime->reactor_count);
    }
}

rx_status rx_runtime_run(rx_runtime *runtime)
{
    rx_status status = rx_runtime_start(runtime);
    if (status != RX_OK) {
        return status;
    }
    rx_runtime_wait(runtime);
    return RX_OK;
}

static void reactor_destroy(rx_runtime *runtime, rx_reactor *reactor)
{
    if (reactor->ring_fd >= 0) {
        io_uring_queue_exit(&reactor->ring);
    }
    /* After the ring is gone, so the kernel no longer writes to requests. */
    rx_reactor_connects_free_all(reactor);
    rx_reactor_polls_free_all(reactor);
    rx_conn_free_all_chunks(reactor);
    rx_reactor_free_send_contexts(reactor);
    free(reactor->slots);
    free(reactor->buffer_ring);
    if (reactor->buffer_memory != NULL) {
        free(reactor->buffer_memory);
    }
    for (unsigned i = 0; i < LIMIT_LISTENERS_PER_REACTOR; i++) {
        if (reactor->listen_fds[i] >= 0) {
            (void)close(reactor->listen_fds[i]);
        }
    }
    if (reactor->event_fd >= 0) {
        (void)close(reactor->event_fd);
    }
    if (reactor->inboxes != NULL) {
        unsigned sources = runtime->reactor_count + runtime->options.producers_max;
        for (unsigned i = 0; i < sources; i++) {
            rx_mailbox_destroy(atomic_load(&reactor->inboxes[i]));
        }
        free(reactor->inboxes);
    }
}

void rx_runtime_destroy(rx_runtime *runtime)
{
    if (runtime == NULL) {
        return;
    }
    RX_ASSERT(!runtime->started || runtime->joined);
    if (runtime->reactors != NULL) {
        for (unsigned i = 0; i < runtime->reactor_count; i++) {
            if (runtime->reactors[i].runtime != NULL) {
                reactor_destroy(runtime, &runtime->reactors[i]);
            }
        }
        free(runtime->reactors);
    }
    if (runtime->signal_fd >= 0) {
        (void)close(runtime->signal_fd);
    }
    free(runtime->producers);
    pthread_mutex_destroy(&runtime->start_lock);
    pthread_cond_destroy(&runtime->start_cond);
    free(runtime);
}

/* ---------------------------------------------------------------- stats */

rx_status rx_runtime_stats(const rx_runtime *runtime, unsigned reactor_index,
                           rx_reactor_stats *stats)
{
    if (reactor_index >= runtime->reactor_count) {
        return RX_ERR_INVALID;
    }
    const rx_stats_atomic *source = &runtime->reactors[reactor_index].stats;
#define RX_STAT_COPY(field)                                                                        \
    stats->field = atomic_load_explicit(&source->field, memory_order_relaxed)
    RX_STAT_COPY(accepted);
    RX_STAT_COPY(accept_refused);
    RX_STAT_COPY(open_connections);
    RX_STAT_COPY(closed);
    RX_STAT_COPY(bytes_received);
    RX_STAT_COPY(bytes_sent);
    RX_STAT_COPY(enobufs_events);
    RX_STAT_COPY(send_queue_bytes);
    RX_STAT_COPY(moves_in);
    RX_STAT_COPY(moves_out);
    RX_STAT_COPY(write_timeouts);
    RX_STAT_COPY(messages_received);
    RX_STAT_COPY(wakes_sent);
    RX_STAT_COPY(connects_started);
    RX_STAT_COPY(connects_succeeded);
    RX_STAT_COPY(connects_failed);
#undef RX_STAT_COPY
    return RX_OK;
}

/* ---------------------------------------------------------------- producers */

rx_producer *rx_producer_create(rx_runtime *runtime)
{
    unsigned index = atomic_fetch_add(&runtime->producer_count, 1);
    if (index >= runtime->options.producers_max) {
        atomic_fetch_sub(&runtime->producer_count, 1);
        return NULL;
    }
    rx_producer *producer = &runtime->producers[index];
    producer->runtime = runtime;
    producer->source_index = runtime->reactor_count + index;
    return producer;
}

rx_status rx_producer_post(rx_producer *producer, unsigned target_index, const rx_message *message)
{
    rx_runtime *runtime = producer->runtime;
    if (target_index >= runtime->reactor_count || message->function == NULL) {
        return RX_ERR_INVALID;
    }
    rx_reactor *target = &runtime->reactors[target_index];
    if (atomic_load(&target->exited)) {
        return RX_ERR_STATE;
    }
    rx_mailbox *mailbox = rx_inbox_for(target, producer->source_index);
    if (mailbox == NULL) {
        return RX_ERR_NOMEM;
    }
    if (!rx_mailbox_push(mailbox, message)) {
        return RX_ERR_FULL;
    }
    /* Only the poster that finds the flag clear writes the eventfd: one
     * wake per drain of the target, however many messages. */
    if (!atomic_exchange(&target->external_wake_pending, true)) {
        rx_reactor_wake_external(target);
    }
    return RX_OK;
}

/* ---------------------------------------------------------- shared buffers */

rx_shared_buf *rx_shared_buf_create(size_t len)
{
    rx_shared_buf *shared = malloc(sizeof *shared + len);
    if (shared == NULL) {
        return NULL;
    }
    atomic_init(&shared->references, 1);
    shared->length = len;
    return shared;
}

uint8_t *rx_shared_buf_bytes(rx_shared_buf *shared)
{
    return shared->bytes;
}

size_t rx_shared_buf_len(const rx_shared_buf *shared)
{
    return shared->length;
}

void rx_shared_buf_retain(rx_shared_buf *shared)
{
    unsigned previous = atomic_fetch_add_explicit(&shared->references, 1, memory_order_relaxed);
    RX_ASSERT(previous > 0);
}

void rx_shared_buf_release(rx_shared_buf *shared)
{
    unsigned previous = atomic_fetch_sub_explicit(&shared->references, 1, memory_order_acq_rel);
    RX_ASSERT(previous > 0);
    if (previous == 1) {
        free(shared);
    }
}
