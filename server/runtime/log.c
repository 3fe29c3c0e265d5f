/*
 * log.c: logging that never blocks a reactor.
 *
 * A reactor must not wait on file I/O (shared/DESIGN.md), and stderr may be
 * a pipe that a slow log collector drains late. So a reactor thread formats
 * its line and appends it to a byte ring of its own; one logger thread
 * drains every ring and writes the lines (or hands them to the hook). When a
 * ring is full the line is dropped and counted, and the logger reports the
 * count: under a flood of hostile streams the log loses lines, the server
 * loses nothing. Threads that are not reactors (the control thread, tests)
 * write directly, as blocking is allowed there.
 *
 * Each ring is single-producer (its reactor) single-consumer (the logger),
 * with acquire/release indices, so no lock is taken on the logging path.
 * The logger sleeps on an eventfd; a producer writes to it only when the
 * logger has said it is going to sleep, so a busy log costs no syscall per
 * line.
 */
#include "server/runtime/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* Bytes of one formatted line, without the newline. */
#define LOG_LINE_BYTES 512u

typedef struct log_ring {
    _Atomic uint64_t head; /* bytes written by the producer */
    _Atomic uint64_t tail; /* bytes consumed by the logger */
    _Atomic uint64_t dropped;
    uint8_t bytes[LIMIT_LOG_RING_BYTES];
} log_ring;

static rx_log_hook *log_hook;
static void *log_context;
static rx_log_level log_minimum = RX_LOG_INFO;

/* The logger's state: created by the first rx_log_start, freed by the last
 * rx_log_stop. rings[] grows only while reactors attach (at start-up). */
static pthread_mutex_t logger_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned logger_users;
static pthread_t logger_thread;
static int logger_wake_fd = -1;
static _Atomic bool logger_sleeping;
static _Atomic bool logger_stopping;
static log_ring *rings[LIMIT_REACTORS_MAX * 2];
static _Atomic unsigned ring_count;
static _Thread_local log_ring *thread_ring;

static const char *const level_names[] = {"debug", "info", "warning", "error"};

void rx_log_set_hook(rx_log_hook *hook, void *context)
{
    log_hook = hook;
    log_context = context;
}

void rx_log_set_level(rx_log_level minimum)
{
    log_minimum = minimum;
}

static void log_emit(rx_log_level level, const char *line)
{
    if (log_hook != NULL) {
        log_hook(log_context, level, line);
        return;
    }
    /* One call per line so lines never interleave. */
    fprintf(stderr, "starling rx %s: %s\n", level_names[level], line);
}

/* Appends [level][length][line] to the calling reactor's ring, or counts a
 * drop. Returns without blocking either way. */
static void ring_append(log_ring *ring, rx_log_level level, const char *line, size_t length)
{
    uint64_t head = atomic_load_explicit(&ring->head, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&ring->tail, memory_order_acquire);
    size_t record = 3 + length;
    if (LIMIT_LOG_RING_BYTES - (head - tail) < record) {
        atomic_fetch_add_explicit(&ring->dropped, 1, memory_order_relaxed);
        return;
    }
    uint8_t header[3] = {(uint8_t)level, (uint8_t)(length >> 8), (uint8_t)length};
    for (size_t i = 0; i < record; i++) {
        uint8_t byte = i < 3 ? header[i] : (uint8_t)line[i - 3];
        ring->bytes[(head + i) % LIMIT_LOG_RING_BYTES] = byte;
    }
    atomic_store_explicit(&ring->head, head + record, memory_order_release);
    if (atomic_exchange(&logger_sleeping, false)) {
        uint64_t one = 1;
        ssize_t result = write(logger_wake_fd, &one, sizeof one);
        RX_ASSERT(result == (ssize_t)sizeof one); /* an eventfd write of 1 cannot fail */
    }
}

void rx_log(rx_log_level level, const char *format, ...)
{
    if (level < log_minimum) {
        return;
    }
    char line[LOG_LINE_BYTES];
    va_list args;
    va_start(args, format);
    int written = vsnprintf(line, sizeof line, format, args);
    va_end(args);
    if (written < 0) {
        return;
    }
    size_t length = (size_t)written < sizeof line ? (size_t)written : sizeof line - 1;
    if (thread_ring != NULL) {
        ring_append(thread_ring, level, line, length);
    } else {
        log_emit(level, line);
    }
}

