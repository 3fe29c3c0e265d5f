/*
 * ctl_user.c: `starlingctl user ...`.
 *
 * starlingctl is not a reactor: it attaches a storage_waiter to its main
 * thread, submits operations, and runs the waiter until their callbacks
 * have run, each wait bounded by LIMIT_CTL_STORAGE_WAIT_MS. The storage is
 * the one the configuration names, opened by config_storage_open exactly
 * as the server opens it (so migrations apply here too).
 *
 * Passwords are never stored: each user gets SCRAM-SHA-1, -256 and -512
 * credentials, each with its own random salt (LIMIT_SCRAM_STORED_SALT_BYTES
 * from RAND_bytes) and LIMIT_SCRAM_STORED_ITERATIONS, derived with
 * scram_keys_derive; only StoredKey and ServerKey reach the database.
 *
 * Import's cost is PBKDF2 (three runs of 4096 HMACs per user), so it runs
 * on one thread per online core, a batch of LIMIT_CTL_IMPORT_BATCH_USERS at
 * a time, while the previous batch's creates are being stored: the SQLite
 * driver commits each batch in a handful of group-commit transactions.
 */
#include "server/ctl/ctl_user.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/mem.h>
#include <openssl/rand.h>

#include "proto/jid.h"
#include "proto/limits.h"
#include "proto/scram.h"
#include "server/config/config.h"
#include "server/config/config_storage.h"
#include "storage/storage.h"

/* Import threads at most, whatever the core count says. */
#define IMPORT_THREADS_MAX 64u
/* Lines of errors an import prints before it only counts them. */
#define IMPORT_ERRORS_PRINTED 20u
/* How long one waiter run sleeps before the deadline is checked again. */
#define WAIT_SLICE_MS 100u

/* The hashes a user gets credentials for: all three by default; `user
 * import --hashes` may narrow them (a load test that logs in with one
 * mechanism need not pay for the others). */
typedef struct hash_set {
    scram_hash hashes[STORAGE_CREDENTIALS_MAX];
    size_t count;
} hash_set;

static const hash_set every_hash = {{SCRAM_HASH_SHA1, SCRAM_HASH_SHA256, SCRAM_HASH_SHA512}, 3};
static const char *const hash_names[STORAGE_CREDENTIALS_MAX] = {"sha-1", "sha-256", "sha-512"};

/* Parses "sha-256,sha-1" (each known name at most once) into out.
 * Returns 0, or -1 for anything else. text is borrowed. */
static int hash_set_parse(const char *text, hash_set *out)
{
    out->count = 0;
    const char *at = text;
    for (;;) {
        size_t length = strcspn(at, ",");
        size_t known = 0;
        while (known < STORAGE_CREDENTIALS_MAX && (strlen(hash_names[known]) != length ||
                                                   strncasecmp(hash_names[known], at, length) != 0))
            known++;
        if (known == STORAGE_CREDENTIALS_MAX)
            return -1;
        for (size_t i = 0; i < out->count; i++)
            if (out->hashes[i] == every_hash.hashes[known])
                return -1;
        out->hashes[out->count++] = every_hash.hashes[known];
        if (at[length] == '\0')
            return 0;
        at += length + 1;
    }
}

extern char **environ;

/* ------------------------------------------------------------------ JIDs */

/* A bare JID split into its stored parts. */
typedef struct bare_jid {
    char localpart[LIMIT_STORAGE_JID_PART_BYTES_MAX + 1];
    char domain[LIMIT_STORAGE_JID_PART_BYTES_MAX + 1];
} bare_jid;

_Static_assert(LIMIT_STORAGE_JID_PART_BYTES_MAX >= LIMIT_JID_PART_BYTES_MAX,
               "a prepared JID part fits the storage's bound");

/* Parses text as a bare JID, localpart@domain, prepared per RFC 7622 (see
 * proto/jid.h: the localpart lowercased by PRECIS UsernameCaseMapped, the
 * domain through IDNA2008 and kept as U-labels), and fills out with its
 * parts. Returns NULL, or why not (static text). */
static const char *jid_check_bare(const char *text, bare_jid *out)
{
    jid parsed;
    jid_result result = jid_parse(text, strlen(text), &parsed);
    if (result != JID_OK)
        return jid_result_name(result);
    if (parsed.localpart_len == 0)
        return "a bare JID needs localpart@domain";
    if (parsed.resourcepart_len != 0)
        return "a resource is not allowed (give a bare JID)";
    memcpy(out->localpart, jid_localpart(&parsed), parsed.localpart_len);
    out->localpart[parsed.localpart_len] = '\0';
    memcpy(out->domain, jid_domainpart(&parsed), parsed.domainpart_len);
    out->domain[parsed.domainpart_len] = '\0';
    return NULL;
}

