/* megacl params: kernel families, their parameters and legal values, and what the lookup
 * chooses on a device (and from where: override, user or built-in database, defaults). */
#include "cli.h"

#include "ops/families.h"
#include "runtime/error.h"
#include "runtime/params.h"

/* A representative AF3 shape per family, to show what the lookup picks for it. */
static const size_t *example_shape(const mcl_family *family, const char **label)
{
    static const size_t pair_rows[5] = {147456, 128, 0, 0, 0};
    static const size_t triangle[5] = {1, 384, 384, 4, 32};
    int attention = family == &mcl_family_evoattn;
    *label = attention ? "B,N,S,H,D = 1,384,384,4,32" : "147456 x 128";
    return attention ? triangle : pair_rows;
}

int cmd_params(int argc, char **argv)
{
    mcl_context *ctx;
    mcl_status status = mcl_context_create(cli_option(argc, argv, "--device"), &ctx);
    if (status != MCL_OK) return cli_fail("creating a context", status);
    printf("device: %s (%s, %s)\n", ctx->device.info.name, mcl_vendor_name(ctx->device.info.vendor),
           ctx->device.info.arch);
    for (size_t f = 0; f < mcl_family_count; f++) {
        const mcl_family *family = mcl_families[f];
        printf("\n%s (defines %s*)\n", family->name, family->define_prefix);
        for (size_t p = 0; p < family->param_count; p++) {
            const mcl_param_decl *decl = &family->params[p];
            printf("  %-16s default %-5d legal", decl->name, decl->default_value);
            for (size_t i = 0; i < decl->legal_count; i++) printf(" %d", decl->legal[i]);
            printf("\n");
        }
        for (int d = MCL_F32; d <= MCL_F16; d++) {
            mcl_params params;
            const char *label;
            const size_t *shape = example_shape(family, &label);
            status = mcl_params_lookup(ctx, family, (mcl_dtype)d, shape, &params);
            if (status != MCL_OK) break;
            char values[512];
            mcl_params_format(&params, values, sizeof values);
            printf("  chosen for %-4s at %s: %s (from %s)\n", mcl_dtype_name((mcl_dtype)d), label,
                   values, params.origin);
        }
    }
    mcl_context_release(ctx);
    return status == MCL_OK ? 0 : cli_fail("looking up parameters", status);
}
