/*
 * bench_system.h: what the bench tools read from the system around a run:
 * the monotonic clock, a server process's memory (/proc/PID/status and
 * smaps_rollup), the kernel's socket memory (/proc/net/sockstat and the
 * slab total in /proc/meminfo), the tool's own CPU time (whole and per
 * thread), and the descriptor limit. Readers return false (and leave *out zeroed) when a
 * file is missing or unreadable; a report then says null, never 0.
 */
#ifndef STARLING_BENCH_SYSTEM_H
#define STARLING_BENCH_SYSTEM_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* CLOCK_MONOTONIC in microseconds. */
uint64_t system_now_us(void);

typedef struct process_memory {
    bool rss_available;
    uint64_t rss_bytes; /* VmRSS */
    bool pss_available;
    uint64_t pss_bytes; /* Pss of smaps_rollup: shared pages split among sharers */
} process_memory;

/* Samples pid's memory into *memory. false when pid's status is unreadable
 * (the process is gone); Pss alone may be missing (older kernels, rights). */
bool system_process_memory(pid_t pid, process_memory *memory) __attribute__((warn_unused_result));

typedef struct kernel_sockets {
    bool sockstat_available;
    uint64_t tcp_in_use;       /* TCP sockets in use (both ends of a loopback pair) */
    uint64_t tcp_memory_bytes; /* TCP "mem" pages x page size: buffers charged to sockets */
    bool slab_available;
    uint64_t slab_bytes;        /* Slab of /proc/meminfo: every kernel object cache, system-wide */
    bool socket_slab_available; /* /proc/slabinfo is readable (root only) */
    uint64_t socket_slab_bytes; /* active objects x size of the TCP and sock_inode_cache caches */
} kernel_sockets;

/* Samples the kernel's socket accounting of this network namespace. */
void system_kernel_sockets(kernel_sockets *sockets);

typedef struct tool_usage {
    uint64_t user_us;
    uint64_t system_us;
    uint64_t max_rss_bytes;
} tool_usage;

/* The calling process's CPU time (getrusage) and peak RSS (VmHWM). */
bool system_tool_usage(tool_usage *usage) __attribute__((warn_unused_result));

/* The calling process's user + system CPU time so far (getrusage). */
bool system_process_cpu_us(uint64_t *cpu_us) __attribute__((warn_unused_result));

#define SYSTEM_THREAD_NAME_BYTES 16u /* TASK_COMM_LEN */

typedef struct system_thread {
    int tid;
    uint64_t cpu_us; /* utime + stime, clock-tick resolution */
    char name[SYSTEM_THREAD_NAME_BYTES];
} system_thread;

/* Reads every thread of this process from /proc/self/task/TID/stat into
 * threads (at most capacity); the number read. Threads that exit while
 * being read are skipped. */
size_t system_thread_cpu(system_thread *threads, size_t capacity);

/* Raises the soft RLIMIT_NOFILE towards the hard limit so that needed
 * descriptors fit. Sets *limit to the soft limit in force afterwards;
 * false when needed does not fit under it. */
bool system_reserve_descriptors(uint64_t needed, uint64_t *limit)
    __attribute__((warn_unused_result));

#endif
