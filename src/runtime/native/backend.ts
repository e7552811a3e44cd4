/**
 * The `native` tfjs backend: a MathBackendCPU (same tensor storage, so every tensor is a Float32Array in
 * backend.data) with every kernel the cpu backend has, where the hot ones are replaced by the addon's
 * multi-threaded C++ kernels. Anything without a native kernel runs the cpu backend's JS code unchanged,
 * and gradients are tfjs's own (they are keyed by kernel name, not backend).
 */
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import type { KernelConfig, KernelFunc, NamedAttrMap, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs-core';
import { tf } from '../tf.js';
import { ACTIVATIONS, BINARY_OPS, REDUCE_OPS, UNARY_OPS, type NativeKernels } from './addon.js';

export const NATIVE_BACKEND = 'native';
/** Our own kernel names, for ops tfjs composes from smaller ones (see ops.ts). */
export const LOG_SOFTMAX_KERNEL = 'UnimeLogSoftmax';
export const RMS_NORM_KERNEL = 'UnimeRmsNorm';
export const RMS_NORM_GRAD_KERNEL = 'UnimeRmsNormGrad';
export const LAYER_NORM_KERNEL = 'UnimeLayerNorm';
export const LAYER_NORM_GRAD_KERNEL = 'UnimeLayerNormGrad';
export const ACTIVATION_KERNEL = 'UnimeActivation';
export const ACTIVATION_GRAD_KERNEL = 'UnimeActivationGrad';
export const ATTENTION_KERNEL = 'UnimeAttention';
export const ATTENTION_GRAD_KERNEL = 'UnimeAttentionGrad';
export const CROSS_ENTROPY_KERNEL = 'UnimeSoftmaxCrossEntropy';
export const CROSS_ENTROPY_GRAD_KERNEL = 'UnimeSoftmaxCrossEntropyGrad';
export const ROPE_KERNEL = 'UnimeRope';

type KernelArgs = { inputs: NamedTensorInfoMap; backend: MathBackendCPU; attrs?: NamedAttrMap };

/**
 * A float32 tensor's values as a Float32Array. The cpu backend's Cast to float32 from int32 or bool keeps the
 * source's storage (an Int32Array or Uint8Array under a float32 dtype), so those are converted here.
 */
function f32(backend: MathBackendCPU, t: TensorInfo): Float32Array {
  const v = backend.data.get(t.dataId).values;
  if (v instanceof Float32Array) return v;
  if (t.dtype === 'float32' && (v instanceof Int32Array || v instanceof Uint8Array)) return Float32Array.from(v);
  throw new Error(`native kernel: expected float32 values, found ${t.dtype} held in ${v?.constructor?.name ?? String(v)}`);
}

/**
 * An output buffer for a kernel that writes every element. Large ones come uninitialised from
 * Buffer.allocUnsafe (a dedicated ArrayBuffer at these sizes, not Node's shared pool): zero-filling fresh
 * memory costs more than most of the kernels themselves.
 */
function alloc(n: number): Float32Array {
  if (n * 4 < 1 << 16) return new Float32Array(n);
  const b = Buffer.allocUnsafe(n * 4);
  return new Float32Array(b.buffer, b.byteOffset, n);
}

function size(shape: readonly number[]): number {
  let s = 1;
  for (const d of shape) s *= d;
  return s;
}

/** Broadcast shape of two batch shapes (numpy rules), or null when they do not broadcast. */
export function broadcastBatch(a: readonly number[], b: readonly number[]): number[] | null {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) return null;
    out.push(da === 1 ? db : da);
  }
  return out;
}

/** For each output batch index (row-major over outShape), the flat index into an input of batch shape `shape`. */
function batchIndex(shape: readonly number[], outShape: readonly number[]): Int32Array | null {
  const total = size(outShape);
  if (shape.length === outShape.length && shape.every((d, i) => d === outShape[i])) return null;
  const idx = new Int32Array(total);
  const rank = outShape.length;
  const offset = rank - shape.length;
  // strides of the input, 0 where it broadcasts
  const strides = new Array<number>(rank).fill(0);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    const d = shape[i]!;
    strides[i + offset] = d === 1 ? 0 : s;
    s *= d;
  }
  const counter = new Array<number>(rank).fill(0);
  for (let o = 0; o < total; o++) {
    let flat = 0;
    for (let i = 0; i < rank; i++) flat += counter[i]! * strides[i]!;
    idx[o] = flat;
    for (let i = rank - 1; i >= 0; i--) {
      counter[i]!++;
      if (counter[i]! < outShape[i]!) break;
      counter[i] = 0;
    }
  }
  return idx;
}

function makeBatchMatMul(addon: NativeKernels, fallback: KernelFunc): KernelFunc {
  return (args) => {
    const { inputs, backend, attrs } = args as unknown as KernelArgs;
    const a = inputs.a as TensorInfo;
    const b = inputs.b as TensorInfo;
    if (a.dtype !== 'float32' || b.dtype !== 'float32') return fallback(args);
    return nativeMatMul(addon, backend, a, b, Boolean(attrs?.transposeA), Boolean(attrs?.transposeB));
  };
}

