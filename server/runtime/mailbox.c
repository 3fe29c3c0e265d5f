/*
 * mailbox.c: the SPSC ring behind reactor-to-reactor messages.
 *
 * head and tail are free-running 32-bit counters; their difference is the
 * fill level (unsigned wrap-around keeps it right), and index & mask picks
 * the cell. The producer writes the cell, then release-stores tail; the
 * consumer acquire-loads tail, reads the cell, then release-stores head, so a
 * cell is never read before it is written nor overwritten before it is read.
 */
#include "server/runtime/mailbox.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

rx_mailbox *rx_mailbox_create(uint32_t capacity)
{
    assert(capacity > 0 && (capacity & (capacity - 1)) == 0);
    size_t bytes = sizeof(rx_mailbox) + (size_t)capacity * sizeof(rx_message);
    rx_mailbox *mailbox = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    if (mailbox == NULL) {
        return NULL;
    }
    memset(mailbox, 0, sizeof(*mailbox));
    atomic_init(&mailbox->head, 0);
    atomic_init(&mailbox->tail, 0);
    mailbox->mask = capacity - 1;
    return mailbox;
}

void rx_mailbox_destroy(rx_mailbox *mailbox)
{
    free(mailbox);
}

bool rx_mailbox_push(rx_mailbox *mailbox, const rx_message *message)
{
    assert(message->function != NULL);
    uint32_t tail = atomic_load_explicit(&mailbox->tail, memory_order_relaxed);
    if (tail - mailbox->head_cached > mailbox->mask) {
        mailbox->head_cached = atomic_load_explicit(&mailbox->head, memory_order_acquire);
        if (tail - mailbox->head_cached > mailbox->mask) {
            return false;
        }
    }
    mailbox->messages[tail & mailbox->mask] = *message;
    atomic_store_explicit(&mailbox->tail, tail + 1, memory_order_release);
    return true;
}

bool rx_mailbox_pop(rx_mailbox *mailbox, rx_message *message)
{
    uint32_t head = atomic_load_explicit(&mailbox->head, memory_order_relaxed);
    if (head == mailbox->tail_cached) {
        mailbox->tail_cached = atomic_load_explicit(&mailbox->tail, memory_order_acquire);
        if (head == mailbox->tail_cached) {
            return false;
        }
    }
    *message = mailbox->messages[head & mailbox->mask];
    atomic_store_explicit(&mailbox->head, head + 1, memory_order_release);
    return true;
}
