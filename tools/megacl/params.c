/* megacl params: kernel families, their parameters and legal values, and what the lookup
 * chooses on a device at each family's AF3 example shape (and from where: override, user or
 * built-in database, defaults). */
#include "cli.h"

static void print_shape(const mcl_family_info *f)
{
    printf("%s = ", f->shape_names);
    for (size_t i = 0; i < f->shape_rank; i++) printf("%s%zu", i ? "," : "", f->example_shape[i]);
}

static mcl_status print_family(mcl_context *ctx, size_t index)
{
    mcl_family_info f;
    CLI_TRY(mcl_family_get(index, &f));
    printf("\n%s (defines %s*)\n", f.name, f.define_prefix);
    for (size_t p = 0; p < f.param_count; p++) {
        mcl_param_info info;
        CLI_TRY(mcl_family_param(index, p, &info));
        printf("  %-16s default %-5d %-7s legal", info.name, info.default_value, info.kernel ? "kernel" : "host");
        for (size_t i = 0; i < info.legal_count; i++) printf(" %d", info.legal_values[i]);
        printf("\n");
    }
    for (int d = MCL_F32; d <= MCL_F16; d++) {
        mcl_param_choice choice;
        CLI_TRY(mcl_context_get_params(ctx, f.name, (mcl_dtype)d, f.example_shape, f.shape_rank, &choice));
        printf("  chosen for %-4s at ", mcl_dtype_name((mcl_dtype)d));
        print_shape(&f);
        printf(": %s (from %s)\n", choice.values, choice.origin);
    }
    return MCL_OK;
}

int cmd_params(int argc, char **argv)
{
    cli_option o[2] = {{.name = "--device", .takes_value = 1}, {.name = "--help"}};
    if (!cli_parse(argc, argv, 1, o, 2, "params")) return 2;
    if (o[1].given) {
        printf("usage: megacl params [--device SEL]   kernel families, their parameters (kernel define or host\n"
               "                                      choice), legal values, and what the lookup chooses at an\n"
               "                                      AF3 shape on the device, and from where\n");
        return 0;
    }
    cli_option device_option = o[0];
    mcl_context *ctx;
    mcl_status status = mcl_context_create(device_option.value, &ctx);
    if (status != MCL_OK) return cli_fail("creating a context", status);
    const mcl_device_info *device = mcl_context_device(ctx);
    printf("device: %s (%s, %s)\n", device->name, mcl_vendor_name(device->vendor), device->arch);
    for (size_t f = 0; f < mcl_family_count() && status == MCL_OK; f++) status = print_family(ctx, f);
    mcl_context_release(ctx);
    return status == MCL_OK ? 0 : cli_fail("looking up parameters", status);
}
