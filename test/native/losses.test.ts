import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf } from '../../src/runtime/tf.js';
import { softmaxCrossEntropy } from '../../src/runtime/native/ops.js';
import { useDevice } from '../../src/runtime/devices.js';
import { Rng } from '../../src/runtime/rng.js';
import { assertClose, on, randn, skipNative, tensor } from './conformance.js';

const opts = { skip: skipNative };

test('softmaxCrossEntropy matches the tfjs reference, with ignored rows, values and gradients', opts, async () => {
  const rng = new Rng('native-xent');
  for (const shape of [[5, 3], [4, 7, 33], [1, 1], [6, 1000], [0, 4]]) {
    const logits = randn(rng, shape, 4);
    const C = shape.at(-1)!;
    const n = shape.slice(0, -1).reduce((a, b) => a * b, 1);
    const labels = Int32Array.from({ length: n }, (_, i) => (i % 5 === 3 ? -100 : rng.int(C)));
    const w = randn(rng, shape.slice(0, -1));
    const f = () => {
      const y = tf.tensor(labels, shape.slice(0, -1), 'int32');
      const { value, grads } = tf.valueAndGrads((x: tf.Tensor) => tf.sum(tf.mul(softmaxCrossEntropy(x, y), tensor(w))))([tensor(logits)]);
      return [softmaxCrossEntropy(tensor(logits), y), value, ...grads];
    };
    assertClose(await on('native', f), await on('cpu', f), `cross-entropy ${shape}`, 2e-5, 1e-4);
  }
});

test('softmaxCrossEntropy refuses labels that do not fit', opts, async () => {
  await useDevice('native');
  assert.throws(() => softmaxCrossEntropy(tf.zeros([2, 3]), tf.tensor1d([0, 1, 2], 'int32')), /labels must have logits' shape/);
  assert.throws(() => softmaxCrossEntropy(tf.zeros([2, 3]), tf.tensor1d([0, 3], 'int32')), /label 3 out of range \[0, 3\)/);
  await useDevice('cpu');
  assert.throws(() => softmaxCrossEntropy(tf.zeros([2, 3]), tf.tensor1d([0, 3], 'int32')), /label 3 out of range/);
});
