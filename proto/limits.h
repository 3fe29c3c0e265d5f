/*
 * limits.h: every bound in Starling, in one place, with its reason.
 *
 * Starling never grows a buffer, queue or table without a bound: each one is
 * named here, and hitting it has a defined outcome (back-pressure, a stream
 * error, a stanza error, a refused connection), never unbounded growth.
 * Values marked "config:" can be overridden by an operator; the value here is
 * the default and the reason explains why it is a sane one.
 *
 * This header lives in proto/ because proto/ is the bottom layer: every other
 * part may include it, and it includes nothing. Include it as
 * "proto/limits.h" (never <limits.h>, which is libc's).
 */
#ifndef STARLING_PROTO_LIMITS_H
#define STARLING_PROTO_LIMITS_H

/* ---------------------------------------------------------------- tokenizer */

/* Largest stanza accepted, in bytes. RFC 6120 section 13.12 asks servers to
 * accept at least 10,000 bytes; 256 KiB leaves room for avatars in vCards and
 * PEP items, while bounding the per-connection assembly buffer. Over it:
 * policy-violation. config: limits.stanza_bytes_max */
#define LIMIT_STANZA_BYTES_MAX (256u * 1024u)

/* Deepest element nesting inside a stanza (the stanza itself is depth 1).
 * Real traffic stays under 12 (forwarded MAM results with x-data forms);
 * a deep document is a stack-exhaustion attack. Over it: policy-violation. */
#define LIMIT_STANZA_DEPTH_MAX 32u

/* Attributes on one element. Real elements carry under 10; many attributes
 * are a hash-collision or quadratic duplicate-check attack. Over it:
 * policy-violation. */
#define LIMIT_ELEMENT_ATTRIBUTES_MAX 32u

/* Element index entries (start tags) recorded for one stanza. A stanza view
 * indexes its elements in a fixed array so that no allocation happens while
 * parsing; a roster push or a MAM page with forms fits easily. Over it:
 * policy-violation. */
#define LIMIT_STANZA_ELEMENTS_MAX 1024u

/* Attribute index entries recorded for one stanza (all elements together).
 * Over it: policy-violation. */
#define LIMIT_STANZA_ATTRIBUTES_MAX 2048u

/* Namespace declarations in scope at once (stream header plus the open
 * elements of a stanza). Over it: policy-violation. */
#define LIMIT_NAMESPACE_DECLS_MAX 64u

/* Bytes of a single name (element, attribute or prefix). Long names are
 * never legitimate in XMPP. Over it: policy-violation. */
#define LIMIT_NAME_BYTES_MAX 256u

/* Bytes of the stream header tag. It carries a handful of short attributes;
 * a huge header is an attack before authentication. Over it:
 * policy-violation. */
#define LIMIT_STREAM_HEADER_BYTES_MAX 4096u

/* Index entries (elements and text nodes together) recorded for one stanza.
 * Text sits between child elements, so a stanza with the maximum number of
 * elements needs about twice as many nodes. Over it: policy-violation. */
#define LIMIT_STANZA_NODES_MAX (4u * LIMIT_STANZA_ELEMENTS_MAX)

/* Prefix declarations (xmlns:p) kept from the stream header, and the bytes
 * of all their prefixes and URIs plus the default namespace. The tokenizer
 * copies these few facts into a fixed region of an idle connection (real
 * headers declare 'stream' and, on s2s, 'db'), so they must stay small.
 * Over either: policy-violation. */
#define LIMIT_STREAM_HEADER_PREFIXES_MAX 4u
#define LIMIT_STREAM_HEADER_NAMESPACE_BYTES_MAX 192u

/* ------------------------------------------------------------------ runtime */

/* Reactors (threads with an io_uring ring each). Default is one per online
 * core; more than the core count is allowed (useful for tests) up to this.
 * config: reactors */
#define LIMIT_REACTORS_MAX 256u

/* Connections one reactor holds. Each ring has its own fixed-file table of
 * direct descriptors; the kernel caps a table at RLIMIT_NOFILE (20,000 on
 * the build machines), so the effective value is
 * min(this, RLIMIT_NOFILE). A node holds reactors x this. Over it: the
 * accepted socket is closed at once. config: limits.connections_per_reactor */
#define LIMIT_CONNECTIONS_PER_REACTOR 65536u

