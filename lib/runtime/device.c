/* Device discovery, normalised description, and selection from a selector string. */
#include "device.h"

#include "error.h"

#include <CL/cl_ext.h>
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *mcl_vendor_name(mcl_vendor vendor)
{
    switch (vendor) {
    case MCL_VENDOR_NVIDIA: return "nvidia";
    case MCL_VENDOR_AMD: return "amd";
    case MCL_VENDOR_INTEL: return "intel";
    case MCL_VENDOR_POCL: return "pocl";
    case MCL_VENDOR_OTHER: break;
    }
    return "other";
}

/* clGetDeviceInfo on the device, or with device NULL clGetPlatformInfo on the platform. */
static cl_int get_info(cl_platform_id platform, cl_device_id device, cl_uint param, size_t size, void *value,
                       size_t *size_ret)
{
    return device ? clGetDeviceInfo(device, param, size, value, size_ret)
                  : clGetPlatformInfo(platform, param, size, value, size_ret);
}

/* Reads a string property (see get_info) into a fixed buffer, truncating; "" if the query
 * fails. */
static void info_string(cl_platform_id platform, cl_device_id device, cl_uint param, char *out, size_t cap)
{
    size_t size = 0;
    out[0] = '\0';
    if (get_info(platform, device, param, 0, NULL, &size) != CL_SUCCESS || size == 0) return;
    char *tmp = malloc(size);
    if (!tmp) return;
    if (get_info(platform, device, param, size, tmp, NULL) == CL_SUCCESS) {
        tmp[size - 1] = '\0';
        snprintf(out, cap, "%s", tmp);
    }
    free(tmp);
}

static cl_uint device_uint(cl_device_id device, cl_device_info param, cl_uint fallback)
{
    cl_uint value;
    return clGetDeviceInfo(device, param, sizeof value, &value, NULL) == CL_SUCCESS ? value
                                                                                      : fallback;
}

static cl_ulong device_ulong(cl_device_id device, cl_device_info param)
{
    cl_ulong value;
    return clGetDeviceInfo(device, param, sizeof value, &value, NULL) == CL_SUCCESS ? value : 0;
}

static int has_extension(cl_device_id device, const char *name)
{
    size_t size = 0;
    if (clGetDeviceInfo(device, CL_DEVICE_EXTENSIONS, 0, NULL, &size) != CL_SUCCESS) return 0;
    char *list = malloc(size + 2);
    if (!list) return 0;
    int found = 0;
    if (clGetDeviceInfo(device, CL_DEVICE_EXTENSIONS, size, list + 1, NULL) == CL_SUCCESS) {
        list[0] = ' ';
        list[size] = ' '; /* replaces the terminator so every name is space-delimited */
        list[size + 1] = '\0';
        char pattern[128];
        snprintf(pattern, sizeof pattern, " %s ", name);
        found = strstr(list, pattern) != NULL;
    }
    free(list);
    return found;
}

static mcl_vendor classify_vendor(const char *platform_name, cl_uint vendor_id,
                                  const char *vendor_string)
{
    /* PoCL first: its CPU device reports the CPU maker's vendor id, but the runtime is what
     * tuning and build options depend on. */
    if (strstr(platform_name, "Portable Computing Language") || strstr(platform_name, "PoCL"))
        return MCL_VENDOR_POCL;
    if (vendor_id == 0x10de || strstr(vendor_string, "NVIDIA")) return MCL_VENDOR_NVIDIA;
    if (vendor_id == 0x1002 || strstr(vendor_string, "Advanced Micro") ||
        strstr(vendor_string, "AMD"))
        return MCL_VENDOR_AMD;
    if (vendor_id == 0x8086 || strstr(vendor_string, "Intel")) return MCL_VENDOR_INTEL;
    return MCL_VENDOR_OTHER;
}

