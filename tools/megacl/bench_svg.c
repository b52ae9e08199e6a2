/* megacl bench --svg: a chart of the run for a browser. One group per case and dtype, one bar
 * per timed implementation: its forward+backward median, scaled to the slowest implementation of
 * the group (cases differ by orders of magnitude, so one axis for all would flatten most of
 * them), a whisker from the fastest to the slowest run, and a label with the milliseconds and,
 * where megacl peak stored the device's ceilings, the fraction of the roofline reached. */
#include "bench.h"

#include <stdio.h>
#include <string.h>

enum { WIDTH = 980, LABEL_WIDTH = 150, BAR_SPACE = 470, BAR_HEIGHT = 14, BAR_STEP = 18, GROUP_TITLE = 20, GROUP_GAP = 10 };

static void put_escaped(FILE *f, const char *text)
{
    for (const char *c = text; *c; c++) {
        switch (*c) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&apos;", f); break;
        default: fputc(*c, f);
        }
    }
}

static const char *colour_of(const char *impl)
{
    if (strcmp(impl, "megacl") == 0) return "#1f6fb4";
    if (strcmp(impl, "unfused") == 0) return "#e8832a";
    if (strcmp(impl, "naive") == 0) return "#3a9a48";
    return "#888888";
}

static int timed(const bench_result *r) { return r->outcome == BENCH_TIMED; }

/* Results i and j are of the same group: the same workload, case and dtype. */
static int same_group(const bench_result *a, const bench_result *b)
{
    return a->w == b->w && strcmp(a->case_name, b->case_name) == 0 && a->c.dtype == b->c.dtype;
}

/* The end of the group starting at `first` (results of a case run one after the other). */
static size_t group_end(const bench_result *results, size_t count, size_t first)
{
    size_t end = first + 1;
    while (end < count && same_group(&results[first], &results[end])) end++;
    return end;
}

static double group_slowest(const bench_result *results, size_t first, size_t end)
{
    double slowest = 0.0;
    for (size_t i = first; i < end; i++)
        if (timed(&results[i]) && results[i].fwdbwd.max > slowest) slowest = results[i].fwdbwd.max;
    return slowest;
}

static int chart_height(const bench_result *results, size_t count)
{
    int height = 90, not_run = 0;
    for (size_t first = 0, end; first < count; first = end) {
        end = group_end(results, count, first);
        int bars = 0;
        for (size_t i = first; i < end; i++) bars += timed(&results[i]), not_run += !timed(&results[i]);
        if (bars) height += GROUP_TITLE + bars * BAR_STEP + GROUP_GAP;
    }
    return height + (not_run ? 24 + 16 * not_run : 0);
}

static void draw_bar(FILE *f, const bench_result *r, const bench_run_info *run, double slowest, int y)
{
    double scale = BAR_SPACE / slowest;
    int x0 = LABEL_WIDTH;
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\" class=\"impl\">", x0 - 8, y + 11);
    put_escaped(f, r->impl);
    fprintf(f, "</text>\n<rect class=\"bar\" x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"%s\"><title>", x0, y,
            r->fwdbwd.median * scale, BAR_HEIGHT, colour_of(r->impl));
    fprintf(f, "%s: median %.4f ms, min %.4f, max %.4f over %d runs</title></rect>\n", r->impl, r->fwdbwd.median,
            r->fwdbwd.min, r->fwdbwd.max, r->fwdbwd.reps);
    fprintf(f, "<line class=\"spread\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\"/>\n", x0 + r->fwdbwd.min * scale,
            x0 + r->fwdbwd.max * scale, y + BAR_HEIGHT / 2, y + BAR_HEIGHT / 2);
    fprintf(f, "<text x=\"%.1f\" y=\"%d\" class=\"value\">%.4g ms", x0 + r->fwdbwd.max * scale + 6, y + 11,
            r->fwdbwd.median);
    if (run->ceilings_stored) fprintf(f, ", %.0f%% of roofline", 100.0 * bench_roofline_fraction(r, &run->ceilings));
    if (!r->ok) fputs(", FAILED its check", f);
    fputs("</text>\n", f);
}

