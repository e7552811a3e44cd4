// Elementwise kernels. Results match the JS kernels to the last bit for +, -, *, / (a float op computed in
// double and rounded, as JS does, is the correctly rounded float op); exp, log, tanh, sigmoid may differ by
// an ulp or two.
#include "elementwise.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "simd.h"
#include "thread_pool.h"

namespace unime {

namespace {

struct Add { static float f(float a, float b) { return a + b; } };
struct Sub { static float f(float a, float b) { return a - b; } };
struct Mul { static float f(float a, float b) { return a * b; } };
struct Div { static float f(float a, float b) { return a / b; } };
// NaN in either operand gives NaN, like Math.max / Math.min.
struct Maximum { static float f(float a, float b) { return (a > b || a != a) ? a : b; } };
struct Minimum { static float f(float a, float b) { return (a < b || a != a) ? a : b; } };
// In double and rounded once, as the JS kernel does.
struct SquaredDifference { static float f(float a, float b) { double d = double(a) - double(b); return float(d * d); } };

// One contiguous run of the innermost dimension, specialised on which side is a scalar there.
template <class Op>
inline void inner(const float* __restrict a, int64_t sa, const float* __restrict b, int64_t sb, float* __restrict o,
                  int64_t n) {
  if (sa == 1 && sb == 1) {
    for (int64_t i = 0; i < n; ++i) o[i] = Op::f(a[i], b[i]);
  } else if (sa == 0 && sb == 1) {
    const float av = *a;
    for (int64_t i = 0; i < n; ++i) o[i] = Op::f(av, b[i]);
  } else if (sa == 1 && sb == 0) {
    const float bv = *b;
    for (int64_t i = 0; i < n; ++i) o[i] = Op::f(a[i], bv);
  } else {
    for (int64_t i = 0; i < n; ++i) o[i] = Op::f(a[i * sa], b[i * sb]);
  }
}

template <class Op>
void binary_impl(const float* a, const float* b, float* out, int rank, const int64_t* shape, const int64_t* as,
                 const int64_t* bs) {
  const int64_t n_inner = shape[rank - 1];
  int64_t rows = 1;
  for (int i = 0; i < rank - 1; ++i) rows *= shape[i];
  if (rows == 0 || n_inner == 0) return;
  const int64_t grain = std::max<int64_t>(1, (1 << 15) / n_inner);
  pool().parallel_for(rows, grain, [&](int64_t r0, int64_t r1) {
    // decompose r0 into the outer counters once, then step them
    std::vector<int64_t> idx(static_cast<size_t>(std::max(rank - 1, 1)), 0);
    int64_t rem = r0, oa = 0, ob = 0;
    for (int i = rank - 2; i >= 0; --i) {
      idx[i] = rem % shape[i];
      rem /= shape[i];
      oa += idx[i] * as[i];
      ob += idx[i] * bs[i];
    }
    for (int64_t r = r0; r < r1; ++r) {
      inner<Op>(a + oa, as[rank - 1], b + ob, bs[rank - 1], out + r * n_inner, n_inner);
      for (int i = rank - 2; i >= 0; --i) {
        ++idx[i];
        oa += as[i];
        ob += bs[i];
        if (idx[i] < shape[i]) break;
        oa -= idx[i] * as[i];
        ob -= idx[i] * bs[i];
        idx[i] = 0;
      }
    }
  });
}

template <class F>
void map_chunks(int64_t n, F f) {
  pool().parallel_for(n, 1 << 15, [&](int64_t b, int64_t e) { f(b, e); });
}

}  // namespace

void binary_strided(int op, const float* a, const float* b, float* out, int rank, const int64_t* shape,
                    const int64_t* as, const int64_t* bs) {
  switch (op) {
    case kAdd: return binary_impl<Add>(a, b, out, rank, shape, as, bs);
    case kSub: return binary_impl<Sub>(a, b, out, rank, shape, as, bs);
    case kMul: return binary_impl<Mul>(a, b, out, rank, shape, as, bs);
    case kDiv: return binary_impl<Div>(a, b, out, rank, shape, as, bs);
    case kMaximum: return binary_impl<Maximum>(a, b, out, rank, shape, as, bs);
    case kMinimum: return binary_impl<Minimum>(a, b, out, rank, shape, as, bs);
    case kSquaredDifference: return binary_impl<SquaredDifference>(a, b, out, rank, shape, as, bs);
    default: return;
  }
}

void unary(int op, const float* x, float* out, int64_t n) {
  if (n <= 0) return;
  map_chunks(n, [&](int64_t b, int64_t e) {
    const float* __restrict xi = x;
    float* __restrict o = out;
    switch (op) {
      case kExp: {
        int64_t i = b;
        for (; i + 8 <= e; i += 8) store8(o + i, vexp(load8(xi + i)));
        for (; i < e; ++i) o[i] = std::exp(xi[i]);
        break;
      }
      case kLog: for (int64_t i = b; i < e; ++i) o[i] = std::log(xi[i]); break;
      case kNeg: for (int64_t i = b; i < e; ++i) o[i] = -xi[i]; break;
      case kSqrt: for (int64_t i = b; i < e; ++i) o[i] = std::sqrt(xi[i]); break;
      case kRsqrt: for (int64_t i = b; i < e; ++i) o[i] = 1.f / std::sqrt(xi[i]); break;
      case kSquare: for (int64_t i = b; i < e; ++i) o[i] = xi[i] * xi[i]; break;
      case kRelu: for (int64_t i = b; i < e; ++i) o[i] = xi[i] < 0.f ? 0.f : xi[i]; break;
      case kSigmoid: {
        int64_t i = b;
        const vf8 one = splat(1.f);
        for (; i + 8 <= e; i += 8) store8(o + i, one / (one + vexp(-load8(xi + i))));
        for (; i < e; ++i) o[i] = 1.f / (1.f + std::exp(-xi[i]));
        break;
      }
      case kTanh: for (int64_t i = b; i < e; ++i) o[i] = std::tanh(xi[i]); break;
      case kAbs: for (int64_t i = b; i < e; ++i) o[i] = std::fabs(xi[i]); break;
      case kReciprocal: for (int64_t i = b; i < e; ++i) o[i] = 1.f / xi[i]; break;
      default: break;
    }
  });
}

void transpose(const float* x, float* out, int rank, const int64_t* shape, const int* perm) {
  // out is walked in order; for each output row (all but the last out dim) the source offset is
  // computed from counters, then the last out dim is a strided gather from x.
  std::vector<int64_t> xstride(static_cast<size_t>(rank));
  int64_t s = 1;
  for (int i = rank - 1; i >= 0; --i) {
    xstride[i] = s;
    s *= shape[i];
  }
  std::vector<int64_t> oshape(static_cast<size_t>(rank)), ostride_in_x(static_cast<size_t>(rank));
  for (int i = 0; i < rank; ++i) {
    oshape[i] = shape[perm[i]];
    ostride_in_x[i] = xstride[perm[i]];
  }
  if (s == 0) return;
  const int64_t n_inner = oshape[rank - 1];
  const int64_t step = ostride_in_x[rank - 1];
  const int64_t rows = s / n_inner;
  pool().parallel_for(rows, std::max<int64_t>(1, (1 << 14) / n_inner), [&](int64_t r0, int64_t r1) {
    std::vector<int64_t> idx(static_cast<size_t>(std::max(rank - 1, 1)), 0);
    int64_t rem = r0, off = 0;
    for (int i = rank - 2; i >= 0; --i) {
      idx[i] = rem % oshape[i];
      rem /= oshape[i];
      off += idx[i] * ostride_in_x[i];
    }
    for (int64_t r = r0; r < r1; ++r) {
      const float* src = x + off;
      float* dst = out + r * n_inner;
      for (int64_t j = 0; j < n_inner; ++j) dst[j] = src[j * step];
      for (int i = rank - 2; i >= 0; --i) {
        ++idx[i];
        off += ostride_in_x[i];
        if (idx[i] < oshape[i]) break;
        off -= idx[i] * ostride_in_x[i];
        idx[i] = 0;
      }
    }
  });
}

}  // namespace unime

