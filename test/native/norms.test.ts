import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf, type Tensor } from '../../src/runtime/tf.js';
import { activation, attention, gelu, layerNorm, rmsNorm, silu, softmaxCrossEntropy } from '../../src/runtime/native/ops.js';
import { ACTIVATIONS } from '../../src/runtime/native/addon.js';
import { useDevice } from '../../src/runtime/devices.js';
import { Rng } from '../../src/runtime/rng.js';
import { assertClose, on, randn, skipNative, tensor } from './conformance.js';

const opts = { skip: skipNative };

function randomShape(rng: Rng): number[] {
  const rank = 1 + rng.int(3);
  return Array.from({ length: rank }, (_, i) => (i === rank - 1 ? 1 + rng.int(200) : 1 + rng.int(5)));
}

/** Value and gradients w.r.t. every input of sum(op(inputs) * w). */
function valueAndGrads(op: (...ts: Tensor[]) => Tensor, inputs: { shape: number[]; data: Float32Array }[], w: { shape: number[]; data: Float32Array }) {
  return () => {
    const ts = inputs.map(tensor);
    const f = (...xs: Tensor[]) => tf.sum(tf.mul(op(...xs), tensor(w)));
    const { value, grads } = tf.valueAndGrads(f)(ts);
    return [op(...ts), value, ...grads];
  };
}

test('rmsNorm matches the tfjs reference, with and without weight, values and gradients', opts, async () => {
  const rng = new Rng('native-rmsnorm');
  for (let i = 0; i < 25; i++) {
    const shape = randomShape(rng);
    const d = shape.at(-1)!;
    const x = randn(rng, shape, 3);
    const weight = randn(rng, [d]);
    const w = randn(rng, shape);
    const eps = i % 2 ? 1e-6 : 1e-5;
    const withW = valueAndGrads((a, b) => rmsNorm(a, b!, eps), [x, weight], w);
    assertClose(await on('native', withW), await on('cpu', withW), `rmsNorm ${shape}`, 1e-4, 1e-3);
    const noW = valueAndGrads((a) => rmsNorm(a, null, eps), [x], w);
    assertClose(await on('native', noW), await on('cpu', noW), `rmsNorm (no weight) ${shape}`, 1e-4, 1e-3);
  }
});

test('layerNorm matches the tfjs reference with every affine combination, values and gradients', opts, async () => {
  const rng = new Rng('native-layernorm');
  for (let i = 0; i < 20; i++) {
    const shape = randomShape(rng);
    const d = shape.at(-1)!;
    const x = randn(rng, shape, 2);
    // an offset so the mean matters
    x.data.forEach((v, j) => (x.data[j] = v + 5));
    const gamma = randn(rng, [d]);
    const beta = randn(rng, [d]);
    const w = randn(rng, shape);
    const variants: [string, (...ts: Tensor[]) => Tensor, { shape: number[]; data: Float32Array }[]][] = [
      ['gamma+beta', (a, g, b) => layerNorm(a, g!, b!, 1e-5), [x, gamma, beta]],
      ['gamma', (a, g) => layerNorm(a, g!, null, 1e-5), [x, gamma]],
      ['beta', (a, b) => layerNorm(a, null, b!, 1e-5), [x, beta]],
      ['plain', (a) => layerNorm(a, null, null, 1e-5), [x]],
    ];
    for (const [name, op, ins] of variants) {
      const f = valueAndGrads(op, ins, w);
      // d = 1 makes x - mean exactly 0 and the gradient a difference of rounding errors: values only there
      const want = await on('cpu', f);
      const got = await on('native', f);
      if (d === 1) assertClose(got.slice(0, 2), want.slice(0, 2), `layerNorm ${name} ${shape}`, 1e-4, 1e-3);
      else assertClose(got, want, `layerNorm ${name} ${shape}`, 2e-4, 2e-3);
    }
  }
});

test('norms handle empty tensors', opts, async () => {
  const f = () => [rmsNorm(tf.zeros([0, 4]), tf.ones([4]), 1e-6), layerNorm(tf.zeros([0, 4]), tf.ones([4]), tf.zeros([4]), 1e-5)];
  assertClose(await on('native', f), await on('cpu', f), 'empty norms');
  const g = () => tf.grads((x, w) => tf.sum(rmsNorm(x!, w!, 1e-6)))([tf.zeros([0, 4]), tf.ones([4])]);
  assertClose(await on('native', g), await on('cpu', g), 'empty norm grads');
});

test('activations (silu, gelu tanh/erf, quickGelu) match the tfjs reference, values and gradients', opts, async () => {
  const rng = new Rng('native-activations');
  for (const name of ACTIVATIONS) {
    for (const shape of [[7], [3, 129], [2, 2, 1000]]) {
      const x = randn(rng, shape, 3);
      const w = randn(rng, shape);
      const f = valueAndGrads((a) => activation(name, a), [x], w);
      assertClose(await on('native', f), await on('cpu', f), `${name} ${shape}`, 2e-5, 1e-4);
    }
  }
});

test('the ops run the reference path on cpu and the native kernels on native', opts, async () => {
  await useDevice('native');
  const x = tf.tensor2d([[1, 2, 3]]);
  const kernels: string[] = [];
  const profile = await tf.profile(() => [silu(x), gelu(x, 'tanh'), rmsNorm(x, null, 1e-6)]);
  for (const k of profile.kernels) kernels.push(k.name);
  assert.ok(kernels.includes('UnimeActivation') && kernels.includes('UnimeRmsNorm'), kernels.join(','));
  tf.dispose([x, ...(profile.result as Tensor[])]);
  await useDevice('cpu');
  const y = tf.tensor2d([[1, 2, 3]]);
  const cpuProfile = await tf.profile(() => silu(y));
  assert.ok(!cpuProfile.kernels.some((k) => k.name.startsWith('Unime')));
  tf.dispose([y, cpuProfile.result as Tensor]);
});

test('a training-style step through every native kernel leaves no tensors behind', opts, async () => {
  await useDevice('native');
  const rng = new Rng('native-leaks');
  const x = tensor(randn(rng, [2, 8, 16]));
  const w = tf.variable(tensor(randn(rng, [16, 16], 0.2)));
  const g = tf.variable(tf.ones([16]));
  const labels = tf.tensor1d([1, 0, 3, 2, 5, 4, 7, 6, 1, 0, 3, 2, 5, 4, 7, 6], 'int32');
  const before = tf.memory().numTensors;
  for (let i = 0; i < 2; i++) {
    const { value, grads } = tf.variableGrads(() => {
      const h = rmsNorm(tf.reshape(tf.matMul(tf.reshape(x, [16, 16]), w), [2, 8, 16]), g, 1e-6);
      const q = tf.reshape(h, [2, 2, 8, 8]);
      const a = attention(q, q, q, { causal: true });
      const logits = layerNorm(silu(tf.reshape(a, [16, 16])), null, null, 1e-5);
      return tf.mean(softmaxCrossEntropy(logits, labels));
    });
    tf.dispose([value, ...Object.values(grads)]);
  }
  assert.equal(tf.memory().numTensors, before);
  tf.dispose([x, w, g, labels]);
});
