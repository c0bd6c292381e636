/* Small file-system helpers shared by the commands that write run
 * directories. */
#ifndef GTRT_FS_H
#define GTRT_FS_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* mkdir -p */
int fs_mkdirs(const char *path, err *e);
/* Read a whole file into a malloc'd buffer. */
int fs_read_file(const char *path, uint8_t **out, size_t *len, err *e);

#endif
