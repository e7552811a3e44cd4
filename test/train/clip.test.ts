/** Gradient norms, clipping, accumulation and non-finite detection. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf, type Tensor } from '../../src/runtime/tf.js';
import { useDevice } from '../../src/runtime/devices.js';
import { UnimeError } from '../../src/errors.js';
import { NonFiniteError, accumulateGrads, checkGrads, checkLoss, clipGradNorm, globalNorm, gradNorms, scaleGrads } from '../../src/train/clip.js';

const map = (entries: [string, number[]][]) => new Map<string, Tensor>(entries.map(([k, v]) => [k, tf.tensor(v)]));

test('gradNorms and globalNorm: per-parameter and global Euclidean norms, also beyond float32 squares', async () => {
  await useDevice('cpu');
  const g = map([['a', [3, 4]], ['b', [0, 0, 12]], ['z', []]]);
  const norms = gradNorms(g);
  assert.deepEqual(norms.map((x) => Number(x.toFixed(5))), [5, 12, 0]);
  assert.equal(globalNorm(norms), 13);
  const big = map([['big', [3e30, 4e30]]]);
  const bn = gradNorms(big)[0]!;
  assert.ok(Math.abs(bn / 5e30 - 1) < 1e-6, `norm of huge finite gradient ${bn}`);
  tf.dispose([...g.values(), ...big.values()]);
});

test('clipGradNorm follows torch clip_grad_norm_: returns the pre-clip norm, scales by max/(norm+1e-6) only when needed', async () => {
  await useDevice('cpu');
  const g = map([['a', [3, 4]], ['b', [0, 12]]]);
  const r = clipGradNorm(g, 1.3);
  assert.equal(r.norm, 13);
  assert.ok(Math.abs(r.scale - 1.3 / (13 + 1e-6)) < 1e-15);
  const after = globalNorm(gradNorms(g));
  assert.ok(Math.abs(after - 1.3) < 1e-5, `clipped norm ${after}`);
  const a = Array.from(g.get('a')!.dataSync());
  assert.ok(Math.abs(a[0]! - 0.3) < 1e-6 && Math.abs(a[1]! - 0.4) < 1e-6);
  const small = map([['a', [0.3, 0.4]]]);
  const before = small.get('a');
  const r2 = clipGradNorm(small, 1);
  assert.equal(r2.scale, 1);
  assert.equal(small.get('a'), before, 'no clipping: the tensors are left as they are');
  tf.dispose([...g.values(), ...small.values()]);
});

test('accumulation: the mean of micro-batch gradients equals the full-batch gradient of a mean loss', async () => {
  await useDevice('cpu');
  const w = tf.variable(tf.tensor2d([[0.5, -1], [2, 0.25], [-0.75, 1.5]]), true, 'clip-test.w');
  const x = tf.tensor2d([[1, 2, 3], [0, -1, 1], [2, 2, -1], [0.5, 0, 1], [-1, 1, 0], [3, 0, 1]]);
  const y = tf.tensor2d([[1, 0], [0, 1], [1, 1], [0, 0], [2, -1], [1, 3]]);
  const gradOf = (xs: Tensor, ys: Tensor) => {
    const { grads } = tf.variableGrads(() => tf.mean(tf.square(tf.sub(tf.matMul(xs, w), ys))) as tf.Scalar, [w]);
    return new Map<string, Tensor>([['w', grads[w.name]!]]);
  };
  const full = gradOf(x, y);
  const acc = new Map<string, Tensor>();
  for (let i = 0; i < 3; i++) accumulateGrads(acc, gradOf(x.slice([2 * i, 0], [2, 3]), y.slice([2 * i, 0], [2, 2])));
  scaleGrads(acc, 1 / 3);
  const a = acc.get('w')!.dataSync();
  const f = full.get('w')!.dataSync();
  for (let i = 0; i < f.length; i++) assert.ok(Math.abs(a[i]! - f[i]!) <= 1e-6 * Math.max(1, Math.abs(f[i]!)), `element ${i}: ${a[i]} vs ${f[i]}`);
  tf.dispose([w, x, y, ...full.values(), ...acc.values()]);
});

test('non-finite detection names the step, the batch and the loss or the parameter', async () => {
  await useDevice('cpu');
  assert.throws(() => checkLoss(NaN, { step: 7, batchIndex: 13 }), (e: unknown) => {
    assert.ok(e instanceof NonFiniteError && e instanceof UnimeError);
    assert.equal(e.culprit, 'loss');
    assert.match(e.message, /loss is NaN at step 7, batch 13/);
    return true;
  });
  checkLoss(0.5, { step: 1, batchIndex: 0 });
  const g = map([['layer.0.lora_A', [1, 2]], ['layer.0.lora_B', [1, Infinity]], ['layer.1.lora_A', [NaN, 0]]]);
  assert.throws(() => checkGrads(g, { step: 3, batchIndex: 5 }), (e: unknown) => {
    assert.ok(e instanceof NonFiniteError);
    assert.equal(e.culprit, 'layer.0.lora_B');
    assert.equal(e.step, 3);
    assert.equal(e.batchIndex, 5);
    assert.match(e.message, /gradient of layer\.0\.lora_B is infinite at step 3, batch 5 \(and 1 more: layer\.1\.lora_A\)/);
    return true;
  });
  const nan = map([['p', [0, NaN, 1]]]);
  assert.throws(() => checkGrads(nan, { step: 1, batchIndex: 0 }), /gradient of p is NaN/);
  const ok = map([['p', [1e30, -1e30]]]);
  assert.equal(checkGrads(ok, { step: 1, batchIndex: 0 }).length, 1);
  tf.dispose([...g.values(), ...nan.values(), ...ok.values()]);
});
