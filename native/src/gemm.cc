#include "gemm.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "thread_pool.h"

#ifdef UNIME_USE_OPENBLAS
#include <cblas.h>
extern "C" {
void openblas_set_num_threads(int);
int openblas_get_num_threads(void);
char* openblas_get_config(void);
}
#endif

namespace unime {

namespace {

// One vector register of floats. GCC vector extensions map it onto what the target has: with AVX-512
// (-march=native on such a CPU) a zmm register of 16 floats and a 12 x 32 micro-tile (24 accumulators,
// 2 B vectors and a broadcast: 27 of the 32 registers); otherwise 8 floats (ymm with AVX2, split on
// narrower targets) and a 6 x 16 tile (12 of 16 ymm registers).
#if defined(__AVX512F__)
constexpr int VL = 16;
constexpr int MR = 12;  // rows of C per micro-tile
#else
constexpr int VL = 8;
constexpr int MR = 6;
#endif
typedef float vfk __attribute__((vector_size(VL * sizeof(float))));
constexpr int NR = 2 * VL;  // columns of C per micro-tile (two vectors)
constexpr int64_t KC = 256;
constexpr int64_t MC = 120;  // multiple of MR; an A block of MC x KC floats stays in L2
static_assert(MC % MR == 0, "MC must be a multiple of MR");

inline vfk loadv(const float* p) {
  vfk v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void storev(float* p, vfk v) { std::memcpy(p, &v, sizeof v); }

// acc(MR x NR) = sum_p Ap[p][0..MR) x Bp[p][0..NR); then C = acc or C += acc on the valid mr x nr part.
// The accumulators are one array indexed by constants only (every loop over it is unrolled), so GCC keeps
// them in registers.
inline void micro_kernel(int64_t kc, const float* __restrict Ap, const float* __restrict Bp, float* C, int64_t ldc,
                         int mr, int nr, bool accumulate) {
  vfk acc[MR][2];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = vfk{};
  for (int64_t p = 0; p < kc; ++p) {
    const vfk b0 = loadv(Bp);
    const vfk b1 = loadv(Bp + VL);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const vfk a = vfk{} + Ap[i];
      acc[i][0] += a * b0;
      acc[i][1] += a * b1;
    }
    Ap += MR;
    Bp += NR;
  }
  if (mr == MR && nr == NR) {
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      float* row = C + i * ldc;
      if (accumulate) {
        storev(row, loadv(row) + acc[i][0]);
        storev(row + VL, loadv(row + VL) + acc[i][1]);
      } else {
        storev(row, acc[i][0]);
        storev(row + VL, acc[i][1]);
      }
    }
    return;
  }
  alignas(64) float tmp[MR * NR];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
    storev(tmp + i * NR, acc[i][0]);
    storev(tmp + i * NR + VL, acc[i][1]);
  }
  for (int i = 0; i < mr; ++i) {
    float* row = C + i * ldc;
    const float* t = tmp + i * NR;
    if (accumulate)
      for (int j = 0; j < nr; ++j) row[j] += t[j];
    else
      for (int j = 0; j < nr; ++j) row[j] = t[j];
  }
}

// Packs op(A)[i0:i0+mc, p0:p0+kc] into MR-row strips, zero-padded: Ap[strip][p][r].
void pack_a(const GemmShape& s, const float* A, int64_t i0, int64_t mc, int64_t p0, int64_t kc, float* Ap) {
  for (int64_t is = 0; is < mc; is += MR) {
    const int mr = static_cast<int>(std::min<int64_t>(MR, mc - is));
    float* dst = Ap + (is / MR) * kc * MR;
    if (s.transA) {
      // A stored [K, M]: rows of the strip are contiguous for each p.
      for (int64_t p = 0; p < kc; ++p) {
        const float* src = A + (p0 + p) * s.lda + i0 + is;
        int r = 0;
        for (; r < mr; ++r) dst[p * MR + r] = src[r];
        for (; r < MR; ++r) dst[p * MR + r] = 0.f;
      }
    } else {
      for (int r = 0; r < MR; ++r) {
        if (r < mr) {
          const float* src = A + (i0 + is + r) * s.lda + p0;
          for (int64_t p = 0; p < kc; ++p) dst[p * MR + r] = src[p];
        } else {
          for (int64_t p = 0; p < kc; ++p) dst[p * MR + r] = 0.f;
        }
      }
    }
  }
}

// Packs one NR-column strip of op(B)[p0:p0+kc, j0:j0+nr] into Bp[p][c], zero-padded.
void pack_b_strip(const GemmShape& s, const float* B, int64_t p0, int64_t kc, int64_t j0, int nr, float* Bp) {
  if (!s.transB) {
    for (int64_t p = 0; p < kc; ++p) {
      const float* src = B + (p0 + p) * s.ldb + j0;
      float* dst = Bp + p * NR;
      int c = 0;
      for (; c < nr; ++c) dst[c] = src[c];
      for (; c < NR; ++c) dst[c] = 0.f;
    }
  } else {
    // B stored [N, K]: each column of op(B) is a contiguous row of B.
    for (int c = 0; c < NR; ++c) {
      if (c < nr) {
        const float* src = B + (j0 + c) * s.ldb + p0;
        for (int64_t p = 0; p < kc; ++p) Bp[p * NR + c] = src[p];
      } else {
        for (int64_t p = 0; p < kc; ++p) Bp[p * NR + c] = 0.f;
      }
    }
  }
}

