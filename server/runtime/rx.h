/*
 * rx.h: the per-core io_uring runtime ("reactor"), its public contract.
 *
 * A runtime is a set of reactors, one thread each (by default one per online
 * core, pinned), each owning an io_uring ring, its listening sockets
 * (SO_REUSEPORT), a provided-buffer ring for multishot receives, a timer
 * wheel, a slab of connections and its inboxes. The runtime knows bytes,
 * descriptors, timers and callbacks; it knows nothing of the protocol that
 * runs over it.
 *
 * Thread rules (asserted):
 *   - Every rx_conn_*, rx_timer_* and rx_post call is made on the reactor
 *     thread that currently owns the object, normally from inside a
 *     callback; rx_connect on the reactor thread that is to own the new
 *     connection.
 *   - rx_runtime_create/add_listener/start/wait/destroy are called from one
 *     control thread (usually main). rx_runtime_stop and rx_producer_post may
 *     be called from any thread.
 *   - A connection is never freed inside its own callback: closing flags it
 *     and the reactor releases it before it sleeps. on_close is called
 *     exactly once per connection, and after it returns the handle is dead.
 *
 * Ownership words used below: "borrowed" = the callee uses it only during
 * the call (or, for callbacks, only during the callback); "owned" = the
 * holder frees it; "transferred" = ownership passes to the other side.
 */
#ifndef STARLING_SERVER_RUNTIME_RX_H
#define STARLING_SERVER_RUNTIME_RX_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* rx_conn_peer fills one; <sys/socket.h> is left to the caller, so that
 * including this header does not declare the socket calls everywhere. */
struct sockaddr_storage;

typedef struct rx_runtime rx_runtime;
typedef struct rx_reactor rx_reactor;
typedef struct rx_conn rx_conn;
typedef struct rx_listener rx_listener;
typedef struct rx_shared_buf rx_shared_buf;
typedef struct rx_producer rx_producer;

/* One small set of return codes for the whole runtime. */
typedef enum rx_status {
    RX_OK = 0,
    RX_ERR_INVALID = -1, /* bad argument or call from the wrong thread/state */
    RX_ERR_FULL = -2,    /* a bound was hit: mailbox full, send queue hard cap */
    RX_ERR_CLOSED = -3,  /* the connection is closing or closed */
    RX_ERR_NOMEM = -4,   /* allocation failed */
    RX_ERR_SYSTEM = -5,  /* a system call failed (the log line says which) */
    RX_ERR_STATE = -6,   /* runtime not started, shutting down, or target gone */
} rx_status;

/* Why a connection closed; passed to on_close. */
typedef enum rx_close_reason {
    RX_CLOSE_LOCAL = 0,         /* rx_conn_close() after its queue drained */
    RX_CLOSE_ABORT,             /* rx_conn_abort() */
    RX_CLOSE_PEER,              /* the peer closed (EOF) */
    RX_CLOSE_ERROR,             /* a socket error (reset, broken pipe) */
    RX_CLOSE_HANDSHAKE_TIMEOUT, /* rx_conn_handshake_done() never came */
    RX_CLOSE_IDLE_TIMEOUT,      /* nothing received for the idle timeout */
    RX_CLOSE_WRITE_TIMEOUT,     /* queued bytes did not drain in time */
    RX_CLOSE_SEND_OVERFLOW,     /* a send passed the hard send-queue cap */
    RX_CLOSE_SHUTDOWN,          /* still open when the shutdown grace ended */
} rx_close_reason;

const char *rx_close_reason_name(rx_close_reason reason);

/* ------------------------------------------------------------------ logging */

typedef enum rx_log_level {
    RX_LOG_DEBUG = 0,
    RX_LOG_INFO,
    RX_LOG_WARNING,
    RX_LOG_ERROR,
} rx_log_level;

/* A log sink. message is one line without a trailing newline, borrowed for
 * the call. May be called from any reactor thread concurrently. */
typedef void rx_log_hook(void *context, rx_log_level level, const char *message);

/* Replace the sink (NULL restores the default: one line on stderr). Call it
 * before rx_runtime_start; context is borrowed for as long as it is set. */
