/* The workloads the CLI's commands run, by name. */
#include "cli.h"

#include "workload/workload.h"

#include <string.h>

const wl_workload *cli_find_workload(const char *name)
{
    for (size_t i = 0; i < wl_workload_count; i++)
        if (strcmp(wl_workloads[i]->name, name) == 0) return wl_workloads[i];
    return NULL;
}
