/*
 * scram.h: the Salted Challenge Response Authentication Mechanism (SCRAM,
 * RFC 5802, with SHA-256 from RFC 7677 and SHA-512 by the same rules), for
 * both sides of a SASL exchange.
 *
 * An exchange is four messages:
 *
 *   client-first   gs2-header client-first-bare     "n,,n=user,r=CNONCE"
 *   server-first   nonce, salt, iteration count     "r=CNONCESNONCE,s=SALT,i=4096"
 *   client-final   channel binding, nonce, proof    "c=biws,r=CNONCESNONCE,p=PROOF"
 *   server-final   verifier, or an error            "v=SIGNATURE" / "e=invalid-proof"
 *
 * The proof and the verifier are HMACs over the AuthMessage, which is
 * client-first-bare "," server-first "," client-final-without-proof; each
 * side keeps its copies of those three messages (scram_auth_message points
 * at them) until the exchange ends.
 *
 * Everything here is pure: no I/O, no allocation, no global state (except
 * that scram_nonce_make reads BoringSSL's random generator). Messages are
 * built into caller buffers and parsed into slices of the caller's message.
 * Parsers take whole messages (SASL delivers them whole) and validate the
 * grammar of RFC 5802 section 7; every bound is in proto/limits.h.
 *
 * Passwords are taken as the bytes to hash: the caller applies SASLprep
 * (RFC 4013) or OpaqueString (RFC 8265) before, as RFC 5802 asks.
 */
#ifndef STARLING_PROTO_SCRAM_H
#define STARLING_PROTO_SCRAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/limits.h"

/* The hash functions SCRAM is used with. */
typedef enum scram_hash {
    SCRAM_HASH_SHA1 = 0,
    SCRAM_HASH_SHA256,
    SCRAM_HASH_SHA512,
} scram_hash;

/* Largest digest of any scram_hash (SHA-512), in bytes. */
#define SCRAM_HASH_BYTES_MAX 64u

/* Outcome of every scram_ call. Each maps onto a SASL failure condition
 * (scram_result_sasl_condition) and, for a server, onto the server-error
 * value of a server-final message (scram_result_server_error). */
typedef enum scram_result {
    SCRAM_OK = 0,
    SCRAM_ERROR_MALFORMED,       /* the message breaks RFC 5802 section 7 */
    SCRAM_ERROR_TOO_LONG,        /* over a bound of proto/limits.h */
    SCRAM_ERROR_BAD_BASE64,      /* an attribute that must be base64 is not */
    SCRAM_ERROR_BAD_ESCAPE,      /* a saslname with '=' not in =2C or =3D, or bad UTF-8 */
    SCRAM_ERROR_BAD_NONCE,       /* a nonce empty or with a character outside printable */
    SCRAM_ERROR_EXTENSION,       /* a mandatory extension (m=) we do not support */
    SCRAM_ERROR_ITERATIONS,      /* iteration count outside the accepted range */
    SCRAM_ERROR_NONCE_MISMATCH,  /* the nonce does not continue the exchange's nonce */
    SCRAM_ERROR_CHANNEL_BINDING, /* c= does not match the gs2 header and binding data */
    SCRAM_ERROR_NOT_AUTHORIZED,  /* wrong proof (server) or wrong verifier (client) */
    SCRAM_ERROR_SERVER_ERROR,    /* the server-final message carries e= */
    SCRAM_ERROR_BUFFER,          /* the caller's output buffer is too small */
    SCRAM_ERROR_CRYPTO,          /* BoringSSL failed (out of memory) */
} scram_result;

/* A short name for logs, e.g. "nonce-mismatch" (static, never NULL). */
const char *scram_result_name(scram_result result);

/* The SASL failure condition (RFC 6120 section 6.5) a server reports for
 * the result: "malformed-request", "not-authorized" or
 * "temporary-auth-failure" (static, never NULL; "" for SCRAM_OK). */
const char *scram_result_sasl_condition(scram_result result);

/* The server-error value of RFC 5802 section 7 for e=, e.g. "invalid-proof"
 * (static, never NULL; "other-error" when none fits). */
const char *scram_result_server_error(scram_result result);

