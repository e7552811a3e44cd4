#pragma once
#include <cstdint>

namespace unime {

// Row-wise over the last axis of a [rows, cols] matrix; out must not overlap x.
void softmax_rows(const float* x, float* out, int64_t rows, int64_t cols);
void log_softmax_rows(const float* x, float* out, int64_t rows, int64_t cols);

}  // namespace unime

namespace unime {

// Per-row cross-entropy of softmax(logits) against integer labels: loss[r] = lse(logits[r]) - logits[r, label[r]];
// a negative label means "ignore": loss 0 and no gradient. Saves lse[r] for the backward pass.
void softmax_cross_entropy(const float* logits, const int32_t* labels, float* loss, float* lse, int64_t rows,
                           int64_t cols);
// dlogits[r, :] = dloss[r] * (softmax(logits[r]) - onehot(label[r])), 0 for ignored rows.
void softmax_cross_entropy_backward(const float* logits, const int32_t* labels, const float* lse, const float* dloss,
                                    float* dlogits, int64_t rows, int64_t cols);

}  // namespace unime
