/**
 * A seeded, serialisable random number generator (xoshiro128**, seeded through splitmix32).
 * Every source of randomness in a run (weight init, shuffling, dropout masks, sampling) draws from
 * one of these, so a run with the same recipe and seed is reproducible, and the state can be saved
 * in a checkpoint so a resumed run continues the same stream.
 */
export interface RngState {
  /** Four 32-bit words of xoshiro128** state. */
  s: [number, number, number, number];
  /** A cached second normal deviate from Box-Muller, or null. */
  spare: number | null;
}

function splitmix32(seed: number): () => number {
  let x = seed >>> 0;
  return () => {
    x = (x + 0x9e3779b9) >>> 0;
    let z = x;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

/** FNV-1a over a string: turns string seeds and fork labels into 32-bit numbers. */
export function hashString32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

const rotl = (x: number, k: number) => ((x << k) | (x >>> (32 - k))) >>> 0;

export class Rng {
  private s: [number, number, number, number];
  private spare: number | null = null;

  constructor(seed: number | string = 0) {
    const n = typeof seed === 'string' ? hashString32(seed) : seed;
    if (!Number.isFinite(n)) throw new RangeError(`Rng seed must be a finite number, got ${seed}`);
    // Fold in the high bits too so seeds above 2^32 do not collide with their low word.
    const sm = splitmix32((n >>> 0) ^ hashString32(String(Math.floor(n / 2 ** 32))));
    this.s = [sm(), sm(), sm(), sm()];
    if ((this.s[0] | this.s[1] | this.s[2] | this.s[3]) === 0) this.s[0] = 1;
  }

  static fromState(state: RngState): Rng {
    const r = new Rng(0);
    r.setState(state);
    return r;
  }

  getState(): RngState {
    return { s: [...this.s] as [number, number, number, number], spare: this.spare };
  }

  setState(state: RngState): void {
    const s = state?.s;
    if (!Array.isArray(s) || s.length !== 4 || !s.every((w) => Number.isInteger(w) && w >= 0 && w < 2 ** 32)) {
      throw new TypeError('Rng state must have s: four unsigned 32-bit integers');
    }
    if ((s[0] | s[1] | s[2] | s[3]) === 0) throw new TypeError('Rng state must not be all zero');
    this.s = [s[0], s[1], s[2], s[3]];
    this.spare = typeof state.spare === 'number' ? state.spare : null;
  }

  /** Next raw 32-bit unsigned integer. */
  nextUint32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1], 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1] << 9) >>> 0;
    s[2] = (s[2] ^ s[0]) >>> 0;
    s[3] = (s[3] ^ s[1]) >>> 0;
    s[1] = (s[1] ^ s[2]) >>> 0;
    s[0] = (s[0] ^ s[3]) >>> 0;
    s[2] = (s[2] ^ t) >>> 0;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** Uniform in [0, 1) with 53 bits of precision. */
  uniform(): number {
    const hi = this.nextUint32() >>> 5; // 27 bits
    const lo = this.nextUint32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** Standard normal deviate (Box-Muller; the second deviate is kept for the next call). */
  normal(mean = 0, std = 1): number {
    if (this.spare !== null) {
      const v = this.spare;
      this.spare = null;
      return mean + std * v;
    }
    let u = 0;
    while (u === 0) u = this.uniform();
    const v = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return mean + std * r * Math.cos(2 * Math.PI * v);
  }

  /** Uniform integer in [0, n), without modulo bias. */
  int(n: number): number {
    if (!Number.isInteger(n) || n <= 0 || n > 2 ** 32) throw new RangeError(`Rng.int needs an integer 1..2^32, got ${n}`);
    const limit = 2 ** 32 - (2 ** 32 % n);
    let x = this.nextUint32();
    while (x >= limit) x = this.nextUint32();
    return x % n;
  }

  /** In-place Fisher-Yates shuffle; returns the same array. */
  shuffle<T>(a: T[]): T[] {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = a[i] as T;
      a[i] = a[j] as T;
      a[j] = t;
    }
    return a;
  }

  /** A permutation of 0..n-1. */
  permutation(n: number): number[] {
    return this.shuffle(Array.from({ length: n }, (_, i) => i));
  }

  /** Fill a Float32Array with normal deviates. */
  fillNormal(out: Float32Array, mean = 0, std = 1): Float32Array {
    for (let i = 0; i < out.length; i++) out[i] = this.normal(mean, std);
    return out;
  }

  /** Fill a Float32Array with uniform values in [lo, hi). */
  fillUniform(out: Float32Array, lo = 0, hi = 1): Float32Array {
    for (let i = 0; i < out.length; i++) out[i] = lo + (hi - lo) * this.uniform();
    return out;
  }

  /**
   * An independent stream named by `label`, derived from this generator's current state without
   * advancing it: `rng.fork('dropout')` is the same stream every time for the same state.
   */
  fork(label: string): Rng {
    const h = hashString32(label);
    const r = new Rng(0);
    const sm = splitmix32((this.s[0] ^ h) >>> 0);
    r.s = [(sm() ^ this.s[1]) >>> 0, (sm() ^ this.s[2]) >>> 0, (sm() ^ this.s[3]) >>> 0, (sm() ^ h) >>> 0];
    if ((r.s[0] | r.s[1] | r.s[2] | r.s[3]) === 0) r.s[0] = 1;
    return r;
  }
}
