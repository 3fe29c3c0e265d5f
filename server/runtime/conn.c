/*
 * conn.c: a connection's life on a reactor: accept, receive, timers, close,
 * and moving to another reactor.
 *
 * State lives in conn->flags; every change that needs the ring (arm or
 * cancel a receive, hand the descriptor to another ring, close the slot) is
 * decided in one place, conn_service, which runs from the loop, never inside
 * an application callback. Every op submitted for a connection counts in
 * conn->inflight and its final completion counts it down; the slot is closed
 * only at zero, and the struct is freed only when that close completes, so
 * no completion ever finds a freed or reused connection (generations in
 * user_data assert it).
 *
 * A move (rx_conn_move) cancels the multishot receive, keeps delivering the
 * bytes that completed before the cancel, waits for any send in flight, then
 * sends the direct descriptor to the target ring with IORING_MSG_SEND_FD.
 * The target's completion carries the connection pointer itself in its
 * user_data, so the descriptor and its state (queue, deadlines, user data,
 * ops) arrive together in one completion and cannot be separated or
 * reordered; the source closes its own slot once the kernel confirms.
 * Every way a move can end (arrived, refused, closed on the way, shutdown)
 * goes through conn_move_finish, which tells the application exactly once.
 * Until the kernel confirms a hand-off the source's slot stays taken, so
 * unconfirmed hand-offs are bounded per reactor (a storm of moves would
 * otherwise fill tables with connections that already left).
 */
#include "server/runtime/internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define RX_CONN_CHUNK 256u

/* An idle connection costs this struct and a slot pointer: keep it small. */
_Static_assert(sizeof(rx_conn) <= 192, "struct rx_conn grew past 192 bytes");

static void conn_assert_owner(const rx_conn *conn)
{
    RX_ASSERT(conn->reactor == rx_reactor_current());
}

/* ---------------------------------------------------------------- the slab */

static rx_conn *conn_allocate(rx_reactor *reactor)
{
    if (reactor->free_conns == NULL) {
        rx_conn_chunk *chunk = malloc(sizeof *chunk + RX_CONN_CHUNK * sizeof(rx_conn));
        if (chunk == NULL) {
            return NULL;
        }
        chunk->next = reactor->chunks;
        reactor->chunks = chunk;
        for (unsigned i = 0; i < RX_CONN_CHUNK; i++) {
            chunk->conns[i].next_release = reactor->free_conns;
            reactor->free_conns = &chunk->conns[i];
        }
    }
    rx_conn *conn = reactor->free_conns;
    reactor->free_conns = conn->next_release;
    memset(conn, 0, sizeof *conn);
    return conn;
}

/* A moved connection is freed into the slab of the reactor that closed it;
 * chunks are returned to the system only when the runtime is destroyed. */
static void conn_free(rx_reactor *reactor, rx_conn *conn)
{
    RX_ASSERT(conn->send_head == NULL && conn->send_context == NULL);
    RX_ASSERT(!(conn->flags & (CONN_IN_WRITE_LIST | CONN_IN_SERVICE_LIST)));
    conn->flags = 0;
    conn->next_release = reactor->free_conns;
    reactor->free_conns = conn;
}

void rx_conn_free_all_chunks(rx_reactor *reactor)
{
    while (reactor->chunks != NULL) {
        rx_conn_chunk *next = reactor->chunks->next;
        free(reactor->chunks);
        reactor->chunks = next;
    }
    reactor->free_conns = NULL;
}

static void conn_adopt(rx_reactor *reactor, rx_conn *conn, int slot)
{
    RX_ASSERT(slot >= 0 && (unsigned)slot < reactor->slot_count);
    RX_ASSERT(reactor->slots[slot] == NULL);
    reactor->generation = (reactor->generation + 1) & RX_GENERATION_MASK;
    conn->generation = reactor->generation;
    conn->slot = (uint32_t)slot;
    conn->reactor = reactor;
    reactor->slots[slot] = conn;
    reactor->connection_count++;
    rx_stat_add(&reactor->stats.open_connections, 1);
}

