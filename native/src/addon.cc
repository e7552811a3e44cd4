// N-API surface of the native kernels. Every kernel takes Float32Arrays the caller owns (the tfjs cpu
// backend's buffers) plus sizes, writes its result into a caller-provided output and returns nothing;
// shapes, broadcasting and dtype checks happen on the TypeScript side (src/runtime/native/).
#include <napi.h>

#include <cstdlib>
#include <string>
#include <vector>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "attention.h"
#include "elementwise.h"
#include "gemm.h"
#include "kernels.h"
#include "norms.h"
#include "thread_pool.h"

namespace {

using unime::GemmShape;

float* f32(const Napi::Value& v, const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a Float32Array");
  return v.As<Napi::Float32Array>().Data();
}

size_t f32_len(const Napi::Value& v) { return v.As<Napi::Float32Array>().ElementLength(); }

int64_t i64(const Napi::Value& v, const char* what) {
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (d < 0 || d != static_cast<double>(static_cast<int64_t>(d)))
    throw Napi::RangeError::New(v.Env(), std::string(what) + " must be a non-negative integer");
  return static_cast<int64_t>(d);
}

std::vector<int64_t> offsets(const Napi::Value& v, int64_t batch, int64_t stride, const char* what) {
  std::vector<int64_t> out(static_cast<size_t>(batch));
  if (v.IsNull() || v.IsUndefined()) {
    for (int64_t b = 0; b < batch; ++b) out[b] = b * stride;
    return out;
  }
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    throw Napi::TypeError::New(v.Env(), std::string(what) + " must be an Int32Array or null");
  auto idx = v.As<Napi::Int32Array>();
  if (static_cast<int64_t>(idx.ElementLength()) != batch)
    throw Napi::RangeError::New(v.Env(), std::string(what) + " must have one entry per batch");
  for (int64_t b = 0; b < batch; ++b) out[b] = static_cast<int64_t>(idx[static_cast<size_t>(b)]) * stride;
  return out;
}

// batchMatMul(a, b, out, batch, m, n, k, transA, transB, aIndex, bIndex, builtin?)
// a holds A matrices of op-shape [m,k] (stored [k,m] when transA), b likewise [k,n]; aIndex[i] / bIndex[i]
// say which stored matrix output batch i uses (null: i itself), which is how batch broadcasting arrives.
Napi::Value BatchMatMul(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 11) throw Napi::TypeError::New(env, "batchMatMul: expected 11 arguments");
  float* a = f32(info[0], "a");
  float* b = f32(info[1], "b");
  float* c = f32(info[2], "out");
  const int64_t batch = i64(info[3], "batch"), m = i64(info[4], "m"), n = i64(info[5], "n"), k = i64(info[6], "k");
  const bool ta = info[7].ToBoolean(), tb = info[8].ToBoolean();
  // info[11]: true runs the builtin kernel, false BLAS (where linked), absent the process-wide choice.
  const bool choose = info.Length() > 11 && info[11].IsBoolean();
  const bool builtin = choose && info[11].ToBoolean();
  auto aOff = offsets(info[9], batch, m * k, "aIndex");
  auto bOff = offsets(info[10], batch, k * n, "bIndex");
  std::vector<int64_t> cOff(static_cast<size_t>(batch));
  for (int64_t i = 0; i < batch; ++i) cOff[i] = i * m * n;
  const size_t alen = f32_len(info[0]), blen = f32_len(info[1]), clen = f32_len(info[2]);
  for (int64_t i = 0; i < batch; ++i) {
    if (aOff[i] + m * k > static_cast<int64_t>(alen) || bOff[i] + k * n > static_cast<int64_t>(blen))
      throw Napi::RangeError::New(env, "batchMatMul: an input is smaller than its shape");
  }
  if (batch * m * n > static_cast<int64_t>(clen)) throw Napi::RangeError::New(env, "batchMatMul: out is too small");
  GemmShape s{m, n, k, ta, tb, ta ? m : k, tb ? k : n, n};
  // `builtin` runs exactly what a build without BLAS would (benchmarks and tests of that path);
  // false runs BLAS even where UNIME_GEMM=builtin chose the builtin kernel (the install-time timing).
  const bool was = unime::gemm_forced_builtin();
  if (choose) unime::gemm_force_builtin(builtin);
  unime::sgemm_batched(s, batch, a, aOff.data(), b, bOff.data(), c, cOff.data());
  unime::gemm_force_builtin(was);
  return env.Undefined();
}

