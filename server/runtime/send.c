/*
 * send.c: per-connection send queues and the once-per-iteration flush.
 *
 * A queue is a list of segments: owned bytes (copied in; small sends
 * coalesce into the tail segment) or windows of shared, reference-counted
 * buffers (no copy). Sends never write directly: they queue and put the
 * connection on the reactor's pending-writes list, and the loop flushes that
 * list once per iteration, so a burst of small sends becomes one gathered
 * sendmsg (up to LIMIT_SEND_IOVECS segments) with one send in flight per
 * connection. A short write simply leaves the rest queued for the next flush.
 *
 * Bounds: crossing send_queue_bytes tells the app to stop producing
 * (on_backpressure true), draining below half of it tells it to resume, and
 * a send that would pass send_queue_bytes_hard is refused and the connection
 * aborted. A queue that drains nothing for write_timeout_ms closes the
 * connection (conn.c's timer).
 */
#include "server/runtime/internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* A segment queued behind others is at least this big (header included) so
 * that a burst of small stanzas coalesces into few segments and few iovecs.
 * A send into an empty queue gets a segment of its own size: most sends
 * leave in the same loop iteration, and a connection that holds one small
 * unsent stanza (a slow reader among thousands receiving a broadcast)
 * should not pin a whole 4 KiB for it. */
#define RX_SEGMENT_BYTES 4096u

static bool conn_accepts_sends(const rx_conn *conn)
{
    return !(conn->flags & (CONN_CLOSE_REQUESTED | CONN_RELEASE_QUEUED | CONN_RELEASED));
}

void rx_conn_queue_write(rx_conn *conn)
{
    if (conn->flags & CONN_IN_WRITE_LIST) {
        return;
    }
    conn->flags |= CONN_IN_WRITE_LIST;
    conn->next_write = conn->reactor->write_list;
    conn->reactor->write_list = conn;
}

static void segment_append(rx_conn *conn, rx_segment *segment)
{
    segment->next = NULL;
    if (conn->send_tail == NULL) {
        conn->send_head = segment;
    } else {
        conn->send_tail->next = segment;
    }
    conn->send_tail = segment;
}

/* Accounts len newly queued bytes; may call on_backpressure(true). */
static void queue_grew(rx_conn *conn, size_t len)
{
    rx_reactor *reactor = conn->reactor;
    bool was_empty = conn->send_queue_bytes == 0;
    conn->send_queue_bytes += (uint32_t)len;
    rx_stat_add(&reactor->stats.send_queue_bytes, (int64_t)len);
    if (was_empty) {
        conn->last_drain_ms = reactor->now_ms;
        rx_conn_schedule_timer(conn);
    }
    rx_conn_queue_write(conn);
    if (conn->send_queue_bytes > reactor->runtime->options.send_queue_bytes &&
        !(conn->flags & CONN_BACKPRESSURE)) {
        conn->flags |= CONN_BACKPRESSURE;
        if (conn->ops->on_backpressure != NULL) {
            conn->ops->on_backpressure(conn, true);
        }
    }
}

/* RX_OK when len more bytes fit; otherwise refuses (and aborts past the hard
 * cap, as proto/limits.h promises). */
static rx_status queue_admit(rx_conn *conn, size_t len)
{
    RX_ASSERT(conn->reactor == rx_reactor_current());
    if (!conn_accepts_sends(conn)) {
        return RX_ERR_CLOSED;
    }
    if (len > conn->reactor->runtime->options.send_queue_bytes_hard ||
        conn->send_queue_bytes + len > conn->reactor->runtime->options.send_queue_bytes_hard) {
        rx_conn_release_request(conn, RX_CLOSE_SEND_OVERFLOW);
        return RX_ERR_FULL;
    }
    return RX_OK;
}

