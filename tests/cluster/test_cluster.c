/*
 * test_cluster.c: the shard hash and the cluster interface's `local`
 * driver, with the reactors' mailboxes simulated by one queue that the
 * test runs by hand: every message names its target reactor, and running
 * it sets the "current reactor" the callbacks record. A switch makes
 * posts to chosen reactors fail, as a full mailbox does.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster/cluster.h"
#include "cluster/hash.h"
#include "tests/harness.h"

#define REACTORS  4u
#define QUEUE_MAX (2u * LIMIT_CLUSTER_REQUESTS_PER_REACTOR + 64u)

typedef struct queued {
    unsigned target;
    rx_message message;
} queued;

static queued queue[QUEUE_MAX];
static size_t queue_head, queue_count;
static unsigned current_reactor;
static bool refuse[REACTORS]; /* posts to these reactors fail with RX_ERR_FULL */

static rx_status fake_post(void *context, unsigned reactor, const rx_message *message)
{
    (void)context;
    if (reactor >= REACTORS || refuse[reactor] || queue_count == QUEUE_MAX)
        return RX_ERR_FULL;
    queue[(queue_head + queue_count++) % QUEUE_MAX] = (queued){reactor, *message};
    return RX_OK;
}

/* Runs queued messages (and the ones they post) until none is left. */
static unsigned pump(void)
{
    unsigned ran = 0;
    while (queue_count > 0) {
        queued q = queue[queue_head];
        queue_head = (queue_head + 1) % QUEUE_MAX;
        queue_count--;
        current_reactor = q.target;
        q.message.function(&q.message);
        ran++;
    }
    return ran;
}

typedef struct arrival {
    unsigned reactor;
    char recipient[64];
    char stanza[128];
} arrival;

static arrival arrivals[16];
static unsigned arrival_count;

static void on_stanza(void *context, unsigned reactor, const char *recipient,
                      size_t recipient_length, const char *stanza, size_t stanza_length)
{
    (void)context;
    CHECK(reactor == current_reactor);
    if (arrival_count < 16 && recipient_length < 64 && stanza_length < 128) {
        arrival *a = &arrivals[arrival_count];
        a->reactor = reactor;
        memcpy(a->recipient, recipient, recipient_length);
        a->recipient[recipient_length] = '\0';
        memcpy(a->stanza, stanza, stanza_length);
        a->stanza[stanza_length] = '\0';
    }
    arrival_count++;
}

static const cluster_host host = {
    .reactor_count = REACTORS,
    .post = fake_post,
    .on_stanza = on_stanza,
};

typedef struct answer {
    unsigned calls;
    unsigned reactor;
    cluster_status status;
    size_t node_count;
    cluster_node first;
} answer;

static void on_answer(void *context, const cluster_result *result)
{
    answer *a = context;
    a->calls++;
    a->reactor = current_reactor;
    a->status = result->status;
    a->node_count = result->node_count;
    a->first = result->node_count > 0 ? result->nodes[0] : CLUSTER_NODE_NONE;
}

static cluster *make_cluster(void)
{
    char error[128];
    cluster *c = cluster_create("local", NULL, 0, &host, error, sizeof error);
    CHECK(c != NULL);
    memset(refuse, 0, sizeof refuse);
    arrival_count = 0;
    return c;
}

/* Looks bare up from reactor `from` and returns the node count (or -1). */
static int lookup(cluster *c, unsigned from, const char *bare)
{
    answer a = {0};
    current_reactor = from;
    if (cluster_lookup(c, from, bare, strlen(bare), on_answer, &a) != CLUSTER_OK)
        return -1;
    CHECK(a.calls == 0); /* never inside the submission */
    pump();
    CHECK(a.calls == 1);
    CHECK(a.reactor == from);
    CHECK(a.status == CLUSTER_OK);
    CHECK(a.node_count == 0 || a.first == cluster_self(c));
    return a.calls == 1 ? (int)a.node_count : -1;
}

static void test_siphash_vectors(void)
{
    uint8_t key[16], message[15];
    for (unsigned i = 0; i < 16; i++)
        key[i] = (uint8_t)i;
    for (unsigned i = 0; i < 15; i++)
        message[i] = (uint8_t)i;
    /* The reference implementation's vectors: the empty message, and the
     * paper's worked example over bytes 00..0e. */
    CHECK(cluster_siphash(key, message, 0) == 0x726fdb47dd0e0e31ull);
    CHECK(cluster_siphash(key, message, 15) == 0xa129ca6149be45e5ull);
    uint8_t a[16], b[16];
    cluster_hash_key(a);
    cluster_hash_key(b);
    CHECK(memcmp(a, b, 16) == 0);
    static const uint8_t zero[16];
    CHECK(memcmp(a, zero, 16) != 0);
    CHECK(cluster_hash("alice@example.com", 17) == cluster_siphash(a, "alice@example.com", 17));
}

