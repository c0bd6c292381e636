/* TensorBoard event-file writer: CRC-32C, TFRecord framing and Event
 * protobufs (see tfevent.h). */
#include "common/tfevent.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tensorboard.pb-c.h"

/* ==== CRC-32C ==== */

/* Reflected Castagnoli polynomial 0x82F63B78, one entry per byte value. */
static const uint32_t tfevent_crc_table[256] = {
    0x00000000u, 0xf26b8303u, 0xe13b70f7u, 0x1350f3f4u, 0xc79a971fu, 0x35f1141cu,
    0x26a1e7e8u, 0xd4ca64ebu, 0x8ad958cfu, 0x78b2dbccu, 0x6be22838u, 0x9989ab3bu,
    0x4d43cfd0u, 0xbf284cd3u, 0xac78bf27u, 0x5e133c24u, 0x105ec76fu, 0xe235446cu,
    0xf165b798u, 0x030e349bu, 0xd7c45070u, 0x25afd373u, 0x36ff2087u, 0xc494a384u,
    0x9a879fa0u, 0x68ec1ca3u, 0x7bbcef57u, 0x89d76c54u, 0x5d1d08bfu, 0xaf768bbcu,
    0xbc267848u, 0x4e4dfb4bu, 0x20bd8edeu, 0xd2d60dddu, 0xc186fe29u, 0x33ed7d2au,
    0xe72719c1u, 0x154c9ac2u, 0x061c6936u, 0xf477ea35u, 0xaa64d611u, 0x580f5512u,
    0x4b5fa6e6u, 0xb93425e5u, 0x6dfe410eu, 0x9f95c20du, 0x8cc531f9u, 0x7eaeb2fau,
    0x30e349b1u, 0xc288cab2u, 0xd1d83946u, 0x23b3ba45u, 0xf779deaeu, 0x05125dadu,
    0x1642ae59u, 0xe4292d5au, 0xba3a117eu, 0x4851927du, 0x5b016189u, 0xa96ae28au,
    0x7da08661u, 0x8fcb0562u, 0x9c9bf696u, 0x6ef07595u, 0x417b1dbcu, 0xb3109ebfu,
    0xa0406d4bu, 0x522bee48u, 0x86e18aa3u, 0x748a09a0u, 0x67dafa54u, 0x95b17957u,
    0xcba24573u, 0x39c9c670u, 0x2a993584u, 0xd8f2b687u, 0x0c38d26cu, 0xfe53516fu,
    0xed03a29bu, 0x1f682198u, 0x5125dad3u, 0xa34e59d0u, 0xb01eaa24u, 0x42752927u,
    0x96bf4dccu, 0x64d4cecfu, 0x77843d3bu, 0x85efbe38u, 0xdbfc821cu, 0x2997011fu,
    0x3ac7f2ebu, 0xc8ac71e8u, 0x1c661503u, 0xee0d9600u, 0xfd5d65f4u, 0x0f36e6f7u,
    0x61c69362u, 0x93ad1061u, 0x80fde395u, 0x72966096u, 0xa65c047du, 0x5437877eu,
    0x4767748au, 0xb50cf789u, 0xeb1fcbadu, 0x197448aeu, 0x0a24bb5au, 0xf84f3859u,
    0x2c855cb2u, 0xdeeedfb1u, 0xcdbe2c45u, 0x3fd5af46u, 0x7198540du, 0x83f3d70eu,
    0x90a324fau, 0x62c8a7f9u, 0xb602c312u, 0x44694011u, 0x5739b3e5u, 0xa55230e6u,
    0xfb410cc2u, 0x092a8fc1u, 0x1a7a7c35u, 0xe811ff36u, 0x3cdb9bddu, 0xceb018deu,
    0xdde0eb2au, 0x2f8b6829u, 0x82f63b78u, 0x709db87bu, 0x63cd4b8fu, 0x91a6c88cu,
    0x456cac67u, 0xb7072f64u, 0xa457dc90u, 0x563c5f93u, 0x082f63b7u, 0xfa44e0b4u,
    0xe9141340u, 0x1b7f9043u, 0xcfb5f4a8u, 0x3dde77abu, 0x2e8e845fu, 0xdce5075cu,
    0x92a8fc17u, 0x60c37f14u, 0x73938ce0u, 0x81f80fe3u, 0x55326b08u, 0xa759e80bu,
    0xb4091bffu, 0x466298fcu, 0x1871a4d8u, 0xea1a27dbu, 0xf94ad42fu, 0x0b21572cu,
    0xdfeb33c7u, 0x2d80b0c4u, 0x3ed04330u, 0xccbbc033u, 0xa24bb5a6u, 0x502036a5u,
    0x4370c551u, 0xb11b4652u, 0x65d122b9u, 0x97baa1bau, 0x84ea524eu, 0x7681d14du,
    0x2892ed69u, 0xdaf96e6au, 0xc9a99d9eu, 0x3bc21e9du, 0xef087a76u, 0x1d63f975u,
    0x0e330a81u, 0xfc588982u, 0xb21572c9u, 0x407ef1cau, 0x532e023eu, 0xa145813du,
    0x758fe5d6u, 0x87e466d5u, 0x94b49521u, 0x66df1622u, 0x38cc2a06u, 0xcaa7a905u,
    0xd9f75af1u, 0x2b9cd9f2u, 0xff56bd19u, 0x0d3d3e1au, 0x1e6dcdeeu, 0xec064eedu,
    0xc38d26c4u, 0x31e6a5c7u, 0x22b65633u, 0xd0ddd530u, 0x0417b1dbu, 0xf67c32d8u,
    0xe52cc12cu, 0x1747422fu, 0x49547e0bu, 0xbb3ffd08u, 0xa86f0efcu, 0x5a048dffu,
    0x8ecee914u, 0x7ca56a17u, 0x6ff599e3u, 0x9d9e1ae0u, 0xd3d3e1abu, 0x21b862a8u,
    0x32e8915cu, 0xc083125fu, 0x144976b4u, 0xe622f5b7u, 0xf5720643u, 0x07198540u,
    0x590ab964u, 0xab613a67u, 0xb831c993u, 0x4a5a4a90u, 0x9e902e7bu, 0x6cfbad78u,
    0x7fab5e8cu, 0x8dc0dd8fu, 0xe330a81au, 0x115b2b19u, 0x020bd8edu, 0xf0605beeu,
    0x24aa3f05u, 0xd6c1bc06u, 0xc5914ff2u, 0x37faccf1u, 0x69e9f0d5u, 0x9b8273d6u,
    0x88d28022u, 0x7ab90321u, 0xae7367cau, 0x5c18e4c9u, 0x4f48173du, 0xbd23943eu,
    0xf36e6f75u, 0x0105ec76u, 0x12551f82u, 0xe03e9c81u, 0x34f4f86au, 0xc69f7b69u,
    0xd5cf889du, 0x27a40b9eu, 0x79b737bau, 0x8bdcb4b9u, 0x988c474du, 0x6ae7c44eu,
    0xbe2da0a5u, 0x4c4623a6u, 0x5f16d052u, 0xad7d5351u,
};

