/* The built-in AMD tuning entries, checked without AMD hardware: each is legal on a described
 * device of its architecture (wave64 on CDNA, wave32 on RDNA, 64 KiB of LDS), and every kernel
 * source of its family, built with the entry's parameters, compiles for that architecture with
 * Debian's clang with Debian's device libraries linked in, stays within the LDS and spills no
 * register (one known exception, spill_ceiling). What clang reports (VGPRs, scratch, LDS) is logged. These kernels are compiled
 * here, never run. */
#include "common.h"

#include "runtime/params.h"
#include "runtime/program.h"
#include "runtime/tuning_db.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LDS_BYTES 65536

/* CDNA (gfx9) runs wave64 with work-groups of at most 256 in OpenCL; RDNA (gfx10+) wave32. */
static mcl_device_info amd_device(const char *arch)
{
    int cdna = strncmp(arch, "gfx9", 4) == 0;
    mcl_device_info d = {.vendor = MCL_VENDOR_AMD, .is_gpu = 1, .simd_width = cdna ? 64 : 32, .compute_units = 96,
                         .local_mem_bytes = LDS_BYTES, .max_work_group_size = cdna ? 256 : 1024,
                         .global_mem_bytes = (uint64_t)32 << 30, .max_alloc_bytes = (uint64_t)8 << 30};
    snprintf(d.name, sizeof d.name, "described %.60s", arch);
    snprintf(d.arch, sizeof d.arch, "%.60s", arch);
    return d;
}

/* Debian 12's clang, or 11's; NULL where neither is installed. */
static const char *clang_binary(void)
{
    return access("/usr/bin/clang-15", X_OK) == 0 ? "clang-15" : access("/usr/bin/clang-14", X_OK) == 0 ? "clang-14" : NULL;
}

/* Debian's AMD device libraries (rocm-device-libs, which tools/bootstrap.sh installs) */
#define DEVICE_LIBS "/usr/lib/x86_64-linux-gnu/amdgcn/bitcode"

/* The flags that link the device libraries into a program for arch, as clang does itself where
 * it finds them, so that the math functions are inlined and the registers and scratch reported
 * are the kernels' own: wave64 on CDNA, wave32 on RDNA. Debian's libraries (ROCm 5.2) predate
 * RDNA3 and have no ISA-version library for gfx11; that library only sets the ISA's version
 * constants, and gfx1030's stands in for it. */
static void device_lib_flags(const char *arch, char *out, size_t cap)
{
    char isa[128];
    snprintf(isa, sizeof isa, DEVICE_LIBS "/oclc_isa_version_%s.bc", arch + 3);
    if (access(isa, R_OK) != 0) snprintf(isa, sizeof isa, DEVICE_LIBS "/oclc_isa_version_1030.bc");
    const char *libs[] = {"opencl", "ocml", "ockl", "oclc_daz_opt_off", "oclc_finite_only_off",
                          "oclc_correctly_rounded_sqrt_on", "oclc_unsafe_math_off",
                          strncmp(arch, "gfx9", 4) == 0 ? "oclc_wavefrontsize64_on" : "oclc_wavefrontsize64_off",
                          "oclc_abi_version_400"};
    size_t used = (size_t)snprintf(out, cap, "-Xclang -mlink-builtin-bitcode -Xclang %s", isa);
    for (size_t i = 0; i < COUNT_OF(libs) && used < cap; i++)
        used += (size_t)snprintf(out + used, cap - used, " -Xclang -mlink-builtin-bitcode -Xclang " DEVICE_LIBS "/%s.bc",
                                 libs[i]);
}

/* Compiles the program text for the architecture; returns clang's exit status, the largest LDS
 * size it reports and the registers it spills (VGPRs and SGPRs, over every kernel). */
static int compile_for(const char *text, const char *options, const char *arch, long *lds, long *spills, char *log,
                       size_t cap)
{
    char source[] = "/tmp/megacl-amd-XXXXXX";
    int fd = mkstemp(source);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    char command[8192], libs[2048];
    device_lib_flags(arch, libs, sizeof libs);
    snprintf(command, sizeof command,
             "%s -x cl -cl-std=CL1.2 -target amdgcn-amd-amdhsa -mcpu=%s -nogpulib %s -Xclang -finclude-default-header "
             "-O3 -Rpass-analysis=kernel-resource-usage %s -c %s -o /dev/null 2>&1",
             clang_binary(), arch, libs, options, source);
    FILE *pipe = popen(command, "r");
    cr_assert_not_null(pipe);
    char line[1024];
    size_t used = 0;
    *lds = 0, *spills = 0;
    log[0] = '\0';
    while (fgets(line, sizeof line, pipe)) {
        const char *at = strstr(line, "LDS Size [bytes/block]: "), *spill = strstr(line, "GPRs Spill: ");
        if (at && atol(at + 24) > *lds) *lds = atol(at + 24);
        if (spill) *spills += atol(spill + 12);
        if ((strstr(line, "error") || strstr(line, " VGPRs: ") || strstr(line, "ScratchSize") ||
             (spill && atol(spill + 12))) &&
            used < cap)
            used += (size_t)snprintf(log + used, cap - used, "%s", line);
    }
    int status = pclose(pipe);
    unlink(source);
    return status;
}

