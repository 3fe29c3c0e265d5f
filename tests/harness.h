/*
 * harness.h: the tiny harness of the tests that group their checks into
 * named tests (runtime, bench).
 *
 * A test is a void function; CHECK records a failure (with file and line)
 * and lets the test carry on so one run shows every broken expectation.
 * harness_finish prints the final "N passed, M failed" line and gives the
 * exit status.
 */
#ifndef STARLING_TESTS_HARNESS_H
#define STARLING_TESTS_HARNESS_H

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static unsigned harness_passed;
static unsigned harness_failed;
static bool harness_current_failed;

#define CHECK(condition)                                                                           \
    do {                                                                                           \
        if (!(condition)) {                                                                        \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #condition);          \
            harness_current_failed = true;                                                         \
        }                                                                                          \
    } while (0)

/* Runs test when filter is NULL or names it. */
static inline void harness_run(const char *name, void (*test)(void), const char *filter)
{
    if (filter != NULL && strcmp(filter, name) != 0) {
        return;
    }
    harness_current_failed = false;
    fprintf(stderr, "-- %s\n", name);
    test();
    if (harness_current_failed) {
        harness_failed++;
        fprintf(stderr, "FAIL %s\n", name);
    } else {
        harness_passed++;
        fprintf(stderr, "ok   %s\n", name);
    }
}

static inline int harness_finish(void)
{
    printf("%u passed, %u failed\n", harness_passed, harness_failed);
    return harness_failed == 0 && harness_passed > 0 ? 0 : 1;
}

static inline unsigned long long harness_now_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (unsigned long long)now.tv_sec * 1000ull + (unsigned long long)now.tv_nsec / 1000000ull;
}

#endif
