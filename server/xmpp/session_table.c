/*
 * session_table.c: a chained hash table of users, each with a small array
 * of resources.
 *
 * The bucket is chosen by the high half of the bare JID's SipHash
 * (cluster_hash): the low bits already chose this reactor (hash mod
 * reactors), so with a power-of-two reactor count they are the same for
 * every user here and would crowd a fraction of the buckets. The bucket
 * array doubles when users outnumber buckets, so chains stay about one
 * long. A user's resources sit in one array (a handful, at most
 * LIMIT_SESSION_RESOURCES_PER_USER): a bare-JID delivery walks it in one
 * pass, and a removal moves the last resource into the hole.
 */
#include "server/xmpp/session_table.h"

#include <stdlib.h>
#include <string.h>

#include "cluster/hash.h"

#define SESSION_BUCKETS_INITIAL 64u

typedef struct table_user {
    struct table_user *next;
    uint64_t hash;
    session_user view;           /* what callers see; resources below */
    session_resource *resources; /* owned; capacity entries */
    size_t capacity;
    char bare[]; /* view.bare_jid */
} table_user;

struct session_table {
    table_user **buckets; /* owned; bucket_count chains */
    size_t bucket_count;  /* a power of two */
    size_t users;
    size_t sessions;
    size_t sessions_max;
    size_t resources_max;
    session_conflict_policy policy;
};

const char *session_status_name(session_status status)
{
    switch (status) {
    case SESSION_OK:
        return "ok";
    case SESSION_REPLACED:
        return "replaced";
    case SESSION_CONFLICT:
        return "conflict";
    case SESSION_USER_FULL:
        return "too many resources";
    case SESSION_TABLE_FULL:
        return "too many sessions";
    case SESSION_INVALID:
        return "invalid";
    case SESSION_NOMEM:
        return "out of memory";
    case SESSION_NOT_FOUND:
        return "not found";
    }
    return "unknown";
}

static size_t clamp(size_t value, size_t limit)
{
    return value == 0 || value > limit ? limit : value;
}

session_table *session_table_create(size_t sessions_max, size_t resources_per_user_max,
                                    session_conflict_policy policy)
{
    session_table *table = calloc(1, sizeof *table);
    if (table == NULL)
        return NULL;
    table->buckets = calloc(SESSION_BUCKETS_INITIAL, sizeof *table->buckets);
    if (table->buckets == NULL) {
        free(table);
        return NULL;
    }
    table->bucket_count = SESSION_BUCKETS_INITIAL;
    table->sessions_max = clamp(sessions_max, LIMIT_SESSIONS_PER_REACTOR);
    table->resources_max = clamp(resources_per_user_max, LIMIT_SESSION_RESOURCES_PER_USER);
    table->policy = policy;
    return table;
}

static void user_free(table_user *user)
{
    for (size_t i = 0; i < user->view.resource_count; i++)
        free((char *)user->resources[i].full_jid);
    free(user->resources);
    free(user);
}

void session_table_destroy(session_table *table)
{
    if (table == NULL)
        return;
    for (size_t i = 0; i < table->bucket_count; i++) {
        table_user *user = table->buckets[i];
        while (user != NULL) {
            table_user *next = user->next;
            user_free(user);
            user = next;
        }
    }
    free(table->buckets);
    free(table);
}

static size_t bucket_of(size_t bucket_count, uint64_t hash)
{
    return (size_t)(hash >> 32) & (bucket_count - 1);
}

/* The link that points at the user, or at the NULL ending its chain. */
static table_user **user_link(const session_table *table, const char *bare, size_t length,
                              uint64_t hash)
{
    table_user **link = &table->buckets[bucket_of(table->bucket_count, hash)];
    for (; *link != NULL; link = &(*link)->next)
        if ((*link)->hash == hash && (*link)->view.bare_length == length &&
            memcmp((*link)->bare, bare, length) == 0)
            return link;
    return link;
}

static table_user *user_find(const session_table *table, const char *bare, size_t length)
{
    return *user_link(table, bare, length, cluster_hash(bare, length));
}

static ptrdiff_t resource_index(const table_user *user, const char *resource, size_t length)
{
    for (size_t i = 0; i < user->view.resource_count; i++)
        if (user->resources[i].resource_length == length &&
            memcmp(user->resources[i].resource, resource, length) == 0)
            return (ptrdiff_t)i;
    return -1;
}

/* Doubles the buckets when users outnumber them. When memory runs out
 * the table stays as it was: still correct, with longer chains. */
static void table_grow(session_table *table)
{
    if (table->users < table->bucket_count)
        return;
    size_t count = table->bucket_count * 2;
    table_user **buckets = calloc(count, sizeof *buckets);
    if (buckets == NULL)
        return;
    for (size_t i = 0; i < table->bucket_count; i++) {
        table_user *user = table->buckets[i];
        while (user != NULL) {
            table_user *next = user->next;
            table_user **head = &buckets[bucket_of(count, user->hash)];
            user->next = *head;
            *head = user;
            user = next;
        }
    }
    free(table->buckets);
    table->buckets = buckets;
    table->bucket_count = count;
}

static bool parts_valid(const char *bare, size_t bare_length, const char *resource,
                        size_t resource_length)
{
    return bare != NULL && resource != NULL && bare_length > 0 && resource_length > 0 &&
           bare_length + 1 + resource_length <= LIMIT_ROUTE_JID_BYTES_MAX &&
           memchr(bare, '/', bare_length) == NULL;
}

