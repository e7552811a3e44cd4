// Single-precision GEMM on row-major matrices: C[M,N] = op(A)[M,K] * op(B)[K,N] (+ C when accumulate).
// op(A) is A ([M,K], lda >= K) or A^T (A stored [K,M], lda >= M); likewise for B.
#pragma once
#include <cstdint>
#include <string>

namespace unime {

struct GemmShape {
  int64_t M, N, K;
  bool transA, transB;
  int64_t lda, ldb, ldc;
};

// Multi-threaded on the process pool; uses BLAS when the addon was linked against one.
void sgemm(const GemmShape& s, const float* A, const float* B, float* C);

// Our own blocked kernel on the calling thread only (used when the pool is busy with other batches).
void sgemm_serial(const GemmShape& s, const float* A, const float* B, float* C);

// Batched GEMM with per-batch offsets (in floats) into A, B and C.
void sgemm_batched(const GemmShape& s, int64_t batch, const float* A, const int64_t* aOff, const float* B,
                   const int64_t* bOff, float* C, const int64_t* cOff);

// "openblas 0.3.21 (pthread)" or "builtin".
std::string gemm_name();
void gemm_set_threads(int n);
bool gemm_has_blas();
// Force the builtin kernel even when BLAS is linked (UNIME_GEMM=builtin, or from JS for benchmarks).
void gemm_force_builtin(bool on);
bool gemm_forced_builtin();

}  // namespace unime
