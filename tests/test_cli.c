/* The megacl tool refuses nonsense before any device work: each malformed command line exits 2
 * (1 would mean it went on and failed at the device, which MEGACL_DEVICE=9:9 makes certain), and
 * every command's --help exits 0. */
#include "common.h"

#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

typedef struct cli_case {
    const char *args; /* after "megacl", shell-quoted */
    const char *env;  /* assignments before the command, or "" */
    int status;
} cli_case;

static const cli_case cases[] = {
    {"devices --bogus", "", 2},
    {"peak --json", "", 2},
    {"bench layernorm --bogus-flag", "", 2},
    {"bench layernorm --shape", "", 2},
    {"bench layernorm --shape abc,def", "", 2},
    {"bench layernorm --shape -5,128", "", 2},
    {"bench layernorm --shape 1024,256x", "", 2},
    {"bench layernorm --shape 1024,,256", "", 2},
    {"bench layernorm --shape 1024,256,3", "", 2},
    {"bench layernorm --dtype ''", "", 2},
    {"bench layernorm --dtype f32,f64", "", 2},
    {"bench layernorm --dtype f32,f32", "", 2},
    {"bench layernorm --reps 0", "", 2},
    {"bench layernorm --reps 5 --reps 6", "", 2},
    {"bench layernorm --impl nonesuch", "", 2},
    {"bench nonesuch", "", 2},
    {"bench", "", 2},
    {"tune --budget abc", "", 2},
    {"tune --strategy greedy", "", 2},
    {"tune --family nonesuch", "", 2},
    {"tune --shapes nonesuch", "", 2},
    {"tune --shapes 'evoattn=1,2,3'", "", 2},
    {"tune --level chip", "", 2},
    {"tune --show --budget 3", "", 2},
    {"params --device", "", 2},
    {"nonesuch", "", 2},
    {"devices", "MEGACL_LOG=verbose", 2},
    {"devices --help", "", 0},
    {"params --help", "", 0},
    {"peak --help", "", 0},
    {"bench --help", "", 0},
    {"bench layernorm --help", "", 0},
    {"bench pipeline --help", "", 0},
    {"tune --help", "", 0},
    {"cache --help", "", 0},
    {"help", "", 0},
    {"--version", "", 0},
};

Test(cli, malformed_command_lines_exit_2_before_any_device_work)
{
    for (size_t i = 0; i < COUNT_OF(cases); i++) {
        char command[1024];
        snprintf(command, sizeof command, "env MEGACL_DEVICE=9:9 %s %s %s >/dev/null 2>&1", cases[i].env,
                 MEGACL_CLI_PATH, cases[i].args);
        int status = system(command);
        cr_assert(WIFEXITED(status), "megacl %s did not exit", cases[i].args);
        cr_expect_eq(WEXITSTATUS(status), cases[i].status, "megacl %s%s%s exited %d, expected %d", cases[i].env,
                     *cases[i].env ? " " : "", cases[i].args, WEXITSTATUS(status), cases[i].status);
    }
}