static table_user *user_create(session_table *table, const char *bare, size_t length, uint64_t hash)
{
    table_user *user = calloc(1, sizeof *user + length);
    if (user == NULL)
        return NULL;
    memcpy(user->bare, bare, length);
    user->hash = hash;
    user->view.bare_jid = user->bare;
    user->view.bare_length = length;
    table_grow(table);
    table_user **head = &table->buckets[bucket_of(table->bucket_count, hash)];
    user->next = *head;
    *head = user;
    table->users++;
    return user;
}

static void user_unlink(session_table *table, table_user *user)
{
    table_user **link = user_link(table, user->bare, user->view.bare_length, user->hash);
    *link = user->next;
    table->users--;
    user_free(user);
}

/* Appends a resource to user; false when out of memory. */
static bool resource_add(table_user *user, const char *resource, size_t length, void *handle)
{
    if (user->view.resource_count == user->capacity) {
        /* Most users hold one resource per node (a phone): start with
         * room for one, so an idle session pays for no empty slot. */
        size_t capacity = user->capacity == 0 ? 1 : user->capacity * 2;
        session_resource *grown = realloc(user->resources, capacity * sizeof *grown);
        if (grown == NULL)
            return false;
        user->resources = grown;
        user->capacity = capacity;
        user->view.resources = grown;
    }
    size_t bare_length = user->view.bare_length;
    char *full = malloc(bare_length + 1 + length);
    if (full == NULL)
        return false;
    memcpy(full, user->bare, bare_length);
    full[bare_length] = '/';
    memcpy(full + bare_length + 1, resource, length);
    user->resources[user->view.resource_count++] = (session_resource){
        .full_jid = full,
        .full_length = bare_length + 1 + length,
        .resource = full + bare_length + 1,
        .resource_length = length,
        .handle = handle,
    };
    return true;
}

static session_status bind_existing(session_table *table, session_resource *held, void *handle,
                                    void **replaced)
{
    if (held->handle == handle)
        return SESSION_OK;
    if (table->policy == SESSION_CONFLICT_REFUSE)
        return SESSION_CONFLICT;
    *replaced = held->handle;
    held->handle = handle;
    held->available = false;
    held->priority = 0;
    return SESSION_REPLACED;
}

session_status session_table_bind(session_table *table, const char *bare, size_t bare_length,
                                  const char *resource, size_t resource_length, void *handle,
                                  void **replaced)
{
    *replaced = NULL;
    if (!parts_valid(bare, bare_length, resource, resource_length))
        return SESSION_INVALID;
    uint64_t hash = cluster_hash(bare, bare_length);
    table_user *user = *user_link(table, bare, bare_length, hash);
    if (user != NULL) {
        ptrdiff_t at = resource_index(user, resource, resource_length);
        if (at >= 0)
            return bind_existing(table, &user->resources[at], handle, replaced);
        if (user->view.resource_count >= table->resources_max)
            return SESSION_USER_FULL;
    }
    if (table->sessions >= table->sessions_max)
        return SESSION_TABLE_FULL;
    bool created = user == NULL;
    if (created && (user = user_create(table, bare, bare_length, hash)) == NULL)
        return SESSION_NOMEM;
    if (!resource_add(user, resource, resource_length, handle)) {
        if (created)
            user_unlink(table, user);
        return SESSION_NOMEM;
    }
    table->sessions++;
    return SESSION_OK;
}

session_status session_table_remove(session_table *table, const char *bare, size_t bare_length,
                                    const char *resource, size_t resource_length,
                                    const void *handle)
{
    table_user *user = user_find(table, bare, bare_length);
    ptrdiff_t at = user != NULL ? resource_index(user, resource, resource_length) : -1;
    if (at < 0 || user->resources[at].handle != handle)
        return SESSION_NOT_FOUND;
    free((char *)user->resources[at].full_jid);
    user->resources[at] = user->resources[--user->view.resource_count];
    table->sessions--;
    if (user->view.resource_count == 0)
        user_unlink(table, user);
    return SESSION_OK;
}

session_status session_table_set_presence(session_table *table, const char *bare,
                                          size_t bare_length, const char *resource,
                                          size_t resource_length, bool available, int8_t priority)
{
    table_user *user = user_find(table, bare, bare_length);
    ptrdiff_t at = user != NULL ? resource_index(user, resource, resource_length) : -1;
    if (at < 0)
        return SESSION_NOT_FOUND;
    user->resources[at].available = available;
    user->resources[at].priority = priority;
    return SESSION_OK;
}

const session_user *session_table_user(const session_table *table, const char *bare,
                                       size_t bare_length)
{
    return session_table_user_hashed(table, bare, bare_length, cluster_hash(bare, bare_length));
}

const session_user *session_table_user_hashed(const session_table *table, const char *bare,
                                              size_t bare_length, uint64_t bare_hash)
{
    const table_user *user = *user_link(table, bare, bare_length, bare_hash);
    return user != NULL ? &user->view : NULL;
}

const session_resource *session_table_find(const session_table *table, const char *bare,
                                           size_t bare_length, const char *resource,
                                           size_t resource_length)
{
    const table_user *user = user_find(table, bare, bare_length);
    ptrdiff_t at = user != NULL ? resource_index(user, resource, resource_length) : -1;
    return at >= 0 ? &user->resources[at] : NULL;
}

size_t session_table_sessions(const session_table *table)
{
    return table->sessions;
}

size_t session_table_users(const session_table *table)
{
    return table->users;
}