function nativeMatMul(addon: NativeKernels, backend: MathBackendCPU, a: TensorInfo, b: TensorInfo, transposeA: boolean, transposeB: boolean): TensorInfo {
  const ar = a.shape.length;
  const br = b.shape.length;
  if (ar < 2 || br < 2) throw new Error(`Error in matMul: inputs must be at least rank 2, got ranks ${ar} and ${br}`);
  const m = transposeA ? a.shape[ar - 1]! : a.shape[ar - 2]!;
  const ka = transposeA ? a.shape[ar - 2]! : a.shape[ar - 1]!;
  const kb = transposeB ? b.shape[br - 1]! : b.shape[br - 2]!;
  const n = transposeB ? b.shape[br - 2]! : b.shape[br - 1]!;
  if (ka !== kb) {
    throw new Error(
      `Error in matMul: inner shapes (${ka}) and (${kb}) of Tensors with shapes ${a.shape} and ${b.shape} and transposeA=${transposeA} and transposeB=${transposeB} must match.`,
    );
  }
  const aBatch = a.shape.slice(0, -2);
  const bBatch = b.shape.slice(0, -2);
  const outBatch = broadcastBatch(aBatch, bBatch);
  if (!outBatch) throw new Error(`Operands could not be broadcast together with shapes ${a.shape} and ${b.shape}.`);
  const batch = size(outBatch);
  const out = alloc(batch * m * n);
  if (out.length > 0) {
    addon.batchMatMul(f32(backend, a), f32(backend, b), out, batch, m, n, ka, transposeA, transposeB, batchIndex(aBatch, outBatch), batchIndex(bBatch, outBatch));
  }
  return backend.makeTensorInfo([...outBatch, m, n], 'float32', out);
}

/** tf.fused.matMul: the product natively, then bias and activation through the cpu backend's kernels. */
function makeFusedMatMul(addon: NativeKernels, fallback: KernelFunc): KernelFunc {
  const activationKernel: Record<string, string> = { relu: 'Relu', relu6: 'Relu6', elu: 'Elu', sigmoid: 'Sigmoid', leakyrelu: 'LeakyRelu', prelu: 'Prelu' };
  return (args) => {
    const { inputs, backend, attrs } = args as unknown as KernelArgs;
    const { a, b, bias, preluActivationWeights } = inputs as Record<string, TensorInfo | undefined>;
    const activation = String(attrs?.activation ?? 'linear');
    if (!a || !b || a.dtype !== 'float32' || b.dtype !== 'float32' || (activation !== 'linear' && !activationKernel[activation])) return fallback(args);
    const run = (name: string, ins: NamedTensorInfoMap, at: NamedAttrMap = {}): TensorInfo =>
      tf.getKernel(name, NATIVE_BACKEND).kernelFunc({ inputs: ins, backend, attrs: at }) as TensorInfo;
    let result = nativeMatMul(addon, backend, a, b, Boolean(attrs?.transposeA), Boolean(attrs?.transposeB));
    if (bias) {
      const withBias = run('Add', { a: result, b: bias });
      backend.disposeIntermediateTensorInfo(result);
      result = withBias;
    }
    if (activation !== 'linear') {
      const kernel = activationKernel[activation]!;
      const activated =
        kernel === 'Prelu'
          ? run(kernel, { x: result, alpha: preluActivationWeights! })
          : run(kernel, { x: result }, kernel === 'LeakyRelu' ? { alpha: Number(attrs?.leakyreluAlpha ?? 0.2) } : {});
      backend.disposeIntermediateTensorInfo(result);
      result = activated;
    }
    return result;
  };
}

function makeRowKernel(rowFn: (x: Float32Array, out: Float32Array, rows: number, cols: number) => void, inputName: string, fallback: KernelFunc | null): KernelFunc {
  return (args) => {
    const { inputs, backend, attrs } = args as unknown as KernelArgs;
    const x = inputs[inputName] as TensorInfo;
    const rank = x.shape.length;
    const dim = attrs?.dim === undefined ? -1 : Number(attrs.dim);
    const lastAxis = rank === 0 || dim === -1 || dim === rank - 1;
    if (x.dtype !== 'float32' || !lastAxis) {
      if (fallback) return fallback(args);
      throw new Error(`native ${inputName === 'logits' ? 'softmax' : 'logSoftmax'}: only float32 over the last axis`);
    }
    const cols = rank === 0 ? 1 : x.shape[rank - 1]!;
    const total = size(x.shape);
    const out = alloc(total);
    if (total > 0) rowFn(f32(backend, x), out, total / cols, cols);
    return backend.makeTensorInfo([...x.shape], 'float32', out);
  };
}

/**
 * How to walk a and b for a broadcast binary op: the output shape, and a collapsed shape (size-1 dims
 * dropped, dims merged wherever both inputs stay contiguous across them) with each input's strides in it.
 * Null when the shapes do not broadcast.
 */
