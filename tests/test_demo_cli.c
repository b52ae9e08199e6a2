/* megacl demo's command line: an unknown option, a malformed value or options that do not go
 * together are refused with exit status 2 before any device work (MEGACL_DEVICE names no device,
 * so a command that made a context would exit 1 instead); --help prints the usage; a size beyond
 * the device's memory is refused before anything is allocated. */
#include "common.h"

#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/* The exit status of `megacl demo <args>` on `device` (a selector), its first line of output in
 * `first`. */
static int demo_on(const char *device, const char *args, char *first, size_t cap)
{
    char command[512];
    snprintf(command, sizeof command, "MEGACL_DEVICE=%s '%s' demo %s 2>&1", device, MEGACL_CLI, args);
    FILE *pipe = popen(command, "r");
    cr_assert_not_null(pipe);
    char line[512] = "";
    if (!fgets(line, sizeof line, pipe)) line[0] = '\0';
    while (fgetc(pipe) != EOF) {
    }
    int status = pclose(pipe);
    snprintf(first, cap, "%s", line);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* ... on a selector that names no device */
static int demo_exit(const char *args, char *first, size_t cap) { return demo_on("99:99", args, first, cap); }

Test(demo_cli, nonsense_is_refused_before_any_device_work)
{
    static const struct {
        const char *args, *says;
    } cases[] = {
        {"--bogus", "unknown argument '--bogus'"},
        {"--tokens", "--tokens needs a value"},
        {"--tokens abc", "--tokens takes a whole number"},
        {"--tokens 0", "--tokens takes a whole number"},
        {"--tokens -5", "--tokens takes a whole number"},
        {"--tokens 32x", "--tokens takes a whole number"},
        {"--tokens 99999999", "--tokens takes a whole number"},
        {"--dtype f16", "--dtype takes f32 or bf16"},
        {"--dtype ''", "--dtype needs a value"},
        {"--tokens 8 --max-tokens", "do not go together"},
        {"--tokens 8 --tokens 9", "given twice"},
        {"--max-tokens=1", "takes no value"},
        {"--json", "--json needs a value"},
        {"extra", "unknown argument 'extra'"},
    };
    for (size_t i = 0; i < COUNT_OF(cases); i++) {
        char first[512];
        int status = demo_exit(cases[i].args, first, sizeof first);
        cr_expect_eq(status, 2, "megacl demo %s: exit status %d (%s)", cases[i].args, status, first);
        cr_expect(strstr(first, cases[i].says), "megacl demo %s: says '%s', not '%s'", cases[i].args, first,
                  cases[i].says);
    }
}

/* The usage, and the device only looked for once the options are sound. */
Test(demo_cli, help_prints_the_usage_and_a_bad_device_fails_after_parsing)
{
    char first[512];
    cr_expect_eq(demo_exit("--help", first, sizeof first), 0);
    cr_expect(strstr(first, "usage: megacl demo"), "%s", first);
    cr_expect_eq(demo_exit("--tokens 8", first, sizeof first), 1, "a device that does not exist: %s", first);
}

/* A size beyond the device's memory is refused before anything is allocated, naming the need. */
Test(demo_cli, a_size_beyond_the_device_is_refused_with_its_need)
{
    char first[512];
    cr_expect_eq(demo_on(test_selector(), "--tokens 30000", first, sizeof first), 1, "%s", first);
    cr_expect(strstr(first, "N_res = 30000 does not fit") && strstr(first, "GiB"), "%s", first);
}
