/* Run configuration: INI files plus `--set section.key=value` overrides.
 *
 * Every key gtrt knows is declared once in the schema table
 * (config_schema.c) with its type, default, range and help; a file or an
 * override naming an unknown key, or a value of the wrong type or out of
 * range, is an error that names the file, line and key. Values are checked
 * when they are loaded, so getters cannot fail: asking for a key that is not
 * in the schema is a programmer error (assert). */
#ifndef GTRT_CONFIG_H
#define GTRT_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "common/err.h"

typedef enum { CFG_INT, CFG_DOUBLE, CFG_BOOL, CFG_STR } cfg_type;

typedef struct cfg_key {
    const char *section;
    const char *key;
    cfg_type type;
    const char *def;  /* default, in INI syntax */
    double min, max;  /* inclusive range for CFG_INT / CFG_DOUBLE */
    const char *help; /* one line, shown by `gtrt config --help-keys` */
} cfg_key;

/* The schema; terminated by an entry with section == NULL. */
extern const cfg_key config_schema[];

typedef struct config config;

/* A configuration holding every schema key at its default value. */
config *config_new(void);
void config_free(config *c);

/* Apply an INI file on top of the current values. */
int config_load_file(config *c, const char *path, err *e);
/* Apply INI text (for tests); `name` is used in error messages. */
int config_load_string(config *c, const char *name, const char *text, err *e);
/* Apply one override "section.key=value". */
int config_set(config *c, const char *assignment, err *e);

int64_t config_int(const config *c, const char *dotted_key);
double config_double(const config *c, const char *dotted_key);
bool config_bool(const config *c, const char *dotted_key);
const char *config_str(const config *c, const char *dotted_key);
/* Where a value came from: "default", "FILE:LINE" or "--set". */
const char *config_origin(const config *c, const char *dotted_key);

/* Write the effective configuration as INI, each key with its origin. */
int config_write(const config *c, FILE *f);
/* Write it to `path` atomically (temp file + rename). */
int config_write_file(const config *c, const char *path, err *e);

#endif
