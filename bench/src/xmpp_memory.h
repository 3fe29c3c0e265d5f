/*
 * xmpp_memory.h: --server-pid for every scenario of the session engine
 * (xmpp_session.c): the server's memory (VmRSS, Pss) and the kernel's
 * socket memory sampled before the first connect and again at the end of
 * --hold, while the sessions are still online, and reported per session
 * online at that moment (bench_memory.h). Only the named process is
 * sampled, not its descendants, as idle's stream mode does. The kernel is
 * sampled on every run (it costs a few /proc reads); the human summary
 * shows the figures only with --server-pid, the JSON report always. Main
 * thread only; every pointer argument is borrowed.
 */
#ifndef STARLING_BENCH_XMPP_MEMORY_H
#define STARLING_BENCH_XMPP_MEMORY_H

#include "bench/src/xmpp_session.h"

/* The option's value (past the live options' values). */
enum { MEMORY_OPTION_SERVER_PID = 0x1100 };

#define MEMORY_SERVER_PID_MAX 4194304u /* PID_MAX_LIMIT of 64-bit Linux */

#define MEMORY_USAGE                                                                               \
    "  --server-pid PID    sample this process's VmRSS and Pss (not its children's) and\n"         \
    "                      the kernel's socket memory before the first connect and at\n"           \
    "                      the end of --hold; report bytes per online session\n"

/* Applies --server-pid; false after a one-line error. */
bool xmpp_memory_apply_option(const char *command, const char *value, xmpp_options *options);
/* Checks that the --server-pid process exists; false after a one-line error. */
bool xmpp_memory_options_check(const char *command, const xmpp_options *options);
/* Before the first session starts connecting. */
void xmpp_memory_before(xmpp_run *run);
/* At the end of --hold, with the sessions still online: the second sample
 * and the sessions online at it. */
void xmpp_memory_after(xmpp_run *run);
/* The figures per online session, with --server-pid. */
void xmpp_memory_report_human(const xmpp_run *run);
/* "memory_sample" {online, at_ms}, "server" and "kernel" (bench_memory.h's keys). */
void xmpp_memory_report_json(json_writer *writer, const xmpp_run *run);

#endif