static void test_shard_stable_and_spread(void)
{
    enum { names = 20000, reactors = 8 };
    unsigned counts[reactors] = {0};
    char jid[64];
    for (unsigned i = 0; i < names; i++) {
        int n = snprintf(jid, sizeof jid, "user%u@localhost", i);
        unsigned shard = cluster_shard(jid, (size_t)n, reactors);
        CHECK(shard < reactors);
        CHECK(cluster_shard(jid, (size_t)n, reactors) == shard);
        if (shard < reactors)
            counts[shard]++;
    }
    /* 2,500 expected per reactor, standard deviation about 47: 20% off is
     * over ten deviations, so this fails only for a biased hash. */
    for (unsigned r = 0; r < reactors; r++)
        CHECK(counts[r] > 2000 && counts[r] < 3000);
    CHECK(cluster_shard("x@y", 3, 1) == 0);
}

static void test_publish_lookup_withdraw(void)
{
    cluster *c = make_cluster();
    CHECK(strcmp(cluster_driver_name(c), "local") == 0);
    CHECK(!cluster_spans_nodes(c)); /* one node: c2s publishes nothing to it */
    CHECK(cluster_self(c) == 0);
    CHECK(strcmp(cluster_node_name(c, 0), "local") == 0);
    CHECK(strcmp(cluster_node_name(c, 7), "") == 0);
    const char *bare = "alice@example.com";
    unsigned owner = cluster_shard(bare, strlen(bare), REACTORS);
    unsigned other = (owner + 1) % REACTORS;
    CHECK(lookup(c, other, bare) == 0);

    answer p1 = {0}, p2 = {0}, again = {0};
    current_reactor = owner;
    CHECK(cluster_publish(c, owner, "alice@example.com/phone", 23, on_answer, &p1) == CLUSTER_OK);
    current_reactor = other;
    CHECK(cluster_publish(c, other, "alice@example.com/desk", 22, on_answer, &p2) == CLUSTER_OK);
    CHECK(cluster_publish(c, other, "alice@example.com/desk", 22, on_answer, &again) == CLUSTER_OK);
    CHECK(p1.calls == 0 && p2.calls == 0);
    pump();
    CHECK(p1.calls == 1 && p1.reactor == owner && p1.status == CLUSTER_OK);
    CHECK(p2.calls == 1 && p2.reactor == other && p2.status == CLUSTER_OK);
    CHECK(again.calls == 1 && again.status == CLUSTER_OK);

    for (unsigned r = 0; r < REACTORS; r++)
        CHECK(lookup(c, r, bare) == 1);
    CHECK(lookup(c, other, "bob@example.com") == 0);
    CHECK(lookup(c, other, "alice@example.co") == 0);

    /* Fire and forget: no callback, the withdrawal still happens. */
    current_reactor = owner;
    CHECK(cluster_withdraw(c, owner, "alice@example.com/phone", 23, NULL, NULL) == CLUSTER_OK);
    pump();
    CHECK(lookup(c, owner, bare) == 1);
    /* The duplicate publish made one entry: one withdrawal removes it. */
    answer w = {0};
    CHECK(cluster_withdraw(c, owner, "alice@example.com/desk", 22, on_answer, &w) == CLUSTER_OK);
    pump();
    CHECK(w.calls == 1 && w.status == CLUSTER_OK);
    CHECK(lookup(c, other, bare) == 0);
    /* Withdrawing what is not there is fine. */
    CHECK(cluster_withdraw(c, owner, "alice@example.com/none", 22, on_answer, &w) == CLUSTER_OK);
    pump();
    CHECK(w.calls == 2 && w.status == CLUSTER_OK);
    cluster_destroy(c);
}

static void test_many_users_grow(void)
{
    cluster *c = make_cluster();
    char jid[64];
    for (unsigned i = 0; i < 2000; i++) {
        int n = snprintf(jid, sizeof jid, "u%u@example.com/r%u", i, i % 3);
        CHECK(cluster_publish(c, i % REACTORS, jid, (size_t)n, NULL, NULL) == CLUSTER_OK);
        if (i % 500 == 499)
            pump();
    }
    pump();
    unsigned found = 0;
    for (unsigned i = 0; i < 2000; i += 97) {
        snprintf(jid, sizeof jid, "u%u@example.com", i);
        found += lookup(c, 0, jid) == 1;
    }
    CHECK(found == (2000 + 96) / 97);
    CHECK(lookup(c, 0, "u2000@example.com") == 0);
    cluster_destroy(c);
}