/* Prepares a domain (a configured one or an argument) as a JID's
 * domainpart into out, NUL-terminated. Returns false when it is not one. */
static bool domain_prepare(const char *domain, char out[LIMIT_JID_PART_BYTES_MAX + 1])
{
    size_t length;
    if (jid_prepare_domainpart(domain, strlen(domain), out, &length) != JID_OK)
        return false;
    out[length] = '\0';
    return true;
}

/* Whether the configuration serves domain (prepared): whether a configured
 * domain prepares to the same bytes. */
static bool domain_served(const config *settings, const char *domain)
{
    char served[LIMIT_JID_PART_BYTES_MAX + 1];
    for (unsigned i = 0; i < settings->domain_count; i++)
        if (domain_prepare(settings->domains[i], served) && strcmp(served, domain) == 0)
            return true;
    return false;
}

static const char *password_check(const char *password)
{
    size_t length = strlen(password);
    if (length == 0)
        return "the password is empty";
    if (length > LIMIT_CTL_PASSWORD_BYTES_MAX)
        return "the password is longer than 1023 bytes";
    return NULL;
}

/* ----------------------------------------------------------- credentials */

/* Derives a stored credential for password (borrowed) per hash of hashes
 * (borrowed) into out, a fresh random salt each. Returns 0, or -1 when
 * BoringSSL failed. */
static int credentials_make(const char *password, size_t password_len, const hash_set *hashes,
                            storage_credential out[STORAGE_CREDENTIALS_MAX])
{
    for (size_t i = 0; i < hashes->count; i++) {
        storage_credential *credential = &out[i];
        memset(credential, 0, sizeof *credential);
        credential->hash = hashes->hashes[i];
        credential->iterations = LIMIT_SCRAM_STORED_ITERATIONS;
        credential->salt_len = LIMIT_SCRAM_STORED_SALT_BYTES;
        credential->key_len = scram_hash_bytes(credential->hash);
        if (RAND_bytes(credential->salt, credential->salt_len) != 1)
            return -1;
        scram_keys keys;
        scram_result result =
            scram_keys_derive(credential->hash, password, password_len, credential->salt,
                              credential->salt_len, credential->iterations, &keys);
        if (result == SCRAM_OK) {
            memcpy(credential->stored_key, keys.stored_key, credential->key_len);
            memcpy(credential->server_key, keys.server_key, credential->key_len);
        }
        OPENSSL_cleanse(&keys, sizeof keys);
        if (result != SCRAM_OK)
            return -1;
    }
    return 0;
}

/* --------------------------------------------------------------- session */

/* The configuration and the open storage of one starlingctl run. */
typedef struct session {
    config settings;
    storage *storage;
    storage_waiter *waiter;
} session;

static uint64_t monotonic_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000u + (uint64_t)now.tv_nsec / 1000000u;
}

static int exit_for_status(storage_status status)
{
    switch (status) {
    case STORAGE_OK:
        return CTL_EXIT_OK;
    case STORAGE_NOT_FOUND:
        return CTL_EXIT_NO_SUCH_USER;
    case STORAGE_CONFLICT:
        return CTL_EXIT_EXISTS;
    case STORAGE_BUSY:
    case STORAGE_CLOSED:
    case STORAGE_UNAVAILABLE:
        return CTL_EXIT_UNAVAILABLE;
    case STORAGE_SCHEMA:
        return CTL_EXIT_SCHEMA;
    case STORAGE_INVALID:
    case STORAGE_NOMEM:
    case STORAGE_ERROR:
        break;
    }
    return CTL_EXIT_FAILURE;
}

/* Loads the configuration and opens its storage. Returns CTL_EXIT_OK, or
 * an exit status after one line on stderr. */
