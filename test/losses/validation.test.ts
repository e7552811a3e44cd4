/** Misuse is reported as a UnimeError naming the loss and what was wrong; nothing leaks on the way. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf } from '../../src/runtime/tf.js';
import { useDevice } from '../../src/runtime/devices.js';
import { UnimeError } from '../../src/errors.js';
import {
  clipInfoNce,
  hardNegativeInfoNce,
  inbatchInfoNce,
  inbatchKlDistillation,
  initClipLogScale,
  initSigmoidPairParameters,
  positiveCosineLoss,
  procLipDistillation,
  sigmoidPairLoss,
} from '../../src/losses/index.js';

test('shape and option errors', async () => {
  await useDevice('cpu');
  const a = tf.ones([3, 4]);
  const b = tf.ones([2, 4]);
  const v = tf.ones([4]);
  const before = tf.memory().numTensors;
  const cases: [() => unknown, RegExp][] = [
    [() => inbatchInfoNce(a, b), /inbatchInfoNce: candidates must be \[3, 4\]/],
    [() => inbatchInfoNce(v, a), /queries must be a \[rows, dim\] matrix/],
    [() => inbatchInfoNce(a, a, { temperature: 0 }), /temperature must be a positive number/],
    [() => inbatchInfoNce(a, a, { extraNegatives: tf.ones([2, 3]) }), /extraNegatives must have dim 4/],
    [() => hardNegativeInfoNce(a, b), /2 candidates for 3 queries/],
    [() => hardNegativeInfoNce(a, a, { k: 1.5 }), /k must be a positive integer/],
    [() => hardNegativeInfoNce(a, a, { positives: [0, 1] }), /2 positives for 3 queries/],
    [() => hardNegativeInfoNce(a, a, { emptyRows: 'drop' as 'mask' }), /emptyRows must be/],
    [() => inbatchKlDistillation(a, b), /student has 3 rows, teacher 2/],
    [() => inbatchKlDistillation(a, a, { direction: 'forward' as 'teacher-student' }), /direction must be/],
    [() => inbatchKlDistillation(a, a, { reduction: 'batchmean' as 'mean' }), /reduction must be/],
    [() => inbatchKlDistillation(tf.ones([1, 4]), tf.ones([1, 4]), { includeDiagonal: false }), /at least 2 texts/],
    [() => clipInfoNce(a, b, tf.scalar(1)), /clipInfoNce: text must be \[3, 4\]/],
    [() => clipInfoNce(a, a, tf.ones([2])), /logScale must be a scalar/],
    [() => sigmoidPairLoss(a, a, tf.ones([2]), tf.scalar(0)), /must be scalars/],
    [() => positiveCosineLoss(a, b), /b must be \[3, 4\]/],
    [() => procLipDistillation(a, tf.ones([3, 5])), /teacher must be \[3, 4\]/],
    [() => procLipDistillation(a, a, { smoothL1Beta: 0 }), /smoothL1Beta must be positive/],
  ];
  for (const [f, re] of cases) {
    // tidy frees the argument tensors the closures build (tf.ones, tf.scalar) when the call throws.
    assert.throws(() => tf.tidy(() => void f()), (err: unknown) => err instanceof UnimeError && re.test(err.message), String(re));
  }
  assert.equal(tf.memory().numTensors, before);
  tf.dispose([a, b, v]);
});

test('learnable-parameter initialisers: CLIP 1/0.07, SigLIP t = 10 and b = -10', () => {
  const s = initClipLogScale('test.logit_scale');
  assert.ok(Math.abs(Math.exp(s.dataSync()[0]!) - 1 / 0.07) < 1e-4);
  const { logTemperature, bias } = initSigmoidPairParameters('test.siglip');
  assert.ok(Math.abs(Math.exp(logTemperature.dataSync()[0]!) - 10) < 1e-5);
  assert.equal(bias.dataSync()[0], -10);
  tf.dispose([s, logTemperature, bias]);
});

test('clipInfoNce: the scale is clamped at 100, so a larger log-scale gets no gradient', async () => {
  await useDevice('cpu');
  const img = tf.tensor2d([[1, 0.2], [0.1, 1], [0.5, 0.5]]);
  const txt = tf.tensor2d([[1, 0], [0, 1], [0.6, 0.4]]);
  const g = (ls: number) => tf.tidy(() => tf.grad((s: tf.Tensor) => clipInfoNce(img, txt, s) as tf.Scalar)(tf.scalar(ls)).dataSync()[0]!);
  assert.ok(g(Math.log(150)) === 0);
  assert.notEqual(g(Math.log(50)), 0);
  tf.dispose([img, txt]);
});
