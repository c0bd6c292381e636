/* A growable text buffer for building documents (Prometheus text, SVG,
 * JSON) with printf. Out of memory is sticky: later appends do nothing and
 * the owner checks `oom` once at the end. */
#ifndef GTRT_STRBUF_H
#define GTRT_STRBUF_H

#include <stddef.h>

typedef struct strbuf {
    char *p; /* owned, NUL-terminated once anything was appended */
    size_t len, cap;
    int oom;
} strbuf;

void strbuf_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