namespace unime {

void gather(const float* x, const int32_t* indices, float* out, int64_t outer, int64_t axis_dim, int64_t inner,
            int64_t n_indices) {
  const int64_t rows = outer * n_indices;
  if (rows <= 0 || inner <= 0) return;
  pool().parallel_for(rows, std::max<int64_t>(1, (1 << 14) / inner), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t o = r / n_indices, j = r % n_indices;
      std::memcpy(out + r * inner, x + (o * axis_dim + indices[j]) * inner, sizeof(float) * inner);
    }
  });
}

void segment_sum(const float* x, const int32_t* segment, float* out, int64_t rows, int64_t inner, int64_t num_segments) {
  if (num_segments <= 0 || inner <= 0) return;
  std::memset(out, 0, sizeof(float) * num_segments * inner);
  if (rows <= 0) return;
  // Threads own disjoint column ranges, so rows can be added in order without any locking.
  pool().parallel_for(inner, std::max<int64_t>(16, (1 << 16) / std::max<int64_t>(rows, 1)), [&](int64_t c0, int64_t c1) {
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t s = segment[r];
      if (s < 0 || s >= num_segments) continue;
      const float* src = x + r * inner;
      float* dst = out + s * inner;
      for (int64_t c = c0; c < c1; ++c) dst[c] += src[c];
    }
  });
}

}  // namespace unime