export function binaryPlan(aShape: readonly number[], bShape: readonly number[]): { outShape: number[]; shape: number[]; aStrides: number[]; bStrides: number[] } | null {
  const outShape = broadcastBatch(aShape, bShape);
  if (!outShape) return null;
  const rank = outShape.length;
  const stridesFor = (shape: readonly number[]) => {
    const st = new Array<number>(rank).fill(0);
    let s = 1;
    for (let i = shape.length - 1; i >= 0; i--) {
      const d = shape[i]!;
      st[i + rank - shape.length] = d === 1 ? 0 : s;
      s *= d;
    }
    return st;
  };
  const as = stridesFor(aShape);
  const bs = stridesFor(bShape);
  const shape: number[] = [];
  const aStrides: number[] = [];
  const bStrides: number[] = [];
  for (let i = 0; i < rank; i++) {
    const d = outShape[i]!;
    if (d === 1) continue;
    const last = shape.length - 1;
    // merge into the previous kept dim when, for both inputs, that dim's stride is this one's times d
    if (last >= 0 && aStrides[last] === as[i]! * d && bStrides[last] === bs[i]! * d) {
      shape[last] = shape[last]! * d;
      aStrides[last] = as[i]!;
      bStrides[last] = bs[i]!;
    } else {
      shape.push(d);
      aStrides.push(as[i]!);
      bStrides.push(bs[i]!);
    }
  }
  if (shape.length === 0) {
    shape.push(1);
    aStrides.push(0);
    bStrides.push(0);
  }
  return { outShape, shape, aStrides, bStrides };
}

function makeBinary(addon: NativeKernels, op: number, fallback: KernelFunc): KernelFunc {
  return (args) => {
    const { inputs, backend } = args as unknown as KernelArgs;
    const a = inputs.a as TensorInfo;
    const b = inputs.b as TensorInfo;
    if (a.dtype !== 'float32' || b.dtype !== 'float32') return fallback(args);
    const plan = binaryPlan(a.shape, b.shape);
    if (!plan) return fallback(args); // the cpu kernel raises tfjs's own error
    const out = alloc(size(plan.outShape));
    if (out.length > 0) {
      addon.binary(op, f32(backend, a), f32(backend, b), out, Int32Array.from(plan.shape), Int32Array.from(plan.aStrides), Int32Array.from(plan.bStrides));
    }
    return backend.makeTensorInfo(plan.outShape, 'float32', out);
  };
}

function makeUnary(addon: NativeKernels, op: number, fallback: KernelFunc): KernelFunc {
  return (args) => {
    const { inputs, backend } = args as unknown as KernelArgs;
    const x = inputs.x as TensorInfo;
    if (x.dtype !== 'float32') return fallback(args);
    const out = alloc(size(x.shape));
    if (out.length > 0) addon.unary(op, f32(backend, x), out);
    return backend.makeTensorInfo([...x.shape], 'float32', out);
  };
}

function makeTranspose(addon: NativeKernels, fallback: KernelFunc): KernelFunc {
  return (args) => {
    const { inputs, backend, attrs } = args as unknown as KernelArgs;
    const x = inputs.x as TensorInfo;
    const perm = (attrs?.perm as number[] | undefined) ?? [];
    if (x.dtype !== 'float32' || perm.length !== x.shape.length || x.shape.length === 0) return fallback(args);
    // drop size-1 dims: they do not move any data
    const keep = perm.filter((p) => x.shape[p] !== 1);
    const kept = [...keep].sort((p, q) => p - q);
    const shape = kept.map((p) => x.shape[p]!);
    const newPerm = keep.map((p) => kept.indexOf(p));
    const outShape = perm.map((p) => x.shape[p]!);
    const n = size(x.shape);
    const values = f32(backend, x);
    if (n === 0 || newPerm.every((p, i) => p === i)) {
      return backend.makeTensorInfo(outShape, 'float32', n === 0 ? new Float32Array(0) : values.slice(0, n));
    }
    const out = alloc(n);
    addon.transpose(values, out, Int32Array.from(shape), Int32Array.from(newPerm));
    return backend.makeTensorInfo(outShape, 'float32', out);
  };
}

/** [rows, cols] of x over its last axis. */
function rowsCols(x: TensorInfo): [number, number] {
  const cols = x.shape[x.shape.length - 1] ?? 1;
  return [cols === 0 ? 0 : size(x.shape) / cols, cols];
}

function requireF32(name: string, ...ts: (TensorInfo | undefined)[]): void {
  for (const t of ts) if (t && t.dtype !== 'float32') throw new Error(`${name}: float32 inputs only, got ${t.dtype}`);
}

