/**
 * Rotary position embeddings in the rotate-half layout Hugging Face checkpoints use: the two halves
 * of the rotary dims pair up (i, i + d/2), not adjacent pairs. Frequencies follow transformers'
 * rope init functions (computed in float32 like transformers does), cos/sin are built per row
 * from that row's position ids.
 */
import { tf, type Tensor } from '../../runtime/tf.js';
import type { RopeConfig } from './config.js';
import { rope } from '../../runtime/native/ops.js';

const f32 = Math.fround;

/** Inverse frequencies (length rotaryDim/2) and the cos/sin scale, for inputs whose largest position id + 1 is `seqLen`. */
export function ropeInverseFrequencies(rope: RopeConfig, seqLen: number): { invFreq: Float32Array; scale: number } {
  const dim = rope.rotaryDim;
  const n = dim / 2;
  let theta = rope.theta;
  if (rope.kind === 'dynamic' && seqLen > rope.maxPositionEmbeddings) {
    // Dynamic NTK: the base grows with the length once past the trained context. transformers keeps
    // the grown base for later shorter-but-still-long calls; this is the stateless form.
    const factor = rope.factor!;
    theta = theta * ((factor * seqLen) / rope.maxPositionEmbeddings - (factor - 1)) ** (dim / (dim - 2));
  }
  const base = new Float32Array(n);
  for (let i = 0; i < n; i++) base[i] = f32(1 / f32(theta ** f32((2 * i) / dim)));
  let scale = 1;
  switch (rope.kind) {
    case 'default':
    case 'dynamic':
      break;
    case 'linear':
      for (let i = 0; i < n; i++) base[i] = f32(base[i]! / rope.factor!);
      break;
    case 'llama3': {
      const factor = rope.factor!;
      const lo = rope.lowFreqFactor!;
      const hi = rope.highFreqFactor!;
      const old = rope.originalMaxPositionEmbeddings!;
      const lowFreqWavelen = old / lo;
      const highFreqWavelen = old / hi;
      for (let i = 0; i < n; i++) {
        const f = base[i]!;
        const wavelen = (2 * Math.PI) / f;
        if (wavelen < highFreqWavelen) continue;
        if (wavelen > lowFreqWavelen) base[i] = f32(f / factor);
        else {
          const smooth = (old / wavelen - lo) / (hi - lo);
          base[i] = f32(((1 - smooth) * f) / factor + smooth * f);
        }
      }
      break;
    }
    case 'longrope': {
      const ext = seqLen > rope.originalMaxPositionEmbeddings! ? rope.longFactor! : rope.shortFactor!;
      for (let i = 0; i < n; i++) base[i] = f32(1 / f32(f32(ext[i]!) * f32(rope.theta ** f32((2 * i) / dim))));
      scale = rope.attentionScaling ?? 1;
      break;
    }
  }
  return { invFreq: base, scale };
}

/**
 * cos and sin tables [batch, 1, seq, rotaryDim] for position ids given row-major [batch, seq].
 * The longrope / dynamic choice depends on the largest position in the batch, as in transformers.
 */
export function ropeTables(rope: RopeConfig, positions: Int32Array, batch: number, seq: number): { cos: Tensor; sin: Tensor } {
  let maxPos = 0;
  for (const p of positions) if (p > maxPos) maxPos = p;
  const { invFreq, scale } = ropeInverseFrequencies(rope, maxPos + 1);
  const n = invFreq.length;
  const dim = 2 * n;
  const cos = new Float32Array(batch * seq * dim);
  const sin = new Float32Array(batch * seq * dim);
  for (let r = 0; r < batch * seq; r++) {
    const p = f32(positions[r]!);
    const o = r * dim;
    for (let i = 0; i < n; i++) {
      const angle = f32(invFreq[i]! * p);
      const c = f32(Math.cos(angle) * scale);
      const s = f32(Math.sin(angle) * scale);
      cos[o + i] = c;
      cos[o + n + i] = c;
      sin[o + i] = s;
      sin[o + n + i] = s;
    }
  }
  return { cos: tf.tensor4d(cos, [batch, 1, seq, dim]), sin: tf.tensor4d(sin, [batch, 1, seq, dim]) };
}

/** x [batch, heads, seq, headDim] rotated on its first cos.shape[3] dims; the rest pass through (partial rotary). */
export function applyRope(x: Tensor, cos: Tensor, sin: Tensor): Tensor {
  return rope(x, cos, sin);
}
