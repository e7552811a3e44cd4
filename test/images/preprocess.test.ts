/**
 * Decoding and the Hugging Face processors' math against PIL (tools/fixtures/make_vision_fixtures.py):
 * decoded RGB, Pillow's resize filters bit for bit, and CLIP / SigLIP pixel values within 1e-5.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { tf } from '../../src/runtime/tf.js';
import { NotImplementedYetError } from '../../src/errors.js';
import {
  decodeImage,
  ImageDecodeError,
  ImageProcessorConfigError,
  parseImageProcessorConfig,
  PIL_RESAMPLE,
  pixelValues,
  preprocessImage,
  readImageProcessorConfig,
  resizeImage,
  shortestEdgeSize,
  type RgbImage,
} from '../../src/images/index.js';
import { imageFixture, maxAbsDiff, readImagesReference } from './fixtures.js';

const ref = readImagesReference();
const decoded = new Map<string, RgbImage>();

async function image(name: string): Promise<RgbImage> {
  let im = decoded.get(name);
  if (!im) {
    im = await decodeImage(imageFixture(name));
    decoded.set(name, im);
  }
  return im;
}

test('decodes PNG (RGB, RGBA, grey), WebP and JPEG into the RGB that PIL convert("RGB") gives', async (t) => {
  for (const [name, want] of Object.entries(ref.decoded)) {
    const im = await image(name);
    assert.equal(im.width, want.width, name);
    assert.equal(im.height, want.height, name);
    assert.equal(im.data.length, want.width * want.height * 3);
    const err = maxAbsDiff(im.data, want.rgb);
    t.diagnostic(`${name} (${want.mode}): max abs diff vs PIL ${err}`);
    // lossless formats must be identical; JPEG decoders may differ by rounding in the IDCT
    if (name.endsWith('.jpg')) assert.ok(err <= 2, `${name}: off by ${err}`);
    else assert.equal(err, 0, name);
  }
  // bytes (a parquet image column) decode the same as the file
  const bytes = readFileSync(imageFixture('odd-rgb.png'));
  const fromBytes = await decodeImage(new Uint8Array(bytes));
  assert.deepEqual(fromBytes.data, (await image('odd-rgb.png')).data);
});

test("Pillow's resize filters are reproduced exactly (bicubic, bilinear, lanczos, box, hamming; up and down)", async () => {
  for (const c of ref.resized) {
    const src = c.image.endsWith('.jpg') ? { ...(await image(c.image)), data: Uint8Array.from(ref.decoded[c.image]!.rgb) } : await image(c.image);
    const filter = PIL_RESAMPLE[c.resample]!;
    assert.notEqual(filter, 'nearest');
    const out = resizeImage(src, c.width, c.height, filter as Exclude<typeof filter, 'nearest'>);
    assert.equal(out.width, c.width);
    assert.equal(out.height, c.height);
    assert.equal(maxAbsDiff(out.data, c.rgb), 0, `${c.image} -> ${c.width}x${c.height} with ${filter}`);
  }
  assert.throws(() => resizeImage({ width: 2, height: 2, data: new Uint8Array(12) }, 0, 3, 'bicubic'), /positive integers/);
});

test('CLIP and SigLIP processors match the transformers math on PIL within 1e-5', async (t) => {
  let worst = 0;
  for (const p of ref.processed) {
    const cfg = await readImageProcessorConfig(imageFixture(`preprocessor-${p.processor}.json`));
    // JPEG decoding is compared above; here every processor sees PIL's decoded pixels
    const src = p.image.endsWith('.jpg') ? { ...(await image(p.image)), data: Uint8Array.from(ref.decoded[p.image]!.rgb) } : await image(p.image);
    const out = preprocessImage(src, cfg);
    assert.deepEqual([3, out.height, out.width], p.shape, `${p.processor} ${p.image}`);
    const err = maxAbsDiff(out.data, p.values);
    worst = Math.max(worst, err);
    assert.ok(err < 1e-5, `${p.processor} ${p.image}: off by ${err}`);
  }
  t.diagnostic(`max abs err over ${ref.processed.length} processed images: ${worst.toExponential(2)} (PIL ${ref.pil_version})`);
});

test('pixelValues batches images as [batch, 3, H, W] and leaks nothing', async () => {
  const cfg = await readImageProcessorConfig(imageFixture('preprocessor-clip-bicubic.json'));
  const before = tf.memory().numTensors;
  const px = pixelValues([await image('odd-rgb.png'), await image('gray.png')], cfg);
  assert.deepEqual(px.shape, [2, 3, 16, 16]);
  const want = ref.processed.find((p) => p.processor === 'clip-bicubic' && p.image === 'gray.png')!;
  assert.ok(maxAbsDiff(px.dataSync().subarray(3 * 256), want.values) < 1e-5);
  px.dispose();
  assert.equal(tf.memory().numTensors, before);
  const noCrop = parseImageProcessorConfig({ image_processor_type: 'CLIPImageProcessor', size: 8, do_center_crop: false });
  const mixed = [await image('odd-rgb.png'), await image('odd-rgba.png')];
  assert.throws(() => pixelValues(mixed, noCrop), /a batch needs one size/);
});

test('processor configs: transformers defaults, int sizes, and clear errors', () => {
  const clip = parseImageProcessorConfig({ image_processor_type: 'CLIPImageProcessor' });
  assert.deepEqual(clip.resize, { shortestEdge: 224 });
  assert.deepEqual(clip.centerCrop, { height: 224, width: 224 });
  assert.equal(clip.resample, 'bicubic');
  assert.ok(Math.abs(clip.rescaleFactor! - 1 / 255) < 1e-12);
  assert.deepEqual(clip.normalize!.mean, [0.48145466, 0.4578275, 0.40821073]);
  const siglip = parseImageProcessorConfig({ image_processor_type: 'SiglipImageProcessor', size: 384 });
  assert.deepEqual(siglip.resize, { height: 384, width: 384 });
  assert.equal(siglip.resample, 'bilinear');
  assert.equal(siglip.centerCrop, null);
  assert.deepEqual(siglip.normalize, { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] });
  // openai/clip-vit-large-patch14-336 (the tower of LLaVA-1.6 and Phi-3.5-V) still says feature_extractor_type
  const openai = parseImageProcessorConfig({ crop_size: 336, do_center_crop: true, do_normalize: true, do_resize: true, feature_extractor_type: 'CLIPFeatureExtractor', resample: 3, size: 336 });
  assert.equal(openai.type, 'CLIPImageProcessor');
  assert.deepEqual([openai.resize, openai.centerCrop], [{ shortestEdge: 336 }, { height: 336, width: 336 }]);
  assert.deepEqual(shortestEdgeSize(480, 640, 336), [336, 448]);
  assert.deepEqual(shortestEdgeSize(641, 480, 336), [448, 336]);
  assert.throws(
    () => parseImageProcessorConfig({ image_processor_type: 'LlavaNextImageProcessor' }, 'pp.json'),
    (e: unknown) => e instanceof ImageProcessorConfigError && !(e instanceof NotImplementedYetError) && /pp\.json: image_processor_type: LlavaNextImageProcessor tiles each image \(anyres\)/.test(e.message) && /readAnyresProcessorConfig/.test(e.fix ?? ''),
  );
  assert.throws(() => parseImageProcessorConfig({ image_processor_type: 'CLIPImageProcessor', resample: 0 }, 'pp.json'), /pp\.json: resample: must be a PIL resampling filter code/);
  assert.throws(() => parseImageProcessorConfig({ image_processor_type: 'CLIPImageProcessor', image_mean: [0.5] }, 'pp.json'), /image_mean: must be a number or a list of 3 numbers/);
  assert.throws(() => parseImageProcessorConfig({ image_processor_type: 'SiglipImageProcessor', size: { longest_edge: 3 } }), /size: must be/);
});

test('an unreadable image fails with an error naming the file', async () => {
  const bad = imageFixture('not-an-image.png');
  await assert.rejects(decodeImage(bad), (e: unknown) => e instanceof ImageDecodeError && e.file === bad && e.message.startsWith(`${bad}: not a readable image`));
  await assert.rejects(decodeImage(imageFixture('missing.png')), (e: unknown) => e instanceof ImageDecodeError && /missing\.png: image file not found/.test(e.message));
  await assert.rejects(decodeImage(new Uint8Array([1, 2, 3]), { label: 'row 7 of train.parquet' }), /row 7 of train\.parquet: not a readable image/);
  // truncated PNG
  const png = readFileSync(imageFixture('odd-rgb.png'));
  await assert.rejects(decodeImage(new Uint8Array(png.subarray(0, 200)), { label: 'cut.png' }), /cut\.png: not a readable image/);
});
