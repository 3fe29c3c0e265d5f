/*
 * test_log.c: a reactor's log lines go through the logger thread, in order,
 * and a flood that outruns the sink is dropped and counted instead of
 * blocking the reactor: every line is either delivered or counted as
 * dropped, never lost silently.
 */
#include "server/runtime/rx.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "tests/harness.h"

#define FLOOD_LINES 20000u

static _Atomic unsigned long delivered;
static _Atomic unsigned long dropped;
static _Atomic unsigned long out_of_order;
static _Atomic bool flood_done;
static unsigned long last_sequence;

/* A slow sink (50 µs a line, like a congested pipe) that checks order. */
static void slow_hook(void *context, rx_log_level level, const char *message)
{
    (void)context;
    unsigned long count = 0;
    unsigned long sequence = 0;
    if (level == RX_LOG_WARNING && sscanf(message, "%lu log lines dropped", &count) == 1) {
        atomic_fetch_add(&dropped, count);
        return;
    }
    if (sscanf(message, "flood line %lu", &sequence) == 1) {
        if (atomic_load(&delivered) > 0 && sequence <= last_sequence) {
            atomic_fetch_add(&out_of_order, 1);
        }
        last_sequence = sequence;
        atomic_fetch_add(&delivered, 1);
        usleep(50);
    }
}

static void flood(const rx_message *message)
{
    (void)message;
    for (unsigned i = 0; i < FLOOD_LINES; i++) {
        rx_log(RX_LOG_INFO, "flood line %u from a reactor", i);
    }
    atomic_store(&flood_done, true);
}

static void test_flood_is_bounded_and_accounted(void)
{
    rx_options options;
    rx_options_init(&options);
    options.reactors = 1;
    options.handle_signals = false;
    rx_log_set_hook(slow_hook, NULL);
    rx_runtime *runtime = rx_runtime_create(&options);
    CHECK(runtime != NULL);
    rx_producer *producer = rx_producer_create(runtime);
    CHECK(producer != NULL);
    CHECK(rx_runtime_start(runtime) == RX_OK);
    rx_message message = {.function = flood};
    CHECK(rx_producer_post(producer, 0, &message) == RX_OK);
    /* The reactor finishes its 20,000 lines long before a 50 µs-a-line sink
     * could have taken them all (that would be a full second). */
    for (unsigned i = 0; i < 5000 && !atomic_load(&flood_done); i++) {
        usleep(1000);
    }
    CHECK(atomic_load(&flood_done));
    CHECK(atomic_load(&delivered) < FLOOD_LINES);
    /* Let the logger catch up before the reactor logs its shutdown, so only
     * flood lines can have been dropped. */
    for (unsigned i = 0; i < 5000; i++) {
        if (atomic_load(&delivered) + atomic_load(&dropped) >= FLOOD_LINES) {
            break;
        }
        usleep(1000);
    }
    rx_runtime_stop(runtime);
    rx_runtime_wait(runtime); /* the logger drains what is queued */
    rx_runtime_destroy(runtime);
    rx_log_set_hook(NULL, NULL);
    fprintf(stderr, "delivered %lu, dropped %lu\n", atomic_load(&delivered), atomic_load(&dropped));
    CHECK(atomic_load(&delivered) + atomic_load(&dropped) == FLOOD_LINES);
    CHECK(atomic_load(&dropped) > 0);
    CHECK(atomic_load(&delivered) > 0);
    CHECK(atomic_load(&out_of_order) == 0);
}

int main(void)
{
    harness_run("flood_is_bounded_and_accounted", test_flood_is_bounded_and_accounted, NULL);
    return harness_finish();
}
