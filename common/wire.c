/* Envelope encode/decode (see wire.h). The per-type table is the one place
 * that says which body each message type carries and how big it may be. */
#include "common/wire.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/err.h"

typedef struct wire_type_info {
    uint32_t type;
    const char *name;
    const ProtobufCMessageDescriptor *desc;
    size_t max_body; /* bytes */
} wire_type_info;

static const wire_type_info wire_types[] = {
    {GTRT__MSG_TYPE__MSG_HELLO, "hello", &gtrt__hello__descriptor, 16 << 10},
    {GTRT__MSG_TYPE__MSG_WELCOME, "welcome", &gtrt__welcome__descriptor, 256 << 10},
    {GTRT__MSG_TYPE__MSG_HEARTBEAT, "heartbeat", &gtrt__heartbeat__descriptor, 256 << 10},
    {GTRT__MSG_TYPE__MSG_STATUS_REQUEST, "status_request", &gtrt__status_request__descriptor, 1 << 10},
    {GTRT__MSG_TYPE__MSG_STATUS_REPLY, "status_reply", &gtrt__status_reply__descriptor, 4 << 20},
    {GTRT__MSG_TYPE__MSG_ERROR, "error", &gtrt__error__descriptor, 16 << 10},
    {GTRT__MSG_TYPE__MSG_BYE, "bye", &gtrt__bye__descriptor, 4 << 10},
    {GTRT__MSG_TYPE__MSG_TRAJ_BATCH, "traj_batch", &gtrt__traj_batch__descriptor, 8 << 20},
    {GTRT__MSG_TYPE__MSG_TRAJ_ACK, "traj_ack", &gtrt__traj_ack__descriptor, 64 << 10},
    {GTRT__MSG_TYPE__MSG_CKPT_ANNOUNCE, "ckpt_announce", &gtrt__ckpt_announce__descriptor, 4 << 10},
    {GTRT__MSG_TYPE__MSG_CKPT_CHUNK_REQUEST, "ckpt_chunk_request",
     &gtrt__ckpt_chunk_request__descriptor, 1 << 10},
    {GTRT__MSG_TYPE__MSG_CKPT_CHUNK, "ckpt_chunk", &gtrt__ckpt_chunk__descriptor, 1 << 10},
    {GTRT__MSG_TYPE__MSG_LOGITS_REQUEST, "logits_request", &gtrt__logits_request__descriptor, 1 << 20},
    {GTRT__MSG_TYPE__MSG_LOGITS_REPLY, "logits_reply", &gtrt__logits_reply__descriptor, 1 << 20},
    {GTRT__MSG_TYPE__MSG_GENERATE_REQUEST, "generate_request", &gtrt__generate_request__descriptor,
     1 << 20},
    {GTRT__MSG_TYPE__MSG_GENERATE_REPLY, "generate_reply", &gtrt__generate_reply__descriptor, 1 << 20},
    {GTRT__MSG_TYPE__MSG_ENV_RESET, "env_reset", &gtrt__env_reset__descriptor, 4 << 10},
    {GTRT__MSG_TYPE__MSG_ENV_STEP, "env_step", &gtrt__env_step__descriptor, 1 << 10},
    {GTRT__MSG_TYPE__MSG_ENV_OBS, "env_obs", &gtrt__env_obs__descriptor, 64 << 10},
};

static const wire_type_info *wire_type_find(uint32_t type)
{
    for (size_t i = 0; i < sizeof wire_types / sizeof wire_types[0]; i++)
        if (wire_types[i].type == type)
            return &wire_types[i];
    return NULL;
}

const ProtobufCMessageDescriptor *wire_body_descriptor(uint32_t type)
{
    const wire_type_info *t = wire_type_find(type);
    return t ? t->desc : NULL;
}

size_t wire_body_cap(uint32_t type)
{
    const wire_type_info *t = wire_type_find(type);
    return t ? t->max_body : 0;
}

const char *wire_type_name(uint32_t type)
{
    const wire_type_info *t = wire_type_find(type);
    return t ? t->name : "unknown";
}

const char *wire_reject_name(wire_reject r)
{
    static const char *names[WIRE_REJ_COUNT] = {
        "ok", "bad_frames", "bad_header_size", "bad_header", "bad_version", "bad_sender",
        "unknown_type", "oversized_body", "bad_body", "bad_payload",
    };
    return (unsigned)r < WIRE_REJ_COUNT ? names[r] : "unknown";
}

int wire_id_valid(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > WIRE_MAX_ID_LEN)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '@' || c == '-'))
            return 0;
    }
    return 1;
}

/* ==== decode ==== */

