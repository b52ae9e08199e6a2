/* The kernel families' declarations against their kernel sources: every kernel parameter's
 * #ifndef default in its source is the declared default, every #ifndef of a family's sources is
 * a parameter of that source or a define the host derives for it, host choices appear in no
 * source, and the registry's names, sources, legal values and defaults hold together. */
#include "common.h"

#include "runtime/family.h"
#include "runtime/params.h"
#include "runtime/program.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static int in_family(const mcl_family *f, const char *source)
{
    size_t len = strlen(f->name);
    return strncmp(source, f->name, len) == 0 && source[len] == '/';
}

/* The #ifndef NAME / #define NAME VALUE pairs of a source, in order. */
typedef struct fallback {
    char name[64];
    long value;
} fallback;

static size_t fallbacks_of(const char *text, fallback *out, size_t cap)
{
    size_t n = 0;
    for (const char *p = strstr(text, "#ifndef "); p && n < cap; p = strstr(p + 1, "#ifndef ")) {
        const char *name = p + 8, *end = name;
        while (isalnum((unsigned char)*end) || *end == '_') end++;
        size_t len = (size_t)(end - name);
        char define[96];
        snprintf(define, sizeof define, "#define %.*s ", (int)len, name);
        const char *def = strstr(end, define);
        cr_assert(def && len < sizeof out[n].name, "#ifndef %.*s has no #define after it", (int)len, name);
        char *stop;
        out[n].value = strtol(def + strlen(define), &stop, 10);
        cr_assert_neq(stop, def + strlen(define), "%.*s's default is not a number", (int)len, name);
        snprintf(out[n].name, sizeof out[n].name, "%.*s", (int)len, name);
        n++;
    }
    return n;
}

static const mcl_param_decl *parameter_named(const mcl_family *f, const char *define)
{
    size_t len = strlen(f->define_prefix);
    if (strncmp(define, f->define_prefix, len) != 0) return NULL;
    for (size_t i = 0; i < f->param_count; i++)
        if (strcmp(f->params[i].name, define + len) == 0) return &f->params[i];
    return NULL;
}

static int derived_for(const mcl_family *f, const char *define, const char *source)
{
    for (size_t i = 0; i < f->derived_count; i++)
        if (strcmp(f->derived[i].name, define) == 0 && (!f->derived[i].kernel || strcmp(f->derived[i].kernel, source) == 0))
            return 1;
    return 0;
}

/* Every #ifndef of the family's sources is a parameter of that source with the declared default,
 * or a define derived for it; returns how many parameter defaults the sources carry. */
static size_t check_sources(const mcl_family *f)
{
    size_t found = 0;
    for (size_t s = 0; s < mcl_kernel_source_count; s++) {
        const char *source = mcl_kernel_sources[s].name;
        if (!in_family(f, source)) continue;
        fallback defaults[64];
        size_t n = fallbacks_of(mcl_kernel_sources[s].text, defaults, 64);
        for (size_t i = 0; i < n; i++) {
            const mcl_param_decl *p = parameter_named(f, defaults[i].name);
            if (p && p->kernel && strcmp(p->kernel, source) == 0) {
                cr_expect_eq(defaults[i].value, p->default_value, "cl/%s.cl: %s defaults to %ld, its declaration to %d",
                             source, defaults[i].name, defaults[i].value, p->default_value);
                found++;
                continue;
            }
            cr_expect(derived_for(f, defaults[i].name, source),
                      "cl/%s.cl: #ifndef %s is neither a parameter of that source nor a define %s derives for it",
                      source, defaults[i].name, f->name);
        }
    }
    return found;
}

/* The source a parameter is a define of contains its #ifndef; a host choice is in no source. */
static void check_parameter(const mcl_family *f, const mcl_param_decl *p)
{
    char define[96], guard[112];
    snprintf(define, sizeof define, "%s%s", f->define_prefix, p->name);
    snprintf(guard, sizeof guard, "#ifndef %s\n", define);
    int legal = 0;
    for (size_t i = 0; i < p->legal_count; i++) legal |= p->legal[i] == p->default_value;
    cr_expect(legal, "%s: %s's default %d is not one of its legal values", f->name, p->name, p->default_value);
    if (p->kernel) {
        const char *text = mcl_kernel_source_text(p->kernel);
        cr_expect(text && in_family(f, p->kernel), "%s: %s names cl/%s.cl, no source of the family", f->name, p->name,
                  p->kernel);
        cr_expect(text && strstr(text, guard), "cl/%s.cl has no #ifndef %s", p->kernel, define);
        return;
    }
    for (size_t s = 0; s < mcl_kernel_source_count; s++) {
        const char *text = mcl_kernel_sources[s].text, *at = strstr(text, define);
        int whole_word = at && !isalnum((unsigned char)at[strlen(define)]) && at[strlen(define)] != '_';
        cr_expect(!in_family(f, mcl_kernel_sources[s].name) || !whole_word,
                  "%s: the host choice %s appears in cl/%s.cl", f->name, define, mcl_kernel_sources[s].name);
    }
}

Test(families, kernel_defaults_are_the_declarations)
{
    for (size_t i = 0; i < mcl_family_registry_count; i++) {
        const mcl_family *f = mcl_family_registry[i];
        size_t kernel_params = 0;
        for (size_t p = 0; p < f->param_count; p++) {
            check_parameter(f, &f->params[p]);
            kernel_params += f->params[p].kernel != NULL;
        }
        size_t defaults = check_sources(f);
        cr_expect_eq(defaults, kernel_params, "%s: %zu kernel parameters, %zu defaults in its sources", f->name,
                     kernel_params, defaults);
    }
}

