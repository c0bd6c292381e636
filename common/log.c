/* Logging to stderr (see log.h). The role/id/level are process-wide by
 * design: one process is one service. */
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/err.h"

static struct {
    char role[16];
    char id[64];
    log_level level;
} log_state = {"gtrt", "", LOG_LVL_INFO};

void log_init(const char *role, const char *id)
{
    snprintf(log_state.role, sizeof log_state.role, "%s", role ? role : "gtrt");
    snprintf(log_state.id, sizeof log_state.id, "%s", id ? id : "");
}

void log_set_level(log_level lvl) { log_state.level = lvl; }
log_level log_get_level(void) { return log_state.level; }

int log_level_parse(const char *s, log_level *out)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++)
        if (strcasecmp(s, names[i]) == 0) {
            *out = (log_level)i;
            return 0;
        }
    return GTRT_EINVAL;
}

void log_write(log_level lvl, const char *fmt, ...)
{
    static const char *tags[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};
    if (lvl < log_state.level)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char line[2048];
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s%s%s: ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, tags[lvl], log_state.role,
                     log_state.id[0] ? "/" : "", log_state.id);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof line)
        vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    /* One fputs per line keeps lines whole when processes share a terminal. */
    size_t len = strlen(line);
    if (len + 1 < sizeof line) {
        line[len] = '\n';
        line[len + 1] = 0;
    }
    fputs(line, stderr);
}

void log_ratelimit_init(log_ratelimit *rl, uint32_t burst, uint32_t window_ms)
{
    memset(rl, 0, sizeof *rl);
    rl->burst = burst;
    rl->window_ms = window_ms;
}

bool log_ratelimit_allow(log_ratelimit *rl, uint64_t now_ms, uint64_t *suppressed_out)
{
    if (suppressed_out)
        *suppressed_out = 0;
    if (rl->used == 0 || now_ms - rl->window_start_ms >= rl->window_ms) {
        if (suppressed_out)
            *suppressed_out = rl->suppressed;
        rl->window_start_ms = now_ms;
        rl->used = 0;
        rl->suppressed = 0;
    }
    if (rl->used < rl->burst) {
        rl->used++;
        return true;
    }
    rl->suppressed++;
    return false;
}
