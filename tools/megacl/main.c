/* megacl: devices, bench, peak, params, version and help. */
#include "cli.h"

#include <string.h>

static void print_help(FILE *out)
{
    fprintf(out,
            "megacl %s — portable OpenCL kernels for attention-heavy models\n"
            "\n"
            "usage: megacl <command> [options]\n"
            "\n"
            "commands:\n"
            "  devices [--json]              list OpenCL platforms and devices as megacl sees them\n"
            "  bench <workload> [options]    time ops against their unfused baseline\n"
            "      workloads: layernorm, evoattn, gating, swiglu, ln_linear,\n"
            "                 transition, trimul\n"
            "      --device SEL    device selector (default: MEGACL_DEVICE, else first GPU)\n"
            "      --dtype LIST    f32,bf16,f16 (default f32,bf16)\n"
            "      --shape LIST    one custom shape instead of the workload's list:\n"
            "                      layernorm R,C; evoattn B,N,S,H,D; gating M,C; swiglu M,F;\n"
            "                      ln_linear M,K,N; transition M,C,F;\n"
            "                      trimul N,C,H\n"
            "      --reps N        timed repetitions, median reported (default 20)\n"
            "      --warmup N      untimed runs first (default 3)\n"
            "      --json FILE     write every figure and the device description as JSON\n"
            "      --params P      kernel parameters of the megacl path (NAME=V,...; see params)\n"
            "      --impl NAME     run one implementation only (megacl or naive)\n"
            "  peak [--device SEL]           measure copy bandwidth and fp32 FMA rate\n"
            "  params [--device SEL]         list kernel families, parameters and chosen values\n"
            "  --version                     print the version\n"
            "  help                          this text\n"
            "\n"
            "environment:\n"
            "  MEGACL_DEVICE        default device selector: cpu, gpu, nvidia, amd, intel, pocl, P:D\n"
            "  MEGACL_LOG           error | warn | info | debug (to stderr)\n"
            "  MEGACL_CACHE_DIR     cache root (default ~/.cache/megacl)\n"
            "  MEGACL_BINARY_CACHE  0 | 1: program binary cache (default on for AMD only)\n"
            "  MEGACL_TUNING_DB     tuning database (default <cache root>/tuning.json)\n",
            mcl_version_string());
}

int cli_fail(const char *what, mcl_status status)
{
    fprintf(stderr, "megacl: %s: %s: %s\n", what, mcl_status_name(status), mcl_last_error());
    return 1;
}

const char *cli_option(int argc, char **argv, const char *name)
{
    size_t len = strlen(name);
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], name, len) != 0) continue;
        if (argv[i][len] == '=') return argv[i] + len + 1;
        if (argv[i][len] == '\0' && i + 1 < argc) return argv[i + 1];
    }
    return NULL;
}

int cli_flag(int argc, char **argv, const char *name)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], name) == 0) return 1;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        print_help(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("megacl %s\n", mcl_version_string());
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        print_help(stdout);
        return 0;
    }
    if (strcmp(cmd, "devices") == 0) return cmd_devices(argc - 1, argv + 1);
    if (strcmp(cmd, "bench") == 0) return cmd_bench(argc - 1, argv + 1);
    if (strcmp(cmd, "peak") == 0) return cmd_peak(argc - 1, argv + 1);
    if (strcmp(cmd, "params") == 0) return cmd_params(argc - 1, argv + 1);
    fprintf(stderr, "megacl: unknown command '%s' (try 'megacl help')\n", cmd);
    return 2;
}