/* A borrowed run of bytes, usually inside a message the caller owns. */
typedef struct scram_slice {
    const char *ptr;
    size_t len;
} scram_slice;

/* ------------------------------------------------------------ mechanisms */

typedef struct scram_mechanism {
    scram_hash hash;
    bool plus; /* the -PLUS variant: channel binding is required */
} scram_mechanism;

/* Parses a mechanism name ("SCRAM-SHA-256-PLUS"; exact case, as IANA
 * registers them). name is borrowed. Returns false for any other name. */
bool scram_mechanism_parse(const char *name, size_t name_len, scram_mechanism *out);

/* The registered name of a mechanism (static, never NULL). */
const char *scram_mechanism_name(scram_mechanism mechanism);

/* Digest length of hash in bytes: 20, 32 or 64. */
size_t scram_hash_bytes(scram_hash hash);

/* ------------------------------------------------------------------ keys */

/* Every key of RFC 5802 section 3 for one password, each hash_bytes long.
 * A server stores stored_key and server_key (with salt and iterations); a
 * client may cache salted_password to skip PBKDF2 on its next login. */
typedef struct scram_keys {
    scram_hash hash;
    unsigned char salted_password[SCRAM_HASH_BYTES_MAX];
    unsigned char client_key[SCRAM_HASH_BYTES_MAX];
    unsigned char stored_key[SCRAM_HASH_BYTES_MAX];
    unsigned char server_key[SCRAM_HASH_BYTES_MAX];
} scram_keys;

/* SaltedPassword = Hi(password, salt, iterations) (PBKDF2-HMAC), then the
 * other keys from it. password and salt are borrowed. iterations must be
 * 1..LIMIT_SCRAM_ITERATIONS_MAX (SCRAM_ERROR_ITERATIONS otherwise); it costs
 * that many HMACs, so a server never calls this with a client's count. */
scram_result scram_keys_derive(scram_hash hash, const char *password, size_t password_len,
                               const unsigned char *salt, size_t salt_len, uint32_t iterations,
                               scram_keys *out);

/* The other keys from a cached SaltedPassword (borrowed, hash_bytes long). */
scram_result scram_keys_from_salted(scram_hash hash, const unsigned char *salted_password,
                                    scram_keys *out);

/* ---------------------------------------------------------------- names */

/* Escapes a saslname (',' to "=2C", '=' to "=3D") into out (borrowed,
 * capacity bytes). Returns SCRAM_ERROR_BUFFER when it does not fit,
 * SCRAM_ERROR_BAD_ESCAPE for an empty name, a NUL or invalid UTF-8. */
scram_result scram_saslname_escape(const char *name, size_t name_len, char *out, size_t capacity,
                                   size_t *out_len);

/* Reverses scram_saslname_escape into out (borrowed, capacity bytes; the
 * result is never longer than the input). SCRAM_ERROR_BAD_ESCAPE for a '='
 * not starting =2C or =3D, a ',' or NUL, empty input or invalid UTF-8. */
scram_result scram_saslname_unescape(const char *escaped, size_t escaped_len, char *out,
                                     size_t capacity, size_t *out_len);

/* ---------------------------------------------------------------- nonces */

/* Fills out (borrowed) with random_bytes of randomness, base64 encoded: a
 * nonce of 4 * ceil(random_bytes / 3) printable characters. out_len gets the
 * length. 18 random bytes give the 24 characters of RFC 5802's example. */
scram_result scram_nonce_make(size_t random_bytes, char *out, size_t capacity, size_t *out_len);

/* ---------------------------------------------------------- client-first */

/* The gs2-cbind-flag: what the client says about channel binding. The
 * parser only reports it; the policy is the server's (RFC 5802 section 6:
 * a server that supports channel binding refuses "y", which signals a
 * downgrade, and a -PLUS mechanism requires "p="). */
typedef enum scram_cbind {
    SCRAM_CBIND_NONE = 0,    /* "n": client does not support it */
    SCRAM_CBIND_NOT_OFFERED, /* "y": client supports it, thinks the server does not */
    SCRAM_CBIND_REQUIRED,    /* "p=NAME": client uses channel binding NAME */
} scram_cbind;

