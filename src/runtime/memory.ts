/**
 * Scope and memory helpers. tfjs frees nothing by itself: every op result must be disposed or
 * created inside a scope. `tidy` covers synchronous code; `scoped` covers async code (data loading
 * between ops), which tf.tidy refuses.
 */
import { tf, type Tensor } from './tf.js';

export const tidy = tf.tidy;
export const keep = tf.keep;

/**
 * Run async `fn` inside a tfjs scope: every tensor it creates and does not return is disposed when
 * it settles. Tensors in the returned value (a tensor, or an array/object of them) survive.
 * Scopes must not interleave: do not run two `scoped` calls concurrently.
 */
export async function scoped<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const engine = tf.engine();
  engine.startScope(name);
  let result: T | undefined;
  try {
    result = await fn();
    return result;
  } finally {
    // endScope keeps the tensors found in `result` alive and disposes the rest.
    engine.endScope(result as unknown as tf.TensorContainer);
  }
}

export interface MemorySnapshot {
  tensors: number;
  /** Bytes held by tfjs tensors on the active backend. */
  tensorBytes: number;
  /** Process resident set size and JS heap, for peak-memory reporting. */
  rssBytes: number;
  heapUsedBytes: number;
}

export function memorySnapshot(): MemorySnapshot {
  const m = tf.memory();
  const p = process.memoryUsage();
  return { tensors: m.numTensors, tensorBytes: m.numBytes, rssBytes: p.rss, heapUsedBytes: p.heapUsed };
}

/**
 * Run `fn` and report how many tensors it left behind (created, not disposed, not returned).
 * Used by tests to make sure models and losses do not leak per step.
 */
export async function countLeaks<T>(fn: () => T | Promise<T>): Promise<{ result: T; leaked: number }> {
  const before = tf.memory().numTensors;
  const result = await fn();
  const returned = countTensors(result);
  return { result, leaked: tf.memory().numTensors - before - returned };
}

function countTensors(x: unknown, seen = new Set<unknown>()): number {
  if (x === null || typeof x !== 'object' || seen.has(x)) return 0;
  seen.add(x);
  if (x instanceof tf.Tensor) return (x as Tensor).isDisposed ? 0 : 1;
  let n = 0;
  for (const v of Array.isArray(x) ? x : Object.values(x)) n += countTensors(v, seen);
  return n;
}

export { formatBytes } from '../util/format.js';
