/**
 * LLaVA-NeXT / OneVision anyres preprocessing and token counts against the independent reference of
 * tools/fixtures/make_anyres_fixtures.py (transformers' math in numpy / PIL): best resolutions and
 * token counts exactly, pixel values within 1e-5.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { UnimeError } from '../../src/errors.js';
import {
  anyresNumPatches,
  anyresPatches,
  anyresPixelArray,
  anyresPixelValues,
  ImageProcessorConfigError,
  LLAVA_NEXT_PINPOINTS,
  LLAVA_ONEVISION_PINPOINTS,
  numberOfImageTokens,
  parseAnyresProcessorConfig,
  parseVisionAspectRatio,
  pyFloorDiv,
  selectBestResolution,
  truncRound7,
  type AnyresTokenConfig,
  type Pinpoint,
  type RgbImage,
} from '../../src/images/index.js';
import { fixture } from '../helpers.js';

interface Reference {
  pinpoints: Record<string, Pinpoint[]>;
  best_resolution: { pinpoints: string; size: [number, number]; best: [number, number] }[];
  token_configs: Record<string, AnyresTokenConfig>;
  token_counts: { config: string; size: [number, number]; tokens: number }[];
  processors: Record<string, Record<string, unknown>>;
  images: Record<string, { height: number; width: number; rgb: string }>;
  pixels: { processor: string; image: string; best: [number, number]; shape: [number, number, number, number]; values: string }[];
}

const ref = JSON.parse(readFileSync(fixture('anyres', 'reference.json'), 'utf8')) as Reference;

function f32(b64: string): Float32Array {
  const buf = Buffer.from(b64, 'base64');
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
}

function image(name: string): RgbImage {
  const im = ref.images[name]!;
  return { width: im.width, height: im.height, data: new Uint8Array(Buffer.from(im.rgb, 'base64')) };
}

test('selectBestResolution picks the pinpoint transformers picks (llava-v1.6, OneVision, scaled lists; wide, tall, tiny)', () => {
  assert.ok(ref.best_resolution.length > 100);
  for (const c of ref.best_resolution) {
    assert.deepEqual(selectBestResolution(c.size[0], c.size[1], ref.pinpoints[c.pinpoints]!), c.best, `${c.pinpoints} ${c.size.join('x')}`);
  }
  // the defaults are transformers' defaults
  assert.deepEqual(ref.pinpoints['llava-v1.6'], LLAVA_NEXT_PINPOINTS.map((p) => [...p]));
  assert.deepEqual(ref.pinpoints['onevision'], LLAVA_ONEVISION_PINPOINTS.map((p) => [...p]));
});

test('numberOfImageTokens equals the processors\' _get_number_of_features for every size and config', () => {
  assert.ok(ref.token_counts.length > 100);
  for (const c of ref.token_counts) {
    const cfg = ref.token_configs[c.config]!;
    assert.equal(numberOfImageTokens(c.size[0], c.size[1], cfg), c.tokens, `${c.config} ${c.size.join('x')}`);
  }
  const clip = ref.token_configs['llava-v1.6-clip']!;
  // worked by hand: 480x640 on llava-v1.6 takes the 672x672 canvas (2x2 tiles, a 48x48 grid), the
  // image fills 36 of its 48 rows: 36 * 48 + 36 newlines + 576 base
  assert.equal(numberOfImageTokens(480, 640, clip), 36 * 48 + 36 + 576);
  assert.equal(numberOfImageTokens(336, 336, { ...clip, pinpoints: [[336, 336]] }), 576 + 24 * 25);
});

test('anyres pixel values match transformers\' processors within 1e-5 (base first, zero-padded canvas, size != crop, OneVision defaults)', () => {
  assert.ok(ref.pixels.length >= 10);
  for (const c of ref.pixels) {
    const cfg = parseAnyresProcessorConfig(ref.processors[c.processor]);
    const im = image(c.image);
    assert.deepEqual(selectBestResolution(im.height, im.width, cfg.pinpoints), c.best);
    const a = anyresPixelArray(im, cfg);
    assert.deepEqual([a.numPatches, 3, a.height, a.width], c.shape, `${c.processor} ${c.image}`);
    assert.equal(anyresNumPatches(im.height, im.width, cfg.pinpoints, cfg.tileSize), c.shape[0]);
    assert.deepEqual(a.imageSize, [im.height, im.width]);
    const want = f32(c.values);
    assert.equal(a.data.length, want.length);
    let max = 0;
    for (let i = 0; i < want.length; i++) max = Math.max(max, Math.abs(a.data[i]! - want[i]!));
    assert.ok(max <= 1e-5, `${c.processor} ${c.image}: max abs diff ${max}`);
  }
});

test('anyresPixelValues is a [patches, 3, H, W] tensor of the same values', () => {
  const c = ref.pixels[0]!;
  const cfg = parseAnyresProcessorConfig(ref.processors[c.processor]);
  const t = anyresPixelValues(image(c.image), cfg);
  try {
    assert.deepEqual(t.shape, c.shape);
    assert.deepEqual(t.dataSync(), anyresPixelArray(image(c.image), cfg).data);
  } finally {
    t.dispose();
  }
});

test('padding is black in 8-bit space: padded pixels normalise to -mean/std', () => {
  const cfg = parseAnyresProcessorConfig({ image_processor_type: 'LlavaNextImageProcessor', size: { shortest_edge: 4 }, crop_size: 4, image_grid_pinpoints: [[4, 8]] });
  const white: RgbImage = { width: 8, height: 2, data: new Uint8Array(8 * 2 * 3).fill(255) };
  const patches = anyresPatches(white, cfg);
  assert.equal(patches.length, 3); // base + 1x2 tiles
  // the 2x8 image fits 4x8 exactly in width: one black row above, one below
  for (const tile of patches.slice(1)) {
    for (let x = 0; x < 4; x++) {
      assert.equal(tile.data[x * 3], 0);
      assert.equal(tile.data[(3 * 4 + x) * 3], 0);
      assert.equal(tile.data[(1 * 4 + x) * 3], 255);
    }
  }
  const px = anyresPixelArray(white, cfg);
  const mean = [0.48145466, 0.4578275, 0.40821073];
  const std = [0.26862954, 0.26130258, 0.27577711];
  for (let ch = 0; ch < 3; ch++) {
    const v = px.data[1 * 48 + ch * 16 + 0]!; // tile 1, channel ch, pixel (0, 0)
    assert.ok(Math.abs(v - -mean[ch]! / std[ch]!) < 1e-5);
  }
});

test('parseAnyresProcessorConfig fills in each class\'s defaults and refuses other processors', () => {
  const next = parseAnyresProcessorConfig({ image_processor_type: 'LlavaNextImageProcessor' });
  assert.equal(next.variant, 'llava_next');
  assert.deepEqual(next.pinpoints, LLAVA_NEXT_PINPOINTS);
  assert.equal(next.tileSize, 224);
  assert.deepEqual(next.baseSize, [224, 224]);
  assert.equal(next.tile.resample, 'bicubic');
  assert.equal(next.doPad, true);
  const ov = parseAnyresProcessorConfig({ image_processor_type: 'LlavaOnevisionImageProcessor', do_pad: false });
  assert.equal(ov.variant, 'llava_onevision');
  assert.equal(ov.tileSize, 384);
  assert.deepEqual(ov.baseSize, [384, 384]);
  assert.equal(ov.pinpoints.length, 36);
  assert.equal(ov.tile.resample, 'bicubic');
  assert.equal(ov.tile.centerCrop, null);
  assert.deepEqual(ov.tile.normalize?.mean, [0.48145466, 0.4578275, 0.40821073]);
  assert.equal(ov.doPad, false);
  // llava-v1.6 style config
  const v16 = parseAnyresProcessorConfig({
    image_processor_type: 'LlavaNextImageProcessor',
    size: { shortest_edge: 336 },
    crop_size: { height: 336, width: 336 },
    image_grid_pinpoints: [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]],
  });
  assert.equal(v16.tileSize, 336);
  assert.deepEqual(v16.baseSize, [336, 336]);
  assert.throws(() => parseAnyresProcessorConfig({ image_processor_type: 'CLIPImageProcessor' }), ImageProcessorConfigError);
  assert.throws(() => parseAnyresProcessorConfig({ image_processor_type: 'LlavaNextImageProcessor', image_grid_pinpoints: [[336]] }), /image_grid_pinpoints|pairs/);
  assert.throws(() => parseAnyresProcessorConfig({ image_processor_type: 'LlavaNextImageProcessor', do_pad: 'yes' }), ImageProcessorConfigError);
});

test('Python arithmetic helpers: int(round(x, 7)) and float floor division', () => {
  assert.equal(truncRound7(23.99999999999), 24);
  assert.equal(truncRound7(23.9999), 23);
  assert.equal(truncRound7(0.5), 0);
  // 1 // 0.1 is 9.0 in Python (0.1 is slightly above a tenth), while 1 / 0.1 rounds to 10
  assert.equal(pyFloorDiv(1, 0.1), 9);
  assert.equal(pyFloorDiv(7, 2), 3);
  assert.equal(pyFloorDiv(12, 1.5), 8);
  assert.equal(parseVisionAspectRatio('anyres_max_9'), 9);
  assert.throws(() => parseVisionAspectRatio('anyres'), UnimeError);
});

test('bad sizes and pinpoints smaller than a tile are refused with a clear error', () => {
  assert.throws(() => selectBestResolution(0, 10, LLAVA_NEXT_PINPOINTS), UnimeError);
  assert.throws(() => selectBestResolution(10, 10, []), UnimeError);
  assert.throws(
    () => numberOfImageTokens(100, 100, { variant: 'llava_next', pinpoints: [[336, 336]], tileSize: 384, patchSize: 14, visionFeatureSelectStrategy: 'default' }),
    /smaller than a 384-pixel tile/,
  );
});
