import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf, initRuntime, useDevice, listDevices, scoped, countLeaks, formatBytes, randomNormal, dropoutMask } from '../../src/runtime/index.js';
import { setLogSink } from '../../src/runtime/log.js';
import { Rng } from '../../src/runtime/rng.js';
import { UnimeError } from '../../src/errors.js';

/** Central finite differences of a scalar function at x, one coordinate at a time. */
function numericGrad(f: (x: tf.Tensor) => tf.Tensor, x: Float32Array, shape: number[], eps = 1e-2): Float32Array {
  const g = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const plus = x.slice();
    const minus = x.slice();
    plus[i] = plus[i]! + eps;
    minus[i] = minus[i]! - eps;
    const fp = tf.tidy(() => f(tf.tensor(plus, shape)).dataSync()[0]!);
    const fm = tf.tidy(() => f(tf.tensor(minus, shape)).dataSync()[0]!);
    g[i] = (fp - fm) / (2 * eps);
  }
  return g;
}

test('runtime starts on the cpu backend with a seeded rng', async () => {
  const rt = await initRuntime({ device: 'cpu', seed: 7 });
  assert.equal(rt.device.name, 'cpu');
  assert.equal(tf.getBackend(), 'cpu');
  assert.equal(rt.rng.nextUint32(), new Rng(7).nextUint32());
});

test('gradients are registered for the ops the models and losses use', async () => {
  await useDevice('cpu');
  const rng = new Rng(1);
  const shape = [3, 4];
  const x0 = rng.fillNormal(new Float32Array(12));
  const w = randomNormal(rng, [4, 5]);
  const idx = tf.tensor1d([2, 0, 2], 'int32');
  // A composite touching matMul, softmax/logSoftmax, gather, norms, exp/log, sqrt, mean, max, concat.
  const f = (x: tf.Tensor) =>
    tf.tidy(() => {
      const h = tf.matMul(x as tf.Tensor2D, w as tf.Tensor2D);
      const n = h.div(tf.sqrt(h.square().sum(-1, true).add(1e-6)));
      const ls = tf.logSoftmax(n.mul(5));
      const g = tf.gather(x, idx);
      const s = tf.softmax(g).mul(g.tanh()).sum();
      const gelu = x.mul(tf.sigmoid(x.mul(1.702))).mean();
      return ls.max(-1).mean().add(s).add(gelu).add(tf.concat([x, x.exp()], 1).mean());
    });
  const analytic = tf.grad(f)(tf.tensor(x0, shape)).dataSync();
  const numeric = numericGrad(f, x0, shape);
  for (let i = 0; i < numeric.length; i++) {
    assert.ok(Math.abs(analytic[i]! - numeric[i]!) < 2e-2, `grad[${i}]: analytic ${analytic[i]} vs numeric ${numeric[i]}`);
  }
  tf.dispose([w, idx]);
});

test('chained tensor methods exist (x.square().sum())', async () => {
  await useDevice('cpu');
  const v = tf.tidy(() => tf.tensor([1, 2, 3]).square().sum().dataSync()[0]);
  assert.equal(v, 14);
});

test('an explicitly requested device that is missing is a clear error', async () => {
  await assert.rejects(useDevice('cuda'), (e: unknown) => e instanceof UnimeError && /device "cuda" is not available/.test((e as Error).message) && /fix:/.test((e as Error).message));
  await assert.rejects(useDevice('bogus' as never), /unknown device "bogus"/);
});

test('auto falls back to the JS kernels and says so once', async () => {
  const lines: string[] = [];
  const restore = setLogSink((l) => lines.push(l));
  try {
    const native = listDevices().find((d) => d.name === 'native');
    assert.ok(native);
    const a = await useDevice('auto');
    await useDevice('auto');
    if (!native.availability.available) {
      assert.equal(a.name, 'cpu');
      const notices = lines.filter((l) => l.includes('running on the pure-JS kernels'));
      assert.ok(notices.length <= 1, `notice printed ${notices.length} times`);
    }
  } finally {
    restore();
  }
});

test('bf16 on the cpu device is refused with the fix named', async () => {
  await assert.rejects(useDevice('cpu', 'bf16'), (e: unknown) => e instanceof UnimeError && /precision bf16 is not supported on device cpu/.test((e as Error).message) && /precision=fp32/.test((e as Error).message));
});

test('scoped() disposes intermediates of async work and keeps the result', async () => {
  await useDevice('cpu');
  const before = tf.memory().numTensors;
  const out = await scoped('t', async () => {
    const a = tf.ones([4]);
    await new Promise((r) => setTimeout(r, 1));
    const b = a.add(1);
    return b.mul(2);
  });
  assert.equal(tf.memory().numTensors, before + 1);
  assert.deepEqual(Array.from(out.dataSync()), [4, 4, 4, 4]);
  out.dispose();
  const { leaked } = await countLeaks(() => {
    tf.ones([2]);
    return tf.tidy(() => tf.zeros([3]).add(1));
  });
  assert.equal(leaked, 1);
});

test('seeded random tensors are reproducible and dropout masks are scaled', async () => {
  await useDevice('cpu');
  const a = randomNormal(new Rng(3), [64]);
  const b = randomNormal(new Rng(3), [64]);
  assert.deepEqual(Array.from(a.dataSync()), Array.from(b.dataSync()));
  const m = dropoutMask(new Rng(4), [10000], 0.25).dataSync();
  const kept = Array.from(m).filter((v) => v !== 0);
  assert.ok(kept.every((v) => Math.abs(v - 1 / 0.75) < 1e-6));
  assert.ok(Math.abs(kept.length / m.length - 0.75) < 0.02);
  tf.dispose([a, b]);
});

test('formatBytes', () => {
  assert.equal(formatBytes(512), '512 B');
  assert.equal(formatBytes(1536), '1.50 KiB');
  assert.equal(formatBytes(15 * 1024 ** 3), '15.0 GiB');
});
