/* derange.c — which sample's image each sample sees in the shuffled-image pass of the caption
 * evaluation: Sattolo's algorithm over numpy's PCG64 stream (eval.h; ALGORITHMS.md §12.3 for
 * the generator and its bounded draw).
 *
 * Why Sattolo: it draws uniformly among the cyclic permutations, all of which are derangements,
 * in one pass and with exactly n − 1 bounded draws, so the result is reproducible from the seed
 * alone (numpy: perm = list(range(n)); for i in range(n-1, 0, -1): j = interval(i-1);
 * perm[i], perm[j] = perm[j], perm[i], with interval() the masked rejection of §12.3). */
#include <string.h>

#include "../calib/rng.h"
#include "eval.h"

static void sattolo(qv_rng *r, size_t *a, size_t n)
{
    for (size_t i = n; i-- > 1;) {
        const size_t j = (size_t)qv_rng_interval(r, (uint64_t)(i - 1));
        const size_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

void qv_eval_derangement(uint64_t seed, size_t n, size_t *perm)
{
    for (size_t i = 0; i < n; i++)
        perm[i] = i;
    qv_rng r;
    qv_rng_seed(&r, seed);
    sattolo(&r, perm, n);
}

qv_status qv_eval_derange_images(const qv_caption_file *f, const size_t *order, size_t n, uint64_t seed,
                                 size_t *src)
{
    size_t max_images = 0;
    for (size_t k = 0; k < n; k++) {
        src[k] = k;
        max_images = QV_MAX(max_images, f->items[order[k]].n_images);
    }
    size_t *group = qv_malloc((n + 1) * sizeof *group, "derangement group");
    size_t *perm = qv_malloc((n + 1) * sizeof *perm, "derangement");
    if (!group || !perm) {
        qv_free(group);
        qv_free(perm);
        return QV_ERR_NOMEM;
    }
    qv_rng r;
    qv_rng_seed(&r, seed);
    qv_status st = QV_OK;
    size_t n_with = 0;
    /* groups by image count, in increasing order; one generator for all of them */
    for (size_t c = 1; c <= max_images && st == QV_OK; c++) {
        size_t g = 0;
        for (size_t k = 0; k < n; k++)
            if (f->items[order[k]].n_images == c)
                group[g++] = k;
        n_with += g;
        if (g == 1) {
            const qv_caption_item *it = &f->items[order[group[0]]];
            st = qv_fail(QV_ERR_INVALID, "%s:%zu: entry %zu is the only sample with %zu image%s: it cannot be given "
                         "another sample's images (--shuffle-images)", f->path, it->line, it->index, c, c == 1 ? "" : "s");
            break;
        }
        for (size_t i = 0; i < g; i++)
            perm[i] = i;
        sattolo(&r, perm, g);
        for (size_t i = 0; i < g; i++)
            src[group[i]] = group[perm[i]];
    }
    if (st == QV_OK && n_with == 0)
        st = qv_fail(QV_ERR_INVALID, "%s: no sample has an image: --shuffle-images has nothing to shuffle", f->path);
    qv_free(group);
    qv_free(perm);
    return st;
}
