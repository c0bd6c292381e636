/* The TIES and linear inner loops of teacher/merge.c at one x86 vector
 * width. merge.c includes this file twice, for AVX2 (MK_LANES 8) and for
 * AVX-512 (MK_LANES 16), with MK(name) giving each copy its own names and
 * MK_TARGET its target attribute, and calls a copy only on a CPU that has
 * its instructions. Each loop computes what its portable counterpart in
 * merge.c computes (merge_scan_ref, merge_ties_ref, merge_linear_ref), lane
 * by lane, in the same order, so every path gives the same bits; the
 * ragged end of a range is left to those counterparts.
 *
 * Arithmetic is written with GCC/Clang vector extensions; intrinsics only
 * where they give instructions the extensions do not (float <-> double
 * halves, masks, stream compaction). */

#define MK_INLINE static inline __attribute__((always_inline)) MK_TARGET

typedef float MK(vf) __attribute__((vector_size(4 * MK_LANES)));
typedef int32_t MK(vi) __attribute__((vector_size(4 * MK_LANES)));
typedef uint32_t MK(vu) __attribute__((vector_size(4 * MK_LANES)));
/* Half as many doubles: a float vector widens into two of these. */
typedef double MK(vd) __attribute__((vector_size(4 * MK_LANES)));
typedef int64_t MK(vl) __attribute__((vector_size(4 * MK_LANES)));

MK_INLINE MK(vf) MK(load)(const float *p)
{
    MK(vf) v;
    memcpy(&v, p, sizeof v);
    return v;
}

MK_INLINE void MK(store)(float *p, MK(vf) v) { memcpy(p, &v, sizeof v); }

/* |v| as integer bits, which order like the magnitudes. */
MK_INLINE MK(vi) MK(mag)(MK(vf) v) { return (MK(vi))v & 0x7fffffff; }

/* v where its magnitude bits reach thr, else +0. */
MK_INLINE MK(vf) MK(trim)(MK(vf) v, int32_t thr)
{
    return (MK(vf))((MK(vi))v & (MK(mag)(v) >= thr));
}

/* A running gather: merge_gather's state in locals (the compaction's
 * stores may alias any memory, so fields kept in memory would be read
 * again for every vector), the count above the bracket per lane. */
typedef struct MK(gath) {
    uint32_t *cand, *idx;
    size_t nc;
    int32_t lom1, hi; /* the bracket [lom1 + 1, hi] */
    MK(vi) above;
} MK(gath);

/* The indices j .. j + MK_LANES - 1. */
MK_INLINE MK(vu) MK(index)(size_t j)
{
    MK(vu) v;
    for (int l = 0; l < MK_LANES; l++)
        v[l] = (uint32_t)l;
    return v + (uint32_t)j;
}

#if MK_LANES == 8

MK_INLINE MK(vd) MK(lo)(MK(vf) v) { return (MK(vd))_mm256_cvtps_pd(_mm256_castps256_ps128((__m256)v)); }
MK_INLINE MK(vd) MK(hi)(MK(vf) v) { return (MK(vd))_mm256_cvtps_pd(_mm256_extractf128_ps((__m256)v, 1)); }

/* Masks (all ones or zero) of the low and high halves, widened. */
MK_INLINE MK(vl) MK(mlo)(MK(vi) v) { return (MK(vl))_mm256_cvtepi32_epi64(_mm256_castsi256_si128((__m256i)v)); }
MK_INLINE MK(vl) MK(mhi)(MK(vi) v) { return (MK(vl))_mm256_cvtepi32_epi64(_mm256_extracti128_si256((__m256i)v, 1)); }

/* Round two double halves back to one float vector. */
MK_INLINE MK(vf) MK(narrow)(MK(vd) a, MK(vd) b)
{
    return (MK(vf))_mm256_set_m128(_mm256_cvtpd_ps((__m256d)b), _mm256_cvtpd_ps((__m256d)a));
}

/* Whether any lane of a mask (all ones or zero) is set. */
MK_INLINE int MK(any)(MK(vi) m) { return !_mm256_testz_si256((__m256i)m, (__m256i)m); }

/* Count u above the bracket and append those inside, with their indices,
 * contiguously (see merge_gather_one): the lanes are moved together by a
 * permutation looked up from their 8-bit mask, and whole vectors stored;
 * the regions have room since nc never passes the entries read. */
