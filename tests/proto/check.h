/*
 * check.h: the smallest test harness that does the job. CHECK counts a
 * passed or failed check and prints the failing expression with its place
 * and the current case's label; check_finish prints "N passed, M failed"
 * and gives the exit status.
 */
#ifndef STARLING_TESTS_CHECK_H
#define STARLING_TESTS_CHECK_H

#include <stdio.h>

static unsigned long check_passed, check_failed;
static const char *check_label = "";

#define CHECK(condition)                                                                           \
    do {                                                                                           \
        if (condition) {                                                                           \
            check_passed++;                                                                        \
        } else {                                                                                   \
            check_failed++;                                                                        \
            fprintf(stderr, "%s:%d: [%s] CHECK(%s) failed\n", __FILE__, __LINE__, check_label,     \
                    #condition);                                                                   \
        }                                                                                          \
    } while (0)

static inline int check_finish(void)
{
    printf("%lu passed, %lu failed\n", check_passed, check_failed);
    return check_failed == 0 ? 0 : 1;
}

#endif
