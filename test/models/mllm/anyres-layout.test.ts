/**
 * LLaVA-NeXT / OneVision feature packing against the independent PyTorch reference of
 * tools/fixtures/make_anyres_fixtures.py (pack_image_features, unpad_image, OneVision's bilinear
 * anyres_max shrink), the processor token counts agreeing with the packed length over many sizes,
 * and gradients flowing to the tile features and image_newline.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { tf, type Tensor } from '../../../src/runtime/tf.js';
import { UnimeError } from '../../../src/errors.js';
import { LLAVA_NEXT_PINPOINTS, LLAVA_ONEVISION_PINPOINTS, numberOfImageTokens, type AnyresVariant, type Pinpoint } from '../../../src/images/anyres.js';
import { anyresMaxSize, bilinearMatrix, gridShape, packImageFeatures, unpadFeatures, unpadWindow } from '../../../src/models/mllm/anyres-layout.js';
import { fixture } from '../../helpers.js';

interface Reference {
  pinpoints: Record<string, Pinpoint[]>;
  packed: {
    variant: AnyresVariant;
    pinpoints: string;
    imageSize: number;
    side: number;
    dim: number;
    size: [number, number];
    grid: [number, number];
    features: string;
    newline: string;
    outShape: [number, number];
    out: string;
  }[];
  unpad: { shape: [number, number, number]; size: [number, number]; in: string; outShape: [number, number, number]; out: string }[];
}

const ref = JSON.parse(readFileSync(fixture('anyres', 'reference.json'), 'utf8')) as Reference;

function f32(b64: string): Float32Array {
  const buf = Buffer.from(b64, 'base64');
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

test('packImageFeatures matches pack_image_features (LLaVA-NeXT and OneVision, unpadding, anyres_max_9 bilinear shrink)', (t) => {
  assert.ok(ref.packed.length >= 15);
  let shrunk = 0;
  for (const c of ref.packed) {
    const pinpoints = ref.pinpoints[c.pinpoints]!;
    assert.deepEqual(gridShape(c.size, pinpoints, c.imageSize), c.grid);
    const n = c.side * c.side;
    const numTiles = c.grid[0] * c.grid[1];
    const feats = f32(c.features);
    const got = tf.tidy(() => {
      const all = tf.tensor3d(feats, [numTiles + 1, n, c.dim]);
      const base = tf.reshape(tf.slice(all, [0, 0, 0], [1, n, c.dim]), [n, c.dim]);
      const tiles = tf.slice(all, [1, 0, 0], [numTiles, n, c.dim]);
      return packImageFeatures(base, tiles, tf.tensor1d(f32(c.newline)), c.size, { variant: c.variant, pinpoints, imageSize: c.imageSize });
    });
    const label = `${c.variant} side ${c.side} ${c.size.join('x')}`;
    assert.deepEqual(got.shape, c.outShape, label);
    const err = maxAbsDiff(got.dataSync(), f32(c.out));
    got.dispose();
    assert.ok(err <= 1e-5, `${label}: max abs diff ${err}`);
    // the processor's count for this geometry is the packed length
    const tokens = numberOfImageTokens(c.size[0], c.size[1], {
      variant: c.variant,
      pinpoints,
      tileSize: c.imageSize,
      patchSize: c.imageSize / c.side,
      visionFeatureSelectStrategy: 'full',
      numAdditionalImageTokens: 0,
    });
    assert.equal(tokens, c.outShape[0], label);
    const base = c.grid[0] * c.grid[1] * n;
    if (c.variant === 'llava_onevision' && c.outShape[0] - n < base) shrunk++;
  }
  t.diagnostic(`${shrunk} OneVision cases went through the bilinear shrink`);
  assert.ok(shrunk >= 3);
});

test('unpadFeatures matches unpad_image on [C, H, W]', () => {
  for (const c of ref.unpad) {
    const out = tf.tidy(() => unpadFeatures(tf.tensor3d(f32(c.in), c.shape), c.size));
    assert.deepEqual(out.shape, c.outShape);
    assert.deepEqual(out.dataSync(), f32(c.out));
    out.dispose();
  }
  assert.deepEqual(unpadWindow(48, 48, [480, 640]), { top: 6, height: 36, left: 0, width: 48 });
  assert.deepEqual(unpadWindow(48, 48, [640, 480]), { top: 0, height: 48, left: 6, width: 36 });
});

test('numberOfImageTokens == packed length for many sizes (llava-v1.6 CLIP default, SigLIP full, OneVision anyres_max_9 and _4)', () => {
  const configs: { name: string; variant: AnyresVariant; pinpoints: readonly Pinpoint[]; tile: number; patch: number; strategy: 'default' | 'full'; extra: number; maxNum?: number }[] = [
    { name: 'llava-v1.6 clip-336', variant: 'llava_next', pinpoints: LLAVA_NEXT_PINPOINTS, tile: 336, patch: 14, strategy: 'default', extra: 1 },
    { name: 'llava-next siglip-384 full', variant: 'llava_next', pinpoints: LLAVA_NEXT_PINPOINTS.map(([h, w]) => [(h / 336) * 384, (w / 336) * 384] as const), tile: 384, patch: 16, strategy: 'full', extra: 0 },
    { name: 'onevision siglip-384', variant: 'llava_onevision', pinpoints: LLAVA_ONEVISION_PINPOINTS, tile: 384, patch: 14, strategy: 'full', extra: 0 },
    { name: 'onevision max 4', variant: 'llava_onevision', pinpoints: LLAVA_ONEVISION_PINPOINTS, tile: 384, patch: 14, strategy: 'full', extra: 0, maxNum: 4 },
  ];
  // deterministic spread of sizes: tiny, thin, huge, near-square, around the pinpoints
  const sizes: [number, number][] = [[1, 1], [1, 3000], [3000, 1], [2, 3], [335, 671], [336, 672], [337, 673], [1008, 336], [4032, 3024], [3024, 4032]];
  let s = 12345;
  const rnd = (): number => ((s = (s * 1103515245 + 12345) % 2 ** 31), s / 2 ** 31);
  while (sizes.length < 60) sizes.push([1 + Math.floor(rnd() ** 2 * 3000), 1 + Math.floor(rnd() ** 2 * 3000)]);
  for (const c of configs) {
    const side = Math.floor(c.tile / c.patch);
    const n = side * side;
    for (const [h, w] of sizes) {
      const [rows, cols] = gridShape([h, w], c.pinpoints, c.tile);
      const len = tf.tidy(() => {
        const packed = packImageFeatures(tf.zeros([n, 1]), tf.zeros([rows * cols, n, 1]), tf.zeros([1]), [h, w], {
          variant: c.variant,
          pinpoints: c.pinpoints,
          imageSize: c.tile,
          maxNumPatches: c.maxNum,
        });
        return packed.shape[0];
      });
      const tokens = numberOfImageTokens(h, w, {
        variant: c.variant,
        pinpoints: c.pinpoints,
        tileSize: c.tile,
        patchSize: c.patch,
        visionFeatureSelectStrategy: c.strategy,
        numAdditionalImageTokens: c.extra,
        maxNumPatches: c.maxNum,
      });
      assert.equal(tokens, len, `${c.name} ${h}x${w}`);
    }
  }
});

test('packing is differentiable: gradients reach the base, every kept tile feature and image_newline', () => {
  const side = 2;
  const d = 3;
  const pinpoints = LLAVA_ONEVISION_PINPOINTS.map(([h, w]) => [(h / 384) * 28, (w / 384) * 28] as const);
  for (const [variant, size] of [
    ['llava_next', [30, 80]],
    ['llava_onevision', [168, 168]], // 6x6 tiles -> 12x12 grid -> shrunk to 6x6
  ] as [AnyresVariant, [number, number]][]) {
    const [rows, cols] = gridShape(size, pinpoints, 28);
    const base = tf.randomNormal([side * side, d], 0, 1, 'float32', 1);
    const tiles = tf.randomNormal([rows * cols, side * side, d], 0, 1, 'float32', 2);
    const newline = tf.randomNormal([d], 0, 1, 'float32', 3);
    const opts = { variant, pinpoints, imageSize: 28 };
    const f = (b: Tensor, ti: Tensor, nl: Tensor): Tensor => tf.sum(packImageFeatures(b, ti, nl, size, opts));
    const [gb, gt, gn] = tf.grads(f)([base, tiles, newline]);
    const packed = packImageFeatures(base, tiles, newline, size, opts);
    const afterBase = packed.shape[0]! - side * side;
    // d sum / d base = 1 everywhere
    assert.ok(gb!.dataSync().every((v) => v === 1));
    // d sum / d newline = number of grid rows, per channel
    const gridRows = gn!.dataSync()[0]!;
    assert.ok(gn!.dataSync().every((v) => v === gridRows));
    assert.ok(gridRows >= 1);
    // tile gradients: the total equals the number of (non-newline) grid tokens times d
    const gridTokens = afterBase - gridRows;
    const total = tf.sum(gt!).dataSync()[0]!;
    assert.ok(Math.abs(total - gridTokens * d) < 1e-3, `${variant}: tile grad total ${total} vs ${gridTokens * d}`);
    // padding-only rows (LLaVA-NeXT unpad) get no gradient; something does
    assert.ok(gt!.dataSync().some((v) => v !== 0));
    if (variant === 'llava_next') assert.ok(gt!.dataSync().some((v) => v === 0));
    tf.dispose([base, tiles, newline, gb!, gt!, gn!, packed]);
  }
});

test('PyTorch bilinear weights: rows sum to 1, integer ratio averages pairs, anyres_max sizes', () => {
  const m = bilinearMatrix(12, 6);
  for (let i = 0; i < 6; i++) {
    let sum = 0;
    for (let j = 0; j < 12; j++) sum += m[i * 12 + j]!;
    assert.ok(Math.abs(sum - 1) < 1e-6);
    assert.equal(m[i * 12 + 2 * i], 0.5);
    assert.equal(m[i * 12 + 2 * i + 1], 0.5);
  }
  assert.equal(anyresMaxSize(10, 10, 5, 9), null);
  assert.deepEqual(anyresMaxSize(30, 30, 5, 9), [15, 15]);
});

test('packImageFeatures refuses features that do not fit the grid', () => {
  const opts = { variant: 'llava_next' as const, pinpoints: LLAVA_NEXT_PINPOINTS, imageSize: 336 };
  tf.tidy(() => {
    assert.throws(() => packImageFeatures(tf.zeros([5, 2]), tf.zeros([4, 5, 2]), tf.zeros([2]), [480, 640], opts), /not a square grid/);
    assert.throws(() => packImageFeatures(tf.zeros([4, 2]), tf.zeros([3, 4, 2]), tf.zeros([2]), [480, 640], opts), UnimeError);
    assert.throws(() => packImageFeatures(tf.zeros([4, 2]), tf.zeros([4, 4, 3]), tf.zeros([2]), [480, 640], opts), UnimeError);
    // no tiles: transformers' single-patch branch, base then one newline
    const one = packImageFeatures(tf.ones([4, 2]), tf.zeros([0, 4, 2]), tf.fill([2], 7), [480, 640], opts);
    assert.deepEqual(one.shape, [5, 2]);
    assert.deepEqual(Array.from(one.dataSync().slice(8)), [7, 7]);
  });
});
