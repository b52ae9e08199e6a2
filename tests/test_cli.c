/* The megacl tool refuses nonsense before any device work: each malformed command line exits 2
 * (1 would mean it went on and failed at the device, which MEGACL_DEVICE=9:9 makes certain: a
 * sound `megacl bench` with no workload gets that far), and every command's --help and bench's
 * --list exit 0; megacl demo refuses a size beyond the device's memory before
 * it allocates anything. */
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
    {"bench acsr --case nonesuch", "", 2},
    {"bench acsr --case window --shape 1,1,8,4", "", 2},
    {"bench acsr --case", "", 2},
    {"bench nonesuch", "", 2},
    {"bench --bogus", "", 2},
    {"bench --shape 1024,256", "", 2},
    {"bench fused --shape 64,128", "", 2},
    {"bench layernorm --kernels=yes", "", 2},
    {"bench layernorm --list=1", "", 2},
    {"bench --list --bogus", "", 2},
    {"bench layernorm --svg", "", 2},
    {"bench layernorm --json", "", 2},
    {"bench layernorm --compare", "", 2},
    {"bench layernorm --compare /nonexistent/old.json", "", 2},
    {"bench layernorm --compare ''", "", 2},
    {"bench layernorm --svg a.svg --svg b.svg", "", 2},
    {"bench", "", 1},
    {"bench --dtype f32", "", 1},
    {"tune --budget abc", "", 2},
    {"tune --strategy greedy", "", 2},
    {"tune --family nonesuch", "", 2},
    {"tune --shapes nonesuch", "", 2},
    {"tune --shapes 'evoattn=1,2,3'", "", 2},
    {"tune --level chip", "", 2},
    {"tune --show --budget 3", "", 2},
    {"params --device", "", 2},
    {"demo --bogus", "", 2},
    {"demo extra", "", 2},
    {"demo --tokens", "", 2},
    {"demo --tokens abc", "", 2},
    {"demo --tokens 0", "", 2},
    {"demo --tokens -5", "", 2},
    {"demo --tokens 32x", "", 2},
    {"demo --tokens 99999999", "", 2},
    {"demo --tokens 8 --tokens 9", "", 2},
    {"demo --dtype f16", "", 2},
    {"demo --dtype ''", "", 2},
    {"demo --tokens 8 --max-tokens", "", 2},
    {"demo --max-tokens=1", "", 2},
    {"demo --json", "", 2},
    {"nonesuch", "", 2},
    {"devices", "MEGACL_LOG=verbose", 2},
    {"devices --help", "", 0},
    {"params --help", "", 0},
    {"peak --help", "", 0},
    {"bench --help", "", 0},
    {"bench layernorm --help", "", 0},
    {"bench --list", "", 0},
    {"bench evoattn --list", "", 0},
    {"bench pipeline --help", "", 0},
    {"tune --help", "", 0},
    {"cache --help", "", 0},
    {"demo --help", "", 0},
    {"help", "", 0},
    {"--version", "", 0},
};

/* The exit status of `megacl <args>` with the environment `env`, and the first line it printed
 * (stdout and stderr) in `first`. */
static int run_cli(const char *env, const char *args, char *first, size_t cap)
{
    char command[1024];
    snprintf(command, sizeof command, "env %s %s %s 2>&1", env, MEGACL_CLI_PATH, args);
    FILE *pipe = popen(command, "r");
    cr_assert_not_null(pipe, "cannot run megacl %s", args);
    if (!fgets(first, (int)cap, pipe)) first[0] = '\0';
    while (fgetc(pipe) != EOF) {
    }
    int status = pclose(pipe);
    cr_assert(WIFEXITED(status), "megacl %s did not exit", args);
    return WEXITSTATUS(status);
}

Test(cli, malformed_command_lines_exit_2_before_any_device_work)
{
    for (size_t i = 0; i < COUNT_OF(cases); i++) {
        char env[256], first[512];
        snprintf(env, sizeof env, "MEGACL_DEVICE=9:9 %s", cases[i].env);
        int status = run_cli(env, cases[i].args, first, sizeof first);
        cr_expect_eq(status, cases[i].status, "megacl %s%s%s exited %d, expected %d (%s)", cases[i].env,
                     *cases[i].env ? " " : "", cases[i].args, status, cases[i].status, first);
    }
}

/* Sizing both paths' steps comes before anything is allocated on the host or the device: the
 * refusal names what the step needs; sound options with no device fail at the device (1). */
Test(cli, demo_refuses_a_size_beyond_the_device_with_its_need)
{
    char env[128], first[512];
    snprintf(env, sizeof env, "MEGACL_DEVICE=%s", test_selector());
    cr_expect_eq(run_cli(env, "demo --tokens 30000", first, sizeof first), 1, "%s", first);
    cr_expect(strstr(first, "N_res = 30000 does not fit") && strstr(first, "GiB"), "%s", first);
    cr_expect_eq(run_cli("MEGACL_DEVICE=9:9", "demo --tokens 8", first, sizeof first), 1, "%s", first);
}
