/* megacl: demo, devices, bench, peak, params, tune, cache, version and help. */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void print_help(FILE *out)
{
    fprintf(out,
            "megacl %s — portable OpenCL kernels for attention-heavy models\n"
            "\n"
            "usage: megacl <command> [options]\n"
            "\n"
            "commands:\n"
            "  demo [options]                the main job: one AF3 pair-stack block forward and backward on\n"
            "                                megacl and on the unfused path, checked against each other, with\n"
            "                                time per sub-block and peak memory; --max-tokens: the largest\n"
            "                                N_res that fits the device (megacl demo --help)\n"
            "  devices [--json]              list OpenCL platforms and devices as megacl sees them\n"
            "  bench [workload] [options]    time ops against their unfused baseline (no workload:\n"
            "                                every workload's default cases; megacl bench --help)\n"
            "      workloads: layernorm, evoattn, gating, swiglu, ln_linear,\n"
            "                 transition, trimul, linear, add, transpose; fused\n"
            "      --list          every workload's cases and their shapes; runs nothing\n"
            "      --device SEL    device selector (default: MEGACL_DEVICE, else first GPU)\n"
            "      --dtype LIST    f32,bf16,f16 (default f32,bf16)\n"
            "      --shape LIST    one custom shape instead of the workload's list:\n"
            "                      layernorm R,C; evoattn B,N,S,H,D; gating M,C; swiglu M,F;\n"
            "                      ln_linear M,K,N; transition M,C,F;\n"
            "                      trimul N,C,H; linear M,K,N; add M,C; transpose B,R,C,W\n"
            "      --reps N        timed repetitions: min, median and max reported (default 20)\n"
            "      --warmup N      untimed runs first (default 3)\n"
            "      --kernels       each kernel's median time in a forward+backward too\n"
            "      --json FILE     every figure, the device and the cases not run, as JSON\n"
            "      --svg FILE      a chart: time per case, megacl beside the baselines\n"
            "      --compare OLD   the change against an earlier --json report\n"
            "      --params P      kernel parameters of the megacl path (NAME=V,...; see params)\n"
            "      --impl NAME     run one implementation only: megacl, or a baseline (naive, unfused)\n"
            "  bench pipeline [options]      the MSA feature pipeline in a simulated training loop:\n"
            "                                the consumer's wait per step, cold (parsing online) and\n"
            "                                warm (feature cache); see 'megacl bench pipeline --help'\n"
            "  tune [options]                tune kernel families on the device (megacl tune --help)\n"
            "  tune --show                   what the tuning databases hold for the device\n"
            "  cache build --msa-dir DIR --out CACHE [--jobs N] [--shard I/N] [--compress LEVEL]\n"
            "                                compute every chain's MSA features ahead of time\n"
            "  cache ls|verify|stats --cache CACHE\n"
            "                                list, check whole, or sum up a feature cache\n"
            "                                ('megacl cache <command> --help' for each)\n"
            "  peak [--device SEL]           measure the device's ceilings and store them for bench\n"
            "  params [--device SEL]         kernel families, their parameters (kernel define or host\n"
            "                                choice) and what the lookup chooses at an AF3 shape\n"
            "  --version                     print the version\n"
            "  help                          this text\n"
            "\n"
            "environment:\n"
            "  MEGACL_DEVICE        default device selector: cpu, gpu, nvidia, amd, intel, pocl, P:D\n"
            "  MEGACL_LOG           error | warn | info | debug (to stderr)\n"
            "  MEGACL_CACHE_DIR     cache root (default ~/.cache/megacl)\n"
            "  MEGACL_BINARY_CACHE  0 | 1: program binary cache (default on for AMD only)\n"
            "  MEGACL_TUNING_DB     tuning database (default <cache root>/tuning.json)\n"
            "  MEGACL_TUNE          on (default): use the tuning databases; off: the families'\n"
            "                       defaults only; ondemand: tune a shape bucket no database\n"
            "                       covers the first time an op meets it\n",
            mcl_version_string());
}

int cli_fail(const char *what, mcl_status status)
{
    fprintf(stderr, "megacl: %s: %s: %s\n", what, mcl_status_name(status), mcl_last_error());
    return 1;
}

int cli_usage(const char *command, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    fprintf(stderr, "megacl %s: ", command);
    vfprintf(stderr, fmt, args);
    fputc('\n', stderr);
    va_end(args);
    return 0;
}