/* NVIDIA: sm_<major><minor>; AMD: the gfx name without ":sramecc+"-style feature suffixes;
 * PoCL: the CPU model from the device version's HSTR ("...-linux-gnu-skylake-avx512"). */
static void describe_arch(cl_device_id device, mcl_device_info *info)
{
    snprintf(info->arch, sizeof info->arch, "%.*s", (int)sizeof info->arch - 1, info->name);
    if (info->vendor == MCL_VENDOR_NVIDIA && has_extension(device, "cl_nv_device_attribute_query")) {
        cl_uint major = device_uint(device, CL_DEVICE_COMPUTE_CAPABILITY_MAJOR_NV, 0);
        cl_uint minor = device_uint(device, CL_DEVICE_COMPUTE_CAPABILITY_MINOR_NV, 0);
        if (major) snprintf(info->arch, sizeof info->arch, "sm_%u%u", major, minor);
    } else if (info->vendor == MCL_VENDOR_AMD) {
        char *colon = strchr(info->arch, ':');
        if (colon) *colon = '\0';
    } else if (info->vendor == MCL_VENDOR_POCL) {
        const char *hstr = strstr(info->device_version, "HSTR: ");
        const char *gnu = hstr ? strstr(hstr, "-gnu-") : NULL;
        if (gnu) snprintf(info->arch, sizeof info->arch, "%s", gnu + 5);
    }
}

static unsigned describe_simd_width(cl_device_id device, mcl_vendor vendor)
{
    if (vendor == MCL_VENDOR_NVIDIA) return device_uint(device, CL_DEVICE_WARP_SIZE_NV, 32);
    if (vendor == MCL_VENDOR_AMD) return device_uint(device, CL_DEVICE_WAVEFRONT_WIDTH_AMD, 64);
    return 1;
}

/* ---- probe results, cached per device for the life of the process ------------------------ */

typedef struct probe_entry {
    cl_device_id device;
    int has_mma_sync;
} probe_entry;

static pthread_mutex_t probe_lock = PTHREAD_MUTEX_INITIALIZER;
static probe_entry probe_cache[64];
static size_t probe_count;

static int probe_mma_sync_cached(cl_device_id device)
{
    pthread_mutex_lock(&probe_lock);
    for (size_t i = 0; i < probe_count; i++) {
        if (probe_cache[i].device == device) {
            int result = probe_cache[i].has_mma_sync;
            pthread_mutex_unlock(&probe_lock);
            return result;
        }
    }
    int result = 0;
    cl_int err;
    cl_context context = clCreateContext(NULL, 1, &device, NULL, NULL, &err);
    if (err == CL_SUCCESS) {
        result = mcl_probe_mma_sync(context, device);
        clReleaseContext(context);
    }
    if (probe_count < sizeof probe_cache / sizeof probe_cache[0])
        probe_cache[probe_count++] = (probe_entry){device, result};
    pthread_mutex_unlock(&probe_lock);
    return result;
}

