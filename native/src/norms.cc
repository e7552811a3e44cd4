// Normalisation and activation kernels with hand-written backward passes, so a norm or an activation is
// one kernel each way instead of the half-dozen elementwise ops (and their saved intermediates) tfjs's
// autodiff would record. Row statistics are accumulated in double.
#include "norms.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "simd.h"
#include "thread_pool.h"

namespace unime {

namespace {

int64_t row_grain(int64_t cols) { return std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(cols, 1)); }

// Sums per-column partial results from each thread: fn(r0, r1, acc...) fills its thread's accumulators.
template <class F>
void column_reduce(int64_t rows, int64_t cols, int outputs, float* const* results, F fn) {
  ThreadPool& tp = pool();
  const int nt = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(tp.size(), rows / std::max<int64_t>(1, row_grain(cols)))));
  std::vector<std::vector<double>> partial(static_cast<size_t>(nt) * outputs, std::vector<double>(static_cast<size_t>(cols), 0.0));
  tp.run(nt, [&](int tid, int n) {
    std::vector<double>* acc = &partial[static_cast<size_t>(tid) * outputs];
    fn(rows * tid / n, rows * (tid + 1) / n, acc);
  });
  for (int o = 0; o < outputs; ++o) {
    if (!results[o]) continue;
    for (int64_t c = 0; c < cols; ++c) {
      double s = 0;
      for (int t = 0; t < nt; ++t) s += partial[static_cast<size_t>(t) * outputs + o][c];
      results[o][c] = static_cast<float>(s);
    }
  }
}

}  // namespace

void rms_norm_forward(const float* x, const float* w, float* out, float* rstd, int64_t rows, int64_t cols, float eps) {
  if (rows <= 0 || cols <= 0) return;
  pool().parallel_for(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * cols;
      float* o = out + r * cols;
      double ss = 0;
      for (int64_t c = 0; c < cols; ++c) ss += double(xr[c]) * xr[c];
      const float inv = static_cast<float>(1.0 / std::sqrt(ss / cols + eps));
      rstd[r] = inv;
      if (w)
        for (int64_t c = 0; c < cols; ++c) o[c] = xr[c] * inv * w[c];
      else
        for (int64_t c = 0; c < cols; ++c) o[c] = xr[c] * inv;
    }
  });
}

void rms_norm_backward(const float* dy, const float* x, const float* w, const float* rstd, float* dx, float* dw,
                       int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0) {
    if (dw) std::fill(dw, dw + std::max<int64_t>(cols, 0), 0.f);
    return;
  }
  float* results[1] = {dw};
  column_reduce(rows, cols, 1, results, [&](int64_t r0, int64_t r1, std::vector<double>* acc) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * cols;
      const float* g = dy + r * cols;
      float* d = dx + r * cols;
      const double inv = rstd[r];
      // dx = inv * (g*w - xhat * mean(g*w*xhat)), xhat = x * inv
      double dot = 0;
      for (int64_t c = 0; c < cols; ++c) dot += double(g[c]) * (w ? w[c] : 1.f) * xr[c] * inv;
      const double m = dot / cols;
      for (int64_t c = 0; c < cols; ++c) {
        const double xhat = xr[c] * inv;
        d[c] = static_cast<float>(inv * (double(g[c]) * (w ? w[c] : 1.f) - xhat * m));
        if (dw) acc[0][c] += double(g[c]) * xhat;
      }
    }
  });
}

void layer_norm_forward(const float* x, const float* gamma, const float* beta, float* out, float* mean, float* rstd,
                        int64_t rows, int64_t cols, float eps) {
  if (rows <= 0 || cols <= 0) return;
  pool().parallel_for(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * cols;
      float* o = out + r * cols;
      double s = 0;
      for (int64_t c = 0; c < cols; ++c) s += xr[c];
      const double mu = s / cols;
      double v = 0;
      for (int64_t c = 0; c < cols; ++c) v += (xr[c] - mu) * (xr[c] - mu);
      const double inv = 1.0 / std::sqrt(v / cols + eps);
      mean[r] = static_cast<float>(mu);
      rstd[r] = static_cast<float>(inv);
      for (int64_t c = 0; c < cols; ++c) {
        double y = (xr[c] - mu) * inv;
        if (gamma) y *= gamma[c];
        if (beta) y += beta[c];
        o[c] = static_cast<float>(y);
      }
    }
  });
}

void layer_norm_backward(const float* dy, const float* x, const float* gamma, const float* mean, const float* rstd,
                         float* dx, float* dgamma, float* dbeta, int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0) {
    if (dgamma) std::fill(dgamma, dgamma + std::max<int64_t>(cols, 0), 0.f);
    if (dbeta) std::fill(dbeta, dbeta + std::max<int64_t>(cols, 0), 0.f);
    return;
  }
  float* results[2] = {dgamma, dbeta};
  column_reduce(rows, cols, 2, results, [&](int64_t r0, int64_t r1, std::vector<double>* acc) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * cols;
      const float* g = dy + r * cols;
      float* d = dx + r * cols;
      const double mu = mean[r], inv = rstd[r];
      // dx = inv * (gg - mean(gg) - xhat * mean(gg * xhat)), gg = dy * gamma
      double sg = 0, sgx = 0;
      for (int64_t c = 0; c < cols; ++c) {
        const double gg = double(g[c]) * (gamma ? gamma[c] : 1.f);
        const double xhat = (xr[c] - mu) * inv;
        sg += gg;
        sgx += gg * xhat;
      }
      const double mg = sg / cols, mgx = sgx / cols;
      for (int64_t c = 0; c < cols; ++c) {
        const double gg = double(g[c]) * (gamma ? gamma[c] : 1.f);
        const double xhat = (xr[c] - mu) * inv;
        d[c] = static_cast<float>(inv * (gg - mg - xhat * mgx));
        acc[0][c] += double(g[c]) * xhat;
        acc[1][c] += g[c];
      }
    }
  });
}

