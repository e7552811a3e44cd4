/**
 * The safetensors element types, and exact conversions between float32 and the 16-bit float
 * formats (IEEE binary16 "F16" and bfloat16 "BF16").
 *
 * Byte order: safetensors stores little-endian data, and these helpers view file bytes through
 * typed arrays, which use the host's byte order. Every platform Node runs on for us (x86-64,
 * arm64) is little-endian; `assertLittleEndianHost()` turns the unlikely opposite into a clear
 * error instead of silently wrong weights.
 */

export type Dtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U64' | 'U32' | 'U16' | 'U8' | 'BOOL';

/** Typed array kinds a tensor is held in; F16/BF16 are raw bit patterns in a Uint16Array. */
export type TensorArray =
  | Float64Array
  | Float32Array
  | Uint16Array
  | BigInt64Array
  | BigUint64Array
  | Int32Array
  | Uint32Array
  | Int16Array
  | Int8Array
  | Uint8Array;

type ArrayCtor = {
  new (buffer: ArrayBufferLike, byteOffset?: number, length?: number): TensorArray;
  readonly BYTES_PER_ELEMENT: number;
  readonly name: string;
};

export interface DtypeInfo {
  readonly name: Dtype;
  /** Bytes per element. */
  readonly itemSize: number;
  /** The typed array `read()` returns for this dtype. */
  readonly array: ArrayCtor;
  readonly kind: 'float' | 'int' | 'uint' | 'bool';
  /**
   * Position in the safetensors library's `Dtype` enum. Its writer lays tensors out by this rank,
   * descending, then by name (see `compareForLayout` in safetensors.ts).
   */
  readonly layoutRank: number;
}

const table: Record<Dtype, DtypeInfo> = {
  BOOL: { name: 'BOOL', itemSize: 1, array: Uint8Array, kind: 'bool', layoutRank: 0 },
  U8: { name: 'U8', itemSize: 1, array: Uint8Array, kind: 'uint', layoutRank: 1 },
  I8: { name: 'I8', itemSize: 1, array: Int8Array, kind: 'int', layoutRank: 2 },
  I16: { name: 'I16', itemSize: 2, array: Int16Array, kind: 'int', layoutRank: 3 },
  U16: { name: 'U16', itemSize: 2, array: Uint16Array, kind: 'uint', layoutRank: 4 },
  F16: { name: 'F16', itemSize: 2, array: Uint16Array, kind: 'float', layoutRank: 5 },
  BF16: { name: 'BF16', itemSize: 2, array: Uint16Array, kind: 'float', layoutRank: 6 },
  I32: { name: 'I32', itemSize: 4, array: Int32Array, kind: 'int', layoutRank: 7 },
  U32: { name: 'U32', itemSize: 4, array: Uint32Array, kind: 'uint', layoutRank: 8 },
  F32: { name: 'F32', itemSize: 4, array: Float32Array, kind: 'float', layoutRank: 9 },
  F64: { name: 'F64', itemSize: 8, array: Float64Array, kind: 'float', layoutRank: 10 },
  I64: { name: 'I64', itemSize: 8, array: BigInt64Array, kind: 'int', layoutRank: 11 },
  U64: { name: 'U64', itemSize: 8, array: BigUint64Array, kind: 'uint', layoutRank: 12 },
};

export const DTYPES: Readonly<Record<Dtype, DtypeInfo>> = table;

/** Supported dtype names, widest first. */
export const SUPPORTED_DTYPES: readonly Dtype[] = ['F64', 'F32', 'F16', 'BF16', 'I64', 'I32', 'I16', 'I8', 'U64', 'U32', 'U16', 'U8', 'BOOL'];

/** Dtypes the format defines that this toolkit does not read (yet); named in error messages. */
export const KNOWN_UNSUPPORTED_DTYPES: readonly string[] = [
  'F8_E4M3', 'F8_E5M2', 'F8_E8M0', 'F8_E4M3FNUZ', 'F8_E5M2FNUZ', 'F6_E2M3', 'F6_E3M2', 'F4', 'C64',
];

export function isDtype(s: unknown): s is Dtype {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(table, s);
}

export function dtypeInfo(d: Dtype): DtypeInfo {
  return table[d];
}

export function isFloatDtype(d: Dtype): boolean {
  return table[d].kind === 'float';
}

let hostChecked = false;
export function assertLittleEndianHost(): void {
  if (hostChecked) return;
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
    throw new Error('unime reads and writes safetensors through typed arrays and needs a little-endian host');
  }
  hostChecked = true;
}

