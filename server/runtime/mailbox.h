/*
 * mailbox.h: a bounded single-producer single-consumer ring of rx_message
 * (internal to the runtime).
 *
 * One mailbox exists per ordered pair (sender, receiver), so no two threads
 * ever push into the same ring and no lock is needed: the producer publishes
 * with a release store of tail, the consumer with a release store of head,
 * and each side reads the other's index with acquire. Each side caches the
 * other's index to avoid touching the shared cache line on every call.
 */
#ifndef STARLING_SERVER_RUNTIME_MAILBOX_H
#define STARLING_SERVER_RUNTIME_MAILBOX_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "server/runtime/rx.h"

typedef struct rx_mailbox {
    alignas(64) _Atomic uint32_t head; /* written by the consumer */
    uint32_t tail_cached;              /* consumer's copy of tail */
    alignas(64) _Atomic uint32_t tail; /* written by the producer */
    uint32_t head_cached;              /* producer's copy of head */
    alignas(64) uint32_t mask;
    rx_message messages[];
} rx_mailbox;

/* capacity must be a power of two. Returns an owned mailbox or NULL. */
rx_mailbox *rx_mailbox_create(uint32_t capacity);
void rx_mailbox_destroy(rx_mailbox *mailbox);
/* Producer side: copies message in; false when full. */
bool rx_mailbox_push(rx_mailbox *mailbox, const rx_message *message);
/* Consumer side: copies the oldest message out; false when empty. */
bool rx_mailbox_pop(rx_mailbox *mailbox, rx_message *message);

#endif
