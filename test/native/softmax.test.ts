import { test } from 'node:test';
import { tf } from '../../src/runtime/tf.js';
import { logSoftmax } from '../../src/runtime/native/ops.js';
import { Rng } from '../../src/runtime/rng.js';
import { assertClose, on, randn, skipNative, tensor } from './conformance.js';

const opts = { skip: skipNative };

function randomShape(rng: Rng): number[] {
  const rank = 1 + rng.int(4);
  return Array.from({ length: rank }, (_, i) => (i === rank - 1 ? 1 + rng.int(300) : 1 + rng.int(6)));
}

test('softmax matches the JS reference on random shapes, odd sizes and large logits', opts, async () => {
  const rng = new Rng('native-softmax');
  for (let i = 0; i < 40; i++) {
    const shape = randomShape(rng);
    const x = randn(rng, shape, i % 4 === 0 ? 30 : 2);
    const f = () => tf.softmax(tensor(x));
    assertClose(await on('native', f), await on('cpu', f), `softmax ${shape}`, 1e-6, 1e-4);
  }
});

test('softmax and log-softmax handle empty tensors and -Infinity (masked) entries', opts, async () => {
  const masked = () => {
    const x = tf.tensor2d([
      [0, -Infinity, 1, -Infinity],
      [-Infinity, -Infinity, -Infinity, 2],
    ]);
    return [tf.softmax(x), logSoftmax(x)];
  };
  const reference = () => {
    const x = tf.tensor2d([
      [0, -Infinity, 1, -Infinity],
      [-Infinity, -Infinity, -Infinity, 2],
    ]);
    return [tf.softmax(x), tf.logSoftmax(x)];
  };
  assertClose(await on('native', masked), await on('cpu', reference), 'masked softmax');
  for (const shape of [[0], [3, 0], [0, 7]]) {
    const f = () => [tf.softmax(tf.zeros(shape)), logSoftmax(tf.zeros(shape))];
    assertClose(await on('native', f), await on('cpu', f), `empty ${shape}`);
  }
});

test('logSoftmax (native op) matches tf.logSoftmax on random shapes (last axis, as tfjs supports)', opts, async () => {
  const rng = new Rng('native-logsoftmax');
  for (let i = 0; i < 40; i++) {
    const shape = randomShape(rng);
    const axis = rng.uniform() < 0.25 ? shape.length - 1 : -1;
    const x = randn(rng, shape, i % 4 === 0 ? 30 : 2);
    const got = await on('native', () => logSoftmax(tensor(x), axis));
    const want = await on('cpu', () => tf.logSoftmax(tensor(x), axis));
    assertClose(got, want, `logSoftmax ${shape} axis ${axis}`, 2e-5, 1e-5);
  }
});

test('softmax and logSoftmax gradients match the JS reference', opts, async () => {
  const rng = new Rng('native-softmax-grad');
  for (const shape of [[7], [3, 17], [2, 3, 64], [4, 1]]) {
    const x = randn(rng, shape, 3);
    const w = randn(rng, shape);
    const g = (ls: (t: tf.Tensor) => tf.Tensor) => () => [
      tf.grad((t) => tf.sum(tf.mul(tf.softmax(t), tensor(w))))(tensor(x)),
      tf.grad((t) => tf.sum(tf.mul(ls(t), tensor(w))))(tensor(x)),
    ];
    const got = await on('native', g((t) => logSoftmax(t)));
    const want = await on('cpu', g((t) => tf.logSoftmax(t)));
    assertClose(got, want, `softmax grads ${shape}`, 1e-5, 1e-4);
  }
});