static void test_deliver_loopback(void)
{
    cluster *c = make_cluster();
    const char *stanza =
        "<message from='a@x/r' to='bob@example.com/desk'><body>hi</body></message>";
    const char *to = "bob@example.com/desk";
    answer a = {0};
    current_reactor = 2;
    CHECK(cluster_deliver(c, 2, cluster_self(c), to, strlen(to), stanza, strlen(stanza), on_answer,
                          &a) == CLUSTER_OK);
    CHECK(arrival_count == 0 && a.calls == 0);
    pump();
    CHECK(arrival_count == 1);
    CHECK(arrivals[0].reactor == cluster_shard("bob@example.com", 15, REACTORS));
    CHECK(strcmp(arrivals[0].recipient, to) == 0);
    CHECK(strcmp(arrivals[0].stanza, stanza) == 0);
    CHECK(a.calls == 1 && a.reactor == 2 && a.status == CLUSTER_OK);

    /* No other node exists. */
    CHECK(cluster_deliver(c, 2, 1, to, strlen(to), stanza, strlen(stanza), on_answer, &a) ==
          CLUSTER_INVALID);
    CHECK(cluster_deliver(c, 2, 0, to, strlen(to), stanza, 0, on_answer, &a) == CLUSTER_INVALID);
    CHECK(cluster_deliver(c, 2, 0, "", 0, stanza, strlen(stanza), on_answer, &a) ==
          CLUSTER_INVALID);
    pump();
    CHECK(a.calls == 1 && arrival_count == 1);
    cluster_destroy(c);
}

static void test_fan_out(void)
{
    cluster *c = make_cluster();
    const char *presence = "<presence from='a@x/r'/>";
    cluster_bytes recipients[3] = {
        {"b@example.com", 13}, {"c@example.com", 13}, {"d@example.com", 13}};
    cluster_node self = cluster_self(c);
    answer a = {0};
    current_reactor = 1;
    CHECK(cluster_fan_out(c, 1, &self, 1, recipients, 3, presence, strlen(presence), on_answer,
                          &a) == CLUSTER_OK);
    CHECK(a.calls == 0);
    pump();
    CHECK(arrival_count == 3);
    for (unsigned i = 0; i < 3 && i < arrival_count; i++) {
        CHECK(strcmp(arrivals[i].stanza, presence) == 0);
        CHECK(arrivals[i].reactor == cluster_shard(arrivals[i].recipient, 13, REACTORS));
    }
    CHECK(a.calls == 1 && a.reactor == 1 && a.status == CLUSTER_OK);

    cluster_node elsewhere = 3;
    CHECK(cluster_fan_out(c, 1, &elsewhere, 1, recipients, 3, presence, strlen(presence), on_answer,
                          &a) == CLUSTER_INVALID);
    CHECK(cluster_fan_out(c, 1, &self, 1, recipients, 0, presence, strlen(presence), on_answer,
                          &a) == CLUSTER_INVALID);
    /* Every part refused: busy at once, no callback. */
    for (unsigned r = 0; r < REACTORS; r++)
        refuse[r] = true;
    CHECK(cluster_fan_out(c, 1, &self, 1, recipients, 3, presence, strlen(presence), on_answer,
                          &a) == CLUSTER_BUSY);
    pump();
    CHECK(a.calls == 1 && arrival_count == 3);
    cluster_destroy(c);
}