// ---------------------------------------------------------------------------------------------
// float16 <-> float32

/** Exact f16 -> f32 bit expansion for one value; the table below is built from it. */
function halfBitsToFloatBits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  const man = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (man << 13)) >>> 0; // inf, or NaN with its payload
  if (exp !== 0) return (sign | ((exp + 112) << 23) | (man << 13)) >>> 0;
  if (man === 0) return sign >>> 0; // signed zero
  // Subnormal: value = man * 2^-24. Normalise the mantissa so its leading 1 is at bit 10.
  let m = man;
  let e = 113; // biased f32 exponent of 2^-14, lowered once per shift
  while ((m & 0x400) === 0) {
    m <<= 1;
    e--;
  }
  return (sign | (e << 23) | ((m & 0x3ff) << 13)) >>> 0;
}

let halfTable: Uint32Array | null = null;
function halfToFloatTable(): Uint32Array {
  if (halfTable === null) {
    const t = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) t[h] = halfBitsToFloatBits(h);
    halfTable = t;
  }
  return halfTable;
}

/** Round one f32 bit pattern to the nearest f16 bit pattern, ties to even. */
function floatBitsToHalfBits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const abs = x & 0x7fffffff;
  if (abs >= 0x7f800000) {
    if (abs === 0x7f800000) return sign | 0x7c00;
    // NaN: keep the top of the payload; if that is all zero, set the quiet bit so it stays NaN.
    const payload = (abs >>> 13) & 0x3ff;
    return sign | 0x7c00 | (payload === 0 ? 0x200 : payload);
  }
  if (abs >= 0x47800000) return sign | 0x7c00; // >= 65536: overflow (65520..65535 round up below)
  if (abs >= 0x38800000) {
    // Normal range: rebias the exponent (127 -> 15) and round the 13 dropped mantissa bits.
    let h = (abs - 0x38000000) >>> 13;
    const rest = abs & 0x1fff;
    if (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1)) h++; // a carry may produce 0x7c00 = inf, correctly
    return sign | h;
  }
  if (abs <= 0x33000000) return sign; // <= 2^-25: rounds to zero (2^-25 itself is a tie, to even 0)
  // Subnormal result: man16 = mant24 >> (126 - exp), rounded to nearest even.
  const exp = abs >>> 23;
  const mant = (abs & 0x7fffff) | 0x800000;
  const shift = 126 - exp; // 14..24
  let h = mant >>> shift;
  const rest = mant & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  if (rest > half || (rest === half && (h & 1) === 1)) h++; // may carry into the smallest normal, correctly
  return sign | h;
}

function u32View(a: Float32Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length);
}

/** f16 bit patterns -> float32 values, exactly (every f16 is representable in f32). */
export function float16BitsToFloat32(src: Uint16Array, out?: Float32Array): Float32Array {
  const res = out ?? new Float32Array(src.length);
  if (res.length !== src.length) throw new RangeError(`float16BitsToFloat32: output length ${res.length} != input length ${src.length}`);
  const t = halfToFloatTable();
  const o = u32View(res);
  for (let i = 0; i < src.length; i++) o[i] = t[src[i]!]!;
  return res;
}

/** float32 values -> f16 bit patterns, round-to-nearest-even; overflow gives inf, NaN stays NaN. */
export function float32ToFloat16Bits(src: Float32Array, out?: Uint16Array): Uint16Array {
  const res = out ?? new Uint16Array(src.length);
  if (res.length !== src.length) throw new RangeError(`float32ToFloat16Bits: output length ${res.length} != input length ${src.length}`);
  const s = u32View(src);
  for (let i = 0; i < s.length; i++) res[i] = floatBitsToHalfBits(s[i]!);
  return res;
}

// ---------------------------------------------------------------------------------------------
// bfloat16 <-> float32

/** bf16 bit patterns -> float32 values, exactly (bf16 is the top half of an f32). */
export function bfloat16BitsToFloat32(src: Uint16Array, out?: Float32Array): Float32Array {
  const res = out ?? new Float32Array(src.length);
  if (res.length !== src.length) throw new RangeError(`bfloat16BitsToFloat32: output length ${res.length} != input length ${src.length}`);
  const o = u32View(res);
  for (let i = 0; i < src.length; i++) o[i] = src[i]! << 16;
  return res;
}

