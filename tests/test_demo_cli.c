/* megacl demo's command line: an unknown option, a malformed value or options that do not go
 * together are refused with exit status 2 before any device work (MEGACL_DEVICE names no device,
 * so a command that made a context would exit 1 instead); --help prints the usage. */
#include "common.h"

#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/* The exit status of `megacl demo <args>`, its first line of output in `first` (may be NULL). */
static int demo_exit(const char *args, char *first, size_t cap)
{
    char command[512];
    snprintf(command, sizeof command, "MEGACL_DEVICE=99:99 '%s' demo %s 2>&1", MEGACL_CLI, args);
    FILE *pipe = popen(command, "r");
    cr_assert_not_null(pipe);
    char line[512] = "";
    if (!fgets(line, sizeof line, pipe)) line[0] = '\0';
    while (fgetc(pipe) != EOF) {
    }
    int status = pclose(pipe);
    if (first) snprintf(first, cap, "%s", line);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

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
