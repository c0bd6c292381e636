/* Error codes and messages (see err.h). */
#include "common/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int err_set(err *e, int code, const char *fmt, ...)
{
    if (!e)
        return code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    e->code = code;
    return code;
}

int err_prefix(err *e, const char *fmt, ...)
{
    if (!e)
        return 0;
    char head[256], old[sizeof e->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof old);
    size_t hl = strlen(head);
    if (hl > sizeof e->msg - 3)
        hl = sizeof e->msg - 3;
    memcpy(e->msg, head, hl);
    memcpy(e->msg + hl, ": ", 2);
    size_t room = sizeof e->msg - hl - 3, ol = strlen(old);
    if (ol > room)
        ol = room;
    memcpy(e->msg + hl + 2, old, ol);
    e->msg[hl + 2 + ol] = 0;
    return e->code;
}

const char *err_str(int code)
{
    switch (code) {
    case GTRT_OK: return "ok";
    case GTRT_EINVAL: return "invalid argument";
    case GTRT_ENOMEM: return "out of memory";
    case GTRT_EIO: return "I/O error";
    case GTRT_ECONFIG: return "configuration error";
    case GTRT_EPARSE: return "parse error";
    case GTRT_ENET: return "network error";
    case GTRT_ETIMEOUT: return "timed out";
    case GTRT_EPROTO: return "protocol error";
    case GTRT_ERANGE: return "out of range";
    case GTRT_ENOTFOUND: return "not found";
    case GTRT_EVERSION: return "version mismatch";
    case GTRT_ESTATE: return "wrong state";
    default: return "unknown error";
    }
}