/**
 * float32 values -> bf16 bit patterns, round-to-nearest-even. NaN keeps its sign and the top of
 * its payload (quiet bit forced only if the kept payload would be zero), so every bf16 pattern
 * round-trips through float32 unchanged. (PyTorch instead canonicalises NaN to 0x7fc0.)
 */
export function float32ToBfloat16Bits(src: Float32Array, out?: Uint16Array): Uint16Array {
  const res = out ?? new Uint16Array(src.length);
  if (res.length !== src.length) throw new RangeError(`float32ToBfloat16Bits: output length ${res.length} != input length ${src.length}`);
  const s = u32View(src);
  for (let i = 0; i < s.length; i++) {
    const x = s[i]!;
    if ((x & 0x7fffffff) > 0x7f800000) {
      const b = x >>> 16;
      res[i] = (b & 0x7f) === 0 ? b | 0x40 : b;
    } else {
      // Adding 0x7fff plus the lowest kept bit rounds half to even; a carry into the exponent
      // is the correct result (up to and including overflow to inf).
      res[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
    }
  }
  return res;
}

// Scalar helpers, for tests and one-off values.
const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

export function float16ToNumber(bits: number): number {
  scratchU32[0] = halfToFloatTable()[bits & 0xffff]!;
  return scratchF32[0]!;
}
export function numberToFloat16(x: number): number {
  scratchF32[0] = x;
  return floatBitsToHalfBits(scratchU32[0]!);
}
export function bfloat16ToNumber(bits: number): number {
  scratchU32[0] = (bits & 0xffff) << 16;
  return scratchF32[0]!;
}
export function numberToBfloat16(x: number): number {
  scratchF32[0] = x;
  return float32ToBfloat16Bits(scratchF32)[0]!;
}

// ---------------------------------------------------------------------------------------------
// Bytes <-> typed arrays

/**
 * View little-endian tensor bytes as the dtype's typed array. The view shares memory with `bytes`
 * when they are aligned for the element size, otherwise it is a copy.
 */
export function typedArrayFromBytes(dtype: Dtype, bytes: Uint8Array): TensorArray {
  assertLittleEndianHost();
  const info = table[dtype];
  if (bytes.byteLength % info.itemSize !== 0) {
    throw new RangeError(`${bytes.byteLength} bytes is not a whole number of ${dtype} elements (${info.itemSize} bytes each)`);
  }
  const n = bytes.byteLength / info.itemSize;
  if (bytes.byteOffset % info.itemSize === 0) return new info.array(bytes.buffer, bytes.byteOffset, n);
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return new info.array(copy.buffer, 0, n);
}

/** The raw bytes behind any typed array (a view, not a copy). */
export function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/**
 * Read tensor bytes of any dtype as float32. F16/BF16 convert exactly; F64 rounds to nearest;
 * 64-bit integers beyond 2^24 lose precision as any float32 would; BOOL reads as 0/1.
 */
export function toFloat32(dtype: Dtype, bytes: Uint8Array): Float32Array {
  const a = typedArrayFromBytes(dtype, bytes);
  switch (dtype) {
    case 'F32':
      return a as Float32Array; // shares memory with `bytes` when aligned, like typedArrayFromBytes
    case 'F16':
      return float16BitsToFloat32(a as Uint16Array);
    case 'BF16':
      return bfloat16BitsToFloat32(a as Uint16Array);
    case 'I64':
    case 'U64': {
      const src = a as BigInt64Array | BigUint64Array;
      const out = new Float32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = Number(src[i]!);
      return out;
    }
    case 'BOOL': {
      const src = a as Uint8Array;
      const out = new Float32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = src[i] !== 0 ? 1 : 0;
      return out;
    }
    default: {
      const src = a as Float64Array | Int32Array | Uint32Array | Int16Array | Uint16Array | Int8Array | Uint8Array;
      const out = new Float32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = src[i]!;
      return out;
    }
  }
}

/** Float32 values as the raw little-endian bytes of a float dtype (F32 returns a view). */
export function fromFloat32(dtype: 'F64' | 'F32' | 'F16' | 'BF16', values: Float32Array): Uint8Array {
  assertLittleEndianHost();
  switch (dtype) {
    case 'F32':
      return bytesOf(values);
    case 'F16':
      return bytesOf(float32ToFloat16Bits(values));
    case 'BF16':
      return bytesOf(float32ToBfloat16Bits(values));
    case 'F64':
      return bytesOf(Float64Array.from(values));
  }
}