Napi::Value RowKernel(const Napi::CallbackInfo& info, void (*fn)(const float*, float*, int64_t, int64_t), const char* name) {
  Napi::Env env = info.Env();
  if (info.Length() < 4) throw Napi::TypeError::New(env, std::string(name) + ": expected (x, out, rows, cols)");
  float* x = f32(info[0], "x");
  float* o = f32(info[1], "out");
  const int64_t rows = i64(info[2], "rows"), cols = i64(info[3], "cols");
  if (static_cast<int64_t>(f32_len(info[0])) < rows * cols || static_cast<int64_t>(f32_len(info[1])) < rows * cols)
    throw Napi::RangeError::New(env, std::string(name) + ": buffers smaller than rows * cols");
  fn(x, o, rows, cols);
  return env.Undefined();
}

Napi::Value Softmax(const Napi::CallbackInfo& info) { return RowKernel(info, unime::softmax_rows, "softmax"); }
Napi::Value LogSoftmax(const Napi::CallbackInfo& info) { return RowKernel(info, unime::log_softmax_rows, "logSoftmax"); }

std::vector<int64_t> i64s(const Napi::Value& v, const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    throw Napi::TypeError::New(v.Env(), std::string(what) + " must be an Int32Array");
  auto arr = v.As<Napi::Int32Array>();
  std::vector<int64_t> out(arr.ElementLength());
  for (size_t i = 0; i < out.size(); ++i) out[i] = arr[i];
  return out;
}

// Largest element offset + 1 that a strided walk over shape touches (0 when the shape is empty).
int64_t extent(const std::vector<int64_t>& shape, const std::vector<int64_t>& strides) {
  int64_t last = 0;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == 0) return 0;
    last += (shape[i] - 1) * strides[i];
  }
  return last + 1;
}

// binary(op, a, b, out, shape, aStrides, bStrides)
Napi::Value Binary(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 7) throw Napi::TypeError::New(env, "binary: expected 7 arguments");
  const int64_t op = i64(info[0], "op");
  if (op >= unime::kBinaryCount) throw Napi::RangeError::New(env, "binary: unknown op");
  float* a = f32(info[1], "a");
  float* b = f32(info[2], "b");
  float* o = f32(info[3], "out");
  auto shape = i64s(info[4], "shape"), as = i64s(info[5], "aStrides"), bs = i64s(info[6], "bStrides");
  if (shape.empty() || as.size() != shape.size() || bs.size() != shape.size())
    throw Napi::RangeError::New(env, "binary: shape and strides must have the same rank >= 1");
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  if (n == 0) return env.Undefined();
  for (size_t i = 0; i < shape.size(); ++i)
    if (shape[i] < 0 || as[i] < 0 || bs[i] < 0) throw Napi::RangeError::New(env, "binary: negative shape or stride");
  if (static_cast<int64_t>(f32_len(info[3])) < n || static_cast<int64_t>(f32_len(info[1])) < extent(shape, as) ||
      static_cast<int64_t>(f32_len(info[2])) < extent(shape, bs))
    throw Napi::RangeError::New(env, "binary: a buffer is smaller than its shape");
  unime::binary_strided(static_cast<int>(op), a, b, o, static_cast<int>(shape.size()), shape.data(), as.data(), bs.data());
  return env.Undefined();
}