void rx_log_set_hook(rx_log_hook *hook, void *context);
/* Lines below this level are dropped. Default RX_LOG_INFO. */
void rx_log_set_level(rx_log_level minimum);
void rx_log(rx_log_level level, const char *format, ...) __attribute__((format(printf, 2, 3)));

/* ------------------------------------------------------------------ options */

/* rx_options_init fills every field with its proto/limits.h default; the
 * caller overrides what the operator configured. A timeout of 0 disables
 * that timeout. */
typedef struct rx_options {
    unsigned reactors;                /* 0 = one per online core */
    unsigned connections_per_reactor; /* capped at RLIMIT_NOFILE */
    unsigned recv_buffers;            /* power of two, <= 32768 */
    unsigned recv_buffer_bytes;
    size_t send_queue_bytes;      /* back-pressure threshold */
    size_t send_queue_bytes_hard; /* sends refused past this */
    unsigned write_timeout_ms;
    unsigned handshake_timeout_ms;
    unsigned idle_timeout_ms;
    unsigned shutdown_grace_ms;
    unsigned mailbox_messages; /* per mailbox, power of two */
    unsigned producers_max;    /* non-reactor threads that may post */
    bool pin_threads;          /* pin reactor i to core i mod ncpu */
    bool handle_signals;       /* SIGTERM/SIGINT start a graceful shutdown */
    /* Called on each reactor once per loop iteration, after the
     * iteration's completions and mailbox messages were handled and before
     * it flushes its writes and waits: where a layer sends what the
     * iteration batched (the cluster driver's pipeline). NULL: none. */
    void (*on_iteration)(void *context, unsigned reactor_index);
    void *iteration_context;
    /* Called on a reactor's thread between iterations, at most once per
     * LIMIT_REACTOR_HOUSEKEEPING_MS while it handles completions (idle
     * false), then once when it has handled none for that long (idle
     * true); a reactor that stays idle after that is not woken again
     * until work arrives. Where the process returns freed memory to the
     * kernel on the thread that freed it: the busy calls can be cheap and
     * incremental, the idle one thorough. NULL: none. */
    void (*on_housekeeping)(void *context, unsigned reactor_index, bool idle);
    void *housekeeping_context;
} rx_options;

void rx_options_init(rx_options *options);

/* --------------------------------------------------------------- callbacks */

/* A listener's behaviour. The table is borrowed by the runtime for the
 * runtime's lifetime and is carried by each connection, so a moved
 * connection keeps it. Every callback runs on the reactor thread that owns
 * the connection at that moment. NULL optional callbacks are skipped. */
typedef struct rx_listener_ops {
    /* Required. A connection was accepted (listener_context is the
     * listener's) or an rx_connect succeeded (it is rx_connect's context);
     * the handshake timer runs. */
    void (*on_open)(rx_conn *conn, void *listener_context);
    /* Required. bytes points into a provided receive buffer and is valid
     * only until on_data returns (the buffer goes back to the kernel right
     * after); copy what must outlive the call. len > 0. */
    void (*on_data)(rx_conn *conn, const uint8_t *bytes, size_t len);
    /* Required. Called exactly once; the handle is invalid after it returns.
     * Sending from here is refused. */
    void (*on_close)(rx_conn *conn, rx_close_reason reason);
    /* Optional. on=true when the send queue passed send_queue_bytes (called
     * from inside the rx_conn_send that crossed it); on=false when it
     * drained below half of it (called after a send completion). */
    void (*on_backpressure)(rx_conn *conn, bool on);
    /* Optional. The move asked by rx_conn_move finished; runs on the
     * reactor that now owns conn (the source itself if the target refused
     * the descriptor, e.g. its table was full: check rx_conn_reactor_index).
     * A move asked by rx_conn_move_to reports to its done instead. */
    void (*on_moved)(rx_conn *conn);
    /* Optional. The handshake or idle timeout (reason says which) ran out:
     * say goodbye and rx_conn_close. The close then waits for the queue to
     * drain for at most one timer slot; a connection the callback leaves
     * open, or a NULL callback, is closed at once with that reason. */
    void (*on_timeout)(rx_conn *conn, rx_close_reason reason);
    /* Optional. A graceful shutdown started: say goodbye and rx_conn_close.
     * When NULL the runtime calls rx_conn_close itself. Whatever is still
     * open when the grace period ends is aborted (RX_CLOSE_SHUTDOWN). */
    void (*on_shutdown)(rx_conn *conn);
    /* Optional, outbound connections only (rx_connect). The connect failed
     * (error is a positive errno: ECONNREFUSED, ETIMEDOUT, EADDRNOTAVAIL,
     * ENFILE when the ring's table was full, ECANCELED at shutdown, ...);
     * no connection exists and on_open will not be called. context is the
     * one given to rx_connect. */
    void (*on_connect_failed)(void *context, int error);
} rx_listener_ops;

