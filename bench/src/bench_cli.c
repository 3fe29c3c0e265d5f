/*
 * bench_cli.c: shared command-line parsing for the bench tools. getopt_long
 * stays the parser; this file only makes its failures, and every value it
 * hands over, into a single clear line and a usage exit status.
 */
#include "bench/src/bench_cli.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool cli_parse_unsigned(const char *command, const char *option, const char *text, uint64_t minimum,
                        uint64_t maximum, uint64_t *value)
{
    char *end = NULL;
    errno = 0;
    unsigned long long parsed = strtoull(text, &end, 10);
    bool valid = errno == 0 && end != text && *end == '\0' && text[0] != '-' && text[0] != '+' &&
                 parsed >= minimum && parsed <= maximum;
    if (!valid) {
        fprintf(stderr, "%s: --%s wants a whole number from %" PRIu64 " to %" PRIu64 ", not '%s'\n",
                command, option, minimum, maximum, text);
        return false;
    }
    *value = (uint64_t)parsed;
    return true;
}

void cli_report_getopt_error(const char *command, int choice, char **argv)
{
    /* getopt_long has already moved optind past a long option it refused;
     * a refused short option is named by optopt instead. */
    const char *element = optind > 0 ? argv[optind - 1] : "";
    char short_option[3] = {'-', (char)optopt, '\0'};
    if (strncmp(element, "--", 2) != 0 && optopt != 0)
        element = short_option;
    if (choice == ':') {
        fprintf(stderr, "%s: option '%s' needs a value (see %s --help)\n", command, element,
                command);
        return;
    }
    fprintf(stderr, "%s: unknown option '%s' (see %s --help)\n", command, element, command);
}

void cli_report_unexpected_argument(const char *command, const char *argument)
{
    fprintf(stderr, "%s: unexpected argument '%s' (see %s --help)\n", command, argument, command);
}

const char *cli_option_name(const struct option *long_options, int choice)
{
    for (size_t i = 0; long_options[i].name != NULL; i++)
        if (long_options[i].val == choice)
            return long_options[i].name;
    return "?";
}

int cli_parse_options(const char *command, int argc, char **argv, const struct option *long_options,
                      void (*usage)(FILE *out), cli_apply_fn *apply, void *options)
{
    optind = 1;
    opterr = 0;
    int choice;
    while ((choice = getopt_long(argc, argv, ":h", long_options, NULL)) != -1) {
        if (choice == 'h') {
            usage(stdout);
            return CLI_EXIT_HELP;
        }
        if (choice == '?' || choice == ':') {
            cli_report_getopt_error(command, choice, argv);
            return CLI_EXIT_USAGE;
        }
        if (!apply(choice, optarg, options))
            return CLI_EXIT_USAGE;
    }
    if (optind < argc) {
        cli_report_unexpected_argument(command, argv[optind]);
        return CLI_EXIT_USAGE;
    }
    return CLI_EXIT_OK;
}