/* Moves one reactor has handed to other rings (IORING_MSG_SEND_FD) and
 * whose completion has not come back. Each holds the source's slot until
 * the kernel confirms and the slot is closed; with DEFER_TASKRUN those
 * confirmations arrive a few per loop iteration, so a storm of moves
 * without this bound filled whole tables with connections already gone
 * (moves and accepts then failed with ENFILE). Past it, a move waits for
 * the next loop iteration; it does not fail. */
#define LIMIT_MOVES_IN_FLIGHT_PER_REACTOR 1024u

/* Submission queue entries per ring. Big enough that one loop iteration can
 * submit a burst of sends without io_uring_get_sqe() failing; the reactor
 * submits and retries when it does. */
#define LIMIT_RING_ENTRIES 4096u

/* Provided receive buffers per reactor, and their size. Multishot recv takes
 * a buffer only while data is in flight, so an idle connection holds none;
 * 1024 x 16 KiB = 16 MiB per reactor absorbs a burst from a thousand busy
 * connections. When the ring runs dry the kernel ends multishot recvs with
 * -ENOBUFS: back-pressure, the reactor replenishes and re-arms.
 * config: limits.recv_buffers, limits.recv_buffer_bytes */
#define LIMIT_RECV_BUFFERS         1024u
#define LIMIT_RECV_BUFFER_BYTES    (16u * 1024u)

/* Bytes queued for sending on one connection before it is told to stop
 * producing (back-pressure). A peer that reads nothing for
 * LIMIT_WRITE_TIMEOUT_MS while its queue is non-empty is closed.
 * config: limits.send_queue_bytes */
#define LIMIT_SEND_QUEUE_BYTES (512u * 1024u)

/* Hard cap over LIMIT_SEND_QUEUE_BYTES: a producer that ignores
 * back-pressure gets its sends refused (and the connection closed) instead
 * of growing memory. */
#define LIMIT_SEND_QUEUE_BYTES_HARD (4u * LIMIT_SEND_QUEUE_BYTES)

/* Segments gathered into one sendmsg. IOV_MAX is 1024; 64 covers a burst of
 * stanza-sized segments without a huge iovec on the reactor stack. */
#define LIMIT_SEND_IOVECS 64u

/* Time a peer may keep unsent bytes queued without the socket draining any
 * of them, before the connection is closed. config: timeouts.write_ms */
#define LIMIT_WRITE_TIMEOUT_MS 30000u

/* Time from accept until the application declares the handshake done (for
 * XMPP: until the session is bound). config: timeouts.handshake_ms */
#define LIMIT_HANDSHAKE_TIMEOUT_MS 30000u

/* Time a connection may be silent before it is closed. XMPP clients send a
 * whitespace keepalive or ping well within this. config: timeouts.idle_ms */
#define LIMIT_IDLE_TIMEOUT_MS 600000u

/* Timer wheel: slot width and slot count. 64 slots of 128 ms cover about
 * 8 s per lap; longer timers stay in their slot for several laps (each
 * entry carries its deadline). Timer precision is one slot. */
#define LIMIT_TIMER_SLOT_MS 128u
#define LIMIT_TIMER_SLOTS   64u

/* Messages one mailbox (single producer, single consumer, between two
 * reactors) holds. A full mailbox refuses the post; the sender sees the
 * error and decides (drop with an error stanza, retry next iteration). */
#define LIMIT_MAILBOX_MESSAGES 8192u

/* Grace period of a graceful shutdown: after SIGTERM/SIGINT, connections
 * are asked to close cleanly; whatever remains after this is closed hard and
 * the process exits. Kubernetes' default terminationGracePeriodSeconds is
 * 30 s, so the default stays below it. config: shutdown_grace_ms */
#define LIMIT_SHUTDOWN_GRACE_MS 10000u

/* Bytes of each reactor's log ring. A reactor never writes a log line
 * itself (stderr may block); it queues the line for the logger thread. 64
 * KiB holds several hundred lines, far more than a healthy second brings;
 * when a flood fills it, lines are dropped and the drop is counted and
 * reported, the reactor never waits. */
#define LIMIT_LOG_RING_BYTES (64u * 1024u)

/* Listening sockets one reactor owns (one per listener in the config). */
#define LIMIT_LISTENERS_PER_REACTOR 16u

/* Backlog of each listening socket (the kernel caps it at somaxconn). */
#define LIMIT_LISTEN_BACKLOG 4096u

/* Outbound sockets (rx_connect) one reactor holds as ordinary descriptors
 * at once. Each lives in the process table only from socket() until the
 * ring has taken it into its fixed-file table (one loop iteration); the
 * process table is capped at RLIMIT_NOFILE (20,000 on the build machines)
 * for every reactor together, so a burst of connects must not pass through
 * it all at once. Further connects wait in the reactor's queue. 256 per
 * iteration still opens tens of thousands of connections a second. */