function normKernels(addon: NativeKernels): KernelConfig[] {
  const k = (kernelName: string, kernelFunc: (a: KernelArgs) => TensorInfo | TensorInfo[]): KernelConfig => ({
    kernelName,
    backendName: NATIVE_BACKEND,
    kernelFunc: kernelFunc as unknown as KernelFunc,
  });
  const opt = (backend: MathBackendCPU, t: TensorInfo | undefined) => (t ? f32(backend, t) : null);
  return [
    k(RMS_NORM_KERNEL, ({ inputs, backend, attrs }) => {
      const { x, weight } = inputs as { x: TensorInfo; weight?: TensorInfo };
      requireF32('rmsNorm', x, weight);
      const [rows, cols] = rowsCols(x);
      const out = alloc(rows * cols);
      const rstd = alloc(rows);
      addon.rmsNorm(f32(backend, x), opt(backend, weight), out, rstd, rows, cols, Number(attrs?.eps));
      return [backend.makeTensorInfo([...x.shape], 'float32', out), backend.makeTensorInfo([rows], 'float32', rstd)];
    }),
    k(RMS_NORM_GRAD_KERNEL, ({ inputs, backend }) => {
      const { dy, x, weight, rstd } = inputs as { dy: TensorInfo; x: TensorInfo; weight?: TensorInfo; rstd: TensorInfo };
      const [rows, cols] = rowsCols(x);
      const dx = alloc(rows * cols);
      const dw = weight ? alloc(cols) : null;
      addon.rmsNormBackward(f32(backend, dy), f32(backend, x), opt(backend, weight), f32(backend, rstd), dx, dw, rows, cols);
      const outs = [backend.makeTensorInfo([...x.shape], 'float32', dx)];
      if (dw) outs.push(backend.makeTensorInfo([...weight!.shape], 'float32', dw));
      return outs;
    }),
    k(LAYER_NORM_KERNEL, ({ inputs, backend, attrs }) => {
      const { x, gamma, beta } = inputs as { x: TensorInfo; gamma?: TensorInfo; beta?: TensorInfo };
      requireF32('layerNorm', x, gamma, beta);
      const [rows, cols] = rowsCols(x);
      const out = alloc(rows * cols);
      const mean = alloc(rows);
      const rstd = alloc(rows);
      addon.layerNorm(f32(backend, x), opt(backend, gamma), opt(backend, beta), out, mean, rstd, rows, cols, Number(attrs?.eps));
      return [backend.makeTensorInfo([...x.shape], 'float32', out), backend.makeTensorInfo([rows], 'float32', mean), backend.makeTensorInfo([rows], 'float32', rstd)];
    }),
    k(LAYER_NORM_GRAD_KERNEL, ({ inputs, backend, attrs }) => {
      const { dy, x, gamma, mean, rstd } = inputs as { dy: TensorInfo; x: TensorInfo; gamma?: TensorInfo; mean: TensorInfo; rstd: TensorInfo };
      const [rows, cols] = rowsCols(x);
      const dx = alloc(rows * cols);
      const dgamma = gamma ? alloc(cols) : null;
      const dbeta = attrs?.hasBeta ? alloc(cols) : null;
      addon.layerNormBackward(f32(backend, dy), f32(backend, x), opt(backend, gamma), f32(backend, mean), f32(backend, rstd), dx, dgamma, dbeta, rows, cols);
      const outs = [backend.makeTensorInfo([...x.shape], 'float32', dx)];
      if (dgamma) outs.push(backend.makeTensorInfo([cols], 'float32', dgamma));
      if (dbeta) outs.push(backend.makeTensorInfo([cols], 'float32', dbeta));
      return outs;
    }),
    k(ACTIVATION_KERNEL, ({ inputs, backend, attrs }) => {
      const x = inputs.x as TensorInfo;
      requireF32('activation', x);
      const kind = ACTIVATIONS.indexOf(attrs?.kind as (typeof ACTIVATIONS)[number]);
      if (kind < 0) throw new Error(`unknown activation ${String(attrs?.kind)}`);
      const out = alloc(size(x.shape));
      addon.activation(kind, f32(backend, x), out);
      return backend.makeTensorInfo([...x.shape], 'float32', out);
    }),
    k(ACTIVATION_GRAD_KERNEL, ({ inputs, backend, attrs }) => {
      const { x, dy } = inputs as { x: TensorInfo; dy: TensorInfo };
      const kind = ACTIVATIONS.indexOf(attrs?.kind as (typeof ACTIVATIONS)[number]);
      if (kind < 0) throw new Error(`unknown activation ${String(attrs?.kind)}`);
      const dx = alloc(size(x.shape));
      addon.activationBackward(kind, f32(backend, x), f32(backend, dy), dx);
      return backend.makeTensorInfo([...x.shape], 'float32', dx);
    }),
  ];
}

/**
 * Copies the block `shape` from `src` (dims srcShape) at srcBegin into `dst` (dims dstShape) at dstBegin.
 * Trailing dims that both tensors hold whole merge into one contiguous run, so the work is one
 * memcpy-like copy per run; the cpu backend's slice and pad walk element by element through
 * TensorBuffer.get (seconds per training step for RoPE's half-slices and the class-token slice).
 */