/* Channel binding type of RFC 9266, the one XMPP uses over TLS 1.3. */
#define SCRAM_CBIND_TLS_EXPORTER "tls-exporter"

/* What a client puts into its first message. All pointers are borrowed.
 * username and authzid are unescaped (the builder escapes them); authzid
 * may be NULL for none. cbind_name is used only with SCRAM_CBIND_REQUIRED. */
typedef struct scram_client_first_params {
    scram_cbind cbind;
    const char *cbind_name;
    const char *authzid;
    size_t authzid_len;
    const char *username;
    size_t username_len;
    const char *nonce;
    size_t nonce_len;
} scram_client_first_params;

/* Builds client-first-message into out (borrowed, capacity bytes). Sets
 * out_len, and gs2_header_len: the message's first gs2_header_len bytes
 * are the gs2 header (kept for c=), the rest is client-first-bare (kept
 * for the AuthMessage). */
scram_result scram_client_first_build(const scram_client_first_params *params, char *out,
                                      size_t capacity, size_t *out_len, size_t *gs2_header_len);

/* A parsed client-first-message: every slice points into the message. The
 * names are still escaped but known to unescape (scram_saslname_unescape). */
typedef struct scram_client_first {
    scram_cbind cbind;
    scram_slice cbind_name; /* empty unless SCRAM_CBIND_REQUIRED */
    scram_slice authzid;    /* escaped; empty when absent */
    scram_slice username;   /* escaped */
    scram_slice nonce;
    scram_slice gs2_header; /* the header with its final ',' */
    scram_slice bare;       /* client-first-message-bare */
} scram_client_first;

/* Parses client-first-message (borrowed; out's slices point into it). */
scram_result scram_client_first_parse(const char *message, size_t message_len,
                                      scram_client_first *out);

/* ---------------------------------------------------------- server-first */

/* Builds server-first-message "r=CLIENTSERVER,s=SALT,i=N" into out
 * (borrowed). client_nonce is the one parsed from client-first,
 * server_nonce the server's fresh part (non-empty, printable); both are
 * borrowed, as is salt. */
scram_result scram_server_first_build(scram_slice client_nonce, scram_slice server_nonce,
                                      const unsigned char *salt, size_t salt_len,
                                      uint32_t iterations, char *out, size_t capacity,
                                      size_t *out_len);

/* A parsed server-first-message. nonce points into the message; the salt
 * is decoded into the struct. */
typedef struct scram_server_first {
    scram_slice nonce; /* the whole nonce, the client's part first */
    unsigned char salt[LIMIT_SCRAM_SALT_BYTES_MAX];
    size_t salt_len;
    uint32_t iterations;
} scram_server_first;

/* Parses server-first-message (borrowed) for a client whose own nonce was
 * client_nonce (borrowed). The nonce must extend client_nonce by at least
 * one character (SCRAM_ERROR_NONCE_MISMATCH); the iteration count must lie
 * in LIMIT_SCRAM_ITERATIONS_MIN..LIMIT_SCRAM_ITERATIONS_MAX. */
scram_result scram_server_first_parse(const char *message, size_t message_len,
                                      scram_slice client_nonce, scram_server_first *out);

/* ---------------------------------------------------------- client-final */

/* The three messages the proof and the verifier sign; all borrowed. */
typedef struct scram_auth_message {
    scram_slice client_first_bare;
    scram_slice server_first;
    scram_slice client_final_without_proof;
} scram_auth_message;

/* Builds client-final-message-without-proof "c=BASE64,r=NONCE" into out
 * (borrowed). gs2_header is the one the client sent; cbind_data (may be
 * NULL when cbind_data_len is 0) is the channel binding data when the
 * header says p=; nonce is the server-first's whole nonce. All borrowed. */
scram_result scram_client_final_without_proof_build(scram_slice gs2_header,
                                                    const unsigned char *cbind_data,
                                                    size_t cbind_data_len, scram_slice nonce,
                                                    char *out, size_t capacity, size_t *out_len);

