/*
 * sasl_fake.h: a storage test double for the SASL tests and the fuzz
 * target: a handful of users held in memory, whose credential fetches
 * complete either inside the fetch call (inline) or when the test calls
 * fake_storage_deliver (deferred, as a real driver does on a later loop
 * iteration). Header-only so that the fuzz target can compile it with its
 * instrumentation.
 */
#ifndef STARLING_TESTS_XMPP_SASL_FAKE_H
#define STARLING_TESTS_XMPP_SASL_FAKE_H

#include <stdbool.h>
#include <string.h>

#include <openssl/rand.h>

#include "proto/scram.h"
#include "storage/storage.h"

#define FAKE_USERS_MAX   8u
#define FAKE_PENDING_MAX 8u

typedef struct fake_user {
    char localpart[64];
    storage_credential credentials[STORAGE_CREDENTIALS_MAX];
    size_t credential_count;
} fake_user;

typedef struct fake_pending {
    storage_callback *callback;
    void *context;
    storage_status status;
    storage_credential credential;
    bool has_credential;
} fake_pending;

typedef struct fake_storage {
    fake_user users[FAKE_USERS_MAX];
    size_t user_count;
    bool deferred;           /* completions wait for fake_storage_deliver */
    storage_status refuse;   /* non-OK: the fetch call itself returns it */
    storage_status complete; /* non-OK: completions carry it (e.g. UNAVAILABLE) */
    unsigned fetches;        /* fetch calls accepted */
    fake_pending pending[FAKE_PENDING_MAX];
    size_t pending_count;
} fake_storage;

/* Adds a user with a credential for each of hashes (count of them) derived
 * from password with a random salt and the stored iteration count, as
 * starlingctl does. Returns false when the table is full. */
static inline bool fake_storage_add(fake_storage *storage, const char *localpart,
                                    const char *password, const scram_hash *hashes, size_t count,
                                    uint32_t iterations)
{
    if (storage->user_count == FAKE_USERS_MAX || count > STORAGE_CREDENTIALS_MAX)
        return false;
    fake_user *user = &storage->users[storage->user_count++];
    memset(user, 0, sizeof *user);
    strncpy(user->localpart, localpart, sizeof user->localpart - 1);
    for (size_t i = 0; i < count; i++) {
        storage_credential *credential = &user->credentials[i];
        scram_keys keys;
        credential->hash = hashes[i];
        credential->iterations = iterations;
        credential->salt_len = LIMIT_SCRAM_STORED_SALT_BYTES;
        RAND_bytes(credential->salt, credential->salt_len);
        if (scram_keys_derive(hashes[i], password, strlen(password), credential->salt,
                              credential->salt_len, iterations, &keys) != SCRAM_OK)
            return false;
        credential->key_len = scram_hash_bytes(hashes[i]);
        memcpy(credential->stored_key, keys.stored_key, credential->key_len);
        memcpy(credential->server_key, keys.server_key, credential->key_len);
    }
    user->credential_count = count;
    return true;
}

static inline void fake_complete(fake_pending *pending)
{
    storage_result result = {.status = pending->status, .reason = ""};
    if (pending->has_credential)
        result.credential = &pending->credential;
    pending->callback(pending->context, &result);
}

/* The sasl_fetch_fn of the double: fetch_context is a fake_storage. */
static inline storage_status fake_storage_fetch(void *fetch_context, const char *domain,
                                                const char *localpart, scram_hash hash,
                                                storage_callback *callback, void *context)
{
    fake_storage *storage = fetch_context;
    (void)domain;
    if (storage->refuse != STORAGE_OK)
        return storage->refuse;
    if (storage->deferred && storage->pending_count == FAKE_PENDING_MAX)
        return STORAGE_BUSY;
    fake_pending pending = {.callback = callback, .context = context, .status = STORAGE_NOT_FOUND};
    for (size_t u = 0; u < storage->user_count; u++) {
        const fake_user *user = &storage->users[u];
        if (strcmp(user->localpart, localpart) != 0)
            continue;
        for (size_t c = 0; c < user->credential_count; c++) {
            if (user->credentials[c].hash != hash)
                continue;
            pending.status = STORAGE_OK;
            pending.credential = user->credentials[c];
            pending.has_credential = true;
        }
    }
    if (storage->complete != STORAGE_OK) {
        pending.status = storage->complete;
        pending.has_credential = false;
    }
    storage->fetches++;
    if (storage->deferred)
        storage->pending[storage->pending_count++] = pending;
    else
        fake_complete(&pending);
    return STORAGE_OK;
}

/* Delivers every deferred completion, oldest first. Returns how many. */
static inline size_t fake_storage_deliver(fake_storage *storage)
{
    size_t delivered = 0;
    while (storage->pending_count > 0) {
        fake_pending pending = storage->pending[0];
        memmove(&storage->pending[0], &storage->pending[1],
                (storage->pending_count - 1) * sizeof pending);
        storage->pending_count--;
        fake_complete(&pending);
        delivered++;
    }
    return delivered;
}

#endif
