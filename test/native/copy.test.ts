/**
 * The native Slice, PadV2 and SplitV kernels (contiguous-run copies instead of tfjs cpu's per-element
 * walk) against the JS reference: random ranks and shapes with odd sizes, size-1 and empty dims,
 * every axis, and the gradients they serve (slice -> pad, concat -> split).
 */
import { test } from 'node:test';
import { tf } from '../../src/runtime/tf.js';
import { Rng } from '../../src/runtime/rng.js';
import { assertClose, on, randn, skipNative, tensor } from './conformance.js';

const opts = { skip: skipNative };

function randomShape(rng: Rng, maxRank = 5): number[] {
  const rank = 1 + rng.int(maxRank);
  return Array.from({ length: rank }, () => 1 + rng.int(7));
}

test('slice matches the JS reference on random shapes, begins and sizes (contiguous and strided)', opts, async () => {
  const rng = new Rng('native-slice');
  for (let i = 0; i < 80; i++) {
    const shape = randomShape(rng);
    const begin = shape.map((d) => rng.int(d));
    const size = shape.map((d, k) => (rng.uniform() < 0.2 ? -1 : rng.int(d - begin[k]! + 1)));
    const x = randn(rng, shape);
    const f = () => tf.slice(tensor(x), begin, size);
    assertClose(await on('native', f), await on('cpu', f), `slice ${shape} begin ${begin} size ${size}`, 0, 0);
  }
});

test('pad matches the JS reference, with constant values and zero-width sides', opts, async () => {
  const rng = new Rng('native-pad');
  for (let i = 0; i < 60; i++) {
    const shape = randomShape(rng, 4);
    const paddings = shape.map(() => [rng.int(3), rng.int(3)] as [number, number]);
    const value = rng.uniform() < 0.5 ? 0 : rng.normal();
    const x = randn(rng, shape);
    const f = () => tf.pad(tensor(x), paddings, value);
    assertClose(await on('native', f), await on('cpu', f), `pad ${shape} ${JSON.stringify(paddings)} value ${value}`, 0, 0);
  }
});

test('split, and the gradients of slice (pad) and concat (split), match the JS reference', opts, async () => {
  const rng = new Rng('native-split');
  for (let i = 0; i < 40; i++) {
    const shape = randomShape(rng, 4);
    const axis = rng.int(shape.length);
    const d = shape[axis]!;
    const cut = rng.int(d + 1);
    const sizes = [cut, d - cut];
    const x = randn(rng, shape);
    const f = () => tf.split(tensor(x), sizes, axis);
    assertClose(await on('native', f), await on('cpu', f), `split ${shape} axis ${axis} sizes ${sizes}`, 0, 0);

    const begin = shape.map((n) => rng.int(n));
    const size = shape.map((n, k) => 1 + rng.int(n - begin[k]!));
    const w = randn(rng, size);
    const gs = () => tf.grad((t) => tf.sum(tf.mul(tf.slice(t, begin, size), tensor(w))))(tensor(x));
    assertClose(await on('native', gs), await on('cpu', gs), `slice grad ${shape} begin ${begin} size ${size}`, 0, 0);

    const y = randn(rng, shape);
    const both = [...shape];
    both[axis] = 2 * d;
    const wc = randn(rng, both);
    const gc = () => tf.grads((a, b) => tf.sum(tf.mul(tf.concat([a, b], axis), tensor(wc))))([tensor(x), tensor(y)]);
    assertClose(await on('native', gc), await on('cpu', gc), `concat grad ${shape} axis ${axis}`, 0, 0);
  }
});
