/*
 * bench_login.c: the login scenario of starling-bench. N sessions each
 * connect, open an XMPP stream, authenticate with SASL, restart the
 * stream, bind a resource and send initial presence; a session is online
 * then. It answers: how many logins per second does the server take, and
 * how long does one take (p50 to max). The machinery is xmpp_session.c's;
 * login adds nothing to it.
 */
#include "bench/src/bench_commands.h"
#include "bench/src/xmpp_session.h"

static const xmpp_scenario login_scenario = {
    .command = "starling-bench login",
    .name = "login",
    .summary = "Logs N sessions in (connect, stream, SASL, stream restart, bind, presence) on\n"
               "Starling's runtime and reports logins/s, login latency and failures by reason.\n",
    .extra_usage = "Exit status: 0 when all N got online and stayed, 1 otherwise, 2 for usage.\n",
};

int bench_login_main(int argc, char **argv)
{
    return xmpp_bench_main(argc, argv, &login_scenario);
}