struct AlignedBuffer {
  float* ptr = nullptr;
  size_t cap = 0;
  float* get(size_t n) {
    if (n > cap) {
      std::free(ptr);
      cap = n;
      ptr = static_cast<float*>(std::aligned_alloc(64, ((n * sizeof(float) + 63) / 64) * 64));
    }
    return ptr;
  }
  ~AlignedBuffer() { std::free(ptr); }
};

thread_local AlignedBuffer tl_a;
thread_local AlignedBuffer tl_b;

void zero_c(const GemmShape& s, float* C) {
  for (int64_t i = 0; i < s.M; ++i) std::memset(C + i * s.ldc, 0, sizeof(float) * s.N);
}

// Macro-kernel for A block [i0, i0+mc) against B strips [js0, js1) of the packed panel.
void macro_kernel(const GemmShape& s, const float* Ap, const float* Bp, int64_t kc, int64_t i0, int64_t mc,
                  int64_t js0, int64_t js1, float* C, bool accumulate) {
  for (int64_t js = js0; js < js1; ++js) {
    const int64_t j = js * NR;
    const int nr = static_cast<int>(std::min<int64_t>(NR, s.N - j));
    const float* bstrip = Bp + js * kc * NR;
    for (int64_t is = 0; is < mc; is += MR) {
      const int mr = static_cast<int>(std::min<int64_t>(MR, mc - is));
      micro_kernel(kc, Ap + (is / MR) * kc * MR, bstrip, C + (i0 + is) * s.ldc + j, s.ldc, mr, nr, accumulate);
    }
  }
}

// One thread's share of C: rows [m0, m1) x strips [js0, js1), all of K. It packs its own B strips, so the
// whole product is a single dispatch on the pool with no barrier between K blocks.
void gemm_tile(const GemmShape& s, const float* A, const float* B, float* C, int64_t m0, int64_t m1, int64_t js0,
               int64_t js1) {
  if (m0 >= m1 || js0 >= js1) return;
  float* Bp = tl_b.get(static_cast<size_t>(KC * (js1 - js0) * NR));
  float* Ap = tl_a.get(static_cast<size_t>(MC * KC));
  for (int64_t p0 = 0; p0 < s.K; p0 += KC) {
    const int64_t kc = std::min<int64_t>(KC, s.K - p0);
    for (int64_t js = js0; js < js1; ++js)
      pack_b_strip(s, B, p0, kc, js * NR, static_cast<int>(std::min<int64_t>(NR, s.N - js * NR)), Bp + (js - js0) * kc * NR);
    for (int64_t i0 = m0; i0 < m1; i0 += MC) {
      const int64_t mc = std::min<int64_t>(MC, m1 - i0);
      pack_a(s, A, i0, mc, p0, kc, Ap);
      // Bp is indexed from js0: shift C and the strip range so macro_kernel sees a panel starting at 0.
      GemmShape sub = s;
      sub.N = std::min<int64_t>(s.N, js1 * NR) - js0 * NR;
      macro_kernel(sub, Ap, Bp, kc, i0, mc, 0, js1 - js0, C + js0 * NR, p0 > 0);
    }
  }
}

void builtin_gemm(const GemmShape& s, const float* A, const float* B, float* C, int threads) {
  if (s.M <= 0 || s.N <= 0) return;
  if (s.K <= 0) {
    zero_c(s, C);
    return;
  }
  const int64_t nstrips = (s.N + NR - 1) / NR;
  const int64_t mstrips = (s.M + MR - 1) / MR;
  ThreadPool& tp = pool();
  // Threads only when each gets a worthwhile share (~0.5 MFLOP).
  const double flops = 2.0 * s.M * s.N * s.K;
  int nt = std::max(1, std::min({threads, tp.size(), static_cast<int>(std::min<double>(flops / 5e5, 1 << 20))}));
  // Grid of gm x gn tiles, one per thread: split N while every chunk keeps >= 4 strips, the rest over M.
  int gn = nt;
  while (gn > 1 && (nstrips / gn < 4 || nt % gn != 0)) --gn;
  int gm = std::max(1, std::min<int>(nt / gn, static_cast<int>(mstrips)));
  const int tiles = gm * gn;
  auto tile = [&](int t) {
    const int im = t / gn, jn = t % gn;
    const int64_t m0 = std::min(s.M, mstrips * im / gm * MR), m1 = std::min(s.M, mstrips * (im + 1) / gm * MR);
    const int64_t js0 = nstrips * jn / gn, js1 = nstrips * (jn + 1) / gn;
    gemm_tile(s, A, B, C, m0, m1, js0, js1);
  };
  if (tiles == 1) {
    tile(0);
    return;
  }
  tp.run(tiles, [&](int tid, int) { tile(tid); });
}

