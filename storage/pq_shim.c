/*
 * pq_shim.c: libstarling-pq.so, the first library of libpq's namespace
 * (see pq.h). It needs libpq (so opening it opens libpq, OpenSSL and a
 * second libc behind it) and defines the four thread-specific-data calls,
 * forwarding them to the main namespace's libc: being first in the
 * namespace's scope, its definitions are the ones OpenSSL and libpq bind
 * to. pq.c hands it the main libc's functions before libpq runs at all.
 */
#include <errno.h>
#include <pthread.h>
#include <stddef.h>

#include "storage/pq.h"

static pq_shim_forward forward;

__attribute__((visibility("default"))) void starling_pq_shim_init(const pq_shim_forward *from)
{
    forward = *from;
}

__attribute__((visibility("default"))) int pthread_key_create(pthread_key_t *key,
                                                              void (*destructor)(void *))
{
    return forward.key_create != NULL ? forward.key_create(key, destructor) : EAGAIN;
}

__attribute__((visibility("default"))) int pthread_key_delete(pthread_key_t key)
{
    return forward.key_delete != NULL ? forward.key_delete(key) : EINVAL;
}

__attribute__((visibility("default"))) void *pthread_getspecific(pthread_key_t key)
{
    return forward.getspecific != NULL ? forward.getspecific(key) : NULL;
}

/* glibc declares value access-none, which leads gcc to think forwarding
 * it reads something uninitialised. */
#if !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
__attribute__((visibility("default"))) int pthread_setspecific(pthread_key_t key, const void *value)
{
    return forward.setspecific != NULL ? forward.setspecific(key, value) : EINVAL;
}
#if !defined(__clang__)
#pragma GCC diagnostic pop
#endif
