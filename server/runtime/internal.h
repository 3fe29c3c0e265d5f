/*
 * internal.h: the runtime's private structures, shared by its .c files.
 *
 * Layout of ownership: a runtime owns its reactors (one array), its listeners
 * and its producers. A reactor owns its ring, its provided-buffer ring, its
 * slot table (connection by fixed-file index), its free lists and its inbox
 * pointers. A connection is owned by exactly one reactor at a time; moving it
 * hands the pointer over together with its descriptor.
 */
#ifndef STARLING_SERVER_RUNTIME_INTERNAL_H
#define STARLING_SERVER_RUNTIME_INTERNAL_H

#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

#include "proto/limits.h"
#include "server/runtime/mailbox.h"
#include "server/runtime/rx.h"
#include "server/runtime/timer_wheel.h"

/* Assertions document invariants and stay on in production builds. */
/* Parses an IPv4 or IPv6 literal with port into *address (borrowed);
 * false when text is neither (runtime.c; listeners and connects share it). */
bool rx_address_parse(const char *text, uint16_t port, struct sockaddr_storage *address,
                      socklen_t *length);

/* The non-blocking logger (log.c). start/stop are reference-counted and
 * called by rx_runtime_start/rx_runtime_wait; a reactor thread attaches at
 * its start (from then on its lines go through its own ring) and detaches
 * before it exits. */
rx_status rx_log_start(void);
void rx_log_stop(void);
void rx_log_attach(void);
void rx_log_detach(void);