// unary(op, x, out)
Napi::Value Unary(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3) throw Napi::TypeError::New(env, "unary: expected 3 arguments");
  const int64_t op = i64(info[0], "op");
  if (op >= unime::kUnaryCount) throw Napi::RangeError::New(env, "unary: unknown op");
  float* x = f32(info[1], "x");
  float* o = f32(info[2], "out");
  const size_t n = f32_len(info[1]);
  if (f32_len(info[2]) < n) throw Napi::RangeError::New(env, "unary: out is smaller than x");
  unime::unary(static_cast<int>(op), x, o, static_cast<int64_t>(n));
  return env.Undefined();
}

// transpose(x, out, shape, perm)
Napi::Value Transpose(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4) throw Napi::TypeError::New(env, "transpose: expected 4 arguments");
  float* x = f32(info[0], "x");
  float* o = f32(info[1], "out");
  auto shape = i64s(info[2], "shape"), perm64 = i64s(info[3], "perm");
  if (shape.empty() || perm64.size() != shape.size()) throw Napi::RangeError::New(env, "transpose: rank mismatch");
  std::vector<int> perm(perm64.size());
  std::vector<bool> seen(perm64.size(), false);
  int64_t n = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (perm64[i] < 0 || perm64[i] >= static_cast<int64_t>(shape.size()) || seen[perm64[i]] || shape[i] < 0)
      throw Napi::RangeError::New(env, "transpose: perm is not a permutation");
    seen[perm64[i]] = true;
    perm[i] = static_cast<int>(perm64[i]);
    n *= shape[i];
  }
  if (static_cast<int64_t>(f32_len(info[0])) < n || static_cast<int64_t>(f32_len(info[1])) < n)
    throw Napi::RangeError::New(env, "transpose: a buffer is smaller than the shape");
  unime::transpose(x, o, static_cast<int>(shape.size()), shape.data(), perm.data());
  return env.Undefined();
}

// A Float32Array of at least n elements, or null when allowed.
float* f32n(const Napi::Value& v, const char* what, int64_t n, bool nullable) {
  if (nullable && (v.IsNull() || v.IsUndefined())) return nullptr;
  float* p = f32(v, what);
  if (static_cast<int64_t>(f32_len(v)) < n)
    throw Napi::RangeError::New(v.Env(), std::string(what) + " is smaller than its shape");
  return p;
}

float f32arg(const Napi::Value& v, const char* what) {
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a number");
  return v.As<Napi::Number>().FloatValue();
}

// rmsNorm(x, weight|null, out, rstd, rows, cols, eps)
Napi::Value RmsNorm(const Napi::CallbackInfo& info) {
  if (info.Length() < 7) throw Napi::TypeError::New(info.Env(), "rmsNorm: expected 7 arguments");
  const int64_t rows = i64(info[4], "rows"), cols = i64(info[5], "cols");
  unime::rms_norm_forward(f32n(info[0], "x", rows * cols, false), f32n(info[1], "weight", cols, true),
                          f32n(info[2], "out", rows * cols, false), f32n(info[3], "rstd", rows, false), rows, cols,
                          f32arg(info[6], "eps"));
  return info.Env().Undefined();
}

// rmsNormBackward(dy, x, weight|null, rstd, dx, dweight|null, rows, cols)
Napi::Value RmsNormBackward(const Napi::CallbackInfo& info) {
  if (info.Length() < 8) throw Napi::TypeError::New(info.Env(), "rmsNormBackward: expected 8 arguments");
  const int64_t rows = i64(info[6], "rows"), cols = i64(info[7], "cols");
  unime::rms_norm_backward(f32n(info[0], "dy", rows * cols, false), f32n(info[1], "x", rows * cols, false),
                           f32n(info[2], "weight", cols, true), f32n(info[3], "rstd", rows, false),
                           f32n(info[4], "dx", rows * cols, false), f32n(info[5], "dweight", cols, true), rows, cols);
  return info.Env().Undefined();
}