rx_status rx_conn_send(rx_conn *conn, const void *bytes, size_t len)
{
    rx_status status = queue_admit(conn, len);
    if (status != RX_OK || len == 0) {
        return status;
    }
    rx_segment *tail = conn->send_tail;
    if (tail != NULL && tail->shared == NULL && tail->room >= len) {
        memcpy((uint8_t *)tail->data + tail->length, bytes, len);
        tail->length += (uint32_t)len;
        tail->room -= (uint32_t)len;
        queue_grew(conn, len);
        return RX_OK;
    }
    size_t capacity = len;
    if (tail != NULL && capacity < RX_SEGMENT_BYTES - sizeof(rx_segment)) {
        capacity = RX_SEGMENT_BYTES - sizeof(rx_segment);
    }
    rx_segment *segment = malloc(sizeof *segment + capacity);
    if (segment == NULL) {
        return RX_ERR_NOMEM;
    }
    segment->shared = NULL;
    segment->data = segment->storage;
    segment->length = (uint32_t)len;
    segment->room = (uint32_t)(capacity - len);
    memcpy(segment->storage, bytes, len);
    segment_append(conn, segment);
    queue_grew(conn, len);
    return RX_OK;
}

rx_status rx_conn_send_shared(rx_conn *conn, rx_shared_buf *shared, size_t offset, size_t len)
{
    if (offset > shared->length || len > shared->length - offset) {
        return RX_ERR_INVALID;
    }
    rx_status status = queue_admit(conn, len);
    if (status != RX_OK || len == 0) {
        return status;
    }
    rx_segment *segment = malloc(sizeof *segment);
    if (segment == NULL) {
        return RX_ERR_NOMEM;
    }
    rx_shared_buf_retain(shared);
    segment->shared = shared;
    segment->data = shared->bytes + offset;
    segment->length = (uint32_t)len;
    segment->room = 0;
    segment_append(conn, segment);
    queue_grew(conn, len);
    return RX_OK;
}

size_t rx_conn_send_queue_bytes(const rx_conn *conn)
{
    return conn->send_queue_bytes;
}

static void segment_free(rx_segment *segment)
{
    if (segment->shared != NULL) {
        rx_shared_buf_release(segment->shared);
    }
    free(segment);
}

void rx_conn_drop_queue(rx_conn *conn)
{
    while (conn->send_head != NULL) {
        rx_segment *segment = conn->send_head;
        conn->send_head = segment->next;
        segment_free(segment);
    }
    conn->send_tail = NULL;
    rx_stat_add(&conn->reactor->stats.send_queue_bytes, -(int64_t)conn->send_queue_bytes);
    conn->send_queue_bytes = 0;
}

/* ------------------------------------------------------------------- flush */

static rx_send_context *send_context_get(rx_reactor *reactor)
{
    rx_send_context *context = reactor->free_send_contexts;
    if (context != NULL) {
        reactor->free_send_contexts = context->next_free;
        return context;
    }
    return malloc(sizeof *context);
}

static void send_context_put(rx_reactor *reactor, rx_send_context *context)
{
    context->next_free = reactor->free_send_contexts;
    reactor->free_send_contexts = context;
}

void rx_reactor_free_send_contexts(rx_reactor *reactor)
{
    while (reactor->free_send_contexts != NULL) {
        rx_send_context *next = reactor->free_send_contexts->next_free;
        free(reactor->free_send_contexts);
        reactor->free_send_contexts = next;
    }
}

/* One SQE per connection: a plain send for one segment, a gathered sendmsg
 * on the fixed file for several. */