/* Writes out what one ring holds. Returns true when it held anything. */
static bool ring_drain(log_ring *ring)
{
    uint64_t tail = atomic_load_explicit(&ring->tail, memory_order_relaxed);
    uint64_t head = atomic_load_explicit(&ring->head, memory_order_acquire);
    bool any = head != tail;
    while (tail != head) {
        char line[LOG_LINE_BYTES];
        rx_log_level level = (rx_log_level)ring->bytes[tail % LIMIT_LOG_RING_BYTES];
        size_t length = (size_t)ring->bytes[(tail + 1) % LIMIT_LOG_RING_BYTES] << 8 |
                        ring->bytes[(tail + 2) % LIMIT_LOG_RING_BYTES];
        RX_ASSERT(length < sizeof line && level <= RX_LOG_ERROR);
        for (size_t i = 0; i < length; i++) {
            line[i] = (char)ring->bytes[(tail + 3 + i) % LIMIT_LOG_RING_BYTES];
        }
        line[length] = '\0';
        tail += 3 + length;
        atomic_store_explicit(&ring->tail, tail, memory_order_release);
        log_emit(level, line);
    }
    uint64_t dropped = atomic_exchange_explicit(&ring->dropped, 0, memory_order_relaxed);
    if (dropped > 0) {
        char note[96];
        snprintf(note, sizeof note, "%llu log lines dropped: a reactor's log ring was full",
                 (unsigned long long)dropped);
        log_emit(RX_LOG_WARNING, note);
    }
    return any || dropped > 0;
}

static bool drain_all(void)
{
    bool any = false;
    unsigned count = atomic_load_explicit(&ring_count, memory_order_acquire);
    for (unsigned i = 0; i < count; i++) {
        any = ring_drain(rings[i]) || any;
    }
    return any;
}

static void *logger_main(void *argument)
{
    (void)argument;
    while (!atomic_load(&logger_stopping)) {
        if (drain_all()) {
            continue;
        }
        atomic_store(&logger_sleeping, true);
        if (drain_all()) { /* a line that raced the flag */
            continue;
        }
        uint64_t value;
        if (read(logger_wake_fd, &value, sizeof value) < 0 && errno != EINTR) {
            break;
        }
    }
    drain_all();
    return NULL;
}

rx_status rx_log_start(void)
{
    pthread_mutex_lock(&logger_lock);
    rx_status status = RX_OK;
    if (logger_users == 0) {
        atomic_store(&logger_stopping, false);
        logger_wake_fd = eventfd(0, EFD_CLOEXEC);
        if (logger_wake_fd < 0 || pthread_create(&logger_thread, NULL, logger_main, NULL) != 0) {
            if (logger_wake_fd >= 0) {
                close(logger_wake_fd);
            }
            logger_wake_fd = -1;
            status = RX_ERR_SYSTEM;
        }
    }
    if (status == RX_OK) {
        logger_users++;
    }
    pthread_mutex_unlock(&logger_lock);
    return status;
}

void rx_log_stop(void)
{
    pthread_mutex_lock(&logger_lock);
    RX_ASSERT(logger_users > 0);
    if (--logger_users == 0) {
        atomic_store(&logger_stopping, true);
        uint64_t one = 1;
        if (write(logger_wake_fd, &one, sizeof one) < 0) {
            fprintf(stderr, "starling rx: cannot wake the logger: %s\n", strerror(errno));
        }
        int error = pthread_join(logger_thread, NULL);
        RX_ASSERT(error == 0);
        close(logger_wake_fd);
        logger_wake_fd = -1;
        unsigned count = atomic_load(&ring_count);
        for (unsigned i = 0; i < count; i++) {
            free(rings[i]);
            rings[i] = NULL;
        }
        atomic_store(&ring_count, 0);
    }
    pthread_mutex_unlock(&logger_lock);
}

void rx_log_attach(void)
{
    log_ring *ring = calloc(1, sizeof *ring);
    pthread_mutex_lock(&logger_lock);
    unsigned count = atomic_load(&ring_count);
    if (ring != NULL && logger_users > 0 && count < sizeof rings / sizeof rings[0]) {
        rings[count] = ring;
        atomic_store_explicit(&ring_count, count + 1, memory_order_release);
        thread_ring = ring;
        ring = NULL;
    }
    pthread_mutex_unlock(&logger_lock);
    free(ring); /* not attached: this thread logs directly */
}

void rx_log_detach(void)
{
    thread_ring = NULL;
}

void rx_assert_failed(const char *condition, const char *file, int line)
{
    fprintf(stderr, "starling rx: assertion failed: %s (%s:%d)\n", condition, file, line);
    abort();
}
