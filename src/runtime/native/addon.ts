/**
 * The surface of the native addon (native/src/addon.cc) as TypeScript sees it. Kernels write into a
 * caller-provided output and check only buffer sizes; shapes, broadcasting and dtypes are resolved on
 * the TypeScript side before the call.
 */
import type { Availability, DeviceName } from '../devices.js';

export interface NativeInfo {
  /** Which GEMM the addon runs: "openblas (OpenBLAS 0.3.21 ...)" or "builtin". */
  gemm: string;
  /** Whether it was linked against a BLAS at all (UNIME_GEMM=builtin can still force the builtin one). */
  blas: boolean;
  /** Threads of the addon's pool (UNIME_NUM_THREADS, default = cores). */
  threads: number;
  /** Vector instruction set it was compiled for. */
  simd: string;
  /** "tuned" when the addon set glibc malloc to keep big freed buffers (native/src/addon.cc), else why not. */
  malloc?: string;
}

export interface NativeKernels {
  info(): NativeInfo;
  probe(device: DeviceName): Availability;
  /** Sets the pool and BLAS thread count; 0 means the default. Returns the count in use. */
  setNumThreads(n: number): number;
  /**
   * `batch` products op(A)[m,k] x op(B)[k,n] into out[batch, m, n]; aIndex[i] / bIndex[i] name the stored
   * matrix output batch i reads (null: i itself). `builtin`: true runs the addon's own GEMM, false BLAS
   * (where linked), absent the process-wide choice (UNIME_GEMM, or the install-time timing).
   */
  batchMatMul(
    a: Float32Array,
    b: Float32Array,
    out: Float32Array,
    batch: number,
    m: number,
    n: number,
    k: number,
    transposeA: boolean,
    transposeB: boolean,
    aIndex: Int32Array | null,
    bIndex: Int32Array | null,
    builtin?: boolean,
  ): void;
  /** Softmax over the last axis of x viewed as [rows, cols]; out must not overlap x. */
  softmax(x: Float32Array, out: Float32Array, rows: number, cols: number): void;
  logSoftmax(x: Float32Array, out: Float32Array, rows: number, cols: number): void;
  /**
   * out = a op b over `shape` (rank >= 1), reading a and b with the given per-dimension element strides
   * (0 where that input broadcasts); op is an index into BINARY_OPS.
   */
  binary(op: number, a: Float32Array, b: Float32Array, out: Float32Array, shape: Int32Array, aStrides: Int32Array, bStrides: Int32Array): void;
  /** out = op(x) elementwise; op is an index into UNARY_OPS. */
  unary(op: number, x: Float32Array, out: Float32Array): void;
  /** out = x with its dims permuted (out dim i = x dim perm[i]); shape is x's. */
  transpose(x: Float32Array, out: Float32Array, shape: Int32Array, perm: Int32Array): void;
  /** RMS norm of x [rows, cols] over cols, times weight when given; writes 1/rms per row into rstd. */
  rmsNorm(x: Float32Array, weight: Float32Array | null, out: Float32Array, rstd: Float32Array, rows: number, cols: number, eps: number): void;
  rmsNormBackward(dy: Float32Array, x: Float32Array, weight: Float32Array | null, rstd: Float32Array, dx: Float32Array, dweight: Float32Array | null, rows: number, cols: number): void;
  layerNorm(x: Float32Array, gamma: Float32Array | null, beta: Float32Array | null, out: Float32Array, mean: Float32Array, rstd: Float32Array, rows: number, cols: number, eps: number): void;
  layerNormBackward(
    dy: Float32Array,
    x: Float32Array,
    gamma: Float32Array | null,
    mean: Float32Array,
    rstd: Float32Array,
    dx: Float32Array,
    dgamma: Float32Array | null,
    dbeta: Float32Array | null,
    rows: number,
    cols: number,
  ): void;
  /** out[o, j, :] = x[o, indices[j], :] for x viewed as [outer, axisDim, inner]; throws on an index out of range. */
  gather(x: Float32Array, indices: Int32Array, out: Float32Array, outer: number, axisDim: number, inner: number, nIndices: number): void;
  /** out[s, :] = sum of rows of x [rows, inner] whose segment id is s; ids outside [0, numSegments) are dropped. */
  segmentSum(x: Float32Array, segmentIds: Int32Array, out: Float32Array, rows: number, inner: number, numSegments: number): void;
  /**
   * Scaled dot-product attention: q [B,H,Sq,D], k/v [B,Hkv,Sk,D], keyMask [B,Sk] (0 = padding) or null;
   * shape = [B, H, Hkv, Sq, Sk, D]. Writes out [B,H,Sq,D] and each row's log-sum-exp into lse [B,H,Sq].
   */
  attention(q: Float32Array, k: Float32Array, v: Float32Array, keyMask: Float32Array | null, out: Float32Array, lse: Float32Array, shape: Int32Array, scale: number, causal: boolean): void;
  attentionBackward(
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    keyMask: Float32Array | null,
    lse: Float32Array,
    dout: Float32Array,
    dq: Float32Array,
    dk: Float32Array,
    dv: Float32Array,
    shape: Int32Array,
    scale: number,
    causal: boolean,
  ): void;
  /** loss[r] = logsumexp(logits[r]) - logits[r, labels[r]] (0 where the label is negative); lse saved for backward. */
  softmaxCrossEntropy(logits: Float32Array, labels: Int32Array, loss: Float32Array, lse: Float32Array, rows: number, cols: number): void;
  softmaxCrossEntropyBackward(logits: Float32Array, labels: Int32Array, lse: Float32Array, dloss: Float32Array, dlogits: Float32Array, rows: number, cols: number): void;
  /** x viewed as [outer, r, inner] reduced over r into out [outer, inner]; op indexes REDUCE_OPS. */
  reduce(op: number, x: Float32Array, out: Float32Array, outer: number, r: number, inner: number): void;
  /** out = act(x); kind indexes ACTIVATIONS. */
  activation(kind: number, x: Float32Array, out: Float32Array): void;
  /** dx = dy * act'(x). */
  activationBackward(kind: number, x: Float32Array, dy: Float32Array, dx: Float32Array): void;
  /**
   * Rotary embedding of x [b, h, s, d] with cos / sin tables [b, s, rot] on the first rot dims (the rest
   * copied); `inverse` applies its transpose (the gradient). out must not overlap x.
   */
  rope(x: Float32Array, cos: Float32Array, sin: Float32Array, out: Float32Array, b: number, h: number, s: number, d: number, rot: number, inverse: boolean): void;
}