static int session_open(session *ctl, const char *config_path)
{
    config_error error;
    if (config_load(&ctl->settings, config_path, environ, &error) != 0) {
        fprintf(stderr, "starlingctl: %s\n", error.message);
        return CTL_EXIT_USAGE;
    }
    char reason[LIMIT_STORAGE_REASON_BYTES + 256];
    storage_status status =
        config_storage_open(&ctl->settings, NULL, &ctl->storage, reason, sizeof reason);
    if (status != STORAGE_OK) {
        fprintf(stderr, "starlingctl: storage (%s): %s\n",
                config_enum_name("storage.driver", ctl->settings.storage.driver), reason);
        return status == STORAGE_INVALID ? CTL_EXIT_USAGE : exit_for_status(status);
    }
    ctl->waiter = storage_waiter_create();
    if (ctl->waiter == NULL) {
        fprintf(stderr, "starlingctl: out of memory\n");
        storage_close(ctl->storage);
        return CTL_EXIT_FAILURE;
    }
    storage_waiter_attach(ctl->waiter);
    return CTL_EXIT_OK;
}

/* Closes the storage (which delivers whatever is still pending to the
 * waiter), runs those last callbacks, and frees the waiter. */
static void session_close(session *ctl)
{
    storage_close(ctl->storage);
    while (storage_waiter_run(ctl->waiter, 0) > 0)
        continue;
    storage_waiter_attach(NULL);
    storage_waiter_destroy(ctl->waiter);
}

/* Runs the waiter until *pending reaches 0 or LIMIT_CTL_STORAGE_WAIT_MS
 * pass without it. Returns true when everything completed. */
static bool session_wait(session *ctl, const size_t *pending)
{
    uint64_t deadline_ms = monotonic_ms() + LIMIT_CTL_STORAGE_WAIT_MS;
    while (*pending > 0) {
        if (monotonic_ms() > deadline_ms) {
            fprintf(stderr, "starlingctl: the database did not answer within %u ms\n",
                    LIMIT_CTL_STORAGE_WAIT_MS);
            return false;
        }
        storage_waiter_run(ctl->waiter, WAIT_SLICE_MS);
    }
    return true;
}

/* ------------------------------------------------------ single operations */

/* What one operation's callback saw. */
typedef struct outcome {
    size_t pending;
    storage_status status;
    char reason[LIMIT_STORAGE_REASON_BYTES];
} outcome;

static void on_outcome(void *context, const storage_result *result)
{
    outcome *done = context;
    done->status = result->status;
    snprintf(done->reason, sizeof done->reason, "%s", result->reason);
    done->pending--;
}

/* Waits for one submitted operation (submitted: what the submission
 * returned) and reports a failure naming what (the subcommand and JID).
 * Returns an exit status. */
static int finish_one(session *ctl, outcome *done, storage_status submitted, const char *what)
{
    if (submitted != STORAGE_OK) {
        done->status = submitted;
        snprintf(done->reason, sizeof done->reason, "refused at submission");
        done->pending = 0;
    } else if (!session_wait(ctl, &done->pending)) {
        return CTL_EXIT_UNAVAILABLE;
    }
    switch (done->status) {
    case STORAGE_OK:
        return CTL_EXIT_OK;
    case STORAGE_CONFLICT:
        fprintf(stderr, "starlingctl: %s: the user exists already\n", what);
        break;
    case STORAGE_NOT_FOUND:
        fprintf(stderr, "starlingctl: %s: no such user\n", what);
        break;
    default:
        fprintf(stderr, "starlingctl: %s: %s: %s\n", what, storage_status_name(done->status),
                done->reason);
        break;
    }
    return exit_for_status(done->status);
}

/* Checks a JID argument against the syntax and the served domains.
 * Returns CTL_EXIT_OK or an exit status after one line on stderr. */
static int jid_argument(const session *ctl, const char *command, const char *text, bare_jid *jid)
{
    const char *problem = jid_check_bare(text, jid);
    if (problem != NULL) {
        fprintf(stderr, "starlingctl: user %s: bad JID '%s': %s\n", command, text, problem);
        return CTL_EXIT_BAD_JID;
    }
    if (!domain_served(&ctl->settings, jid->domain)) {
        fprintf(stderr, "starlingctl: user %s: '%s' is not a domain this configuration serves\n",
                command, jid->domain);
        return CTL_EXIT_UNKNOWN_DOMAIN;
    }
    return CTL_EXIT_OK;
}