/* ------------------------------------------------------------------ runtime */

/* Creates a runtime (no threads yet). options is borrowed (copied); NULL
 * means defaults. Returns an owned runtime, or NULL (logged). */
rx_runtime *rx_runtime_create(const rx_options *options);

/* Adds a listener on address:port (IPv4 or IPv6 literal) on every reactor
 * with SO_REUSEPORT. port 0 picks a free port once, then every reactor binds
 * that one; read it back with rx_listener_port. Call before start. ops and
 * context are borrowed for the runtime's lifetime. *listener (optional) gets
 * a handle borrowed from the runtime. */
rx_status rx_runtime_add_listener(rx_runtime *runtime, const char *address, uint16_t port,
                                  const rx_listener_ops *ops, void *context,
                                  rx_listener **listener);
uint16_t rx_listener_port(const rx_listener *listener);

/* Starts the reactor threads and returns once every ring is set up (or
 * RX_ERR_SYSTEM, logged, when one could not be). With handle_signals it
 * first blocks SIGTERM and SIGINT in the calling thread (threads created
 * afterwards inherit the mask; create other threads after this call) and
 * reactor 0 reads them through a signalfd: a process-directed signal
 * (kill, systemd, Kubernetes) starts a graceful shutdown. The mask stays
 * blocked after the runtime ends. */
rx_status rx_runtime_start(rx_runtime *runtime);
/* Starts a graceful shutdown; any thread, any number of times. */
void rx_runtime_stop(rx_runtime *runtime);
/* Blocks until every reactor thread has exited. */
void rx_runtime_wait(rx_runtime *runtime);
/* start + wait. */
rx_status rx_runtime_run(rx_runtime *runtime);
/* Frees everything. Only after wait (or if never started). */
void rx_runtime_destroy(rx_runtime *runtime);

unsigned rx_runtime_reactor_count(const rx_runtime *runtime);

/* Per-reactor counters, readable from any thread (relaxed snapshots). */
typedef struct rx_reactor_stats {
    uint64_t accepted;
    uint64_t accept_refused; /* table or slab full: closed at once */
    uint64_t open_connections;
    uint64_t closed;
    uint64_t bytes_received;
    uint64_t bytes_sent;
    uint64_t enobufs_events;
    uint64_t send_queue_bytes; /* sum over this reactor's connections */
    uint64_t moves_in;
    uint64_t moves_out;
    uint64_t write_timeouts;
    uint64_t messages_received; /* mailbox messages handled */
    uint64_t wakes_sent;        /* msg_ring wake-ups sent to others */
    uint64_t connects_started;  /* rx_connect calls that returned RX_OK */
    uint64_t connects_succeeded;
    uint64_t connects_failed; /* on_connect_failed calls */
} rx_reactor_stats;

rx_status rx_runtime_stats(const rx_runtime *runtime, unsigned reactor_index,
                           rx_reactor_stats *stats);

/* --------------------------------------------------------- reactor (thread) */

/* The reactor of the calling thread, NULL off reactor threads (borrowed). */
rx_reactor *rx_reactor_current(void);
unsigned rx_reactor_index(const rx_reactor *reactor);
unsigned rx_reactor_count(const rx_reactor *reactor);
rx_runtime *rx_reactor_runtime(const rx_reactor *reactor);
/* The current reactor's loop clock (CLOCK_MONOTONIC, read once per loop). */
uint64_t rx_now_ms(void);

/* -------------------------------------------------------------- connection */

