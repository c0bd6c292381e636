/* Error codes and error messages.
 *
 * Functions that can fail return 0 or a negative GTRT_E* code and, when given
 * a non-NULL `err *`, write a human message into it that the caller can print
 * as is. Programmer errors are asserts, not error codes. */
#ifndef GTRT_ERR_H
#define GTRT_ERR_H

#include <stddef.h>

enum {
    GTRT_OK = 0,
    GTRT_EINVAL = -1,   /* bad argument or bad input data */
    GTRT_ENOMEM = -2,   /* allocation failed */
    GTRT_EIO = -3,      /* file system or OS error */
    GTRT_ECONFIG = -4,  /* configuration file or override is wrong */
    GTRT_EPARSE = -5,   /* malformed data (JSON, protobuf, safetensors ...) */
    GTRT_ENET = -6,     /* ZeroMQ or socket failure */
    GTRT_ETIMEOUT = -7, /* peer did not answer in time */
    GTRT_EPROTO = -8,   /* peer spoke a wrong or unknown protocol */
    GTRT_ERANGE = -9,   /* value outside its allowed range / size limit */
    GTRT_ENOTFOUND = -10,
    GTRT_EVERSION = -11, /* schema or format version mismatch */
    GTRT_ESTATE = -12,   /* operation not valid in the current state */
};

typedef struct err {
    int code;
    char msg[512];
} err;

/* Record `code` and a printf-style message in `e` (which may be NULL) and
 * return `code`, so callers can write `return err_set(e, GTRT_EIO, ...)`. */
int err_set(err *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefix the message already in `e` with more context ("loading x: ..."). */
int err_prefix(err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Short fixed name of a code, e.g. "config error". Never NULL. */
const char *err_str(int code);

#endif
