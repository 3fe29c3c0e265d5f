/*
 * bench_system.c: /proc and getrusage readers for bench reports. Every
 * reader scans a small text file line by line (bounded by the file) and
 * picks the one field it wants, so a kernel that adds fields breaks none.
 */
#include "bench/src/bench_system.h"

#include <dirent.h>
#include <inttypes.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define LINE_BYTES_MAX 512

uint64_t system_now_us(void)
{
    struct timespec now;
    if (clock_gettime(CLOCK_MONOTONIC, &now) != 0)
        return 0; /* CLOCK_MONOTONIC cannot fail on Linux; 0 keeps callers total. */
    return (uint64_t)now.tv_sec * 1000000u + (uint64_t)now.tv_nsec / 1000u;
}

/* Finds the line starting with label in path and reads the number after it
 * ("VmRSS:    6036 kB" gives 6036). false when absent or unreadable. */
static bool read_labelled_number(const char *path, const char *label, uint64_t *value)
{
    FILE *file = fopen(path, "re");
    if (file == NULL)
        return false;
    char line[LINE_BYTES_MAX];
    size_t label_length = strlen(label);
    bool found = false;
    while (!found && fgets(line, sizeof line, file) != NULL) {
        if (strncmp(line, label, label_length) == 0)
            found = sscanf(line + label_length, "%" SCNu64, value) == 1;
    }
    if (fclose(file) != 0)
        return false;
    return found;
}

bool system_process_memory(pid_t pid, process_memory *memory)
{
    memset(memory, 0, sizeof *memory);
    char path[64];
    uint64_t kib = 0;
    if (snprintf(path, sizeof path, "/proc/%d/status", (int)pid) < 0)
        return false;
    if (read_labelled_number(path, "VmRSS:", &kib)) {
        memory->rss_available = true;
        memory->rss_bytes = kib * 1024u;
    }
    if (snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid) < 0)
        return false;
    if (read_labelled_number(path, "Pss:", &kib)) {
        memory->pss_available = true;
        memory->pss_bytes = kib * 1024u;
    }
    return memory->rss_available;
}

/* Reads "TCP: inuse A orphan B tw C alloc D mem E" from /proc/net/sockstat. */
static bool read_sockstat(uint64_t *in_use, uint64_t *memory_pages)
{
    FILE *file = fopen("/proc/net/sockstat", "re");
    if (file == NULL)
        return false;
    char line[LINE_BYTES_MAX];
    bool found = false;
    while (!found && fgets(line, sizeof line, file) != NULL) {
        uint64_t orphan, time_wait, allocated;
        found = sscanf(line,
                       "TCP: inuse %" SCNu64 " orphan %" SCNu64 " tw %" SCNu64 " alloc %" SCNu64
                       " mem %" SCNu64,
                       in_use, &orphan, &time_wait, &allocated, memory_pages) == 5;
    }
    if (fclose(file) != 0)
        return false;
    return found;
}

/* Sums active objects x object size over the slab caches that hold one
 * object per TCP socket: the socket itself (TCP, a struct tcp_sock) and
 * its inode (sock_inode_cache). /proc/slabinfo is readable by root only. */
static bool read_socket_slab(uint64_t *bytes)
{
    static const char *const caches[] = {"TCP ", "sock_inode_cache "};
    FILE *file = fopen("/proc/slabinfo", "re");
    if (file == NULL)
        return false;
    char line[LINE_BYTES_MAX];
    unsigned found = 0;
    *bytes = 0;
    while (fgets(line, sizeof line, file) != NULL) {
        for (size_t i = 0; i < sizeof caches / sizeof caches[0]; i++) {
            uint64_t active, total, object_bytes;
            size_t length = strlen(caches[i]);
            if (strncmp(line, caches[i], length) == 0 &&
                sscanf(line + length, "%" SCNu64 " %" SCNu64 " %" SCNu64, &active, &total,
                       &object_bytes) == 3) {
                *bytes += active * object_bytes;
                found++;
            }
        }
    }
    if (fclose(file) != 0)
        return false;
    return found == sizeof caches / sizeof caches[0];
}

void system_kernel_sockets(kernel_sockets *sockets)
{
    memset(sockets, 0, sizeof *sockets);
    uint64_t pages = 0;
    long page_bytes = sysconf(_SC_PAGESIZE);
    if (page_bytes > 0 && read_sockstat(&sockets->tcp_in_use, &pages)) {
        sockets->sockstat_available = true;
        sockets->tcp_memory_bytes = pages * (uint64_t)page_bytes;
    }
    uint64_t slab_kib = 0;
    if (read_labelled_number("/proc/meminfo", "Slab:", &slab_kib)) {
        sockets->slab_available = true;
        sockets->slab_bytes = slab_kib * 1024u;
    }
    sockets->socket_slab_available = read_socket_slab(&sockets->socket_slab_bytes);
}