/* user add / user passwd: derive the credentials, create or replace. */
static int command_set(session *ctl, bool create, const char *text, const char *password)
{
    const char *command = create ? "add" : "passwd";
    static bare_jid jid;
    int result = jid_argument(ctl, command, text, &jid);
    if (result != CTL_EXIT_OK)
        return result;
    const char *problem = password_check(password);
    if (problem != NULL) {
        fprintf(stderr, "starlingctl: user %s: %s\n", command, problem);
        return CTL_EXIT_BAD_JID;
    }
    storage_credential credentials[STORAGE_CREDENTIALS_MAX];
    if (credentials_make(password, strlen(password), &every_hash, credentials) != 0) {
        fprintf(stderr, "starlingctl: user %s: the key derivation failed\n", command);
        return CTL_EXIT_FAILURE;
    }
    /* Static: a completion that arrives after a timed-out wait still runs
     * (in session_close) and must find its outcome alive. */
    static outcome done;
    done = (outcome){.pending = 1};
    storage_status submitted =
        create ? storage_user_create(ctl->storage, jid.domain, jid.localpart, credentials,
                                     STORAGE_CREDENTIALS_MAX, on_outcome, &done)
               : storage_user_credentials_set(ctl->storage, jid.domain, jid.localpart, credentials,
                                              STORAGE_CREDENTIALS_MAX, on_outcome, &done);
    OPENSSL_cleanse(credentials, sizeof credentials);
    char what[64 + 2 * LIMIT_STORAGE_JID_PART_BYTES_MAX];
    snprintf(what, sizeof what, "user %s %s@%s", command, jid.localpart, jid.domain);
    return finish_one(ctl, &done, submitted, what);
}

static int command_delete(session *ctl, const char *text)
{
    static bare_jid jid;
    int result = jid_argument(ctl, "delete", text, &jid);
    if (result != CTL_EXIT_OK)
        return result;
    /* Static: a completion that arrives after a timed-out wait still runs
     * (in session_close) and must find its outcome alive. */
    static outcome done;
    done = (outcome){.pending = 1};
    storage_status submitted =
        storage_user_delete(ctl->storage, jid.domain, jid.localpart, on_outcome, &done);
    char what[64 + 2 * LIMIT_STORAGE_JID_PART_BYTES_MAX];
    snprintf(what, sizeof what, "user delete %s@%s", jid.localpart, jid.domain);
    return finish_one(ctl, &done, submitted, what);
}

/* ------------------------------------------------------------------ list */

/* One page of a listing: prints it and remembers where to go on. */
typedef struct list_page {
    outcome done;
    const char *domain;
    char after[LIMIT_STORAGE_JID_PART_BYTES_MAX + 1];
    bool more;
} list_page;

static void on_list_page(void *context, const storage_result *result)
{
    list_page *page = context;
    page->more = false;
    if (result->status == STORAGE_OK) {
        for (size_t i = 0; i < result->name_count; i++)
            printf("%s@%s\n", result->names[i], page->domain);
        if (result->name_count > 0)
            snprintf(page->after, sizeof page->after, "%s", result->names[result->name_count - 1]);
        page->more = result->more && result->name_count > 0;
    }
    on_outcome(&page->done, result);
}

static int list_domain(session *ctl, const char *domain)
{
    static list_page page;
    memset(&page, 0, sizeof page);
    page.domain = domain;
    do {
        page.done.pending = 1;
        storage_status submitted = storage_user_list(
            ctl->storage, domain, page.after, LIMIT_STORAGE_PAGE_ROWS_MAX, on_list_page, &page);
        int result = finish_one(ctl, &page.done, submitted, "user list");
        if (result != CTL_EXIT_OK)
            return result;
    } while (page.more);
    return CTL_EXIT_OK;
}

/* user list [DOMAIN]: one JID per line, every served domain without one. */
static int command_list(session *ctl, const char *domain)
{
    static char prepared[LIMIT_JID_PART_BYTES_MAX + 1];
    if (domain != NULL) {
        if (!domain_prepare(domain, prepared)) {
            fprintf(stderr, "starlingctl: user list: bad domain '%s'\n", domain);
            return CTL_EXIT_BAD_JID;
        }
        if (!domain_served(&ctl->settings, prepared)) {
            fprintf(stderr,
                    "starlingctl: user list: '%s' is not a domain this configuration serves\n",
                    prepared);
            return CTL_EXIT_UNKNOWN_DOMAIN;
        }
        return list_domain(ctl, prepared);
    }
    for (unsigned i = 0; i < ctl->settings.domain_count; i++) {
        if (!domain_prepare(ctl->settings.domains[i], prepared)) {
            fprintf(stderr, "starlingctl: user list: the configured domain '%s' is not valid\n",
                    ctl->settings.domains[i]);
            return CTL_EXIT_USAGE;
        }
        int result = list_domain(ctl, prepared);
        if (result != CTL_EXIT_OK)
            return result;
    }
    return CTL_EXIT_OK;
}