void rx_slot_close(rx_reactor *reactor, uint32_t slot)
{
    struct io_uring_sqe *sqe = rx_reactor_sqe(reactor);
    io_uring_prep_close_direct(sqe, slot);
    io_uring_sqe_set_data64(sqe, rx_user_data(RX_OP_CLOSE_SLOT, 0, slot));
    reactor->misc_inflight++;
}

static void conn_timer_fired(rx_timer *timer, void *argument);

rx_conn *rx_conn_create(rx_reactor *reactor, int slot, const rx_listener_ops *ops,
                        uint64_t handshake_start_ms)
{
    rx_conn *conn = conn_allocate(reactor);
    if (conn == NULL) {
        rx_log(RX_LOG_ERROR, "reactor %u: out of memory for a connection", reactor->index);
        rx_slot_close(reactor, (uint32_t)slot);
        return NULL;
    }
    conn_adopt(reactor, conn, slot);
    conn->ops = ops;
    conn->handshake_deadline_ms =
        handshake_start_ms + reactor->runtime->options.handshake_timeout_ms;
    conn->last_receive_ms = reactor->now_ms;
    rx_timer_init(&conn->timer, conn_timer_fired, conn);
    rx_conn_schedule_timer(conn);
    rx_conn_service(conn);
    return conn;
}

void rx_conn_opened(rx_conn *conn, void *context)
{
    conn->ops->on_open(conn, context);
    if (conn->reactor->shutting_down) {
        rx_conn_shutdown(conn);
    }
}

void rx_conn_accepted(rx_reactor *reactor, unsigned listener_index, int slot)
{
    const rx_listener *listener = &reactor->runtime->listeners[listener_index];
    rx_conn *conn = rx_conn_create(reactor, slot, listener->ops, reactor->now_ms);
    if (conn == NULL) {
        rx_stat_add(&reactor->stats.accept_refused, 1);
        return;
    }
    rx_stat_add(&reactor->stats.accepted, 1);
    rx_conn_opened(conn, listener->context);
}

/* ------------------------------------------------------------------ timers */

void rx_conn_schedule_timer(rx_conn *conn)
{
    if (conn->flags & (CONN_RELEASE_QUEUED | CONN_RELEASED | CONN_HANDED_OFF)) {
        return;
    }
    const rx_options *options = &conn->reactor->runtime->options;
    uint64_t deadline_ms = UINT64_MAX;
    if (!(conn->flags & CONN_HANDSHAKE_DONE) && options->handshake_timeout_ms != 0) {
        deadline_ms = conn->handshake_deadline_ms;
    }
    if (options->idle_timeout_ms != 0) {
        uint64_t idle_ms = conn->last_receive_ms + options->idle_timeout_ms;
        deadline_ms = idle_ms < deadline_ms ? idle_ms : deadline_ms;
    }
    if (conn->send_queue_bytes > 0 && options->write_timeout_ms != 0) {
        uint64_t write_ms = conn->last_drain_ms + options->write_timeout_ms;
        deadline_ms = write_ms < deadline_ms ? write_ms : deadline_ms;
    }
    rx_wheel *wheel = &conn->reactor->wheel;
    if (deadline_ms == UINT64_MAX) {
        rx_wheel_cancel(wheel, &conn->timer);
        return;
    }
    /* Deadlines only move later as traffic flows; an earlier arming stays
     * and re-arms itself when it fires, which keeps re-arming off the
     * per-byte path. */
    if (rx_timer_armed(&conn->timer) && conn->timer.deadline_ms <= deadline_ms) {
        return;
    }
    rx_wheel_arm(wheel, &conn->timer, deadline_ms);
}

/* A handshake or idle timeout: the application may say goodbye first (a
 * close it requests drains the queue); if the deadline passes again while
 * that goodbye is still queued, the connection is released regardless. */
