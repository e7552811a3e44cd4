// 8-lane float vectors through GCC vector extensions (ymm with AVX2, split on narrower targets) and a
// vectorised exp shared by the kernels.
#pragma once
#include <cstdint>
#include <cstring>

namespace unime {

typedef float vf8 __attribute__((vector_size(32)));
typedef int32_t vi8 __attribute__((vector_size(32)));

inline vf8 load8(const float* p) {
  vf8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store8(float* p, vf8 v) { std::memcpy(p, &v, sizeof v); }
inline vf8 splat(float x) { return vf8{} + x; }
inline vf8 vmax(vf8 a, vf8 b) { return a > b ? a : b; }
inline vf8 vmin(vf8 a, vf8 b) { return a < b ? a : b; }

// exp(x) for 8 lanes: Cody-Waite range reduction to r in [-ln2/2, ln2/2] and a degree-6 polynomial;
// relative error about 2e-7 over the float range; below -87.3 (the denormal range) it gives 0, above
// 88.72 +inf, and NaN stays NaN.
inline vf8 vexp(vf8 x) {
  const vf8 lo = splat(-87.33654f), hi = splat(88.72283f);
  const vi8 underflow = x < lo;
  const vi8 overflow = x > hi;
  const vi8 nan = x != x;
  const vf8 input = x;
  x = vmin(vmax(x, lo), hi);
  const vf8 log2e = splat(1.44269504088896341f);
  vf8 fx = x * log2e;
  // round to nearest
  vf8 n = __builtin_convertvector(__builtin_convertvector(fx + (fx >= 0 ? splat(0.5f) : splat(-0.5f)), vi8), vf8);
  vf8 r = x - n * splat(0.693359375f);
  r = r - n * splat(-2.12194440e-4f);
  vf8 p = splat(1.9875691500e-4f);
  p = p * r + splat(1.3981999507e-3f);
  p = p * r + splat(8.3334519073e-3f);
  p = p * r + splat(4.1665795894e-2f);
  p = p * r + splat(1.6666665459e-1f);
  p = p * r + splat(5.0000001201e-1f);
  p = p * r * r + r + splat(1.f);
  // 2^n, n in [-126, 128): built in the exponent field; n = 128 (x near the top) split as 2^127 * 2.
  vi8 ni = __builtin_convertvector(n, vi8);
  vi8 big = ni > 127;
  ni = big ? ni - 1 : ni;
  vi8 bits = (ni + 127) << 23;
  vf8 scale;
  std::memcpy(&scale, &bits, sizeof scale);
  vf8 res = p * scale;
  res = big ? res * splat(2.f) : res;
  const vf8 zero = {};
  res = underflow ? zero : res;
  res = overflow ? splat(__builtin_inff()) : res;
  return nan ? input : res;
}

}  // namespace unime
