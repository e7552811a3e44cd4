#include "kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "simd.h"
#include "thread_pool.h"

namespace unime {

namespace {

inline float hmax(vf8 v) {
  float m = v[0];
  for (int i = 1; i < 8; ++i) m = std::max(m, v[i]);
  return m;
}
inline float hsum(vf8 v) {
  float s = 0;
  for (int i = 0; i < 8; ++i) s += v[i];
  return s;
}

float row_max(const float* x, int64_t n) {
  int64_t i = 0;
  float m = -std::numeric_limits<float>::infinity();
  if (n >= 8) {
    vf8 vm = load8(x);
    for (i = 8; i + 8 <= n; i += 8) vm = vmax(vm, load8(x + i));
    m = hmax(vm);
  }
  for (; i < n; ++i) m = std::max(m, x[i]);
  return m;
}

// out[i] = exp(x[i] - shift); returns the sum (accumulated in double lanes at the end for accuracy).
double exp_shift_sum(const float* x, float* out, int64_t n, float shift) {
  int64_t i = 0;
  vf8 acc = {};
  const vf8 s = splat(shift);
  double total = 0;
  int64_t since = 0;
  for (; i + 8 <= n; i += 8) {
    vf8 e = vexp(load8(x + i) - s);
    store8(out + i, e);
    acc += e;
    // Spill to double every so often so very long rows keep float32-reference accuracy.
    if (++since == 64) {
      total += hsum(acc);
      acc = vf8{};
      since = 0;
    }
  }
  total += hsum(acc);
  if (i < n) {
    float tx[8] = {}, te[8];
    const int64_t rem = n - i;
    for (int64_t j = 0; j < rem; ++j) tx[j] = x[i + j];
    for (int64_t j = rem; j < 8; ++j) tx[j] = -std::numeric_limits<float>::infinity();
    store8(te, vexp(load8(tx) - s));
    for (int64_t j = 0; j < rem; ++j) {
      out[i + j] = te[j];
      total += te[j];
    }
  }
  return total;
}

template <class RowFn>
void for_rows(int64_t rows, int64_t cols, RowFn fn) {
  // Aim for at least ~16k elements per chunk so small inputs do not pay for waking threads.
  const int64_t grain = std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(cols, 1));
  pool().parallel_for(rows, grain, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) fn(r);
  });
}

}  // namespace

void softmax_rows(const float* x, float* out, int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0) return;
  for_rows(rows, cols, [&](int64_t r) {
    const float* xr = x + r * cols;
    float* o = out + r * cols;
    const float m = row_max(xr, cols);
    if (std::isinf(m) && m < 0) {
      // every entry is -inf: the reference yields NaN (0/0)
      for (int64_t j = 0; j < cols; ++j) o[j] = std::numeric_limits<float>::quiet_NaN();
      return;
    }
    const double sum = exp_shift_sum(xr, o, cols, m);
    const vf8 inv = splat(static_cast<float>(1.0 / sum));
    int64_t j = 0;
    for (; j + 8 <= cols; j += 8) store8(o + j, load8(o + j) * inv);
    for (; j < cols; ++j) o[j] *= inv[0];
  });
}

void log_softmax_rows(const float* x, float* out, int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0) return;
  for_rows(rows, cols, [&](int64_t r) {
    const float* xr = x + r * cols;
    float* o = out + r * cols;
    const float m = row_max(xr, cols);
    if (std::isinf(m) && m < 0) {
      for (int64_t j = 0; j < cols; ++j) o[j] = std::numeric_limits<float>::quiet_NaN();
      return;
    }
    const double sum = exp_shift_sum(xr, o, cols, m);  // o used as scratch
    const float shift = static_cast<float>(m + std::log(sum));
    const vf8 s = splat(shift);
    int64_t j = 0;
    for (; j + 8 <= cols; j += 8) store8(o + j, load8(xr + j) - s);
    for (; j < cols; ++j) o[j] = xr[j] - shift;
  });
}

}  // namespace unime

namespace unime {

void softmax_cross_entropy(const float* logits, const int32_t* labels, float* loss, float* lse, int64_t rows,
                           int64_t cols) {
  if (rows <= 0) return;
  pool().parallel_for(rows, std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(cols, 1)), [&](int64_t r0, int64_t r1) {
    std::vector<float> tmp(static_cast<size_t>(cols));
    for (int64_t r = r0; r < r1; ++r) {
      const float* x = logits + r * cols;
      const float m = row_max(x, cols);
      const double sum = cols > 0 ? exp_shift_sum(x, tmp.data(), cols, m) : 0.0;
      const float l = cols > 0 ? static_cast<float>(m + std::log(sum)) : -std::numeric_limits<float>::infinity();
      lse[r] = l;
      const int32_t y = labels[r];
      loss[r] = y < 0 ? 0.f : l - x[y];
    }
  });
}

void softmax_cross_entropy_backward(const float* logits, const int32_t* labels, const float* lse, const float* dloss,
                                    float* dlogits, int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0) return;
  pool().parallel_for(rows, std::max<int64_t>(1, (1 << 14) / cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* x = logits + r * cols;
      float* d = dlogits + r * cols;
      const int32_t y = labels[r];
      if (y < 0) {
        std::fill(d, d + cols, 0.f);
        continue;
      }
      const float g = dloss[r];
      exp_shift_sum(x, d, cols, lse[r]);  // d = softmax(x)
      for (int64_t j = 0; j < cols; ++j) d[j] *= g;
      d[y] -= g;
    }
  });
}

}  // namespace unime
