/*
 * reactor.c: one reactor thread: its ring, its loop, and the one dispatch
 * switch every completion goes through.
 *
 * A loop iteration: advance the timer wheel, drain the inboxes if someone
 * woke us, flush the pending writes (one send per connection), service the
 * connections that need a receive re-armed or a move handed off, release
 * the closed ones, wake the reactors we posted to (one msg_ring each), then
 * submit everything and sleep until a completion or the next timer tick.
 * Completions are dispatched on op type packed in user_data; the provided
 * buffers consumed by a batch are handed back with one ring advance.
 */
#include "server/runtime/internal.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#define RX_BUFFER_GROUP    0
#define RX_CQE_BATCH       256
#define RX_CQE_BATCHES_MAX 64
/* While shutting down, wake at least this often to notice that the other
 * reactors finished their moves. */
#define RX_SHUTDOWN_POLL_MS 50
/* A reactor exits this long after the grace period even if kernel
 * completions for aborted connections never arrived. */
#define RX_SHUTDOWN_HARD_EXTRA_MS 1000

static _Thread_local rx_reactor *current_reactor;

uint64_t rx_clock_ms(void)
{
    struct timespec now;
    int error = clock_gettime(CLOCK_MONOTONIC, &now);
    RX_ASSERT(error == 0);
    return (uint64_t)now.tv_sec * 1000u + (uint64_t)now.tv_nsec / 1000000u;
}

rx_reactor *rx_reactor_current(void)
{
    return current_reactor;
}

unsigned rx_reactor_index(const rx_reactor *reactor)
{
    return reactor->index;
}

unsigned rx_reactor_count(const rx_reactor *reactor)
{
    return reactor->runtime->reactor_count;
}

rx_runtime *rx_reactor_runtime(const rx_reactor *reactor)
{
    return reactor->runtime;
}

uint64_t rx_now_ms(void)
{
    RX_ASSERT(current_reactor != NULL);
    return current_reactor->now_ms;
}

struct io_uring_sqe *rx_reactor_sqe(rx_reactor *reactor)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&reactor->ring);
    if (sqe == NULL) {
        /* The submission queue is full: hand it to the kernel and retry. */
        int submitted = io_uring_submit(&reactor->ring);
        if (submitted < 0) {
            rx_log(RX_LOG_ERROR, "reactor %u: submit: %s", reactor->index, strerror(-submitted));
        }
        sqe = io_uring_get_sqe(&reactor->ring);
    }
    RX_ASSERT(sqe != NULL);
    return sqe;
}

void rx_reactor_wake_external(rx_reactor *reactor)
{
    uint64_t one = 1;
    ssize_t written = write(reactor->event_fd, &one, sizeof one);
    /* EAGAIN means the counter is saturated: the reactor is awake anyway. */
    if (written != (ssize_t)sizeof one && errno != EAGAIN) {
        rx_log(RX_LOG_ERROR, "reactor %u: eventfd write: %s", reactor->index, strerror(errno));
    }
}

rx_mailbox *rx_inbox_for(rx_reactor *target, unsigned source_index)
{
    rx_mailbox *mailbox =
        atomic_load_explicit(&target->inboxes[source_index], memory_order_acquire);
    if (mailbox != NULL) {
        return mailbox;
    }
    /* Only the single producer of this pair ever creates its mailbox; the
     * release store publishes the initialised ring to the consumer. */
    mailbox = rx_mailbox_create(target->runtime->options.mailbox_messages);
    if (mailbox != NULL) {
        atomic_store_explicit(&target->inboxes[source_index], mailbox, memory_order_release);
    }
    return mailbox;
}

rx_status rx_post(unsigned target_index, const rx_message *message)
{
    rx_reactor *reactor = current_reactor;
    RX_ASSERT(reactor != NULL);
    if (target_index >= reactor->runtime->reactor_count || message->function == NULL) {
        return RX_ERR_INVALID;
    }
    rx_reactor *target = &reactor->runtime->reactors[target_index];
    if (atomic_load_explicit(&target->exited, memory_order_relaxed)) {
        return RX_ERR_STATE;
    }
    rx_mailbox *mailbox = rx_inbox_for(target, reactor->index);
    if (mailbox == NULL) {
        return RX_ERR_NOMEM;
    }
    if (!rx_mailbox_push(mailbox, message)) {
        return RX_ERR_FULL;
    }
    reactor->dirty_targets[target_index / 64] |= UINT64_C(1) << (target_index % 64);
    return RX_OK;
}

