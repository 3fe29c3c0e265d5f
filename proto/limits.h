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

/* Reactor housekeeping (rx_options.on_housekeeping: the allocator's purge):
 * at most once per this period on a reactor that has handled work since
 * the last call, and once more when it has been idle for a period, so
 * that what a burst freed is returned to the kernel even when the reactor
 * then goes quiet. A reactor idle since its last call is not woken. */
#define LIMIT_REACTOR_HOUSEKEEPING_MS 1000u

/* A reactor turn (from waking to waiting again: its completions, mailboxes,
 * writes and housekeeping) this long or longer is logged as a warning: every
 * connection on that reactor waited that long. At most one line per
 * LIMIT_REACTOR_HOUSEKEEPING_MS per reactor; the next line counts the turns
 * in between. */
#define LIMIT_REACTOR_SLOW_TURN_MS 10u

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

/* ------------------------------------------------------- sessions and routing */

/* Resources (bound sessions) one user holds at once, on the reactor that
 * owns the user's shard. Phones, desktops and a web client make a handful;
 * more than 32 is a runaway reconnect loop or an abuse, and a bare-JID
 * delivery walks them all. Over it: the bind is refused with
 * resource-constraint (RFC 6120 section 7.6.2.1). */
#define LIMIT_SESSION_RESOURCES_PER_USER 32u

/* Bound sessions one reactor's session table holds. A session is a
 * connection that moved to its shard's reactor, so the connection bound is
 * the natural one (the table's buckets double as it fills, so an idle
 * reactor holds a small table). Over it: the bind is refused with
 * resource-constraint. */
#define LIMIT_SESSIONS_PER_REACTOR LIMIT_CONNECTIONS_PER_REACTOR

/* Bytes of a full JID as the router handles it: a localpart, a domainpart
 * and a resourcepart of at most 1023 bytes each (RFC 7622 section 3), with
 * '@' and '/'. Longer is jid-malformed. */
#define LIMIT_ROUTE_JID_BYTES_MAX 3071u

/* Nodes a cluster driver knows, and so the most a lookup answers with.
 * A cluster of XMPP nodes is tens of pods; the answer of a lookup is held
 * in a fixed array on the reactor that asked. */
#define LIMIT_CLUSTER_NODES_MAX 256u

/* Bare-JID recipients of one presence fan-out (the subscribers a user's
 * presence goes to on one call). Rosters are capped well below this by
 * the roster module; a bigger set is sent in several calls. Over it: the
 * fan-out is refused (invalid). */
#define LIMIT_CLUSTER_FAN_OUT_JIDS_MAX 4096u

/* Cluster requests one reactor may have outstanding (submitted, callback
 * not yet run). It bounds the memory of requests in flight and of answers
 * a driver holds back while the asking reactor's mailbox is full; 4096 is
 * several loop iterations of lookups at full message rate. Over it: the
 * submission is refused with CLUSTER_BUSY (for XMPP: resource-constraint
 * or wait). */
#define LIMIT_CLUSTER_REQUESTS_PER_REACTOR 4096u

/* --------------------------------------------------------------------- JIDs */

/* Bytes of each part of a JID (localpart, domainpart, resourcepart) after
 * preparation: RFC 7622 section 3.1 (and 3.2, 3.3) caps each at 1023
 * octets. Over it: jid-malformed. */
#define LIMIT_JID_PART_BYTES_MAX 1023u

/* Bytes of a part before preparation. Preparation shrinks a string by at
 * most a factor of three (a fullwidth letter, a Hangul L V T sequence or
 * U+3000 becomes one third of its bytes), so a longer input can never
 * prepare to LIMIT_JID_PART_BYTES_MAX; the bound (with margin) caps the
 * mapping buffers and work per part. Over it: jid-malformed. */
#define LIMIT_JID_PART_INPUT_BYTES_MAX (4u * LIMIT_JID_PART_BYTES_MAX)

/* Bytes of a prepared full JID, local@domain/resource: three parts and
 * two separators. A parsed JID is held in a fixed buffer of this size. */
#define LIMIT_JID_BYTES_MAX (3u * LIMIT_JID_PART_BYTES_MAX + 2u)

/* --------------------------------------------------------- client streams */

/* Plaintext a client sends while its stream waits for an answer it asked
 * for (a credential fetch, a held-back SASL failure, the move to its
 * shard's reactor after bind), kept until the answer is out. Clients wait
 * for those answers; a well-behaved one sends nothing meanwhile, a
 * pipelining one a stanza or two. Over it: policy-violation. */
#define LIMIT_C2S_HELD_BYTES (64u * 1024u)

/* Bytes of a reactor's buffer for what c2s writes itself: features, SASL
 * and bind answers, IQ results, stanza errors (which echo two JIDs and an
 * id) and a stamped presence for broadcast (a stanza and its new
 * attributes). */
#define LIMIT_C2S_REPLY_BYTES (LIMIT_STANZA_BYTES_MAX + 64u * 1024u)

/* Bytes of the id of a bind request, kept while the session moves to its
 * shard's reactor. Clients use short ids; over it: not-allowed. */
#define LIMIT_C2S_ID_BYTES 256u

/* Bytes of a SASL element's character data (base64 of at most
 * LIMIT_SASL_MESSAGE_BYTES_MAX, with room for whitespace). Over it:
 * malformed-request. */
#define LIMIT_C2S_SASL_TEXT_BYTES (2u * LIMIT_SASL_MESSAGE_BYTES_MAX)

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

/* ---------------------------------------------------------------------- TLS */