#define LIMIT_CONNECT_SOCKETS_PER_REACTOR 256u

/* ------------------------------------------------------------ configuration */

/* Bytes of the YAML configuration file. A complete configuration with every
 * key is a few kilobytes; the bound keeps a wrong path (a log, a disk image)
 * from being read into memory whole. Over it: the load fails. */
#define LIMIT_CONFIG_FILE_BYTES_MAX (1024u * 1024u)

/* Bytes of one string value in the configuration (a path, a domain, a host
 * name). A domainpart may be 1023 bytes (RFC 7622 section 3.2); paths and
 * host names longer than that are mistakes. Over it: the load fails. */
#define LIMIT_CONFIG_STRING_BYTES_MAX 1023u

/* Bytes of a secret (a password), inline or read from a password_file.
 * Kubernetes secrets and generated passwords are well under this; the
 * bound keeps a wrong password_file (a large file) from being read whole.
 * Over it: the load fails. */
#define LIMIT_CONFIG_SECRET_BYTES_MAX 4096u

/* Domains one server serves, and certificate entries (one per domain).
 * Each domain is a fixed-size slot in the configuration; hosting hundreds
 * of domains is a different product. config: domains */
#define LIMIT_CONFIG_DOMAINS_MAX 32u

/* Bounds of every operator-set timeout (handshake, idle, write), in ms.
 * Below one timer slot (LIMIT_TIMER_SLOT_MS) a timeout cannot be honoured;
 * over a day it is a typo. config: timeouts.* */
#define LIMIT_CONFIG_TIMEOUT_MS_MIN 100u
#define LIMIT_CONFIG_TIMEOUT_MS_MAX 86400000u

/* Database connections one reactor opens (PostgreSQL). PostgreSQL's default
 * max_connections is 100; reactors x this must fit under it across every
 * node, so a larger value is a typo. config:
 * storage.postgresql.connections_per_reactor */
#define LIMIT_STORAGE_CONNECTIONS_PER_REACTOR_MAX 16u

/* --------------------------------------------------------------------- SASL */

/* Bytes of one SCRAM message (RFC 5802), before SASL's base64. A
 * localpart may be 1023 bytes (RFC 7622), 3069 even if every byte needed
 * "=2C"-style escaping; with the gs2 header and nonce that still fits,
 * while a message that arrives before authentication stays small. Over
 * it: malformed-request. */
#define LIMIT_SCRAM_MESSAGE_BYTES_MAX 4096u

/* Bytes of a SCRAM nonce (client and server parts together). Real nonces
 * are 24 to 64 characters; the bound keeps the copies both sides keep for
 * the AuthMessage small. Over it: malformed-request. */
#define LIMIT_SCRAM_NONCE_BYTES_MAX 256u

/* Bytes of a decoded SCRAM salt. Servers use 16 to 32; a parsed salt is
 * held in a fixed array. Over it: malformed-request. */
#define LIMIT_SCRAM_SALT_BYTES_MAX 128u

/* Iteration counts a SCRAM client accepts from a server. Below 4096 is
 * under the floor RFC 5802 section 5 and RFC 7677 section 4 recommend
 * (a hostile or downgraded server could collect cheap-to-crack proofs);
 * above a million, one login would burn seconds of CPU at the server's
 * command. Outside: the client aborts the exchange. */
#define LIMIT_SCRAM_ITERATIONS_MIN 4096u
#define LIMIT_SCRAM_ITERATIONS_MAX 1000000u

/* ------------------------------------------------------------------ storage */

/* Operations queued for a storage driver and not yet executed. A reactor
 * never waits on storage: when the queue is full, submission fails at once
 * with STORAGE_BUSY and the caller answers with a temporary error (for
 * XMPP: resource-constraint or a retry). 4096 is several loop iterations
 * of every reactor at full login rate, and bounds the memory of queued
 * requests (each holds its copied arguments, a stanza at most).
 * config: storage.queue_requests */
#define LIMIT_STORAGE_QUEUE_REQUESTS 4096u

/* Rows one page of a listing returns (users today, archives later). A
 * page is held in memory until its callback returns; the caller pages on
 * with the last key it saw. Over it: the request is refused (invalid). */
#define LIMIT_STORAGE_PAGE_ROWS_MAX 1000u

/* Bytes of the reason text a failed operation carries (an SQL error
 * message, a driver's explanation), truncated past it. */
