/*
 * poll.c: one-shot readiness polls of descriptors the runtime does not own,
 * on the calling reactor's ring (rx_poll_add / rx_poll_cancel in rx.h).
 *
 * Each poll is a small record on the reactor's list, its address the
 * request's user_data. A cancelled poll stays on the list (callback
 * cleared) until the kernel completes the original request, so a late
 * completion never touches freed memory.
 */
#include <errno.h>
#include <stdlib.h>

#include "server/runtime/internal.h"

struct rx_poll {
    struct rx_poll *next;
    struct rx_poll *previous;
    rx_reactor *reactor;
    rx_poll_fn *callback; /* NULL once cancelled */
    void *argument;
};

static uint64_t poll_user_data(enum rx_op op, const rx_poll *poll)
{
    return ((uint64_t)op << 56) | ((uint64_t)(uintptr_t)poll & RX_USER_DATA_POINTER_MASK);
}

static void poll_unlink_free(rx_poll *poll)
{
    if (poll->previous != NULL) {
        poll->previous->next = poll->next;
    } else {
        poll->reactor->polls = poll->next;
    }
    if (poll->next != NULL) {
        poll->next->previous = poll->previous;
    }
    free(poll);
}

rx_poll *rx_poll_add(int fd, unsigned events, rx_poll_fn *callback, void *argument)
{
    rx_reactor *reactor = rx_reactor_current();
    if (reactor == NULL || callback == NULL || fd < 0) {
        return NULL;
    }
    rx_poll *poll = calloc(1, sizeof *poll);
    if (poll == NULL) {
        return NULL;
    }
    poll->reactor = reactor;
    poll->callback = callback;
    poll->argument = argument;
    poll->next = reactor->polls;
    if (poll->next != NULL) {
        poll->next->previous = poll;
    }
    reactor->polls = poll;
    struct io_uring_sqe *sqe = rx_reactor_sqe(reactor);
    io_uring_prep_poll_add(sqe, fd, events);
    io_uring_sqe_set_data64(sqe, poll_user_data(RX_OP_POLL, poll));
    return poll;
}

void rx_poll_cancel(rx_poll *poll)
{
    if (poll == NULL || poll->callback == NULL) {
        return;
    }
    RX_ASSERT(poll->reactor == rx_reactor_current());
    poll->callback = NULL;
    struct io_uring_sqe *sqe = rx_reactor_sqe(poll->reactor);
    io_uring_prep_poll_remove(sqe, poll_user_data(RX_OP_POLL, poll));
    io_uring_sqe_set_data64(sqe, poll_user_data(RX_OP_POLL_CANCEL, poll));
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
}

void rx_poll_on_cqe(rx_reactor *reactor, enum rx_op op, uint64_t user_data, int result)
{
    (void)reactor;
    if (op == RX_OP_POLL_CANCEL) {
        return; /* the remove failed: the poll had completed already */
    }
    rx_poll *poll = (rx_poll *)(uintptr_t)(user_data & RX_USER_DATA_POINTER_MASK);
    rx_poll_fn *callback = poll->callback;
    void *argument = poll->argument;
    poll_unlink_free(poll);
    if (callback != NULL) {
        callback(argument, result);
    }
}

void rx_reactor_polls_free_all(rx_reactor *reactor)
{
    while (reactor->polls != NULL) {
        poll_unlink_free(reactor->polls);
    }
}
