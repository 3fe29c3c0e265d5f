/*
 * test_session_table.c: binding, replacing, refusing, removing and bounding
 * the resources of one reactor's session table, and its lookups under many
 * users (the table grows while every user stays found).
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "server/xmpp/session_table.h"
#include "tests/harness.h"

#define S(text) text, (sizeof text - 1)

static int handles[64]; /* distinct addresses to use as session handles */

static void test_bind_find_remove(void)
{
    session_table *t = session_table_create(0, 0, SESSION_CONFLICT_REPLACE);
    CHECK(t != NULL);
    void *replaced = &handles[63];
    CHECK(session_table_bind(t, S("alice@example.com"), S("phone"), &handles[0], &replaced) ==
          SESSION_OK);
    CHECK(replaced == NULL);
    CHECK(session_table_bind(t, S("alice@example.com"), S("desk"), &handles[1], &replaced) ==
          SESSION_OK);
    CHECK(session_table_bind(t, S("bob@example.com"), S("phone"), &handles[2], &replaced) ==
          SESSION_OK);
    CHECK(session_table_sessions(t) == 3);
    CHECK(session_table_users(t) == 2);

    const session_user *alice = session_table_user(t, S("alice@example.com"));
    CHECK(alice != NULL && alice->resource_count == 2);
    CHECK(alice != NULL && alice->bare_length == 17 &&
          memcmp(alice->bare_jid, "alice@example.com", 17) == 0);
    const session_resource *phone = session_table_find(t, S("alice@example.com"), S("phone"));
    CHECK(phone != NULL && phone->handle == &handles[0]);
    CHECK(phone != NULL && phone->full_length == 23 &&
          memcmp(phone->full_jid, "alice@example.com/phone", 23) == 0);
    CHECK(phone != NULL && !phone->available && phone->priority == 0);
    CHECK(session_table_find(t, S("alice@example.com"), S("tablet")) == NULL);
    CHECK(session_table_find(t, S("alice@example.co"), S("phone")) == NULL);
    CHECK(session_table_user(t, S("carol@example.com")) == NULL);

    CHECK(session_table_set_presence(t, S("alice@example.com"), S("desk"), true, -5) == SESSION_OK);
    const session_resource *desk = session_table_find(t, S("alice@example.com"), S("desk"));
    CHECK(desk != NULL && desk->available && desk->priority == -5);
    CHECK(session_table_set_presence(t, S("alice@example.com"), S("none"), true, 1) ==
          SESSION_NOT_FOUND);

    /* Only the holder's handle removes a resource. */
    CHECK(session_table_remove(t, S("alice@example.com"), S("phone"), &handles[1]) ==
          SESSION_NOT_FOUND);
    CHECK(session_table_remove(t, S("alice@example.com"), S("phone"), &handles[0]) == SESSION_OK);
    CHECK(session_table_find(t, S("alice@example.com"), S("phone")) == NULL);
    desk = session_table_find(t, S("alice@example.com"), S("desk"));
    CHECK(desk != NULL && desk->handle == &handles[1] && desk->priority == -5);
    CHECK(session_table_remove(t, S("alice@example.com"), S("desk"), &handles[1]) == SESSION_OK);
    CHECK(session_table_user(t, S("alice@example.com")) == NULL);
    CHECK(session_table_users(t) == 1 && session_table_sessions(t) == 1);
    CHECK(session_table_remove(t, S("alice@example.com"), S("desk"), &handles[1]) ==
          SESSION_NOT_FOUND);
    session_table_destroy(t);
}

static void test_conflict_replace(void)
{
    session_table *t = session_table_create(0, 0, SESSION_CONFLICT_REPLACE);
    void *replaced = NULL;
    CHECK(session_table_bind(t, S("a@x"), S("r"), &handles[0], &replaced) == SESSION_OK);
    CHECK(session_table_set_presence(t, S("a@x"), S("r"), true, 7) == SESSION_OK);
    /* The same session binding again changes nothing. */
    CHECK(session_table_bind(t, S("a@x"), S("r"), &handles[0], &replaced) == SESSION_OK);
    CHECK(replaced == NULL);
    CHECK(session_table_bind(t, S("a@x"), S("r"), &handles[1], &replaced) == SESSION_REPLACED);
    CHECK(replaced == &handles[0]);
    const session_resource *r = session_table_find(t, S("a@x"), S("r"));
    CHECK(r != NULL && r->handle == &handles[1] && !r->available && r->priority == 0);
    CHECK(session_table_sessions(t) == 1);
    /* The replaced session closes later: its removal leaves the new one. */
    CHECK(session_table_remove(t, S("a@x"), S("r"), &handles[0]) == SESSION_NOT_FOUND);
    CHECK(session_table_find(t, S("a@x"), S("r")) != NULL);
    session_table_destroy(t);
}

static void test_conflict_refuse(void)
{
    session_table *t = session_table_create(0, 0, SESSION_CONFLICT_REFUSE);
    void *replaced = NULL;
    CHECK(session_table_bind(t, S("a@x"), S("r"), &handles[0], &replaced) == SESSION_OK);
    CHECK(session_table_bind(t, S("a@x"), S("r"), &handles[1], &replaced) == SESSION_CONFLICT);
    CHECK(replaced == NULL);
    const session_resource *r = session_table_find(t, S("a@x"), S("r"));
    CHECK(r != NULL && r->handle == &handles[0]);
    CHECK(session_table_bind(t, S("a@x"), S("other"), &handles[1], &replaced) == SESSION_OK);
    CHECK(strcmp(session_status_name(SESSION_CONFLICT), "conflict") == 0);
    session_table_destroy(t);
}