static wire_reject wire_check_header(const Gtrt__Header *h)
{
    if (!h->has_schema_version || h->schema_version != WIRE_SCHEMA_VERSION)
        return WIRE_REJ_VERSION;
    if (!h->has_role || h->role <= GTRT__ROLE__ROLE_UNKNOWN || h->role > GTRT__ROLE__ROLE_CLIENT)
        return WIRE_REJ_SENDER;
    if (!wire_id_valid(h->sender_id))
        return WIRE_REJ_SENDER;
    if (!h->has_type || !wire_type_find((uint32_t)h->type))
        return WIRE_REJ_TYPE;
    return WIRE_OK;
}

wire_reject wire_decode(const wire_slice *frames, size_t nframes, wire_msg *out)
{
    memset(out, 0, sizeof *out);
    if (nframes < 2 || nframes > WIRE_MAX_FRAMES)
        return WIRE_REJ_FRAMES;
    if (frames[0].len == 0 || frames[0].len > WIRE_MAX_HEADER_BYTES)
        return WIRE_REJ_HEADER_SIZE;
    Gtrt__Header *h = gtrt__header__unpack(NULL, frames[0].len, frames[0].data);
    if (!h)
        return WIRE_REJ_HEADER;
    wire_reject r = wire_check_header(h);
    const wire_type_info *t = r == WIRE_OK ? wire_type_find((uint32_t)h->type) : NULL;
    size_t npayload = nframes - 2;
    if (r == WIRE_OK && frames[1].len > t->max_body)
        r = WIRE_REJ_BODY_SIZE;
    if (r == WIRE_OK && (h->has_payload_frames ? h->payload_frames : 0) != npayload)
        r = WIRE_REJ_PAYLOAD;
    if (r != WIRE_OK) {
        gtrt__header__free_unpacked(h, NULL);
        return r;
    }
    /* protobuf-c requires a non-NULL pointer even for zero bytes. */
    static const uint8_t empty[1] = {0};
    const uint8_t *body_data = frames[1].len ? frames[1].data : empty;
    ProtobufCMessage *body = protobuf_c_message_unpack(t->desc, NULL, frames[1].len, body_data);
    if (!body) {
        gtrt__header__free_unpacked(h, NULL);
        return WIRE_REJ_BODY;
    }
    out->hdr = h;
    out->type = (uint32_t)h->type;
    out->body = body;
    out->payload = npayload ? &frames[2] : NULL;
    out->npayload = npayload;
    return WIRE_OK;
}

void wire_msg_clear(wire_msg *m)
{
    if (m->hdr)
        gtrt__header__free_unpacked(m->hdr, NULL);
    if (m->body)
        protobuf_c_message_free_unpacked(m->body, NULL);
    memset(m, 0, sizeof *m);
}

/* ==== encode ==== */

int wire_encode_header(uint32_t role, const char *sender_id, uint32_t type, uint64_t request_id,
                       size_t npayload, wire_encoded *out)
{
    assert(wire_type_find(type));
    assert(npayload + 2 <= WIRE_MAX_FRAMES);
    memset(out, 0, sizeof *out);
    Gtrt__Header h = GTRT__HEADER__INIT;
    h.has_schema_version = 1;
    h.schema_version = WIRE_SCHEMA_VERSION;
    h.has_role = 1;
    h.role = (Gtrt__Role)role;
    h.sender_id = (char *)sender_id;
    h.has_type = 1;
    h.type = (Gtrt__MsgType)type;
    if (request_id) {
        h.has_request_id = 1;
        h.request_id = request_id;
    }
    h.has_sent_unix_ms = 1;
    h.sent_unix_ms = clock_unix_ms();
    if (npayload) {
        h.has_payload_frames = 1;
        h.payload_frames = (uint32_t)npayload;
    }
    out->hdr_len = gtrt__header__get_packed_size(&h);
    out->hdr = malloc(out->hdr_len ? out->hdr_len : 1);
    if (!out->hdr)
        return GTRT_ENOMEM;
    gtrt__header__pack(&h, out->hdr);
    return 0;
}

int wire_encode(uint32_t role, const char *sender_id, uint32_t type, uint64_t request_id,
                const ProtobufCMessage *body, size_t npayload, wire_encoded *out)
{
    const wire_type_info *t = wire_type_find(type);
    assert(t && body && body->descriptor == t->desc);
    (void)t;
    int rc = wire_encode_header(role, sender_id, type, request_id, npayload, out);
    if (rc)
        return rc;
    out->body_len = protobuf_c_message_get_packed_size(body);
    out->body = malloc(out->body_len ? out->body_len : 1);
    if (!out->body) {
        wire_encoded_clear(out);
        return GTRT_ENOMEM;
    }
    protobuf_c_message_pack(body, out->body);
    return 0;
}

void wire_encoded_clear(wire_encoded *e)
{
    free(e->hdr);
    free(e->body);
    memset(e, 0, sizeof *e);
}