mcl_status mcl_device_describe(cl_platform_id platform, cl_device_id device,
                               mcl_device_info *info)
{
    char vendor_string[128];
    cl_device_type type = 0;
    size_t max_wg = 1;
    memset(info, 0, sizeof *info);
    info_string(platform, NULL, CL_PLATFORM_NAME, info->platform_name, sizeof info->platform_name);
    info_string(platform, NULL, CL_PLATFORM_VERSION, info->platform_version, sizeof info->platform_version);
    info_string(NULL, device, CL_DEVICE_NAME, info->name, sizeof info->name);
    info_string(NULL, device, CL_DEVICE_VENDOR, vendor_string, sizeof vendor_string);
    info_string(NULL, device, CL_DRIVER_VERSION, info->driver_version, sizeof info->driver_version);
    info_string(NULL, device, CL_DEVICE_VERSION, info->device_version, sizeof info->device_version);
    info_string(NULL, device, CL_DEVICE_OPENCL_C_VERSION, info->opencl_c_version, sizeof info->opencl_c_version);
    MCL_CL_TRY(clGetDeviceInfo(device, CL_DEVICE_TYPE, sizeof type, &type, NULL),
               "clGetDeviceInfo(CL_DEVICE_TYPE)");
    clGetDeviceInfo(device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof max_wg, &max_wg, NULL);

    info->vendor = classify_vendor(info->platform_name,
                                   device_uint(device, CL_DEVICE_VENDOR_ID, 0), vendor_string);
    info->is_gpu = (type & CL_DEVICE_TYPE_GPU) != 0;
    info->compute_units = device_uint(device, CL_DEVICE_MAX_COMPUTE_UNITS, 1);
    info->clock_mhz = device_uint(device, CL_DEVICE_MAX_CLOCK_FREQUENCY, 0);
    info->global_mem_bytes = device_ulong(device, CL_DEVICE_GLOBAL_MEM_SIZE);
    info->local_mem_bytes = device_ulong(device, CL_DEVICE_LOCAL_MEM_SIZE);
    info->max_alloc_bytes = device_ulong(device, CL_DEVICE_MAX_MEM_ALLOC_SIZE);
    info->global_cache_bytes = device_ulong(device, CL_DEVICE_GLOBAL_MEM_CACHE_SIZE);
    info->max_work_group_size = max_wg;
    info->simd_width = describe_simd_width(device, info->vendor);
    info->has_fp16 = has_extension(device, "cl_khr_fp16");
    info->has_fp64 = has_extension(device, "cl_khr_fp64");
    describe_arch(device, info);
    /* vendor code reaches a device only after a probe kernel proved it works there */
    info->has_mma_sync = info->vendor == MCL_VENDOR_NVIDIA && probe_mma_sync_cached(device);
    return MCL_OK;
}

mcl_status mcl_devices_enumerate(mcl_device **devices, size_t *count)
{
    cl_uint nplatforms = 0;
    *devices = NULL;
    *count = 0;
    cl_int err = clGetPlatformIDs(0, NULL, &nplatforms);
    if (err == CL_PLATFORM_NOT_FOUND_KHR || nplatforms == 0) return MCL_OK;
    if (err != CL_SUCCESS) return mcl_fail_cl(err, "clGetPlatformIDs");
    cl_platform_id *platforms = calloc(nplatforms, sizeof *platforms);
    if (!platforms) return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "listing %u platforms", nplatforms);
    clGetPlatformIDs(nplatforms, platforms, NULL);

    mcl_status status = MCL_OK;
    for (cl_uint p = 0; p < nplatforms && status == MCL_OK; p++) {
        cl_uint ndev = 0;
        if (clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, 0, NULL, &ndev) != CL_SUCCESS ||
            ndev == 0)
            continue; /* a platform without devices is not an error */
        cl_device_id ids[64];
        if (ndev > 64) ndev = 64;
        clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, ndev, ids, NULL);
        mcl_device *grown = realloc(*devices, (*count + ndev) * sizeof **devices);
        if (!grown) {
            status = mcl_fail(MCL_ERR_OUT_OF_MEMORY, "listing devices");
            break;
        }
        *devices = grown;
        for (cl_uint d = 0; d < ndev && status == MCL_OK; d++) {
            mcl_device *dev = &(*devices)[(*count)++];
            dev->platform = platforms[p];
            dev->id = ids[d];
            status = mcl_device_describe(platforms[p], ids[d], &dev->info);
            dev->info.platform_index = p;
            dev->info.device_index = d;
        }
    }
    free(platforms);
    if (status != MCL_OK) {
        free(*devices);
        *devices = NULL;
        *count = 0;
    }
    return status;
}