/* ------------------------------------------------------------------ setup */

static bool ring_create(rx_reactor *reactor)
{
    static const struct {
        unsigned flags;
        const char *name;
    } attempts[] = {
        {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, "SINGLE_ISSUER|DEFER_TASKRUN"},
        {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN, "SINGLE_ISSUER|COOP_TASKRUN"},
        {IORING_SETUP_COOP_TASKRUN, "COOP_TASKRUN"},
        {0, "no flags"},
    };
    for (size_t i = 0; i < sizeof attempts / sizeof attempts[0]; i++) {
        struct io_uring_params params;
        memset(&params, 0, sizeof params);
        params.flags = attempts[i].flags | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_CQSIZE;
        params.cq_entries = LIMIT_RING_ENTRIES * 4;
        int error = io_uring_queue_init_params(LIMIT_RING_ENTRIES, &reactor->ring, &params);
        if (error == 0) {
            reactor->ring_flags = attempts[i].flags;
            reactor->ring_fd = reactor->ring.ring_fd;
            rx_log(i == 0 ? RX_LOG_DEBUG : RX_LOG_WARNING, "reactor %u: ring set up with %s",
                   reactor->index, attempts[i].name);
            return true;
        }
        if (error != -EINVAL) {
            rx_log(RX_LOG_ERROR, "reactor %u: io_uring_queue_init: %s", reactor->index,
                   strerror(-error));
            return false;
        }
        rx_log(RX_LOG_WARNING, "reactor %u: kernel refused ring flags %s (EINVAL), falling back",
               reactor->index, attempts[i].name);
    }
    return false;
}

static bool buffers_create(rx_reactor *reactor)
{
    const rx_options *options = &reactor->runtime->options;
    unsigned count = options->recv_buffers;
    long page = sysconf(_SC_PAGESIZE);
    reactor->buffer_ring_bytes = (size_t)count * sizeof(struct io_uring_buf);
    reactor->buffer_memory_bytes = (size_t)count * options->recv_buffer_bytes;
    void *ring_memory = NULL;
    if (posix_memalign(&ring_memory, (size_t)page, reactor->buffer_ring_bytes) != 0 ||
        posix_memalign((void **)&reactor->buffer_memory, (size_t)page,
                       reactor->buffer_memory_bytes) != 0) {
        free(ring_memory);
        rx_log(RX_LOG_ERROR, "reactor %u: cannot allocate receive buffers", reactor->index);
        return false;
    }
    reactor->buffer_ring = ring_memory;
    struct io_uring_buf_reg registration;
    memset(&registration, 0, sizeof registration);
    registration.ring_addr = (uint64_t)(uintptr_t)ring_memory;
    registration.ring_entries = count;
    registration.bgid = RX_BUFFER_GROUP;
    int error = io_uring_register_buf_ring(&reactor->ring, &registration, 0);
    if (error != 0) {
        rx_log(RX_LOG_ERROR, "reactor %u: register buffer ring: %s", reactor->index,
               strerror(-error));
        return false;
    }
    io_uring_buf_ring_init(reactor->buffer_ring);
    for (unsigned id = 0; id < count; id++) {
        rx_conn_recv_returned(reactor, id);
    }
    io_uring_buf_ring_advance(reactor->buffer_ring, (int)reactor->buffers_returned);
    reactor->buffers_returned = 0;
    return true;
}

void rx_conn_recv_returned(rx_reactor *reactor, unsigned buffer_id)
{
    const rx_options *options = &reactor->runtime->options;
    io_uring_buf_ring_add(reactor->buffer_ring,
                          reactor->buffer_memory + (size_t)buffer_id * options->recv_buffer_bytes,
                          options->recv_buffer_bytes, (unsigned short)buffer_id,
                          io_uring_buf_ring_mask(options->recv_buffers),
                          (int)reactor->buffers_returned);
    reactor->buffers_returned++;
}

static void poll_arm(rx_reactor *reactor, int fd, enum rx_op op)
{
    struct io_uring_sqe *sqe = rx_reactor_sqe(reactor);
    io_uring_prep_poll_multishot(sqe, fd, POLLIN);
    io_uring_sqe_set_data64(sqe, rx_user_data(op, 0, 0));
}

