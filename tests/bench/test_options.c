/*
 * test_options.c: unit tests of the command lines of starling-bench's XMPP
 * scenarios (xmpp_parse_options) and of the shared parsing of bench_cli.h.
 *
 * Nothing runs: every case parses a command line into options and checks
 * the result (CLI_EXIT_OK, CLI_EXIT_HELP or CLI_EXIT_USAGE) and the values.
 * Expected defaults and bounds are written out here from --help and
 * bench/README.md, not read back from the code under test. Rejected lines
 * print their one-line error on stderr, which is expected noise. The
 * harness is tests/harness.h.
 */
#include "bench/src/bench_cli.h"
#include "bench/src/bench_commands.h"
#include "bench/src/xmpp_session.h"

#include <getopt.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tests/harness.h"

#define ARGUMENTS_MAX 32u

static const xmpp_scenario login_scenario = {
    .command = "test login",
    .name = "login",
    .summary = "the login scenario under test\n",
    .extra_usage = "",
};

/* Like chat: sessions in pairs, which is what the chat-only options check. */
static const xmpp_scenario chat_scenario = {
    .command = "test chat",
    .name = "chat",
    .summary = "the chat scenario under test\n",
    .extra_usage = "",
    .pairs = true,
};

/* Parses the NULL-terminated arguments (after the subcommand's name) for
 * scenario into options; the parser's status. getopt_long permutes argv,
 * so the strings go into a writable array first. */
static int parse_with(const xmpp_scenario *scenario, xmpp_options *options, ...)
{
    char storage[ARGUMENTS_MAX][128];
    char *argv[ARGUMENTS_MAX + 1];
    int argc = 0;
    snprintf(storage[0], sizeof storage[0], "%s", scenario->name);
    argv[argc++] = storage[0];
    va_list arguments;
    va_start(arguments, options);
    for (const char *argument = va_arg(arguments, const char *); argument != NULL;
         argument = va_arg(arguments, const char *)) {
        if ((unsigned)argc == ARGUMENTS_MAX) {
            CHECK(!"too many arguments for the test's argv");
            break;
        }
        snprintf(storage[argc], sizeof storage[argc], "%s", argument);
        argv[argc] = storage[argc];
        argc++;
    }
    va_end(arguments);
    argv[argc] = NULL;
    return xmpp_parse_options(argc, argv, scenario, options);
}

#define LOGIN(...) parse_with(&login_scenario, &options, __VA_ARGS__, (const char *)NULL)
#define CHAT(...)  parse_with(&chat_scenario, &options, __VA_ARGS__, (const char *)NULL)

/* True when option set to value is accepted for login. */
static bool login_accepts(const char *option, const char *value)
{
    xmpp_options options;
    return LOGIN(option, value) == CLI_EXIT_OK;
}

static bool chat_accepts(const char *option, const char *value)
{
    xmpp_options options;
    return CHAT(option, value) == CLI_EXIT_OK;
}

static void test_defaults(void)
{
    xmpp_options options;
    CHECK(parse_with(&login_scenario, &options, (const char *)NULL) == CLI_EXIT_OK);
    CHECK(strcmp(options.host, "127.0.0.1") == 0);
    CHECK(options.port == 5222);
    CHECK(strcmp(options.domain, "localhost") == 0);
    CHECK(strcmp(options.users, "user%d") == 0);
    CHECK(strcmp(options.password, "password") == 0);
    CHECK(options.count == 1000);
    CHECK(options.first == 1);
    CHECK(options.rate_per_second == 0);
    CHECK(options.mechanism == MECHANISM_SCRAM_SHA_1);
    CHECK(options.tls == SESSION_TLS_NONE);
    CHECK(options.tls_ca_path == NULL);
    CHECK(options.reactors == 1);
    /* One source per 20,000 sessions on loopback: 1000 sessions, one. */
    CHECK(!options.sources_given);
    CHECK(options.sources == 1);
    CHECK(options.hold_s == 0);
    CHECK(options.timeout_s == 60);
    CHECK(options.json_path == NULL);
    CHECK(options.scenario == &login_scenario);

    CHECK(parse_with(&chat_scenario, &options, (const char *)NULL) == CLI_EXIT_OK);
    CHECK(options.message_rate_per_second == 1000);
    CHECK(options.window == 0);
    CHECK(options.duration_s == 10);
    CHECK(options.drain_s == 2);
}

