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

/* Prints "megacl: <what>: <status name>: <detail>" to stderr and returns 1. */
int cli_fail(const char *what, mcl_status status);

/* Device ceilings measured on the spot (`megacl peak`, and bench's denominators). */
typedef struct device_ceilings {
    double copy_gbps;   /* device-to-device copy, bytes read + written */
    double fma_gflops;  /* fp32 FMA chains in an OpenCL kernel */
} device_ceilings;

mcl_status measure_copy_bandwidth(mcl_context *ctx, double *gbps);
mcl_status measure_fma_rate(mcl_context *ctx, double *gflops);

/* "--name value" and "--name=value" option parsing over argv[first..argc) */
const char *cli_option(int argc, char **argv, const char *name);
int cli_flag(int argc, char **argv, const char *name);

#endif
