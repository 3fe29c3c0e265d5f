/*
 * local.c: the `local` cluster driver, for a single node (the default).
 *
 * The directory is this node's own sessions: each reactor keeps the full
 * JIDs published for the bare JIDs of its shard (cluster/hash.h), in a
 * hash table only that reactor touches. Every operation is therefore a
 * message to the shard's reactor (through its mailbox, the same hop a
 * stanza takes), run there, and answered with a message back to the
 * asking reactor, exactly as a network driver's answers arrive. Delivery
 * to this node is a loopback: the stanza goes to the recipient's shard
 * reactor and into host.on_stanza. No other node exists, so node down
 * never happens and any node number but 0 is invalid.
 *
 * An answer the asking reactor's mailbox refuses waits in the answering
 * reactor's list until its next cluster_poll; the front end's bound on
 * outstanding requests bounds that list.
 */
#include "cluster/hash.h"
#include "cluster/internal.h"

#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOCAL_NODE_NAME_BYTES_MAX 63u
#define LOCAL_BUCKETS_INITIAL     64u

/* One published full JID, chained in the bucket of its bare JID's hash so
 * that all of a user's resources meet in one chain. */
typedef struct local_entry {
    struct local_entry *next;
    uint64_t bare_hash;
    uint32_t length;
    uint32_t bare_length;
    char jid[];
} local_entry;

/* What one reactor owns. Touched only by that reactor's thread. */
typedef struct local_shard {
    alignas(64) local_entry **buckets; /* owned; bucket_count chains */
    size_t bucket_count;               /* a power of two */
    size_t entry_count;
    cluster_request *replies_head; /* answers waiting for a full mailbox */
    cluster_request *replies_tail;
} local_shard;

typedef struct local_state {
    const cluster_host *host;
    local_shard *shards; /* owned; host->reactor_count */
    char node_name[LOCAL_NODE_NAME_BYTES_MAX + 1];
} local_state;

static rx_status post(local_state *state, unsigned reactor, rx_message_fn *function,
                      cluster_request *request, uint64_t word0, uint64_t word1)
{
    rx_message message = {.function = function, .pointer = request, .words = {word0, word1}};
    if (state->host->post != NULL)
        return state->host->post(state->host->post_context, reactor, &message);
    return rx_post(reactor, &message);
}

static cluster_status status_of_post(rx_status status)
{
    return status == RX_ERR_FULL ? CLUSTER_BUSY : CLUSTER_CLOSED;
}

/* ------------------------------------------------------------ directory */

static size_t bucket_of(const local_shard *shard, uint64_t bare_hash)
{
    /* The high half: the low bits choose the shard (hash mod reactors). */
    return (size_t)(bare_hash >> 32) & (shard->bucket_count - 1);
}

static local_entry **entry_find(local_shard *shard, uint64_t bare_hash, const char *jid,
                                size_t length)
{
    local_entry **link = &shard->buckets[bucket_of(shard, bare_hash)];
    for (; *link != NULL; link = &(*link)->next)
        if ((*link)->length == length && memcmp((*link)->jid, jid, length) == 0)
            return link;
    return link;
}

/* Doubles the buckets when the table is fuller than one entry per bucket.
 * false only when memory ran out (the table stays as it was). */
static bool shard_grow(local_shard *shard)
{
    if (shard->entry_count < shard->bucket_count)
        return true;
    size_t count = shard->bucket_count * 2;
    local_entry **buckets = calloc(count, sizeof *buckets);
    if (buckets == NULL)
        return false;
    local_shard grown = {.buckets = buckets, .bucket_count = count};
    for (size_t i = 0; i < shard->bucket_count; i++) {
        local_entry *entry = shard->buckets[i];
        while (entry != NULL) {
            local_entry *next = entry->next;
            local_entry **head = &buckets[bucket_of(&grown, entry->bare_hash)];
            entry->next = *head;
            *head = entry;
            entry = next;
        }
    }
    free(shard->buckets);
    shard->buckets = buckets;
    shard->bucket_count = count;
    return true;
}

static cluster_status directory_publish(local_shard *shard, const char *jid, size_t length)
{
    size_t bare_length = cluster_bare_length(jid, length);
    uint64_t bare_hash = cluster_hash(jid, bare_length);
    if (*entry_find(shard, bare_hash, jid, length) != NULL)
        return CLUSTER_OK;
    if (shard->entry_count >= LIMIT_SESSIONS_PER_REACTOR)
        return CLUSTER_BUSY;
    if (!shard_grow(shard))
        return CLUSTER_NOMEM;
    local_entry *entry = malloc(sizeof *entry + length);
    if (entry == NULL)
        return CLUSTER_NOMEM;
    entry->bare_hash = bare_hash;
    entry->length = (uint32_t)length;
    entry->bare_length = (uint32_t)bare_length;
    memcpy(entry->jid, jid, length);
    local_entry **head = &shard->buckets[bucket_of(shard, bare_hash)];
    entry->next = *head;
    *head = entry;
    shard->entry_count++;
    return CLUSTER_OK;
}