static void test_busy_and_bounds(void)
{
    cluster *c = make_cluster();
    answer a = {0};
    const char *bare = "carol@example.com";
    unsigned owner = cluster_shard(bare, strlen(bare), REACTORS);
    refuse[owner] = true;
    CHECK(cluster_lookup(c, 0, bare, strlen(bare), on_answer, &a) == CLUSTER_BUSY);
    refuse[owner] = false;
    pump();
    CHECK(a.calls == 0);

    /* The bound on outstanding requests of one reactor. */
    unsigned accepted = 0;
    for (unsigned i = 0; i < LIMIT_CLUSTER_REQUESTS_PER_REACTOR + 10; i++)
        accepted += cluster_lookup(c, 0, bare, strlen(bare), on_answer, &a) == CLUSTER_OK;
    CHECK(accepted == LIMIT_CLUSTER_REQUESTS_PER_REACTOR);
    CHECK(cluster_lookup(c, 0, bare, strlen(bare), on_answer, &a) == CLUSTER_BUSY);
    /* Other reactors are not affected. */
    CHECK(cluster_lookup(c, 1, bare, strlen(bare), on_answer, &a) == CLUSTER_OK);
    pump();
    CHECK(a.calls == LIMIT_CLUSTER_REQUESTS_PER_REACTOR + 1);
    CHECK(cluster_lookup(c, 0, bare, strlen(bare), on_answer, &a) == CLUSTER_OK);
    pump();

    /* Bad arguments. */
    CHECK(cluster_lookup(c, 0, "carol@example.com/r", 19, on_answer, &a) == CLUSTER_INVALID);
    CHECK(cluster_lookup(c, 0, "", 0, on_answer, &a) == CLUSTER_INVALID);
    CHECK(cluster_lookup(c, REACTORS, bare, strlen(bare), on_answer, &a) == CLUSTER_INVALID);
    static char huge[LIMIT_ROUTE_JID_BYTES_MAX + 1];
    memset(huge, 'a', sizeof huge);
    CHECK(cluster_publish(c, 0, huge, sizeof huge, on_answer, &a) == CLUSTER_INVALID);
    CHECK(cluster_publish(c, 0, huge, sizeof huge - 1, on_answer, &a) == CLUSTER_OK);
    pump();
    cluster_destroy(c);
}

/* An answer refused by a full mailbox waits for cluster_poll. */
static void test_reply_waits_for_poll(void)
{
    cluster *c = make_cluster();
    const char *bare = "dave@example.com";
    unsigned owner = cluster_shard(bare, strlen(bare), REACTORS);
    unsigned asker = (owner + 1) % REACTORS;
    answer first = {0}, second = {0};
    current_reactor = asker;
    CHECK(cluster_lookup(c, asker, bare, strlen(bare), on_answer, &first) == CLUSTER_OK);
    CHECK(cluster_lookup(c, asker, bare, strlen(bare), on_answer, &second) == CLUSTER_OK);
    refuse[asker] = true;
    pump();
    CHECK(first.calls == 0 && second.calls == 0);
    cluster_poll(c, owner);
    pump();
    CHECK(first.calls == 0);
    refuse[asker] = false;
    cluster_poll(c, asker); /* not the reactor holding them */
    pump();
    CHECK(first.calls == 0);
    cluster_poll(c, owner);
    pump();
    CHECK(first.calls == 1 && first.reactor == asker && first.status == CLUSTER_OK);
    CHECK(second.calls == 1);
    cluster_destroy(c);
}

static void test_create_errors(void)
{
    char error[128] = "";
    CHECK(cluster_create("redis", NULL, 0, &host, error, sizeof error) == NULL);
    CHECK(strstr(error, "unknown driver") != NULL);
    cluster_option bad = {"colour", "blue"};
    CHECK(cluster_create("local", &bad, 1, &host, error, sizeof error) == NULL);
    CHECK(strstr(error, "colour") != NULL);
    cluster_host no_reactors = host;
    no_reactors.reactor_count = 0;
    CHECK(cluster_create("local", NULL, 0, &no_reactors, error, sizeof error) == NULL);
    cluster_option name = {"node", "starling-0"};
    cluster *c = cluster_create("local", &name, 1, &host, error, sizeof error);
    CHECK(c != NULL && strcmp(cluster_node_name(c, cluster_self(c)), "starling-0") == 0);
    cluster_destroy(c);
    CHECK(strcmp(cluster_status_name(CLUSTER_BUSY), "busy") == 0);
}

/* ------------------------------------------------------ on a real runtime */

/* The same driver with host.post NULL (rx_post) on four real reactors:
 * each reactor publishes a user, looks another up, and delivers to a
 * third; every callback must run on the reactor that asked, and every
 * stanza on its recipient's shard. */
#define RUNTIME_REACTORS 4u

static cluster *runtime_cluster;
static atomic_uint runtime_answers, runtime_found, runtime_wrong, runtime_arrivals;

static void runtime_on_stanza(void *context, unsigned reactor, const char *recipient,
                              size_t recipient_length, const char *stanza, size_t stanza_length)
{
    (void)context;
    (void)stanza;
    unsigned here = rx_reactor_index(rx_reactor_current());
    size_t bare = recipient_length;
    for (size_t i = 0; i < recipient_length; i++)
        if (recipient[i] == '/') {
            bare = i;
            break;
        }
    if (here != reactor || here != cluster_shard(recipient, bare, RUNTIME_REACTORS) ||
        stanza_length != 9)
        atomic_fetch_add(&runtime_wrong, 1);
    atomic_fetch_add(&runtime_arrivals, 1);
}