Test(families, registry_names_sources_and_values_hold_together)
{
    for (size_t i = 0; i < mcl_family_registry_count; i++) {
        const mcl_family *f = mcl_family_registry[i];
        cr_expect_eq(mcl_family_find(f->name), f, "%s is found by its name", f->name);
        for (size_t j = 0; j < i; j++) cr_expect_str_neq(mcl_family_registry[j]->name, f->name, "two families %s", f->name);
        cr_expect_eq(f->values_size, f->param_count * sizeof(int), "%s: a parameter struct of ints", f->name);
        for (const char *const *h = f->helpers; h && *h; h++) /* the family's own, or shared at cl/ */
            cr_expect(mcl_kernel_source_text(*h) && (in_family(f, *h) || !strchr(*h, '/')),
                      "%s: helper cl/%s.cl missing", f->name, *h);
        for (size_t d = 0; d < f->derived_count; d++)
            cr_expect(!f->derived[d].kernel || mcl_kernel_source_text(f->derived[d].kernel),
                      "%s: %s names a missing source", f->name, f->derived[d].name);
        int work_group_declared = !f->work_group;
        for (size_t p = 0; p < f->param_count; p++)
            work_group_declared |= f->work_group && strcmp(f->params[p].name, f->work_group) == 0;
        cr_expect(work_group_declared, "%s: the work-group parameter %s is declared", f->name, f->work_group);
        mcl_param_block values;
        char text[1024];
        for (size_t p = 0; p < f->param_count; p++) mcl_param_set(f, &values, p, f->params[p].default_value);
        assert_ok(mcl_params_format(f, &values, text, sizeof text));
        mcl_param_block parsed;
        assert_ok(mcl_params_parse(f, text, &parsed));
        cr_expect_eq(memcmp(&parsed, &values, f->values_size), 0, "%s: '%s' parses back to itself", f->name, text);
    }
    cr_expect_null(mcl_family_find("no such family"));
}

/* A family's work-group parameter is held to the device's limit: the glu defaults (WG = 256) on a
 * device of 128 work-items are refused, and WG = 128 is accepted there. */
Test(families, the_work_group_parameter_is_held_to_the_device)
{
    const mcl_family *glu = mcl_family_find("glu");
    cr_assert(glu && glu->work_group);
    mcl_device_info small = {.name = "a small device", .max_work_group_size = 128, .local_mem_bytes = 32768};
    mcl_param_block values;
    for (size_t p = 0; p < glu->param_count; p++) mcl_param_set(glu, &values, p, glu->params[p].default_value);
    assert_status(mcl_params_check(glu, &values, &small), MCL_ERR_INVALID_ARGUMENT);
    cr_expect(strstr(mcl_last_error(), "work-group size"), "%s", mcl_last_error());
    assert_ok(mcl_params_parse(glu, "WG=128", &values));
    assert_ok(mcl_params_check(glu, &values, &small));
}

/* What the experimental API lists is the registry. */
Test(families, the_public_listing_is_the_registry)
{
    cr_assert_eq(mcl_family_count(), mcl_family_registry_count);
    for (size_t i = 0; i < mcl_family_count(); i++) {
        mcl_family_info info;
        assert_ok(mcl_family_get(i, &info));
        const mcl_family *f = mcl_family_registry[i];
        cr_expect_str_eq(info.name, f->name);
        cr_expect_eq(info.param_count, f->param_count);
        for (size_t p = 0; p < info.param_count; p++) {
            mcl_param_info param;
            assert_ok(mcl_family_param(i, p, &param));
            cr_expect_str_eq(param.name, f->params[p].name);
            cr_expect_eq(param.default_value, f->params[p].default_value);
        }
        mcl_param_info none;
        assert_status(mcl_family_param(i, info.param_count, &none), MCL_ERR_INVALID_ARGUMENT);
    }
    mcl_family_info none;
    assert_status(mcl_family_get(mcl_family_count(), &none), MCL_ERR_INVALID_ARGUMENT);
    assert_status(mcl_family_get(0, NULL), MCL_ERR_NULL_POINTER);
}

/* The chosen parameters of a family at a shape, and the errors of a wrong family, rank or dtype. */
Test(families, chosen_parameters_name_their_origin)
{
    mcl_context *ctx = test_context();
    const size_t shape[2] = {147456, 128};
    mcl_param_choice choice;
    assert_ok(mcl_context_set_params(ctx, "layernorm", "TPR=8"));
    assert_ok(mcl_context_get_params(ctx, "layernorm", MCL_F32, shape, 2, &choice));
    cr_expect(strstr(choice.values, "TPR=8,"), "%s", choice.values);
    cr_expect_str_eq(choice.origin, "override");
    assert_status(mcl_context_get_params(ctx, "layernorm", MCL_F32, shape, 3, &choice), MCL_ERR_INVALID_SIZE);
    assert_status(mcl_context_get_params(ctx, "nope", MCL_F32, shape, 2, &choice), MCL_ERR_INVALID_ARGUMENT);
    assert_status(mcl_context_get_params(ctx, "layernorm", (mcl_dtype)9, shape, 2, &choice), MCL_ERR_UNSUPPORTED_DTYPE);
    assert_status(mcl_context_get_params(ctx, "layernorm", MCL_F32, NULL, 2, &choice), MCL_ERR_NULL_POINTER);
    mcl_context_release(ctx);
}
