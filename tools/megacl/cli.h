/* The `megacl` command-line tool: shared declarations of its commands. */
#ifndef MCL_CLI_H
#define MCL_CLI_H

#define MCL_EXPERIMENTAL
#include "megacl.h"

#include <stdio.h>

#define CLI_TRY(expr)                                                                          \
    do {                                                                                       \
        mcl_status cli_try_status_ = (expr);                                                   \
        if (cli_try_status_ != MCL_OK) return cli_try_status_;                                 \
    } while (0)

/* Every command returns the process exit status and prints a one-line reason on failure. */
int cmd_devices(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_peak(int argc, char **argv);
int cmd_params(int argc, char **argv);
int cmd_tune(int argc, char **argv);
int cmd_cache(int argc, char **argv);
int cmd_bench_pipeline(int argc, char **argv);
int cmd_demo(int argc, char **argv);

/* Prints "megacl: <what>: <status name>: <detail>" to stderr and returns 1. */
int cli_fail(const char *what, mcl_status status);

/* Device ceilings (`megacl peak`; bench's denominators). */
typedef struct device_ceilings {
    double copy_gbps;       /* device-to-device copy of random bytes, read + written */
    double fma_gflops;      /* fp32 multiply-add chains in an OpenCL kernel */
    double launch_us;       /* an empty kernel enqueued and waited for; NaN if not measured */
    double mma_bf16_tflops; /* inline-PTX mma.sync; NaN where the probe did not pass */
} device_ceilings;

mcl_status measure_copy_bandwidth(mcl_context *ctx, double *gbps);
mcl_status measure_fma_rate(mcl_context *ctx, double *gflops);
mcl_status measure_ceilings(mcl_context *ctx, device_ceilings *ceilings);

/* The ceilings `megacl peak` stored for this device and driver (and the date it measured them):
 * 1 if there are some. */
int load_ceilings(const mcl_device_info *device, device_ceilings *ceilings, char *date, size_t date_cap);

/* A command's option: "--name value" or "--name=value" when it takes a value, "--name" alone
 * when it is a flag. */
typedef struct cli_option {
    const char *name;
    int takes_value;
    const char *value; /* the value given, or NULL */
    int given;
} cli_option;

/* Fills the options from argv[first..argc). An argument that is no option of the command, a
 * repeated option or a missing value prints why and returns 0 (the command exits with 2). */
int cli_parse(int argc, char **argv, int first, cli_option *options, size_t count, const char *command);

/* A whole decimal number in [min, max], and a list of positive sizes "a,b,c" (at most cap);
 * 0 for anything else. */
int cli_parse_int(const char *text, int min, int max, int *out);
int cli_parse_sizes(const char *text, size_t *out, size_t cap, size_t *count);

/* A dtype list "f32,bf16,f16" (each at most once) into out[3]; 0 with a message for anything else. */
int cli_parse_dtypes(const char *list, mcl_dtype out[3], size_t *count, const char *command);

/* The workload of that name (tests/workload), or NULL. */
struct wl_workload;
const struct wl_workload *cli_find_workload(const char *name);
#define CLI_WORKLOAD_NAMES "layernorm, evoattn, gating, swiglu, ln_linear, transition, trimul, linear, add, transpose, acsr, flurka"

/* Seconds on a monotonic clock. */
double cli_seconds(void);

/* Prints "megacl <command>: <message>" to stderr; returns 0 (for parsers to pass on). */
int cli_usage(const char *command, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