static void accept_arm(rx_reactor *reactor, unsigned listener_index)
{
    struct io_uring_sqe *sqe = rx_reactor_sqe(reactor);
    io_uring_prep_multishot_accept_direct(sqe, reactor->listen_fds[listener_index], NULL, NULL, 0);
    io_uring_sqe_set_data64(sqe, rx_user_data(RX_OP_ACCEPT, 0, listener_index));
    reactor->accept_armed[listener_index] = true;
    reactor->misc_inflight++;
}

static bool reactor_setup(rx_reactor *reactor)
{
    if (!ring_create(reactor)) {
        return false;
    }
    int error = io_uring_register_files_sparse(&reactor->ring, reactor->slot_count);
    if (error != 0) {
        rx_log(RX_LOG_ERROR, "reactor %u: register %u sparse files: %s", reactor->index,
               reactor->slot_count, strerror(-error));
        return false;
    }
    reactor->slots = calloc(reactor->slot_count, sizeof *reactor->slots);
    if (reactor->slots == NULL || !buffers_create(reactor)) {
        return false;
    }
    reactor->now_ms = rx_clock_ms();
    rx_wheel_init(&reactor->wheel, LIMIT_TIMER_SLOT_MS, reactor->now_ms);
    poll_arm(reactor, reactor->event_fd, RX_OP_EVENT_FD);
    if (reactor->signal_fd >= 0) {
        poll_arm(reactor, reactor->signal_fd, RX_OP_SIGNAL_FD);
    }
    for (unsigned i = 0; i < reactor->runtime->listener_count; i++) {
        accept_arm(reactor, i);
    }
    return true;
}

static void reactor_pin(rx_reactor *reactor)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (!reactor->runtime->options.pin_threads || cores <= 0) {
        return;
    }
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(reactor->index % (unsigned)cores, &set);
    int error = pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    if (error != 0) {
        rx_log(RX_LOG_WARNING, "reactor %u: cannot pin to core %ld: %s", reactor->index,
               (long)(reactor->index % (unsigned)cores), strerror(error));
    }
}

/* ---------------------------------------------------------------- mailboxes */

/* Runs every message waiting in every inbox, at most one mailbox-full per
 * source per call so a chatty sender cannot starve the loop. */
static void inboxes_drain(rx_reactor *reactor)
{
    rx_runtime *runtime = reactor->runtime;
    unsigned sources = runtime->reactor_count + atomic_load(&runtime->producer_count);
    bool more = false;
    for (unsigned source = 0; source < sources; source++) {
        rx_mailbox *mailbox = atomic_load_explicit(&reactor->inboxes[source], memory_order_acquire);
        if (mailbox == NULL) {
            continue;
        }
        rx_message message;
        unsigned handled = 0;
        while (handled <= mailbox->mask && rx_mailbox_pop(mailbox, &message)) {
            handled++;
            message.function(&message);
        }
        more = more || handled > mailbox->mask;
        rx_stat_add(&reactor->stats.messages_received, handled);
    }
    if (more) {
        atomic_store(&reactor->wake_pending, true);
    }
}

static void inboxes_check(rx_reactor *reactor)
{
    /* Clear the flag before draining: a poster that pushes after our drain
     * finds it clear and wakes us again, so no message is left asleep. */
    bool woken = atomic_load_explicit(&reactor->wake_pending, memory_order_relaxed) &&
                 atomic_exchange(&reactor->wake_pending, false);
    bool external = atomic_load_explicit(&reactor->external_wake_pending, memory_order_relaxed) &&
                    atomic_exchange(&reactor->external_wake_pending, false);
    if (woken || external) {
        inboxes_drain(reactor);
    }
}

/* Wakes each reactor posted to during this iteration, once, and only if no
 * wake is already outstanding for it. */
