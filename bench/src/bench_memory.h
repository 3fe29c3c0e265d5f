/*
 * bench_memory.h: what a held connection or session costs the server and
 * the kernel, measured from outside. Two samples are taken: one before the
 * first connect, one while every connection is still held; the growth of
 * each figure is divided by the connections held at the second sample.
 * Sampled are the named server process alone (VmRSS and Pss of
 * smaps_rollup; not its children, so a server that hands connections to
 * worker processes must be named by the process that holds them) and the
 * kernel's socket accounting (bench_system.h). idle's stream and raw modes
 * and the XMPP engine's --server-pid share this, so both reports use the
 * same words and JSON keys.
 */
#ifndef STARLING_BENCH_MEMORY_H
#define STARLING_BENCH_MEMORY_H

#include "bench/src/bench_json.h"
#include "bench/src/bench_system.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct memory_sample {
    process_memory server; /* all unavailable without a server pid */
    kernel_sockets kernel;
} memory_sample;

typedef struct memory_growth {
    bool available; /* both samples have the figure */
    uint64_t before, after;
    bool per_connection_available; /* available and something was held */
    double per_connection;         /* (after - before) / held; may be negative */
} memory_growth;

typedef struct memory_results {
    memory_growth rss, pss, tcp_memory, socket_slab, slab;
} memory_results;

/* Samples the server (server_pid 0: none) and the kernel into *sample. When
 * the server's memory is unreadable (it exited), says so in one line on
 * stderr prefixed by command (borrowed); the figures are then null. */
void memory_sample_take(const char *command, uint64_t server_pid, memory_sample *sample);

/* The growth of every figure from before to after (both borrowed), per
 * held connection. */
memory_results memory_compute(const memory_sample *before, const memory_sample *after,
                              uint64_t held);

/* Prints one line per available figure of results (borrowed): before,
 * after, and bytes per unit ("connection", "session"; borrowed). */
void memory_print(const memory_results *results, const char *unit);

/*
 * Writes the objects "server" {pid, rss_bytes_before, rss_bytes_after,
 * rss_bytes_per_connection, the same for pss_bytes} and "kernel"
 * {tcp_in_use_before, tcp_in_use_after, tcp_memory_bytes_*,
 * socket_slab_bytes_*, slab_bytes_*}; unavailable figures are null. All
 * pointers borrowed.
 */
void memory_json(json_writer *writer, uint64_t server_pid, const memory_sample *before,
                 const memory_sample *after, const memory_results *results);

#endif