function copyBlock(
  src: Float32Array,
  srcShape: readonly number[],
  srcBegin: readonly number[],
  dst: Float32Array,
  dstShape: readonly number[],
  dstBegin: readonly number[],
  shape: readonly number[],
): void {
  const rank = shape.length;
  if (size(shape) === 0) return;
  let k = rank - 1;
  let run = 1;
  while (k >= 0 && shape[k] === srcShape[k] && shape[k] === dstShape[k]) run *= shape[k--]!;
  const srcStrides = new Array<number>(rank);
  const dstStrides = new Array<number>(rank);
  for (let d = rank - 1, a = 1, b = 1; d >= 0; d--) {
    srcStrides[d] = a;
    dstStrides[d] = b;
    a *= srcShape[d]!;
    b *= dstShape[d]!;
  }
  // dims 0..k-1 are walked; dim k (when there is one) is folded into the run
  if (k >= 0) run *= shape[k]!;
  let srcOff = 0;
  let dstOff = 0;
  for (let d = 0; d <= k; d++) {
    srcOff += srcBegin[d]! * srcStrides[d]!;
    dstOff += dstBegin[d]! * dstStrides[d]!;
  }
  const outer = k <= 0 ? 1 : size(shape.slice(0, k));
  const idx = new Array<number>(Math.max(k, 0)).fill(0);
  for (let i = 0; i < outer; i++) {
    if (run >= 64) dst.set(src.subarray(srcOff, srcOff + run), dstOff);
    else for (let j = 0; j < run; j++) dst[dstOff + j] = src[srcOff + j]!;
    // odometer over dims 0..k-1
    for (let d = k - 1; d >= 0; d--) {
      srcOff += srcStrides[d]!;
      dstOff += dstStrides[d]!;
      if (++idx[d]! < shape[d]!) break;
      srcOff -= shape[d]! * srcStrides[d]!;
      dstOff -= shape[d]! * dstStrides[d]!;
      idx[d] = 0;
    }
  }
}

/** Slice of a float32 tensor; contiguous slices keep the cpu kernel's zero-copy path. */
function makeSlice(fallback: KernelFunc): KernelFunc {
  return (args) => {
    const { inputs, backend, attrs } = args as unknown as KernelArgs;
    const x = inputs.x as TensorInfo;
    if (x.dtype !== 'float32' || x.shape.length === 0) return fallback(args);
    const [begin, sz] = tf.slice_util.parseSliceParams(x as unknown as tf.Tensor, attrs!.begin as number | number[], attrs!.size as number | number[]) as [number[], number[]];
    tf.slice_util.assertParamsValid(x as unknown as tf.Tensor, begin, sz);
    if (tf.slice_util.isSliceContinous(x.shape, begin, sz)) return fallback(args);
    const out = alloc(size(sz));
    copyBlock(f32(backend, x), x.shape, begin, out, sz, new Array<number>(sz.length).fill(0), sz);
    return backend.makeTensorInfo(sz, 'float32', out);
  };
}

/** SplitV of a float32 tensor (also the gradient of Concat), each piece copied as Slice does. */
function makeSplit(fallback: KernelFunc): KernelFunc {
  return (args) => {
    const { inputs, backend, attrs } = args as unknown as KernelArgs;
    const x = inputs.x as TensorInfo;
    if (x.dtype !== 'float32' || x.shape.length === 0) return fallback(args);
    const axis = tf.util.parseAxisParam(attrs!.axis as number, x.shape)[0]!;
    const sizes = tf.backend_util.prepareSplitSize(x as unknown as tf.Tensor, attrs!.numOrSizeSplits as number | number[], axis);
    const values = f32(backend, x);
    const begin = new Array<number>(x.shape.length).fill(0);
    const zero = begin.slice();
    return sizes.map((s) => {
      const shape = [...x.shape];
      shape[axis] = s;
      const out = alloc(size(shape));
      copyBlock(values, x.shape, begin, out, shape, zero, shape);
      begin[axis]! += s;
      return backend.makeTensorInfo(shape, 'float32', out);
    });
  };
}

/** Constant padding of a float32 tensor (also the gradient of Slice). */
function makePad(fallback: KernelFunc): KernelFunc {
  return (args) => {
    const { inputs, backend, attrs } = args as unknown as KernelArgs;
    const x = inputs.x as TensorInfo;
    const paddings = attrs?.paddings as [number, number][] | undefined;
    if (x.dtype !== 'float32' || !paddings || paddings.length !== x.shape.length || x.shape.length === 0) return fallback(args);
    const before = paddings.map((p) => p[0]);
    const outShape = x.shape.map((d, i) => paddings[i]![0] + d + paddings[i]![1]);
    const c = Number(attrs?.constantValue ?? 0);
    const out = alloc(size(outShape));
    out.fill(c);
    copyBlock(f32(backend, x), x.shape, new Array<number>(x.shape.length).fill(0), out, outShape, before, x.shape);
    return backend.makeTensorInfo(outShape, 'float32', out);
  };
}