static void wakes_send(rx_reactor *reactor)
{
    rx_runtime *runtime = reactor->runtime;
    for (unsigned word = 0; word < LIMIT_REACTORS_MAX / 64; word++) {
        while (reactor->dirty_targets[word] != 0) {
            unsigned bit = (unsigned)__builtin_ctzll(reactor->dirty_targets[word]);
            reactor->dirty_targets[word] &= reactor->dirty_targets[word] - 1;
            rx_reactor *target = &runtime->reactors[word * 64 + bit];
            if (target == reactor) {
                atomic_store(&reactor->wake_pending, true);
                continue;
            }
            if (atomic_exchange(&target->wake_pending, true)) {
                continue;
            }
            struct io_uring_sqe *sqe = rx_reactor_sqe(reactor);
            io_uring_prep_msg_ring(sqe, target->ring_fd, 0,
                                   rx_user_data(RX_OP_WAKE, 0, reactor->index), 0);
            io_uring_sqe_set_data64(sqe, rx_user_data(RX_OP_WAKE, 0, target->index));
            sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
            rx_stat_add(&reactor->stats.wakes_sent, 1);
        }
    }
}

/* ------------------------------------------------------ completions: misc */

static void event_fd_ready(rx_reactor *reactor, const struct io_uring_cqe *cqe)
{
    uint64_t count;
    /* Resetting the counter; EAGAIN just means another read got it. */
    ssize_t got = read(reactor->event_fd, &count, sizeof count);
    if (got < 0 && errno != EAGAIN) {
        rx_log(RX_LOG_ERROR, "reactor %u: eventfd read: %s", reactor->index, strerror(errno));
    }
    atomic_store(&reactor->external_wake_pending, true);
    if (!(cqe->flags & IORING_CQE_F_MORE)) {
        poll_arm(reactor, reactor->event_fd, RX_OP_EVENT_FD);
    }
}

static void signal_fd_ready(rx_reactor *reactor, const struct io_uring_cqe *cqe)
{
    struct signalfd_siginfo info;
    for (unsigned i = 0; i < 16; i++) {
        ssize_t got = read(reactor->signal_fd, &info, sizeof info);
        if (got != (ssize_t)sizeof info) {
            break;
        }
        rx_log(RX_LOG_INFO, "signal %u received: graceful shutdown", info.ssi_signo);
        rx_runtime_stop(reactor->runtime);
    }
    if (!(cqe->flags & IORING_CQE_F_MORE) && !reactor->shutting_down) {
        poll_arm(reactor, reactor->signal_fd, RX_OP_SIGNAL_FD);
    }
}

static void accept_completed(rx_reactor *reactor, unsigned listener_index,
                             const struct io_uring_cqe *cqe)
{
    RX_ASSERT(listener_index < reactor->runtime->listener_count);
    if (cqe->res >= 0) {
        rx_peer_lookup_start(reactor, listener_index, cqe->res);
    } else if (cqe->res == -ENFILE || cqe->res == -EMFILE) {
        /* The kernel closed the socket it could not place: the table is full. */
        rx_stat_add(&reactor->stats.accept_refused, 1);
        if (reactor->now_ms - reactor->last_refusal_log_ms >= 1000) {
            reactor->last_refusal_log_ms = reactor->now_ms;
            rx_log(RX_LOG_WARNING, "reactor %u: connection table full (%u), refusing",
                   reactor->index, reactor->slot_count);
        }
    } else if (cqe->res != -ECANCELED) {
        rx_log(RX_LOG_WARNING, "reactor %u: accept: %s", reactor->index, strerror(-cqe->res));
    }
    if (cqe->flags & IORING_CQE_F_MORE) {
        return;
    }
    reactor->accept_armed[listener_index] = false;
    reactor->misc_inflight--;
    if (!reactor->shutting_down) {
        accept_arm(reactor, listener_index);
        return;
    }
    (void)close(reactor->listen_fds[listener_index]);
    reactor->listen_fds[listener_index] = -1;
}