uint32_t tfevent_crc32c_extend(uint32_t crc, const void *data, size_t n)
{
    const uint8_t *p = data;
    uint32_t c = ~crc;
    for (size_t i = 0; i < n; i++)
        c = tfevent_crc_table[(c ^ p[i]) & 0xffu] ^ (c >> 8);
    return ~c;
}

uint32_t tfevent_crc32c(const void *data, size_t n) { return tfevent_crc32c_extend(0, data, n); }

uint32_t tfevent_crc_mask(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

uint32_t tfevent_crc_unmask(uint32_t masked)
{
    uint32_t rot = masked - 0xa282ead8u;
    return (rot >> 17) | (rot << 15);
}

/* ==== TFRecord framing ==== */

static void tfevent_put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t tfevent_get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void tfevent_record_head(uint8_t head[TFEVENT_RECORD_HEAD], uint64_t len)
{
    tfevent_put_le32(head, (uint32_t)len);
    tfevent_put_le32(head + 4, (uint32_t)(len >> 32));
    tfevent_put_le32(head + 8, tfevent_crc_mask(tfevent_crc32c(head, 8)));
}

void tfevent_record_foot(uint8_t foot[TFEVENT_RECORD_FOOT], const void *data, size_t len)
{
    tfevent_put_le32(foot, tfevent_crc_mask(tfevent_crc32c(data, len)));
}

int tfevent_record_read(FILE *f, size_t max_len, uint8_t **data, size_t *len, err *e)
{
    *data = NULL;
    *len = 0;
    uint8_t head[TFEVENT_RECORD_HEAD], foot[TFEVENT_RECORD_FOOT];
    size_t got = fread(head, 1, sizeof head, f);
    if (got == 0 && feof(f))
        return 1;
    if (got != sizeof head)
        return err_set(e, GTRT_EPARSE, "truncated record header (%zu of 12 bytes)", got);
    if (tfevent_get_le32(head + 8) != tfevent_crc_mask(tfevent_crc32c(head, 8)))
        return err_set(e, GTRT_EPARSE, "record length CRC mismatch");
    uint64_t n = (uint64_t)tfevent_get_le32(head) | (uint64_t)tfevent_get_le32(head + 4) << 32;
    if (n > max_len)
        return err_set(e, GTRT_EPARSE, "record of %llu bytes exceeds the limit of %zu",
                       (unsigned long long)n, max_len);
    uint8_t *buf = malloc(n ? (size_t)n : 1);
    if (!buf)
        return err_set(e, GTRT_ENOMEM, "out of memory for a %llu-byte record",
                       (unsigned long long)n);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n || fread(foot, 1, sizeof foot, f) != sizeof foot) {
        free(buf);
        return err_set(e, GTRT_EPARSE, "truncated record of %llu bytes", (unsigned long long)n);
    }
    if (tfevent_get_le32(foot) != tfevent_crc_mask(tfevent_crc32c(buf, (size_t)n))) {
        free(buf);
        return err_set(e, GTRT_EPARSE, "record data CRC mismatch");
    }
    *data = buf;
    *len = (size_t)n;
    return 0;
}