/** tfjs kernel names of the addon's reductions, in the order of native/src/elementwise.h. */
export const REDUCE_OPS = ['Sum', 'Mean', 'Max', 'Min'] as const;

/** Activations with native forward and backward kernels, in the order of native/src/norms.h. */
export const ACTIVATIONS = ['silu', 'geluTanh', 'geluErf', 'quickGelu'] as const;
export type ActivationName = (typeof ACTIVATIONS)[number];

/** tfjs kernel names of the addon's binary ops, in the order of native/src/elementwise.h. */
export const BINARY_OPS = ['Add', 'Sub', 'Multiply', 'RealDiv', 'Maximum', 'Minimum', 'SquaredDifference'] as const;
/** tfjs kernel names of the addon's unary ops, in the order of native/src/elementwise.h. */
export const UNARY_OPS = ['Exp', 'Log', 'Neg', 'Sqrt', 'Rsqrt', 'Square', 'Relu', 'Sigmoid', 'Tanh', 'Abs', 'Reciprocal'] as const;

const REQUIRED = ['info', 'probe', 'setNumThreads', 'batchMatMul', 'softmax', 'logSoftmax', 'binary', 'unary', 'transpose', 'rmsNorm', 'rmsNormBackward', 'layerNorm', 'layerNormBackward', 'activation', 'activationBackward', 'gather', 'segmentSum', 'attention', 'attentionBackward', 'softmaxCrossEntropy', 'softmaxCrossEntropyBackward', 'reduce', 'rope'] as const;

/** Whether a loaded module is this toolkit's CPU kernel addon, and if not, what it lacks. */
export function missingNativeExports(mod: unknown): string[] {
  const m = (mod ?? {}) as Record<string, unknown>;
  return REQUIRED.filter((k) => typeof m[k] !== 'function');
}