// layerNorm(x, gamma|null, beta|null, out, mean, rstd, rows, cols, eps)
Napi::Value LayerNorm(const Napi::CallbackInfo& info) {
  if (info.Length() < 9) throw Napi::TypeError::New(info.Env(), "layerNorm: expected 9 arguments");
  const int64_t rows = i64(info[6], "rows"), cols = i64(info[7], "cols");
  unime::layer_norm_forward(f32n(info[0], "x", rows * cols, false), f32n(info[1], "gamma", cols, true),
                            f32n(info[2], "beta", cols, true), f32n(info[3], "out", rows * cols, false),
                            f32n(info[4], "mean", rows, false), f32n(info[5], "rstd", rows, false), rows, cols,
                            f32arg(info[8], "eps"));
  return info.Env().Undefined();
}

// layerNormBackward(dy, x, gamma|null, mean, rstd, dx, dgamma|null, dbeta|null, rows, cols)
Napi::Value LayerNormBackward(const Napi::CallbackInfo& info) {
  if (info.Length() < 10) throw Napi::TypeError::New(info.Env(), "layerNormBackward: expected 10 arguments");
  const int64_t rows = i64(info[8], "rows"), cols = i64(info[9], "cols");
  unime::layer_norm_backward(f32n(info[0], "dy", rows * cols, false), f32n(info[1], "x", rows * cols, false),
                             f32n(info[2], "gamma", cols, true), f32n(info[3], "mean", rows, false),
                             f32n(info[4], "rstd", rows, false), f32n(info[5], "dx", rows * cols, false),
                             f32n(info[6], "dgamma", cols, true), f32n(info[7], "dbeta", cols, true), rows, cols);
  return info.Env().Undefined();
}

// rope(x, cos, sin, out, b, h, s, d, rot, inverse): x and out [b, h, s, d], cos and sin [b, s, rot]
Napi::Value Rope(const Napi::CallbackInfo& info) {
  if (info.Length() < 10) throw Napi::TypeError::New(info.Env(), "rope: expected 10 arguments");
  const int64_t b = i64(info[4], "b"), h = i64(info[5], "h"), s = i64(info[6], "s"), d = i64(info[7], "d"), rot = i64(info[8], "rot");
  if (rot % 2 != 0 || rot > d) throw Napi::RangeError::New(info.Env(), "rope: rot must be even and at most d");
  unime::rope(f32n(info[0], "x", b * h * s * d, false), f32n(info[1], "cos", b * s * rot, false), f32n(info[2], "sin", b * s * rot, false),
              f32n(info[3], "out", b * h * s * d, false), b, h, s, d, rot, info[9].ToBoolean().Value());
  return info.Env().Undefined();
}

// activation(kind, x, out) and activationBackward(kind, x, dy, dx)
Napi::Value Activation(const Napi::CallbackInfo& info) {
  if (info.Length() < 3) throw Napi::TypeError::New(info.Env(), "activation: expected 3 arguments");
  const int64_t kind = i64(info[0], "kind");
  if (kind >= unime::kActivationCount) throw Napi::RangeError::New(info.Env(), "activation: unknown kind");
  const int64_t n = static_cast<int64_t>(f32_len(info[1]));
  unime::activation_forward(static_cast<int>(kind), f32n(info[1], "x", n, false), f32n(info[2], "out", n, false), n);
  return info.Env().Undefined();
}

Napi::Value ActivationBackward(const Napi::CallbackInfo& info) {
  if (info.Length() < 4) throw Napi::TypeError::New(info.Env(), "activationBackward: expected 4 arguments");
  const int64_t kind = i64(info[0], "kind");
  if (kind >= unime::kActivationCount) throw Napi::RangeError::New(info.Env(), "activationBackward: unknown kind");
  const int64_t n = static_cast<int64_t>(f32_len(info[1]));
  unime::activation_backward(static_cast<int>(kind), f32n(info[1], "x", n, false), f32n(info[2], "dy", n, false),
                             f32n(info[3], "dx", n, false), n);
  return info.Env().Undefined();
}

