/*
 * hash.h: the keyed hash of JIDs and the shard function every part uses.
 *
 * A session lives on the reactor that owns its bare JID's shard:
 * shard = hash(bare JID) mod reactor count (shared/DESIGN.md, "Threads and
 * ownership"). Everyone who must find a user's reactor (c2s after binding,
 * the router, the cluster drivers delivering to this node) calls
 * cluster_shard, so they can never disagree.
 *
 * The hash is SipHash-2-4 (Aumasson and Bernstein), keyed with 128 random
 * bits drawn once per process: a client choosing JIDs cannot aim them all
 * at one reactor or one hash bucket (hash flooding), because it cannot
 * know the key. The key is fixed for the life of the process, so a shard
 * never changes under a running session; shards are a node-local notion
 * and never cross the network, so nodes need not share a key.
 *
 * The JID must be in its normalised form (RFC 7622 PRECIS/IDNA applied)
 * before it is hashed: two spellings of one user must meet on one reactor.
 */
#ifndef STARLING_CLUSTER_HASH_H
#define STARLING_CLUSTER_HASH_H

#include <stddef.h>
#include <stdint.h>

/* SipHash-2-4 of bytes (borrowed) under key. Pure; exposed for the
 * reference test vectors and for tables that want their own key. */
uint64_t cluster_siphash(const uint8_t key[16], const void *bytes, size_t length);

/* The process key (16 bytes, copied into key). The first call draws it
 * from getrandom(2); later calls, from any thread, return the same. */
void cluster_hash_key(uint8_t key[16]);

/* SipHash-2-4 of bytes under the process key. */
uint64_t cluster_hash(const void *bytes, size_t length);

/* The reactor (0 .. reactor_count - 1) that owns the normalised bare JID
 * (borrowed). reactor_count must be at least 1. */
unsigned cluster_shard(const char *bare_jid, size_t length, unsigned reactor_count);

/* The same for a bare JID whose cluster_hash the caller already has (the
 * router hashes a recipient once for its shard and its session table). */
static inline unsigned cluster_shard_of_hash(uint64_t bare_jid_hash, unsigned reactor_count)
{
    return (unsigned)(bare_jid_hash % reactor_count);
}

#endif