/* Ciphertext bytes a client may send before its TLS handshake completes.
 * The server asks for no client certificate, so the client's side of a
 * handshake is a ClientHello (under 2 KiB even with post-quantum key
 * shares) and a Finished; 32 KiB is generous. A client that sends more
 * before finishing is an attack on a pre-authentication connection. Over
 * it: the session fails ("handshake too large") and the connection
 * closes. */
#define LIMIT_TLS_HANDSHAKE_BYTES_MAX (32u * 1024u)

/* Bytes of the plaintext scratch buffer a reactor hands to TLS sessions
 * (tls_io.plaintext): one whole TLS record (2^14 bytes, RFC 8446 section
 * 5.1), so one SSL_read yields a record at once. A smaller buffer works,
 * with more calls; a larger one gains nothing. */
#define LIMIT_TLS_PLAINTEXT_BUFFER_BYTES 16384u

/* Bytes of a PEM certificate chain or key file. A chain of a leaf and two
 * intermediates is under 10 KiB; the bound keeps a wrong path (a log, a
 * disk image) from being read into memory. Over it: the start fails. */
#define LIMIT_TLS_PEM_FILE_BYTES_MAX (256u * 1024u)

/* TLS 1.3 session tickets sent after each handshake. An XMPP client holds
 * one connection to its server, so one ticket resumes it; each further
 * ticket costs bytes on every handshake (BoringSSL's default is two). */
#define LIMIT_TLS_SESSION_TICKETS 1u

/* Validity of the self-signed certificate generated at first start when
 * a domain has none configured, in days. It is a development convenience
 * pinned by the clients that accept it, so it should not expire under
 * them; ten years. */
#define LIMIT_TLS_SELF_SIGNED_DAYS 3650u

/* -------------------------------------------------------- SASL (server side) */

/* Bytes of one decoded SASL message (the text of <auth/> or <response/>
 * after base64): a SCRAM message (LIMIT_SCRAM_MESSAGE_BYTES_MAX) or a PLAIN
 * message (an authzid, a localpart and a password, each a JID part of at
 * most 1023 bytes). The base64 text may be 4/3 of it. Over it:
 * malformed-request. */
#define LIMIT_SASL_MESSAGE_BYTES_MAX 4096u

/* Credential fetches one SASL session may have in flight. An <abort/> or
 * a closed stream leaves its fetch in flight until storage answers; a
 * client that aborts and restarts in a loop would otherwise pile up
 * requests in the storage queue. A new <auth/> over it gets
 * temporary-auth-failure. */
#define LIMIT_SASL_FETCHES_IN_FLIGHT 2u

/* Failed SASL attempts one stream may make before it is closed with
 * policy-violation (RFC 6120 section 6.4.5 asks for a configurable number
 * of retries, at least 2). A client with a wrong password has no reason to
 * retry more than a few times; an attacker must reconnect (and go through
 * TLS again) after this many guesses. */
#define LIMIT_SASL_ATTEMPTS_PER_STREAM 5u

/* Failed-login throttling (server/xmpp/auth_throttle.h): entries of the
 * per-reactor tables of accounts (bare JIDs) and of source addresses (an
 * IPv4 address or an IPv6 /64). Each entry is 32 bytes, so a table holds
 * 128 KiB per reactor; a full table evicts the least recently failed entry
 * of the 8-way set the key hashes into (an attacker who floods the table
 * with fresh names only evicts entries of the same set). */
#define LIMIT_AUTH_THROTTLE_ACCOUNTS  4096u
#define LIMIT_AUTH_THROTTLE_ADDRESSES 4096u

/* Failures (per account or per address) that cost nothing: a user who
 * mistypes a password twice is not slowed down. */
#define LIMIT_AUTH_THROTTLE_FREE_FAILURES 2u

/* Delay after the first counted failure, doubled for each further one up
 * to the cap. The delay holds the failure response back (so one
 * connection guessing in sequence gets one guess per delay), and an
 * attempt on another connection during it is refused with
 * temporary-auth-failure before its credentials are checked. An account's
 * cap is short because an attacker can keep a victim's account in its
 * delay forever (a lock-out); an address's cap is longer because only the
 * attacker's own address suffers. */
#define LIMIT_AUTH_THROTTLE_DELAY_MS_BASE        1000u
#define LIMIT_AUTH_THROTTLE_ACCOUNT_DELAY_MS_MAX 15000u
#define LIMIT_AUTH_THROTTLE_ADDRESS_DELAY_MS_MAX 60000u

/* Time after its last failure when an entry is forgotten (its counter
 * starts again from zero). */
#define LIMIT_AUTH_THROTTLE_FORGET_MS (15u * 60u * 1000u)

/* ------------------------------------------------------------------ storage */

/* Operations queued for a storage driver and not yet executed. A reactor
 * never waits on storage: when the queue is full, submission fails at once
 * with STORAGE_BUSY and the caller answers with a temporary error (for
 * XMPP: resource-constraint or a retry). 4096 is several loop iterations
 * of every reactor at full login rate, and bounds the memory of queued
 * requests (each holds its copied arguments, a stanza at most).
 * config: storage.queue_requests */
#define LIMIT_STORAGE_QUEUE_REQUESTS 4096u

/* Requests a thread with a storage_waiter (starlingctl, start-up) may have
 * submitted and not yet run the completions of, queued or completed. Its
 * completions wait on the waiter's list until it runs them, outside any
 * driver queue; over this bound submission fails with STORAGE_BUSY until
 * storage_waiter_run has run some. Twice the queue: a full queue's worth
 * in the driver and as many completed. */
#define LIMIT_STORAGE_WAITER_PENDING (2u * LIMIT_STORAGE_QUEUE_REQUESTS)

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
