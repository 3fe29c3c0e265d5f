/*
 * test_timer_wheel.c: the hashed timer wheel on its own, with a fake clock:
 * arming, cancelling, firing order, never early and at most one slot late,
 * timers longer than a lap, and callbacks that re-arm.
 */
#include "server/runtime/timer_wheel.h"
#include "tests/harness.h"

#define SLOT_MS LIMIT_TIMER_SLOT_MS

typedef struct fired_log {
    int order[64];
    uint64_t at_ms[64];
    unsigned count;
    uint64_t now_ms;
} fired_log;

static fired_log log_entries;

typedef struct test_timer {
    rx_timer timer;
    int id;
} test_timer;

static void record(rx_timer *timer, void *argument)
{
    (void)argument;
    test_timer *entry = (test_timer *)timer;
    if (log_entries.count < 64) {
        log_entries.order[log_entries.count] = entry->id;
        log_entries.at_ms[log_entries.count] = log_entries.now_ms;
        log_entries.count++;
    }
}

static void advance_to(rx_wheel *wheel, uint64_t now_ms)
{
    log_entries.now_ms = now_ms;
    (void)rx_wheel_advance(wheel, now_ms);
}

static void test_arm_and_fire(void)
{
    rx_wheel wheel;
    uint64_t start = 100000;
    rx_wheel_init(&wheel, SLOT_MS, start);
    memset(&log_entries, 0, sizeof log_entries);
    test_timer timer = {.id = 1};
    rx_timer_init(&timer.timer, record, NULL);
    rx_wheel_arm(&wheel, &timer.timer, start + 300);
    CHECK(rx_timer_armed(&timer.timer));
    CHECK(rx_wheel_next_wake_ms(&wheel) != UINT64_MAX);
    /* Step 1 ms at a time: it must fire after 300 ms, within one slot. */
    for (uint64_t t = start; t <= start + 300 + 2 * SLOT_MS; t++) {
        advance_to(&wheel, t);
    }
    CHECK(log_entries.count == 1);
    CHECK(log_entries.at_ms[0] >= start + 300);
    CHECK(log_entries.at_ms[0] <= start + 300 + SLOT_MS);
    CHECK(!rx_timer_armed(&timer.timer));
    CHECK(rx_wheel_next_wake_ms(&wheel) == UINT64_MAX);
}

static void test_cancel(void)
{
    rx_wheel wheel;
    rx_wheel_init(&wheel, SLOT_MS, 0);
    memset(&log_entries, 0, sizeof log_entries);
    test_timer a = {.id = 1}, b = {.id = 2};
    rx_timer_init(&a.timer, record, NULL);
    rx_timer_init(&b.timer, record, NULL);
    rx_wheel_arm(&wheel, &a.timer, 200);
    rx_wheel_arm(&wheel, &b.timer, 200);
    rx_wheel_cancel(&wheel, &a.timer);
    rx_wheel_cancel(&wheel, &a.timer); /* idempotent */
    CHECK(!rx_timer_armed(&a.timer));
    advance_to(&wheel, 10000);
    CHECK(log_entries.count == 1);
    CHECK(log_entries.order[0] == 2);
}

static void test_fire_order(void)
{
    rx_wheel wheel;
    rx_wheel_init(&wheel, SLOT_MS, 0);
    memset(&log_entries, 0, sizeof log_entries);
    test_timer timers[5];
    uint64_t deadlines[5] = {900, 100, 500, 2000, 300};
    for (int i = 0; i < 5; i++) {
        timers[i].id = i;
        rx_timer_init(&timers[i].timer, record, NULL);
        rx_wheel_arm(&wheel, &timers[i].timer, deadlines[i]);
    }
    /* Re-arming moves a timer: 0 now fires last. */
    rx_wheel_arm(&wheel, &timers[0].timer, 3000);
    for (uint64_t t = 0; t <= 4000; t += 10) {
        advance_to(&wheel, t);
    }
    int expected[5] = {1, 4, 2, 3, 0};
    CHECK(log_entries.count == 5);
    for (int i = 0; i < 5; i++) {
        CHECK(log_entries.order[i] == expected[i]);
    }
}

