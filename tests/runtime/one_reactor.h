/*
 * one_reactor.h: the scaffolding of the runtime tests that drive one running
 * reactor from the test's thread through a producer (test_poll,
 * test_housekeeping, test_slow_turn). Include after tests/harness.h.
 */
#ifndef STARLING_TESTS_RUNTIME_ONE_REACTOR_H
#define STARLING_TESTS_RUNTIME_ONE_REACTOR_H

#include <stdatomic.h>
#include <unistd.h>

#include "server/runtime/rx.h"

/* How long one_reactor_run waits for the reactor. */
#define ONE_REACTOR_WAIT_MS 5000u

/* Creates and starts a runtime of one reactor from options (reactors and
 * handle_signals are set here) with one producer in *producer. NULL, with
 * a failed CHECK and nothing left running, when that could not be done. */
static inline rx_runtime *one_reactor_start(rx_options *options, rx_producer **producer)
{
    options->reactors = 1;
    options->handle_signals = false;
    rx_runtime *runtime = rx_runtime_create(options);
    *producer = runtime != NULL ? rx_producer_create(runtime) : NULL;
    bool started = *producer != NULL && rx_runtime_start(runtime) == RX_OK;
    CHECK(started);
    if (!started) {
        rx_runtime_destroy(runtime);
        return NULL;
    }
    return runtime;
}

/* Posts function to the reactor and waits (bounded) until *done moves past
 * its value before the post: function adds to it when it has run. */
static inline void one_reactor_run(rx_producer *producer, rx_message_fn *function,
                                   atomic_uint *done)
{
    rx_message message = {.function = function};
    unsigned before = atomic_load(done);
    CHECK(rx_producer_post(producer, 0, &message) == RX_OK);
    unsigned long long deadline = harness_now_ms() + ONE_REACTOR_WAIT_MS;
    while (atomic_load(done) == before && harness_now_ms() < deadline)
        usleep(1000);
    CHECK(atomic_load(done) > before);
}

/* Stops the runtime, waits for its reactor and frees it. */
static inline void one_reactor_stop(rx_runtime *runtime)
{
    rx_runtime_stop(runtime);
    rx_runtime_wait(runtime);
    rx_runtime_destroy(runtime);
}

#endif