static void test_bounds(void)
{
    session_table *t = session_table_create(5, 3, SESSION_CONFLICT_REPLACE);
    void *replaced;
    char resource[16];
    for (unsigned i = 0; i < 3; i++) {
        int n = snprintf(resource, sizeof resource, "r%u", i);
        CHECK(session_table_bind(t, S("a@x"), resource, (size_t)n, &handles[i], &replaced) ==
              SESSION_OK);
    }
    CHECK(session_table_bind(t, S("a@x"), S("r3"), &handles[3], &replaced) == SESSION_USER_FULL);
    /* Replacing an existing resource is not a new one. */
    CHECK(session_table_bind(t, S("a@x"), S("r1"), &handles[4], &replaced) == SESSION_REPLACED);
    CHECK(session_table_bind(t, S("b@x"), S("r"), &handles[5], &replaced) == SESSION_OK);
    CHECK(session_table_bind(t, S("c@x"), S("r"), &handles[6], &replaced) == SESSION_OK);
    CHECK(session_table_bind(t, S("d@x"), S("r"), &handles[7], &replaced) == SESSION_TABLE_FULL);
    CHECK(session_table_user(t, S("d@x")) == NULL);
    CHECK(session_table_remove(t, S("c@x"), S("r"), &handles[6]) == SESSION_OK);
    CHECK(session_table_bind(t, S("d@x"), S("r"), &handles[7], &replaced) == SESSION_OK);
    session_table_destroy(t);

    /* The defaults are the limits; beyond-limit requests are clamped. */
    t = session_table_create(0, 1000, SESSION_CONFLICT_REPLACE);
    unsigned bound = 0;
    for (unsigned i = 0; i < LIMIT_SESSION_RESOURCES_PER_USER + 2; i++) {
        int n = snprintf(resource, sizeof resource, "r%u", i);
        bound += session_table_bind(t, S("a@x"), resource, (size_t)n, &handles[i % 64],
                                    &replaced) == SESSION_OK;
    }
    CHECK(bound == LIMIT_SESSION_RESOURCES_PER_USER);

    /* Malformed parts. */
    CHECK(session_table_bind(t, "", 0, S("r"), &handles[0], &replaced) == SESSION_INVALID);
    CHECK(session_table_bind(t, S("a@x"), "", 0, &handles[0], &replaced) == SESSION_INVALID);
    CHECK(session_table_bind(t, S("a@x/y"), S("r"), &handles[0], &replaced) == SESSION_INVALID);
    static char long_resource[LIMIT_ROUTE_JID_BYTES_MAX];
    memset(long_resource, 'r', sizeof long_resource);
    CHECK(session_table_bind(t, S("b@x"), long_resource, LIMIT_ROUTE_JID_BYTES_MAX - 3, &handles[0],
                             &replaced) == SESSION_INVALID);
    CHECK(session_table_bind(t, S("b@x"), long_resource, LIMIT_ROUTE_JID_BYTES_MAX - 4, &handles[0],
                             &replaced) == SESSION_OK);
    session_table_destroy(t);
}

static void test_many_users(void)
{
    enum { users = 20000 };
    session_table *t = session_table_create(0, 0, SESSION_CONFLICT_REPLACE);
    char bare[32];
    void *replaced;
    for (unsigned i = 0; i < users; i++) {
        int n = snprintf(bare, sizeof bare, "user%u@example.com", i);
        CHECK(session_table_bind(t, bare, (size_t)n, S("r"), &handles[i % 64], &replaced) ==
              SESSION_OK);
    }
    CHECK(session_table_users(t) == users);
    unsigned found = 0;
    for (unsigned i = 0; i < users; i++) {
        int n = snprintf(bare, sizeof bare, "user%u@example.com", i);
        const session_resource *r = session_table_find(t, bare, (size_t)n, S("r"));
        found += r != NULL && r->handle == &handles[i % 64];
    }
    CHECK(found == users);
    for (unsigned i = 0; i < users; i += 2) {
        int n = snprintf(bare, sizeof bare, "user%u@example.com", i);
        CHECK(session_table_remove(t, bare, (size_t)n, S("r"), &handles[i % 64]) == SESSION_OK);
    }
    CHECK(session_table_users(t) == users / 2);
    CHECK(session_table_user(t, S("user0@example.com")) == NULL);
    CHECK(session_table_user(t, S("user1@example.com")) != NULL);
    session_table_destroy(t);
}

int main(int argc, char **argv)
{
    const char *filter = argc > 1 ? argv[1] : NULL;
    harness_run("bind_find_remove", test_bind_find_remove, filter);
    harness_run("conflict_replace", test_conflict_replace, filter);
    harness_run("conflict_refuse", test_conflict_refuse, filter);
    harness_run("bounds", test_bounds, filter);
    harness_run("many_users", test_many_users, filter);
    return harness_finish();
}
