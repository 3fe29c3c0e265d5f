/*
 * starlingctl.c: the administration command line.
 *
 * Today it answers the two questions an operator asks before any account
 * exists: is the server speaking XMPP on this port (`probe`, also the
 * liveness check a Kubernetes pod runs), and which bounds is this build
 * running with (`limits`); and it manages accounts on the storage the
 * configuration names (`user ...`, in ctl_user.c).
 *
 * probe opens a TCP connection, sends a client stream header, and reads the
 * answer with Starling's own tokenizer until the stream features arrive or
 * the stream errs; every wait is bounded by --timeout-ms.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "proto/limits.h"
#include "proto/xml.h"
#include "server/ctl/ctl_user.h"

typedef struct probe_options {
    const char *host;
    const char *port;
    const char *domain;
    int timeout_ms;
} probe_options;

static void usage(FILE *out)
{
    fprintf(out, "usage: starlingctl [-c FILE] COMMAND [options]\n"
                 "  probe [--host H] [--port P] [--domain D] [--timeout-ms MS]\n"
                 "        open a client stream and wait for the stream features;\n"
                 "        exit 0 when the server answers correctly (defaults:\n"
                 "        127.0.0.1, 5222, localhost, 5000)\n"
                 "  limits   print every bound this build runs with\n"
                 "  version  print the version\n");
    ctl_user_usage(out);
}

static uint64_t monotonic_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000u + (uint64_t)now.tv_nsec / 1000000u;
}

/* Connects with a deadline. Returns a connected socket or -1 (reported). */
static int probe_connect(const probe_options *options, uint64_t deadline_ms)
{
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *addresses = NULL;
    int result = getaddrinfo(options->host, options->port, &hints, &addresses);
    if (result != 0) {
        fprintf(stderr, "starlingctl: cannot resolve %s: %s\n", options->host,
                gai_strerror(result));
        return -1;
    }
    int fd = socket(addresses->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, addresses->ai_addr, addresses->ai_addrlen) != 0 &&
        errno == EINPROGRESS) {
        struct pollfd wait = {.fd = fd, .events = POLLOUT};
        int left_ms = (int)(deadline_ms - monotonic_ms());
        int error = ETIMEDOUT;
        socklen_t length = sizeof error;
        if (left_ms > 0 && poll(&wait, 1, left_ms) == 1)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length);
        errno = error;
    } else if (fd >= 0) {
        errno = 0;
    }
    freeaddrinfo(addresses);
    if (fd < 0 || errno != 0) {
        fprintf(stderr, "starlingctl: cannot connect to %s port %s: %s\n", options->host,
                options->port, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* Reads the server's answer until features (0), a stream error or a
 * protocol failure (1), or the deadline (1). */
static int probe_read(int fd, xml_tokenizer *tokenizer, xml_scratch *scratch, uint64_t deadline_ms)
{
    char buffer[16384];
    for (;;) {
        int left_ms = (int)(deadline_ms - monotonic_ms());
        struct pollfd wait = {.fd = fd, .events = POLLIN};
        if (left_ms <= 0 || poll(&wait, 1, left_ms) != 1) {
            fprintf(stderr, "starlingctl: no stream features within the timeout\n");
            return 1;
        }
        ssize_t received = recv(fd, buffer, sizeof buffer, 0);
        if (received <= 0) {
            fprintf(stderr, "starlingctl: the server closed the connection\n");
            return 1;
        }
        size_t at = 0;
        while (at < (size_t)received) {
            size_t used = 0;
            xml_view view;
            xml_event event = xml_tokenizer_feed(tokenizer, scratch, buffer + at,
                                                 (size_t)received - at, &used, &view);
            at += used;
            if (event == XML_EVENT_ERROR) {
                fprintf(stderr, "starlingctl: the server's stream is malformed (%s)\n",
                        xml_error_condition_name(xml_tokenizer_error(tokenizer)));
                return 1;
            }
            if (event == XML_EVENT_STREAM_CLOSE) {
                fprintf(stderr, "starlingctl: the server closed its stream\n");
                return 1;
            }
            if (event == XML_EVENT_STANZA) {
                xml_slice name = xml_element_name(&view, xml_view_root(&view));
                xml_slice bytes = xml_view_bytes(&view);
                bool features = name.len == 8 && memcmp(name.ptr, "features", 8) == 0;
                printf("%s: %.*s\n", features ? "features" : "unexpected", (int)bytes.len,
                       bytes.ptr);
                return features ? 0 : 1;
            }
            if (event == XML_EVENT_STREAM_OPEN) {
                xml_slice bytes = xml_view_bytes(&view);
                printf("stream: %.*s\n", (int)bytes.len, bytes.ptr);
            }
            if (used == 0)
                break;
        }
    }
}

static int command_probe(const probe_options *options)
{
    uint64_t deadline_ms = monotonic_ms() + (uint64_t)options->timeout_ms;
    int fd = probe_connect(options, deadline_ms);
    if (fd < 0)
        return 1;
    char header[512];
    int length = snprintf(header, sizeof header,
                          "<?xml version='1.0'?><stream:stream to='%s' xmlns='jabber:client' "
                          "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>",
                          options->domain);
    xml_scratch *scratch = xml_scratch_create();
    if (scratch == NULL || length <= 0 || (size_t)length >= sizeof header ||
        send(fd, header, (size_t)length, MSG_NOSIGNAL) != length) {
        fprintf(stderr, "starlingctl: cannot send the stream header\n");
        xml_scratch_destroy(scratch);
        close(fd);
        return 1;
    }
    xml_tokenizer tokenizer;
    xml_tokenizer_init(&tokenizer);
    int result = probe_read(fd, &tokenizer, scratch, deadline_ms);
    static const char closing[] = "</stream:stream>";
    if (send(fd, closing, sizeof closing - 1, MSG_NOSIGNAL) < 0 && result == 0)
        fprintf(stderr, "starlingctl: note: the stream could not be closed cleanly\n");
    xml_tokenizer_fini(&tokenizer);
    xml_scratch_destroy(scratch);
    close(fd);
    return result;
}

static int command_limits(void)
{
#define PRINT_LIMIT(name) printf("%-34s %llu\n", #name, (unsigned long long)(name))
    PRINT_LIMIT(LIMIT_STANZA_BYTES_MAX);
    PRINT_LIMIT(LIMIT_STANZA_DEPTH_MAX);
    PRINT_LIMIT(LIMIT_ELEMENT_ATTRIBUTES_MAX);
    PRINT_LIMIT(LIMIT_STANZA_ELEMENTS_MAX);
    PRINT_LIMIT(LIMIT_STANZA_NODES_MAX);
    PRINT_LIMIT(LIMIT_STANZA_ATTRIBUTES_MAX);
    PRINT_LIMIT(LIMIT_NAMESPACE_DECLS_MAX);
    PRINT_LIMIT(LIMIT_NAME_BYTES_MAX);
    PRINT_LIMIT(LIMIT_STREAM_HEADER_BYTES_MAX);
    PRINT_LIMIT(LIMIT_STREAM_HEADER_PREFIXES_MAX);
    PRINT_LIMIT(LIMIT_STREAM_HEADER_NAMESPACE_BYTES_MAX);
    PRINT_LIMIT(LIMIT_REACTORS_MAX);
    PRINT_LIMIT(LIMIT_CONNECTIONS_PER_REACTOR);
    PRINT_LIMIT(LIMIT_RING_ENTRIES);
    PRINT_LIMIT(LIMIT_RECV_BUFFERS);
    PRINT_LIMIT(LIMIT_RECV_BUFFER_BYTES);
    PRINT_LIMIT(LIMIT_SEND_QUEUE_BYTES);
    PRINT_LIMIT(LIMIT_SEND_QUEUE_BYTES_HARD);
    PRINT_LIMIT(LIMIT_SEND_IOVECS);
    PRINT_LIMIT(LIMIT_WRITE_TIMEOUT_MS);
    PRINT_LIMIT(LIMIT_HANDSHAKE_TIMEOUT_MS);
    PRINT_LIMIT(LIMIT_IDLE_TIMEOUT_MS);
    PRINT_LIMIT(LIMIT_TIMER_SLOT_MS);
    PRINT_LIMIT(LIMIT_REACTOR_HOUSEKEEPING_MS);
    PRINT_LIMIT(LIMIT_REACTOR_SLOW_TURN_MS);
    PRINT_LIMIT(LIMIT_TIMER_SLOTS);
    PRINT_LIMIT(LIMIT_MAILBOX_MESSAGES);
    PRINT_LIMIT(LIMIT_SHUTDOWN_GRACE_MS);
    PRINT_LIMIT(LIMIT_LOG_RING_BYTES);
    PRINT_LIMIT(LIMIT_LISTENERS_PER_REACTOR);
    PRINT_LIMIT(LIMIT_LISTEN_BACKLOG);
    PRINT_LIMIT(LIMIT_CONNECT_SOCKETS_PER_REACTOR);
    PRINT_LIMIT(LIMIT_MOVES_IN_FLIGHT_PER_REACTOR);
    PRINT_LIMIT(LIMIT_CONFIG_FILE_BYTES_MAX);
    PRINT_LIMIT(LIMIT_CONFIG_STRING_BYTES_MAX);
    PRINT_LIMIT(LIMIT_CONFIG_SECRET_BYTES_MAX);
    PRINT_LIMIT(LIMIT_CONFIG_DOMAINS_MAX);
    PRINT_LIMIT(LIMIT_CONFIG_TIMEOUT_MS_MIN);
    PRINT_LIMIT(LIMIT_CONFIG_TIMEOUT_MS_MAX);
    PRINT_LIMIT(LIMIT_SESSION_RESOURCES_PER_USER);
    PRINT_LIMIT(LIMIT_SESSIONS_PER_REACTOR);
    PRINT_LIMIT(LIMIT_ROUTE_JID_BYTES_MAX);
    PRINT_LIMIT(LIMIT_CLUSTER_NODES_MAX);
    PRINT_LIMIT(LIMIT_CLUSTER_FAN_OUT_JIDS_MAX);
    PRINT_LIMIT(LIMIT_CLUSTER_REQUESTS_PER_REACTOR);
    PRINT_LIMIT(LIMIT_JID_PART_BYTES_MAX);
    PRINT_LIMIT(LIMIT_JID_PART_INPUT_BYTES_MAX);
    PRINT_LIMIT(LIMIT_JID_BYTES_MAX);
    PRINT_LIMIT(LIMIT_C2S_HELD_BYTES);
    PRINT_LIMIT(LIMIT_C2S_REPLY_BYTES);
    PRINT_LIMIT(LIMIT_C2S_ID_BYTES);
    PRINT_LIMIT(LIMIT_C2S_SASL_TEXT_BYTES);
    PRINT_LIMIT(LIMIT_SCRAM_MESSAGE_BYTES_MAX);
    PRINT_LIMIT(LIMIT_SCRAM_NONCE_BYTES_MAX);
    PRINT_LIMIT(LIMIT_SCRAM_SALT_BYTES_MAX);
    PRINT_LIMIT(LIMIT_SCRAM_ITERATIONS_MIN);
    PRINT_LIMIT(LIMIT_SCRAM_ITERATIONS_MAX);
    PRINT_LIMIT(LIMIT_TLS_HANDSHAKE_BYTES_MAX);
    PRINT_LIMIT(LIMIT_TLS_PLAINTEXT_BUFFER_BYTES);
    PRINT_LIMIT(LIMIT_TLS_PEM_FILE_BYTES_MAX);
    PRINT_LIMIT(LIMIT_TLS_SESSION_TICKETS);
    PRINT_LIMIT(LIMIT_TLS_SELF_SIGNED_DAYS);
    PRINT_LIMIT(LIMIT_SASL_MESSAGE_BYTES_MAX);
    PRINT_LIMIT(LIMIT_SASL_FETCHES_IN_FLIGHT);
    PRINT_LIMIT(LIMIT_SASL_ATTEMPTS_PER_STREAM);
    PRINT_LIMIT(LIMIT_AUTH_THROTTLE_ACCOUNTS);
    PRINT_LIMIT(LIMIT_AUTH_THROTTLE_ADDRESSES);
    PRINT_LIMIT(LIMIT_AUTH_THROTTLE_FREE_FAILURES);
    PRINT_LIMIT(LIMIT_AUTH_THROTTLE_DELAY_MS_BASE);
    PRINT_LIMIT(LIMIT_AUTH_THROTTLE_ACCOUNT_DELAY_MS_MAX);
    PRINT_LIMIT(LIMIT_AUTH_THROTTLE_ADDRESS_DELAY_MS_MAX);
    PRINT_LIMIT(LIMIT_AUTH_THROTTLE_FORGET_MS);
    PRINT_LIMIT(LIMIT_STORAGE_QUEUE_REQUESTS);
    PRINT_LIMIT(LIMIT_STORAGE_WAITER_PENDING);
    PRINT_LIMIT(LIMIT_STORAGE_PAGE_ROWS_MAX);
    PRINT_LIMIT(LIMIT_STORAGE_REASON_BYTES);
    PRINT_LIMIT(LIMIT_STORAGE_JID_PART_BYTES_MAX);
    PRINT_LIMIT(LIMIT_STORAGE_SQLITE_BUSY_TIMEOUT_MS);
    PRINT_LIMIT(LIMIT_STORAGE_COMPLETION_RETRY_MS);
    PRINT_LIMIT(LIMIT_STORAGE_POSTGRESQL_BATCH_MS);
    PRINT_LIMIT(LIMIT_STORAGE_POSTGRESQL_CONNECT_MS);
    PRINT_LIMIT(LIMIT_STORAGE_POSTGRESQL_RECONNECT_MIN_MS);
    PRINT_LIMIT(LIMIT_STORAGE_POSTGRESQL_RECONNECT_MAX_MS);
    PRINT_LIMIT(LIMIT_STORAGE_POSTGRESQL_CONNECTIONS_MAX);
    PRINT_LIMIT(LIMIT_SCRAM_STORED_ITERATIONS);
    PRINT_LIMIT(LIMIT_SCRAM_STORED_SALT_BYTES);
    PRINT_LIMIT(LIMIT_CTL_PASSWORD_BYTES_MAX);
    PRINT_LIMIT(LIMIT_CTL_IMPORT_LINE_BYTES_MAX);
    PRINT_LIMIT(LIMIT_CTL_IMPORT_BATCH_USERS);
    PRINT_LIMIT(LIMIT_CTL_STORAGE_WAIT_MS);
#undef PRINT_LIMIT
    return 0;
}

static int parse_probe(int argc, char **argv, probe_options *options)
{
    for (int i = 2; i < argc; i += 2) {
        if (i + 1 >= argc) {
            fprintf(stderr, "starlingctl: %s needs a value\n", argv[i]);
            return -1;
        }
        const char *value = argv[i + 1];
        if (strcmp(argv[i], "--host") == 0) {
            options->host = value;
        } else if (strcmp(argv[i], "--port") == 0) {
            options->port = value;
        } else if (strcmp(argv[i], "--domain") == 0 && strlen(value) < 256 &&
                   strpbrk(value, "<>&'\"") == NULL) {
            options->domain = value;
        } else if (strcmp(argv[i], "--timeout-ms") == 0 && atoi(value) > 0) {
            options->timeout_ms = atoi(value);
        } else {
            fprintf(stderr, "starlingctl: bad option or value: %s %s\n", argv[i], value);
            return -1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *config_path = NULL;
    if (argc >= 3 && (strcmp(argv[1], "-c") == 0 || strcmp(argv[1], "--config") == 0)) {
        config_path = argv[2];
        argv += 2;
        argc -= 2;
    }
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "user") == 0)
        return ctl_user_main(argc - 1, argv + 1, config_path);
    if (strcmp(argv[1], "probe") == 0) {
        probe_options options = {"127.0.0.1", "5222", "localhost", 5000};
        if (parse_probe(argc, argv, &options) != 0)
            return 2;
        return command_probe(&options);
    }
    if (strcmp(argv[1], "limits") == 0 && argc == 2)
        return command_limits();
    if (strcmp(argv[1], "version") == 0 && argc == 2) {
        printf("starlingctl %s\n", STARLING_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "starlingctl: unknown command '%s' (see --help)\n", argv[1]);
    return 2;
}
