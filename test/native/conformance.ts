/**
 * Shared helpers for the native-kernel conformance tests: run the same computation on the pure-JS `cpu`
 * backend (the reference) and on `native`, from the same seeded inputs, and compare.
 */
import assert from 'node:assert/strict';
import { tf, type Tensor } from '../../src/runtime/tf.js';
import { listDevices, useDevice } from '../../src/runtime/devices.js';
import { Rng } from '../../src/runtime/rng.js';

const native = listDevices().find((d) => d.name === 'native');
/** node:test's `skip` option: false when the native backend can run here, else the reason. */
export const skipNative: string | false = native?.availability.available
  ? false
  : `native addon unavailable: ${native?.availability.reason ?? 'no native provider'} (build it with node tools/build-native.mjs)`;

export interface Result {
  shape: number[];
  values: Float32Array;
}

export type Backend = 'cpu' | 'native';

/** Runs fn on a backend and returns every output's shape and values (tensors are disposed). */
export async function on(backend: Backend, fn: () => Tensor | Tensor[]): Promise<Result[]> {
  await useDevice(backend);
  return tf.tidy(() => {
    const out = fn();
    const list = Array.isArray(out) ? out : [out];
    return list.map((t) => ({ shape: [...t.shape], values: Float32Array.from(t.dataSync() as Float32Array) }));
  });
}

/** Seeded normal values for a shape (a plain array, so each backend builds its own tensor). */
export function randn(rng: Rng, shape: number[], scale = 1): { shape: number[]; data: Float32Array } {
  const n = shape.reduce((a, b) => a * b, 1);
  return { shape, data: rng.fillNormal(new Float32Array(n), 0, scale) };
}

export function tensor(x: { shape: number[]; data: Float32Array }): Tensor {
  return tf.tensor(x.data, x.shape, 'float32');
}

/**
 * Asserts that two results agree: same shapes, and |a - b| <= atol + rtol * |b| elementwise, NaN where
 * the reference has NaN.
 */
export function assertClose(actual: Result[], expected: Result[], what: string, atol = 1e-5, rtol = 1e-4): void {
  assert.equal(actual.length, expected.length, `${what}: output count`);
  actual.forEach((a, i) => {
    const e = expected[i]!;
    assert.deepEqual(a.shape, e.shape, `${what}: shape of output ${i}`);
    let worst = -1;
    let worstErr = 0;
    for (let j = 0; j < e.values.length; j++) {
      const x = a.values[j]!;
      const y = e.values[j]!;
      if (Number.isNaN(y)) {
        assert.ok(Number.isNaN(x), `${what}: output ${i}[${j}] is ${x}, expected NaN`);
        continue;
      }
      if (x === y) continue; // exact, infinities included
      const err = Math.abs(x - y) - (atol + rtol * Math.abs(y));
      if (!(err <= 0) && (worst < 0 || err > worstErr)) {
        worst = j;
        worstErr = err;
      }
    }
    if (worst >= 0) {
      assert.fail(`${what}: output ${i}[${worst}] = ${a.values[worst]}, reference ${e.values[worst]} (shape ${e.shape}, atol ${atol}, rtol ${rtol})`);
    }
  });
}