/** GatherV2 with batchDims 0 on float32 params (embedding lookups); anything else goes to the cpu kernel. */
function makeGather(addon: NativeKernels, fallback: KernelFunc): KernelFunc {
  return (args) => {
    const { inputs, backend, attrs } = args as unknown as KernelArgs;
    const x = inputs.x as TensorInfo;
    const indices = inputs.indices as TensorInfo;
    const rank = x.shape.length;
    const axis = Number(attrs?.axis ?? 0) < 0 ? Number(attrs?.axis) + rank : Number(attrs?.axis ?? 0);
    const idx = backend.data.get(indices.dataId).values;
    if (x.dtype !== 'float32' || !(idx instanceof Int32Array) || Number(attrs?.batchDims ?? 0) !== 0 || rank === 0 || axis < 0 || axis >= rank) return fallback(args);
    const axisDim = x.shape[axis]!;
    const n = size(indices.shape);
    for (let i = 0; i < n; i++) {
      const v = idx[i]!;
      if (v < 0 || v >= axisDim) return fallback(args); // the cpu kernel throws tfjs's own message
    }
    const outer = size(x.shape.slice(0, axis));
    const inner = size(x.shape.slice(axis + 1));
    const out = alloc(outer * n * inner);
    if (out.length > 0) addon.gather(f32(backend, x), idx, out, outer, axisDim, inner, n);
    return backend.makeTensorInfo([...x.shape.slice(0, axis), ...indices.shape, ...x.shape.slice(axis + 1)], 'float32', out);
  };
}

/** UnsortedSegmentSum (the gradient of gather): the cpu kernel does one full pass per segment. */
function makeSegmentSum(addon: NativeKernels, fallback: KernelFunc): KernelFunc {
  return (args) => {
    const { inputs, backend, attrs } = args as unknown as KernelArgs;
    const x = inputs.x as TensorInfo;
    const ids = inputs.segmentIds as TensorInfo;
    const idv = backend.data.get(ids.dataId).values;
    const numSegments = Number(attrs?.numSegments);
    const segRank = ids.shape.length;
    if (x.dtype !== 'float32' || !(idv instanceof Int32Array) || !ids.shape.every((d, i) => d === x.shape[i])) return fallback(args);
    const rows = size(ids.shape);
    const innerShape = x.shape.slice(segRank);
    const inner = size(innerShape);
    const out = alloc(numSegments * inner);
    if (out.length > 0) addon.segmentSum(f32(backend, x), idv, out, rows, inner, numSegments);
    return backend.makeTensorInfo([numSegments, ...innerShape], 'float32', out);
  };
}

function attentionShape(q: TensorInfo, k: TensorInfo): Int32Array {
  const [B, H, Sq, D] = q.shape as [number, number, number, number];
  const [, Hkv, Sk] = k.shape as [number, number, number, number];
  return Int32Array.from([B, H, Hkv, Sq, Sk, D]);
}

/**
 * Rotary embedding, one pass: x [b, h, s, d] and the tables [b, 1, s, rot]; attrs.inverse applies the
 * transpose (the gradient). The op in ops.ts checks the shapes before it dispatches here.
 */
function ropeKernel(addon: NativeKernels): KernelConfig {
  const kernelFunc: KernelFunc = (args) => {
    const { inputs, backend, attrs } = args as unknown as KernelArgs;
    const { x, cos, sin } = inputs as { x: TensorInfo; cos: TensorInfo; sin: TensorInfo };
    requireF32('rope', x, cos, sin);
    const [b, h, s, d] = x.shape as [number, number, number, number];
    const out = alloc(size(x.shape));
    if (out.length > 0) addon.rope(f32(backend, x), f32(backend, cos), f32(backend, sin), out, b, h, s, d, cos.shape[3]!, Boolean(attrs?.inverse));
    return backend.makeTensorInfo([...x.shape], 'float32', out);
  };
  return { kernelName: ROPE_KERNEL, backendName: NATIVE_BACKEND, kernelFunc };
}

function attentionKernels(addon: NativeKernels): KernelConfig[] {
  const forward: KernelFunc = (args) => {
    const { inputs, backend, attrs } = args as unknown as KernelArgs;
    const { q, k, v, keyMask } = inputs as { q: TensorInfo; k: TensorInfo; v: TensorInfo; keyMask?: TensorInfo };
    requireF32('attention', q, k, v, keyMask);
    const shape = attentionShape(q, k);
    const out = alloc(size(q.shape));
    const lse = alloc(size(q.shape.slice(0, 3)));
    addon.attention(f32(backend, q), f32(backend, k), f32(backend, v), keyMask ? f32(backend, keyMask) : null, out, lse, shape, Number(attrs?.scale), Boolean(attrs?.causal));
    return [backend.makeTensorInfo([...q.shape], 'float32', out), backend.makeTensorInfo(q.shape.slice(0, 3), 'float32', lse)];
  };
  const backward: KernelFunc = (args) => {
    const { inputs, backend, attrs } = args as unknown as KernelArgs;
    const { q, k, v, keyMask, lse, dy } = inputs as { q: TensorInfo; k: TensorInfo; v: TensorInfo; keyMask?: TensorInfo; lse: TensorInfo; dy: TensorInfo };
    const shape = attentionShape(q, k);
    const dq = alloc(size(q.shape));
    const dk = alloc(size(k.shape));
    const dv = alloc(size(v.shape));
    addon.attentionBackward(
      f32(backend, q),
      f32(backend, k),
      f32(backend, v),
      keyMask ? f32(backend, keyMask) : null,
      f32(backend, lse),
      f32(backend, dy),
      dq,
      dk,
      dv,
      shape,
      Number(attrs?.scale),
      Boolean(attrs?.causal),
    );
    return [backend.makeTensorInfo([...q.shape], 'float32', dq), backend.makeTensorInfo([...k.shape], 'float32', dk), backend.makeTensorInfo([...v.shape], 'float32', dv)];
  };
  return [
    { kernelName: ATTENTION_KERNEL, backendName: NATIVE_BACKEND, kernelFunc: forward },
    { kernelName: ATTENTION_GRAD_KERNEL, backendName: NATIVE_BACKEND, kernelFunc: backward },
  ];
}

