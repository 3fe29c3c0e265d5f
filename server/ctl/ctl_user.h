/*
 * ctl_user.h: `starlingctl user ...`, account management on the storage
 * the configuration names.
 *
 *   starlingctl user add JID PASSWORD
 *   starlingctl user passwd JID PASSWORD
 *   starlingctl user delete JID
 *   starlingctl user list [DOMAIN]
 *   starlingctl user import [--skip-existing] [--hashes LIST] FILE  ('-': stdin)
 *
 * each with `-c FILE` / `--config FILE` (default: no file, the built-in
 * defaults with STARLING_* overrides, exactly what `starling` reads). Every
 * failure is one line on stderr and one of the exit statuses below.
 */
#ifndef STARLING_SERVER_CTL_CTL_USER_H
#define STARLING_SERVER_CTL_CTL_USER_H

#include <stdio.h>

/* Exit statuses of `starlingctl user ...` (documented in the usage text
 * and README.md). */
typedef enum ctl_exit {
    CTL_EXIT_OK = 0,
    CTL_EXIT_FAILURE = 1,        /* anything else: an internal or I/O error, a failed import line */
    CTL_EXIT_USAGE = 2,          /* bad arguments, a bad configuration or storage section */
    CTL_EXIT_BAD_JID = 3,        /* a malformed JID or password (import: a malformed line) */
    CTL_EXIT_UNKNOWN_DOMAIN = 4, /* the JID's domain is not one the configuration serves */
    CTL_EXIT_EXISTS = 5,         /* the user exists already */
    CTL_EXIT_NO_SUCH_USER = 6,   /* the user does not exist */
    CTL_EXIT_UNAVAILABLE = 7,    /* the database cannot be reached or does not answer */
    CTL_EXIT_SCHEMA = 8,         /* the database schema is newer than this binary */
} ctl_exit;

/* Runs `starlingctl user ...`: argv[0] is "user", argc counts from it
 * (both borrowed). config_path is a -c given before "user" (borrowed, may
 * be NULL). Returns a ctl_exit. */
int ctl_user_main(int argc, char **argv, const char *config_path);

/* The usage lines of the user subcommands, for starlingctl --help. */
void ctl_user_usage(FILE *out);

#endif
