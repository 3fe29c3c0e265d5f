/*
 * timer_wheel.c: the hashed timer wheel behind rx_timer.
 *
 * Why a wheel: a reactor holds tens of thousands of connections, each with a
 * timer that is re-armed constantly (idle, write, handshake). A heap would
 * cost O(log n) per re-arm; the wheel costs O(1) and scans each slot once per
 * tick. Connection timers re-arm lazily (their deadline moves forward in the
 * connection, and the timer re-arms only when it fires early), so the scan
 * stays cheap.
 */
#include "server/runtime/timer_wheel.h"

#include <assert.h>

static void list_init(rx_timer *sentinel)
{
    sentinel->next = sentinel;
    sentinel->previous = sentinel;
}

static void list_insert_tail(rx_timer *sentinel, rx_timer *timer)
{
    timer->previous = sentinel->previous;
    timer->next = sentinel;
    sentinel->previous->next = timer;
    sentinel->previous = timer;
}

static void list_unlink(rx_timer *timer)
{
    timer->previous->next = timer->next;
    timer->next->previous = timer->previous;
    timer->next = NULL;
    timer->previous = NULL;
}

void rx_wheel_init(rx_wheel *wheel, uint64_t slot_ms, uint64_t now_ms)
{
    assert(slot_ms > 0);
    for (size_t i = 0; i < LIMIT_TIMER_SLOTS; i++) {
        list_init(&wheel->slots[i]);
    }
    wheel->slot_ms = slot_ms;
    wheel->next_tick = now_ms / slot_ms;
    wheel->armed_count = 0;
}

static void wheel_place(rx_wheel *wheel, rx_timer *timer)
{
    uint64_t tick = timer->deadline_ms / wheel->slot_ms;
    if (tick < wheel->next_tick) {
        tick = wheel->next_tick;
    }
    list_insert_tail(&wheel->slots[tick % LIMIT_TIMER_SLOTS], timer);
}

void rx_wheel_arm(rx_wheel *wheel, rx_timer *timer, uint64_t deadline_ms)
{
    assert(timer->callback != NULL);
    if (timer->next != NULL) {
        list_unlink(timer);
        wheel->armed_count--;
    }
    timer->deadline_ms = deadline_ms;
    wheel_place(wheel, timer);
    wheel->armed_count++;
}

void rx_wheel_cancel(rx_wheel *wheel, rx_timer *timer)
{
    if (timer->next == NULL) {
        return;
    }
    assert(wheel->armed_count > 0);
    list_unlink(timer);
    wheel->armed_count--;
}

/* Fires the due entries of one slot. The slot is detached first so that
 * callbacks arming timers (even into this slot) cannot make the walk loop. */
static size_t wheel_fire_slot(rx_wheel *wheel, size_t slot, uint64_t last_due_tick)
{
    rx_timer pending;
    rx_timer *sentinel = &wheel->slots[slot];
    if (sentinel->next == sentinel) {
        return 0;
    }
    list_init(&pending);
    pending.next = sentinel->next;
    pending.previous = sentinel->previous;
    pending.next->previous = &pending;
    pending.previous->next = &pending;
    list_init(sentinel);

    size_t fired = 0;
    while (pending.next != &pending) {
        rx_timer *timer = pending.next;
        list_unlink(timer);
        if (timer->deadline_ms / wheel->slot_ms > last_due_tick) {
            list_insert_tail(sentinel, timer);
            continue;
        }
        wheel->armed_count--;
        fired++;
        timer->callback(timer, timer->argument);
    }
    return fired;
}

size_t rx_wheel_advance(rx_wheel *wheel, uint64_t now_ms)
{
    uint64_t elapsed_ticks = now_ms / wheel->slot_ms;
    if (elapsed_ticks <= wheel->next_tick) {
        return 0;
    }
    /* Ticks next_tick .. last_due_tick have fully elapsed. */
    uint64_t last_due_tick = elapsed_ticks - 1;
    uint64_t first_tick = wheel->next_tick;
    uint64_t count = last_due_tick - first_tick + 1;
    if (count > LIMIT_TIMER_SLOTS) {
        count = LIMIT_TIMER_SLOTS;
    }
    /* Timers armed from callbacks land at or after the new next_tick. */
    wheel->next_tick = last_due_tick + 1;
    size_t fired = 0;
    for (uint64_t i = 0; i < count; i++) {
        fired += wheel_fire_slot(wheel, (first_tick + i) % LIMIT_TIMER_SLOTS, last_due_tick);
    }
    return fired;
}

uint64_t rx_wheel_next_wake_ms(const rx_wheel *wheel)
{
    if (wheel->armed_count == 0) {
        return UINT64_MAX;
    }
    return (wheel->next_tick + 1) * wheel->slot_ms;
}
