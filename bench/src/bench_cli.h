/*
 * bench_cli.h: the command-line conventions every starling-bench tool and
 * subcommand shares. A nonsense argument gives exactly one line on stderr,
 * naming the command and the option, and exit status 2 (CLI_EXIT_USAGE);
 * --help prints the command's usage on stdout and exits 0.
 */
#ifndef STARLING_BENCH_CLI_H
#define STARLING_BENCH_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define CLI_EXIT_OK     0
#define CLI_EXIT_FAILED 1 /* the run went wrong: see the report */
#define CLI_EXIT_USAGE  2 /* the command line was nonsense */

/*
 * Parses text as a decimal whole number in [minimum, maximum] into *value.
 * On nonsense prints "COMMAND: --OPTION wants a whole number from MIN to
 * MAX, not 'TEXT'" and returns false. All strings borrowed.
 */
bool cli_parse_unsigned(const char *command, const char *option, const char *text, uint64_t minimum,
                        uint64_t maximum, uint64_t *value) __attribute__((warn_unused_result));

/*
 * Reports what getopt_long (run with opterr = 0 and an optstring starting
 * with ':') refused, as one line: an unknown option, or an option missing
 * its argument. choice is getopt_long's return ('?' or ':'); argv borrowed.
 */
void cli_report_getopt_error(const char *command, int choice, char **argv);

/* The long name of the option whose getopt value is choice, or "?" when
 * none has it. long_options is borrowed; the name is borrowed from it. */
struct option;
const char *cli_option_name(const struct option *long_options, int choice);

/* Reports a positional argument nobody asked for, as one line. */
void cli_report_unexpected_argument(const char *command, const char *argument);

struct option;
/* Applies one option to the command's options (borrowed); false after it
 * reported a bad value. */
typedef bool cli_apply_fn(int choice, const char *value, void *options);

/*
 * Runs getopt_long over argv from its first argument with long_options
 * (borrowed; the short optstring is ":h", --help mapped to 'h'), calling
 * apply for each option and usage(stdout) for --help. Returns CLI_EXIT_OK,
 * CLI_EXIT_HELP after --help, or CLI_EXIT_USAGE after one reported line.
 */
#define CLI_EXIT_HELP (-1)
int cli_parse_options(const char *command, int argc, char **argv, const struct option *long_options,
                      void (*usage)(FILE *out), cli_apply_fn *apply, void *options)
    __attribute__((warn_unused_result));

#endif