static void test_sources_follow_count(void)
{
    xmpp_options options;
    /* One source address per SESSION_SESSIONS_PER_SOURCE (5,000) sessions. */
    CHECK(LOGIN("--count", "5000") == CLI_EXIT_OK);
    CHECK(options.sources == 1);
    CHECK(LOGIN("--count", "5001") == CLI_EXIT_OK);
    CHECK(options.sources == 2);
    CHECK(LOGIN("--count", "200000", "--reactors", "12") == CLI_EXIT_OK);
    CHECK(options.sources == 40);
    CHECK(LOGIN("--host", "10.0.0.1") == CLI_EXIT_OK);
    CHECK(options.sources == 0);
    CHECK(LOGIN("--host", "10.0.0.1", "--sources", "1") == CLI_EXIT_USAGE);
    CHECK(LOGIN("--sources", "0") == CLI_EXIT_OK);
    CHECK(options.sources_given && options.sources == 0);
}

static void test_number_ranges(void)
{
    CHECK(login_accepts("--port", "1") && login_accepts("--port", "65535"));
    CHECK(!login_accepts("--port", "0") && !login_accepts("--port", "65536"));
    CHECK(login_accepts("--count", "1"));
    CHECK(!login_accepts("--count", "0"));
    CHECK(login_accepts("--first", "0") && login_accepts("--first", "1000000000"));
    CHECK(!login_accepts("--first", "1000000001"));
    CHECK(login_accepts("--rate", "0") && login_accepts("--rate", "10000000"));
    CHECK(!login_accepts("--rate", "10000001"));
    CHECK(login_accepts("--reactors", "1") && login_accepts("--reactors", "64"));
    CHECK(!login_accepts("--reactors", "0") && !login_accepts("--reactors", "65"));
    CHECK(login_accepts("--sources", "0") && login_accepts("--sources", "254"));
    CHECK(!login_accepts("--sources", "255"));
    CHECK(login_accepts("--hold", "0") && login_accepts("--hold", "86400"));
    CHECK(!login_accepts("--hold", "86401"));
    CHECK(login_accepts("--timeout-s", "1") && login_accepts("--timeout-s", "86400"));
    CHECK(!login_accepts("--timeout-s", "0") && !login_accepts("--timeout-s", "86401"));
    CHECK(chat_accepts("--duration", "1") && chat_accepts("--duration", "86400"));
    CHECK(!chat_accepts("--duration", "0") && !chat_accepts("--duration", "86401"));
    CHECK(chat_accepts("--drain", "0") && chat_accepts("--drain", "86400"));
    CHECK(!chat_accepts("--drain", "86401"));
    CHECK(chat_accepts("--window", "0") && chat_accepts("--window", "1000000"));
    CHECK(!chat_accepts("--window", "1000001"));
}

static void test_count_bounds(void)
{
    xmpp_options options;
    /* The most sessions one run takes, spread so no reactor passes its
     * 65,536 connections. */
    CHECK(LOGIN("--count", "1000000", "--reactors", "16") == CLI_EXIT_OK);
    CHECK(options.count == 1000000);
    CHECK(LOGIN("--count", "1000001", "--reactors", "16") == CLI_EXIT_USAGE);
    /* One reactor holds at most 65,536 connections. */
    CHECK(LOGIN("--count", "65535") == CLI_EXIT_OK);
    CHECK(LOGIN("--count", "65536") == CLI_EXIT_USAGE);
}

static void test_values_are_kept(void)
{
    xmpp_options options;
    CHECK(LOGIN("--host", "127.0.0.2", "--port", "15222", "--domain", "example.org", "--users",
                "bench-%d", "--password", "secret", "--first", "7", "--rate", "250", "--hold", "3",
                "--json", "/tmp/out.json") == CLI_EXIT_OK);
    CHECK(strcmp(options.host, "127.0.0.2") == 0 && options.port == 15222);
    CHECK(strcmp(options.domain, "example.org") == 0);
    CHECK(strcmp(options.users, "bench-%d") == 0 && strcmp(options.password, "secret") == 0);
    CHECK(options.first == 7 && options.rate_per_second == 250 && options.hold_s == 3);
    CHECK(strcmp(options.json_path, "/tmp/out.json") == 0);
    /* chat's --rate is the message rate, not the login rate. */
    CHECK(CHAT("--rate", "42") == CLI_EXIT_OK);
    CHECK(options.message_rate_per_second == 42 && options.rate_per_second == 0);
}