static void conn_timed_out(rx_conn *conn, rx_close_reason reason)
{
    if (conn->ops->on_timeout != NULL && !(conn->flags & CONN_CLOSE_REQUESTED)) {
        conn->ops->on_timeout(conn, reason);
        if (conn->flags & (CONN_RELEASE_QUEUED | CONN_RELEASED)) {
            return;
        }
        if (conn->flags & CONN_CLOSE_REQUESTED) {
            rx_wheel_arm(&conn->reactor->wheel, &conn->timer,
                         conn->reactor->now_ms + LIMIT_TIMER_SLOT_MS);
            return;
        }
    }
    rx_conn_release_request(conn, reason);
}

static void conn_timer_fired(rx_timer *timer, void *argument)
{
    (void)timer;
    rx_conn *conn = argument;
    const rx_options *options = &conn->reactor->runtime->options;
    uint64_t now_ms = conn->reactor->now_ms;
    if (!(conn->flags & CONN_HANDSHAKE_DONE) && options->handshake_timeout_ms != 0 &&
        now_ms >= conn->handshake_deadline_ms) {
        conn_timed_out(conn, RX_CLOSE_HANDSHAKE_TIMEOUT);
    } else if (options->idle_timeout_ms != 0 &&
               now_ms >= conn->last_receive_ms + options->idle_timeout_ms) {
        conn_timed_out(conn, RX_CLOSE_IDLE_TIMEOUT);
    } else if (conn->send_queue_bytes > 0 && options->write_timeout_ms != 0 &&
               now_ms >= conn->last_drain_ms + options->write_timeout_ms) {
        rx_conn_release_request(conn, RX_CLOSE_WRITE_TIMEOUT);
    } else {
        rx_conn_schedule_timer(conn);
    }
}

/* ------------------------------------------------------------------ receive */

static void conn_arm_recv(rx_conn *conn)
{
    struct io_uring_sqe *sqe = rx_reactor_sqe(conn->reactor);
    io_uring_prep_recv_multishot(sqe, (int)conn->slot, NULL, 0, 0);
    sqe->flags |= IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT;
    sqe->buf_group = 0;
    io_uring_sqe_set_data64(sqe, rx_user_data(RX_OP_RECV, conn->generation, conn->slot));
    conn->flags |= CONN_RECV_ARMED;
    conn->inflight++;
}

static void conn_cancel_op(rx_conn *conn, enum rx_op op)
{
    struct io_uring_sqe *sqe = rx_reactor_sqe(conn->reactor);
    io_uring_prep_cancel64(sqe, rx_user_data(op, conn->generation, conn->slot), 0);
    io_uring_sqe_set_data64(sqe, rx_user_data(RX_OP_CANCEL, conn->generation, conn->slot));
    conn->inflight++;
}

static void conn_cancel_recv(rx_conn *conn)
{
    conn_cancel_op(conn, RX_OP_RECV);
    conn->flags |= CONN_RECV_CANCELLING;
}

static void conn_peer_closed(rx_conn *conn)
{
    conn->flags |= CONN_PEER_EOF;
    if (conn->flags & (CONN_RELEASE_QUEUED | CONN_RELEASED)) {
        return;
    }
    if (!(conn->flags & CONN_CLOSE_REQUESTED)) {
        conn->flags |= CONN_CLOSE_REQUESTED;
        conn->close_reason = RX_CLOSE_PEER;
    }
    /* Whatever is queued still goes out (the peer may only have shut down
     * its sending side); the write timeout bounds the wait. */
    if (conn->send_queue_bytes == 0 && !(conn->flags & CONN_SENDING)) {
        rx_conn_release_request(conn, conn->close_reason);
    }
}

