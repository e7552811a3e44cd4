// Scaled dot-product attention as one op each way. Work is split over (batch, head) pairs (over kv-head
// groups in the backward pass, so the threads never add into the same dk/dv); each pair runs its GEMMs on one
// thread. The backward pass recomputes the probabilities from the saved log-sum-exp, so only [B,H,Sq] floats
// are kept between the passes instead of the [B,H,Sq,Sk] probabilities.
#include "attention.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <vector>

#include "gemm.h"
#include "thread_pool.h"

namespace unime {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Number of keys query row i may see under the causal rule (all when not causal).
inline int64_t causal_limit(const AttentionShape& s, int64_t i) {
  if (!s.causal) return s.Sk;
  return std::max<int64_t>(0, std::min<int64_t>(s.Sk, i + (s.Sk - s.Sq) + 1));
}

// scores[Sq,Sk] = scale * Q K^T with masked entries set to -inf.
void masked_scores(const AttentionShape& s, const float* qh, const float* kh, const float* mask_b, float* scores) {
  GemmShape g{s.Sq, s.Sk, s.D, false, true, s.D, s.D, s.Sk};
  sgemm_serial(g, qh, kh, scores);
  for (int64_t i = 0; i < s.Sq; ++i) {
    float* row = scores + i * s.Sk;
    const int64_t lim = causal_limit(s, i);
    for (int64_t j = 0; j < lim; ++j) row[j] = (mask_b && mask_b[j] == 0.f) ? kNegInf : row[j] * s.scale;
    for (int64_t j = lim; j < s.Sk; ++j) row[j] = kNegInf;
  }
}

template <class F>
void for_tasks(int64_t tasks, F f) {
  std::atomic<int64_t> next{0};
  const int nt = static_cast<int>(std::min<int64_t>(pool().size(), tasks));
  pool().run(nt, [&](int, int) {
    for (int64_t t; (t = next.fetch_add(1)) < tasks;) f(t);
  });
}

}  // namespace

void attention_forward(const AttentionShape& s, const float* q, const float* k, const float* v, const float* key_mask,
                       float* out, float* lse) {
  if (s.B <= 0 || s.H <= 0 || s.Sq <= 0) return;
  const int64_t group = s.H / s.Hkv;
  for_tasks(s.B * s.H, [&](int64_t t) {
    thread_local std::vector<float> scores;
    scores.resize(static_cast<size_t>(s.Sq * s.Sk));
    const int64_t b = t / s.H, h = t % s.H, hk = h / group;
    const float* qh = q + (b * s.H + h) * s.Sq * s.D;
    const float* kh = k + (b * s.Hkv + hk) * s.Sk * s.D;
    const float* vh = v + (b * s.Hkv + hk) * s.Sk * s.D;
    float* oh = out + (b * s.H + h) * s.Sq * s.D;
    float* lh = lse + (b * s.H + h) * s.Sq;
    masked_scores(s, qh, kh, key_mask ? key_mask + b * s.Sk : nullptr, scores.data());
    for (int64_t i = 0; i < s.Sq; ++i) {
      float* row = scores.data() + i * s.Sk;
      float m = kNegInf;
      for (int64_t j = 0; j < s.Sk; ++j) m = std::max(m, row[j]);
      if (m == kNegInf) {
        std::fill(row, row + s.Sk, 0.f);
        lh[i] = kNegInf;
        continue;
      }
      double sum = 0;
      for (int64_t j = 0; j < s.Sk; ++j) {
        const float e = row[j] == kNegInf ? 0.f : std::exp(row[j] - m);
        row[j] = e;
        sum += e;
      }
      const float inv = static_cast<float>(1.0 / sum);
      for (int64_t j = 0; j < s.Sk; ++j) row[j] *= inv;
      lh[i] = static_cast<float>(m + std::log(sum));
    }
    GemmShape g{s.Sq, s.D, s.Sk, false, false, s.Sk, s.D, s.D};
    sgemm_serial(g, scores.data(), vh, oh);
  });
}

