/* The memory check before a bench case: the host holds every tensor's values as float and, for
 * the full check, a double reference of every output; the device holds every tensor in its own
 * buffer. A case that would not fit is refused with what it needs, so a large --shape never
 * takes the machine down (the kernel's OOM killer) or fails deep inside an allocation. */
#include "bench.h"

#include <stdio.h>
#include <string.h>

/* The reference implementations keep scratch of their own (row statistics, partial sums) that
 * the estimate does not count: this share of the available memory stays free for it. */
#define HOST_HEADROOM 0.10

typedef struct case_memory {
    double values;       /* float values of every tensor (inputs drawn, outputs fetched) */
    double references;   /* the double reference of every output */
    double staging;      /* the largest tensor's storage copy while uploading or fetching */
    double device;       /* every tensor's buffer, guards included */
    double largest_buffer;
} case_memory;

/* MemAvailable of /proc/meminfo in bytes; a negative number where it cannot be read. */
static double host_available_bytes(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return -1.0;
    char line[256];
    double kib = -1.0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lf kB", &kib) == 1) break;
    fclose(f);
    return kib < 0.0 ? -1.0 : kib * 1024.0;
}

static case_memory estimate(const wl_workload *w, const wl_case *c)
{
    size_t counts[WL_MAX_TENSORS];
    wl_case_counts(w, c, counts);
    case_memory m = {0};
    for (int i = 0; i < (int)w->tensor_count; i++) {
        const wl_tensor_decl *d = &w->tensors[i];
        if (!counts[i]) continue;
        double n = (double)counts[i], storage = (double)mcl_dtype_size(d->fp32 ? MCL_F32 : c->dtype);
        m.values += n * sizeof(float);
        if (d->role != WL_INPUT) m.references += n * sizeof(double);
        double buffer = (n + WL_GUARD) * storage;
        m.device += buffer;
        if (buffer > m.largest_buffer) m.largest_buffer = buffer;
        if (n * (storage + sizeof(float)) > m.staging) m.staging = n * (storage + sizeof(float));
    }
    return m;
}

static double gb(double bytes) { return bytes * 1e-9; }

/* A limit the device does not report (0) refuses nothing. */
static int refuse_device(const case_memory *m, const mcl_device_info *device, char *reason, size_t cap)
{
    if (device->max_alloc_bytes && m->largest_buffer > (double)device->max_alloc_bytes) {
        snprintf(reason, cap, "a buffer of %.1f GB exceeds the device's largest allocation, %.1f GB",
                 gb(m->largest_buffer), gb((double)device->max_alloc_bytes));
        return 1;
    }
    if (device->global_mem_bytes && m->device > (double)device->global_mem_bytes) {
        snprintf(reason, cap, "the problem's buffers need %.1f GB of device memory, the device has %.1f GB",
                 gb(m->device), gb((double)device->global_mem_bytes));
        return 1;
    }
    return 0;
}

int bench_case_fits(const wl_workload *w, const wl_case *c, const mcl_device_info *device, int *sample_only,
                    char *reason, size_t cap)
{
    case_memory m = estimate(w, c);
    *sample_only = 0;
    if (refuse_device(&m, device, reason, cap)) return 0;
    double available = host_available_bytes();
    if (available < 0.0) return 1; /* no /proc/meminfo: nothing to check against */
    /* a CPU device's buffers are host memory too */
    double fixed = m.values + m.staging + (device->is_gpu ? 0.0 : m.device);
    int full = !w->full_reference || w->full_reference(c);
    double usable = available * (1.0 - HOST_HEADROOM);
    if (fixed + (full ? m.references : 0.0) <= usable) return 1;
    if (full && w->sample && fixed <= usable) {
        *sample_only = 1;
        return 1;
    }
    const char *also = device->is_gpu ? "" : " (with the CPU device's buffers)";
    if (full)
        snprintf(reason, cap, "host reference needs %.1f GB%s, %.1f GB available (%.0f%% kept free)",
                 gb(fixed + m.references), also, gb(available), 100.0 * HOST_HEADROOM);
    else
        snprintf(reason, cap, "host copies of the tensors need %.1f GB%s, %.1f GB available (%.0f%% kept free)",
                 gb(fixed), also, gb(available), 100.0 * HOST_HEADROOM);
    return 0;
}
