/* `gtrt keygen`: write CURVE key pairs for common/security.h. A secret key
 * file is created with O_EXCL and mode 0600, so it is never readable by
 * anyone else, not even for a moment, and never replaces an existing file. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "common/cli.h"
#include "common/fs.h"
#include "common/security.h"

int keygen_main(int argc, char **argv);

#define KEYGEN_MAX_NAMES 256

/* A name becomes a file name: letters, digits, '.', '_', '-'; no leading
 * dot (no hidden files, no "..") and at most 64 characters. */
static bool keygen_name_ok(const char *n)
{
    size_t len = strlen(n);
    return len >= 1 && len <= 64 && n[0] != '.' &&
           strspn(n, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == len;
}

/* Create `path` holding `text`; refuse an existing file. */
static int keygen_write(const char *path, const char *text, mode_t mode, err *e)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return errno == EEXIST
                   ? err_set(e, GTRT_EIO, "%s already exists: refusing to overwrite it", path)
                   : err_set(e, GTRT_EIO, "%s: %s", path, strerror(errno));
    size_t len = strlen(text), done = 0;
    while (done < len) {
        ssize_t n = write(fd, text + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        done += (size_t)n;
    }
    int ok = done == len && fsync(fd) == 0;
    ok &= close(fd) == 0;
    if (!ok) {
        int rc = err_set(e, GTRT_EIO, "%s: cannot write: %s", path, strerror(errno));
        unlink(path);
        return rc;
    }
    return 0;
}

/* NAME.key (pair, 0600) then NAME.pub (public key, one line). */
static int keygen_one(const char *dir, const char *name, err *e)
{
    char pub[SECURITY_Z85_LEN + 1], secret[SECURITY_Z85_LEN + 1];
    if (zmq_curve_keypair(pub, secret))
        return err_set(e, GTRT_ENET, "zmq_curve_keypair: %s (libzmq without CURVE?)",
                       zmq_strerror(zmq_errno()));
    char keypath[4096], pubpath[4096], text[512];
    snprintf(keypath, sizeof keypath, "%s/%s.key", dir, name);
    snprintf(pubpath, sizeof pubpath, "%s/%s.pub", dir, name);
    snprintf(text, sizeof text,
             "# gtrt CURVE key pair '%s' (gtrt keygen). Secret: whoever holds this file\n"
             "# can connect as '%s'. Give the .pub to the servers' security.allow instead.\n"
             "public-key = %s\nsecret-key = %s\n",
             name, name, pub, secret);
    int rc = keygen_write(keypath, text, 0600, e);
    explicit_bzero(text, sizeof text);
    explicit_bzero(secret, sizeof secret);
    if (rc)
        return rc;
    snprintf(text, sizeof text, "%s\n", pub);
    if ((rc = keygen_write(pubpath, text, 0644, e))) {
        unlink(keypath); /* a pair without its .pub would block a second try */
        return rc;
    }
    printf("%s  %s (secret, mode 0600) and %s\n", pub, keypath, pubpath);
    return 0;
}

/* Every name valid and no file there yet, before anything is written. */
static int keygen_check(const char *dir, char **names, int n, err *e)
{
    for (int i = 0; i < n; i++) {
        if (!keygen_name_ok(names[i]))
            return err_set(e, GTRT_EINVAL, "bad key name '%s': 1..64 letters, digits, '.', '_' "
                           "or '-', not starting with '.'", names[i]);
        for (int k = 0; k < 2; k++) {
            char path[4096];
            struct stat st;
            snprintf(path, sizeof path, "%s/%s.%s", dir, names[i], k ? "pub" : "key");
            if (lstat(path, &st) == 0)
                return err_set(e, GTRT_EIO, "%s already exists: refusing to overwrite it "
                               "(nothing was written)", path);
        }
    }
    return 0;
}

int keygen_main(int argc, char **argv)
{
    static const cli_cmd cmd = {
        "keygen", "NAME...", "Write CURVE key pairs for securing gtrt's sockets.",
        "Writes, for each NAME, DIR/NAME.key (the key pair: public and secret key, Z85,\n"
        "mode 0600) and DIR/NAME.pub (the public key alone, one line). Never overwrites a\n"
        "file.\n\n"
        "The scheme: one server key pair for the whole cluster, shared by every process\n"
        "that binds (learner, teachers, actors with actor.status_bind), and one key pair\n"
        "per client (each actor, teacher, person running gtrt status or gtrt logits ...):\n\n"
        "  gtrt keygen --out keys server learner teacher-0 actor-0 actor-1 ops\n"
        "  cat keys/*.pub > keys/allow      # or only the clients you trust\n\n"
        "then on every process:\n"
        "  security.server_key = keys/server.key   (keys/server.pub where it only connects)\n"
        "  security.client_key = keys/actor-0.key  (its own pair)\n"
        "  security.allow      = keys/allow        (where it binds)\n\n"
        "With security.server_key set, every socket of the process uses CURVE (encrypted,\n"
        "authenticated) and a server answers only clients whose public key is in\n"
        "security.allow; refused attempts are logged and counted (auth_refused in gtrt\n"
        "status). Without keys, services bind only loopback or ipc endpoints unless\n"
        "security.insecure = true. Copy the .key files only to the host that uses them."};
    const char *dir = ".";
    cli_opt opts[] = {
        {"out", CLI_STR, &dir, "DIR", "directory to write into (created if missing; default .)"},
        {0},
    };
    char *names[KEYGEN_MAX_NAMES];
    int n = 0;
    cli_common common;
    int rc = cli_parse(argc, argv, &cmd, opts, &common, names, &n, KEYGEN_MAX_NAMES);
    if (rc)
        return rc > 0 ? 0 : 2;
    if (n == 0) {
        fprintf(stderr, "gtrt keygen: give at least one NAME (see gtrt keygen --help)\n");
        return 2;
    }
    err e = {0};
    rc = keygen_check(dir, names, n, &e);
    if (!rc)
        rc = fs_mkdirs(dir, &e);
    for (int i = 0; !rc && i < n; i++)
        rc = keygen_one(dir, names[i], &e);
    if (rc) {
        fprintf(stderr, "gtrt keygen: %s\n", e.msg);
        return 1;
    }
    return 0;
}