namespace unime {

void reduce_middle(int op, const float* x, float* out, int64_t outer, int64_t r, int64_t inner) {
  if (outer <= 0 || inner <= 0) return;
  // mean = sum / r rounded from float, and 0 over an empty axis, as the JS kernel's sum(x / r) gives
  auto finish_sum = [&](double s) {
    if (op != kReduceMean) return static_cast<float>(s);
    return r == 0 ? 0.f : static_cast<float>(s) / static_cast<float>(r);
  };
  if (inner == 1) {
    pool().parallel_for(outer, std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(r, 1)), [&](int64_t o0, int64_t o1) {
      for (int64_t o = o0; o < o1; ++o) {
        const float* row = x + o * r;
        if (op == kReduceSum || op == kReduceMean) {
          double s = 0;
          for (int64_t j = 0; j < r; ++j) s += row[j];
          out[o] = finish_sum(s);
        } else {
          float m = row[0];
          const bool is_max = op == kReduceMax;
          for (int64_t j = 0; j < r; ++j) {
            const float v = row[j];
            if (v != v || (is_max ? v > m : v < m)) m = v;
          }
          out[o] = m;
        }
      }
    });
    return;
  }
  // Columns: each task owns a range of (outer, column) pairs and walks the reduced rows in order.
  const int64_t chunk = 256;
  const int64_t col_chunks = (inner + chunk - 1) / chunk;
  pool().parallel_for(outer * col_chunks, std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(r * chunk, 1)), [&](int64_t t0, int64_t t1) {
    std::vector<double> acc(static_cast<size_t>(chunk));
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t o = t / col_chunks, c0 = (t % col_chunks) * chunk, c1 = std::min(inner, c0 + chunk);
      const int64_t w = c1 - c0;
      const float* base = x + o * r * inner + c0;
      float* dst = out + o * inner + c0;
      if (op == kReduceSum || op == kReduceMean) {
        std::fill(acc.begin(), acc.begin() + w, 0.0);
        for (int64_t j = 0; j < r; ++j) {
          const float* row = base + j * inner;
          for (int64_t c = 0; c < w; ++c) acc[c] += row[c];
        }
        for (int64_t c = 0; c < w; ++c) dst[c] = finish_sum(acc[c]);
      } else {
        const bool is_max = op == kReduceMax;
        for (int64_t c = 0; c < w; ++c) dst[c] = base[c];
        for (int64_t j = 0; j < r; ++j) {
          const float* row = base + j * inner;
          for (int64_t c = 0; c < w; ++c) {
            const float v = row[c];
            if (v != v || (is_max ? v > dst[c] : v < dst[c])) dst[c] = v;
          }
        }
      }
    }
  });
}

}  // namespace unime