static void dispatch(rx_reactor *reactor, const struct io_uring_cqe *cqe)
{
    uint64_t user_data = cqe->user_data;
    enum rx_op op = (enum rx_op)(user_data >> 56);
    uint32_t slot = (uint32_t)user_data;
    switch (op) {
    case RX_OP_ACCEPT:
        accept_completed(reactor, slot, cqe);
        break;
    case RX_OP_RECV:
    case RX_OP_SEND:
    case RX_OP_CANCEL:
    case RX_OP_CLOSE:
        rx_conn_on_cqe(reactor, op, user_data, cqe);
        break;
    case RX_OP_CLOSE_SLOT:
    case RX_OP_ACCEPT_CANCEL:
        reactor->misc_inflight--;
        break;
    case RX_OP_CONNECT_INSTALL:
    case RX_OP_CONNECT:
    case RX_OP_CONNECT_CANCEL:
        rx_connect_on_cqe(reactor, op, user_data, cqe->res);
        break;
    case RX_OP_POLL:
    case RX_OP_POLL_CANCEL:
        rx_poll_on_cqe(reactor, op, user_data, cqe->res);
        break;
    case RX_OP_PEER:
        rx_peer_on_cqe(reactor, user_data, cqe->res);
        break;
    case RX_OP_MOVE_SEND:
        rx_conn_move_sent(reactor, slot, cqe->res);
        break;
    case RX_OP_MOVE_ARRIVE:
        rx_conn_move_arrived(reactor, (rx_conn *)(uintptr_t)(user_data & RX_USER_DATA_POINTER_MASK),
                             cqe->res);
        break;
    case RX_OP_WAKE:
        if (cqe->res < 0) {
            rx_log(RX_LOG_ERROR, "reactor %u: msg_ring wake of reactor %u: %s", reactor->index,
                   slot, strerror(-cqe->res));
        }
        break;
    case RX_OP_EVENT_FD:
        event_fd_ready(reactor, cqe);
        break;
    case RX_OP_SIGNAL_FD:
        signal_fd_ready(reactor, cqe);
        break;
    default:
        rx_log(RX_LOG_ERROR, "reactor %u: unknown completion %#llx", reactor->index,
               (unsigned long long)user_data);
        RX_ASSERT(false);
    }
}

/* Returns how many completions it handled. */
static unsigned completions_process(rx_reactor *reactor)
{
    struct io_uring_cqe *cqes[RX_CQE_BATCH];
    unsigned handled = 0;
    for (unsigned batch = 0; batch < RX_CQE_BATCHES_MAX; batch++) {
        unsigned count = io_uring_peek_batch_cqe(&reactor->ring, cqes, RX_CQE_BATCH);
        if (count == 0) {
            break;
        }
        handled += count;
        for (unsigned i = 0; i < count; i++) {
            dispatch(reactor, cqes[i]);
        }
        io_uring_cq_advance(&reactor->ring, count);
    }
    if (reactor->buffers_returned > 0) {
        io_uring_buf_ring_advance(reactor->buffer_ring, (int)reactor->buffers_returned);
        reactor->buffers_returned = 0;
    }
    return handled;
}

/* on_housekeeping's schedule (rx.h): completions arm it a period ahead;
 * when due it runs, and stays armed while the reactor was active within
 * the last period, so the call that finds it idle is the last. */
static void housekeeping_note_activity(rx_reactor *reactor)
{
    reactor->active_ms = reactor->now_ms;
    if (!reactor->housekeeping_armed) {
        reactor->housekeeping_armed = true;
        reactor->housekeeping_ms = reactor->now_ms + LIMIT_REACTOR_HOUSEKEEPING_MS;
    }
}

static void housekeeping_run(rx_reactor *reactor)
{
    const rx_options *options = &reactor->runtime->options;
    if (options->on_housekeeping == NULL || !reactor->housekeeping_armed ||
        reactor->now_ms < reactor->housekeeping_ms) {
        return;
    }
    bool idle = reactor->now_ms - reactor->active_ms >= LIMIT_REACTOR_HOUSEKEEPING_MS;
    reactor->housekeeping_armed = !idle;
    reactor->housekeeping_ms = reactor->now_ms + LIMIT_REACTOR_HOUSEKEEPING_MS;
    options->on_housekeeping(options->housekeeping_context, reactor->index, idle);
}

/* Called as a turn ends (before waiting): logs it when it was slow, at
 * most once per LIMIT_REACTOR_HOUSEKEEPING_MS, counting the ones between. */
static void turn_end(rx_reactor *reactor, unsigned completions)
{
    uint64_t end_ms = rx_clock_ms();
    uint64_t took_ms = end_ms - reactor->turn_start_ms;
    if (took_ms < LIMIT_REACTOR_SLOW_TURN_MS)
        return;
    if (reactor->slow_turn_logged_ms != 0 &&
        end_ms - reactor->slow_turn_logged_ms < LIMIT_REACTOR_HOUSEKEEPING_MS) {
        reactor->slow_turns_unlogged++;
        return;
    }
    rx_log(RX_LOG_WARNING,
           "reactor %u: one turn took %" PRIu64 " ms (%u completions); %" PRIu64
           " more of %u ms or over since the last such line",
           reactor->index, took_ms, completions, reactor->slow_turns_unlogged,
           LIMIT_REACTOR_SLOW_TURN_MS);
    reactor->slow_turn_logged_ms = end_ms;
    reactor->slow_turns_unlogged = 0;
}

