/*
 * auth_throttle.c: the two set-associative tables of failed logins.
 *
 * An entry is 32 bytes: its key (0 marks a free slot), when it last failed,
 * until when it is delayed, and its failure count. An entry whose last
 * failure is older than LIMIT_AUTH_THROTTLE_FORGET_MS is treated as free
 * (time-bucketed forgetting without a sweep), so a table never needs a
 * cleaning pass; a set with no free slot gives up the entry whose last
 * failure is oldest (least recently failed first, which is what an LRU
 * would keep too, since entries are touched only by failures).
 */
#include "server/xmpp/auth_throttle.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>
#include <openssl/siphash.h>

typedef struct throttle_entry {
    uint64_t key;
    uint64_t last_failure_ms;
    uint64_t delayed_until_ms;
    uint32_t failures;
    uint32_t unused;
} throttle_entry;

typedef struct throttle_table {
    throttle_entry *entries;
    unsigned sets;
    uint64_t hash_key[2];
} throttle_table;

struct auth_throttle {
    throttle_table tables[2];
    uint64_t failures;
    uint64_t evictions;
};

static unsigned entries_wanted(unsigned entries, unsigned limit)
{
    if (entries == 0 || entries > limit)
        entries = limit;
    unsigned sets = entries / AUTH_THROTTLE_WAYS;
    return sets == 0 ? 1u : sets;
}

static int table_init(throttle_table *table, unsigned sets)
{
    table->sets = sets;
    table->entries = calloc((size_t)sets * AUTH_THROTTLE_WAYS, sizeof *table->entries);
    if (table->entries == NULL)
        return -1;
    RAND_bytes((uint8_t *)table->hash_key, sizeof table->hash_key);
    return 0;
}

auth_throttle *auth_throttle_create(unsigned account_entries, unsigned address_entries)
{
    auth_throttle *throttle = calloc(1, sizeof *throttle);
    if (throttle == NULL)
        return NULL;
    if (table_init(&throttle->tables[AUTH_THROTTLE_ACCOUNT],
                   entries_wanted(account_entries, LIMIT_AUTH_THROTTLE_ACCOUNTS)) != 0 ||
        table_init(&throttle->tables[AUTH_THROTTLE_ADDRESS],
                   entries_wanted(address_entries, LIMIT_AUTH_THROTTLE_ADDRESSES)) != 0) {
        auth_throttle_destroy(throttle);
        return NULL;
    }
    return throttle;
}

void auth_throttle_destroy(auth_throttle *throttle)
{
    if (throttle == NULL)
        return;
    free(throttle->tables[0].entries);
    free(throttle->tables[1].entries);
    free(throttle);
}

static uint64_t key_nonzero(uint64_t key)
{
    return key == 0 ? 1u : key;
}

uint64_t auth_throttle_account_key(const auth_throttle *throttle, const char *localpart,
                                   size_t localpart_len, const char *domain, size_t domain_len)
{
    /* localpart '@' domain: '@' cannot occur in a prepared localpart, so
     * no two accounts give the same bytes. */
    uint8_t bytes[2 * LIMIT_STORAGE_JID_PART_BYTES_MAX + 1];
    if (localpart_len > LIMIT_STORAGE_JID_PART_BYTES_MAX)
        localpart_len = LIMIT_STORAGE_JID_PART_BYTES_MAX;
    if (domain_len > LIMIT_STORAGE_JID_PART_BYTES_MAX)
        domain_len = LIMIT_STORAGE_JID_PART_BYTES_MAX;
    memcpy(bytes, localpart, localpart_len);
    bytes[localpart_len] = '@';
    memcpy(bytes + localpart_len + 1, domain, domain_len);
    const throttle_table *table = &throttle->tables[AUTH_THROTTLE_ACCOUNT];
    return key_nonzero(SIPHASH_24(table->hash_key, bytes, localpart_len + 1 + domain_len));
}

uint64_t auth_throttle_address_key(const auth_throttle *throttle, const struct sockaddr *address)
{
    static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    uint8_t bytes[9];
    size_t length;
    if (address == NULL)
        return 0;
    if (address->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)address;
        bytes[0] = 4;
        memcpy(bytes + 1, &in->sin_addr, 4);
        length = 5;
    } else if (address->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)address;
        const uint8_t *raw = in6->sin6_addr.s6_addr;
        if (memcmp(raw, v4_mapped, sizeof v4_mapped) == 0) {
            bytes[0] = 4;
            memcpy(bytes + 1, raw + 12, 4);
            length = 5;
        } else {
            bytes[0] = 6;
            memcpy(bytes + 1, raw, 8);
            length = 9;
        }
    } else {
        return 0;
    }
    const throttle_table *table = &throttle->tables[AUTH_THROTTLE_ADDRESS];
    return key_nonzero(SIPHASH_24(table->hash_key, bytes, length));
}