#define LIMIT_STORAGE_REASON_BYTES 256u

/* Bytes of a localpart and of a domain handed to storage. RFC 7622 caps
 * each part of a JID at 1023 bytes. Over it: the request is refused. */
#define LIMIT_STORAGE_JID_PART_BYTES_MAX 1023u

/* Time the SQLite driver waits for a lock another connection holds (an
 * operator's sqlite3 shell, a backup) before the batch fails with
 * "unavailable". Only the storage thread waits, never a reactor; 5 s rides
 * over a backup step without turning a stuck database into a hang. */
#define LIMIT_STORAGE_SQLITE_BUSY_TIMEOUT_MS 5000u

/* Pause of the storage thread before it retries a completion a reactor's
 * full mailbox refused. A completion is never dropped for a full mailbox
 * (only when its reactor has exited); the reactor drains its mailbox every
 * loop iteration, so 1 ms retries cost nothing while it catches up. */
#define LIMIT_STORAGE_COMPLETION_RETRY_MS 1u

/* Time the PostgreSQL driver waits for one pipeline's answers (or for the
 * socket to take its requests) before it drops the connection and fails
 * the batch with "unavailable". A stuck server (stopped, partitioned)
 * thus costs one bounded wait, not a hang; 30 s rides over a lock held by
 * an operator's transaction or a checkpoint stall. */
#define LIMIT_STORAGE_POSTGRESQL_BATCH_MS 30000u

/* Time one PostgreSQL connection attempt (TCP, TLS, authentication) may
 * take before it counts as failed and the back-off grows. */
#define LIMIT_STORAGE_POSTGRESQL_CONNECT_MS 5000u

/* Back-off between PostgreSQL reconnection attempts: the first retry
 * comes at once, a failed attempt doubles the wait from MIN up to MAX.
 * While a retry is not due, operations fail at once with "unavailable"
 * (they are never held while the database is down); 5 s keeps a restarted
 * database found within seconds without hammering a dead one. */
#define LIMIT_STORAGE_POSTGRESQL_RECONNECT_MIN_MS 50u
#define LIMIT_STORAGE_POSTGRESQL_RECONNECT_MAX_MS 5000u

/* Connections of the PostgreSQL driver's thread pool (waiters, or every
 * operation with reactor_connections=off), each with its storage thread:
 * option `connections`. Each takes what is queued when it is free, so
 * batches overlap; a handful saturate a server's commit path, and every
 * one is a backend process on the server. Over it: refused. */
#define LIMIT_STORAGE_POSTGRESQL_CONNECTIONS_MAX 16u

/* PBKDF2 iterations and salt bytes of the SCRAM credentials starlingctl
 * stores (one salt per user and hash, from BoringSSL's RAND_bytes). 4096
 * is the floor RFC 5802 section 5 and RFC 7677 section 4 recommend and
 * the count clients accept (LIMIT_SCRAM_ITERATIONS_MIN): each login costs
 * the client that many HMACs per hash, and an import costs three PBKDF2
 * runs per user. 16 salt bytes (128 bits) make every user's keys unique. */
#define LIMIT_SCRAM_STORED_ITERATIONS 4096u
#define LIMIT_SCRAM_STORED_SALT_BYTES 16u

/* Bytes of a password starlingctl accepts: as long as a JID part (RFC
 * 7622's 1023); longer is a pasting accident. */
#define LIMIT_CTL_PASSWORD_BYTES_MAX 1023u

/* Bytes of one line of a `starlingctl user import` file: a JID (a
 * localpart and a domain of 1023 bytes each), a separator, a password,
 * with room to spare. Over it: the line is an error naming file:line. */
#define LIMIT_CTL_IMPORT_LINE_BYTES_MAX 4096u

/* Users `starlingctl user import` derives and submits together. Each one
 * is one storage request, so a batch stays under the storage queue
 * (LIMIT_STORAGE_QUEUE_REQUESTS) and is never refused as busy; 2048 lets
 * the SQLite driver commit hundreds of creates per transaction, and two
 * batches of derived credentials (one being derived, one being stored)
 * take a few megabytes. */
#define LIMIT_CTL_IMPORT_BATCH_USERS 2048u

/* Time starlingctl waits for the storage to answer one operation (or one
 * import batch) before it reports the database unavailable. SQLite waits
 * LIMIT_STORAGE_SQLITE_BUSY_TIMEOUT_MS for a lock; a batch of creates
 * takes well under a second; a minute means the database is stuck. */
#define LIMIT_CTL_STORAGE_WAIT_MS 60000u

#endif
