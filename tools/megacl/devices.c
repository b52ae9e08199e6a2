/* megacl devices: every platform and device, as megacl describes them. */
#include "cli.h"

#include <json-c/json.h>
#include <stdlib.h>

static json_object *device_json(const mcl_device_info *d)
{
    json_object *o = json_object_new_object();
    char selector[32];
    snprintf(selector, sizeof selector, "%u:%u", d->platform_index, d->device_index);
    json_object_object_add(o, "selector", json_object_new_string(selector));
    json_object_object_add(o, "platform", json_object_new_string(d->platform_name));
    json_object_object_add(o, "platform_version", json_object_new_string(d->platform_version));
    json_object_object_add(o, "name", json_object_new_string(d->name));
    json_object_object_add(o, "vendor", json_object_new_string(mcl_vendor_name(d->vendor)));
    json_object_object_add(o, "type", json_object_new_string(d->is_gpu ? "gpu" : "cpu"));
    json_object_object_add(o, "arch", json_object_new_string(d->arch));
    json_object_object_add(o, "driver_version", json_object_new_string(d->driver_version));
    json_object_object_add(o, "device_version", json_object_new_string(d->device_version));
    json_object_object_add(o, "opencl_c_version", json_object_new_string(d->opencl_c_version));
    json_object_object_add(o, "compute_units", json_object_new_int((int)d->compute_units));
    json_object_object_add(o, "clock_mhz", json_object_new_int((int)d->clock_mhz));
    json_object_object_add(o, "global_mem_bytes", json_object_new_int64((int64_t)d->global_mem_bytes));
    json_object_object_add(o, "local_mem_bytes", json_object_new_int64((int64_t)d->local_mem_bytes));
    json_object_object_add(o, "max_alloc_bytes", json_object_new_int64((int64_t)d->max_alloc_bytes));
    json_object_object_add(o, "global_cache_bytes", json_object_new_int64((int64_t)d->global_cache_bytes));
    json_object_object_add(o, "max_work_group_size", json_object_new_int64((int64_t)d->max_work_group_size));
    json_object_object_add(o, "simd_width", json_object_new_int((int)d->simd_width));
    json_object_object_add(o, "fp16", json_object_new_boolean(d->has_fp16));
    json_object_object_add(o, "fp64", json_object_new_boolean(d->has_fp64));
    json_object_object_add(o, "mma_sync", json_object_new_boolean(d->has_mma_sync));
    return o;
}

json_object *cli_device_json(const mcl_device_info *d) { return device_json(d); }

int cmd_devices(int argc, char **argv)
{
    cli_option o[2] = {{.name = "--json"}, {.name = "--help"}};
    if (!cli_parse(argc, argv, 1, o, 2, "devices")) return 2;
    if (o[1].given) {
        printf("usage: megacl devices [--json]   OpenCL platforms and devices as megacl sees them: vendor,\n"
               "                                 architecture, memory, limits and the features its probes proved\n");
        return 0;
    }
    cli_option json = o[0];
    size_t count = 0;
    mcl_status status = mcl_devices_list(NULL, 0, &count);
    if (status != MCL_OK) return cli_fail("listing devices", status);
    mcl_device_info *infos = calloc(count ? count : 1, sizeof *infos);
    if (!infos) return cli_fail("listing devices", MCL_ERR_OUT_OF_MEMORY);
    status = mcl_devices_list(infos, count, &count);
    if (status != MCL_OK) {
        free(infos);
        return cli_fail("listing devices", status);
    }
    if (json.given) {
        json_object *list = json_object_new_array();
        for (size_t i = 0; i < count; i++) json_object_array_add(list, device_json(&infos[i]));
        printf("%s\n", json_object_to_json_string_ext(list, JSON_C_TO_STRING_PRETTY));
        json_object_put(list);
    } else if (count == 0) {
        printf("no OpenCL devices (is an ICD such as pocl-opencl-icd installed?)\n");
    } else {
        printf("%-4s %-7s %-4s %-34s %-16s %4s %8s %7s %5s %4s %4s %4s  %s\n", "sel", "vendor",
               "type", "name", "arch", "CUs", "mem GiB", "lmem KB", "maxwg", "simd", "fp16",
               "mma", "driver");
        for (size_t i = 0; i < count; i++) {
            const mcl_device_info *d = &infos[i];
            char selector[16];
            snprintf(selector, sizeof selector, "%u:%u", d->platform_index, d->device_index);
            printf("%-4s %-7s %-4s %-34.34s %-16.16s %4u %8.1f %7llu %5zu %4u %4s %4s  %s\n",
                   selector, mcl_vendor_name(d->vendor), d->is_gpu ? "gpu" : "cpu", d->name, d->arch,
                   d->compute_units, (double)d->global_mem_bytes / (1 << 30),
                   (unsigned long long)(d->local_mem_bytes / 1024), d->max_work_group_size,
                   d->simd_width, d->has_fp16 ? "yes" : "no", d->has_mma_sync ? "yes" : "no",
                   d->driver_version);
        }
    }
    free(infos);
    return 0;
}
