/*
 * c2s_node.c: the XMPP layer of one process: served domains, the cluster
 * driver, and each reactor's state (SASL with its throttle, the session
 * table, buffers).
 *
 * The SASL secret (it derives the salts shown for accounts that do not
 * exist, sasl.h) is kept in <data_dir>/sasl-secret, made at first start
 * (32 random bytes, mode 0600, written to a temporary file and renamed),
 * so that a restart does not tell an observer which accounts exist.
 */
#include "server/xmpp/c2s_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "server/xmpp/auth_throttle.h"

#define SECRET_FILE "sasl-secret"

bool c2s_node_domain(const c2s_node *node, const char *domain, size_t length, size_t *index)
{
    for (size_t i = 0; i < node->domain_count; i++) {
        if (node->domains[i].length == length && memcmp(node->domains[i].name, domain, length) == 0) {
            *index = i;
            return true;
        }
    }
    return false;
}

/* SASL usernames are JID localparts (RFC 7622 section 3.3, PRECIS
 * UsernameCaseMapped). */
static bool prepare_username(const char *input, size_t input_len, char *out, size_t capacity,
                             size_t *out_len)
{
    char prepared[LIMIT_JID_PART_BYTES_MAX];
    size_t length = 0;
    if (jid_prepare_localpart(input, input_len, prepared, &length) != JID_OK ||
        length + 1 > capacity)
        return false;
    memcpy(out, prepared, length);
    out[length] = '\0';
    *out_len = length;
    return true;
}

/* Reads the SASL secret, or makes it. Returns 0, or -1 with error set. */
static int load_secret(const config *settings, uint8_t secret[SASL_SECRET_BYTES], char *error,
                       size_t error_size)
{
    char path[CONFIG_STRING_BYTES * 2], temporary[CONFIG_STRING_BYTES * 2 + 16];
    if (config_data_path(settings, SECRET_FILE, path, sizeof path) != 0) {
        snprintf(error, error_size, "data_dir is too long for %s", SECRET_FILE);
        return -1;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t got = read(fd, secret, SASL_SECRET_BYTES);
        close(fd);
        if (got == (ssize_t)SASL_SECRET_BYTES)
            return 0;
        snprintf(error, error_size, "%s: expected %u bytes", path, SASL_SECRET_BYTES);
        return -1;
    }
    if (errno != ENOENT) {
        snprintf(error, error_size, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (RAND_bytes(secret, SASL_SECRET_BYTES) != 1) {
        snprintf(error, error_size, "no random bytes for the SASL secret");
        return -1;
    }
    snprintf(temporary, sizeof temporary, "%s.tmp", path);
    fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, secret, SASL_SECRET_BYTES) != (ssize_t)SASL_SECRET_BYTES ||
        fsync(fd) != 0 || close(fd) != 0 || rename(temporary, path) != 0) {
        snprintf(error, error_size, "cannot write %s: %s", path, strerror(errno));
        if (fd >= 0)
            unlink(temporary);
        return -1;
    }
    return 0;
}

static void node_free(c2s_node *node)
{
    if (node->reactors != NULL) {
        for (unsigned i = 0; i < node->reactor_count; i++) {
            c2s_reactor *reactor = &node->reactors[i];
            session_table_destroy(reactor->sessions);
            auth_throttle_destroy(reactor->sasl.throttle);
            if (reactor->scratch != NULL)
                xml_scratch_destroy(reactor->scratch);
        }
        free(node->reactors);
    }
    cluster_destroy(node->cluster);
    free(node);
}

c2s_node *c2s_node_create(const config *settings, unsigned reactor_count, storage *storage,
                          tls_context *tls, char *error, size_t error_size)
{
    c2s_node *node = calloc(1, sizeof *node);
    if (node == NULL) {
        snprintf(error, error_size, "out of memory");
        return NULL;
    }
    node->settings = settings;
    node->storage = storage;
    node->tls = tls;
    node->reactor_count = reactor_count;
    node->conflict = settings->sessions.conflict == 1 ? SESSION_CONFLICT_REFUSE
                                                      : SESSION_CONFLICT_REPLACE;
    for (unsigned i = 0; i < settings->domain_count; i++) {
        c2s_domain *domain = &node->domains[node->domain_count];
        size_t length = 0;
        if (jid_prepare_domainpart(settings->domains[i], strlen(settings->domains[i]),
                                   domain->name, &length) != JID_OK) {
            snprintf(error, error_size, "domains: '%s' is not a domain name", settings->domains[i]);
            node_free(node);
            return NULL;
        }
        domain->name[length] = '\0';
        domain->length = (uint16_t)length;
        node->domain_count++;
    }
    for (unsigned i = 0; i < settings->auth.anonymous_domain_count; i++) {
        const char *name = settings->auth.anonymous_domains[i];
        char prepared[LIMIT_JID_PART_BYTES_MAX + 1];
        size_t length = 0, index = 0;
        if (jid_prepare_domainpart(name, strlen(name), prepared, &length) != JID_OK ||
            !c2s_node_domain(node, prepared, length, &index)) {
            snprintf(error, error_size, "auth.anonymous_domains: '%s' is not a served domain",
                     name);
            node_free(node);
            return NULL;
        }
        node->domains[index].anonymous = true;
    }
    if (load_secret(settings, node->sasl_secret, error, error_size) != 0) {
        node_free(node);
        return NULL;
    }
    node->host = (cluster_host){
        .reactor_count = reactor_count,
        .on_stanza = c2s_route_arrived,
        .context = node,
    };
    char cluster_error[256] = "";
    node->cluster = cluster_create("local", NULL, 0, &node->host, cluster_error,
                                   sizeof cluster_error);
    if (node->cluster == NULL) {
        snprintf(error, error_size, "cluster: %s", cluster_error);
        node_free(node);
        return NULL;
    }
    node->reactors = calloc(reactor_count, sizeof *node->reactors);
    if (node->reactors == NULL) {
        snprintf(error, error_size, "out of memory");
        node_free(node);
        return NULL;
    }
    for (unsigned i = 0; i < reactor_count; i++) {
        c2s_reactor *reactor = &node->reactors[i];
        reactor->node = node;
        reactor->index = i;
        sasl_server_init(&reactor->sasl);
        reactor->sasl.fetch = sasl_fetch_storage;
        reactor->sasl.fetch_context = storage;
        reactor->sasl.prepare_username = prepare_username;
        memcpy(reactor->sasl.secret, node->sasl_secret, SASL_SECRET_BYTES);
        reactor->sasl.throttle = auth_throttle_create(0, 0);
        reactor->sessions = session_table_create(0, 0, node->conflict);
        if (reactor->sasl.throttle == NULL || reactor->sessions == NULL) {
            snprintf(error, error_size, "out of memory");
            node_free(node);
            return NULL;
        }
    }
    return node;
}

void c2s_node_destroy(c2s_node *node)
{
    if (node != NULL)
        node_free(node);
}

void c2s_node_iteration(void *context, unsigned reactor_index)
{
    c2s_node *node = context;
    cluster_poll(node->cluster, reactor_index);
}