static void conn_on_recv(rx_reactor *reactor, rx_conn *conn, const struct io_uring_cqe *cqe)
{
    if (cqe->flags & IORING_CQE_F_BUFFER) {
        unsigned id = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
        bool wanted = !(conn->flags & (CONN_CLOSE_REQUESTED | CONN_RELEASE_QUEUED | CONN_RELEASED));
        if (cqe->res > 0 && wanted) {
            const uint8_t *bytes =
                reactor->buffer_memory + (size_t)id * reactor->runtime->options.recv_buffer_bytes;
            conn->last_receive_ms = reactor->now_ms;
            rx_stat_add(&reactor->stats.bytes_received, cqe->res);
            conn->ops->on_data(conn, bytes, (size_t)cqe->res);
        }
        /* The buffer goes back right after its callback; the ring advance is
         * batched per completion batch. */
        rx_conn_recv_returned(reactor, id);
    }
    if (cqe->flags & IORING_CQE_F_MORE) {
        return;
    }
    conn->flags &= (uint16_t) ~(CONN_RECV_ARMED | CONN_RECV_CANCELLING);
    if (cqe->res == 0) {
        conn_peer_closed(conn);
    } else if (cqe->res == -ENOBUFS) {
        /* Back-pressure: the buffer ring ran dry. The data waits in the
         * socket; the receive is re-armed from the service list once this
         * batch has handed its buffers back. */
        rx_stat_add(&reactor->stats.enobufs_events, 1);
    } else if (cqe->res < 0 && cqe->res != -ECANCELED) {
        rx_log(RX_LOG_DEBUG, "reactor %u: recv on slot %u: %s", reactor->index, conn->slot,
               strerror(-cqe->res));
        conn->close_errno = (uint8_t)(-cqe->res < 256 ? -cqe->res : 0);
        rx_conn_release_request(conn, RX_CLOSE_ERROR);
    }
    rx_conn_op_done(conn);
}

/* ---------------------------------------------------------- the dispatcher */

static void conn_on_closed(rx_reactor *reactor, rx_conn *conn, int result)
{
    if (result < 0) {
        rx_log(RX_LOG_WARNING, "reactor %u: close slot %u: %s", reactor->index, conn->slot,
               strerror(-result));
    }
    reactor->slots[conn->slot] = NULL;
    RX_ASSERT(reactor->connection_count > 0);
    reactor->connection_count--;
    conn_free(reactor, conn);
}

void rx_conn_on_cqe(rx_reactor *reactor, enum rx_op op, uint64_t user_data,
                    const struct io_uring_cqe *cqe)
{
    uint32_t slot = (uint32_t)user_data;
    uint32_t generation = (uint32_t)(user_data >> 32) & RX_GENERATION_MASK;
    RX_ASSERT(slot < reactor->slot_count);
    rx_conn *conn = reactor->slots[slot];
    RX_ASSERT(conn != NULL && ((uintptr_t)conn & 1u) == 0 && conn->generation == generation);
    switch (op) {
    case RX_OP_RECV:
        conn_on_recv(reactor, conn, cqe);
        break;
    case RX_OP_SEND:
        rx_conn_send_completed(conn, cqe->res);
        rx_conn_op_done(conn);
        break;
    case RX_OP_CANCEL:
        rx_conn_op_done(conn);
        break;
    case RX_OP_CLOSE:
        RX_ASSERT(conn->inflight == 1);
        conn->inflight = 0;
        conn_on_closed(reactor, conn, cqe->res);
        break;
    default:
        RX_ASSERT(false);
    }
}

/* ------------------------------------------------------------- the service */

void rx_conn_op_done(rx_conn *conn)
{
    RX_ASSERT(conn->inflight > 0);
    conn->inflight--;
    rx_conn_service(conn);
}

void rx_conn_service(rx_conn *conn)
{
    if (conn->flags & CONN_IN_SERVICE_LIST) {
        return;
    }
    conn->flags |= CONN_IN_SERVICE_LIST;
    conn->next_service = conn->reactor->service_list;
    conn->reactor->service_list = conn;
}

static void conn_submit_close(rx_conn *conn)
{
    /* Only now, with nothing in flight, may the queue's memory go: a send
     * being cancelled could still read it until its completion. */
    rx_conn_drop_queue(conn);
    struct io_uring_sqe *sqe = rx_reactor_sqe(conn->reactor);
    io_uring_prep_close_direct(sqe, conn->slot);
    io_uring_sqe_set_data64(sqe, rx_user_data(RX_OP_CLOSE, conn->generation, conn->slot));
    conn->flags |= CONN_CLOSE_SUBMITTED;
    conn->inflight++;
}