/* Opens an outbound TCP connection to address:port (IPv4 or IPv6 literal)
 * on the calling reactor thread; the connection belongs to this reactor.
 * source_address (NULL = any; same family as address) is bound with
 * IP_BIND_ADDRESS_NO_PORT, so each source address has its own ephemeral
 * port range. The socket passes through the process descriptor table for
 * at most one loop iteration (at most LIMIT_CONNECT_SOCKETS_PER_REACTOR at
 * once; further connects queue) and then lives as a direct descriptor, so
 * outbound connections are bounded by connections_per_reactor, not by
 * RLIMIT_NOFILE. ops and context are borrowed until one of the outcomes:
 *   - success: ops->on_open(conn, context), then the connection behaves
 *     exactly like an accepted one (callbacks, timeouts, sends, moves);
 *   - failure: ops->on_connect_failed(context, errno), exactly once.
 * The handshake timeout runs from this call: it bounds the connect
 * (ETIMEDOUT) and what remains of it bounds the handshake. Neither outcome
 * runs inside this call. Returns RX_OK (an outcome follows), RX_ERR_INVALID
 * (bad address, missing required callback), RX_ERR_FULL (this reactor's
 * connections and pending connects fill its table), RX_ERR_NOMEM, or
 * RX_ERR_STATE (shutting down). Must be called on a reactor thread. */
rx_status rx_connect(const char *address, uint16_t port, const char *source_address,
                     const rx_listener_ops *ops, void *context) __attribute__((warn_unused_result));

/* Queue a copy of bytes (borrowed) for sending. Small sends coalesce into the
 * tail segment. Output is flushed once per loop iteration. Returns RX_OK,
 * RX_ERR_CLOSED (closing: nothing queued), RX_ERR_NOMEM, or RX_ERR_FULL (the
 * hard cap would be passed: nothing queued and the connection is aborted
 * with RX_CLOSE_SEND_OVERFLOW). */
rx_status rx_conn_send(rx_conn *conn, const void *bytes, size_t len)
    __attribute__((warn_unused_result));
/* Queue len bytes of shared at offset, without copying. The queue takes its
 * own reference (shared stays owned by the caller). Same returns as above. */
rx_status rx_conn_send_shared(rx_conn *conn, rx_shared_buf *shared, size_t offset, size_t len)
    __attribute__((warn_unused_result));
size_t rx_conn_send_queue_bytes(const rx_conn *conn);

/* Close after the send queue drains (bounded by the write timeout). Received
 * bytes are dropped from now on. Idempotent. */
void rx_conn_close(rx_conn *conn);
/* Close now, dropping the queue. Idempotent (the first reason wins). */
void rx_conn_abort(rx_conn *conn);

/* Stop or restart receiving. Bytes the kernel already handed to the ring may
 * still arrive through on_data after pause; none are lost. */
void rx_conn_pause_recv(rx_conn *conn);
void rx_conn_resume_recv(rx_conn *conn);

/* Stops the handshake timer (from then on only idle and write timeouts). */
void rx_conn_handshake_done(rx_conn *conn);

/* Moves conn (descriptor, send queue, deadlines, user data, ops) to another
 * reactor; the handle stays the same pointer. The same as rx_conn_move_to
 * with state and done NULL, except: moving to the reactor that already owns
 * conn is RX_ERR_INVALID, the outcome is told through ops->on_moved (which
 * runs on the source when the move failed: check rx_conn_reactor_index),
 * and nothing is told when the connection closes during the move. */
rx_status rx_conn_move(rx_conn *conn, unsigned target_reactor_index);

/* The end of a move asked with rx_conn_move_to. conn and state are the
 * call's; status says where conn lives now:
 *   RX_OK          on the target; done runs on the target thread, which
 *                  owns conn from now on (receive is re-armed and queued
 *                  sends are written after done returns);
 *   RX_ERR_FULL    the target's descriptor table was full (ENFILE): conn
 *                  stays on the source, working, and done runs there;
 *   RX_ERR_STATE   the target or the source began shutting down before the
 *                  descriptor left: conn stays on the source (whose
 *                  on_shutdown follows, as for every connection);
 *   RX_ERR_SYSTEM  the kernel refused the hand-off for another reason
 *                  (logged): conn stays on the source, working;
 *   RX_ERR_CLOSED  conn closed before its descriptor left (the peer closed
 *                  or reset, rx_conn_close/abort, a timeout): done runs on
 *                  the source just before on_close, with sends refused.
 * done is called exactly once per rx_conn_move_to that returned RX_OK,
 * always from the reactor loop, never inside the call that caused it. */
