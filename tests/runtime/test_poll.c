/*
 * test_poll.c: rx_poll_add / rx_poll_cancel on a running reactor. A poll
 * for POLLOUT on a pipe's write end fires at once; a poll for POLLIN on an
 * eventfd fires only once the eventfd is written, exactly once, on the
 * reactor that added it; a cancelled poll never fires even when its
 * eventfd is written; a poll still pending when the runtime stops is
 * dropped without a callback (ASan would report its record leaking); and
 * rx_poll_add off a reactor refuses.
 */
#include <poll.h>
#include <stdatomic.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "server/runtime/rx.h"
#include "tests/harness.h"
#include "tests/runtime/one_reactor.h"

#define WAIT_MS 10000u

typedef struct fired {
    atomic_uint count;
    atomic_int events;
    atomic_bool on_reactor;
} fired;

static fired readable, writable, cancelled, pending;
static int readable_fd = -1, cancelled_fd = -1, pending_fd = -1, pipe_fds[2] = {-1, -1};
static atomic_bool armed;
static atomic_uint probes;

static void on_ready(void *argument, int events)
{
    fired *record = argument;
    atomic_store(&record->events, events);
    atomic_store(&record->on_reactor, rx_reactor_current() != NULL);
    atomic_fetch_add(&record->count, 1);
}

static void arm_on_reactor(const rx_message *message)
{
    (void)message;
    bool ok = rx_poll_add(readable_fd, POLLIN, on_ready, &readable) != NULL &&
              rx_poll_add(pipe_fds[1], POLLOUT, on_ready, &writable) != NULL &&
              rx_poll_add(pending_fd, POLLIN, on_ready, &pending) != NULL;
    rx_poll *doomed = rx_poll_add(cancelled_fd, POLLIN, on_ready, &cancelled);
    rx_poll_cancel(doomed);
    atomic_store(&armed, ok && doomed != NULL);
}

static void probe_on_reactor(const rx_message *message)
{
    (void)message;
    atomic_fetch_add(&probes, 1);
}

static bool wait_for(atomic_uint *counter, unsigned target)
{
    unsigned long long deadline = harness_now_ms() + WAIT_MS;
    while (atomic_load(counter) < target && harness_now_ms() < deadline) {
        usleep(1000);
    }
    return atomic_load(counter) >= target;
}

static void test_poll(void)
{
    readable_fd = eventfd(0, EFD_NONBLOCK);
    cancelled_fd = eventfd(0, EFD_NONBLOCK);
    pending_fd = eventfd(0, EFD_NONBLOCK);
    CHECK(readable_fd >= 0 && cancelled_fd >= 0 && pending_fd >= 0 && pipe(pipe_fds) == 0);
    CHECK(rx_poll_add(readable_fd, POLLIN, on_ready, &readable) == NULL); /* not a reactor */

    rx_options options;
    rx_options_init(&options);
    rx_producer *producer;
    rx_runtime *runtime = one_reactor_start(&options, &producer);
    if (runtime == NULL)
        return;
    rx_message arm = {.function = arm_on_reactor};
    CHECK(rx_producer_post(producer, 0, &arm) == RX_OK);
    unsigned long long deadline = harness_now_ms() + WAIT_MS;
    while (!atomic_load(&armed) && harness_now_ms() < deadline) {
        usleep(1000);
    }
    CHECK(atomic_load(&armed));

    CHECK(wait_for(&writable.count, 1));
    CHECK(atomic_load(&writable.events) & POLLOUT);
    CHECK(atomic_load(&readable.count) == 0); /* nothing written yet */

    uint64_t one = 1;
    CHECK(write(cancelled_fd, &one, sizeof one) == sizeof one);
    CHECK(write(readable_fd, &one, sizeof one) == sizeof one);
    CHECK(wait_for(&readable.count, 1));
    CHECK(atomic_load(&readable.events) & POLLIN);
    CHECK(atomic_load(&readable.on_reactor));
    /* A few more loop iterations: a cancelled poll would have fired by now. */
    rx_message probe = {.function = probe_on_reactor};
    for (unsigned i = 1; i <= 3; i++) {
        CHECK(rx_producer_post(producer, 0, &probe) == RX_OK);
        CHECK(wait_for(&probes, i));
    }
    CHECK(atomic_load(&readable.count) == 1);
    CHECK(atomic_load(&writable.count) == 1);
    CHECK(atomic_load(&cancelled.count) == 0);
    CHECK(atomic_load(&pending.count) == 0);

    one_reactor_stop(runtime);
    CHECK(atomic_load(&pending.count) == 0);
    close(readable_fd);
    close(cancelled_fd);
    close(pending_fd);
    close(pipe_fds[0]);
    close(pipe_fds[1]);
}

int main(int argc, char **argv)
{
    harness_run("poll", test_poll, argc > 1 ? argv[1] : NULL);
    return harness_finish();
}