static void directory_withdraw(local_shard *shard, const char *jid, size_t length)
{
    uint64_t bare_hash = cluster_hash(jid, cluster_bare_length(jid, length));
    local_entry **link = entry_find(shard, bare_hash, jid, length);
    local_entry *entry = *link;
    if (entry == NULL)
        return;
    *link = entry->next;
    free(entry);
    shard->entry_count--;
}

static bool directory_holds(const local_shard *shard, const char *bare, size_t length)
{
    uint64_t bare_hash = cluster_hash(bare, length);
    const local_entry *entry = shard->buckets[bucket_of(shard, bare_hash)];
    for (; entry != NULL; entry = entry->next)
        if (entry->bare_length == length && memcmp(entry->jid, bare, length) == 0)
            return true;
    return false;
}

/* -------------------------------------------------------------- answers */

static void on_reply(const rx_message *message)
{
    cluster_request_complete(message->pointer);
}

static void reply_queue(local_shard *shard, cluster_request *request)
{
    request->next = NULL;
    if (shard->replies_tail != NULL)
        shard->replies_tail->next = request;
    else
        shard->replies_head = request;
    shard->replies_tail = request;
}

/* Sends request's answer from reactor `at` (on its thread) to the
 * submitter, through the mailbox even when that is `at` itself (so the
 * callback never runs inside a submission). */
static void reply_post(local_state *state, unsigned at, cluster_request *request)
{
    local_shard *shard = &state->shards[at];
    if (shard->replies_head != NULL ||
        post(state, request->reactor, on_reply, request, 0, 0) != RX_OK)
        reply_queue(shard, request); /* keeps the answers in order */
}

/* From a message handler on reactor `at`: completes at once when `at` is
 * the submitter, else posts the answer there. */
static void reply(local_state *state, unsigned at, cluster_request *request)
{
    if (at == request->reactor)
        cluster_request_complete(request);
    else
        reply_post(state, at, request);
}

static void local_poll(void *opaque, unsigned reactor)
{
    local_state *state = opaque;
    local_shard *shard = &state->shards[reactor];
    while (shard->replies_head != NULL) {
        cluster_request *request = shard->replies_head;
        if (post(state, request->reactor, on_reply, request, 0, 0) != RX_OK)
            return;
        shard->replies_head = request->next;
        if (shard->replies_head == NULL)
            shard->replies_tail = NULL;
    }
}

/* ----------------------------------------------------------- operations */

/* Runs on the reactor that owns the request's bare JID (words[0]). */
static void on_job(const rx_message *message)
{
    cluster_request *request = message->pointer;
    local_state *state = request->driver_state;
    unsigned at = (unsigned)message->words[0];
    local_shard *shard = &state->shards[at];
    request->status = CLUSTER_OK;
    switch (request->operation) {
    case CLUSTER_OPERATION_PUBLISH:
        request->status = directory_publish(shard, request->jid, request->jid_length);
        break;
    case CLUSTER_OPERATION_WITHDRAW:
        directory_withdraw(shard, request->jid, request->jid_length);
        break;
    case CLUSTER_OPERATION_LOOKUP:
        request->answer_count = 0;
        if (directory_holds(shard, request->jid, request->jid_length))
            request->answer[request->answer_count++] = 0;
        break;
    case CLUSTER_OPERATION_DELIVER:
        state->host->on_stanza(state->host->context, at, request->jid, request->jid_length,
                               request->stanza, request->stanza_length);
        break;
    case CLUSTER_OPERATION_FAN_OUT:
        break; /* fan-out parts arrive through on_fan_out_part */
    }
    reply(state, at, request);
}

/* One recipient of a fan-out, on its shard's reactor (words[0]); the last
 * part to finish answers. */
static void on_fan_out_part(const rx_message *message)
{
    cluster_request *request = message->pointer;
    local_state *state = request->driver_state;
    unsigned at = (unsigned)message->words[0];
    const cluster_bytes *recipient = &request->recipients[message->words[1]];
    state->host->on_stanza(state->host->context, at, recipient->bytes, recipient->length,
                           request->stanza, request->stanza_length);
    if (atomic_fetch_sub(&request->pending, 1) == 1) {
        request->status = atomic_load(&request->part_failed) ? CLUSTER_BUSY : CLUSTER_OK;
        reply(state, at, request);
    }
}

static unsigned owner_of(const local_state *state, const char *jid, size_t length)
{
    return cluster_shard(jid, cluster_bare_length(jid, length), state->host->reactor_count);
}