int32_t* i32n(const Napi::Value& v, const char* what, int64_t n) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    throw Napi::TypeError::New(v.Env(), std::string(what) + " must be an Int32Array");
  auto a = v.As<Napi::Int32Array>();
  if (static_cast<int64_t>(a.ElementLength()) < n) throw Napi::RangeError::New(v.Env(), std::string(what) + " is too short");
  return a.Data();
}

// gather(x, indices, out, outer, axisDim, inner, nIndices)
Napi::Value Gather(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 7) throw Napi::TypeError::New(env, "gather: expected 7 arguments");
  const int64_t outer = i64(info[3], "outer"), axis = i64(info[4], "axisDim"), inner = i64(info[5], "inner"),
                n = i64(info[6], "nIndices");
  int32_t* idx = i32n(info[1], "indices", n);
  for (int64_t j = 0; j < n; ++j)
    if (idx[j] < 0 || idx[j] >= axis) throw Napi::RangeError::New(env, "gather: index out of range");
  unime::gather(f32n(info[0], "x", outer * axis * inner, false), idx, f32n(info[2], "out", outer * n * inner, false),
                outer, axis, inner, n);
  return env.Undefined();
}

// segmentSum(x, segmentIds, out, rows, inner, numSegments)
Napi::Value SegmentSum(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 6) throw Napi::TypeError::New(env, "segmentSum: expected 6 arguments");
  const int64_t rows = i64(info[3], "rows"), inner = i64(info[4], "inner"), ns = i64(info[5], "numSegments");
  unime::segment_sum(f32n(info[0], "x", rows * inner, false), i32n(info[1], "segmentIds", rows),
                     f32n(info[2], "out", ns * inner, false), rows, inner, ns);
  return env.Undefined();
}

// shape = [B, H, Hkv, Sq, Sk, D] as an Int32Array, then scale and causal.
unime::AttentionShape attention_shape(const Napi::CallbackInfo& info, size_t at) {
  auto dims = i64s(info[at], "shape");
  if (dims.size() != 6) throw Napi::RangeError::New(info.Env(), "attention: shape must be [B, H, Hkv, Sq, Sk, D]");
  for (int64_t d : dims)
    if (d < 0) throw Napi::RangeError::New(info.Env(), "attention: negative dimension");
  unime::AttentionShape s{dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], f32arg(info[at + 1], "scale"),
                          info[at + 2].ToBoolean()};
  if (s.Hkv <= 0 || s.H % s.Hkv != 0) throw Napi::RangeError::New(info.Env(), "attention: heads must be a multiple of kv heads");
  return s;
}

// attention(q, k, v, keyMask|null, out, lse, shape, scale, causal)
Napi::Value Attention(const Napi::CallbackInfo& info) {
  if (info.Length() < 9) throw Napi::TypeError::New(info.Env(), "attention: expected 9 arguments");
  const auto s = attention_shape(info, 6);
  const int64_t qn = s.B * s.H * s.Sq * s.D, kn = s.B * s.Hkv * s.Sk * s.D;
  unime::attention_forward(s, f32n(info[0], "q", qn, false), f32n(info[1], "k", kn, false), f32n(info[2], "v", kn, false),
                           f32n(info[3], "keyMask", s.B * s.Sk, true), f32n(info[4], "out", qn, false),
                           f32n(info[5], "lse", s.B * s.H * s.Sq, false));
  return info.Env().Undefined();
}

// attentionBackward(q, k, v, keyMask|null, lse, dout, dq, dk, dv, shape, scale, causal)
Napi::Value AttentionBackward(const Napi::CallbackInfo& info) {
  if (info.Length() < 12) throw Napi::TypeError::New(info.Env(), "attentionBackward: expected 12 arguments");
  const auto s = attention_shape(info, 9);
  const int64_t qn = s.B * s.H * s.Sq * s.D, kn = s.B * s.Hkv * s.Sk * s.D;
  unime::attention_backward(s, f32n(info[0], "q", qn, false), f32n(info[1], "k", kn, false), f32n(info[2], "v", kn, false),
                            f32n(info[3], "keyMask", s.B * s.Sk, true), f32n(info[4], "lse", s.B * s.H * s.Sq, false),
                            f32n(info[5], "dout", qn, false), f32n(info[6], "dq", qn, false), f32n(info[7], "dk", kn, false),
                            f32n(info[8], "dv", kn, false));
  return info.Env().Undefined();
}

