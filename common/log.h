/* Human log lines on stderr: time, level, role/id, message.
 *
 * The logger is process-wide (one role and id per process), set once at
 * start-up by log_init. log_ratelimit keeps a flood of bad network messages
 * from flooding the log as well. */
#ifndef GTRT_LOG_H
#define GTRT_LOG_H

#include <stdbool.h>
#include <stdint.h>

typedef enum { LOG_LVL_DEBUG, LOG_LVL_INFO, LOG_LVL_WARN, LOG_LVL_ERROR } log_level;

void log_init(const char *role, const char *id);
void log_set_level(log_level lvl);
log_level log_get_level(void);
/* "debug", "info", "warn", "error" -> level; GTRT_EINVAL when unknown. */
int log_level_parse(const char *s, log_level *out);
void log_write(log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_write(LOG_LVL_DEBUG, __VA_ARGS__)
#define log_info(...) log_write(LOG_LVL_INFO, __VA_ARGS__)
#define log_warn(...) log_write(LOG_LVL_WARN, __VA_ARGS__)
#define log_error(...) log_write(LOG_LVL_ERROR, __VA_ARGS__)

/* At most `burst` events per `window_ms`; the rest are counted. */
typedef struct log_ratelimit {
    uint32_t burst, window_ms;
    uint64_t window_start_ms;
    uint32_t used;
    uint64_t suppressed;
} log_ratelimit;

void log_ratelimit_init(log_ratelimit *rl, uint32_t burst, uint32_t window_ms);
/* True when an event at `now_ms` may be logged. When a new window opens
 * after suppressed events, *suppressed_out receives how many were hidden
 * (so the caller can say so), else 0. */
bool log_ratelimit_allow(log_ratelimit *rl, uint64_t now_ms, uint64_t *suppressed_out);

#endif