static void test_rejections(void)
{
    xmpp_options options;
    CHECK(LOGIN("--no-such-option") == CLI_EXIT_USAGE);
    CHECK(LOGIN("--port") == CLI_EXIT_USAGE); /* missing its value */
    CHECK(LOGIN("surplus") == CLI_EXIT_USAGE);
    CHECK(LOGIN("--count", "ten") == CLI_EXIT_USAGE);
    CHECK(LOGIN("--count", "10x") == CLI_EXIT_USAGE);
    CHECK(LOGIN("--count", "-1") == CLI_EXIT_USAGE);
    CHECK(LOGIN("--count", "+1") == CLI_EXIT_USAGE);
    CHECK(LOGIN("--count", "") == CLI_EXIT_USAGE);
    CHECK(LOGIN("--count", "99999999999999999999999") == CLI_EXIT_USAGE);
    CHECK(LOGIN("--window", "5") == CLI_EXIT_USAGE);
    CHECK(LOGIN("--duration", "5") == CLI_EXIT_USAGE);
    CHECK(LOGIN("--drain", "5") == CLI_EXIT_USAGE);
    CHECK(LOGIN("--host", "localhost") == CLI_EXIT_USAGE);
    CHECK(LOGIN("--host", "::1") == CLI_EXIT_USAGE);
    CHECK(LOGIN("--domain", "a b") == CLI_EXIT_USAGE);
    CHECK(LOGIN("--domain", "a'b") == CLI_EXIT_USAGE);
    CHECK(LOGIN("--password", "") == CLI_EXIT_USAGE);
}

static void test_users_pattern(void)
{
    xmpp_options options;
    CHECK(LOGIN("--users", "user") == CLI_EXIT_USAGE);
    CHECK(LOGIN("--users", "user%s") == CLI_EXIT_USAGE);
    CHECK(LOGIN("--users", "a%db%d") == CLI_EXIT_USAGE);
    CHECK(LOGIN("--users", "%%d") == CLI_EXIT_USAGE);
    CHECK(LOGIN("--users", "%d") == CLI_EXIT_OK);
    CHECK(LOGIN("--users", "x%dy") == CLI_EXIT_OK);
}

static void test_mechanisms(void)
{
    xmpp_options options;
    CHECK(LOGIN("--mechanism", "SCRAM-SHA-256") == CLI_EXIT_OK);
    CHECK(options.mechanism == MECHANISM_SCRAM_SHA_256);
    CHECK(LOGIN("--mechanism", "SCRAM-SHA-1") == CLI_EXIT_OK);
    CHECK(options.mechanism == MECHANISM_SCRAM_SHA_1);
    CHECK(LOGIN("--mechanism", "PLAIN") == CLI_EXIT_OK);
    CHECK(options.mechanism == MECHANISM_PLAIN);
    CHECK(LOGIN("--mechanism", "ANONYMOUS") == CLI_EXIT_OK);
    CHECK(options.mechanism == MECHANISM_ANONYMOUS);
    CHECK(LOGIN("--mechanism", "plain") == CLI_EXIT_USAGE);
    CHECK(LOGIN("--mechanism", "DIGEST-MD5") == CLI_EXIT_USAGE);
    CHECK(LOGIN("--mechanism", "") == CLI_EXIT_USAGE);
}

static void test_anonymous_needs_no_users(void)
{
    xmpp_options options;
    /* No %d needed: ANONYMOUS sends no user name. */
    CHECK(LOGIN("--mechanism", "ANONYMOUS", "--users", "nobody") == CLI_EXIT_OK);
    CHECK(options.mechanism == MECHANISM_ANONYMOUS);
    /* The same pattern is refused when a name is sent. */
    CHECK(LOGIN("--mechanism", "PLAIN", "--users", "nobody") == CLI_EXIT_USAGE);
    /* chat addresses partners by user name, which ANONYMOUS cannot know. */
    CHECK(CHAT("--mechanism", "ANONYMOUS") == CLI_EXIT_USAGE);
}

static void test_tls(void)
{
    xmpp_options options;
    CHECK(LOGIN("--tls", "none") == CLI_EXIT_OK);
    CHECK(options.tls == SESSION_TLS_NONE);
    CHECK(LOGIN("--tls", "starttls") == CLI_EXIT_OK);
    CHECK(options.tls == SESSION_TLS_STARTTLS && options.tls_ca_path == NULL);
    CHECK(LOGIN("--tls", "direct", "--tls-ca", "/etc/ssl/ca.pem") == CLI_EXIT_OK);
    CHECK(options.tls == SESSION_TLS_DIRECT);
    CHECK(options.tls_ca_path != NULL && strcmp(options.tls_ca_path, "/etc/ssl/ca.pem") == 0);
    CHECK(LOGIN("--tls", "STARTTLS") == CLI_EXIT_USAGE);
    CHECK(LOGIN("--tls", "ssl") == CLI_EXIT_USAGE);
    CHECK(LOGIN("--tls", "") == CLI_EXIT_USAGE);
    CHECK(LOGIN("--tls") == CLI_EXIT_USAGE);
    /* A CA to verify against means nothing without TLS. */
    CHECK(LOGIN("--tls-ca", "/etc/ssl/ca.pem") == CLI_EXIT_USAGE);
    CHECK(LOGIN("--tls", "none", "--tls-ca", "/etc/ssl/ca.pem") == CLI_EXIT_USAGE);
}