/* ----------------------------------------------------------------- shutdown */

static void shutdown_begin(rx_reactor *reactor)
{
    reactor->shutting_down = true;
    reactor->shutdown_deadline_ms = atomic_load(&reactor->runtime->stop_deadline_ms);
    rx_log(RX_LOG_INFO, "reactor %u: shutting down, %u connections", reactor->index,
           reactor->connection_count);
    for (unsigned i = 0; i < reactor->runtime->listener_count; i++) {
        if (!reactor->accept_armed[i]) {
            continue;
        }
        struct io_uring_sqe *sqe = rx_reactor_sqe(reactor);
        io_uring_prep_cancel64(sqe, rx_user_data(RX_OP_ACCEPT, 0, i), 0);
        io_uring_sqe_set_data64(sqe, rx_user_data(RX_OP_ACCEPT_CANCEL, 0, i));
        reactor->misc_inflight++;
    }
    for (unsigned slot = 0; slot < reactor->slot_count; slot++) {
        rx_conn *conn = reactor->slots[slot];
        if (conn != NULL && ((uintptr_t)conn & 1u) == 0) {
            rx_conn_shutdown(conn);
        }
    }
    rx_reactor_connects_shutdown(reactor);
}

static void shutdown_abort_all(rx_reactor *reactor)
{
    reactor->aborted_all = true;
    unsigned aborted = 0;
    for (unsigned slot = 0; slot < reactor->slot_count; slot++) {
        rx_conn *conn = reactor->slots[slot];
        if (conn != NULL && ((uintptr_t)conn & 1u) == 0 &&
            !(conn->flags & (CONN_RELEASE_QUEUED | CONN_RELEASED))) {
            rx_conn_release_request(conn, RX_CLOSE_SHUTDOWN);
            aborted++;
        }
    }
    if (aborted > 0) {
        rx_log(RX_LOG_WARNING, "reactor %u: grace period over, aborted %u connections",
               reactor->index, aborted);
    }
}

/* Returns true when the reactor may leave its loop. */
static bool shutdown_step(rx_reactor *reactor)
{
    if (!reactor->shutting_down) {
        if (!atomic_load_explicit(&reactor->runtime->stop_requested, memory_order_acquire)) {
            return false;
        }
        shutdown_begin(reactor);
    }
    if (!reactor->aborted_all && reactor->now_ms >= reactor->shutdown_deadline_ms) {
        shutdown_abort_all(reactor);
    }
    bool idle = reactor->connection_count == 0 && reactor->connects_pending == 0 &&
                reactor->misc_inflight == 0 && atomic_load(&reactor->runtime->moves_in_flight) == 0;
    if (idle) {
        return true;
    }
    if (reactor->now_ms >= reactor->shutdown_deadline_ms + RX_SHUTDOWN_HARD_EXTRA_MS) {
        rx_log(RX_LOG_ERROR, "reactor %u: exiting with %u connections and %u ops unfinished",
               reactor->index, reactor->connection_count, reactor->misc_inflight);
        return true;
    }
    return false;
}

/* -------------------------------------------------------------------- loop */

static bool work_pending(const rx_reactor *reactor)
{
    bool stop_unseen =
        !reactor->shutting_down &&
        atomic_load_explicit(&reactor->runtime->stop_requested, memory_order_relaxed);
    return stop_unseen || reactor->write_list != NULL || reactor->service_list != NULL ||
           reactor->release_list != NULL || rx_reactor_connects_runnable(reactor) ||
           atomic_load_explicit(&reactor->wake_pending, memory_order_relaxed) ||
           atomic_load_explicit(&reactor->external_wake_pending, memory_order_relaxed);
}