function int32Values(backend: MathBackendCPU, t: TensorInfo): Int32Array {
  const v = backend.data.get(t.dataId).values;
  if (v instanceof Int32Array) return v;
  if (v instanceof Uint8Array || v instanceof Float32Array) return Int32Array.from(v);
  throw new Error(`native kernel: expected int32 values, found ${t.dtype}`);
}

function crossEntropyKernels(addon: NativeKernels): KernelConfig[] {
  const forward: KernelFunc = (args) => {
    const { inputs, backend } = args as unknown as KernelArgs;
    const { logits, labels } = inputs as { logits: TensorInfo; labels: TensorInfo };
    requireF32('softmaxCrossEntropy', logits);
    const cols = logits.shape[logits.shape.length - 1]!;
    const rows = size(labels.shape);
    const loss = alloc(rows);
    const lse = alloc(rows);
    addon.softmaxCrossEntropy(f32(backend, logits), int32Values(backend, labels), loss, lse, rows, cols);
    return [backend.makeTensorInfo([...labels.shape], 'float32', loss), backend.makeTensorInfo([rows], 'float32', lse)];
  };
  const backward: KernelFunc = (args) => {
    const { inputs, backend } = args as unknown as KernelArgs;
    const { logits, labels, lse, dy } = inputs as { logits: TensorInfo; labels: TensorInfo; lse: TensorInfo; dy: TensorInfo };
    const [rows, cols] = rowsCols(logits);
    const dlogits = alloc(rows * cols);
    addon.softmaxCrossEntropyBackward(f32(backend, logits), int32Values(backend, labels), f32(backend, lse), f32(backend, dy), dlogits, rows, cols);
    return backend.makeTensorInfo([...logits.shape], 'float32', dlogits);
  };
  return [
    { kernelName: CROSS_ENTROPY_KERNEL, backendName: NATIVE_BACKEND, kernelFunc: forward },
    { kernelName: CROSS_ENTROPY_GRAD_KERNEL, backendName: NATIVE_BACKEND, kernelFunc: backward },
  ];
}

/**
 * How to reduce `shape` over `axes` as one [outer, r, inner] pass: size-1 dims dropped and neighbours with
 * the same role merged. When kept and reduced dims interleave more than that, `perm` first moves the reduced
 * dims last (then it is [outer, r, 1]).
 */
export function reducePlan(shape: readonly number[], axes: readonly number[]): { outer: number; r: number; inner: number; perm: number[] | null } {
  const reduced = shape.map((_, i) => axes.includes(i));
  const groups: { size: number; reduced: boolean }[] = [];
  shape.forEach((d, i) => {
    if (d === 1) return;
    const last = groups[groups.length - 1];
    if (last && last.reduced === reduced[i]) last.size *= d;
    else groups.push({ size: d, reduced: reduced[i]! });
  });
  const pattern = groups.map((g) => (g.reduced ? 'R' : 'K')).join('');
  const s = groups.map((g) => g.size);
  switch (pattern) {
    case '':
      return { outer: 1, r: 1, inner: 1, perm: null };
    case 'K':
      return { outer: s[0]!, r: 1, inner: 1, perm: null };
    case 'R':
      return { outer: 1, r: s[0]!, inner: 1, perm: null };
    case 'KR':
      return { outer: s[0]!, r: s[1]!, inner: 1, perm: null };
    case 'RK':
      return { outer: 1, r: s[0]!, inner: s[1]!, perm: null };
    case 'KRK':
      return { outer: s[0]!, r: s[1]!, inner: s[2]!, perm: null };
    default: {
      const kept = shape.map((_, i) => i).filter((i) => !reduced[i]);
      const red = shape.map((_, i) => i).filter((i) => reduced[i]);
      const r = red.reduce((a, i) => a * shape[i]!, 1);
      const outer = kept.reduce((a, i) => a * shape[i]!, 1);
      return { outer, r, inner: 1, perm: [...kept, ...red] };
    }
  }
}