/* Runs --help with stdout captured into text (capacity bytes). */
static int help_text(char *text, size_t capacity)
{
    xmpp_options options;
    FILE *capture = tmpfile();
    CHECK(capture != NULL);
    if (capture == NULL)
        return -2;
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    dup2(fileno(capture), STDOUT_FILENO);
    int status = LOGIN("--help");
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    rewind(capture);
    size_t length = fread(text, 1, capacity - 1, capture);
    text[length] = '\0';
    fclose(capture);
    return status;
}

static void test_help(void)
{
    char text[8192];
    CHECK(help_text(text, sizeof text) == CLI_EXIT_HELP);
    CHECK(strstr(text, "usage: test login") != NULL);
    CHECK(strstr(text, "--tls MODE") != NULL);
    CHECK(strstr(text, "none (default") != NULL);
    CHECK(strstr(text, "--tls-ca FILE") != NULL);
    CHECK(strstr(text, "ANONYMOUS") != NULL);
    CHECK(strstr(text, "--server-pid PID") != NULL);
}

static void test_server_pid(void)
{
    xmpp_options options;
    char own_pid[32];
    snprintf(own_pid, sizeof own_pid, "%d", (int)getpid());
    CHECK(LOGIN("--count", "10") == CLI_EXIT_OK);
    CHECK(options.server_pid == 0);
    CHECK(LOGIN("--server-pid", own_pid) == CLI_EXIT_OK);
    CHECK(options.server_pid == (uint64_t)getpid());
    CHECK(CHAT("--server-pid", own_pid) == CLI_EXIT_OK);
    CHECK(options.server_pid == (uint64_t)getpid());
    CHECK(LOGIN("--server-pid", "0") == CLI_EXIT_USAGE);
    CHECK(LOGIN("--server-pid", "4194305") == CLI_EXIT_USAGE); /* past PID_MAX_LIMIT */
    CHECK(LOGIN("--server-pid", "pid") == CLI_EXIT_USAGE);
    CHECK(LOGIN("--server-pid") == CLI_EXIT_USAGE);
    /* pids are below pid_max, at most 4194304: no process has this one. */
    CHECK(LOGIN("--server-pid", "4194304") == CLI_EXIT_USAGE);
}

/* idle runs on the engine when --login is anywhere among its arguments. */
static void test_idle_wants_login(void)
{
    char name[] = "idle", login[] = "--login", count[] = "--count", ten[] = "10";
    char logins[] = "--logins", raw[] = "--raw";
    char *first[] = {name, login, count, ten, NULL};
    char *last[] = {name, count, ten, login, NULL};
    char *none[] = {name, count, ten, raw, NULL};
    char *prefix[] = {name, logins, NULL};
    char *alone[] = {login, NULL}; /* argv[0] is the subcommand, never an option */
    CHECK(bench_idle_wants_login(4, first));
    CHECK(bench_idle_wants_login(4, last));
    CHECK(!bench_idle_wants_login(4, none));
    CHECK(!bench_idle_wants_login(2, prefix));
    CHECK(!bench_idle_wants_login(1, alone));
}

/* --------------------------------------------------------- bench_cli.h */

static void test_cli_parse_unsigned(void)
{
    uint64_t value = 7;
    CHECK(cli_parse_unsigned("test", "n", "0", 0, 10, &value) && value == 0);
    CHECK(cli_parse_unsigned("test", "n", "10", 0, 10, &value) && value == 10);
    CHECK(cli_parse_unsigned("test", "n", "18446744073709551615", 0, UINT64_MAX, &value) &&
          value == UINT64_MAX);
    value = 7;
    CHECK(!cli_parse_unsigned("test", "n", "18446744073709551616", 0, UINT64_MAX, &value));
    CHECK(!cli_parse_unsigned("test", "n", "11", 0, 10, &value));
    CHECK(!cli_parse_unsigned("test", "n", "4", 5, 10, &value));
    CHECK(!cli_parse_unsigned("test", "n", "", 0, 10, &value));
    CHECK(!cli_parse_unsigned("test", "n", "-0", 0, 10, &value));
    CHECK(!cli_parse_unsigned("test", "n", "+5", 0, 10, &value));
    CHECK(!cli_parse_unsigned("test", "n", "5 ", 0, 10, &value));
    CHECK(!cli_parse_unsigned("test", "n", "0x5", 0, 10, &value));
    CHECK(value == 7); /* refusals leave the value alone */
}