/* ==== writer ==== */

struct tfevent_writer {
    int fd;
    char path[4096];
};

/* Host name made safe for a file name: TensorBoard only needs "tfevents"
 * in the name, but a '/' would make it a path. */
static void tfevent_host(char *out, size_t cap)
{
    if (gethostname(out, cap) != 0 || !out[0])
        snprintf(out, cap, "localhost");
    out[cap - 1] = 0;
    for (char *p = out; *p; p++)
        if (*p == '/' || *p == ' ')
            *p = '_';
}

static int tfevent_create(tfevent_writer *w, const char *dir, double wall_time, err *e)
{
    char host[256];
    tfevent_host(host, sizeof host);
    long secs = (long)wall_time;
    for (int attempt = 0; attempt < 100; attempt++) {
        int n;
        if (attempt == 0)
            n = snprintf(w->path, sizeof w->path, "%s/events.out.tfevents.%ld.%s", dir, secs, host);
        else
            n = snprintf(w->path, sizeof w->path, "%s/events.out.tfevents.%ld.%s.%ld.%d", dir, secs,
                         host, (long)getpid(), attempt);
        if (n < 0 || (size_t)n >= sizeof w->path)
            return err_set(e, GTRT_ERANGE, "event file path in '%s' is too long", dir);
        w->fd = open(w->path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0644);
        if (w->fd >= 0)
            return 0;
        if (errno != EEXIST)
            return err_set(e, GTRT_EIO, "creating %s: %s", w->path, strerror(errno));
    }
    return err_set(e, GTRT_EIO, "no free event file name in %s", dir);
}