typedef void rx_move_done_fn(rx_conn *conn, void *state, rx_status status);

/* Moves conn to reactor target_reactor_index (the XMPP core moves a bound
 * session to the reactor of its bare JID's shard). state (the session
 * object, say) is transferred: the runtime only carries it to done, which
 * gets it back on the thread that owns conn at that moment, so one thread
 * at a time holds it. Steps, all in the reactor loops:
 *   1. the source stops receiving: it cancels the multishot receive and
 *      waits for its last completion; bytes the kernel had already put in
 *      receive buffers are still delivered here, through on_data, in
 *      order, before the descriptor leaves (so the caller's on_data must
 *      accept bytes until done; none are lost, none come twice);
 *   2. sends: a send already in flight completes here; bytes queued later
 *      (rx_conn_send during the move is allowed until done) travel with
 *      conn in order and are written by the target;
 *   3. the connection's own deadlines (handshake, idle, write) are taken
 *      off the source's wheel and put on the target's;
 *   4. the source sends its direct descriptor to the target ring
 *      (IORING_OP_MSG_RING, IORING_MSG_SEND_FD, the target allocating the
 *      slot); the target's completion carries conn itself, so the
 *      descriptor and the state arrive together (no mailbox is used, so a
 *      full mailbox cannot fail a move); the source frees its slot once
 *      the kernel confirms (a reactor has at most
 *      LIMIT_MOVES_IN_FLIGHT_PER_REACTOR hand-offs unconfirmed; further
 *      ones wait a loop iteration, they do not fail);
 *   5. the target calls done(conn, state, RX_OK), then arms the receive.
 * Timers the caller armed itself (rx_timer_arm) belong to the source's
 * wheel: cancel them before this call and arm them again in done.
 * Between this call and done, touch conn only from its own callbacks on
 * the source (on_data, on_close) and from done. Moving to the reactor
 * that owns conn is allowed: nothing moves and done(RX_OK) runs from the
 * next loop iteration. Returns RX_OK (done will run), RX_ERR_INVALID (bad
 * index, a move already in progress), RX_ERR_CLOSED (closing or closed)
 * or RX_ERR_STATE (shutting down); on an error done will not run. */
rx_status rx_conn_move_to(rx_conn *conn, unsigned target_reactor_index, void *state,
                          rx_move_done_fn *done) __attribute__((warn_unused_result));

/* Replaces conn's callback table (on_open is not called again); ops is
 * borrowed for as long as conn uses it and travels with conn when it
 * moves, so a protocol can switch handlers as a stream changes state.
 * RX_ERR_INVALID when a required callback (on_data, on_close) is NULL. */
rx_status rx_conn_set_ops(rx_conn *conn, const rx_listener_ops *ops)
    __attribute__((warn_unused_result));

/* One pointer of the application's per-connection state (borrowed: the
 * runtime never frees it); it travels with conn when it moves. */
void rx_conn_set_userdata(rx_conn *conn, void *userdata);
void *rx_conn_userdata(const rx_conn *conn);
/* In on_close with RX_CLOSE_ERROR: the socket error that closed it (a
 * positive errno, ECONNRESET, EPIPE, ...); 0 for every other reason. */
int rx_conn_close_errno(const rx_conn *conn);
rx_reactor *rx_conn_reactor(const rx_conn *conn);
unsigned rx_conn_reactor_index(const rx_conn *conn);

/* The address of conn's other end: for an accepted connection the client's
 * address and port (what getpeername would say; a client of an IPv6
 * listener bound to "::" that connected over IPv4 shows as an IPv4-mapped
 * IPv6 address), for an rx_connect one the address and port connected to.
 * Valid from on_open on and for the connection's whole life (it travels
 * with a move). Writes a sockaddr_in or sockaddr_in6 into *out (borrowed)
 * and, when length (borrowed) is not NULL, its size into *length, and
 * returns true; returns false (with *out zeroed and *length 0) when the
 * address is unknown: the kernel cannot report it for direct descriptors
 * (before Linux 6.7; logged once per reactor), or the client left before it
 * was asked. An IPv6 address's scope id and flow label are not kept (they
 * read 0). Include <sys/socket.h> to use it. */
bool rx_conn_peer(const rx_conn *conn, struct sockaddr_storage *out, size_t *length);

