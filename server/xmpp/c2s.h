/*
 * c2s.h: client-to-server XMPP streams (RFC 6120 section 4) on the runtime.
 *
 * A client stream starts when a connection is accepted on a client
 * listener. c2s reads the client's stream header with the tokenizer, checks
 * it (served domain, stream namespace, version), answers with its own header
 * and the stream features, and keeps the stream open. Whatever the client
 * sends that breaks the rules ends only that stream, with the stream error
 * RFC 6120 names, written after Starling's own header if that had not been
 * sent yet (section 4.9.1.2). A graceful shutdown ends each stream with
 * system-shutdown.
 *
 * Authentication, TLS, binding and routing come with the XMPP core; until
 * then every stanza is answered with not-authorized, as RFC 6120 section
 * 4.9.3.12 asks for stanzas sent before authentication.
 */
#ifndef STARLING_SERVER_XMPP_C2S_H
#define STARLING_SERVER_XMPP_C2S_H

#include <stddef.h>

#include "server/runtime/rx.h"

/* Bytes of a domain name (RFC 7622 section 3.2: 1023 octets at most). */
#define C2S_DOMAIN_BYTES_MAX 1023u

/* What a client listener serves. Shared read-only by every reactor, so it
 * must outlive the runtime. */
typedef struct c2s_context {
    char domain[C2S_DOMAIN_BYTES_MAX + 1]; /* lower-case ASCII */
    size_t domain_length;
} c2s_context;

/* Copies and lower-cases domain (borrowed) into context. Returns 0, or -1
 * when the domain is empty, too long, or holds bytes that cannot appear in
 * an ASCII domain name (internationalised domains arrive with issue 5's
 * IDNA2008 support). */
int c2s_context_init(c2s_context *context, const char *domain);

/* The listener callbacks; pass a c2s_context as the listener context. */
extern const rx_listener_ops c2s_listener_ops;

#endif