uint64_t auth_throttle_delay_ms(auth_throttle_table table, uint32_t failures)
{
    uint64_t cap = table == AUTH_THROTTLE_ACCOUNT ? LIMIT_AUTH_THROTTLE_ACCOUNT_DELAY_MS_MAX
                                                  : LIMIT_AUTH_THROTTLE_ADDRESS_DELAY_MS_MAX;
    if (failures <= LIMIT_AUTH_THROTTLE_FREE_FAILURES)
        return 0;
    uint32_t doublings = failures - LIMIT_AUTH_THROTTLE_FREE_FAILURES - 1;
    if (doublings > 32)
        return cap;
    uint64_t delay = (uint64_t)LIMIT_AUTH_THROTTLE_DELAY_MS_BASE << doublings;
    return delay < cap ? delay : cap;
}

static bool entry_live(const throttle_entry *entry, uint64_t now_ms)
{
    return entry->key != 0 && now_ms - entry->last_failure_ms < LIMIT_AUTH_THROTTLE_FORGET_MS;
}

static throttle_entry *set_of(const throttle_table *table, uint64_t key)
{
    return &table->entries[(size_t)(key % table->sets) * AUTH_THROTTLE_WAYS];
}

static throttle_entry *entry_find(const throttle_table *table, uint64_t key)
{
    throttle_entry *set = set_of(table, key);
    for (unsigned way = 0; way < AUTH_THROTTLE_WAYS; way++)
        if (set[way].key == key)
            return &set[way];
    return NULL;
}

uint64_t auth_throttle_wait_ms(const auth_throttle *throttle, auth_throttle_table table,
                               uint64_t key, uint64_t now_ms)
{
    if (key == 0)
        return 0;
    const throttle_entry *entry = entry_find(&throttle->tables[table], key);
    if (entry == NULL || !entry_live(entry, now_ms) || entry->delayed_until_ms <= now_ms)
        return 0;
    return entry->delayed_until_ms - now_ms;
}

/* The slot key goes into: its own entry, else a free or forgotten one,
 * else the set's least recently failed (evicted is then set). */
static throttle_entry *entry_claim(throttle_table *table, uint64_t key, uint64_t now_ms,
                                   bool *evicted)
{
    throttle_entry *set = set_of(table, key);
    throttle_entry *oldest = &set[0];
    throttle_entry *free_slot = NULL;
    for (unsigned way = 0; way < AUTH_THROTTLE_WAYS; way++) {
        throttle_entry *entry = &set[way];
        if (entry->key == key) {
            if (!entry_live(entry, now_ms))
                memset(entry, 0, sizeof *entry);
            return entry;
        }
        if (free_slot == NULL && !entry_live(entry, now_ms))
            free_slot = entry;
        if (entry->last_failure_ms < oldest->last_failure_ms)
            oldest = entry;
    }
    throttle_entry *slot = free_slot;
    if (slot == NULL) {
        slot = oldest;
        *evicted = true;
    }
    memset(slot, 0, sizeof *slot);
    return slot;
}

auth_throttle_verdict auth_throttle_fail(auth_throttle *throttle, auth_throttle_table table,
                                         uint64_t key, uint64_t now_ms)
{
    auth_throttle_verdict verdict = {0};
    if (key == 0)
        return verdict;
    throttle_entry *entry = entry_claim(&throttle->tables[table], key, now_ms, &verdict.evicted);
    entry->key = key;
    entry->last_failure_ms = now_ms;
    if (entry->failures < UINT32_MAX)
        entry->failures++;
    uint64_t delay = auth_throttle_delay_ms(table, entry->failures);
    entry->delayed_until_ms = now_ms + delay;
    throttle->failures++;
    if (verdict.evicted)
        throttle->evictions++;
    verdict.failures = entry->failures;
    verdict.delay_ms = delay;
    return verdict;
}

void auth_throttle_reset(auth_throttle *throttle, auth_throttle_table table, uint64_t key)
{
    if (key == 0)
        return;
    throttle_entry *entry = entry_find(&throttle->tables[table], key);
    if (entry != NULL)
        memset(entry, 0, sizeof *entry);
}

void auth_throttle_get_stats(const auth_throttle *throttle, auth_throttle_stats *stats)
{
    memset(stats, 0, sizeof *stats);
    stats->failures = throttle->failures;
    stats->evictions = throttle->evictions;
    for (unsigned t = 0; t < 2; t++) {
        const throttle_table *table = &throttle->tables[t];
        unsigned capacity = table->sets * AUTH_THROTTLE_WAYS;
        stats->capacity[t] = capacity;
        for (unsigned i = 0; i < capacity; i++)
            if (table->entries[i].key != 0)
                stats->entries[t]++;
    }
}