MK_INLINE void MK(gather)(MK(gath) *g, MK(vi) u, size_t j)
{
    MK(vi) over = u > g->hi;
    MK(vi) in = (u > g->lom1) & ~over;
    g->above -= over;
    unsigned bits = (unsigned)_mm256_movemask_ps((__m256)in);
    __m256i perm = _mm256_load_si256((const __m256i *)merge_lut8[bits]);
    __m256i iv = (__m256i)MK(index)(j);
    _mm256_storeu_si256((__m256i *)(g->cand + g->nc), _mm256_permutevar8x32_epi32((__m256i)u, perm));
    _mm256_storeu_si256((__m256i *)(g->idx + g->nc), _mm256_permutevar8x32_epi32(iv, perm));
    g->nc += (unsigned)__builtin_popcount(bits);
}

#else

MK_INLINE MK(vd) MK(lo)(MK(vf) v) { return (MK(vd))_mm512_cvtps_pd(_mm512_castps512_ps256((__m512)v)); }
MK_INLINE MK(vd) MK(hi)(MK(vf) v)
{
    __m256d h = _mm512_extractf64x4_pd(_mm512_castps_pd((__m512)v), 1);
    return (MK(vd))_mm512_cvtps_pd(_mm256_castpd_ps(h));
}

MK_INLINE MK(vl) MK(mlo)(MK(vi) v) { return (MK(vl))_mm512_cvtepi32_epi64(_mm512_castsi512_si256((__m512i)v)); }
MK_INLINE MK(vl) MK(mhi)(MK(vi) v) { return (MK(vl))_mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64((__m512i)v, 1)); }

MK_INLINE MK(vf) MK(narrow)(MK(vd) a, MK(vd) b)
{
    __m512d lo = _mm512_castps_pd(_mm512_castps256_ps512(_mm512_cvtpd_ps((__m512d)a)));
    __m256d hi = _mm256_castps_pd(_mm512_cvtpd_ps((__m512d)b));
    return (MK(vf))_mm512_castpd_ps(_mm512_insertf64x4(lo, hi, 1));
}

MK_INLINE int MK(any)(MK(vi) m) { return _mm512_test_epi32_mask((__m512i)m, (__m512i)m) != 0; }

/* As the AVX2 one, with mask registers and the compress instruction. */
MK_INLINE void MK(gather)(MK(gath) *g, MK(vi) u, size_t j)
{
    __m512i uv = (__m512i)u;
    __mmask16 over = _mm512_cmpgt_epi32_mask(uv, _mm512_set1_epi32(g->hi));
    __mmask16 in = _mm512_mask_cmpgt_epi32_mask((__mmask16)~over, uv, _mm512_set1_epi32(g->lom1));
    g->above = (MK(vi))_mm512_mask_add_epi32((__m512i)g->above, over, (__m512i)g->above,
                                             _mm512_set1_epi32(1));
    _mm512_storeu_si512(g->cand + g->nc, _mm512_maskz_compress_epi32(in, uv));
    _mm512_storeu_si512(g->idx + g->nc, _mm512_maskz_compress_epi32(in, (__m512i)MK(index)(j)));
    g->nc += (unsigned)__builtin_popcount(in);
}

#endif

MK_INLINE MK(gath) MK(gath_start)(const merge_gather *g)
{
    return (MK(gath)){.cand = g->cand, .idx = g->idx, .nc = g->nc, .lom1 = g->lo - 1, .hi = g->hi};
}

MK_INLINE void MK(gath_end)(const MK(gath) *s, merge_gather *g)
{
    g->nc = s->nc;
    for (int l = 0; l < MK_LANES; l++)
        g->above += (uint32_t)s->above[l];
}

/* merge_scan_ref, vectorised. */
MK_TARGET static void MK(scan)(const float *x, const float *b, size_t j0, size_t j1,
                               merge_gather *g)
{
    MK(gath) s = MK(gath_start)(g);
    MK(vi) bad = {0};
    size_t j = j0;
    for (; j + MK_LANES <= j1; j += MK_LANES) {
        MK(vf) xv = MK(load)(x + j);
        bad |= ((MK(vi))xv & 0x7f800000) == 0x7f800000;
        MK(gather)(&s, MK(mag)(xv - MK(load)(b + j)), j);
    }
    MK(gath_end)(&s, g);
    g->bad |= MK(any)(bad);
    merge_scan_ref(x, b, j, j1, g);
}

/* The inputs of a TIES loop: data, thresholds, weights (see merge_pass). */
typedef struct MK(in) {
    const float *const *x;
    const int32_t *thr;
    const double *wd;
    const float *wf;
} MK(in);

MK_INLINE MK(vf) MK(tau)(const MK(in) *in, int i, size_t j, MK(vf) tb)
{
    return MK(trim)(MK(load)(in->x[i] + j) - tb, in->thr[i]);
}