static void conn_start_send(rx_reactor *reactor, rx_conn *conn)
{
    rx_segment *head = conn->send_head;
    RX_ASSERT(head != NULL && head->length > 0);
    struct io_uring_sqe *sqe;
    if (head->next == NULL) {
        sqe = rx_reactor_sqe(reactor);
        io_uring_prep_send(sqe, (int)conn->slot, head->data, head->length, MSG_NOSIGNAL);
    } else {
        rx_send_context *context = send_context_get(reactor);
        if (context == NULL) {
            /* Out of memory for the iovecs: try the first segment alone. */
            sqe = rx_reactor_sqe(reactor);
            io_uring_prep_send(sqe, (int)conn->slot, head->data, head->length, MSG_NOSIGNAL);
        } else {
            size_t count = 0;
            for (rx_segment *segment = head; segment != NULL && count < LIMIT_SEND_IOVECS;
                 segment = segment->next) {
                context->iovecs[count].iov_base = (void *)segment->data;
                context->iovecs[count].iov_len = segment->length;
                count++;
            }
            memset(&context->message, 0, sizeof context->message);
            context->message.msg_iov = context->iovecs;
            context->message.msg_iovlen = count;
            conn->send_context = context;
            sqe = rx_reactor_sqe(reactor);
            io_uring_prep_sendmsg(sqe, (int)conn->slot, &context->message, MSG_NOSIGNAL);
        }
    }
    sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, rx_user_data(RX_OP_SEND, conn->generation, conn->slot));
    conn->flags |= CONN_SENDING;
    conn->inflight++;
}

void rx_reactor_flush_writes(rx_reactor *reactor)
{
    rx_conn *list = reactor->write_list;
    reactor->write_list = NULL;
    while (list != NULL) {
        rx_conn *conn = list;
        list = conn->next_write;
        conn->flags &= (uint16_t)~CONN_IN_WRITE_LIST;
        /* A moving connection's queue travels with it and is written by the
         * target; a released one's is dropped. */
        if (conn->flags & (CONN_SENDING | CONN_MOVING | CONN_RELEASE_QUEUED | CONN_RELEASED)) {
            continue;
        }
        if (conn->send_queue_bytes == 0) {
            continue;
        }
        conn_start_send(reactor, conn);
    }
}

/* Drops sent bytes from the head of the queue. */
static void queue_consume(rx_conn *conn, size_t sent)
{
    RX_ASSERT(sent <= conn->send_queue_bytes);
    conn->send_queue_bytes -= (uint32_t)sent;
    rx_stat_add(&conn->reactor->stats.send_queue_bytes, -(int64_t)sent);
    rx_stat_add(&conn->reactor->stats.bytes_sent, (int64_t)sent);
    while (sent > 0) {
        rx_segment *segment = conn->send_head;
        RX_ASSERT(segment != NULL);
        if (sent < segment->length) {
            segment->data += sent;
            segment->length -= (uint32_t)sent;
            return;
        }
        sent -= segment->length;
        conn->send_head = segment->next;
        if (conn->send_head == NULL) {
            conn->send_tail = NULL;
        }
        segment_free(segment);
    }
}

void rx_conn_send_completed(rx_conn *conn, int result)
{
    rx_reactor *reactor = conn->reactor;
    conn->flags &= (uint16_t)~CONN_SENDING;
    if (conn->send_context != NULL) {
        send_context_put(reactor, conn->send_context);
        conn->send_context = NULL;
    }
    if (conn->flags & CONN_RELEASED) {
        return;
    }
    if (result < 0) {
        if (result != -ECANCELED) {
            rx_log(RX_LOG_DEBUG, "reactor %u: send on slot %u: %s", reactor->index, conn->slot,
                   strerror(-result));
        }
        conn->close_errno = (uint8_t)(-result < 256 ? -result : 0);
        rx_conn_release_request(conn, RX_CLOSE_ERROR);
        return;
    }
    queue_consume(conn, (size_t)result);
    if (result > 0) {
        conn->last_drain_ms = reactor->now_ms;
    }
    if ((conn->flags & CONN_BACKPRESSURE) &&
        conn->send_queue_bytes <= reactor->runtime->options.send_queue_bytes / 2) {
        conn->flags &= (uint16_t)~CONN_BACKPRESSURE;
        if (conn->ops->on_backpressure != NULL) {
            conn->ops->on_backpressure(conn, false);
        }
    }
    if (conn->send_queue_bytes > 0) {
        rx_conn_queue_write(conn);
    } else if ((conn->flags & CONN_CLOSE_REQUESTED) &&
               !(conn->flags & (CONN_RELEASE_QUEUED | CONN_RELEASED))) {
        rx_conn_release_request(conn, (rx_close_reason)conn->close_reason);
    }
}