/* ClientProof = ClientKey XOR HMAC(StoredKey, AuthMessage), into proof
 * (borrowed, hash_bytes written). keys and message are borrowed. */
scram_result scram_client_proof(const scram_keys *keys, const scram_auth_message *message,
                                unsigned char proof[SCRAM_HASH_BYTES_MAX]);

/* Builds the whole client-final-message into out (borrowed): the part
 * without proof, as scram_client_final_without_proof_build, then ",p="
 * and the proof over client_first_bare, server_first and that part. Sets
 * out_len and without_proof_len (the prefix to keep for the AuthMessage).
 * All pointers are borrowed. */
scram_result scram_client_final_build(const scram_keys *keys, scram_slice gs2_header,
                                      const unsigned char *cbind_data, size_t cbind_data_len,
                                      scram_slice nonce, scram_slice client_first_bare,
                                      scram_slice server_first, char *out, size_t capacity,
                                      size_t *out_len, size_t *without_proof_len);

/* A parsed client-final-message: slices point into the message. */
typedef struct scram_client_final {
    scram_slice channel_binding; /* c=, still base64 (known to decode) */
    scram_slice nonce;
    scram_slice without_proof; /* client-final-message-without-proof */
    unsigned char proof[SCRAM_HASH_BYTES_MAX];
    size_t proof_len;
} scram_client_final;

/* Parses client-final-message (borrowed; out's slices point into it). */
scram_result scram_client_final_parse(const char *message, size_t message_len,
                                      scram_client_final *out);

/* Server side: checks a parsed client-final against the exchange. nonce
 * is the whole nonce the server sent (SCRAM_ERROR_NONCE_MISMATCH), c= must
 * decode to gs2_header followed by cbind_data (SCRAM_ERROR_CHANNEL_BINDING;
 * cbind_data may be NULL when cbind_data_len is 0). All borrowed. */
scram_result scram_client_final_check(const scram_client_final *final, scram_slice nonce,
                                      scram_slice gs2_header, const unsigned char *cbind_data,
                                      size_t cbind_data_len);

/* Server side: verifies proof (borrowed, proof_len bytes) against the
 * stored keys (borrowed, scram_hash_bytes(hash) each): recovers ClientKey
 * and compares H(ClientKey) with stored_key in constant time
 * (SCRAM_ERROR_NOT_AUTHORIZED). On success writes ServerSignature =
 * HMAC(ServerKey, AuthMessage) into server_signature (borrowed). */
scram_result scram_server_verify_proof(scram_hash hash, const unsigned char *stored_key,
                                       const unsigned char *server_key,
                                       const scram_auth_message *message,
                                       const unsigned char *proof, size_t proof_len,
                                       unsigned char server_signature[SCRAM_HASH_BYTES_MAX]);

/* ---------------------------------------------------------- server-final */

/* Builds "v=BASE64(server_signature)" (signature borrowed, hash_bytes). */
scram_result scram_server_final_build(scram_hash hash, const unsigned char *server_signature,
                                      char *out, size_t capacity, size_t *out_len);

/* Builds "e=VALUE" with VALUE = scram_result_server_error(failure). */
scram_result scram_server_final_error_build(scram_result failure, char *out, size_t capacity,
                                            size_t *out_len);

/* A parsed server-final-message: a verifier, or an error value. */
typedef struct scram_server_final {
    bool is_error;
    scram_slice error; /* e= value, pointing into the message */
    unsigned char verifier[SCRAM_HASH_BYTES_MAX];
    size_t verifier_len;
} scram_server_final;

/* Parses server-final-message (borrowed; error points into it). An e=
 * message parses with SCRAM_OK and is_error set. */
scram_result scram_server_final_parse(const char *message, size_t message_len,
                                      scram_server_final *out);

/* Client side: checks the server's verifier against
 * HMAC(ServerKey, AuthMessage) in constant time. SCRAM_ERROR_SERVER_ERROR
 * when final carries e=, SCRAM_ERROR_NOT_AUTHORIZED when the verifier is
 * wrong (the server does not know the password). All borrowed. */
scram_result scram_client_verify_server(const scram_keys *keys, const scram_auth_message *message,
                                        const scram_server_final *final);

#endif
