/*
 * test_housekeeping.c: rx_options.on_housekeeping's schedule on a running
 * reactor (one reactor, LIMIT_REACTOR_HOUSEKEEPING_MS periods):
 *
 * - a reactor that has handled no completion since it started is never
 *   called;
 * - after a message (a completion), it is called on its own thread once
 *   the period has passed, with idle false while messages keep arriving
 *   within each period, and then exactly once with idle true;
 * - after that idle call it stays quiet: no further calls while nothing
 *   arrives, however long;
 * - new work arms it again, and the cycle repeats.
 */
#include <stdatomic.h>
#include <unistd.h>

#include "proto/limits.h"
#include "server/runtime/rx.h"
#include "tests/harness.h"
#include "tests/runtime/one_reactor.h"

#define PERIOD_MS LIMIT_REACTOR_HOUSEKEEPING_MS

static atomic_uint busy_calls, idle_calls, off_reactor_calls, wrong_index_calls;
static atomic_ullong last_call_ms;
static atomic_uint probes;

static void on_housekeeping(void *context, unsigned reactor_index, bool idle)
{
    if (context != &busy_calls)
        atomic_fetch_add(&wrong_index_calls, 1);
    if (rx_reactor_current() == NULL)
        atomic_fetch_add(&off_reactor_calls, 1);
    if (reactor_index != 0)
        atomic_fetch_add(&wrong_index_calls, 1);
    atomic_fetch_add(idle ? &idle_calls : &busy_calls, 1);
    atomic_store(&last_call_ms, harness_now_ms());
}

static void probe_on_reactor(const rx_message *message)
{
    (void)message;
    atomic_fetch_add(&probes, 1);
}

static void post_probe(rx_producer *producer)
{
    one_reactor_run(producer, probe_on_reactor, &probes);
}

/* Waits until the idle call has come (bounded). */
static bool wait_idle_calls(unsigned target)
{
    unsigned long long deadline = harness_now_ms() + 4u * PERIOD_MS;
    while (atomic_load(&idle_calls) < target && harness_now_ms() < deadline)
        usleep(2000);
    return atomic_load(&idle_calls) >= target;
}

static void test_schedule(void)
{
    rx_options options;
    rx_options_init(&options);
    options.on_housekeeping = on_housekeeping;
    options.housekeeping_context = &busy_calls;
    rx_producer *producer;
    rx_runtime *runtime = one_reactor_start(&options, &producer);
    if (runtime == NULL)
        return;

    /* Started, nothing handled: no call within two periods. */
    usleep(2u * PERIOD_MS * 1000u);
    CHECK(atomic_load(&busy_calls) == 0 && atomic_load(&idle_calls) == 0);

    /* Busy for three periods: a message every quarter period. */
    unsigned long long busy_start = harness_now_ms();
    while (harness_now_ms() < busy_start + 3u * PERIOD_MS) {
        post_probe(producer);
        usleep(PERIOD_MS * 1000u / 4u);
    }
    unsigned busy_seen = atomic_load(&busy_calls);
    CHECK(busy_seen >= 2);                       /* about one per period */
    CHECK(busy_seen <= 4);                       /* not one per message */
    CHECK(atomic_load(&idle_calls) == 0);        /* never idle meanwhile */

    /* Then quiet: exactly one idle call, after at least a period. */
    unsigned long long quiet_start = harness_now_ms();
    CHECK(wait_idle_calls(1));
    CHECK(atomic_load(&last_call_ms) >= quiet_start + PERIOD_MS / 2u);
    unsigned busy_after = atomic_load(&busy_calls);
    usleep(3u * PERIOD_MS * 1000u);
    CHECK(atomic_load(&idle_calls) == 1);
    CHECK(atomic_load(&busy_calls) == busy_after);

    /* One more message arms it again: one more idle call follows. */
    post_probe(producer);
    CHECK(wait_idle_calls(2));
    usleep(2u * PERIOD_MS * 1000u);
    CHECK(atomic_load(&idle_calls) == 2);

    CHECK(atomic_load(&off_reactor_calls) == 0);
    CHECK(atomic_load(&wrong_index_calls) == 0);
    one_reactor_stop(runtime);
}

int main(int argc, char **argv)
{
    harness_run("schedule", test_schedule, argc > 1 ? argv[1] : NULL);
    return harness_finish();
}
