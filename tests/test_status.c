/* Statuses, versions, dtypes and the per-thread error message. */
#include "common.h"

#include <pthread.h>
#include <string.h>

static const mcl_status all_statuses[] = {
#define LIST(name, value, message) MCL_##name,
    MCL_STATUS_MAP(LIST)
#undef LIST
};

Test(status, names_and_messages_come_from_one_list)
{
    size_t n = sizeof all_statuses / sizeof all_statuses[0];
    cr_assert_eq(all_statuses[0], MCL_OK);
    cr_assert_eq(MCL_OK, 0);
    for (size_t i = 0; i < n; i++) {
        const char *name = mcl_status_name(all_statuses[i]);
        cr_assert_eq(strncmp(name, "MCL_", 4), 0, "%s", name);
        cr_assert_gt(strlen(mcl_status_str(all_statuses[i])), 5);
        if (i > 0) cr_assert_lt(all_statuses[i], 0, "%s is not negative", name);
        for (size_t j = 0; j < i; j++) cr_assert_neq(all_statuses[i], all_statuses[j]);
    }
    cr_assert_str_eq(mcl_status_name(MCL_ERR_BUFFER_TOO_SMALL), "MCL_ERR_BUFFER_TOO_SMALL");
    cr_assert_str_eq(mcl_status_name((mcl_status)-999), "MCL_UNKNOWN_STATUS");
    cr_assert_str_eq(mcl_status_str((mcl_status)-999), "unknown status");
}

Test(status, version_matches_the_header)
{
    cr_assert_eq(mcl_version(), MCL_VERSION_NUMBER);
    cr_assert_str_eq(mcl_version_string(), MCL_VERSION_STRING);
}

Test(status, dtypes)
{
    cr_assert_eq(mcl_dtype_size(MCL_F32), 4);
    cr_assert_eq(mcl_dtype_size(MCL_BF16), 2);
    cr_assert_eq(mcl_dtype_size(MCL_F16), 2);
    cr_assert_eq(mcl_dtype_size((mcl_dtype)9), 0);
    cr_assert_str_eq(mcl_dtype_name(MCL_BF16), "bf16");
    cr_assert_str_eq(mcl_dtype_name((mcl_dtype)9), "?");
}

static void *fail_on_other_thread(void *arg)
{
    (void)arg;
    size_t count;
    mcl_status status = mcl_devices_list(NULL, 3, &count); /* fails before touching OpenCL */
    return (void *)(intptr_t)(status == MCL_ERR_NULL_POINTER &&
                              strstr(mcl_last_error(), "infos is NULL") != NULL);
}

Test(status, last_error_is_per_thread)
{
    assert_status(mcl_context_create(NULL, NULL), MCL_ERR_NULL_POINTER);
    char mine[1024];
    strcpy(mine, mcl_last_error());
    cr_assert(strstr(mine, "context is NULL"), "%s", mine);
    pthread_t thread;
    void *ok;
    cr_assert_eq(pthread_create(&thread, NULL, fail_on_other_thread, NULL), 0);
    pthread_join(thread, &ok);
    cr_assert(ok, "the other thread saw its own message");
    cr_assert_str_eq(mcl_last_error(), mine, "this thread's message changed");
}