/* The vote's sign (merge_vote: the weighted sum in double), as the sign
 * bit of each lane. */
MK_INLINE MK(vi) MK(vote_d)(const MK(in) *in, int m, size_t j, MK(vf) tb)
{
    MK(vd) s0 = {0}, s1 = {0};
    for (int i = 0; i < m; i++) {
        MK(vf) t = MK(tau)(in, i, j, tb);
        s0 += in->wd[i] * MK(lo)(t);
        s1 += in->wd[i] * MK(hi)(t);
    }
    /* The sum is never -0, so its sign bit survives rounding to float even
     * where the value underflows. */
    return (MK(vi))MK(narrow)(s0, s1) & INT32_MIN;
}

/* The same sign, from float32 where that is certain. With the weights
 * scaled as wf (w_i 2^-e, rounded), s = sum wf_i t_i and a = sum |wf_i t_i|
 * in float32 differ from the exact 2^-e sum w_i t_i by at most
 * (m + 1.01) 2^-24 a + m 2^-149: each product and sum errs by 2^-24
 * relative, a subnormal product by 2^-150 absolute, sums of floats are
 * exact when subnormal. So where |s| > 2 (m + 2) 2^-24 a + 2^-126, the
 * exact sum has s's sign and a magnitude far above the error of the double
 * sum (m 2^-53 relative to a), which so has it too. Lanes where some t_i
 * is non-zero and that fails send the whole vector to vote_d; lanes whose
 * t_i are all zero have no agreeing input, so their sign does not matter. */
MK_INLINE MK(vi) MK(vote_f)(const MK(in) *in, int m, size_t j, MK(vf) tb)
{
    /* The sums start from the first term, not from +0: only their sign
     * where they are far from 0 is used. */
    MK(vf) t = MK(tau)(in, 0, j, tb), s = in->wf[0] * t, a = (MK(vf))MK(mag)(s);
    MK(vi) nz = MK(mag)(t);
    for (int i = 1; i < m; i++) {
        t = MK(tau)(in, i, j, tb);
        MK(vf) prod = in->wf[i] * t;
        s += prod;
        a += (MK(vf))MK(mag)(prod);
        nz |= MK(mag)(t);
    }
    const float c = (float)(2 * (m + 2)) * 0x1p-24f;
    MK(vi) unsure = (nz != 0) & ((MK(vf))MK(mag)(s) <= c * a + 0x1p-126f);
    if (__builtin_expect(MK(any)(unsure), 0))
        return MK(vote_d)(in, m, j, tb);
    return (MK(vi))s & INT32_MIN;
}

/* The disjoint mean of one vector in float32 (merge_entry_f), added to ob. */
MK_INLINE MK(vf) MK(mean_f)(const MK(in) *in, int m, size_t j, MK(vf) tb, MK(vi) neg,
                            MK(vf) ob, float lam)
{
    /* den starts from its first term: the weights are positive, so +0 +
     * that term is that term. */
    MK(vf) num = {0}, den = {0};
    for (int i = 0; i < m; i++) {
        MK(vf) t = MK(tau)(in, i, j, tb);
        MK(vi) agree = ((MK(vi))t ^ neg) > 0;
        MK(vf) w = (MK(vf))((MK(vi))((MK(vf)){0} + in->wf[i]) & agree);
        num += (MK(vf))((MK(vi))(in->wf[i] * t) & agree);
        den = i ? den + w : w;
    }
    MK(vi) some = den > 0.0f;
    den = (MK(vf))(((MK(vi))den & some) | ((MK(vi))((MK(vf)){0} + 1.0f) & ~some));
    return ob + lam * (num / den);
}

/* The same in double (merge_entry_d). */
MK_INLINE MK(vf) MK(mean_d)(const MK(in) *in, int m, size_t j, MK(vf) tb, MK(vi) neg,
                            MK(vf) ob, double lam)
{
    MK(vd) n0 = {0}, n1 = {0}, d0 = {0}, d1 = {0};
    const MK(vd) one = (MK(vd)){0} + 1.0;
    for (int i = 0; i < m; i++) {
        MK(vf) t = MK(tau)(in, i, j, tb);
        MK(vi) agree = ((MK(vi))t ^ neg) > 0;
        MK(vl) a0 = MK(mlo)(agree), a1 = MK(mhi)(agree);
        MK(vd) w = (MK(vd)){0} + in->wd[i];
        n0 += (MK(vd))((MK(vl))(in->wd[i] * MK(lo)(t)) & a0);
        n1 += (MK(vd))((MK(vl))(in->wd[i] * MK(hi)(t)) & a1);
        d0 += (MK(vd))((MK(vl))w & a0);
        d1 += (MK(vd))((MK(vl))w & a1);
    }
    MK(vl) s0 = d0 > 0.0, s1 = d1 > 0.0;
    d0 = (MK(vd))(((MK(vl))d0 & s0) | ((MK(vl))one & ~s0));
    d1 = (MK(vd))(((MK(vl))d1 & s1) | ((MK(vl))one & ~s1));
    return MK(narrow)(MK(lo)(ob) + lam * (n0 / d0), MK(hi)(ob) + lam * (n1 / d1));
}