/* ---------------------------------------------------------------- import */

/* One user of the import file: its parts in one allocation (owned). */
typedef struct import_entry {
    unsigned line;
    char *localpart;
    char *domain;
    char *password;
} import_entry;

typedef struct import_state import_state;

/* One user of a batch in flight: the callback's context. */
typedef struct import_item {
    import_state *state;
    const import_entry *entry;
} import_item;

/* A batch: its users, their derived credentials, and the threads'
 * shared cursor. */
typedef struct import_batch {
    import_entry *entries;
    size_t count;
    storage_credential (*credentials)[STORAGE_CREDENTIALS_MAX];
    import_item *items;
    const hash_set *hashes;
    atomic_size_t next;
    atomic_bool failed;
    pthread_t threads[IMPORT_THREADS_MAX];
    unsigned thread_count;
} import_batch;

struct import_state {
    session *ctl;
    const char *name; /* the file as messages name it */
    bool skip_existing;
    hash_set hashes;
    import_entry *entries;
    size_t count;
    size_t capacity;
    size_t pending;
    size_t created;
    size_t skipped;
    size_t errors;
    int exit_status; /* the worst failure so far */
};

/* Reports one failed line (the first IMPORT_ERRORS_PRINTED of them). */
static void import_error(import_state *state, unsigned line, int exit_status, const char *format,
                         const char *detail)
{
    if (state->errors < IMPORT_ERRORS_PRINTED) {
        fprintf(stderr, "%s:%u: ", state->name, line);
        fprintf(stderr, format, detail);
        fputc('\n', stderr);
    }
    state->errors++;
    if (state->exit_status == CTL_EXIT_OK || exit_status == CTL_EXIT_UNAVAILABLE)
        state->exit_status = exit_status;
}

/* Parses one line (text, NUL-terminated, trailing newline removed) into
 * an entry, or reports why not. Blank lines and comments add nothing. */
static void import_line(import_state *state, unsigned line, char *text)
{
    char *jid_text = text + strspn(text, " \t");
    if (*jid_text == '\0' || *jid_text == '#')
        return;
    char *separator = jid_text + strcspn(jid_text, " \t");
    char *password = separator + strspn(separator, " \t");
    size_t password_len = strlen(password);
    while (password_len > 0 && strchr(" \t\r", password[password_len - 1]) != NULL)
        password[--password_len] = '\0';
    if (*separator == '\0' || password_len == 0) {
        import_error(state, line, CTL_EXIT_BAD_JID, "%s", "want 'JID PASSWORD'");
        return;
    }
    *separator = '\0';
    static bare_jid jid;
    const char *problem = jid_check_bare(jid_text, &jid);
    if (problem == NULL)
        problem = password_check(password);
    if (problem != NULL) {
        import_error(state, line, CTL_EXIT_BAD_JID, "%s", problem);
        return;
    }
    if (!domain_served(&state->ctl->settings, jid.domain)) {
        import_error(state, line, CTL_EXIT_UNKNOWN_DOMAIN,
                     "'%s' is not a domain this configuration serves", jid.domain);
        return;
    }
    if (state->count == state->capacity) {
        size_t capacity = state->capacity == 0 ? 1024 : state->capacity * 2;
        import_entry *grown = realloc(state->entries, capacity * sizeof *grown);
        if (grown == NULL) {
            import_error(state, line, CTL_EXIT_FAILURE, "%s", "out of memory");
            return;
        }
        state->entries = grown;
        state->capacity = capacity;
    }
    size_t localpart_len = strlen(jid.localpart);
    size_t domain_len = strlen(jid.domain);
    char *bytes = malloc(localpart_len + domain_len + password_len + 3);
    if (bytes == NULL) {
        import_error(state, line, CTL_EXIT_FAILURE, "%s", "out of memory");
        return;
    }
    import_entry *entry = &state->entries[state->count++];
    entry->line = line;
    entry->localpart = memcpy(bytes, jid.localpart, localpart_len + 1);
    entry->domain = memcpy(bytes + localpart_len + 1, jid.domain, domain_len + 1);
    entry->password = memcpy(bytes + localpart_len + domain_len + 2, password, password_len + 1);
}

