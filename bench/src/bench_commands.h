/*
 * bench_commands.h: the subcommands of starling-bench. Each takes the
 * arguments after its own name (argv[0] is the subcommand's name), parses
 * them with the bench_cli.h conventions, and returns the process exit
 * status: CLI_EXIT_OK, CLI_EXIT_FAILED or CLI_EXIT_USAGE.
 */
#ifndef STARLING_BENCH_COMMANDS_H
#define STARLING_BENCH_COMMANDS_H

#include <stdbool.h>

/* idle: open many connections (optionally XMPP streams), hold them, report
 * the accept rate and the server's memory per connection. */
int bench_idle_main(int argc, char **argv);

/* idle --login: is --login among the arguments (argv borrowed, argv[0]
 * skipped); if so, idle runs bench_idle_login_main, which logs N sessions
 * in on the session engine, holds them, and reports the server's memory
 * per session. */
bool bench_idle_wants_login(int argc, char **argv);
int bench_idle_login_main(int argc, char **argv);

/* login: log N sessions in (connect, stream, SASL, bind, presence) on the
 * runtime, report logins/s, login latency and failures by reason. */
int bench_login_main(int argc, char **argv);

/* reconnect: log N sessions in, drop them all at once, log them all in
 * again; report the time to recover and the second wave's logins/s. */
int bench_reconnect_main(int argc, char **argv);

/* chat: log N users in as pairs that send each other 1:1 messages at a
 * fixed rate (or window); report delivered/s, latency, lost, duplicates. */
int bench_chat_main(int argc, char **argv);

/* presence: users with provisioned ring rosters log in, background first,
 * then measured users at a rate; report presence stanzas delivered/s and
 * the time for a login's presence to reach all online contacts. */
int bench_presence_main(int argc, char **argv);
/* sink: the cheapest XMPP server the scenarios can run against (SASL with
 * one password, bind, 1:1 message routing, ping); counts what it did and
 * reports it at exit, so the generator's own ceiling can be measured. */
int bench_sink_main(int argc, char **argv);

#endif