static const struct option cli_test_options[] = {
    {"alpha", required_argument, NULL, 'a'},
    {"beta", no_argument, NULL, 'b'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

typedef struct cli_seen {
    unsigned alpha, beta;
} cli_seen;

static bool cli_test_apply(int choice, const char *value, void *context)
{
    cli_seen *seen = context;
    if (choice == 'a') {
        seen->alpha++;
        return strcmp(value, "bad") != 0;
    }
    seen->beta++;
    return true;
}

static void cli_test_usage(FILE *out)
{
    fprintf(out, "usage: test\n");
}

/* Runs cli_parse_options over the NULL-terminated arguments. */
static int cli_run(cli_seen *seen, ...)
{
    char storage[ARGUMENTS_MAX][64];
    char *argv[ARGUMENTS_MAX + 1];
    int argc = 0;
    snprintf(storage[argc], sizeof storage[argc], "test");
    argv[argc] = storage[argc];
    argc++;
    va_list arguments;
    va_start(arguments, seen);
    for (const char *argument = va_arg(arguments, const char *);
         argument != NULL && (unsigned)argc < ARGUMENTS_MAX;
         argument = va_arg(arguments, const char *)) {
        snprintf(storage[argc], sizeof storage[argc], "%s", argument);
        argv[argc] = storage[argc];
        argc++;
    }
    va_end(arguments);
    argv[argc] = NULL;
    *seen = (cli_seen){0, 0};
    return cli_parse_options("test", argc, argv, cli_test_options, cli_test_usage, cli_test_apply,
                             seen);
}

static void test_cli_parse_options(void)
{
    cli_seen seen;
    CHECK(cli_run(&seen, "--alpha", "1", "--beta", "--alpha=2", (const char *)NULL) == CLI_EXIT_OK);
    CHECK(seen.alpha == 2 && seen.beta == 1);
    CHECK(cli_run(&seen, (const char *)NULL) == CLI_EXIT_OK && seen.alpha == 0);
    CHECK(cli_run(&seen, "--alpha", "bad", (const char *)NULL) == CLI_EXIT_USAGE);
    CHECK(cli_run(&seen, "--alpha", (const char *)NULL) == CLI_EXIT_USAGE);
    CHECK(cli_run(&seen, "--gamma", (const char *)NULL) == CLI_EXIT_USAGE);
    CHECK(cli_run(&seen, "-x", (const char *)NULL) == CLI_EXIT_USAGE);
    CHECK(cli_run(&seen, "--beta", "extra", (const char *)NULL) == CLI_EXIT_USAGE);
    CHECK(cli_run(&seen, "--beta=1", (const char *)NULL) == CLI_EXIT_USAGE);
    CHECK(cli_option_name(cli_test_options, 'a') != NULL &&
          strcmp(cli_option_name(cli_test_options, 'a'), "alpha") == 0);
    CHECK(strcmp(cli_option_name(cli_test_options, 'z'), "?") == 0);
}

int main(int argc, char **argv)
{
    const char *filter = argc > 1 ? argv[1] : NULL;
    harness_run("defaults", test_defaults, filter);
    harness_run("sources_follow_count", test_sources_follow_count, filter);
    harness_run("number_ranges", test_number_ranges, filter);
    harness_run("count_bounds", test_count_bounds, filter);
    harness_run("values_are_kept", test_values_are_kept, filter);
    harness_run("rejections", test_rejections, filter);
    harness_run("users_pattern", test_users_pattern, filter);
    harness_run("mechanisms", test_mechanisms, filter);
    harness_run("anonymous_needs_no_users", test_anonymous_needs_no_users, filter);
    harness_run("tls", test_tls, filter);
    harness_run("help", test_help, filter);
    harness_run("server_pid", test_server_pid, filter);
    harness_run("idle_wants_login", test_idle_wants_login, filter);
    harness_run("cli_parse_unsigned", test_cli_parse_unsigned, filter);
    harness_run("cli_parse_options", test_cli_parse_options, filter);
    return harness_finish();
}