static void conn_hand_off(rx_reactor *reactor, rx_conn *conn);
static void conn_move_finish(rx_conn *conn, rx_status status);

static void conn_service_one(rx_reactor *reactor, rx_conn *conn)
{
    if (conn->flags & CONN_RELEASED) {
        if (conn->inflight == 0 && !(conn->flags & CONN_CLOSE_SUBMITTED)) {
            conn_submit_close(conn);
        }
        return;
    }
    if (conn->flags & CONN_RELEASE_QUEUED) {
        return;
    }
    if ((conn->flags & CONN_MOVING) && conn->move_target == reactor->index) {
        /* rx_conn_move_to the reactor that owns it: nothing to move. */
        conn_move_finish(conn, RX_OK);
        if (conn->flags & (CONN_RELEASE_QUEUED | CONN_RELEASED)) {
            return;
        }
    }
    bool want_recv = !(conn->flags & (CONN_PAUSED | CONN_MOVING | CONN_PEER_EOF));
    if (want_recv && !(conn->flags & CONN_RECV_ARMED)) {
        conn_arm_recv(conn);
    } else if (!want_recv && (conn->flags & CONN_RECV_ARMED) &&
               !(conn->flags & CONN_RECV_CANCELLING)) {
        conn_cancel_recv(conn);
    }
    if ((conn->flags & CONN_MOVING) && conn->inflight == 0) {
        conn_hand_off(reactor, conn);
    }
}

void rx_reactor_run_service(rx_reactor *reactor)
{
    rx_conn *list = reactor->service_list;
    reactor->service_list = NULL;
    while (list != NULL) {
        rx_conn *conn = list;
        list = conn->next_service;
        conn->flags &= (uint16_t)~CONN_IN_SERVICE_LIST;
        conn_service_one(reactor, conn);
    }
}

/* ----------------------------------------------------------------- closing */

void rx_conn_release_request(rx_conn *conn, rx_close_reason reason)
{
    RX_ASSERT(!(conn->flags & CONN_HANDED_OFF));
    if (conn->flags & (CONN_RELEASE_QUEUED | CONN_RELEASED)) {
        return;
    }
    conn->flags |= CONN_RELEASE_QUEUED;
    conn->close_reason = (uint8_t)reason;
    conn->next_release = conn->reactor->release_list;
    conn->reactor->release_list = conn;
}

static void conn_release(rx_reactor *reactor, rx_conn *conn)
{
    RX_ASSERT((conn->flags & CONN_RELEASE_QUEUED) && !(conn->flags & CONN_RELEASED));
    conn->flags = (uint16_t)((conn->flags & ~CONN_RELEASE_QUEUED) | CONN_RELEASED);
    rx_wheel_cancel(&reactor->wheel, &conn->timer);
    rx_stat_add(&reactor->stats.open_connections, -1);
    rx_stat_add(&reactor->stats.closed, 1);
    if (conn->close_reason == RX_CLOSE_WRITE_TIMEOUT) {
        rx_stat_add(&reactor->stats.write_timeouts, 1);
    }
    if (conn->flags & CONN_MOVING) {
        /* Closed before the descriptor left: the move ends here. */
        conn_move_finish(conn, RX_ERR_CLOSED);
    }
    conn->ops->on_close(conn, (rx_close_reason)conn->close_reason);
    /* Cancelled by user_data, which the kernel finds through its hash: a
     * cancel by descriptor walks every armed request of the ring, so closing
     * n connections at once (a shutdown) would cost n squared. */
    if (conn->flags & CONN_RECV_ARMED) {
        conn_cancel_op(conn, RX_OP_RECV);
    }
    if (conn->flags & CONN_SENDING) {
        conn_cancel_op(conn, RX_OP_SEND);
    }
    rx_conn_service(conn);
}

/* Releases every flagged connection. on_close may flag others; they are
 * released in the same pass (each connection is released once, so the walk
 * is bounded by the connection count). */
