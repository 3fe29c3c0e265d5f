/*
 * timer_wheel.h: a hashed timer wheel (internal to the runtime).
 *
 * The wheel has LIMIT_TIMER_SLOTS slots of slot_ms each; a timer lives in the
 * slot of its deadline tick, in an intrusive circular list, so arming and
 * cancelling allocate nothing and cost O(1). A timer further away than one
 * lap stays in its slot for several laps: each entry carries its deadline
 * and is fired only on the lap it is due. A tick is processed once it has
 * fully elapsed, so timers fire at most one slot late and never early.
 */
#ifndef STARLING_SERVER_RUNTIME_TIMER_WHEEL_H
#define STARLING_SERVER_RUNTIME_TIMER_WHEEL_H

#include "proto/limits.h"
#include "server/runtime/rx.h"

typedef struct rx_wheel {
    rx_timer slots[LIMIT_TIMER_SLOTS]; /* list sentinels */
    uint64_t next_tick;                /* first tick not processed yet */
    uint64_t slot_ms;
    size_t armed_count;
} rx_wheel;

/* The wheel must not move in memory after init (sentinels point at it). */
void rx_wheel_init(rx_wheel *wheel, uint64_t slot_ms, uint64_t now_ms);
/* (Re)arms timer (borrowed until it fires or is cancelled) at deadline_ms. */
void rx_wheel_arm(rx_wheel *wheel, rx_timer *timer, uint64_t deadline_ms);
void rx_wheel_cancel(rx_wheel *wheel, rx_timer *timer);
/* Fires every timer due at now_ms, in tick order. Callbacks may arm and
 * cancel any timer. Returns how many fired. */
size_t rx_wheel_advance(rx_wheel *wheel, uint64_t now_ms);
/* When the wheel next needs advancing (the end of the next pending tick), or
 * UINT64_MAX when no timer is armed. */
uint64_t rx_wheel_next_wake_ms(const rx_wheel *wheel);

#endif
