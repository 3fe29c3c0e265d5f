/*
 * pq.h: libpq, loaded into a link-map namespace of its own.
 *
 * Starling's TLS is BoringSSL; Debian's libpq is built against OpenSSL 3.
 * Both libraries export the same names (SSL_new, EVP_DigestInit_ex, ...)
 * and BoringSSL's are unversioned, so in one namespace libpq's calls bind
 * to BoringSSL's functions with OpenSSL's structures: TLS to the database
 * crashes, and libpq's own SCRAM hashing works only by luck. So nothing
 * links libpq: pq_load() opens it with dlmopen(LM_ID_NEWLM), where it and
 * OpenSSL get their own symbol scope (and their own copy of libc), and
 * hands out a table of its functions.
 *
 * Two things do not stay apart on their own, and pq.c joins them back:
 *
 *   - thread-specific data: every copy of libc numbers pthread keys from
 *     zero, but the values live in the one thread descriptor, so a key
 *     OpenSSL makes in the second namespace would share its slot with one
 *     jemalloc or BoringSSL made. The namespace is opened through a small
 *     shim library (pq_shim.c, libstarling-pq.so, which needs libpq) that
 *     comes first in the namespace's scope and forwards pthread_key_create,
 *     _delete, pthread_getspecific and _setspecific to the main libc;
 *   - per-thread set-up: the second libc initialises its character-class
 *     tables (isalnum and friends, which libpq's encoding lookup uses) for
 *     the thread that loaded it, but threads are started by the main libc,
 *     which sets up only its own. pq_here() runs the second libc's
 *     __ctype_init once on each thread before handing out the table;
 *   - exit: OpenSSL registers an exit handler that runs in the second libc
 *     and touches thread state it does not own (ASan stops there). It is
 *     initialised first with OPENSSL_INIT_NO_ATEXIT; the process is leaving
 *     anyway.
 *
 * The shim is looked for beside the executable, in ../lib/starling/ from
 * it, and in the build tree (STARLING_PQ_SHIM_BUILD_PATH).
 *
 * The table's fields have libpq's own names and types (taken from
 * libpq-fe.h with __typeof__, so a mismatch cannot compile):
 * pq_here()->PQexec(...), on any thread, once pq_load has succeeded.
 */
#ifndef STARLING_STORAGE_PQ_H
#define STARLING_STORAGE_PQ_H

#include <libpq-fe.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#define PQ_FUNCTIONS(X)                                                                             \
    X(PQclear)                                                                                      \
    X(PQconnectPoll)                                                                                \
    X(PQconnectStartParams)                                                                         \
    X(PQconnectdbParams)                                                                            \
    X(PQconsumeInput)                                                                               \
    X(PQenterPipelineMode)                                                                          \
    X(PQerrorMessage)                                                                               \
    X(PQexec)                                                                                       \
    X(PQfinish)                                                                                     \
    X(PQflush)                                                                                      \
    X(PQgetResult)                                                                                  \
    X(PQgetisnull)                                                                                  \
    X(PQgetlength)                                                                                  \
    X(PQgetvalue)                                                                                   \
    X(PQisBusy)                                                                                     \
    X(PQntuples)                                                                                    \
    X(PQpipelineSync)                                                                               \
    X(PQresultErrorField)                                                                           \
    X(PQresultErrorMessage)                                                                         \
    X(PQresultStatus)                                                                               \
    X(PQsendPrepare)                                                                                \
    X(PQsendQueryPrepared)                                                                          \
    X(PQsetNoticeProcessor)                                                                         \
    X(PQsetnonblocking)                                                                             \
    X(PQsocket)                                                                                     \
    X(PQsslInUse)                                                                                   \
    X(PQstatus)

#define PQ_FIELD(name) __typeof__(&name) name;
typedef struct pq_api {
    PQ_FUNCTIONS(PQ_FIELD)
} pq_api;
#undef PQ_FIELD

/* What pq.c hands the shim: the main libc's thread-specific-data calls. */
typedef struct pq_shim_forward {
    int (*key_create)(pthread_key_t *key, void (*destructor)(void *));
    int (*key_delete)(pthread_key_t key);
    void *(*getspecific)(pthread_key_t key);
    int (*setspecific)(pthread_key_t key, const void *value);
} pq_shim_forward;

/* The shim's entry point, by name (dlsym). */
#define PQ_SHIM_INIT "starling_pq_shim_init"
#define PQ_SHIM_FILE "libstarling-pq.so"

/* libpq's functions, loading it on the first call (any thread; later
 * calls return the same table). NULL when it cannot be loaded, with the
 * reason in error (for instance the shim or libpq.so.5 missing). */
const pq_api *pq_load(char *error, size_t error_size);

/* The loaded table, for the calling thread (see per-thread set-up above).
 * Only after pq_load has returned a table. */
extern _Thread_local bool pq_thread_ready;
extern const pq_api *pq_loaded;
const pq_api *pq_thread_setup(void);
static inline const pq_api *pq_here(void)
{
    return pq_thread_ready ? pq_loaded : pq_thread_setup();
}

#endif