void rx_reactor_run_releases(rx_reactor *reactor)
{
    while (reactor->release_list != NULL) {
        rx_conn *conn = reactor->release_list;
        reactor->release_list = conn->next_release;
        conn->next_release = NULL;
        conn_release(reactor, conn);
    }
}

void rx_conn_close(rx_conn *conn)
{
    conn_assert_owner(conn);
    if (conn->flags & (CONN_RELEASE_QUEUED | CONN_RELEASED | CONN_CLOSE_REQUESTED)) {
        return;
    }
    conn->flags |= CONN_CLOSE_REQUESTED;
    conn->close_reason = RX_CLOSE_LOCAL;
    if (conn->send_queue_bytes == 0 && !(conn->flags & CONN_SENDING)) {
        rx_conn_release_request(conn, RX_CLOSE_LOCAL);
        return;
    }
    rx_conn_schedule_timer(conn);
}

void rx_conn_abort(rx_conn *conn)
{
    conn_assert_owner(conn);
    rx_conn_release_request(conn, RX_CLOSE_ABORT);
}

void rx_conn_shutdown(rx_conn *conn)
{
    if (conn->flags & (CONN_RELEASE_QUEUED | CONN_RELEASED | CONN_HANDED_OFF)) {
        return;
    }
    if (conn->flags & CONN_MOVING) {
        /* A move not yet handed off stays here: the target is stopping too. */
        rx_conn_service(conn);
        conn_move_finish(conn, RX_ERR_STATE);
        if (conn->flags & (CONN_RELEASE_QUEUED | CONN_RELEASED)) {
            return;
        }
    }
    if (conn->ops->on_shutdown != NULL) {
        conn->ops->on_shutdown(conn);
    } else {
        rx_conn_close(conn);
    }
}

/* ------------------------------------------------------- other conn calls */

void rx_conn_pause_recv(rx_conn *conn)
{
    conn_assert_owner(conn);
    conn->flags |= CONN_PAUSED;
    rx_conn_service(conn);
}

void rx_conn_resume_recv(rx_conn *conn)
{
    conn_assert_owner(conn);
    conn->flags &= (uint16_t)~CONN_PAUSED;
    rx_conn_service(conn);
}

void rx_conn_handshake_done(rx_conn *conn)
{
    conn_assert_owner(conn);
    conn->flags |= CONN_HANDSHAKE_DONE;
}

rx_status rx_conn_set_ops(rx_conn *conn, const rx_listener_ops *ops)
{
    conn_assert_owner(conn);
    if (ops == NULL || ops->on_data == NULL || ops->on_close == NULL) {
        return RX_ERR_INVALID;
    }
    conn->ops = ops;
    return RX_OK;
}

void rx_conn_set_userdata(rx_conn *conn, void *userdata)
{
    conn->userdata = userdata;
}

void *rx_conn_userdata(const rx_conn *conn)
{
    return conn->userdata;
}

int rx_conn_close_errno(const rx_conn *conn)
{
    return conn->close_reason == RX_CLOSE_ERROR ? conn->close_errno : 0;
}

rx_reactor *rx_conn_reactor(const rx_conn *conn)
{
    return conn->reactor;
}

unsigned rx_conn_reactor_index(const rx_conn *conn)
{
    return conn->reactor->index;
}

/* -------------------------------------------------------------------- moves */

static rx_status conn_move_start(rx_conn *conn, unsigned target_reactor_index, void *state,
                                 rx_move_done_fn *done)
{
    conn_assert_owner(conn);
    rx_reactor *reactor = conn->reactor;
    rx_runtime *runtime = reactor->runtime;
    if (target_reactor_index >= runtime->reactor_count || (conn->flags & CONN_MOVING)) {
        return RX_ERR_INVALID;
    }
    if (conn->flags & (CONN_CLOSE_REQUESTED | CONN_RELEASE_QUEUED | CONN_RELEASED)) {
        return RX_ERR_CLOSED;
    }
    if (reactor->shutting_down || atomic_load(&runtime->stop_requested)) {
        return RX_ERR_STATE;
    }
    conn->flags |= CONN_MOVING;
    conn->move_target = (uint8_t)target_reactor_index;
    conn->move_state = state;
    conn->move_done = done;
    rx_conn_service(conn);
    return RX_OK;
}