/* A group's title and bars; returns the height it took. */
static int draw_group(FILE *f, const bench_result *results, size_t first, size_t end, const bench_run_info *run, int y)
{
    double slowest = group_slowest(results, first, end);
    if (slowest <= 0.0) return 0;
    char shape[160];
    bench_shape_text(results[first].w, &results[first].c, shape, sizeof shape);
    fprintf(f, "<text x=\"10\" y=\"%d\" class=\"group\">", y + 14);
    put_escaped(f, results[first].w->name);
    fputs(" · ", f);
    put_escaped(f, results[first].case_name);
    fprintf(f, " · %s · ", mcl_dtype_name(results[first].c.dtype));
    put_escaped(f, shape);
    fputs("</text>\n", f);
    int bars = 0;
    for (size_t i = first; i < end; i++)
        if (timed(&results[i])) draw_bar(f, &results[i], run, slowest, y + GROUP_TITLE + BAR_STEP * bars++);
    return GROUP_TITLE + bars * BAR_STEP + GROUP_GAP;
}

/* The cases that were skipped or failed, each with its reason, under the bars. */
static void draw_not_run(FILE *f, const bench_result *results, size_t count, int y)
{
    int heading = 0;
    for (size_t i = 0; i < count; i++) {
        const bench_result *r = &results[i];
        if (timed(r)) continue;
        if (!heading) fprintf(f, "<text x=\"10\" y=\"%d\" class=\"group\">not timed</text>\n", y + 14), y += 24;
        heading = 1;
        fprintf(f, "<text x=\"20\" y=\"%d\" class=\"note\">", y + 11);
        put_escaped(f, r->w->name);
        fputs(" · ", f);
        put_escaped(f, r->case_name);
        fprintf(f, " · %s · ", mcl_dtype_name(r->c.dtype));
        put_escaped(f, r->impl);
        fputs(r->outcome == BENCH_SKIPPED ? " skipped: " : " failed: ", f);
        put_escaped(f, r->reason);
        fputs("</text>\n", f);
        y += 16;
    }
}

static void draw_heading(FILE *f, const bench_run_info *run)
{
    fputs("<text x=\"10\" y=\"24\" class=\"title\">megacl ", f);
    put_escaped(f, mcl_version_string());
    fputs(" bench on ", f);
    put_escaped(f, run->device->name);
    fputs("</text>\n<text x=\"10\" y=\"44\" class=\"note\">forward+backward median per case, each bar scaled to the "
          "slowest implementation of its case; whiskers: fastest to slowest run</text>\n",
          f);
    fprintf(f, "<text x=\"10\" y=\"62\" class=\"note\">%s</text>\n",
            run->ceilings_stored ? "roofline: the ceilings megacl peak stored for this device"
                                 : "no roofline fraction: run megacl peak to store the device's ceilings");
}

int bench_write_svg(const char *path, const bench_run_info *run, const bench_result *results, size_t count)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "megacl bench: cannot write %s\n", path);
        return 0;
    }
    int height = chart_height(results, count), y = 76;
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\">\n"
               "<style>text { font-family: sans-serif; font-size: 12px; fill: #222; } .title { font-size: 16px; "
               "font-weight: bold; } .group { font-weight: bold; } .note, .value { fill: #555; } "
               ".spread { stroke: #222; stroke-width: 1; }</style>\n"
               "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            WIDTH, height, WIDTH, height);
    draw_heading(f, run);
    for (size_t first = 0, end; first < count; first = end) {
        end = group_end(results, count, first);
        y += draw_group(f, results, first, end, run, y);
    }
    draw_not_run(f, results, count, y);
    fputs("</svg>\n", f);
    int ok = !ferror(f);
    ok &= fclose(f) == 0;
    if (!ok) fprintf(stderr, "megacl bench: writing %s failed\n", path);
    return ok;
}