#define RX_ASSERT(condition)                                                                       \
    do {                                                                                           \
        if (!(condition)) {                                                                        \
            rx_assert_failed(#condition, __FILE__, __LINE__);                                      \
        }                                                                                          \
    } while (0)
__attribute__((noreturn)) void rx_assert_failed(const char *condition, const char *file, int line);

/* user_data: op in the top 8 bits, then a 24-bit connection generation, then
 * the 32-bit slot (fixed-file index). RX_OP_MOVE_ARRIVE, RX_OP_CONNECT_INSTALL,
 * RX_OP_CONNECT, RX_OP_POLL and RX_OP_PEER carry a pointer in the low 56 bits
 * instead. */
enum rx_op {
    RX_OP_ACCEPT = 1,      /* slot = listener index */
    RX_OP_RECV,            /* multishot recv of a connection */
    RX_OP_SEND,            /* send or sendmsg of a connection */
    RX_OP_CANCEL,          /* a cancel aimed at a connection's ops */
    RX_OP_CLOSE,           /* close_direct of a released connection */
    RX_OP_CLOSE_SLOT,      /* close_direct of a slot with no connection */
    RX_OP_MOVE_SEND,       /* msg_ring SEND_FD completion on the source */
    RX_OP_MOVE_ARRIVE,     /* the moved descriptor arrived on the target */
    RX_OP_WAKE,            /* msg_ring DATA from another reactor */
    RX_OP_EVENT_FD,        /* multishot poll on the producer eventfd */
    RX_OP_SIGNAL_FD,       /* multishot poll on the signalfd (reactor 0) */
    RX_OP_ACCEPT_CANCEL,   /* cancel of the multishot accepts at shutdown */
    RX_OP_CONNECT_INSTALL, /* files_update of an outbound socket (pointer) */
    RX_OP_CONNECT,         /* connect on the fixed file (pointer) */
    RX_OP_CONNECT_CANCEL,  /* cancel of a connect (timeout, shutdown) */
    RX_OP_POLL,            /* rx_poll_add (pointer) */
    RX_OP_POLL_CANCEL,     /* poll_remove of an rx_poll (pointer) */
    RX_OP_PEER             /* getsockopt SO_PEERNAME of an accept (pointer) */
};

#define RX_USER_DATA_POINTER_MASK ((UINT64_C(1) << 56) - 1)
#define RX_GENERATION_MASK        0xFFFFFFu

static inline uint64_t rx_user_data(enum rx_op op, uint32_t generation, uint32_t slot)
{
    return ((uint64_t)op << 56) | ((uint64_t)(generation & RX_GENERATION_MASK) << 32) | slot;
}

enum rx_conn_flag {
    CONN_RECV_ARMED = 1u << 0,      /* a multishot recv is in flight */
    CONN_SENDING = 1u << 1,         /* a send is in flight */
    CONN_PAUSED = 1u << 2,          /* the app paused receiving */
    CONN_MOVING = 1u << 3,          /* rx_conn_move in progress */
    CONN_CLOSE_REQUESTED = 1u << 4, /* close once the queue drains */
    CONN_RELEASE_QUEUED = 1u << 5,  /* on the release list, reason fixed */
    CONN_RELEASED = 1u << 6,        /* on_close called; tearing down */
    CONN_IN_WRITE_LIST = 1u << 7,
    CONN_IN_SERVICE_LIST = 1u << 8,
    CONN_HANDSHAKE_DONE = 1u << 9,
    CONN_BACKPRESSURE = 1u << 10, /* the app was told to stop producing */
    CONN_RECV_CANCELLING = 1u << 11,
    CONN_PEER_EOF = 1u << 12,
    CONN_CLOSE_SUBMITTED = 1u << 13,
    CONN_HANDED_OFF = 1u << 14, /* descriptor sent to the target ring */
};

/* One run of queued bytes: owned (copied into storage) or a window of a
 * shared buffer. */
typedef struct rx_segment {
    struct rx_segment *next;
    rx_shared_buf *shared; /* NULL for owned bytes */
    const uint8_t *data;   /* first unsent byte */
    uint32_t length;       /* unsent bytes at data */
    uint32_t room;         /* owned: free bytes after data + length */
    uint8_t storage[];
} rx_segment;

struct rx_shared_buf {
    atomic_uint references;
    size_t length;
    uint8_t bytes[];
};

/* The msghdr and iovecs of an in-flight sendmsg; pooled per reactor so an
 * idle connection holds none. */
typedef struct rx_send_context {
    struct rx_send_context *next_free;
    struct msghdr message;
    struct iovec iovecs[LIMIT_SEND_IOVECS];
} rx_send_context;

struct rx_conn {
    rx_reactor *reactor;
    const rx_listener_ops *ops;
    void *userdata;
    rx_segment *send_head;
    rx_segment *send_tail;
    rx_send_context *send_context;
    rx_conn *next_write;   /* pending-writes list */
    rx_conn *next_service; /* re-arm / hand-off list */
    rx_conn *next_release; /* release list, then free list */
    rx_timer timer;        /* earliest of the three deadlines below */
    uint64_t handshake_deadline_ms;
    uint64_t last_receive_ms;
    uint64_t last_drain_ms; /* last time the queue drained bytes */
    uint32_t send_queue_bytes;
    uint32_t slot;
    uint32_t generation;
    uint16_t flags;
    uint8_t inflight; /* ops in flight whose last CQE is not reaped */
    uint8_t close_reason;
    uint8_t close_errno; /* RX_CLOSE_ERROR: the socket error (positive errno) */
    uint8_t move_target;
    /* The peer's address, filled before on_open (peer.c): 0, AF_INET or
     * AF_INET6; the port in host order; the address bytes in network order
     * (the first 4 for IPv4). 19 bytes where a sockaddr_in6 would take 28. */
    uint8_t peer_family;
    uint16_t peer_port;
    uint8_t peer_address[16];
    void *move_state;           /* rx_conn_move_to's state, until its done runs */
    rx_move_done_fn *move_done; /* NULL: a plain rx_conn_move (on_moved) */
};

/* Counters written by the owning reactor only and read by anyone. */
typedef struct rx_stats_atomic {
    _Atomic uint64_t accepted;
    _Atomic uint64_t accept_refused;
    _Atomic uint64_t open_connections;
    _Atomic uint64_t closed;
    _Atomic uint64_t bytes_received;
    _Atomic uint64_t bytes_sent;
    _Atomic uint64_t enobufs_events;
    _Atomic uint64_t send_queue_bytes;
    _Atomic uint64_t moves_in;
    _Atomic uint64_t moves_out;
    _Atomic uint64_t write_timeouts;
    _Atomic uint64_t messages_received;
    _Atomic uint64_t wakes_sent;
    _Atomic uint64_t connects_started;
    _Atomic uint64_t connects_succeeded;
    _Atomic uint64_t connects_failed;
} rx_stats_atomic;

static inline void rx_stat_add(_Atomic uint64_t *counter, int64_t delta)
{
    uint64_t value = atomic_load_explicit(counter, memory_order_relaxed);
    atomic_store_explicit(counter, value + (uint64_t)delta, memory_order_relaxed);
}

typedef struct rx_conn_chunk {
    struct rx_conn_chunk *next;
    rx_conn conns[];
} rx_conn_chunk;

struct rx_reactor {
    rx_runtime *runtime;
    struct rx_poll *polls; /* pending rx_poll_add requests (poll.c) */
    unsigned index;
    pthread_t thread;
    struct io_uring ring;
    int ring_fd; /* published before the start barrier */
    unsigned ring_flags;

    struct io_uring_buf_ring *buffer_ring;
    uint8_t *buffer_memory;
    size_t buffer_ring_bytes;
    size_t buffer_memory_bytes;
    unsigned buffers_returned; /* added since the last advance */

    /* By fixed-file index. A connection whose descriptor is on its way to
     * another reactor is stored with bit 0 set and must not be touched. */
    rx_conn **slots;
    unsigned slot_count;
    unsigned connection_count; /* structs alive, releasing included */
    uint32_t generation;
    rx_conn *free_conns;
    rx_conn_chunk *chunks;
    rx_send_context *free_send_contexts;

    rx_conn *write_list;
    rx_conn *service_list;
    rx_conn *release_list;

    rx_wheel wheel;
    uint64_t now_ms;
    /* on_housekeeping: armed while a call is owed, due at housekeeping_ms;
     * active_ms is when the reactor last handled a completion. */
    bool housekeeping_armed;
    uint64_t housekeeping_ms;
    uint64_t active_ms;
    /* Slow turns (LIMIT_REACTOR_SLOW_TURN_MS): when this turn began (the
     * wake-up), when the last one was logged, and how many since then
     * were not. */
    uint64_t turn_start_ms;
    uint64_t slow_turn_logged_ms;
    uint64_t slow_turns_unlogged;

    int listen_fds[LIMIT_LISTENERS_PER_REACTOR];
    bool accept_armed[LIMIT_LISTENERS_PER_REACTOR];

    rx_mailbox *_Atomic *inboxes; /* by source: reactors, then producers */
    atomic_bool wake_pending;     /* a reactor woke us and we did not drain */
    atomic_bool external_wake_pending;
    atomic_bool exited;
    uint64_t dirty_targets[LIMIT_REACTORS_MAX / 64];
    int event_fd;
    int signal_fd;              /* reactor 0 with handle_signals, else -1 */
    unsigned misc_inflight;     /* accepts and polls not tied to a connection */
    unsigned moves_out_pending; /* hand-offs not yet confirmed by the kernel */

    bool shutting_down;
    bool aborted_all;
    uint64_t shutdown_deadline_ms;
    uint64_t last_refusal_log_ms;

    /* Outbound connects (connect.c): every request alive, the FIFO of those
     * still waiting for a socket, and the ordinary descriptors they hold. */
    struct rx_connect_request *connects;
    struct rx_connect_request *connect_queue_head;
    struct rx_connect_request *connect_queue_tail;
    unsigned connects_pending;
    unsigned connect_sockets_open;

    /* Peer address lookups of accepted slots (peer.c): the records in
     * flight and free, every record ever made (freed at destroy), how many
     * are in flight (each holds a slot no connection owns yet), and
     * whether the kernel refused the lookup (then none is tried again). */
    struct rx_peer_lookup *peer_lookups_free;
    struct rx_peer_lookup *peer_lookups_all;
    unsigned peer_lookups_pending;
    bool peer_lookup_unsupported;

    rx_stats_atomic stats;
};

struct rx_listener {
    const rx_listener_ops *ops;
    void *context;
    uint16_t port;
    unsigned index;
    int family; /* AF_INET or AF_INET6: the size of its peers' addresses */
};

struct rx_producer {
    rx_runtime *runtime;
    unsigned source_index; /* inbox index on every reactor */
};

struct rx_runtime {
    rx_options options;
    unsigned reactor_count;
    rx_reactor *reactors;
    rx_listener listeners[LIMIT_LISTENERS_PER_REACTOR];
    unsigned listener_count;
    rx_producer *producers;
    atomic_uint producer_count;
    atomic_bool stop_requested;
    _Atomic uint64_t stop_deadline_ms;
    atomic_int moves_in_flight;
    int signal_fd;

    pthread_mutex_t start_lock;
    pthread_cond_t start_cond;
    unsigned ready_count;
    bool start_failed;
    bool go;
    bool started;
    bool joined;
};

/* Shared helpers (reactor.c). */
uint64_t rx_clock_ms(void);
struct io_uring_sqe *rx_reactor_sqe(rx_reactor *reactor);
void *rx_reactor_main(void *argument);
void rx_reactor_wake_external(rx_reactor *reactor);
rx_mailbox *rx_inbox_for(rx_reactor *target, unsigned source_index);

/* Connections (conn.c). create adopts slot as a new connection (NULL, with
 * the slot closed, when no struct could be had); opened then calls on_open.
 * accepted does both for an accepted slot, storing peer (borrowed; NULL
 * when unknown) before on_open. */
void rx_conn_accepted(rx_reactor *reactor, unsigned listener_index, int slot,
                      const struct sockaddr *peer);
rx_conn *rx_conn_create(rx_reactor *reactor, int slot, const rx_listener_ops *ops,
                        uint64_t handshake_start_ms);
void rx_conn_opened(rx_conn *conn, void *context);
void rx_slot_close(rx_reactor *reactor, uint32_t slot);
void rx_conn_on_cqe(rx_reactor *reactor, enum rx_op op, uint64_t user_data,
                    const struct io_uring_cqe *cqe);
void rx_conn_move_arrived(rx_reactor *reactor, rx_conn *conn, int result);
void rx_conn_move_sent(rx_reactor *reactor, uint32_t slot, int result);
void rx_conn_release_request(rx_conn *conn, rx_close_reason reason);
void rx_reactor_run_service(rx_reactor *reactor);
void rx_reactor_run_releases(rx_reactor *reactor);
void rx_conn_free_all_chunks(rx_reactor *reactor);
void rx_conn_recv_returned(rx_reactor *reactor, unsigned buffer_id);
void rx_conn_schedule_timer(rx_conn *conn);
void rx_conn_service(rx_conn *conn);
void rx_conn_op_done(rx_conn *conn);
void rx_conn_shutdown(rx_conn *conn);

/* Peer addresses (peer.c). lookup_start asks the kernel for the peer of an
 * accepted slot and opens the connection when the answer comes (at once,
 * without an address, when it cannot ask); on_cqe takes that answer;
 * store copies address (borrowed) into conn; free_all frees the records
 * once the ring is gone. */
void rx_peer_lookup_start(rx_reactor *reactor, unsigned listener_index, int slot);
void rx_peer_on_cqe(rx_reactor *reactor, uint64_t user_data, int result);
void rx_conn_peer_store(rx_conn *conn, const struct sockaddr *address);
void rx_reactor_peer_lookups_free_all(rx_reactor *reactor);

/* Descriptor polls (poll.c): a completion of RX_OP_POLL or
 * RX_OP_POLL_CANCEL; free_all drops what is left when the ring is gone. */
void rx_poll_on_cqe(rx_reactor *reactor, enum rx_op op, uint64_t user_data, int result);
void rx_reactor_polls_free_all(rx_reactor *reactor);

/* Outbound connects (connect.c). run opens queued sockets (bounded per
 * iteration); the completions come back through on_cqe; shutdown cancels
 * every pending connect; free_all closes what a stuck exit left behind. */
void rx_reactor_run_connects(rx_reactor *reactor);
bool rx_reactor_connects_runnable(const rx_reactor *reactor);
void rx_connect_on_cqe(rx_reactor *reactor, enum rx_op op, uint64_t user_data, int result);
void rx_reactor_connects_shutdown(rx_reactor *reactor);
void rx_reactor_connects_free_all(rx_reactor *reactor);

/* Send queues (send.c). */
void rx_reactor_flush_writes(rx_reactor *reactor);
void rx_conn_send_completed(rx_conn *conn, int result);
void rx_conn_drop_queue(rx_conn *conn);
void rx_conn_queue_write(rx_conn *conn);
void rx_reactor_free_send_contexts(rx_reactor *reactor);

#endif
