#pragma once
#include <cstdint>

namespace unime {

struct AttentionShape {
  int64_t B, H, Hkv, Sq, Sk, D;
  float scale;
  bool causal;  // query i sees keys j <= i + (Sk - Sq)
};

// q [B,H,Sq,D], k/v [B,Hkv,Sk,D] (query head h uses kv head h / (H/Hkv)), key_mask [B,Sk] or null (0 = padding).
// out [B,H,Sq,D]; lse [B,H,Sq] = log-sum-exp of each row's visible scores (-inf when none is visible, and that
// row's output is 0).
void attention_forward(const AttentionShape& s, const float* q, const float* k, const float* v, const float* key_mask,
                       float* out, float* lse);

// Gradients from dout; recomputes the probabilities from lse instead of storing them.
void attention_backward(const AttentionShape& s, const float* q, const float* k, const float* v, const float* key_mask,
                        const float* lse, const float* dout, float* dq, float* dk, float* dv);

}  // namespace unime