/* Reads every line of in. Returns 0, or -1 when reading failed. */
static int import_read(import_state *state, FILE *in)
{
    char *text = NULL;
    size_t size = 0;
    unsigned line = 0;
    ssize_t length;
    while ((length = getline(&text, &size, in)) >= 0) {
        line++;
        if ((size_t)length > LIMIT_CTL_IMPORT_LINE_BYTES_MAX) {
            import_error(state, line, CTL_EXIT_BAD_JID, "%s", "the line is too long");
            continue;
        }
        size_t expected = (size_t)length;
        if (expected > 0 && text[expected - 1] == '\n')
            text[--expected] = '\0';
        if (strlen(text) != expected) {
            import_error(state, line, CTL_EXIT_BAD_JID, "%s", "the line holds a NUL byte");
            continue;
        }
        import_line(state, line, text);
    }
    bool failed = ferror(in) != 0;
    OPENSSL_cleanse(text, size);
    free(text);
    return failed ? -1 : 0;
}

static void *import_derive(void *context)
{
    import_batch *batch = context;
    for (;;) {
        size_t i = atomic_fetch_add(&batch->next, 1);
        if (i >= batch->count)
            return NULL;
        char *password = batch->entries[i].password;
        size_t password_len = strlen(password);
        if (credentials_make(password, password_len, batch->hashes, batch->credentials[i]) != 0)
            atomic_store(&batch->failed, true);
        OPENSSL_cleanse(password, password_len);
    }
}

/* Starts deriving batch's credentials on its threads. Returns 0, or -1
 * when not even one thread started. */
static int import_derive_start(import_batch *batch, unsigned threads)
{
    atomic_store(&batch->next, 0);
    atomic_store(&batch->failed, false);
    batch->thread_count = 0;
    for (unsigned i = 0; i < threads; i++) {
        if (pthread_create(&batch->threads[i], NULL, import_derive, batch) != 0)
            break;
        batch->thread_count++;
    }
    return batch->thread_count > 0 ? 0 : -1;
}

static void import_derive_join(import_batch *batch)
{
    for (unsigned i = 0; i < batch->thread_count; i++)
        pthread_join(batch->threads[i], NULL);
    batch->thread_count = 0;
}

static void on_import_created(void *context, const storage_result *result)
{
    import_item *item = context;
    import_state *state = item->state;
    state->pending--;
    if (result->status == STORAGE_OK) {
        state->created++;
    } else if (result->status == STORAGE_CONFLICT && state->skip_existing) {
        state->skipped++;
    } else if (result->status == STORAGE_CONFLICT) {
        import_error(state, item->entry->line, CTL_EXIT_EXISTS, "%s", "the user exists already");
    } else {
        import_error(state, item->entry->line, exit_for_status(result->status), "storage: %s",
                     result->reason[0] != '\0' ? result->reason
                                               : storage_status_name(result->status));
    }
}

/* Submits a derived batch's creates and waits for all of them. Returns
 * false when the database stopped answering. */
static bool import_store(import_state *state, import_batch *batch)
{
    if (atomic_load(&batch->failed)) {
        fprintf(stderr, "starlingctl: user import: the key derivation failed\n");
        state->errors += batch->count;
        state->exit_status = CTL_EXIT_FAILURE;
        return true;
    }
    uint64_t deadline_ms = monotonic_ms() + LIMIT_CTL_STORAGE_WAIT_MS;
    for (size_t i = 0; i < batch->count; i++) {
        const import_entry *entry = &batch->entries[i];
        batch->items[i] = (import_item){state, entry};
        storage_status submitted;
        while ((submitted = storage_user_create(
                    state->ctl->storage, entry->domain, entry->localpart, batch->credentials[i],
                    batch->hashes->count, on_import_created, &batch->items[i])) == STORAGE_BUSY &&
               monotonic_ms() < deadline_ms)
            storage_waiter_run(state->ctl->waiter, WAIT_SLICE_MS);
        if (submitted == STORAGE_OK)
            state->pending++;
        else
            import_error(state, entry->line, exit_for_status(submitted), "storage refused: %s",
                         storage_status_name(submitted));
    }
    OPENSSL_cleanse(batch->credentials, batch->count * sizeof batch->credentials[0]);
    return session_wait(state->ctl, &state->pending);
}

static unsigned import_threads(void)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 1)
        return 1;
    return cores > (long)IMPORT_THREADS_MAX ? IMPORT_THREADS_MAX : (unsigned)cores;
}

