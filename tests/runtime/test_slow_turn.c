/*
 * test_slow_turn.c: the reactor's slow-turn warning (LIMIT_REACTOR_SLOW_TURN_MS)
 * on a running reactor:
 *
 * - a turn that takes three times the threshold (a message whose function
 *   sleeps) gives one warning naming the reactor and how long it took, at
 *   least the sleep;
 * - more slow turns within LIMIT_REACTOR_HOUSEKEEPING_MS of that line give
 *   no line of their own;
 * - the first slow turn after that period gives a line again, counting the
 *   ones it held back.
 *
 * The sleep is the test's own stand-in for work that blocks a reactor.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "proto/limits.h"
#include "server/runtime/rx.h"
#include "tests/harness.h"
#include "tests/runtime/one_reactor.h"

#define SLOW_MS (3u * LIMIT_REACTOR_SLOW_TURN_MS)

static pthread_mutex_t lines_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned slow_lines;
static char last_line[512];
static atomic_uint handled;

static void log_hook(void *context, rx_log_level level, const char *message)
{
    (void)context;
    if (level != RX_LOG_WARNING || strstr(message, "one turn took") == NULL)
        return;
    pthread_mutex_lock(&lines_lock);
    slow_lines++;
    snprintf(last_line, sizeof last_line, "%s", message);
    pthread_mutex_unlock(&lines_lock);
}

static unsigned lines_seen(char *line, size_t capacity)
{
    pthread_mutex_lock(&lines_lock);
    unsigned count = slow_lines;
    snprintf(line, capacity, "%s", last_line);
    pthread_mutex_unlock(&lines_lock);
    return count;
}

static void sleep_on_reactor(const rx_message *message)
{
    (void)message;
    usleep(SLOW_MS * 1000u);
    atomic_fetch_add(&handled, 1);
}

/* Posts one slow message and waits until the reactor has run it. */
static void post_slow(rx_producer *producer)
{
    one_reactor_run(producer, sleep_on_reactor, &handled);
}

/* Waits (bounded) until the hook has seen more than count lines. */
static unsigned wait_lines(unsigned count, char *line, size_t capacity)
{
    unsigned long long deadline = harness_now_ms() + 5000u;
    unsigned seen;
    while ((seen = lines_seen(line, capacity)) <= count && harness_now_ms() < deadline)
        usleep(1000);
    return seen;
}

static void test_slow_turns(void)
{
    rx_log_set_hook(log_hook, NULL);
    rx_options options;
    rx_options_init(&options);
    rx_producer *producer;
    rx_runtime *runtime = one_reactor_start(&options, &producer);
    if (runtime == NULL) {
        rx_log_set_hook(NULL, NULL);
        return;
    }
    /* A period after start, so that no line of the start-up is still
     * holding the next one back. */
    usleep((LIMIT_REACTOR_HOUSEKEEPING_MS + 100u) * 1000u);

    char line[512];
    unsigned before = lines_seen(line, sizeof line);
    post_slow(producer);
    unsigned long long first_ms = harness_now_ms();
    unsigned after_first = wait_lines(before, line, sizeof line);
    CHECK(after_first == before + 1);
    unsigned long long took = 0, more = 99;
    CHECK(sscanf(line, "reactor 0: one turn took %llu ms (%*u completions); %llu more", &took,
                 &more) == 2);
    CHECK(took >= SLOW_MS);
    CHECK(more == 0);

    /* Two more within the period: held back. */
    post_slow(producer);
    post_slow(producer);
    CHECK(harness_now_ms() < first_ms + LIMIT_REACTOR_HOUSEKEEPING_MS);
    CHECK(lines_seen(line, sizeof line) == after_first);

    /* After the period, the next one is logged with the count. */
    while (harness_now_ms() < first_ms + LIMIT_REACTOR_HOUSEKEEPING_MS + 50u)
        usleep(10000);
    post_slow(producer);
    CHECK(wait_lines(after_first, line, sizeof line) == after_first + 1);
    took = 0;
    more = 0;
    CHECK(sscanf(line, "reactor 0: one turn took %llu ms (%*u completions); %llu more", &took,
                 &more) == 2);
    CHECK(took >= SLOW_MS);
    CHECK(more >= 2);

    one_reactor_stop(runtime);
    rx_log_set_hook(NULL, NULL);
}

int main(int argc, char **argv)
{
    harness_run("slow_turns", test_slow_turns, argc > 1 ? argv[1] : NULL);
    return harness_finish();
}