static cluster_status submit_fan_out(local_state *state, cluster_request *request)
{
    for (size_t i = 0; i < request->node_count; i++)
        if (request->nodes[i] != 0)
            return CLUSTER_INVALID;
    /* One count for each part and one for this submission, so no part can
     * answer before every part was posted. */
    atomic_store(&request->pending, request->recipient_count + 1);
    size_t posted = 0;
    rx_status failure = RX_OK;
    for (size_t i = 0; i < request->recipient_count; i++) {
        const cluster_bytes *recipient = &request->recipients[i];
        unsigned target = owner_of(state, recipient->bytes, recipient->length);
        rx_status status = post(state, target, on_fan_out_part, request, target, i);
        if (status == RX_OK) {
            posted++;
        } else {
            failure = status;
            atomic_store(&request->part_failed, true);
            atomic_fetch_sub(&request->pending, 1);
        }
    }
    if (posted == 0)
        return status_of_post(failure); /* nothing refers to the request */
    if (atomic_fetch_sub(&request->pending, 1) == 1) {
        request->status = atomic_load(&request->part_failed) ? CLUSTER_BUSY : CLUSTER_OK;
        reply_post(state, request->reactor, request);
    }
    return CLUSTER_OK;
}

static cluster_status local_submit(void *opaque, cluster_request *request)
{
    local_state *state = opaque;
    if (request->operation == CLUSTER_OPERATION_FAN_OUT)
        return submit_fan_out(state, request);
    if (request->operation == CLUSTER_OPERATION_DELIVER && request->node != 0)
        return CLUSTER_INVALID;
    unsigned owner = owner_of(state, request->jid, request->jid_length);
    rx_status status = post(state, owner, on_job, request, owner, 0);
    return status == RX_OK ? CLUSTER_OK : status_of_post(status);
}

/* ------------------------------------------------------------ lifecycle */

static void local_destroy(void *opaque)
{
    local_state *state = opaque;
    if (state == NULL)
        return;
    for (unsigned r = 0; r < state->host->reactor_count; r++) {
        local_shard *shard = &state->shards[r];
        for (size_t i = 0; i < shard->bucket_count; i++) {
            local_entry *entry = shard->buckets[i];
            while (entry != NULL) {
                local_entry *next = entry->next;
                free(entry);
                entry = next;
            }
        }
        free(shard->buckets);
        while (shard->replies_head != NULL) {
            cluster_request *request = shard->replies_head;
            shard->replies_head = request->next;
            free(request);
        }
    }
    free(state->shards);
    free(state);
}

static cluster_status local_create(cluster *owner, const cluster_option *options,
                                   size_t option_count, const cluster_host *host, void **out,
                                   char *error, size_t error_size)
{
    (void)owner;
    const char *name = "local";
    for (size_t i = 0; i < option_count; i++) {
        if (strcmp(options[i].key, "node") == 0 && options[i].value[0] != '\0' &&
            strlen(options[i].value) <= LOCAL_NODE_NAME_BYTES_MAX) {
            name = options[i].value;
        } else {
            snprintf(error, error_size, "cluster local: bad option '%s' (known: node, 1..%u bytes)",
                     options[i].key, LOCAL_NODE_NAME_BYTES_MAX);
            return CLUSTER_INVALID;
        }
    }
    local_state *state = calloc(1, sizeof *state);
    local_shard *shards =
        state != NULL ? aligned_alloc(64, sizeof *shards * host->reactor_count) : NULL;
    if (shards == NULL) {
        free(state);
        snprintf(error, error_size, "cluster local: out of memory");
        return CLUSTER_NOMEM;
    }
    memset(shards, 0, sizeof *shards * host->reactor_count);
    state->host = host;
    state->shards = shards;
    snprintf(state->node_name, sizeof state->node_name, "%s", name);
    for (unsigned r = 0; r < host->reactor_count; r++) {
        shards[r].bucket_count = LOCAL_BUCKETS_INITIAL;
        shards[r].buckets = calloc(LOCAL_BUCKETS_INITIAL, sizeof *shards[r].buckets);
        if (shards[r].buckets == NULL) {
            local_destroy(state);
            snprintf(error, error_size, "cluster local: out of memory");
            return CLUSTER_NOMEM;
        }
    }
    *out = state;
    return CLUSTER_OK;
}

static cluster_node local_self(const void *opaque)
{
    (void)opaque;
    return 0;
}

static const char *local_node_name(const void *opaque, cluster_node node)
{
    const local_state *state = opaque;
    return node == 0 ? state->node_name : "";
}

const cluster_driver cluster_driver_local = {
    .name = "local",
    .spans_nodes = false,
    .create = local_create,
    .destroy = local_destroy,
    .self = local_self,
    .node_name = local_node_name,
    .poll = local_poll,
    .submit = local_submit,
};
