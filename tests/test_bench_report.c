/* megacl bench's reports from a tiny run on the device under test: the JSON report validates
 * against docs/bench-report.schema.json, the SVG chart is well-formed XML with one bar per timed
 * implementation, --compare reads the report back, a case too big for memory is skipped with its
 * reason, and nothing meant for a terminal reaches a pipe. The schema's subset (type, required,
 * properties, items, enum) and the XML's well-formedness are checked here, since neither a JSON
 * Schema nor an XML library is a dependency; each checker is shown to reject what it must. */
#include "common.h"
#include "files.h"

#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define SCHEMA_PATH MEGACL_TEST_DATA_DIR "/../../docs/bench-report.schema.json"

/* linear's unfused baseline has no bf16 path (CLBlast): the run times three implementations of
 * the case and skips one, so both kinds of entry are in the report */
#define TINY_BENCH "bench linear --shape 16,24,8 --dtype f32,bf16 --reps 2 --warmup 0 --kernels"

/* ---- running megacl ------------------------------------------------------------------------ */

/* The exit status of `megacl <args>` on the device under test; its stdout and stderr together
 * (malloc'd) in *output. */
static int run_megacl(const char *args, char **output)
{
    char command[2048];
    snprintf(command, sizeof command, "MEGACL_DEVICE=%s %s %s 2>&1", test_selector(), MEGACL_CLI_PATH, args);
    FILE *pipe = popen(command, "r");
    cr_assert_not_null(pipe, "cannot run megacl %s", args);
    size_t size = 0, cap = 4096;
    char *text = malloc(cap);
    for (int c; (c = fgetc(pipe)) != EOF;) {
        if (size + 1 == cap) text = realloc(text, cap *= 2);
        text[size++] = (char)c;
    }
    text[size] = '\0';
    int status = pclose(pipe);
    cr_assert(WIFEXITED(status), "megacl %s did not exit", args);
    *output = text;
    return WEXITSTATUS(status);
}

/* ---- the JSON Schema subset: type, required, properties, items, enum ---------------------- */

static int has_type(json_object *value, const char *type)
{
    json_type t = json_object_get_type(value);
    if (strcmp(type, "null") == 0) return t == json_type_null;
    if (strcmp(type, "boolean") == 0) return t == json_type_boolean;
    if (strcmp(type, "integer") == 0) return t == json_type_int;
    if (strcmp(type, "number") == 0) return t == json_type_int || t == json_type_double;
    if (strcmp(type, "string") == 0) return t == json_type_string;
    if (strcmp(type, "array") == 0) return t == json_type_array;
    if (strcmp(type, "object") == 0) return t == json_type_object;
    return 0;
}

static int type_matches(json_object *schema_type, json_object *value)
{
    if (json_object_is_type(schema_type, json_type_string)) return has_type(value, json_object_get_string(schema_type));
    for (size_t i = 0; i < json_object_array_length(schema_type); i++)
        if (has_type(value, json_object_get_string(json_object_array_get_idx(schema_type, i)))) return 1;
    return 0;
}

static int in_enum(json_object *choices, json_object *value)
{
    for (size_t i = 0; i < json_object_array_length(choices); i++)
        if (json_object_equal(json_object_array_get_idx(choices, i), value)) return 1;
    return 0;
}

