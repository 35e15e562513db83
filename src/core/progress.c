/* progress.c — TTY progress bar with ETA, or one line per step (progress.h). */
#include "progress.h"
#include "prof.h"

#include <string.h>
#include <unistd.h>

const char *qv_progress_fmt_time(double s, char *buf, size_t n)
{
    if (s < 0 || s != s || s > 1e7)
        s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    else
        snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
    return buf;
}

void qv_progress_init(qv_progress *p, FILE *out, const char *label, int64_t total)
{
    memset(p, 0, sizeof *p);
    p->out = out;
    snprintf(p->label, sizeof p->label, "%s", label ? label : "");
    p->total = total;
    p->tty = out && isatty(fileno(out));
    p->t0 = qv_now_s();
}

static void draw(qv_progress *p, const char *what)
{
    double el = qv_now_s() - p->t0;
    char t1[32], t2[32];
    if (!p->tty) {
        if (p->total > 0)
            fprintf(p->out, "%s: %lld/%lld%s%s (%s elapsed)\n", p->label, (long long)p->done, (long long)p->total,
                    what ? " " : "", what ? what : "", qv_progress_fmt_time(el, t1, sizeof t1));
        else
            fprintf(p->out, "%s: %lld%s%s (%s elapsed)\n", p->label, (long long)p->done, what ? " " : "",
                    what ? what : "", qv_progress_fmt_time(el, t1, sizeof t1));
        fflush(p->out);
        return;
    }
    char line[160];
    int len;
    if (p->total > 0) {
        const int width = 30;
        double f = (double)p->done / (double)p->total;
        if (f > 1)
            f = 1;
        char bar[width + 1];
        int fill = (int)(f * width);
        for (int i = 0; i < width; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[width] = 0;
        double eta = p->done > 0 ? el / (double)p->done * (double)(p->total - p->done) : 0;
        len = snprintf(line, sizeof line, "\r%s [%s] %lld/%lld %3d%% %s ETA %s", p->label, bar, (long long)p->done,
                       (long long)p->total, (int)(f * 100), qv_progress_fmt_time(el, t1, sizeof t1),
                       qv_progress_fmt_time(eta, t2, sizeof t2));
    } else {
        len = snprintf(line, sizeof line, "\r%s %lld %s", p->label, (long long)p->done,
                       qv_progress_fmt_time(el, t1, sizeof t1));
    }
    if (len < 0)
        return;
    fputs(line, p->out);
    for (int i = len; i < p->last_len; i++)
        fputc(' ', p->out);
    p->last_len = len;
    fflush(p->out);
}

void qv_progress_step(qv_progress *p, int64_t n, const char *what)
{
    if (!p)
        return;
    p->done += n;
    if (!p->out)
        return;
    double t = qv_now_s();
    /* redraw a TTY bar at most 10 times a second, and always at the end */
    if (p->tty && t - p->last_draw < 0.1 && p->done < p->total)
        return;
    p->last_draw = t;
    draw(p, what);
}

void qv_progress_finish(qv_progress *p)
{
    if (!p || !p->out)
        return;
    if (p->tty) {
        draw(p, NULL);
        fputc('\n', p->out);
        fflush(p->out);
    }
}
