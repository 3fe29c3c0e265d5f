/*
 * peer.c: the address of the other end of a connection.
 *
 * Accepted connections are direct descriptors (multishot accept straight
 * into the ring's table), so there is no ordinary descriptor to call
 * getpeername on, and a multishot accept cannot return addresses (all its
 * completions would share one address buffer). Instead, each accept
 * completion is followed by IORING_OP_URING_CMD SOCKET_URING_OP_GETSOCKOPT
 * (Linux 6.7) on the fixed file: getsockopt(SOL_SOCKET, SO_PEERNAME), which
 * returns what getpeername would. The kernel answers it at once (nothing
 * waits on the network), so the connection opens one loop iteration after
 * its accept completion, with its address already stored: on_open can read
 * it. Only then does the connection exist; until then a small record holds
 * the slot, the listener and the buffer the kernel writes into. Records are
 * reused through a free list, so their number is the most lookups ever in
 * flight at once, itself bounded by the ring's table (each holds a slot).
 *
 * When the kernel cannot do it (older than 6.7: -EINVAL for an unknown
 * opcode, -EOPNOTSUPP for an unknown command), the reactor says so once and
 * opens every later connection at once without an address. When only one
 * lookup fails (-ENOTCONN: the peer already left), that connection opens
 * without an address and its first receive reports what happened.
 *
 * Outbound connections (rx_connect) store the address they connected to.
 * The connection keeps 19 bytes (family, port, 16 address bytes); an IPv6
 * address's scope and flow label are not kept.
 */
#include "server/runtime/internal.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

/* The kernel's enum io_uring_socket_op (include/uapi/linux/io_uring.h, Linux
 * 6.7): SOCKET_URING_OP_SIOCINQ = 0, SIOCOUTQ = 1, GETSOCKOPT = 2,
 * SETSOCKOPT = 3. Debian bookworm's liburing 2.3 headers predate it. */
#define RX_SOCKET_URING_OP_GETSOCKOPT 2u

typedef struct rx_peer_lookup {
    struct rx_peer_lookup *next_free;
    struct rx_peer_lookup *next_all;
    struct sockaddr_in6 address; /* the kernel writes here; large enough for both */
    int slot;
    unsigned listener_index;
} rx_peer_lookup;

static rx_peer_lookup *lookup_allocate(rx_reactor *reactor)
{
    rx_peer_lookup *lookup = reactor->peer_lookups_free;
    if (lookup != NULL) {
        reactor->peer_lookups_free = lookup->next_free;
        return lookup;
    }
    lookup = malloc(sizeof *lookup);
    if (lookup == NULL) {
        return NULL;
    }
    lookup->next_all = reactor->peer_lookups_all;
    reactor->peer_lookups_all = lookup;
    return lookup;
}

/* The command's fields share the SQE with others (the kernel's struct names
 * them level, optname, optlen and optval); bookworm's struct io_uring_sqe
 * lacks those names, so they are written through the fields they overlay:
 * level and optname are the two 32-bit halves of addr (level first in
 * memory), optlen is file_index, optval is addr3. */
static void lookup_prepare(struct io_uring_sqe *sqe, const rx_peer_lookup *lookup,
                           uint32_t address_length)
{
    io_uring_prep_rw(IORING_OP_URING_CMD, sqe, lookup->slot, NULL, 0, 0);
    sqe->cmd_op = RX_SOCKET_URING_OP_GETSOCKOPT;
    const uint32_t level_and_name[2] = {SOL_SOCKET, SO_PEERNAME};
    memcpy(&sqe->addr, level_and_name, sizeof level_and_name);
    sqe->file_index = address_length;
    sqe->addr3 = (uint64_t)(uintptr_t)&lookup->address;
    sqe->flags |= IOSQE_FIXED_FILE;
}