static void import_slots_free(import_batch slots[2])
{
    for (size_t s = 0; s < 2; s++) {
        free(slots[s].credentials);
        free(slots[s].items);
    }
}

/* Derives batch k while batch k-1 is stored: two batch slots take turns. */
static int import_run(import_state *state)
{
    static import_batch slots[2];
    for (size_t s = 0; s < 2; s++) {
        slots[s].credentials = calloc(LIMIT_CTL_IMPORT_BATCH_USERS, sizeof *slots[s].credentials);
        slots[s].items = calloc(LIMIT_CTL_IMPORT_BATCH_USERS, sizeof *slots[s].items);
    }
    if (slots[0].items == NULL || slots[1].items == NULL || slots[0].credentials == NULL ||
        slots[1].credentials == NULL) {
        fprintf(stderr, "starlingctl: user import: out of memory\n");
        import_slots_free(slots);
        return CTL_EXIT_FAILURE;
    }
    unsigned threads = import_threads();
    size_t batch_users = LIMIT_CTL_IMPORT_BATCH_USERS;
    size_t batches = (state->count + batch_users - 1) / batch_users;
    bool answering = true;
    for (size_t k = 0; k <= batches && answering; k++) {
        import_batch *deriving = k < batches ? &slots[k % 2] : NULL;
        if (deriving != NULL) {
            deriving->entries = &state->entries[k * batch_users];
            deriving->hashes = &state->hashes;
            deriving->count = state->count - k * batch_users;
            if (deriving->count > batch_users)
                deriving->count = batch_users;
            if (import_derive_start(deriving, threads) != 0) {
                fprintf(stderr, "starlingctl: user import: cannot start a thread\n");
                import_slots_free(slots);
                return CTL_EXIT_FAILURE;
            }
        }
        if (k > 0)
            answering = import_store(state, &slots[(k - 1) % 2]);
        if (deriving != NULL)
            import_derive_join(deriving);
    }
    if (!answering)
        return CTL_EXIT_UNAVAILABLE; /* late completions still point into the slots */
    import_slots_free(slots);
    return state->exit_status;
}

/* user import [--skip-existing] FILE: every line checked first (a
 * malformed one stops the import before anything is written), then the
 * users created in parallel batches; a summary line at the end. */
/* Options of the user subcommands. */
typedef struct user_options {
    bool skip_existing; /* import: an existing user is skipped, not an error */
    bool hashes_given;  /* import: --hashes narrowed hashes */
    hash_set hashes;
} user_options;

static int command_import(session *ctl, const char *path, const user_options *options)
{
    static import_state state;
    state = (import_state){
        .ctl = ctl, .skip_existing = options->skip_existing, .hashes = options->hashes};
    bool from_stdin = strcmp(path, "-") == 0;
    state.name = from_stdin ? "stdin" : path;
    FILE *in = from_stdin ? stdin : fopen(path, "re");
    if (in == NULL) {
        fprintf(stderr, "starlingctl: user import: cannot open '%s': %s\n", path, strerror(errno));
        return CTL_EXIT_FAILURE;
    }
    int read_failed = import_read(&state, in);
    if (!from_stdin)
        fclose(in);
    int result = CTL_EXIT_OK;
    if (read_failed != 0) {
        fprintf(stderr, "starlingctl: user import: cannot read '%s'\n", state.name);
        result = CTL_EXIT_FAILURE;
    } else if (state.errors > 0) {
        fprintf(stderr, "starlingctl: user import: %zu bad lines in %s, nothing imported\n",
                state.errors, state.name);
        result = state.exit_status;
    } else {
        uint64_t started_ms = monotonic_ms();
        result = import_run(&state);
        double seconds = (double)(monotonic_ms() - started_ms) / 1000.0;
        if (state.errors > IMPORT_ERRORS_PRINTED)
            fprintf(stderr, "%s: ... and %zu more errors\n", state.name,
                    state.errors - IMPORT_ERRORS_PRINTED);
        printf("%s: %zu created, %zu skipped as existing, %zu errors, %.2f s, %.0f users/s\n",
               state.name, state.created, state.skipped, state.errors, seconds,
               seconds > 0 ? (double)(state.created + state.skipped) / seconds : 0.0);
    }
    for (size_t i = 0; i < state.count; i++)
        free(state.entries[i].localpart);
    free(state.entries);
    return result;
}