// softmaxCrossEntropy(logits, labels, loss, lse, rows, cols)
Napi::Value SoftmaxCrossEntropy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 6) throw Napi::TypeError::New(env, "softmaxCrossEntropy: expected 6 arguments");
  const int64_t rows = i64(info[4], "rows"), cols = i64(info[5], "cols");
  int32_t* labels = i32n(info[1], "labels", rows);
  for (int64_t r = 0; r < rows; ++r)
    if (labels[r] >= cols) throw Napi::RangeError::New(env, "softmaxCrossEntropy: label out of range");
  unime::softmax_cross_entropy(f32n(info[0], "logits", rows * cols, false), labels, f32n(info[2], "loss", rows, false),
                               f32n(info[3], "lse", rows, false), rows, cols);
  return env.Undefined();
}

// softmaxCrossEntropyBackward(logits, labels, lse, dloss, dlogits, rows, cols)
Napi::Value SoftmaxCrossEntropyBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 7) throw Napi::TypeError::New(env, "softmaxCrossEntropyBackward: expected 7 arguments");
  const int64_t rows = i64(info[5], "rows"), cols = i64(info[6], "cols");
  int32_t* labels = i32n(info[1], "labels", rows);
  for (int64_t r = 0; r < rows; ++r)
    if (labels[r] >= cols) throw Napi::RangeError::New(env, "softmaxCrossEntropyBackward: label out of range");
  unime::softmax_cross_entropy_backward(f32n(info[0], "logits", rows * cols, false), labels, f32n(info[2], "lse", rows, false),
                                        f32n(info[3], "dloss", rows, false), f32n(info[4], "dlogits", rows * cols, false),
                                        rows, cols);
  return env.Undefined();
}

// reduce(op, x, out, outer, r, inner)
Napi::Value Reduce(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 6) throw Napi::TypeError::New(env, "reduce: expected 6 arguments");
  const int64_t op = i64(info[0], "op");
  if (op >= unime::kReduceCount) throw Napi::RangeError::New(env, "reduce: unknown op");
  const int64_t outer = i64(info[3], "outer"), r = i64(info[4], "r"), inner = i64(info[5], "inner");
  if (r == 0 && (op == unime::kReduceMax || op == unime::kReduceMin))
    throw Napi::RangeError::New(env, "reduce: max/min over an empty axis");
  unime::reduce_middle(static_cast<int>(op), f32n(info[1], "x", outer * r * inner, false),
                       f32n(info[2], "out", outer * inner, false), outer, r, inner);
  return env.Undefined();
}

// How the process's malloc was set up at load ("tuned", or why not), reported by info().
std::string malloc_mode = "default";

// Kernels write every output into a fresh buffer, and tfjs frees it when the tensor is disposed and
// collected. With glibc's defaults a buffer above its mmap threshold (128 KiB to 32 MiB, adapting) is a
// fresh mmap: every page faults on first touch, and the kernel zeroes it, which on a VM can cost more
// than the product itself (16 MiB: 13 ms to fault in vs 2 ms for the attention matmul writing it). So big
// buffers come from the heap and freed heap memory is kept for the next one (up to 1 GiB is not handed
// back). Measured on a 2-core Zen 5 VM: the quickstart's teacher-train 45 -> 33 s, hardneg 125 -> 107 s.
// Skipped where the user tuned malloc (MALLOC_*_ or GLIBC_TUNABLES) or set UNIME_MALLOC=default.
void tune_malloc() {
#if defined(__GLIBC__)
  const char* opt = std::getenv("UNIME_MALLOC");
  if (opt != nullptr && std::string(opt) == "default") {
    malloc_mode = "default (UNIME_MALLOC=default)";
    return;
  }
  if (std::getenv("MALLOC_MMAP_THRESHOLD_") || std::getenv("MALLOC_TRIM_THRESHOLD_") || std::getenv("GLIBC_TUNABLES")) {
    malloc_mode = "default (the environment tunes malloc)";
    return;
  }
  const bool ok = mallopt(M_MMAP_THRESHOLD, 512 << 20) == 1 && mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1;
  malloc_mode = ok ? "tuned" : "default (mallopt refused)";
#else
  malloc_mode = "default (not glibc)";
#endif
}

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("gemm", unime::gemm_name());
  o.Set("blas", unime::gemm_has_blas());
  o.Set("threads", unime::pool().size());
  o.Set("malloc", malloc_mode);
