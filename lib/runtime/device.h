/* Device discovery, description, probing and selection. */
#ifndef MCL_RUNTIME_DEVICE_H
#define MCL_RUNTIME_DEVICE_H

#include "megacl.h"

typedef struct mcl_device {
    cl_platform_id platform;
    cl_device_id id;
    mcl_device_info info;
} mcl_device;

/* Every device of every platform; *devices is malloc'd (free it). Zero devices is success. */
mcl_status mcl_devices_enumerate(mcl_device **devices, size_t *count);

/* The device a selector names (see mcl_context_create for the grammar). */
mcl_status mcl_device_select(const char *selector, mcl_device *device);

/* Describes one device; platform_index/device_index are filled by the caller. Runs the probe
 * kernels of the device's vendor (results cached per device for the process). */
mcl_status mcl_device_describe(cl_platform_id platform, cl_device_id device,
                               mcl_device_info *info);

/* Probe: does inline-PTX mma.sync (tf32, bf16 and f16) compile, run and give the right sums on
 * this device? Only ever called for NVIDIA devices. */
int mcl_probe_mma_sync(cl_context context, cl_device_id device);

#endif