std::atomic<bool> force_builtin{false};
int gemm_threads = 0;

bool use_blas() {
#ifdef UNIME_USE_OPENBLAS
  return !force_builtin.load();
#else
  return false;
#endif
}

}  // namespace

bool gemm_has_blas() {
#ifdef UNIME_USE_OPENBLAS
  return true;
#else
  return false;
#endif
}

void gemm_force_builtin(bool on) { force_builtin.store(on); }
bool gemm_forced_builtin() { return force_builtin.load(); }

#ifdef UNIME_USE_OPENBLAS
// OpenBLAS runs single-threaded (see gemm_set_threads); parallelism comes from calling it on slices from our
// own pool, so one set of threads does all the work and no idle BLAS threads spin against our kernels.
void blas_call(const GemmShape& s, const float* A, const float* B, float* C) {
  cblas_sgemm(CblasRowMajor, s.transA ? CblasTrans : CblasNoTrans, s.transB ? CblasTrans : CblasNoTrans,
              static_cast<int>(s.M), static_cast<int>(s.N), static_cast<int>(s.K), 1.f, A, static_cast<int>(s.lda), B,
              static_cast<int>(s.ldb), 0.f, C, static_cast<int>(s.ldc));
}

void blas_parallel(const GemmShape& s, const float* A, const float* B, float* C, int nt) {
  const double flops = 2.0 * s.M * s.N * s.K;
  if (nt <= 1 || flops < 2.0 * 64 * 64 * 64) {
    blas_call(s, A, B, C);
    return;
  }
  // Split the longer of M and N into nt slices aligned to 16, each a plain GEMM on its part of C.
  const bool splitM = s.M >= s.N;
  const int64_t len = splitM ? s.M : s.N;
  const int64_t parts = std::min<int64_t>(nt, std::max<int64_t>(1, len / 16));
  pool().run(static_cast<int>(parts), [&](int tid, int n) {
    int64_t b = (len * tid / n) & ~int64_t(15), e = tid + 1 == n ? len : (len * (tid + 1) / n) & ~int64_t(15);
    if (b >= e) return;
    GemmShape part = s;
    if (splitM) {
      part.M = e - b;
      blas_call(part, s.transA ? A + b : A + b * s.lda, B, C + b * s.ldc);
    } else {
      part.N = e - b;
      blas_call(part, A, s.transB ? B + b * s.ldb : B + b, C + b);
    }
  });
}
#endif

void sgemm_serial(const GemmShape& s, const float* A, const float* B, float* C) {
#ifdef UNIME_USE_OPENBLAS
  if (use_blas() && s.M > 0 && s.N > 0 && s.K > 0) {
    blas_call(s, A, B, C);
    return;
  }
#endif
  builtin_gemm(s, A, B, C, 1);
}

void sgemm(const GemmShape& s, const float* A, const float* B, float* C) {
  if (s.M <= 0 || s.N <= 0) return;
#ifdef UNIME_USE_OPENBLAS
  if (use_blas()) {
    if (s.K <= 0) {
      zero_c(s, C);
      return;
    }
    blas_parallel(s, A, B, C, pool().size());
    return;
  }
#endif
  builtin_gemm(s, A, B, C, pool().size());
}

void sgemm_batched(const GemmShape& s, int64_t batch, const float* A, const int64_t* aOff, const float* B,
                   const int64_t* bOff, float* C, const int64_t* cOff) {
  if (batch <= 0 || s.M <= 0 || s.N <= 0) return;
  const int nt = pool().size();
  const double flops = 2.0 * s.M * s.N * std::max<int64_t>(s.K, 1);
  // Many small products: whole products per thread beat splitting each one across threads.
  if (batch >= nt && nt > 1 && flops < 2.0 * 512 * 512 * 512) {
    pool().run(nt, [&](int tid, int n) {
      for (int64_t b = batch * tid / n, e = batch * (tid + 1) / n; b < e; ++b)
        sgemm_serial(s, A + aOff[b], B + bOff[b], C + cOff[b]);
    });
    return;
  }
  for (int64_t b = 0; b < batch; ++b) sgemm(s, A + aOff[b], B + bOff[b], C + cOff[b]);
}

std::string gemm_name() {
#ifdef UNIME_USE_OPENBLAS
  if (use_blas()) {
    std::string cfg = openblas_get_config();
    return "openblas (" + cfg + ")";
  }
#endif
  return "builtin";
}

void gemm_set_threads(int n) {
  gemm_threads = n;
#ifdef UNIME_USE_OPENBLAS
  // Our pool supplies the threads (blas_parallel); OpenBLAS's own would spin between calls and
  // steal cores from the other kernels.
  openblas_set_num_threads(1);
#endif
}

}  // namespace unime
