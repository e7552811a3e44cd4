#pragma once
#include <cstdint>

namespace unime {

// Row-wise over [rows, cols]. weight/bias may be null (no affine). Saves per-row statistics for backward.
void rms_norm_forward(const float* x, const float* w, float* out, float* rstd, int64_t rows, int64_t cols, float eps);
// dx = d/dx, dw (may be null) = sum over rows of dy * xhat.
void rms_norm_backward(const float* dy, const float* x, const float* w, const float* rstd, float* dx, float* dw,
                       int64_t rows, int64_t cols);
void layer_norm_forward(const float* x, const float* gamma, const float* beta, float* out, float* mean, float* rstd,
                        int64_t rows, int64_t cols, float eps);
void layer_norm_backward(const float* dy, const float* x, const float* gamma, const float* mean, const float* rstd,
                         float* dx, float* dgamma, float* dbeta, int64_t rows, int64_t cols);

// Activations with their derivative: codes shared with src/runtime/native/ops.ts (ACTIVATIONS there).
enum Activation : int { kSilu = 0, kGeluTanh, kGeluErf, kQuickGelu, kActivationCount };
void activation_forward(int kind, const float* x, float* out, int64_t n);
// dx = dy * act'(x)
void activation_backward(int kind, const float* x, const float* dy, float* dx, int64_t n);

}  // namespace unime

namespace unime {

// Rotary position embedding on x [b, h, s, d] with cos/sin tables [b, s, rot] (shared by the heads):
// forward, out = x * cos + rotate_half(x) * sin on the first rot dims (rotate_half(x) = [-x2, x1]), the
// rest copied; inverse (its gradient), out_i = y_i cos_i + y_{i+half} sin_{i+half},
// out_{i+half} = y_{i+half} cos_{i+half} - y_i sin_i. out must not overlap x.
void rope(const float* x, const float* cos, const float* sin, float* out, int64_t b, int64_t h, int64_t s, int64_t d,
          int64_t rot, bool inverse);

}  // namespace unime