rx_status rx_conn_move(rx_conn *conn, unsigned target_reactor_index)
{
    conn_assert_owner(conn);
    if (target_reactor_index == conn->reactor->index) {
        return RX_ERR_INVALID;
    }
    return conn_move_start(conn, target_reactor_index, NULL, NULL);
}

rx_status rx_conn_move_to(rx_conn *conn, unsigned target_reactor_index, void *state,
                          rx_move_done_fn *done)
{
    if (done == NULL) {
        return RX_ERR_INVALID;
    }
    return conn_move_start(conn, target_reactor_index, state, done);
}

/* Ends the move on the reactor that owns conn now and tells the
 * application: done for rx_conn_move_to, on_moved for rx_conn_move (which
 * is not told of a close). The move fields are cleared first, so the
 * callback may start another move. */
static void conn_move_finish(rx_conn *conn, rx_status status)
{
    RX_ASSERT(conn->flags & CONN_MOVING);
    rx_move_done_fn *done = conn->move_done;
    void *state = conn->move_state;
    conn->flags &= (uint16_t) ~(CONN_MOVING | CONN_HANDED_OFF);
    conn->move_done = NULL;
    conn->move_state = NULL;
    if (done != NULL) {
        done(conn, state, status);
    } else if (status != RX_ERR_CLOSED && conn->ops->on_moved != NULL) {
        conn->ops->on_moved(conn);
    }
}

/* Back to normal life on reactor (after arriving, or after a failed move). */
static void conn_settle(rx_conn *conn, rx_status status)
{
    rx_conn_schedule_timer(conn);
    rx_conn_service(conn);
    if (conn->send_queue_bytes > 0) {
        rx_conn_queue_write(conn);
    }
    conn_move_finish(conn, status);
}

static void conn_move_failed(rx_reactor *reactor, rx_conn *conn, rx_status status, const char *why)
{
    rx_log(RX_LOG_WARNING, "reactor %u: move of slot %u to reactor %u failed: %s", reactor->index,
           conn->slot, conn->move_target, why);
    conn->flags &= (uint16_t)~CONN_HANDED_OFF;
    conn->reactor = reactor;
    conn_settle(conn, status);
}

/* Sends the descriptor; from the moment the SQE is written the connection
 * belongs to the target and this reactor touches it no more, unless the
 * kernel reports the send failed (then the target never saw it). */
static void conn_hand_off(rx_reactor *reactor, rx_conn *conn)
{
    rx_runtime *runtime = reactor->runtime;
    rx_reactor *target = &runtime->reactors[conn->move_target];
    if (atomic_load(&target->exited) || reactor->shutting_down) {
        conn_move_failed(reactor, conn, RX_ERR_STATE, "target stopped");
        return;
    }
    if (reactor->moves_out_pending >= LIMIT_MOVES_IN_FLIGHT_PER_REACTOR) {
        /* Each unconfirmed hand-off holds a slot here: wait for some. */
        rx_conn_service(conn);
        return;
    }
    if (conn->flags & CONN_IN_WRITE_LIST) {
        /* A callback of this service pass queued a send: the next flush
         * takes it off the write list (a moving connection does not write),
         * then the hand-off goes on. */
        rx_conn_service(conn);
        return;
    }
    RX_ASSERT(conn->inflight == 0);
    RX_ASSERT(((uintptr_t)conn & RX_USER_DATA_POINTER_MASK) == (uintptr_t)conn);
    rx_wheel_cancel(&reactor->wheel, &conn->timer);
    rx_stat_add(&reactor->stats.send_queue_bytes, -(int64_t)conn->send_queue_bytes);
    conn->flags |= CONN_HANDED_OFF;
    conn->reactor = target;
    atomic_fetch_add(&runtime->moves_in_flight, 1);
    reactor->moves_out_pending++;
    uint32_t slot = conn->slot;
    reactor->slots[slot] = (rx_conn *)((uintptr_t)conn | 1u);

    struct io_uring_sqe *sqe = rx_reactor_sqe(reactor);
    io_uring_prep_rw(IORING_OP_MSG_RING, sqe, target->ring_fd, NULL, 0, 0);
    sqe->addr = IORING_MSG_SEND_FD;
    sqe->addr3 = slot;
    sqe->file_index = IORING_FILE_INDEX_ALLOC;
    sqe->off = ((uint64_t)RX_OP_MOVE_ARRIVE << 56) | (uint64_t)(uintptr_t)conn;
    io_uring_sqe_set_data64(sqe, rx_user_data(RX_OP_MOVE_SEND, conn->generation, slot));
    reactor->misc_inflight++;
}