/* ------------------------------------------------------ shared send buffers */

/* A reference-counted byte buffer many send queues can point at. The count
 * is atomic, so references may be taken and dropped on any reactor; the
 * bytes must not change once the buffer has been queued anywhere.
 * create returns an owned reference (count 1) to len uninitialised bytes, or
 * NULL. */
rx_shared_buf *rx_shared_buf_create(size_t len);
uint8_t *rx_shared_buf_bytes(rx_shared_buf *shared); /* borrowed */
size_t rx_shared_buf_len(const rx_shared_buf *shared);
void rx_shared_buf_retain(rx_shared_buf *shared);
/* Drops one reference; frees at zero. */
void rx_shared_buf_release(rx_shared_buf *shared);

/* ------------------------------------------------------------------- timers */

typedef struct rx_timer rx_timer;
typedef void rx_timer_fn(rx_timer *timer, void *argument);

/* An intrusive timer: embed it, arm and cancel it freely (no allocation).
 * Fields are private. A timer belongs to the reactor it was armed on and
 * must be cancelled there before its memory goes away. Precision is one
 * wheel slot (LIMIT_TIMER_SLOT_MS); a timer never fires early. */
struct rx_timer {
    struct rx_timer *next;
    struct rx_timer *previous;
    uint64_t deadline_ms;
    rx_timer_fn *callback;
    void *argument;
};

void rx_timer_init(rx_timer *timer, rx_timer_fn *callback, void *argument);
/* (Re)arms on the current reactor to fire once delay_ms from now. */
void rx_timer_arm(rx_timer *timer, uint64_t delay_ms);
void rx_timer_cancel(rx_timer *timer);
bool rx_timer_armed(const rx_timer *timer);

/* ------------------------------------------------------- descriptor polls */

/* Readiness of a descriptor the runtime does not own (a database client's
 * socket, an eventfd), watched on the calling reactor's ring with a
 * one-shot IORING_OP_POLL_ADD. The callback runs once, on that reactor,
 * during a later loop iteration, with the poll(2) bits that are ready
 * (POLLIN, POLLOUT, POLLERR, POLLHUP) or a negative errno when the poll
 * failed; the handle is gone after it returns (arm again for more). */
typedef struct rx_poll rx_poll;
typedef void rx_poll_fn(void *argument, int events);

/* On a reactor thread: watches fd (borrowed: keep it open until the
 * callback ran or the poll was cancelled) for events (POLLIN and/or
 * POLLOUT). Returns a handle owned by the runtime, or NULL (not on a
 * reactor, no memory). */
rx_poll *rx_poll_add(int fd, unsigned events, rx_poll_fn *callback, void *argument);

/* On the reactor that added it, before its callback ran: the callback will
 * not run; the handle is freed once the kernel lets go of the request. */
void rx_poll_cancel(rx_poll *poll);

/* Polls pending when their reactor exits are dropped without a callback. */

/* ---------------------------------------------------------------- mailboxes */

typedef struct rx_message rx_message;
/* Runs on the target reactor's thread; message is borrowed for the call. */
typedef void rx_message_fn(const rx_message *message);

/* A small fixed message: a function and its arguments. Pointers in it are
 * transferred or borrowed as the sender and the function agree. */
struct rx_message {
    rx_message_fn *function;
    void *pointer;
    uint64_t words[2];
};

/* From a reactor thread: queue message (copied) for reactor target_index
 * (itself included). The target is woken at most once per loop iteration of
 * the sender. RX_ERR_FULL when that mailbox is full (nothing queued),
 * RX_ERR_STATE when the target has exited. Messages between one pair of
 * reactors run in the order posted. */
rx_status rx_post(unsigned target_index, const rx_message *message)
    __attribute__((warn_unused_result));

/* A non-reactor thread (storage, cluster driver) posts through a producer:
 * it has its own mailbox to each reactor, and wakes a sleeping reactor
 * through that reactor's eventfd. One producer is used by one thread at a
 * time. Create after rx_runtime_create (up to options.producers_max);
 * returns a handle owned by the runtime, or NULL. */
rx_producer *rx_producer_create(rx_runtime *runtime);
rx_status rx_producer_post(rx_producer *producer, unsigned target_index, const rx_message *message)
    __attribute__((warn_unused_result));

#endif
