/*
 * auth_throttle.h: slowing down password guessing, per account and per
 * source address.
 *
 * Each reactor owns one auth_throttle: two bounded tables, one keyed by
 * account (a bare JID) and one by source address (an IPv4 address, or the
 * /64 prefix of an IPv6 address, since one attacker usually holds a whole
 * /64). An entry counts failed logins; after LIMIT_AUTH_THROTTLE_FREE_FAILURES
 * of them each further failure sets a delay, LIMIT_AUTH_THROTTLE_DELAY_MS_BASE
 * doubled per failure up to a cap (one for accounts, a longer one for
 * addresses). An entry is forgotten LIMIT_AUTH_THROTTLE_FORGET_MS after its
 * last failure; a successful login resets its account's entry.
 *
 * How the SASL layer (server/xmpp/sasl.h) uses the delay: the failure
 * response of the attempt that set it is held back for the delay, and an
 * attempt that starts during it (necessarily on another connection) is
 * answered with temporary-auth-failure before its credentials are looked
 * at. A client that retries in sequence thus sees only slow failures,
 * never a refusal; an attacker running guesses in parallel gets one guess
 * checked per delay.
 *
 * Keys are SipHash-2-4 values of the account or address under a random key
 * drawn per table, so the tables hold no names and an attacker cannot aim
 * names at one set. Tables are set-associative (8 ways): a key lives in
 * the set its hash selects, and a full set evicts its least recently
 * failed entry (counted in stats). Lookups and updates cost one set scan.
 *
 * Per-reactor tables see only their reactor's traffic (SASL runs on the
 * reactor that accepted the connection, and the kernel spreads connections
 * over reactors by their 4-tuple). An attacker whose connections land on
 * all N reactors thus gets N times the budget of one: N guesses per delay
 * instead of one. That bound is accepted (delays still grow exponentially
 * on each reactor, so the total rate falls just as fast) in exchange for a
 * structure without any sharing between threads.
 *
 * Nothing here reads a clock or logs: callers pass now_ms (the reactor's
 * loop clock) and log what the results say.
 */
#ifndef STARLING_SERVER_XMPP_AUTH_THROTTLE_H
#define STARLING_SERVER_XMPP_AUTH_THROTTLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "proto/limits.h"

typedef struct auth_throttle auth_throttle;

/* The two tables. */
typedef enum auth_throttle_table {
    AUTH_THROTTLE_ACCOUNT = 0,
    AUTH_THROTTLE_ADDRESS,
} auth_throttle_table;

/* Ways of each set: a full set evicts one of these. */
#define AUTH_THROTTLE_WAYS 8u

/* Creates a throttle whose tables hold account_entries and address_entries
 * (each rounded down to a multiple of AUTH_THROTTLE_WAYS, at least one set;
 * 0 means the LIMIT_AUTH_THROTTLE_* default; over the limit is capped at
 * it). Returns an owned throttle, or NULL when allocation fails. */
auth_throttle *auth_throttle_create(unsigned account_entries, unsigned address_entries)
    __attribute__((warn_unused_result));

void auth_throttle_destroy(auth_throttle *throttle);

/* The key of an account: localpart and domain (both borrowed, already
 * prepared). Never 0. */
uint64_t auth_throttle_account_key(const auth_throttle *throttle, const char *localpart,
                                   size_t localpart_len, const char *domain, size_t domain_len);

/* The key of a source address (borrowed): IPv4, IPv6 (its /64; an
 * IPv4-mapped IPv6 address counts as the IPv4 one). Returns 0 (no key: do
 * not throttle) for NULL or any other family. */
uint64_t auth_throttle_address_key(const auth_throttle *throttle, const struct sockaddr *address);

/* Milliseconds left of key's delay at now_ms; 0 when an attempt may go
 * ahead (also for key 0). */
uint64_t auth_throttle_wait_ms(const auth_throttle *throttle, auth_throttle_table table,
                               uint64_t key, uint64_t now_ms);

/* What recording a failure did. */
typedef struct auth_throttle_verdict {
    uint32_t failures; /* failures of key, this one included */
    uint64_t delay_ms; /* the delay it now serves (0: none yet) */
    bool evicted;      /* a full set gave up another key's entry for it */
} auth_throttle_verdict;

/* Records a failed login for key (0: nothing, a zero verdict) at now_ms. */
auth_throttle_verdict auth_throttle_fail(auth_throttle *throttle, auth_throttle_table table,
                                         uint64_t key, uint64_t now_ms);

/* Forgets key's failures (a successful login). */
void auth_throttle_reset(auth_throttle *throttle, auth_throttle_table table, uint64_t key);

/* The delay a key serves after its failures-th failure, for table. */
uint64_t auth_throttle_delay_ms(auth_throttle_table table, uint32_t failures);

/* Counters of one throttle (its reactor's). */
typedef struct auth_throttle_stats {
    uint64_t failures;    /* failures recorded, both tables */
    uint64_t evictions;   /* entries given up for another key */
    unsigned entries[2];  /* live entries per table (expired ones included until reused) */
    unsigned capacity[2]; /* entries per table */
} auth_throttle_stats;

void auth_throttle_get_stats(const auth_throttle *throttle, auth_throttle_stats *stats);

#endif