mcl_status mcl_devices_list(mcl_device_info *infos, size_t capacity, size_t *count)
{
    if (!count) return mcl_fail(MCL_ERR_NULL_POINTER, "mcl_devices_list: count is NULL");
    if (!infos && capacity) return mcl_fail(MCL_ERR_NULL_POINTER, "mcl_devices_list: infos is NULL");
    mcl_device *devices;
    MCL_TRY(mcl_devices_enumerate(&devices, count));
    for (size_t i = 0; i < *count && i < capacity; i++) infos[i] = devices[i].info;
    free(devices);
    return MCL_OK;
}

/* ---- selection -------------------------------------------------------------------------- */

static int matches(const char *selector, const mcl_device_info *info)
{
    unsigned p, d;
    char tail;
    if (sscanf(selector, "%u:%u%c", &p, &d, &tail) == 2)
        return info->platform_index == p && info->device_index == d;
    if (strcasecmp(selector, "gpu") == 0) return info->is_gpu;
    if (strcasecmp(selector, "cpu") == 0) return !info->is_gpu;
    static const mcl_vendor vendors[] = {MCL_VENDOR_NVIDIA, MCL_VENDOR_AMD, MCL_VENDOR_INTEL,
                                         MCL_VENDOR_POCL};
    for (size_t i = 0; i < sizeof vendors / sizeof vendors[0]; i++)
        if (strcasecmp(selector, mcl_vendor_name(vendors[i])) == 0) return info->vendor == vendors[i];
    return 0;
}

static int is_known_selector(const char *selector)
{
    static const char *const words[] = {"gpu", "cpu", "nvidia", "amd", "intel", "pocl"};
    unsigned p, d;
    char tail;
    if (sscanf(selector, "%u:%u%c", &p, &d, &tail) == 2) return 1;
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strcasecmp(selector, words[i]) == 0) return 1;
    return 0;
}

static mcl_status fail_no_match(const char *selector, const mcl_device *devices, size_t count)
{
    char list[768] = "";
    size_t used = 0;
    for (size_t i = 0; i < count && used < sizeof list; i++) {
        const mcl_device_info *info = &devices[i].info;
        used += snprintf(list + used, sizeof list - used, "%s%u:%u %s %s '%s'", i ? ", " : "",
                         info->platform_index, info->device_index, mcl_vendor_name(info->vendor),
                         info->is_gpu ? "gpu" : "cpu", info->name);
    }
    if (count == 0) snprintf(list, sizeof list, "none (is an OpenCL ICD installed?)");
    if (!is_known_selector(selector))
        return mcl_fail(MCL_ERR_DEVICE_NOT_FOUND,
                        "device selector '%s' is not one of cpu, gpu, nvidia, amd, intel, pocl "
                        "or P:D; devices: %s",
                        selector, list);
    return mcl_fail(MCL_ERR_DEVICE_NOT_FOUND, "no device matches selector '%s'; devices: %s",
                    selector, list);
}

mcl_status mcl_device_select(const char *selector, mcl_device *device)
{
    if (!selector || !*selector) selector = getenv("MEGACL_DEVICE");
    int use_default = !selector || !*selector;
    mcl_device *devices;
    size_t count;
    MCL_TRY(mcl_devices_enumerate(&devices, &count));
    const mcl_device *chosen = NULL;
    for (size_t i = 0; i < count && !chosen; i++)
        if (use_default ? devices[i].info.is_gpu : matches(selector, &devices[i].info))
            chosen = &devices[i];
    if (use_default && !chosen) /* no GPU: the first CPU, then anything */
        for (size_t i = 0; i < count && !chosen; i++)
            if (matches("cpu", &devices[i].info) || i + 1 == count) chosen = &devices[i];
    mcl_status status = MCL_OK;
    if (chosen)
        *device = *chosen;
    else if (use_default)
        status = mcl_fail(MCL_ERR_DEVICE_NOT_FOUND,
                          "no OpenCL device found (is an ICD such as pocl-opencl-icd installed?)");
    else
        status = fail_no_match(selector, devices, count);
    free(devices);
    return status;
}