/* ------------------------------------------------------------ dispatch */

void ctl_user_usage(FILE *out)
{
    fprintf(out,
            "  user add JID PASSWORD       create an account (SCRAM-SHA-1/256/512 keys, %u\n"
            "                              iterations; the password is never stored)\n"
            "  user passwd JID PASSWORD    replace an account's password\n"
            "  user delete JID             delete an account and all its data\n"
            "  user list [DOMAIN]          print every account's JID (of DOMAIN, or of every\n"
            "                              served domain), one per line\n"
            "  user import [--skip-existing] [--hashes LIST] FILE\n"
            "                              create the accounts of FILE ('-': stdin), one\n"
            "                              'JID PASSWORD' per line, '#' comments; a bad line\n"
            "                              stops it before anything is written; an existing\n"
            "                              user is an error unless --skip-existing;\n"
            "                              --hashes sha-1,sha-256,sha-512 (the default) picks\n"
            "                              which SCRAM credentials each user gets\n"
            "  user options: -c/--config FILE  the configuration (default: none, built-in\n"
            "                              defaults with STARLING_* overrides, as starling)\n"
            "  user exit statuses: 0 ok, 1 other failure, 2 usage or configuration, 3 bad\n"
            "                              JID/password/line, 4 domain not served, 5 user exists,\n"
            "                              6 no such user, 7 database unavailable, 8 schema\n"
            "                              newer than this binary\n",
            LIMIT_SCRAM_STORED_ITERATIONS);
}

/* The subcommand, run on an open session. */
static int user_dispatch(session *ctl, char **words, int count, const user_options *options)
{
    const char *command = words[0];
    if (strcmp(command, "add") == 0 && count == 3)
        return command_set(ctl, true, words[1], words[2]);
    if (strcmp(command, "passwd") == 0 && count == 3)
        return command_set(ctl, false, words[1], words[2]);
    if (strcmp(command, "delete") == 0 && count == 2)
        return command_delete(ctl, words[1]);
    if (strcmp(command, "list") == 0 && count <= 2)
        return command_list(ctl, count == 2 ? words[1] : NULL);
    return command_import(ctl, words[1], options);
}

static bool user_arguments_fit(char **words, int count, const user_options *options)
{
    if (count < 1)
        return false;
    const char *command = words[0];
    if ((options->skip_existing || options->hashes_given) && strcmp(command, "import") != 0)
        return false;
    return (strcmp(command, "add") == 0 && count == 3) ||
           (strcmp(command, "passwd") == 0 && count == 3) ||
           (strcmp(command, "delete") == 0 && count == 2) ||
           (strcmp(command, "list") == 0 && count <= 2) ||
           (strcmp(command, "import") == 0 && count == 2);
}

int ctl_user_main(int argc, char **argv, const char *config_path)
{
    char *words[4];
    int count = 0;
    user_options options = {.hashes = every_hash};
    bool options_end = false;
    for (int i = 1; i < argc; i++) {
        if (options_end) {
            if (count < 4)
                words[count] = argv[i];
            count++;
        } else if (strcmp(argv[i], "--") == 0) {
            options_end = true;
        } else if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) &&
                   i + 1 < argc) {
            config_path = argv[++i];
        } else if (strcmp(argv[i], "--skip-existing") == 0) {
            options.skip_existing = true;
        } else if (strcmp(argv[i], "--hashes") == 0 && i + 1 < argc) {
            if (hash_set_parse(argv[++i], &options.hashes) != 0) {
                fprintf(stderr,
                        "starlingctl: user: --hashes wants a list of sha-1, sha-256, "
                        "sha-512, not '%s'\n",
                        argv[i]);
                return CTL_EXIT_USAGE;
            }
            options.hashes_given = true;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            fprintf(stderr, "starlingctl: user: unknown option '%s' (see --help)\n", argv[i]);
            return CTL_EXIT_USAGE;
        } else if (count < 4) {
            words[count++] = argv[i];
        } else {
            count++;
        }
    }
    if (!user_arguments_fit(words, count > 4 ? 0 : count, &options)) {
        fprintf(stderr, "starlingctl: user: bad arguments (see --help)\n");
        return CTL_EXIT_USAGE;
    }
    static session ctl;
    int result = session_open(&ctl, config_path);
    if (result != CTL_EXIT_OK)
        return result;
    result = user_dispatch(&ctl, words, count, &options);
    session_close(&ctl);
    return result;
}
