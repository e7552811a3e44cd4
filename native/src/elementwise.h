#pragma once
#include <cstdint>

namespace unime {

// Codes shared with src/runtime/native/backend.ts (BINARY_OPS / UNARY_OPS there).
enum BinaryOp : int { kAdd = 0, kSub, kMul, kDiv, kMaximum, kMinimum, kSquaredDifference, kBinaryCount };
enum UnaryOp : int {
  kExp = 0, kLog, kNeg, kSqrt, kRsqrt, kSquare, kRelu, kSigmoid, kTanh, kAbs, kReciprocal, kUnaryCount
};

// out[i...] = a[...] op b[...] over `shape` (rank >= 1), with per-dimension element strides for a and b
// (0 where that input broadcasts). out is dense in `shape`.
void binary_strided(int op, const float* a, const float* b, float* out, int rank, const int64_t* shape,
                    const int64_t* a_strides, const int64_t* b_strides);

void unary(int op, const float* x, float* out, int64_t n);

// out = x permuted: out dim i is x dim perm[i]. Shapes of x (rank dims).
void transpose(const float* x, float* out, int rank, const int64_t* shape, const int* perm);

}  // namespace unime

namespace unime {

// out[o, j, :] = x[o, indices[j], :] for x [outer, axis_dim, inner]; indices already checked in range.
void gather(const float* x, const int32_t* indices, float* out, int64_t outer, int64_t axis_dim, int64_t inner,
            int64_t n_indices);

// out[s, :] = sum of x[r, :] over rows r with segment[r] == s; ids outside [0, num_segments) are dropped.
void segment_sum(const float* x, const int32_t* segment, float* out, int64_t rows, int64_t inner, int64_t num_segments);

}  // namespace unime

namespace unime {

enum ReduceOp : int { kReduceSum = 0, kReduceMean, kReduceMax, kReduceMin, kReduceCount };

// x viewed as [outer, r, inner]; out[o, i] = reduce over r of x[o, :, i]. inner == 1 is the row case.
// Sums accumulate in double in index order; max/min return NaN if any element is NaN (as the JS kernels do).
void reduce_middle(int op, const float* x, float* out, int64_t outer, int64_t r, int64_t inner);

}  // namespace unime