namespace {

constexpr double kSqrt2OverPi = 0.7978845608028654;
constexpr double kGeluCoef = 0.044715;

inline double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

inline double act(int kind, double x) {
  switch (kind) {
    case kSilu: return x * sigmoid(x);
    case kGeluTanh: return 0.5 * x * (1.0 + std::tanh(kSqrt2OverPi * (x + kGeluCoef * x * x * x)));
    case kGeluErf: return 0.5 * x * (1.0 + std::erf(x * 0.7071067811865476));
    case kQuickGelu: return x * sigmoid(1.702 * x);
    default: return 0;
  }
}

inline double act_grad(int kind, double x) {
  switch (kind) {
    case kSilu: {
      const double s = sigmoid(x);
      return s * (1.0 + x * (1.0 - s));
    }
    case kGeluTanh: {
      const double u = kSqrt2OverPi * (x + kGeluCoef * x * x * x);
      const double t = std::tanh(u);
      const double du = kSqrt2OverPi * (1.0 + 3.0 * kGeluCoef * x * x);
      return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du;
    }
    case kGeluErf: {
      const double cdf = 0.5 * (1.0 + std::erf(x * 0.7071067811865476));
      const double pdf = 0.3989422804014327 * std::exp(-0.5 * x * x);
      return cdf + x * pdf;
    }
    case kQuickGelu: {
      const double s = sigmoid(1.702 * x);
      return s * (1.0 + 1.702 * x * (1.0 - s));
    }
    default: return 0;
  }
}

}  // namespace

// silu and quickGelu: x * sigmoid(a x), vectorised with the float exp (about 2e-7 relative error).
static void sigmoid_gate_forward(float a, const float* x, float* out, int64_t b, int64_t e) {
  const vf8 one = splat(1.f), va = splat(a);
  int64_t i = b;
  for (; i + 8 <= e; i += 8) {
    const vf8 v = load8(x + i);
    store8(out + i, v / (one + vexp(-va * v)));
  }
  for (; i < e; ++i) out[i] = static_cast<float>(x[i] / (1.0 + std::exp(-double(a) * x[i])));
}

// d/dx x * sigmoid(a x) = s (1 + a x (1 - s)), s = sigmoid(a x)
static void sigmoid_gate_backward(float a, const float* x, const float* dy, float* dx, int64_t b, int64_t e) {
  const vf8 one = splat(1.f), va = splat(a);
  int64_t i = b;
  for (; i + 8 <= e; i += 8) {
    const vf8 v = load8(x + i);
    const vf8 s = one / (one + vexp(-va * v));
    store8(dx + i, load8(dy + i) * s * (one + va * v * (one - s)));
  }
  for (; i < e; ++i) {
    const double s = 1.0 / (1.0 + std::exp(-double(a) * x[i]));
    dx[i] = static_cast<float>(dy[i] * s * (1.0 + a * x[i] * (1.0 - s)));
  }
}

void activation_forward(int kind, const float* x, float* out, int64_t n) {
  if (n <= 0) return;
  pool().parallel_for(n, 1 << 14, [&](int64_t b, int64_t e) {
    if (kind == kSilu || kind == kQuickGelu) return sigmoid_gate_forward(kind == kSilu ? 1.f : 1.702f, x, out, b, e);
    for (int64_t i = b; i < e; ++i) out[i] = static_cast<float>(act(kind, x[i]));
  });
}

void activation_backward(int kind, const float* x, const float* dy, float* dx, int64_t n) {
  if (n <= 0) return;
  pool().parallel_for(n, 1 << 14, [&](int64_t b, int64_t e) {
    if (kind == kSilu || kind == kQuickGelu) return sigmoid_gate_backward(kind == kSilu ? 1.f : 1.702f, x, dy, dx, b, e);
    for (int64_t i = b; i < e; ++i) dx[i] = static_cast<float>(dy[i] * act_grad(kind, x[i]));
  });
}

}  // namespace unime

namespace unime {

void rope(const float* x, const float* cos, const float* sin, float* out, int64_t b, int64_t h, int64_t s, int64_t d,
          int64_t rot, bool inverse) {
  const int64_t half = rot / 2;
  const int64_t rows = b * h * s;
  if (rows == 0 || d == 0) return;
  const int64_t grain = std::max<int64_t>(1, (1 << 14) / d);
  pool().parallel_for(rows, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t bi = r / (h * s), si = r % s;  // row r is (bi, head, si)
      const float* c = cos + (bi * s + si) * rot;
      const float* sn = sin + (bi * s + si) * rot;
      const float* xr = x + r * d;
      float* o = out + r * d;
      if (!inverse) {
        for (int64_t i = 0; i < half; ++i) {
          const float a = xr[i] * c[i];
          const float bb = -xr[i + half] * sn[i];
          o[i] = a + bb;
          const float a2 = xr[i + half] * c[i + half];
          const float b2 = xr[i] * sn[i + half];
          o[i + half] = a2 + b2;
        }
      } else {
        for (int64_t i = 0; i < half; ++i) {
          const float a = xr[i] * c[i];
          const float bb = xr[i + half] * sn[i + half];
          o[i] = a + bb;
          const float a2 = xr[i + half] * c[i + half];
          const float b2 = -xr[i] * sn[i];
          o[i + half] = a2 + b2;
        }
      }
      for (int64_t i = rot; i < d; ++i) o[i] = xr[i];
    }
  });
}

}  // namespace unime
