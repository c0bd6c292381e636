/* The message envelope: encoding and strict decoding of gtrt messages.
 *
 * A message is [Header][body][payload frames...] (see proto/gtrt.proto).
 * wire_decode works on plain byte slices, not sockets, so it can be unit
 * tested and fuzzed on its own; it never trusts its input: sizes are capped
 * before parsing, the schema version, role, sender id and type are checked,
 * and the body must parse as the message its type names. */
#ifndef GTRT_WIRE_H
#define GTRT_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "gtrt.pb-c.h"

#define WIRE_SCHEMA_VERSION 1u
#define WIRE_MAX_HEADER_BYTES 512
#define WIRE_MAX_FRAMES 64 /* header + body + payload frames */
#define WIRE_MAX_ID_LEN 64

typedef struct wire_slice {
    const uint8_t *data;
    size_t len;
} wire_slice;

/* Why a message was dropped; each reason has its own counter. */
typedef enum {
    WIRE_OK = 0,
    WIRE_REJ_FRAMES,      /* fewer than 2 or more than WIRE_MAX_FRAMES frames */
    WIRE_REJ_HEADER_SIZE, /* header frame empty or over WIRE_MAX_HEADER_BYTES */
    WIRE_REJ_HEADER,      /* header frame is not a Header protobuf */
    WIRE_REJ_VERSION,     /* schema_version missing or not ours */
    WIRE_REJ_SENDER,      /* role or sender id missing or malformed */
    WIRE_REJ_TYPE,        /* unknown message type */
    WIRE_REJ_BODY_SIZE,   /* body over the cap for its type */
    WIRE_REJ_BODY,        /* body does not parse as its type's message */
    WIRE_REJ_PAYLOAD,     /* payload frame count differs from the header's */
    WIRE_REJ_COUNT
} wire_reject;

const char *wire_reject_name(wire_reject r);

/* A decoded message. hdr and body are owned (wire_msg_clear frees them);
 * payload slices point into the caller's frames. */
typedef struct wire_msg {
    Gtrt__Header *hdr;
    uint32_t type;
    ProtobufCMessage *body;
    const wire_slice *payload;
    size_t npayload;
} wire_msg;

wire_reject wire_decode(const wire_slice *frames, size_t nframes, wire_msg *out);
void wire_msg_clear(wire_msg *m);

/* Descriptor of the body message for `type`, or NULL when unknown. */
const ProtobufCMessageDescriptor *wire_body_descriptor(uint32_t type);
/* Largest body accepted for `type` (0 when unknown), so a sender can refuse
 * to build a message its peer would drop. */
size_t wire_body_cap(uint32_t type);
/* Human name of a message type ("hello", ...), "unknown" when unknown. */
const char *wire_type_name(uint32_t type);
/* True for a valid sender id: 1..64 chars of [A-Za-z0-9._:@-]. */
int wire_id_valid(const char *id);

/* Encoded header and body, heap-allocated; wire_encoded_clear frees. */
typedef struct wire_encoded {
    uint8_t *hdr;
    size_t hdr_len;
    uint8_t *body;
    size_t body_len;
} wire_encoded;

/* Encode a message; body must be of the type's message (asserted).
 * Returns 0 or GTRT_ENOMEM. */
int wire_encode(uint32_t role, const char *sender_id, uint32_t type, uint64_t request_id,
                const ProtobufCMessage *body, size_t npayload, wire_encoded *out);
void wire_encoded_clear(wire_encoded *e);
/* Only the header (body left empty), for bodies packed ahead of time. */
int wire_encode_header(uint32_t role, const char *sender_id, uint32_t type, uint64_t request_id,
                       size_t npayload, wire_encoded *out);

#endif