static void test_long_timer_laps(void)
{
    rx_wheel wheel;
    rx_wheel_init(&wheel, SLOT_MS, 0);
    memset(&log_entries, 0, sizeof log_entries);
    uint64_t lap_ms = SLOT_MS * LIMIT_TIMER_SLOTS;
    test_timer far = {.id = 7}, near = {.id = 8};
    rx_timer_init(&far.timer, record, NULL);
    rx_timer_init(&near.timer, record, NULL);
    /* Same slot, three laps apart. */
    rx_wheel_arm(&wheel, &far.timer, 3 * lap_ms + 50);
    rx_wheel_arm(&wheel, &near.timer, 50);
    for (uint64_t t = 0; t < 3 * lap_ms; t += 7) {
        advance_to(&wheel, t);
    }
    CHECK(log_entries.count == 1 && log_entries.order[0] == 8);
    CHECK(rx_timer_armed(&far.timer));
    for (uint64_t t = 3 * lap_ms; t <= 3 * lap_ms + 50 + 2 * SLOT_MS; t += 7) {
        advance_to(&wheel, t);
    }
    CHECK(log_entries.count == 2 && log_entries.order[1] == 7);
    CHECK(log_entries.at_ms[1] >= 3 * lap_ms + 50);
    CHECK(log_entries.at_ms[1] <= 3 * lap_ms + 50 + SLOT_MS + 7);
}

static void test_big_jump(void)
{
    /* A stalled loop that wakes many laps later fires everything due. */
    rx_wheel wheel;
    rx_wheel_init(&wheel, SLOT_MS, 0);
    memset(&log_entries, 0, sizeof log_entries);
    test_timer timers[3];
    for (int i = 0; i < 3; i++) {
        timers[i].id = i;
        rx_timer_init(&timers[i].timer, record, NULL);
        rx_wheel_arm(&wheel, &timers[i].timer, (uint64_t)(i + 1) * 5000);
    }
    advance_to(&wheel, 12000);
    CHECK(log_entries.count == 2);
    advance_to(&wheel, 100000);
    CHECK(log_entries.count == 3);
}

static rx_wheel *rearm_wheel;
static unsigned rearm_count;

static void rearm_self(rx_timer *timer, void *argument)
{
    (void)argument;
    rearm_count++;
    if (rearm_count < 5) {
        rx_wheel_arm(rearm_wheel, timer, log_entries.now_ms);
    }
}

static void test_rearm_from_callback(void)
{
    rx_wheel wheel;
    rx_wheel_init(&wheel, SLOT_MS, 0);
    rearm_wheel = &wheel;
    rearm_count = 0;
    rx_timer timer;
    rx_timer_init(&timer, rearm_self, NULL);
    rx_wheel_arm(&wheel, &timer, 0);
    /* A timer re-armed for "now" fires on the next tick, not in a loop. */
    advance_to(&wheel, SLOT_MS);
    CHECK(rearm_count == 1);
    for (uint64_t t = SLOT_MS; t <= 20 * SLOT_MS; t += SLOT_MS) {
        advance_to(&wheel, t);
    }
    CHECK(rearm_count == 5);
    CHECK(!rx_timer_armed(&timer));
}

int main(int argc, char **argv)
{
    const char *filter = argc > 1 ? argv[1] : NULL;
    harness_run("arm_and_fire", test_arm_and_fire, filter);
    harness_run("cancel", test_cancel, filter);
    harness_run("fire_order", test_fire_order, filter);
    harness_run("long_timer_laps", test_long_timer_laps, filter);
    harness_run("big_jump", test_big_jump, filter);
    harness_run("rearm_from_callback", test_rearm_from_callback, filter);
    return harness_finish();
}