/* The kernel sources of a family an AMD device may run: the embedded files under cl/<family>/
 * that are not helpers, less the tensor-core ones (named *_mma), which issue NVIDIA's mma.sync
 * and which the families' checks refuse on a device whose mma.sync probe did not pass. */
static int is_kernel_of(const mcl_family *f, const char *name)
{
    size_t len = strlen(f->name), name_len = strlen(name);
    if (strncmp(name, f->name, len) != 0 || name[len] != '/') return 0;
    if (name_len > 4 && strcmp(name + name_len - 4, "_mma") == 0) return 0;
    for (const char *const *h = f->helpers; h && *h; h++)
        if (strcmp(*h, name) == 0) return 0;
    return 1;
}

/* The head dim a bucket names ("d=32,s<=1024"), else 0. */
static long head_dim_of(const char *bucket)
{
    const char *d = strstr(bucket, "d=");
    return d ? atol(d + 2) : 0;
}

/* Registers a kernel may spill for an architecture: none, but for the one case no tile of the
 * space avoids (ACSR's dK/dV on RDNA3 spills 21 to 550 registers at every tile tried, its
 * private rows of scores and dP beside four D-slices; its entry holds the fewest), kept as a
 * ceiling so that nothing spills more. */
static long spill_ceiling(const char *arch, const char *source)
{
    return strcmp(arch, "gfx1100") == 0 && strcmp(source, "acsr/dkdv") == 0 ? 25 : 0;
}

static size_t check_entry(const mcl_db_entry *e)
{
    const mcl_family *f = mcl_family_find(e->family);
    cr_assert_not_null(f, "built-in entry of unknown family %s", e->family);
    mcl_device_info d = amd_device(e->key);
    mcl_param_block values;
    assert_ok(mcl_params_defaults(f, &d, &values, NULL));
    assert_ok(mcl_params_parse(f, e->params, &values));
    assert_ok(mcl_params_check(f, &values, &d));
    size_t compiled = 0;
    for (size_t i = 0; i < mcl_kernel_source_count; i++) {
        const char *name = mcl_kernel_sources[i].name;
        if (!is_kernel_of(f, name)) continue;
        mcl_defines defines = {0};
        mcl_define_params(&defines, f, &values, name);
        char head_dim[32]; /* EV_D, ACSR_D: the family's head-dim define */
        snprintf(head_dim, sizeof head_dim, "%sD", f->define_prefix);
        if (head_dim_of(e->bucket)) mcl_define(&defines, head_dim, head_dim_of(e->bucket));
        char *text;
        assert_ok(mcl_program_text(f, name, &text));
        long lds, spills;
        char log[4096];
        int status = compile_for(text, defines.text, e->key, &lds, &spills, log, sizeof log);
        free(text);
        cr_expect_eq(status, 0, "%s for %s with %s does not compile:\n%s", name, e->key, e->params, log);
        cr_expect_leq(lds, LDS_BYTES, "%s for %s with %s takes %ld bytes of LDS", name, e->key, e->params, lds);
        cr_expect_leq(spills, spill_ceiling(e->key, name), "%s for %s with %s spills %ld registers:\n%s", name, e->key,
                      e->params, spills, log);
        cr_log_info("%s %s %s %s: LDS %ld\n%s", e->key, e->family, e->bucket, name, lds, log);
        compiled++;
    }
    return compiled;
}

Test(amd, built_in_entries_are_legal_and_compile_for_their_architecture)
{
    cr_assert_not_null(clang_binary(), "no /usr/bin/clang-15 or clang-14: this check compiles for AMD with Debian's "
                                       "clang (tools/bootstrap.sh installs it)");
    cr_assert_eq(access(DEVICE_LIBS "/ocml.bc", R_OK), 0,
                 "no " DEVICE_LIBS ": this check links Debian's rocm-device-libs (tools/bootstrap.sh installs it)");
    mcl_tuning_db *db;
    assert_ok(mcl_tuning_db_parse(mcl_builtin_tuning_json, "built-in", &db));
    size_t entries = 0, compiled = 0;
    for (size_t i = 0; i < db->count; i++) {
        const mcl_db_entry *e = &db->entries[i];
        if (e->level != MCL_DB_ARCH || strncmp(e->key, "gfx", 3) != 0) continue;
        entries++;
        compiled += check_entry(e);
    }
    mcl_tuning_db_free(db);
    cr_assert_gt(entries, 0, "the built-in database has no AMD entry");
    cr_expect_gt(compiled, entries);
}