static cli_option *find_option(cli_option *options, size_t count, const char *arg, size_t len)
{
    for (size_t i = 0; i < count; i++)
        if (strlen(options[i].name) == len && strncmp(options[i].name, arg, len) == 0) return &options[i];
    return NULL;
}

int cli_parse(int argc, char **argv, int first, cli_option *options, size_t count, const char *command)
{
    for (int i = first; i < argc; i++) {
        const char *arg = argv[i], *eq = strchr(arg, '=');
        size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
        cli_option *o = strncmp(arg, "--", 2) == 0 ? find_option(options, count, arg, len) : NULL;
        if (!o) return cli_usage(command, "unknown argument '%s' (see 'megacl help')", arg);
        if (o->given) return cli_usage(command, "%s given twice", o->name);
        o->given = 1;
        if (!o->takes_value) {
            if (eq) return cli_usage(command, "%s takes no value", o->name);
            continue;
        }
        if (eq) o->value = eq + 1;
        else if (i + 1 < argc) o->value = argv[++i];
        if (!o->value || !*o->value) return cli_usage(command, "%s needs a value", o->name);
    }
    return 1;
}

int cli_parse_int(const char *text, int min, int max, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < min || v > max) return 0;
    *out = (int)v;
    return 1;
}

int cli_parse_sizes(const char *text, size_t *out, size_t cap, size_t *count)
{
    *count = 0;
    for (const char *p = text;; p++) {
        if (*count == cap || !isdigit((unsigned char)*p)) return 0;
        char *end;
        errno = 0;
        unsigned long long v = strtoull(p, &end, 10);
        if (errno || v == 0 || v > SIZE_MAX) return 0;
        out[(*count)++] = (size_t)v;
        if (*end == '\0') return 1;
        if (*end != ',') return 0;
        p = end;
    }
}

int cli_parse_dtypes(const char *list, mcl_dtype out[3], size_t *count, const char *command)
{
    *count = 0;
    for (const char *p = list;;) {
        size_t len = strcspn(p, ",");
        int found = -1;
        for (int d = MCL_F32; d <= MCL_F16; d++)
            if (strlen(mcl_dtype_name((mcl_dtype)d)) == len && strncmp(p, mcl_dtype_name((mcl_dtype)d), len) == 0)
                found = d;
        for (size_t i = 0; i < *count && found >= 0; i++)
            if (out[i] == (mcl_dtype)found) return cli_usage(command, "--dtype names %.*s twice", (int)len, p);
        if (found < 0) return cli_usage(command, "--dtype: unknown dtype '%.*s' (f32, bf16, f16)", (int)len, p);
        out[(*count)++] = (mcl_dtype)found;
        if (p[len] == '\0') return 1;
        p += len + 1;
    }
}

double cli_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        print_help(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    int alone = argc == 2;
    const char *log = getenv("MEGACL_LOG");
    if (log && strcmp(log, "none") && strcmp(log, "error") && strcmp(log, "warn") && strcmp(log, "info") &&
        strcmp(log, "debug")) {
        fprintf(stderr, "megacl: MEGACL_LOG='%s' is not none, error, warn, info or debug\n", log);
        return 2;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        if (!alone) return cli_usage("version", "takes no arguments") + 2;
        printf("megacl %s\n", mcl_version_string());
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        if (!alone) return cli_usage("help", "takes no arguments") + 2;
        print_help(stdout);
        return 0;
    }
    if (strcmp(cmd, "demo") == 0) return cmd_demo(argc - 1, argv + 1);
    if (strcmp(cmd, "devices") == 0) return cmd_devices(argc - 1, argv + 1);
    if (strcmp(cmd, "bench") == 0) return cmd_bench(argc - 1, argv + 1);
    if (strcmp(cmd, "peak") == 0) return cmd_peak(argc - 1, argv + 1);
    if (strcmp(cmd, "params") == 0) return cmd_params(argc - 1, argv + 1);
    if (strcmp(cmd, "tune") == 0) return cmd_tune(argc - 1, argv + 1);
    if (strcmp(cmd, "cache") == 0) return cmd_cache(argc - 1, argv + 1);
    fprintf(stderr, "megacl: unknown command '%s' (try 'megacl help')\n", cmd);
    return 2;
}
