/* The Transformer's cached decode step on the CPU, in one call (engine/models/native.py builds and
 * loads this file; engine/models/transformer.py's decode_block is the same step in torch operations).
 *
 * For each sequence b, one new token w at position p, float32 throughout:
 *   x = E[w] + P[p]
 *   per block:  q, k, v = W_qkv LN_1(x) + b_qkv;  K[p] = k, V[p] = v  (the cache rows)
 *               a = softmax(q K[0..p]^T / sqrt(d)) V[0..p]  per head
 *               x = x + W_o a + b_o
 *               x = x + W_2 GELU(W_1 LN_2(x) + b_1) + b_2
 *   logits = W_head LN_f(x)
 * A small model's step costs per-operation overhead in torch (about 60 calls of 2-12 us each); here it
 * costs its memory traffic. Summation orders differ from torch's (float rounding, about 1e-6).
 */
#include <math.h>
#include <stdint.h>

typedef struct {
    const float *ln1w, *ln1b, *qkvw, *qkvb, *projw, *projb, *ln2w, *ln2b, *upw, *upb, *downw, *downb;
    float eps1, eps2;
} block_t;

typedef struct {
    int32_t width, heads, layers, hidden, vocab, context, gelu_tanh, head_rows;
    const float *tok;        /* (vocab, width) token embedding */
    const float *pos;        /* (context, width) position table */
    const float *lnfw, *lnfb; /* final LayerNorm (bias may be NULL) */
    float epsf;
    const float *head;       /* (head_rows, width): logits = head LN_f(x) */
    const block_t *blocks;   /* layers of them */
} model_t;

static float dot(const float *a, const float *b, int n) {
    float acc[16] = {0};
    int i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++) acc[j] += a[i + j] * b[i + j];
    float s = 0.0f;
    for (; i < n; i++) s += a[i] * b[i];
    for (int j = 0; j < 8; j++) acc[j] += acc[j + 8];
    for (int j = 0; j < 4; j++) acc[j] += acc[j + 4];
    return s + (acc[0] + acc[2]) + (acc[1] + acc[3]);
}

/* y[r] = W[r] . x + b[r] (+ y[r] when accumulate), W row-major (rows, n) */
static void gemv(float *y, const float *w, const float *b, const float *x, int rows, int n, int accumulate) {
    for (int r = 0; r < rows; r++) {
        float v = dot(w + (int64_t)r * n, x, n) + (b ? b[r] : 0.0f);
        y[r] = accumulate ? y[r] + v : v;
    }
}

static void layer_norm(float *y, const float *x, const float *w, const float *b, float eps, int n) {
    double mean = 0.0, var = 0.0;
    for (int i = 0; i < n; i++) mean += x[i];
    mean /= n;
    for (int i = 0; i < n; i++) {
        double d = x[i] - mean;
        var += d * d;
    }
    float m = (float)mean, rstd = (float)(1.0 / sqrt(var / n + (double)eps));
    for (int i = 0; i < n; i++) y[i] = (x[i] - m) * rstd * w[i] + (b ? b[i] : 0.0f);
}

static void gelu(float *x, int n, int use_tanh) {
    if (use_tanh) {
        const float c = 0.7978845608028654f; /* sqrt(2 / pi) */
        for (int i = 0; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + tanhf(c * (x[i] + 0.044715f * x[i] * x[i] * x[i])));
    } else {
        for (int i = 0; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.7071067811865476f));
    }
}

/* Scratch: 6 * width + hidden + context floats. Returns 0, or 1 for a token id outside the vocabulary
 * (nothing written), 2 for a position outside the context. */
int seqplay_decode_step(const model_t *m, int32_t batch, int32_t p, const int64_t *idx, float *const *k,
                        float *const *v, float *logits, float *scratch) {
    const int C = m->width, H = m->heads, D = C / H, T = m->context;
    if (p < 0 || p >= T) return 2;
    for (int b = 0; b < batch; b++)
        if (idx[b] < 0 || idx[b] >= m->vocab) return 1;
    float *x = scratch, *n = x + C, *qkv = n + C, *a = qkv + 3 * C, *h = a + C, *s = h + m->hidden;
    const float scale = 1.0f / sqrtf((float)D);
    for (int b = 0; b < batch; b++) {
        const float *e = m->tok + idx[b] * C, *pe = m->pos + (int64_t)p * C;
        for (int i = 0; i < C; i++) x[i] = e[i] + pe[i];
        for (int l = 0; l < m->layers; l++) {
            const block_t *blk = m->blocks + l;
            layer_norm(n, x, blk->ln1w, blk->ln1b, blk->eps1, C);
            gemv(qkv, blk->qkvw, blk->qkvb, n, 3 * C, C, 0);
            for (int hh = 0; hh < H; hh++) {
                float *kc = k[l] + ((int64_t)(b * H + hh) * T) * D, *vc = v[l] + ((int64_t)(b * H + hh) * T) * D;
                const float *q = qkv + hh * D;
                for (int i = 0; i < D; i++) {
                    kc[(int64_t)p * D + i] = qkv[C + hh * D + i];
                    vc[(int64_t)p * D + i] = qkv[2 * C + hh * D + i];
                }
                float mx = -INFINITY, sum = 0.0f;
                for (int t = 0; t <= p; t++) {
                    s[t] = dot(q, kc + (int64_t)t * D, D) * scale;
                    if (s[t] > mx) mx = s[t];
                }
                for (int t = 0; t <= p; t++) {
                    s[t] = expf(s[t] - mx);
                    sum += s[t];
                }
                float *out = a + hh * D;
                for (int i = 0; i < D; i++) out[i] = 0.0f;
                for (int t = 0; t <= p; t++) {
                    const float wt = s[t] / sum, *vr = vc + (int64_t)t * D;
                    for (int i = 0; i < D; i++) out[i] += wt * vr[i];
                }
            }
            gemv(x, blk->projw, blk->projb, a, C, C, 1);
            layer_norm(n, x, blk->ln2w, blk->ln2b, blk->eps2, C);
            gemv(h, blk->upw, blk->upb, n, m->hidden, C, 0);
            gelu(h, m->hidden, m->gelu_tanh);
            gemv(x, blk->downw, blk->downb, h, C, m->hidden, 1);
        }
        layer_norm(n, x, m->lnfw, m->lnfb, m->epsf, C);
        gemv(logits + (int64_t)b * m->head_rows, m->head, 0, n, m->head_rows, C, 0);
    }
    return 0;
}