static void wait_for_completions(rx_reactor *reactor)
{
    uint64_t wake_ms = rx_wheel_next_wake_ms(&reactor->wheel);
    if (reactor->shutting_down) {
        uint64_t poll_ms = reactor->now_ms + RX_SHUTDOWN_POLL_MS;
        wake_ms = wake_ms < poll_ms ? wake_ms : poll_ms;
    }
    if (reactor->housekeeping_armed && reactor->runtime->options.on_housekeeping != NULL &&
        reactor->housekeeping_ms < wake_ms) {
        wake_ms = reactor->housekeeping_ms;
    }
    if (work_pending(reactor)) {
        wake_ms = reactor->now_ms;
    }
    struct io_uring_cqe *cqe = NULL;
    int result;
    if (wake_ms == UINT64_MAX) {
        result = io_uring_submit_and_wait_timeout(&reactor->ring, &cqe, 1, NULL, NULL);
    } else {
        uint64_t delay_ms = wake_ms > reactor->now_ms ? wake_ms - reactor->now_ms : 0;
        struct __kernel_timespec timeout = {
            .tv_sec = (long long)(delay_ms / 1000),
            .tv_nsec = (long long)(delay_ms % 1000) * 1000000,
        };
        result = io_uring_submit_and_wait_timeout(&reactor->ring, &cqe, 1, &timeout, NULL);
    }
    if (result < 0 && result != -ETIME && result != -EINTR && result != -EAGAIN &&
        result != -EBUSY) {
        rx_log(RX_LOG_ERROR, "reactor %u: submit and wait: %s", reactor->index, strerror(-result));
    }
}

static void reactor_loop(rx_reactor *reactor)
{
    unsigned completions = 0;
    reactor->turn_start_ms = rx_clock_ms();
    for (;;) {
        reactor->now_ms = rx_clock_ms();
        rx_wheel_advance(&reactor->wheel, reactor->now_ms);
        inboxes_check(reactor);
        if (shutdown_step(reactor)) {
            break;
        }
        rx_reactor_run_connects(reactor);
        if (reactor->runtime->options.on_iteration != NULL)
            reactor->runtime->options.on_iteration(reactor->runtime->options.iteration_context,
                                                   reactor->index);
        rx_reactor_flush_writes(reactor);
        rx_reactor_run_service(reactor);
        rx_reactor_run_releases(reactor);
        wakes_send(reactor);
        housekeeping_run(reactor);
        turn_end(reactor, completions);
        wait_for_completions(reactor);
        reactor->now_ms = rx_clock_ms();
        reactor->turn_start_ms = reactor->now_ms;
        completions = completions_process(reactor);
        if (completions > 0) {
            housekeeping_note_activity(reactor);
        }
    }
    int submitted = io_uring_submit(&reactor->ring);
    if (submitted < 0) {
        rx_log(RX_LOG_ERROR, "reactor %u: final submit: %s", reactor->index, strerror(-submitted));
    }
}

void *rx_reactor_main(void *argument)
{
    rx_reactor *reactor = argument;
    rx_runtime *runtime = reactor->runtime;
    current_reactor = reactor;
    rx_log_attach();
    reactor_pin(reactor);
    bool ready = reactor_setup(reactor);

    pthread_mutex_lock(&runtime->start_lock);
    runtime->ready_count++;
    runtime->start_failed = runtime->start_failed || !ready;
    pthread_cond_broadcast(&runtime->start_cond);
    while (!runtime->go) {
        pthread_cond_wait(&runtime->start_cond, &runtime->start_lock);
    }
    bool run = !runtime->start_failed;
    pthread_mutex_unlock(&runtime->start_lock);

    if (run) {
        reactor_loop(reactor);
    }
    atomic_store(&reactor->exited, true);
    rx_log(RX_LOG_DEBUG, "reactor %u: exited", reactor->index);
    rx_log_detach();
    current_reactor = NULL;
    return NULL;
}

/* ------------------------------------------------------------ public timers */

void rx_timer_init(rx_timer *timer, rx_timer_fn *callback, void *argument)
{
    timer->next = NULL;
    timer->previous = NULL;
    timer->deadline_ms = 0;
    timer->callback = callback;
    timer->argument = argument;
}

void rx_timer_arm(rx_timer *timer, uint64_t delay_ms)
{
    RX_ASSERT(current_reactor != NULL);
    rx_wheel_arm(&current_reactor->wheel, timer, current_reactor->now_ms + delay_ms);
}

void rx_timer_cancel(rx_timer *timer)
{
    RX_ASSERT(current_reactor != NULL);
    rx_wheel_cancel(&current_reactor->wheel, timer);
}

bool rx_timer_armed(const rx_timer *timer)
{
    return timer->next != NULL;
}
