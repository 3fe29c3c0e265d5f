/*
 * pq.c: opens libpq in a namespace of its own (see pq.h).
 */
#include "storage/pq.h"

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* OpenSSL 3's flag for "register no exit handler" (openssl/crypto.h; not
 * included here, where BoringSSL's headers would answer instead). */
#define OPENSSL_INIT_NO_ATEXIT_FLAG 0x00080000ULL

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static pq_api api;
static void (*ctype_init)(void);
const pq_api *pq_loaded;
_Thread_local bool pq_thread_ready;
static char load_error[768];

/* The shim's path: beside the executable, in ../lib/starling/ from it,
 * or where this build tree made it. Returns the handle or NULL. */
static void *shim_open(void)
{
    char self[PATH_MAX];
    ssize_t length = readlink("/proc/self/exe", self, sizeof self - 1);
    char candidates[3][PATH_MAX + 64];
    size_t count = 0;
    if (length > 0) {
        self[length] = '\0';
        char *slash = strrchr(self, '/');
        if (slash != NULL) {
            *slash = '\0';
            snprintf(candidates[count++], sizeof candidates[0], "%s/%s", self, PQ_SHIM_FILE);
            snprintf(candidates[count++], sizeof candidates[0], "%s/../lib/starling/%s", self,
                     PQ_SHIM_FILE);
        }
    }
    snprintf(candidates[count++], sizeof candidates[0], "%s", STARLING_PQ_SHIM_BUILD_PATH);
    const char *last_error = "not found";
    for (size_t i = 0; i < count; i++) {
        if (access(candidates[i], R_OK) != 0)
            continue;
        void *handle = dlmopen(LM_ID_NEWLM, candidates[i], RTLD_NOW | RTLD_LOCAL);
        if (handle != NULL)
            return handle;
        last_error = dlerror();
        snprintf(load_error, sizeof load_error, "cannot load %.300s: %.300s", candidates[i], last_error);
        return NULL;
    }
    snprintf(load_error, sizeof load_error, "cannot load libpq: %s %.100s (looked beside %.250s and in %.250s)",
             PQ_SHIM_FILE, last_error, length > 0 ? self : "the executable",
             STARLING_PQ_SHIM_BUILD_PATH);
    return NULL;
}

static void load(void)
{
    void *handle = shim_open();
    if (handle == NULL)
        return;
    void (*shim_init)(const pq_shim_forward *) =
        (void (*)(const pq_shim_forward *))dlsym(handle, PQ_SHIM_INIT);
    if (shim_init == NULL) {
        snprintf(load_error, sizeof load_error, "%s has no %s", PQ_SHIM_FILE, PQ_SHIM_INIT);
        return;
    }
    const pq_shim_forward forward = {pthread_key_create, pthread_key_delete, pthread_getspecific,
                                     pthread_setspecific};
    shim_init(&forward);
    /* OpenSSL without its exit handler, before libpq initialises it. */
    int (*openssl_init)(unsigned long long, const void *) =
        (int (*)(unsigned long long, const void *))dlsym(handle, "OPENSSL_init_crypto");
    if (openssl_init != NULL && openssl_init(OPENSSL_INIT_NO_ATEXIT_FLAG, NULL) != 1) {
        snprintf(load_error, sizeof load_error, "libpq's OpenSSL failed to initialise");
        return;
    }
#define PQ_RESOLVE(name)                                                                            \
    if ((*(void **)&api.name = dlsym(handle, #name)) == NULL) {                                    \
        snprintf(load_error, sizeof load_error, "libpq has no %s", #name);                         \
        return;                                                                                     \
    }
    PQ_FUNCTIONS(PQ_RESOLVE)
#undef PQ_RESOLVE
    if ((*(void **)&ctype_init = dlsym(handle, "__ctype_init")) == NULL) {
        snprintf(load_error, sizeof load_error, "libpq's libc has no __ctype_init");
        return;
    }
    pq_loaded = &api;
}

const pq_api *pq_load(char *error, size_t error_size)
{
    pthread_once(&load_once, load);
    if (pq_loaded == NULL && error != NULL && error_size > 0)
        snprintf(error, error_size, "%s", load_error);
    return pq_loaded;
}

const pq_api *pq_thread_setup(void)
{
    ctype_init();
    pq_thread_ready = true;
    return pq_loaded;
}
