/**
 * The native rotary embedding (one kernel forward, its transpose backward) against the tfjs-op form
 * it replaces (slices, negation, concat, broadcast products; transformers' apply_rotary_pos_emb), on
 * the cpu backend: full and partial rotary, odd sizes, values and gradients.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf, type Tensor } from '../../src/runtime/tf.js';
import { rope, ropeReference } from '../../src/runtime/native/ops.js';
import { ropeTables } from '../../src/models/text/rope.js';
import { Rng } from '../../src/runtime/rng.js';
import { assertClose, on, randn, skipNative, tensor } from './conformance.js';

const opts = { skip: skipNative };

test('rope matches the tfjs-op reference: values and the gradient w.r.t. x (full and partial rotary)', opts, async () => {
  const rng = new Rng('native-rope');
  for (let i = 0; i < 30; i++) {
    const b = 1 + rng.int(3), h = 1 + rng.int(4), s = 1 + rng.int(9);
    const d = 2 * (1 + rng.int(12));
    const rot = rng.uniform() < 0.5 ? d : 2 * (1 + rng.int(d / 2));
    const positions = Int32Array.from({ length: b * s }, (_, k) => (k % s) + rng.int(3));
    const x = randn(rng, [b, h, s, d]);
    const w = randn(rng, [b, h, s, d]);
    const run = (op: typeof rope) => () => {
      const full = ropeTables({ kind: 'default', theta: 10000, rotaryDim: rot, maxPositionEmbeddings: 4096 }, positions, b, s);
      const xs = tensor(x);
      const f = (t: Tensor) => tf.sum(tf.mul(op(t, full.cos, full.sin), tensor(w)));
      const { value, grad } = tf.valueAndGrad(f)(xs);
      return [op(xs, full.cos, full.sin), value, grad];
    };
    // Native vs the reference on the cpu backend (where rope() itself is the reference).
    assertClose(await on('native', run(rope)), await on('cpu', run(ropeReference)), `rope b${b} h${h} s${s} d${d} rot${rot}`, 1e-6, 1e-5);
  }
});

test('rope falls back to the tfjs ops for tables that do not fit (and agrees with them)', opts, async () => {
  const rng = new Rng('native-rope-fallback');
  const x = randn(rng, [2, 3, 4, 8]);
  const c = randn(rng, [1, 1, 4, 8]); // batch 1 tables for batch 2: broadcast, not the kernel's layout
  const sn = randn(rng, [1, 1, 4, 8]);
  const f = (op: typeof rope) => () => op(tensor(x), tensor(c), tensor(sn));
  assertClose(await on('native', f(rope)), await on('cpu', f(ropeReference)), 'rope with broadcast tables', 0, 0);
  const d = await on('native', f(rope));
  assert.equal(d[0]!.shape.join(','), '2,3,4,8');
});

test('rope keeps its tables for the backward pass: disposing them after the forward (as the decoder does) is safe', opts, async () => {
  const rng = new Rng('native-rope-dispose');
  const x = randn(rng, [2, 2, 5, 8]);
  const positions = Int32Array.from({ length: 10 }, (_, k) => k % 5);
  const run = (op: typeof rope) => () => {
    const f = (t: Tensor) => {
      const { cos, sin } = ropeTables({ kind: 'default', theta: 10000, rotaryDim: 8, maxPositionEmbeddings: 64 }, positions, 2, 5);
      const y = op(t, cos, sin);
      cos.dispose();
      sin.dispose();
      return tf.sum(tf.square(y));
    };
    return [tf.grad(f)(tensor(x))];
  };
  assertClose(await on('native', run(rope)), await on('cpu', run(ropeReference)), 'rope gradient after the tables were disposed', 1e-6, 1e-5);
});
