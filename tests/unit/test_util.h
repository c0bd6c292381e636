/* Helpers shared by the unit tests: failure-only assertions for loops over
 * many cases, and scratch directories. */
#ifndef GTRT_TEST_UTIL_H
#define GTRT_TEST_UTIL_H

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Criterion's --full-stats records every assertion, passed ones too, which
 * makes loops over thousands of cases slow: report only failures. */
#define CHECK(cond, ...)                                                                      \
    do {                                                                                      \
        if (!(cond))                                                                          \
            cr_expect(0, __VA_ARGS__);                                                        \
    } while (0)
#define REQUIRE(cond, ...)                                                                    \
    do {                                                                                      \
        if (!(cond))                                                                          \
            cr_assert(0, __VA_ARGS__);                                                        \
    } while (0)

/* A fresh directory under /tmp; free with rmtree. */
static inline char *tmpdir(void)
{
    static const char tmpl[] = "/tmp/gtrt_test_XXXXXX";
    char *d = malloc(sizeof tmpl);
    memcpy(d, tmpl, sizeof tmpl);
    cr_assert_not_null(mkdtemp(d));
    return d;
}

/* Remove a directory made by tmpdir (flat: files only) and free its name. */
static inline void rmtree(char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char p[4096];
    while (d && (de = readdir(d)))
        if (de->d_name[0] != '.') {
            snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
            unlink(p);
        }
    if (d)
        closedir(d);
    rmdir(dir);
    free(dir);
}

#endif