/* merge_ties_ref, vectorised; m, gathering and dmean are constants where
 * this is inlined, so the common cases get their own straight-line loops.
 * With dmean the weights may be too far apart for float32 products, so
 * the vote is summed in double directly. */
MK_INLINE void MK(ties_loop)(const merge_pass *p, size_t j0, size_t j1, merge_gather *g,
                             const int m, const int gathering, const int dmean)
{
    /* What the loop reads of *p, in locals: the compaction's stores may
     * alias any memory, so what it read through p would be read again for
     * every vector. With m a small constant the arrays become registers. */
    enum { NL = 4 };
    const int local = m <= NL;
    const float *xl[NL] = {0};
    int32_t tl[NL] = {0};
    double wdl[NL] = {0};
    float wfl[NL] = {0};
    for (int i = 0; local && i < m; i++) {
        xl[i] = p->x[i];
        tl[i] = p->thr[i];
        wdl[i] = p->wd[i];
        wfl[i] = p->wf[i];
    }
    const MK(in) in = local ? (MK(in)){xl, tl, wdl, wfl} : (MK(in)){p->x, p->thr, p->wd, p->wf};
    const float *tbp = p->tb, *obp = p->ob;
    float *out = p->out, lam = p->lam;
    double lamd = p->lamd;
    MK(gath) s = {0};
    if (gathering)
        s = MK(gath_start)(g);
    size_t j = j0;
    for (; j + MK_LANES <= j1; j += MK_LANES) {
        MK(vf) tb = MK(load)(tbp + j), ob = MK(load)(obp + j);
        MK(vi) neg = dmean ? MK(vote_d)(&in, m, j, tb) : MK(vote_f)(&in, m, j, tb);
        MK(vf) o = dmean ? MK(mean_d)(&in, m, j, tb, neg, ob, lamd)
                         : MK(mean_f)(&in, m, j, tb, neg, ob, lam);
        MK(store)(out + j, o);
        if (gathering)
            MK(gather)(&s, MK(mag)(o - ob), j);
    }
    if (gathering)
        MK(gath_end)(&s, g);
    merge_ties_ref(p, j, j1, g);
}

MK_TARGET static void MK(ties)(const merge_pass *p, size_t j0, size_t j1, merge_gather *g)
{
    int m = p->m;
    if (p->dmean)
        MK(ties_loop)(p, j0, j1, g, m, g != NULL, 1);
    else if (m == 2 && g)
        MK(ties_loop)(p, j0, j1, g, 2, 1, 0);
    else if (m == 2)
        MK(ties_loop)(p, j0, j1, NULL, 2, 0, 0);
    else if (m == 3 && g)
        MK(ties_loop)(p, j0, j1, g, 3, 1, 0);
    else if (g)
        MK(ties_loop)(p, j0, j1, g, m, 1, 0);
    else
        MK(ties_loop)(p, j0, j1, NULL, m, 0, 0);
}

MK_INLINE void MK(linear_loop)(const float *const *x, const double *w, const int m, size_t j0,
                               size_t j1, float *out)
{
    size_t j = j0;
    for (; j + MK_LANES <= j1; j += MK_LANES) {
        MK(vd) a0 = {0}, a1 = {0};
        for (int i = 0; i < m; i++) {
            MK(vf) v = MK(load)(x[i] + j);
            a0 += w[i] * MK(lo)(v);
            a1 += w[i] * MK(hi)(v);
        }
        MK(store)(out + j, MK(narrow)(a0, a1));
    }
    merge_linear_ref(x, w, m, j, j1, out);
}

/* merge_linear_ref, vectorised. */
MK_TARGET static void MK(linear)(const float *const *x, const double *w, int m, size_t j0,
                                 size_t j1, float *out)
{
    if (m == 2)
        MK(linear_loop)(x, w, 2, j0, j1, out);
    else
        MK(linear_loop)(x, w, m, j0, j1, out);
}

#undef MK_INLINE