static void runtime_on_answer(void *context, const cluster_result *result)
{
    unsigned asked_on = (unsigned)(uintptr_t)context;
    if (rx_reactor_index(rx_reactor_current()) != asked_on || result->status != CLUSTER_OK)
        atomic_fetch_add(&runtime_wrong, 1);
    atomic_fetch_add(&runtime_found, (unsigned)result->node_count);
    atomic_fetch_add(&runtime_answers, 1);
}

/* words[0]: the phase; runs on each reactor. */
static void runtime_step(const rx_message *message)
{
    unsigned here = rx_reactor_index(rx_reactor_current());
    void *context = (void *)(uintptr_t)here;
    char jid[64];
    int n;
    cluster_status status = CLUSTER_OK;
    switch (message->words[0]) {
    case 0:
        n = snprintf(jid, sizeof jid, "user%u@example.com/r", here);
        status = cluster_publish(runtime_cluster, here, jid, (size_t)n, runtime_on_answer, context);
        break;
    case 1:
        n = snprintf(jid, sizeof jid, "user%u@example.com", (here + 1) % RUNTIME_REACTORS);
        status = cluster_lookup(runtime_cluster, here, jid, (size_t)n, runtime_on_answer, context);
        if (status == CLUSTER_OK)
            status = cluster_lookup(runtime_cluster, here, "nobody@example.com", 18,
                                    runtime_on_answer, context);
        break;
    default:
        n = snprintf(jid, sizeof jid, "user%u@example.com/r", (here + 2) % RUNTIME_REACTORS);
        status = cluster_deliver(runtime_cluster, here, 0, jid, (size_t)n, "<message/>", 9,
                                 runtime_on_answer, context);
        break;
    }
    if (status != CLUSTER_OK)
        atomic_fetch_add(&runtime_wrong, 1);
}

static bool wait_until(atomic_uint *counter, unsigned value)
{
    unsigned long long deadline = harness_now_ms() + 10000;
    while (atomic_load(counter) < value && harness_now_ms() < deadline)
        usleep(1000);
    return atomic_load(counter) >= value;
}

static void test_on_runtime(void)
{
    rx_options options;
    rx_options_init(&options);
    options.reactors = RUNTIME_REACTORS;
    options.handle_signals = false;
    rx_runtime *runtime = rx_runtime_create(&options);
    CHECK(runtime != NULL);
    if (runtime == NULL)
        return;
    rx_producer *producer = rx_producer_create(runtime);
    CHECK(producer != NULL && rx_runtime_start(runtime) == RX_OK);
    static const cluster_host runtime_host = {
        .reactor_count = RUNTIME_REACTORS,
        .on_stanza = runtime_on_stanza,
    };
    char error[128];
    runtime_cluster = cluster_create("local", NULL, 0, &runtime_host, error, sizeof error);
    CHECK(runtime_cluster != NULL);
    unsigned expected_answers[3] = {RUNTIME_REACTORS, 3 * RUNTIME_REACTORS, 4 * RUNTIME_REACTORS};
    for (unsigned phase = 0; phase < 3 && runtime_cluster != NULL; phase++) {
        for (unsigned r = 0; r < RUNTIME_REACTORS; r++) {
            rx_message step = {.function = runtime_step, .words = {phase, 0}};
            CHECK(rx_producer_post(producer, r, &step) == RX_OK);
        }
        CHECK(wait_until(&runtime_answers, expected_answers[phase]));
    }
    CHECK(wait_until(&runtime_arrivals, RUNTIME_REACTORS));
    /* Each lookup of a published user found this node; "nobody" found none. */
    CHECK(atomic_load(&runtime_found) == RUNTIME_REACTORS);
    CHECK(atomic_load(&runtime_wrong) == 0);
    rx_runtime_stop(runtime);
    rx_runtime_wait(runtime);
    cluster_destroy(runtime_cluster);
    rx_runtime_destroy(runtime);
}

int main(int argc, char **argv)
{
    const char *filter = argc > 1 ? argv[1] : NULL;
    harness_run("siphash_vectors", test_siphash_vectors, filter);
    harness_run("shard_stable_and_spread", test_shard_stable_and_spread, filter);
    harness_run("publish_lookup_withdraw", test_publish_lookup_withdraw, filter);
    harness_run("many_users_grow", test_many_users_grow, filter);
    harness_run("deliver_loopback", test_deliver_loopback, filter);
    harness_run("fan_out", test_fan_out, filter);
    harness_run("busy_and_bounds", test_busy_and_bounds, filter);
    harness_run("reply_waits_for_poll", test_reply_waits_for_poll, filter);
    harness_run("create_errors", test_create_errors, filter);
    harness_run("on_runtime", test_on_runtime, filter);
    return harness_finish();
}
