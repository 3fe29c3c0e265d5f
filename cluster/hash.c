/*
 * hash.c: SipHash-2-4, written from the SipHash paper (Aumasson and
 * Bernstein, 2012): four 64-bit words of state, two compression rounds per
 * 8-byte block, the length in the top byte of the last block, four
 * finalisation rounds.
 */
#include "cluster/hash.h"

#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

static uint64_t rotate_left(uint64_t value, unsigned bits)
{
    return (value << bits) | (value >> (64u - bits));
}

static uint64_t load_le64(const uint8_t *bytes)
{
    uint64_t value = 0;
    for (unsigned i = 0; i < 8; i++)
        value |= (uint64_t)bytes[i] << (8u * i);
    return value;
}

typedef struct sip_state {
    uint64_t v0, v1, v2, v3;
} sip_state;

static void sip_round(sip_state *s)
{
    s->v0 += s->v1;
    s->v1 = rotate_left(s->v1, 13);
    s->v1 ^= s->v0;
    s->v0 = rotate_left(s->v0, 32);
    s->v2 += s->v3;
    s->v3 = rotate_left(s->v3, 16);
    s->v3 ^= s->v2;
    s->v0 += s->v3;
    s->v3 = rotate_left(s->v3, 21);
    s->v3 ^= s->v0;
    s->v2 += s->v1;
    s->v1 = rotate_left(s->v1, 17);
    s->v1 ^= s->v2;
    s->v2 = rotate_left(s->v2, 32);
}

static void sip_compress(sip_state *s, uint64_t block)
{
    s->v3 ^= block;
    sip_round(s);
    sip_round(s);
    s->v0 ^= block;
}

uint64_t cluster_siphash(const uint8_t key[16], const void *bytes, size_t length)
{
    const uint8_t *in = bytes;
    uint64_t k0 = load_le64(key), k1 = load_le64(key + 8);
    sip_state s = {
        .v0 = k0 ^ 0x736f6d6570736575ull,
        .v1 = k1 ^ 0x646f72616e646f6dull,
        .v2 = k0 ^ 0x6c7967656e657261ull,
        .v3 = k1 ^ 0x7465646279746573ull,
    };
    size_t whole = length - length % 8u;
    for (size_t at = 0; at < whole; at += 8)
        sip_compress(&s, load_le64(in + at));
    uint64_t last = (uint64_t)(length & 0xffu) << 56;
    for (size_t i = 0; i < length % 8u; i++)
        last |= (uint64_t)in[whole + i] << (8u * i);
    sip_compress(&s, last);
    s.v2 ^= 0xff;
    for (unsigned round = 0; round < 4; round++)
        sip_round(&s);
    return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

static uint8_t process_key[16];
static pthread_once_t process_key_once = PTHREAD_ONCE_INIT;

/* getrandom(2) on 16 bytes never returns short once the pool is
 * initialised; a process that cannot get randomness at all must not run
 * with a guessable key, so it stops. */
static void process_key_draw(void)
{
    ssize_t got = getrandom(process_key, sizeof process_key, 0);
    if (got != (ssize_t)sizeof process_key)
        abort();
}

void cluster_hash_key(uint8_t key[16])
{
    pthread_once(&process_key_once, process_key_draw);
    memcpy(key, process_key, sizeof process_key);
}

uint64_t cluster_hash(const void *bytes, size_t length)
{
    pthread_once(&process_key_once, process_key_draw);
    return cluster_siphash(process_key, bytes, length);
}

unsigned cluster_shard(const char *bare_jid, size_t length, unsigned reactor_count)
{
    assert(reactor_count >= 1);
    return cluster_shard_of_hash(cluster_hash(bare_jid, length), reactor_count);
}