static int tfevent_write_all(tfevent_writer *w, const uint8_t *p, size_t n, err *e)
{
    while (n) {
        ssize_t k = write(w->fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return err_set(e, GTRT_EIO, "writing %s: %s", w->path, k < 0 ? strerror(errno) : "short write");
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Frame and append one Event: head, data and foot in one buffer, one write. */
static int tfevent_write_event(tfevent_writer *w, const Tensorboard__Event *ev, err *e)
{
    size_t n = tensorboard__event__get_packed_size(ev);
    uint8_t *buf = malloc(TFEVENT_RECORD_HEAD + n + TFEVENT_RECORD_FOOT);
    if (!buf)
        return err_set(e, GTRT_ENOMEM, "out of memory for a %zu-byte event", n);
    uint8_t *data = buf + TFEVENT_RECORD_HEAD;
    tensorboard__event__pack(ev, data);
    tfevent_record_head(buf, n);
    tfevent_record_foot(data + n, data, n);
    int rc = tfevent_write_all(w, buf, TFEVENT_RECORD_HEAD + n + TFEVENT_RECORD_FOOT, e);
    free(buf);
    return rc;
}

int tfevent_writer_open(const char *dir, double wall_time, tfevent_writer **out, err *e)
{
    *out = NULL;
    tfevent_writer *w = calloc(1, sizeof *w);
    if (!w)
        return err_set(e, GTRT_ENOMEM, "out of memory");
    w->fd = -1;
    int rc = tfevent_create(w, dir, wall_time, e);
    if (rc == 0) {
        Tensorboard__Event ev = TENSORBOARD__EVENT__INIT;
        ev.has_wall_time = 1;
        ev.wall_time = wall_time;
        ev.file_version = (char *)"brain.Event:2";
        rc = tfevent_write_event(w, &ev, e);
    }
    if (rc) {
        tfevent_writer_free(&w);
        return rc;
    }
    *out = w;
    return 0;
}

const char *tfevent_writer_path(const tfevent_writer *w) { return w->path; }

int tfevent_write_scalars(tfevent_writer *w, double wall_time, int64_t step,
                          const tfevent_scalar *v, size_t n, err *e)
{
    Tensorboard__Summary__Value *vals = calloc(n ? n : 1, sizeof *vals);
    Tensorboard__Summary__Value **ptrs = calloc(n ? n : 1, sizeof *ptrs);
    if (!vals || !ptrs) {
        free(vals);
        free(ptrs);
        return err_set(e, GTRT_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        tensorboard__summary__value__init(&vals[i]);
        vals[i].tag = (char *)v[i].tag;
        /* TensorBoard tells value kinds apart by presence, so a 0.0 must
         * still be on the wire. */
        vals[i].has_simple_value = 1;
        vals[i].simple_value = v[i].value;
        ptrs[i] = &vals[i];
    }
    Tensorboard__Summary sum = TENSORBOARD__SUMMARY__INIT;
    sum.n_value = n;
    sum.value = ptrs;
    Tensorboard__Event ev = TENSORBOARD__EVENT__INIT;
    ev.has_wall_time = ev.has_step = 1;
    ev.wall_time = wall_time;
    ev.step = step;
    ev.summary = &sum;
    int rc = tfevent_write_event(w, &ev, e);
    free(vals);
    free(ptrs);
    return rc;
}

void tfevent_writer_free(tfevent_writer **pw)
{
    tfevent_writer *w = pw ? *pw : NULL;
    if (!w)
        return;
    if (w->fd >= 0)
        close(w->fd);
    free(w);
    *pw = NULL;
}