/* The first violation of `schema` by `value` at `path`, written to `why`; 1 when it conforms. */
static int validate(json_object *schema, json_object *value, const char *path, char *why, size_t cap)
{
    json_object *rule, *child;
    if (json_object_object_get_ex(schema, "type", &rule) && !type_matches(rule, value))
        return snprintf(why, cap, "%s: not of type %s", path, json_object_to_json_string(rule)), 0;
    if (json_object_object_get_ex(schema, "enum", &rule) && !in_enum(rule, value))
        return snprintf(why, cap, "%s: %s not in %s", path, json_object_to_json_string(value),
                        json_object_to_json_string(rule)), 0;
    if (json_object_is_type(value, json_type_object) && json_object_object_get_ex(schema, "required", &rule))
        for (size_t i = 0; i < json_object_array_length(rule); i++) {
            const char *key = json_object_get_string(json_object_array_get_idx(rule, i));
            if (!json_object_object_get_ex(value, key, NULL)) return snprintf(why, cap, "%s: no %s", path, key), 0;
        }
    char inner[512];
    if (json_object_is_type(value, json_type_object) && json_object_object_get_ex(schema, "properties", &rule)) {
        json_object_object_foreach(rule, key, property) {
            snprintf(inner, sizeof inner, "%s.%s", path, key);
            if (json_object_object_get_ex(value, key, &child) && !validate(property, child, inner, why, cap)) return 0;
        }
    }
    if (json_object_is_type(value, json_type_array) && json_object_object_get_ex(schema, "items", &rule))
        for (size_t i = 0; i < json_object_array_length(value); i++) {
            snprintf(inner, sizeof inner, "%s[%zu]", path, i);
            if (!validate(rule, json_object_array_get_idx(value, i), inner, why, cap)) return 0;
        }
    return 1;
}

static json_object *load_json(const char *path)
{
    json_object *o = json_object_from_file(path);
    cr_assert_not_null(o, "%s is not JSON: %s", path, json_util_get_last_err());
    return o;
}

static json_object *member(json_object *o, const char *key)
{
    json_object *v = NULL;
    cr_assert(json_object_object_get_ex(o, key, &v), "no %s in %s", key, json_object_to_json_string(o));
    return v;
}

/* ---- XML well-formedness: balanced tags, quoted attributes, escaped text ------------------ */