void rx_peer_lookup_start(rx_reactor *reactor, unsigned listener_index, int slot)
{
    rx_peer_lookup *lookup = reactor->peer_lookup_unsupported ? NULL : lookup_allocate(reactor);
    if (lookup == NULL) {
        rx_conn_accepted(reactor, listener_index, slot, NULL);
        return;
    }
    RX_ASSERT(((uintptr_t)lookup & RX_USER_DATA_POINTER_MASK) == (uintptr_t)lookup);
    RX_ASSERT(reactor->peer_lookups_pending < reactor->slot_count);
    lookup->slot = slot;
    lookup->listener_index = listener_index;
    memset(&lookup->address, 0, sizeof lookup->address);
    /* SO_PEERNAME refuses a buffer longer than the address, so ask for
     * exactly the listener family's size. */
    int family = reactor->runtime->listeners[listener_index].family;
    uint32_t length = family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    struct io_uring_sqe *sqe = rx_reactor_sqe(reactor);
    lookup_prepare(sqe, lookup, length);
    io_uring_sqe_set_data64(sqe, ((uint64_t)RX_OP_PEER << 56) | (uint64_t)(uintptr_t)lookup);
    reactor->misc_inflight++;
    reactor->peer_lookups_pending++;
}

void rx_peer_on_cqe(rx_reactor *reactor, uint64_t user_data, int result)
{
    RX_ASSERT(reactor->misc_inflight > 0 && reactor->peer_lookups_pending > 0);
    reactor->misc_inflight--;
    reactor->peer_lookups_pending--;
    rx_peer_lookup *lookup = (rx_peer_lookup *)(uintptr_t)(user_data & RX_USER_DATA_POINTER_MASK);
    const struct sockaddr *peer = NULL;
    if (result > 0) {
        peer = (const struct sockaddr *)&lookup->address;
    } else if ((result == -EINVAL || result == -EOPNOTSUPP) && !reactor->peer_lookup_unsupported) {
        reactor->peer_lookup_unsupported = true;
        rx_log(RX_LOG_WARNING,
               "reactor %u: the kernel cannot report peer addresses of direct descriptors "
               "(getsockopt through io_uring needs Linux 6.7): %s",
               reactor->index, strerror(-result));
    } else if (result < 0) {
        rx_log(RX_LOG_DEBUG, "reactor %u: peer of slot %d: %s", reactor->index, lookup->slot,
               strerror(-result));
    }
    rx_conn_accepted(reactor, lookup->listener_index, lookup->slot, peer);
    lookup->next_free = reactor->peer_lookups_free;
    reactor->peer_lookups_free = lookup;
}

void rx_reactor_peer_lookups_free_all(rx_reactor *reactor)
{
    while (reactor->peer_lookups_all != NULL) {
        rx_peer_lookup *next = reactor->peer_lookups_all->next_all;
        free(reactor->peer_lookups_all);
        reactor->peer_lookups_all = next;
    }
    reactor->peer_lookups_free = NULL;
}

void rx_conn_peer_store(rx_conn *conn, const struct sockaddr *address)
{
    if (address->sa_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)address;
        conn->peer_family = AF_INET;
        conn->peer_port = ntohs(v4->sin_port);
        memcpy(conn->peer_address, &v4->sin_addr, sizeof v4->sin_addr);
    } else if (address->sa_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)address;
        conn->peer_family = AF_INET6;
        conn->peer_port = ntohs(v6->sin6_port);
        memcpy(conn->peer_address, &v6->sin6_addr, sizeof v6->sin6_addr);
    }
}

bool rx_conn_peer(const rx_conn *conn, struct sockaddr_storage *out, size_t *length)
{
    memset(out, 0, sizeof *out);
    size_t ignored;
    length = length != NULL ? length : &ignored;
    if (conn->peer_family == AF_INET) {
        struct sockaddr_in *v4 = (struct sockaddr_in *)out;
        v4->sin_family = AF_INET;
        v4->sin_port = htons(conn->peer_port);
        memcpy(&v4->sin_addr, conn->peer_address, sizeof v4->sin_addr);
        *length = sizeof *v4;
        return true;
    }
    if (conn->peer_family == AF_INET6) {
        struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)out;
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(conn->peer_port);
        memcpy(&v6->sin6_addr, conn->peer_address, sizeof v6->sin6_addr);
        *length = sizeof *v6;
        return true;
    }
    *length = 0;
    return false;
}
