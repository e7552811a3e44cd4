/**
 * Image resizing that reproduces Pillow's `Image.resize` on 8-bit RGB images bit for bit: separable
 * convolution (horizontal pass, then vertical), each output pixel's window centred at
 * (i + 0.5) * scale with the filter stretched by the scale when downsampling (antialiasing), weights
 * normalised per pixel and turned into 22-bit fixed point, and a rounding to 8 bits after each pass.
 * Hugging Face image processors resize through Pillow, so matching it is what makes our pixel
 * values equal theirs.
 */
import { UnimeError } from '../errors.js';
import type { RgbImage } from './decode.js';

export type ResampleFilter = 'bicubic' | 'bilinear' | 'box' | 'hamming' | 'lanczos';

/** PIL.Image.Resampling codes as written in preprocessor_config.json ("resample": 3). */
export const PIL_RESAMPLE: Readonly<Record<number, ResampleFilter | 'nearest'>> = {
  0: 'nearest',
  1: 'lanczos',
  2: 'bilinear',
  3: 'bicubic',
  4: 'box',
  5: 'hamming',
};

interface Filter {
  support: number;
  weight: (x: number) => number;
}

function sinc(x: number): number {
  if (x === 0) return 1;
  const y = x * Math.PI;
  return Math.sin(y) / y;
}

const FILTERS: Record<ResampleFilter, Filter> = {
  box: { support: 0.5, weight: (x) => (x > -0.5 && x <= 0.5 ? 1 : 0) },
  bilinear: {
    support: 1,
    weight: (x) => {
      const a = Math.abs(x);
      return a < 1 ? 1 - a : 0;
    },
  },
  hamming: {
    support: 1,
    weight: (x) => {
      const a = Math.abs(x);
      if (a === 0) return 1;
      if (a >= 1) return 0;
      const y = a * Math.PI;
      return (Math.sin(y) / y) * (0.54 + 0.46 * Math.cos(y));
    },
  },
  // Keys' cubic with a = -0.5, as Pillow (PyTorch's bicubic uses -0.75).
  bicubic: {
    support: 2,
    weight: (x) => {
      const a = -0.5;
      const t = Math.abs(x);
      if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
      if (t < 2) return (((t - 5) * t + 8) * t - 4) * a;
      return 0;
    },
  },
  lanczos: { support: 3, weight: (x) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0) },
};

const PRECISION_BITS = 32 - 8 - 2;

interface Coefficients {
  /** Per output pixel: first input index and how many inputs it reads. */
  start: Int32Array;
  count: Int32Array;
  /** ksize fixed-point weights per output pixel. */
  weights: Int32Array;
  ksize: number;
}

function coefficients(inSize: number, outSize: number, filter: Filter): Coefficients {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filter.support * filterScale;
  const ksize = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1 / filterScale;
    // C's (int) truncates toward zero
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const w = filter.weight((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (let x = 0; x < ksize; x++) {
      const w = x < xmax && ww !== 0 ? k[x]! / ww : x < xmax ? k[x]! : 0;
      // round half away from zero, then truncate to int, as Pillow's normalize_coeffs_8bpc
      weights[xx * ksize + x] = w < 0 ? Math.trunc(-0.5 + w * (1 << PRECISION_BITS)) : Math.trunc(0.5 + w * (1 << PRECISION_BITS));
    }
    start[xx] = xmin;
    count[xx] = xmax;
  }
  return { start, count, weights, ksize };
}

function clip8(v: number): number {
  if (v >= 1 << (PRECISION_BITS + 8)) return 255;
  if (v <= 0) return 0;
  return v >> PRECISION_BITS;
}

/**
 * Resize an RGB image to width x height with one of Pillow's convolution filters. Returns the input
 * itself when the size is unchanged (Pillow copies it: same values).
 */
export function resizeImage(img: RgbImage, width: number, height: number, filter: ResampleFilter): RgbImage {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new UnimeError(`cannot resize to ${width}x${height}: width and height must be positive integers`);
  }
  const f = FILTERS[filter];
  if (!f) throw new UnimeError(`unknown resampling filter ${JSON.stringify(filter)}`, { fix: `use one of ${Object.keys(FILTERS).join(', ')}` });
  let cur = img;
  if (width !== cur.width) cur = resampleHorizontal(cur, width, f);
  if (height !== cur.height) cur = resampleVertical(cur, height, f);
  return cur;
}

function resampleHorizontal(img: RgbImage, outW: number, f: Filter): RgbImage {
  const { width: inW, height: h, data } = img;
  const c = coefficients(inW, outW, f);
  const out = new Uint8Array(outW * h * 3);
  const half = 1 << (PRECISION_BITS - 1);
  for (let y = 0; y < h; y++) {
    const row = y * inW * 3;
    for (let xx = 0; xx < outW; xx++) {
      const x0 = c.start[xx]!;
      const n = c.count[xx]!;
      const kOff = xx * c.ksize;
      let r = half, g = half, b = half;
      for (let x = 0; x < n; x++) {
        const w = c.weights[kOff + x]!;
        const p = row + (x0 + x) * 3;
        r += data[p]! * w;
        g += data[p + 1]! * w;
        b += data[p + 2]! * w;
      }
      const o = (y * outW + xx) * 3;
      out[o] = clip8(r);
      out[o + 1] = clip8(g);
      out[o + 2] = clip8(b);
    }
  }
  return { width: outW, height: h, data: out };
}

function resampleVertical(img: RgbImage, outH: number, f: Filter): RgbImage {
  const { width: w, height: inH, data } = img;
  const c = coefficients(inH, outH, f);
  const out = new Uint8Array(w * outH * 3);
  const half = 1 << (PRECISION_BITS - 1);
  for (let yy = 0; yy < outH; yy++) {
    const y0 = c.start[yy]!;
    const n = c.count[yy]!;
    const kOff = yy * c.ksize;
    for (let x = 0; x < w * 3; x++) {
      let s = half;
      for (let y = 0; y < n; y++) s += data[(y0 + y) * w * 3 + x]! * c.weights[kOff + y]!;
      out[yy * w * 3 + x] = clip8(s);
    }
  }
  return { width: w, height: outH, data: out };
}