/* -EOVERFLOW: the target installed the descriptor but could not post its
 * completion (the kernel failed to allocate an overflow entry), so nobody
 * knows the slot it holds there. The connection cannot carry on: the
 * socket is shut down (its other reference, on the target, would keep it
 * open) and closed here with RX_CLOSE_ERROR; the target keeps one dead
 * slot until it stops. */
static void conn_move_overflowed(rx_reactor *reactor, rx_conn *conn)
{
    rx_log(RX_LOG_ERROR, "reactor %u: move of slot %u to reactor %u lost its completion: closing",
           reactor->index, conn->slot, conn->move_target);
    conn->flags &= (uint16_t)~CONN_HANDED_OFF;
    conn->reactor = reactor;
    struct io_uring_sqe *sqe = rx_reactor_sqe(reactor);
    io_uring_prep_shutdown(sqe, (int)conn->slot, SHUT_RDWR);
    sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, rx_user_data(RX_OP_CANCEL, conn->generation, conn->slot));
    conn->inflight++;
    conn->close_errno = EOVERFLOW;
    rx_conn_release_request(conn, RX_CLOSE_ERROR);
}

void rx_conn_move_sent(rx_reactor *reactor, uint32_t slot, int result)
{
    RX_ASSERT(slot < reactor->slot_count);
    uintptr_t tagged = (uintptr_t)reactor->slots[slot];
    RX_ASSERT(tagged != 0 && (tagged & 1u) != 0);
    reactor->misc_inflight--;
    RX_ASSERT(reactor->moves_out_pending > 0);
    reactor->moves_out_pending--;
    if (result >= 0) {
        reactor->slots[slot] = NULL;
        reactor->connection_count--;
        rx_stat_add(&reactor->stats.open_connections, -1);
        rx_stat_add(&reactor->stats.moves_out, 1);
        rx_slot_close(reactor, slot);
        return;
    }
    rx_conn *conn = (rx_conn *)(tagged & ~(uintptr_t)1u);
    reactor->slots[slot] = conn;
    atomic_fetch_sub(&reactor->runtime->moves_in_flight, 1);
    rx_stat_add(&reactor->stats.send_queue_bytes, conn->send_queue_bytes);
    if (result == -EOVERFLOW) {
        conn_move_overflowed(reactor, conn);
    } else if (result == -ENFILE || result == -EMFILE) {
        conn_move_failed(reactor, conn, RX_ERR_FULL, "target connection table full");
    } else {
        conn_move_failed(reactor, conn, RX_ERR_SYSTEM, strerror(-result));
    }
}

void rx_conn_move_arrived(rx_reactor *reactor, rx_conn *conn, int result)
{
    RX_ASSERT(result >= 0);
    RX_ASSERT(conn->reactor == reactor && (conn->flags & CONN_HANDED_OFF));
    conn_adopt(reactor, conn, result);
    conn->flags &= (uint16_t)~CONN_HANDED_OFF;
    atomic_fetch_sub(&reactor->runtime->moves_in_flight, 1);
    rx_stat_add(&reactor->stats.moves_in, 1);
    rx_stat_add(&reactor->stats.send_queue_bytes, conn->send_queue_bytes);
    conn_settle(conn, RX_OK);
    if (reactor->shutting_down) {
        rx_conn_shutdown(conn);
    }
}