#if defined(__AVX512F__)
  o.Set("simd", "avx512");
#elif defined(__AVX2__)
  o.Set("simd", "avx2");
#elif defined(__AVX__)
  o.Set("simd", "avx");
#elif defined(__SSE2__)
  o.Set("simd", "sse2");
#elif defined(__ARM_NEON)
  o.Set("simd", "neon");
#else
  o.Set("simd", "generic");
#endif
  return o;
}

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  const int64_t n = i64(info[0], "threads");
  const int t = n > 0 ? static_cast<int>(n) : unime::default_threads();
  unime::set_pool_threads(t);
  unime::gemm_set_threads(t);
  return Napi::Number::New(info.Env(), t);
}

// probe(device): the device layer asks whether this addon can run a device. This build has CPU kernels only.
Napi::Value Probe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string device = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  Napi::Object o = Napi::Object::New(env);
  if (device == "native") {
    o.Set("available", true);
  } else {
    o.Set("available", false);
    o.Set("reason", "this build of the native addon has CPU kernels only (no CUDA)");
  }
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  const int t = unime::default_threads();
  unime::set_pool_threads(t);
  unime::gemm_set_threads(t);
  if (const char* g = std::getenv("UNIME_GEMM")) unime::gemm_force_builtin(std::string(g) == "builtin");
  tune_malloc();
  exports.Set("batchMatMul", Napi::Function::New(env, BatchMatMul));
  exports.Set("softmax", Napi::Function::New(env, Softmax));
  exports.Set("logSoftmax", Napi::Function::New(env, LogSoftmax));
  exports.Set("binary", Napi::Function::New(env, Binary));
  exports.Set("unary", Napi::Function::New(env, Unary));
  exports.Set("transpose", Napi::Function::New(env, Transpose));
  exports.Set("rmsNorm", Napi::Function::New(env, RmsNorm));
  exports.Set("rmsNormBackward", Napi::Function::New(env, RmsNormBackward));
  exports.Set("layerNorm", Napi::Function::New(env, LayerNorm));
  exports.Set("layerNormBackward", Napi::Function::New(env, LayerNormBackward));
  exports.Set("activation", Napi::Function::New(env, Activation));
  exports.Set("rope", Napi::Function::New(env, Rope));
  exports.Set("activationBackward", Napi::Function::New(env, ActivationBackward));
  exports.Set("gather", Napi::Function::New(env, Gather));
  exports.Set("segmentSum", Napi::Function::New(env, SegmentSum));
  exports.Set("attention", Napi::Function::New(env, Attention));
  exports.Set("attentionBackward", Napi::Function::New(env, AttentionBackward));
  exports.Set("softmaxCrossEntropy", Napi::Function::New(env, SoftmaxCrossEntropy));
  exports.Set("softmaxCrossEntropyBackward", Napi::Function::New(env, SoftmaxCrossEntropyBackward));
  exports.Set("reduce", Napi::Function::New(env, Reduce));
  exports.Set("info", Napi::Function::New(env, Info));
  exports.Set("setNumThreads", Napi::Function::New(env, SetNumThreads));
  exports.Set("probe", Napi::Function::New(env, Probe));
  return exports;
}

}  // namespace

NODE_API_MODULE(unime_native, Init)
