/*
 * test_mailbox.c: the SPSC mailbox on its own: a full mailbox refuses,
 * order is preserved across wrap-around, and a producer thread and a
 * consumer thread exchange a million messages without loss or reordering.
 */
#include <pthread.h>
#include <sched.h>

#include "server/runtime/mailbox.h"
#include "tests/harness.h"

static void noop(const rx_message *message)
{
    (void)message;
}

static rx_message numbered(uint64_t number)
{
    rx_message message = {.function = noop, .pointer = NULL, .words = {number, ~number}};
    return message;
}

static void test_full_refuses(void)
{
    rx_mailbox *mailbox = rx_mailbox_create(8);
    CHECK(mailbox != NULL);
    for (uint64_t i = 0; i < 8; i++) {
        rx_message message = numbered(i);
        CHECK(rx_mailbox_push(mailbox, &message));
    }
    rx_message extra = numbered(99);
    CHECK(!rx_mailbox_push(mailbox, &extra));
    rx_message out;
    CHECK(rx_mailbox_pop(mailbox, &out) && out.words[0] == 0);
    CHECK(rx_mailbox_push(mailbox, &extra));
    CHECK(!rx_mailbox_push(mailbox, &extra));
    rx_mailbox_destroy(mailbox);
}

static void test_order_and_wrap(void)
{
    rx_mailbox *mailbox = rx_mailbox_create(4);
    uint64_t next_in = 0, next_out = 0;
    for (unsigned round = 0; round < 1000; round++) {
        unsigned burst = 1 + round % 4;
        for (unsigned i = 0; i < burst; i++) {
            rx_message message = numbered(next_in);
            if (rx_mailbox_push(mailbox, &message)) {
                next_in++;
            }
        }
        rx_message out;
        for (unsigned i = 0; i < 3 && rx_mailbox_pop(mailbox, &out); i++) {
            CHECK(out.words[0] == next_out && out.words[1] == ~next_out);
            next_out++;
        }
    }
    rx_message out;
    while (rx_mailbox_pop(mailbox, &out)) {
        CHECK(out.words[0] == next_out);
        next_out++;
    }
    CHECK(next_out == next_in);
    CHECK(next_in > 1000);
    rx_mailbox_destroy(mailbox);
}

#define CROSS_MESSAGES 1000000u

static void *producer_main(void *argument)
{
    rx_mailbox *mailbox = argument;
    for (uint64_t i = 0; i < CROSS_MESSAGES;) {
        rx_message message = numbered(i);
        if (rx_mailbox_push(mailbox, &message)) {
            i++;
        } else {
            sched_yield();
        }
    }
    return NULL;
}

static void test_cross_thread(void)
{
    rx_mailbox *mailbox = rx_mailbox_create(256);
    pthread_t producer;
    CHECK(pthread_create(&producer, NULL, producer_main, mailbox) == 0);
    uint64_t expected = 0;
    bool in_order = true;
    unsigned long long deadline = harness_now_ms() + 60000;
    while (expected < CROSS_MESSAGES && harness_now_ms() < deadline) {
        rx_message out;
        if (!rx_mailbox_pop(mailbox, &out)) {
            sched_yield();
            continue;
        }
        in_order = in_order && out.words[0] == expected && out.words[1] == ~expected;
        expected++;
    }
    CHECK(pthread_join(producer, NULL) == 0);
    CHECK(in_order);
    CHECK(expected == CROSS_MESSAGES);
    rx_message out;
    CHECK(!rx_mailbox_pop(mailbox, &out));
    rx_mailbox_destroy(mailbox);
}

int main(int argc, char **argv)
{
    const char *filter = argc > 1 ? argv[1] : NULL;
    harness_run("full_refuses", test_full_refuses, filter);
    harness_run("order_and_wrap", test_order_and_wrap, filter);
    harness_run("cross_thread", test_cross_thread, filter);
    return harness_finish();
}