/* An entity reference at text ("&amp;" ...): its length, or 0 for a bare '&'. */
static size_t entity_length(const char *text)
{
    static const char *const entities[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"};
    for (size_t i = 0; i < COUNT_OF(entities); i++)
        if (strncmp(text, entities[i], strlen(entities[i])) == 0) return strlen(entities[i]);
    if (text[1] == '#') {
        size_t n = 2;
        while (text[n] && strchr("0123456789abcdefABCDEFx", text[n])) n++;
        return text[n] == ';' && n > 2 ? n + 1 : 0;
    }
    return 0;
}

/* Attributes of a tag's inside (after its name): name="value" pairs, values without '<' or a
 * bare '&'. 0 with the reason otherwise. */
static int attributes_ok(const char *p, const char *end, char *why, size_t cap)
{
    while (p < end) {
        while (p < end && strchr(" \t\n/", *p)) p++;
        if (p == end) return 1;
        const char *eq = memchr(p, '=', (size_t)(end - p));
        if (!eq || eq + 1 >= end || (eq[1] != '"' && eq[1] != '\''))
            return snprintf(why, cap, "unquoted attribute at '%.20s'", p), 0;
        const char *close = memchr(eq + 2, eq[1], (size_t)(end - eq - 2));
        if (!close) return snprintf(why, cap, "unterminated attribute at '%.20s'", p), 0;
        for (const char *c = eq + 2; c < close; c++)
            if (*c == '<' || (*c == '&' && !entity_length(c))) return snprintf(why, cap, "raw %c in an attribute", *c), 0;
        p = close + 1;
    }
    return 1;
}

/* Whether text is well-formed XML in the subset an SVG writer uses (no CDATA, comments or
 * DOCTYPE), a little stricter than XML in wanting '>' escaped in text too; the reason in `why`
 * where not. *bars counts <rect class="bar" elements. */
static int xml_well_formed(const char *text, int *bars, char *why, size_t cap)
{
    char stack[64][32];
    int depth = 0, roots = 0;
    *bars = 0;
    for (const char *p = text; *p;) {
        if (*p == '&' && !entity_length(p)) return snprintf(why, cap, "bare & at '%.20s'", p), 0;
        if (*p == '>') return snprintf(why, cap, "raw > at '%.20s'", p), 0;
        if (*p != '<') {
            p++;
            continue;
        }
        const char *end = strchr(p, '>');
        if (!end) return snprintf(why, cap, "unterminated tag at '%.20s'", p), 0;
        if (p[1] == '?') {
            p = end + 1;
            continue;
        }
        int closing = p[1] == '/', empty = end[-1] == '/';
        const char *name = p + 1 + closing;
        size_t len = strcspn(name, " \t\n/>");
        if (len == 0 || len >= sizeof stack[0]) return snprintf(why, cap, "bad tag name at '%.20s'", p), 0;
        if (closing) {
            if (depth == 0 || strlen(stack[depth - 1]) != len || strncmp(stack[depth - 1], name, len) != 0)
                return snprintf(why, cap, "</%.*s> closes %s", (int)len, name, depth ? stack[depth - 1] : "nothing"), 0;
            depth--;
        } else {
            if (!attributes_ok(name + len, end - empty, why, cap)) return 0;
            if (depth == 0 && roots++) return snprintf(why, cap, "a second root element <%.*s>", (int)len, name), 0;
            *bars += strncmp(p, "<rect class=\"bar\"", 17) == 0;
            if (!empty) {
                if (depth == 64) return snprintf(why, cap, "nesting too deep"), 0;
                snprintf(stack[depth++], sizeof stack[0], "%.*s", (int)len, name);
            }
        }
        p = end + 1;
    }
    if (depth) return snprintf(why, cap, "<%s> never closed", stack[depth - 1]), 0;
    return roots == 1 ? 1 : (snprintf(why, cap, "no root element"), 0);
}

/* ---- the tests ---------------------------------------------------------------------------- */

Test(bench_report, checkers_reject_what_they_must)
{
    char why[256];
    int bars;
    cr_expect(xml_well_formed("<?xml version=\"1.0\"?><svg a=\"1\"><rect class=\"bar\" x=\"&amp;\"/><t>a &lt; b</t></svg>",
                              &bars, why, sizeof why), "%s", why);
    cr_expect_eq(bars, 1);
    static const char *const broken[] = {"<svg><g></svg></g>", "<svg>a & b</svg>", "<svg><t>", "<svg x=1></svg>",
                                         "<svg x=\"<\"></svg>", "<a></a><b></b>", "<svg>1 > 0</svg>"};
    for (size_t i = 0; i < COUNT_OF(broken); i++)
        cr_expect(!xml_well_formed(broken[i], &bars, why, sizeof why), "accepted %s", broken[i]);

    json_object *schema = load_json(SCHEMA_PATH);
    json_object *bad = json_tokener_parse("{\"report\": \"megacl bench\", \"megacl_version\": 1}");
    cr_expect(!validate(schema, bad, "$", why, sizeof why), "accepted a version that is a number");
    json_object_put(bad);
    bad = json_object_new_string("other");
    cr_expect(!validate(member(member(schema, "properties"), "report"), bad, "$.report", why, sizeof why) &&
                  strstr(why, "not in"),
              "%s", why);
    json_object_put(bad);
    bad = json_tokener_parse("{\"results\": [{\"workload\": \"layernorm\"}]}");
    cr_expect(!validate(member(member(schema, "properties"), "results"), member(bad, "results"), "$.results", why,
                        sizeof why) && strstr(why, "$.results[0]: no case"),
              "%s", why);
    json_object_put(bad);
    json_object_put(schema);
}

Test(bench_report, json_validates_and_svg_has_a_bar_per_timed_implementation)
{
    char *dir = test_temp_dir(), args[1024], *output, why[512];
    snprintf(args, sizeof args, TINY_BENCH " --json %s/report.json --svg %s/chart.svg", dir, dir);
    int status = run_megacl(args, &output);
    cr_assert_eq(status, 0, "megacl %s exited %d:\n%s", args, status, output);
    cr_expect(!strchr(output, '\r') && !strstr(output, "[1/"), "a progress line reached a pipe:\n%s", output);

    char path[600];
    snprintf(path, sizeof path, "%s/report.json", dir);
    json_object *report = load_json(path), *schema = load_json(SCHEMA_PATH);
    cr_expect(validate(schema, report, "$", why, sizeof why), "the report breaks the schema: %s", why);
    json_object *results = member(report, "results"), *not_run = member(report, "not_run");
    cr_expect_eq(json_object_array_length(results), 3, "megacl f32 and bf16, unfused f32");
    cr_expect_eq(json_object_array_length(not_run), 1, "unfused bf16");
    json_object *first = json_object_array_get_idx(results, 0), *shape = member(first, "shape");
    cr_expect_eq(json_object_get_int(member(shape, "M")), 16);
    cr_expect_eq(json_object_get_int(member(shape, "N")), 8);
    cr_expect_gt(json_object_array_length(member(first, "kernels")), 0, "--kernels gave no kernel");
    json_object *spread = member(first, "fwdbwd_ms");
    cr_expect_leq(json_object_get_double(member(spread, "min")), json_object_get_double(member(spread, "median")));
    cr_expect_leq(json_object_get_double(member(spread, "median")), json_object_get_double(member(spread, "max")));
    cr_expect(strstr(json_object_get_string(member(json_object_array_get_idx(not_run, 0), "reason")), "bf16"));

    snprintf(path, sizeof path, "%s/chart.svg", dir);
    char *svg = test_read_file(path);
    int bars = 0;
    cr_expect(xml_well_formed(svg, &bars, why, sizeof why), "the chart is not well-formed: %s", why);
    cr_expect_eq((size_t)bars, json_object_array_length(results), "bars %d for %zu timed implementations", bars,
                 json_object_array_length(results));
    free(svg), free(output);
    json_object_put(report), json_object_put(schema);
    test_remove_tree(dir);
}

Test(bench_report, compare_prints_the_ratio_per_case_and_implementation)
{
    char *dir = test_temp_dir(), args[1024], *output;
    snprintf(args, sizeof args, TINY_BENCH " --impl megacl --json %s/old.json", dir);
    cr_assert_eq(run_megacl(args, &output), 0, "%s", output);
    free(output);
    snprintf(args, sizeof args, TINY_BENCH " --impl megacl --compare %s/old.json", dir);
    cr_assert_eq(run_megacl(args, &output), 0, "%s", output);
    const char *table = strstr(output, "change against");
    cr_expect(table && strstr(table, "custom") && strstr(table, "megacl") && strstr(table, "bf16"), "%s", output);
    free(output);

    /* a file that is JSON but no report, and one that is not there: refused before any device work */
    snprintf(args, sizeof args, "bench linear --compare %s", SCHEMA_PATH);
    cr_expect_eq(run_megacl(args, &output), 2, "%s", output);
    cr_expect(strstr(output, "no megacl bench report"), "%s", output);
    free(output);
    snprintf(args, sizeof args, "bench linear --compare %s/none.json", dir);
    cr_expect_eq(run_megacl(args, &output), 2, "%s", output);
    cr_expect(strstr(output, "cannot read"), "%s", output);
    free(output);
    test_remove_tree(dir);
}

/* A case whose buffers or host reference cannot fit (a terabyte here) is skipped with what it
 * needs, before anything is allocated, and the report says so. */
Test(bench_report, a_case_beyond_memory_is_skipped_with_its_need)
{
    char *dir = test_temp_dir(), args[1024], *output, path[600];
    snprintf(args, sizeof args, "bench layernorm --shape 1000000,1000000 --dtype f32 --json %s/big.json", dir);
    cr_expect_eq(run_megacl(args, &output), 1, "nothing was timed:\n%s", output);
    cr_expect(strstr(output, "skipped") && strstr(output, " GB"), "%s", output);
    snprintf(path, sizeof path, "%s/big.json", dir);
    json_object *report = load_json(path), *not_run = member(report, "not_run");
    cr_assert_eq(json_object_array_length(not_run), 2, "megacl and naive");
    json_object *entry = json_object_array_get_idx(not_run, 0);
    cr_expect_str_eq(json_object_get_string(member(entry, "status")), "skipped");
    cr_expect(strstr(json_object_get_string(member(entry, "reason")), "GB"));
    json_object_put(report);
    free(output);
    test_remove_tree(dir);
}