void attention_backward(const AttentionShape& s, const float* q, const float* k, const float* v, const float* key_mask,
                        const float* lse, const float* dout, float* dq, float* dk, float* dv) {
  const int64_t group = s.H > 0 && s.Hkv > 0 ? s.H / s.Hkv : 1;
  std::fill(dk, dk + s.B * s.Hkv * s.Sk * s.D, 0.f);
  std::fill(dv, dv + s.B * s.Hkv * s.Sk * s.D, 0.f);
  if (s.B <= 0 || s.H <= 0 || s.Sq <= 0) return;
  for_tasks(s.B * s.Hkv, [&](int64_t t) {
    thread_local std::vector<float> p, dp, tmp;
    p.resize(static_cast<size_t>(s.Sq * s.Sk));
    dp.resize(static_cast<size_t>(s.Sq * s.Sk));
    tmp.resize(static_cast<size_t>(s.Sk * s.D));
    const int64_t b = t / s.Hkv, hk = t % s.Hkv;
    const float* kh = k + (b * s.Hkv + hk) * s.Sk * s.D;
    const float* vh = v + (b * s.Hkv + hk) * s.Sk * s.D;
    float* dkh = dk + (b * s.Hkv + hk) * s.Sk * s.D;
    float* dvh = dv + (b * s.Hkv + hk) * s.Sk * s.D;
    const float* mask_b = key_mask ? key_mask + b * s.Sk : nullptr;
    for (int64_t h = hk * group; h < (hk + 1) * group; ++h) {
      const float* qh = q + (b * s.H + h) * s.Sq * s.D;
      const float* doh = dout + (b * s.H + h) * s.Sq * s.D;
      const float* lh = lse + (b * s.H + h) * s.Sq;
      float* dqh = dq + (b * s.H + h) * s.Sq * s.D;
      // P from the saved log-sum-exp
      masked_scores(s, qh, kh, mask_b, p.data());
      for (int64_t i = 0; i < s.Sq; ++i) {
        float* row = p.data() + i * s.Sk;
        const float l = lh[i];
        for (int64_t j = 0; j < s.Sk; ++j) row[j] = (l == kNegInf || row[j] == kNegInf) ? 0.f : std::exp(row[j] - l);
      }
      // dV += P^T dO
      if (s.Sk > 0 && s.D > 0) {
        GemmShape g{s.Sk, s.D, s.Sq, true, false, s.Sk, s.D, s.D};
        sgemm_serial(g, p.data(), doh, tmp.data());
        for (int64_t i = 0; i < s.Sk * s.D; ++i) dvh[i] += tmp[i];
      }
      // dP = dO V^T; dS = P * (dP - rowsum(P * dP)) * scale
      {
        GemmShape g{s.Sq, s.Sk, s.D, false, true, s.D, s.D, s.Sk};
        sgemm_serial(g, doh, vh, dp.data());
      }
      for (int64_t i = 0; i < s.Sq; ++i) {
        float* pr = p.data() + i * s.Sk;
        float* dr = dp.data() + i * s.Sk;
        double delta = 0;
        for (int64_t j = 0; j < s.Sk; ++j) delta += double(pr[j]) * dr[j];
        const float d = static_cast<float>(delta);
        for (int64_t j = 0; j < s.Sk; ++j) dr[j] = pr[j] * (dr[j] - d) * s.scale;
      }
      // dQ = dS K; dK += dS^T Q
      {
        GemmShape g{s.Sq, s.D, s.Sk, false, false, s.Sk, s.D, s.D};
        sgemm_serial(g, dp.data(), kh, dqh);
      }
      if (s.Sk > 0 && s.D > 0) {
        GemmShape g{s.Sk, s.D, s.Sq, true, false, s.Sk, s.D, s.D};
        sgemm_serial(g, dp.data(), qh, tmp.data());
        for (int64_t i = 0; i < s.Sk * s.D; ++i) dkh[i] += tmp[i];
      }
    }
  });
}

}  // namespace unime