bool system_tool_usage(tool_usage *usage)
{
    struct rusage self;
    memset(usage, 0, sizeof *usage);
    if (getrusage(RUSAGE_SELF, &self) != 0)
        return false;
    usage->user_us = (uint64_t)self.ru_utime.tv_sec * 1000000u + (uint64_t)self.ru_utime.tv_usec;
    usage->system_us = (uint64_t)self.ru_stime.tv_sec * 1000000u + (uint64_t)self.ru_stime.tv_usec;
    /* ru_maxrss survives execve (it starts at the parent's peak), so the
     * peak of this image is VmHWM, which a new address space resets. */
    uint64_t peak_kib = 0;
    if (!read_labelled_number("/proc/self/status", "VmHWM:", &peak_kib))
        peak_kib = (uint64_t)self.ru_maxrss;
    usage->max_rss_bytes = peak_kib * 1024u;
    return true;
}

bool system_process_cpu_us(uint64_t *cpu_us)
{
    struct rusage self;
    *cpu_us = 0;
    if (getrusage(RUSAGE_SELF, &self) != 0)
        return false;
    *cpu_us = (uint64_t)self.ru_utime.tv_sec * 1000000u + (uint64_t)self.ru_utime.tv_usec +
              (uint64_t)self.ru_stime.tv_sec * 1000000u + (uint64_t)self.ru_stime.tv_usec;
    return true;
}

/* Reads "TID (comm) state ppid ... utime stime ..." (proc(5): utime and
 * stime are fields 14 and 15, in clock ticks). The name may hold spaces
 * and parentheses, so the fields are counted from its last ')'. */
static bool read_thread_stat(const char *path, uint64_t ticks_per_second, system_thread *thread)
{
    FILE *file = fopen(path, "re");
    if (file == NULL)
        return false;
    char line[LINE_BYTES_MAX];
    bool read = fgets(line, sizeof line, file) != NULL;
    if (fclose(file) != 0 || !read)
        return false;
    char *open = strchr(line, '(');
    char *close = strrchr(line, ')');
    if (open == NULL || close == NULL || close < open)
        return false;
    size_t name_bytes = (size_t)(close - open - 1);
    if (name_bytes >= SYSTEM_THREAD_NAME_BYTES)
        name_bytes = SYSTEM_THREAD_NAME_BYTES - 1;
    memcpy(thread->name, open + 1, name_bytes);
    thread->name[name_bytes] = '\0';
    uint64_t user_ticks = 0, system_ticks = 0;
    if (sscanf(close + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %" SCNu64 " %" SCNu64,
               &user_ticks, &system_ticks) != 2)
        return false;
    thread->cpu_us = (user_ticks + system_ticks) * 1000000u / ticks_per_second;
    return true;
}

size_t system_thread_cpu(system_thread *threads, size_t capacity)
{
    long ticks = sysconf(_SC_CLK_TCK);
    DIR *tasks = opendir("/proc/self/task");
    if (tasks == NULL || ticks <= 0) {
        if (tasks != NULL)
            closedir(tasks);
        return 0;
    }
    size_t count = 0;
    for (struct dirent *entry = readdir(tasks); entry != NULL && count < capacity;
         entry = readdir(tasks)) {
        char *end = NULL;
        long tid = strtol(entry->d_name, &end, 10);
        char path[64];
        if (end == entry->d_name || *end != '\0' ||
            snprintf(path, sizeof path, "/proc/self/task/%ld/stat", tid) < 0)
            continue;
        threads[count].tid = (int)tid;
        if (read_thread_stat(path, (uint64_t)ticks, &threads[count]))
            count++;
    }
    closedir(tasks);
    return count;
}

bool system_reserve_descriptors(uint64_t needed, uint64_t *limit)
{
    struct rlimit descriptors;
    *limit = 0;
    if (getrlimit(RLIMIT_NOFILE, &descriptors) != 0)
        return false;
    if (descriptors.rlim_cur < needed && descriptors.rlim_cur < descriptors.rlim_max) {
        struct rlimit raised = descriptors;
        raised.rlim_cur = needed < descriptors.rlim_max ? needed : descriptors.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &raised) == 0)
            descriptors = raised;
    }
    *limit = descriptors.rlim_cur;
    return descriptors.rlim_cur >= needed;
}
