/* `gtrt config`: show the effective configuration, or every key with its
 * default and meaning. */
#include <stdio.h>

#include "common/cli.h"

int config_main(int argc, char **argv)
{
    static const cli_cmd cmd = {
        "config", "", "Print the effective configuration (or, with --keys, every key).",
        "Applies --config and --set like every subcommand and prints the result as\n"
        "INI, each key with where its value came from. Use it to check a file."};
    int keys = 0;
    cli_opt opts[] = {{"keys", CLI_FLAG, &keys, NULL, "list every key: type, default, range, help"},
                      {0}};
    cli_common common;
    int rc = cli_parse(argc, argv, &cmd, opts, &common, NULL, NULL, 0);
    if (rc)
        return rc > 0 ? 0 : 2;
    if (keys) {
        static const char *types[] = {"int", "number", "bool", "string"};
        for (const cfg_key *k = config_schema; k->section; k++) {
            char name[64];
            snprintf(name, sizeof name, "%s.%s", k->section, k->key);
            printf("%-26s %-7s default %-24s %s\n", name, types[k->type], k->def[0] ? k->def : "\"\"",
                   k->help);
        }
        return 0;
    }
    config *cfg = cli_config(&common);
    if (!cfg)
        return 2;
    config_write(cfg, stdout);
    config_free(cfg);
    return 0;
}
