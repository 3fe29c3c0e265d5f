/*
 * bench_memory.c: the server's and the kernel's memory per held connection
 * (see bench_memory.h). A figure missing from either sample is reported as
 * null, never as 0, so a reader cannot mistake "not measured" for "free".
 */
#include "bench/src/bench_memory.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>

void memory_sample_take(const char *command, uint64_t server_pid, memory_sample *sample)
{
    memset(sample, 0, sizeof *sample);
    if (server_pid != 0 && !system_process_memory((pid_t)server_pid, &sample->server))
        fprintf(stderr, "%s: cannot read the memory of pid %" PRIu64 "\n", command, server_pid);
    system_kernel_sockets(&sample->kernel);
}

static memory_growth growth_of(bool before_available, uint64_t before, bool after_available,
                               uint64_t after, uint64_t held)
{
    memory_growth result = {
        .available = before_available && after_available, .before = before, .after = after};
    if (result.available && held > 0) {
        result.per_connection_available = true;
        result.per_connection = ((double)after - (double)before) / (double)held;
    }
    return result;
}

memory_results memory_compute(const memory_sample *before, const memory_sample *after,
                              uint64_t held)
{
    memory_results results;
    results.rss = growth_of(before->server.rss_available, before->server.rss_bytes,
                            after->server.rss_available, after->server.rss_bytes, held);
    results.pss = growth_of(before->server.pss_available, before->server.pss_bytes,
                            after->server.pss_available, after->server.pss_bytes, held);
    results.tcp_memory =
        growth_of(before->kernel.sockstat_available, before->kernel.tcp_memory_bytes,
                  after->kernel.sockstat_available, after->kernel.tcp_memory_bytes, held);
    results.socket_slab =
        growth_of(before->kernel.socket_slab_available, before->kernel.socket_slab_bytes,
                  after->kernel.socket_slab_available, after->kernel.socket_slab_bytes, held);
    results.slab = growth_of(before->kernel.slab_available, before->kernel.slab_bytes,
                             after->kernel.slab_available, after->kernel.slab_bytes, held);
    return results;
}

static double mebibytes(uint64_t bytes)
{
    return (double)bytes / (1024.0 * 1024.0);
}

static void print_growth(const char *label, const memory_growth *value, const char *unit,
                         const char *note)
{
    if (!value->available)
        return;
    printf("  %-22s %9.1f MiB -> %9.1f MiB", label, mebibytes(value->before),
           mebibytes(value->after));
    if (value->per_connection_available)
        printf("  = %8.0f bytes per %s", value->per_connection, unit);
    printf("%s\n", note);
}

void memory_print(const memory_results *results, const char *unit)
{
    print_growth("server VmRSS", &results->rss, unit, "");
    print_growth("server Pss", &results->pss, unit, "");
    print_growth("kernel TCP memory", &results->tcp_memory, unit, "  (sockstat mem, both ends)");
    print_growth("kernel socket slab", &results->socket_slab, unit,
                 "  (slabinfo TCP + sock_inode_cache, both ends)");
    print_growth("kernel slab", &results->slab, unit, "  (meminfo Slab, system-wide, both ends)");
}

static void json_growth(json_writer *writer, const char *prefix, const memory_growth *value)
{
    char key[64];
    snprintf(key, sizeof key, "%s_before", prefix);
    json_optional_unsigned(writer, key, value->available, value->before);
    snprintf(key, sizeof key, "%s_after", prefix);
    json_optional_unsigned(writer, key, value->available, value->after);
    snprintf(key, sizeof key, "%s_per_connection", prefix);
    json_optional_number(writer, key, value->per_connection_available, value->per_connection);
}

void memory_json(json_writer *writer, uint64_t server_pid, const memory_sample *before,
                 const memory_sample *after, const memory_results *results)
{
    json_object_begin(writer, "server");
    json_optional_unsigned(writer, "pid", server_pid != 0, server_pid);
    json_growth(writer, "rss_bytes", &results->rss);
    json_growth(writer, "pss_bytes", &results->pss);
    json_object_end(writer);
    json_object_begin(writer, "kernel");
    json_optional_unsigned(writer, "tcp_in_use_before", before->kernel.sockstat_available,
                           before->kernel.tcp_in_use);
    json_optional_unsigned(writer, "tcp_in_use_after", after->kernel.sockstat_available,
                           after->kernel.tcp_in_use);
    json_growth(writer, "tcp_memory_bytes", &results->tcp_memory);
    json_growth(writer, "socket_slab_bytes", &results->socket_slab);
    json_growth(writer, "slab_bytes", &results->slab);
    json_object_end(writer);
}
