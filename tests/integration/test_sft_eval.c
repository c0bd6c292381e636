/* `gtrt sft` then `gtrt eval` through the real binary on a small budget:
 * the checkpoint, its metadata and configuration are written, eval reads
 * it back (JSON output, deterministic for a seed) and refuses it for an
 * env with another picture. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/safetensors.h"
#include "common/tokenizer.h"

static const char *test_bin(void)
{
    const char *b = getenv("GTRT_BIN");
    return b && *b ? b : GTRT_BIN_PATH;
}

/* Run a shell command; stdout into out (may be NULL); returns the exit
 * status. */
static int test_run(const char *cmd, char *out, size_t cap)
{
    FILE *p = popen(cmd, "r");
    cr_assert(p, "popen %s", cmd);
    size_t n = 0;
    char buf[4096];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, p)) > 0)
        if (out && n + got < cap) {
            memcpy(out + n, buf, got);
            n += got;
        }
    if (out)
        out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(sft_eval, round_trip_through_the_binary, .timeout = 300)
{
    char dir[] = "/tmp/gtrt-sft-eval-XXXXXX";
    cr_assert(mkdtemp(dir));
    char cmd[2048], out[8192], ckpt[256], ini[256];
    snprintf(ckpt, sizeof ckpt, "%s/nl.safetensors", dir);
    snprintf(ini, sizeof ini, "%s/nl.ini", dir);
    snprintf(cmd, sizeof cmd,
             "%s sft --env numberline --preset tiny --steps 30 --batch 16 --samples 256 "
             "--lr 3e-3 --seed 2 --eval-episodes 8 --set eval.batch=8 -o %s 2>%s/sft.log",
             test_bin(), ckpt, dir);
    cr_assert_eq(test_run(cmd, out, sizeof out), 0, "%s\n%s", cmd, out);
    cr_assert(strstr(out, "success"), "%s", out);
    cr_assert_eq(access(ini, R_OK), 0, "no %s", ini);

    st_file *f;
    err e = {0};
    cr_assert_eq(st_open(ckpt, &f, &e), 0, "%s", e.msg);
    char hash[32];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)tok_vocab_hash());
    cr_assert_str_eq(st_meta(f, "vocab_hash"), hash);
    cr_assert_str_eq(st_meta(f, "env"), "numberline");
    cr_assert_str_eq(st_meta(f, "sft_steps"), "30");
    cr_assert_str_eq(st_meta(f, "policy_version"), "0");
    cr_assert(st_meta(f, "sft_success_rate"));
    st_close(f);

    /* The configuration written next to it names the values used. */
    FILE *fi = fopen(ini, "r");
    cr_assert(fi);
    size_t n = fread(out, 1, sizeof out - 1, fi);
    out[n] = 0;
    fclose(fi);
    cr_assert(strstr(out, "steps = 30"), "%s", out);

    /* eval, twice with the same seed: the same JSON figures. */
    char first[4096];
    snprintf(cmd, sizeof cmd, "%s eval %s --episodes 12 --seed 3 --set eval.batch=6 --json",
             test_bin(), ckpt);
    cr_assert_eq(test_run(cmd, first, sizeof first), 0, "%s", cmd);
    cr_assert_eq(test_run(cmd, out, sizeof out), 0, "%s", cmd);
    cJSON *a = cJSON_Parse(first), *b = cJSON_Parse(out);
    cr_assert(a && b, "%s", first);
    cr_assert_str_eq(cJSON_GetObjectItem(a, "env")->valuestring, "numberline");
    cr_assert_eq(cJSON_GetObjectItem(a, "episodes")->valueint, 12);
    double sr = cJSON_GetObjectItem(a, "success_rate")->valuedouble;
    cr_assert(sr >= 0 && sr <= 1);
    cr_assert(cJSON_GetObjectItem(a, "success_ci_low")->valuedouble <= sr);
    cr_assert(cJSON_GetObjectItem(a, "format_valid"));
    cr_assert(cJSON_GetObjectItem(a, "mean_length")->valuedouble >= 1);
    const char *keys[] = {"wins", "turns", "mean_return", "format_valid"};
    for (int i = 0; i < 4; i++)
        cr_assert_float_eq(cJSON_GetObjectItem(a, keys[i])->valuedouble,
                           cJSON_GetObjectItem(b, keys[i])->valuedouble, 1e-12, "%s", keys[i]);
    cJSON_Delete(a);
    cJSON_Delete(b);

    /* Another env's picture: refused with a clear message, exit 2. */
    snprintf(cmd, sizeof cmd, "%s eval --checkpoint %s --env points24 --episodes 4 2>&1",
             test_bin(), ckpt);
    cr_assert_eq(test_run(cmd, out, sizeof out), 2, "%s", out);
    cr_assert(strstr(out, "refusing"), "%s", out);
    cr_assert(strstr(out, "images"), "%s", out);

    /* Bad usage. */
    snprintf(cmd, sizeof cmd, "%s sft --env numberline 2>/dev/null", test_bin());
    cr_assert_eq(test_run(cmd, NULL, 0), 2, "sft without -o");
    snprintf(cmd, sizeof cmd, "%s eval 2>/dev/null", test_bin());
    cr_assert_eq(test_run(cmd, NULL, 0), 2, "eval without a checkpoint");

    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    test_run(cmd, NULL, 0);
}