function makeReduce(addon: NativeKernels, op: number, fallback: KernelFunc): KernelFunc {
  const isMinMax = op >= 2;
  return (args) => {
    const { inputs, backend, attrs } = args as unknown as KernelArgs;
    const x = inputs.x as TensorInfo;
    const rank = x.shape.length;
    // Max names its axes reductionIndices; Sum, Mean and Min name them axis
    const rawAxes = (op === 2 ? attrs?.reductionIndices : attrs?.axis) as number | number[] | null | undefined;
    const list = rawAxes == null ? x.shape.map((_, i) => i) : Array.isArray(rawAxes) ? rawAxes : [rawAxes];
    const axes = list.map((a) => (a < 0 ? a + rank : a));
    if (x.dtype !== 'float32' || rank === 0 || axes.some((a) => !Number.isInteger(a) || a < 0 || a >= rank)) return fallback(args);
    const plan = reducePlan(x.shape, axes);
    if (isMinMax && plan.r === 0) return fallback(args);
    const outShape = attrs?.keepDims ? x.shape.map((d, i) => (axes.includes(i) ? 1 : d)) : x.shape.filter((_, i) => !axes.includes(i));
    const out = alloc(size(outShape));
    if (out.length === 0) return backend.makeTensorInfo(outShape, 'float32', out);
    let values = f32(backend, x);
    if (plan.perm) {
      const moved = alloc(values.length);
      addon.transpose(values, moved, Int32Array.from(x.shape), Int32Array.from(plan.perm));
      values = moved;
    }
    addon.reduce(op, values, out, plan.outer, plan.r, plan.inner);
    return backend.makeTensorInfo(outShape, 'float32', out);
  };
}

let registeredWith: NativeKernels | null = null;

/** Registers the `native` backend and its kernels (once per process). */
export function registerNativeBackend(addon: NativeKernels): void {
  if (registeredWith) return;
  registeredWith = addon;
  tf.registerBackend(
    NATIVE_BACKEND,
    () => {
      const backend = new MathBackendCPU();
      // The cpu backend prints a "use tfjs-node" banner on first use; this is the fast path it asks for.
      (backend as unknown as { firstUse: boolean }).firstUse = false;
      return backend;
    },
    0,
  );
  const cpuKernels = new Map<string, KernelConfig>();
  for (const k of tf.getKernelsForBackend('cpu')) {
    cpuKernels.set(k.kernelName, k);
    tf.registerKernel({ ...k, backendName: NATIVE_BACKEND });
  }
  const override = (kernelName: string, kernelFunc: KernelFunc) => {
    tf.unregisterKernel(kernelName, NATIVE_BACKEND);
    tf.registerKernel({ kernelName, backendName: NATIVE_BACKEND, kernelFunc });
  };
  const cpuFunc = (name: string): KernelFunc => {
    const k = cpuKernels.get(name);
    if (!k) throw new Error(`the cpu backend has no ${name} kernel to fall back on`);
    return k.kernelFunc;
  };
  override('BatchMatMul', makeBatchMatMul(addon, cpuFunc('BatchMatMul')));
  override('_FusedMatMul', makeFusedMatMul(addon, cpuFunc('_FusedMatMul')));
  override('Softmax', makeRowKernel(addon.softmax, 'logits', cpuFunc('Softmax')));
  BINARY_OPS.forEach((name, op) => override(name, makeBinary(addon, op, cpuFunc(name))));
  UNARY_OPS.forEach((name, op) => override(name, makeUnary(addon, op, cpuFunc(name))));
  override('Transpose', makeTranspose(addon, cpuFunc('Transpose')));
  REDUCE_OPS.forEach((name, op) => override(name, makeReduce(addon, op, cpuFunc(name))));
  override('GatherV2', makeGather(addon, cpuFunc('GatherV2')));
  override('Slice', makeSlice(cpuFunc('Slice')));
  override('PadV2', makePad(cpuFunc('PadV2')));
  override('SplitV', makeSplit(cpuFunc('SplitV')));
  override('UnsortedSegmentSum', makeSegmentSum(addon, cpuFunc('UnsortedSegmentSum')));
  tf.registerKernel({ kernelName: LOG_SOFTMAX_KERNEL, backendName: NATIVE_BACKEND, kernelFunc: makeRowKernel(addon.logSoftmax, 'x', null) });
  for (const k of [...normKernels(addon), ...attentionKernels(addon), ...crossEntropyKernels(addon), ropeKernel(addon)]) tf.registerKernel(k);
}

/** The kernels the native backend runs in C++ (the rest are the cpu backend's). */
export const NATIVE_KERNELS = [
  'BatchMatMul',
  '_FusedMatMul',
  'Softmax',
  ...BINARY_OPS,
  ...UNARY_OPS,
  'Transpose',
  ...REDUCE_OPS,
  'GatherV2',
  'UnsortedSegmentSum',
  'Slice',
  'PadV2',
  'SplitV',
  LOG_SOFTMAX_KERNEL,
  RMS_NORM_KERNEL,
  RMS_NORM_GRAD_KERNEL,
  LAYER_NORM_KERNEL,
  LAYER_NORM_GRAD_KERNEL,
  ACTIVATION_KERNEL,
  ACTIVATION_GRAD_KERNEL,
  ATTENTION_KERNEL,
  ATTENTION_GRAD_KERNEL,
  CROSS_ENTROPY_KERNEL,
  CROSS_ENTROPY_GRAD_KERNEL,
  ROPE_KERNEL,
] as const;
