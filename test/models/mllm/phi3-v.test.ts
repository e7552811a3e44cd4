/**
 * The Phi-3.5-V assembly against the independent PyTorch reference (float64) of
 * tools/fixtures/make_phi3v_fixtures.py: HD-transform pixels, Phi3VProcessor ids (-1 at the image
 * positions, BOS before every chunk), single and left-padded batched embeddings; the token count of
 * prepare() against the packed feature length for many aspect ratios and crop budgets; config errors.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { tf, type Tensor } from '../../../src/runtime/tf.js';
import { decodeImage, type RgbImage } from '../../../src/images/decode.js';
import { hdImageTokens, hdLayout } from '../../../src/images/hd-transform.js';
import { loadMultimodalModel, loadPhi3V, Phi3VModel, type Phi3VPreparedInput } from '../../../src/models/mllm/index.js';
import { ModelConfigError } from '../../../src/models/text/config.js';
import { applyLora } from '../../../src/models/peft/index.js';
import { readImageProcessorConfig } from '../../../src/images/processor.js';
import { UnimeError } from '../../../src/errors.js';
import { fixture, tempDir } from '../../helpers.js';
import { maxAbsDiff } from '../fixtures.js';
import { runCli } from '../../cli/run-cli.js';

interface Phi3VReference {
  torch_version: string;
  hidden_size: number;
  num_crops: number;
  cases: { text: string; image: string | null }[];
  batch: number[];
  images: Record<string, { rows: number; cols: number; image_tokens: number; shape: number[]; pixel_values: number[] }>;
  ids: number[][];
  embeddings: number[][];
  batch_embeddings: number[];
}

const TOL = 1e-4;
const ref = JSON.parse(readFileSync(fixture('phi3-v', 'reference.json'), 'utf8')) as Phi3VReference;
const modelDir = fixture('phi3-v', 'phi3-v-tiny');
const images = new Map<string, RgbImage>();

async function image(name: string | null): Promise<RgbImage | null> {
  if (name === null) return null;
  if (!images.has(name)) images.set(name, await decodeImage(fixture('phi3-v', 'images', name)));
  return images.get(name)!;
}

function rowsDiff(got: Tensor, want: number[]): number {
  const d = maxAbsDiff(got, want);
  got.dispose();
  return d;
}

/** A synthetic image of any size (deterministic pattern). */
function pattern(width: number, height: number): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const o = (y * width + x) * 3;
      data[o] = (x * 13 + y * 7) % 256;
      data[o + 1] = (x * y) % 256;
      data[o + 2] = ((x >> 2) + (y >> 2)) % 2 ? 230 : 30;
    }
  return { width, height, data };
}

test('phi3-v-tiny: pixels, ids and embeddings match the PyTorch reference', async (t) => {
  const model = await loadMultimodalModel(modelDir);
  try {
    assert.ok(model instanceof Phi3VModel);
    assert.equal(model.modelType, 'phi3_v');
    assert.equal(model.imageMarker, '<|image_1|>');
    assert.equal(model.imageSize, 16);
    assert.equal(model.mergedSide, 2);
    assert.equal(model.processor.numCrops, ref.num_crops);
    assert.equal(model.dim, ref.hidden_size);
    assert.equal(model.decoder.config.modelType, 'phi3');
    assert.equal(model.vision.source.prefix, 'model.vision_embed_tokens.img_processor.vision_model.');
    const prepared: Phi3VPreparedInput[] = [];
    for (const c of ref.cases) prepared.push(model.prepare(c.text, await image(c.image)));
    let pixelErr = 0;
    prepared.forEach((p, i) => {
      const c = ref.cases[i]!;
      assert.deepEqual(p.ids, ref.ids[i], `ids of case ${i} (${JSON.stringify(c.text)})`);
      assert.equal(p.truncated, false);
      if (c.image === null) {
        assert.equal(p.pixels, null);
        return;
      }
      const want = ref.images[c.image]!;
      assert.deepEqual(p.crops, { rows: want.rows, cols: want.cols }, `crop grid of ${c.image}`);
      assert.equal(p.ids.filter((x) => x < 0).length, want.image_tokens);
      pixelErr = Math.max(pixelErr, maxAbsDiff(p.pixels!, want.pixel_values));
    });
    const before = tf.memory().numTensors;
    const single = prepared.map((p, i) => rowsDiff(model.embed([p]), ref.embeddings[i]!));
    const batch = rowsDiff(
      model.embed(ref.batch.map((i) => prepared[i]!)),
      ref.batch_embeddings,
    );
    assert.equal(tf.memory().numTensors, before, 'embed leaks no tensors');
    const worst = Math.max(...single, batch);
    const line = `max abs diff embeddings single ${single.map((e) => e.toExponential(1)).join('/')} batch ${batch.toExponential(1)}, pixels ${pixelErr.toExponential(1)} (torch ${ref.torch_version})`;
    t.diagnostic(line);
    assert.ok(pixelErr < 1e-5, line);
    assert.ok(worst < TOL, line);
  } finally {
    model.dispose();
  }
});

test('HD layout: the reference sizes for Phi-3.5-V (336) crops and the num_img_tokens formula', () => {
  // a 1000 x 600 photo with 16 crops: scale 5 (5 * ceil(5 / 1.67) = 15 <= 16, 6 * 4 = 24 > 16), 1680 x 1008
  const wide = hdLayout(1000, 600, 16, 336);
  assert.deepEqual(wide, { transposed: false, resizedWidth: 1680, resizedHeight: 1008, paddedWidth: 1680, paddedHeight: 1008, rows: 3, cols: 5 });
  assert.equal(hdImageTokens(wide.rows, wide.cols, 12), (15 + 1) * 144 + 1 + 4 * 12);
  // the same photo standing up: transposed, padded along the width
  const tall = hdLayout(600, 1000, 16, 336);
  assert.deepEqual([tall.transposed, tall.rows, tall.cols, tall.paddedWidth, tall.paddedHeight], [true, 5, 3, 1008, 1680]);
  // 4 crops (UniME / VLM2Vec): a square image is 2 x 2 crops, 757 tokens
  const sq = hdLayout(500, 500, 4, 336);
  assert.deepEqual([sq.rows, sq.cols], [2, 2]);
  assert.equal(hdImageTokens(2, 2, 12), 757);
  // 1000 x 300 with 4 crops: scale 3 (4 * ceil(4 / 3.33) = 8 > 4), 1008 x 302, padded to 336 (17 rows above, 17 below)
  const strip = hdLayout(1000, 300, 4, 336);
  assert.deepEqual([strip.resizedWidth, strip.resizedHeight, strip.paddedHeight, strip.rows, strip.cols], [1008, 302, 336, 1, 3]);
});

test('prepare() token count equals the packed image-feature length, for many aspect ratios and crop budgets', async () => {
  const sizes: [number, number][] = [
    [16, 16], [23, 19], [19, 23], [40, 9], [9, 40], [64, 16], [3, 40], [31, 30], [100, 99], [7, 5],
  ];
  for (const numCrops of [1, 4, 9]) {
    const model = await loadPhi3V(modelDir, { numCrops });
    try {
      const prepared = sizes.map(([w, h]) => model.prepare('<|image_1|> describe', pattern(w, h)));
      const before = tf.memory().numTensors;
      for (const [i, p] of prepared.entries()) {
        const n = p.ids.filter((x) => x < 0).length;
        const { rows, cols } = p.crops!;
        assert.ok(rows * cols <= numCrops, `${sizes[i]}: ${rows}x${cols} crops exceed num_crops ${numCrops}`);
        assert.equal(p.pixels!.length, (1 + rows * cols) * 3 * 16 * 16);
        const feats = model.imageFeatures([p]);
        assert.deepEqual(feats.shape, [n, model.dim], `${sizes[i]} with num_crops ${numCrops}: ${rows}x${cols}`);
        feats.dispose();
      }
      // packed for a batch: the sum, in order
      const all = model.imageFeatures(prepared);
      assert.equal(all.shape[0], prepared.reduce((s, p) => s + p.ids.filter((x) => x < 0).length, 0));
      all.dispose();
      assert.equal(tf.memory().numTensors, before, 'imageFeatures leaks no tensors');
      if (numCrops === 1) {
        // where the reference's resize would fail (0 pixels across), a clear error instead
        assert.throws(() => model.prepare('x', pattern(2, 100)), (e: Error) => e instanceof UnimeError && /too elongated/.test(e.message));
      }
    } finally {
      model.dispose();
    }
  }
});

test('max_length cuts text-only inputs; inputs with an image are not cut (as Phi3VProcessor); markers and images must match', async () => {
  const model = await loadPhi3V(modelDir);
  const img = (await image('wide.png'))!;
  try {
    const long = 'a long caption that goes on and on about the picture';
    const full = model.prepare(`<|image_1|> ${long}`, img);
    const n = full.ids.filter((x) => x < 0).length;
    const withImage = model.prepare(`<|image_1|> ${long}`, img, { maxLength: n - 5 });
    assert.deepEqual(withImage.ids, full.ids);
    assert.equal(withImage.truncated, false);
    const text = model.prepare(long, null, { maxLength: 6 });
    assert.equal(text.truncated, true);
    assert.deepEqual(text.ids, model.prepare(long, null).ids.slice(0, 6));
    assert.throws(() => model.prepare('<|image_1|> caption', null), /image marker but no image/);
    assert.throws(() => model.prepare('<|image_1|> and <image>', img), /2 image markers/);
    const firstImage = full.ids.indexOf(-1);
    const bad: Phi3VPreparedInput = { ...full, ids: full.ids.filter((_, i) => i !== firstImage) };
    assert.throws(() => model.embed([bad]), /image positions/);
  } finally {
    model.dispose();
  }
});

test('a bad phi3_v config field is refused naming the file, the field and the fix', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    for (const f of await fsp.readdir(modelDir)) await fsp.copyFile(path.join(modelDir, f), path.join(dir, f));
    const cfg = JSON.parse(readFileSync(path.join(modelDir, 'config.json'), 'utf8')) as Record<string, Record<string, unknown>>;
    const write = (c: unknown) => fsp.writeFile(path.join(dir, 'config.json'), JSON.stringify(c));
    await write({ ...cfg, img_processor: { ...cfg.img_processor, image_dim_out: 1024 } });
    await assert.rejects(loadMultimodalModel(dir), (e: Error) => {
      assert.ok(e instanceof ModelConfigError, String(e));
      assert.equal(e.field, 'img_processor.image_dim_out');
      assert.equal(e.file, path.join(dir, 'config.json'));
      assert.match(e.message, /is 1024 but the vision tower's hidden size is 16/);
      assert.match(e.fix ?? '', /set img_processor.image_dim_out to 16/);
      return true;
    });
    await write({ ...cfg, embd_layer: { ...cfg.embd_layer, hd_transform_order: 'glb_sub' } });
    await assert.rejects(loadMultimodalModel(dir), (e: Error) => e instanceof ModelConfigError && e.field === 'embd_layer.hd_transform_order' && /sub_glb/.test(e.fix ?? ''));
    await write({ ...cfg, img_processor: { ...cfg.img_processor, num_img_tokens: 144 } });
    await assert.rejects(loadMultimodalModel(dir), (e: Error) => e instanceof ModelConfigError && e.field === 'img_processor.num_img_tokens' && /gives 4 merged tokens/.test(e.message));
    await write(cfg);
    await fsp.writeFile(path.join(dir, 'preprocessor_config.json'), JSON.stringify({ image_processor_type: 'Phi3VImageProcessor', num_crops: 0 }));
    await assert.rejects(loadMultimodalModel(dir), (e: Error) => e instanceof UnimeError && (e as UnimeError).field === 'num_crops');
  } finally {
    await cleanup();
  }
});

test('LoRA on the Phi-3 decoder trains through image inputs; the vision side stays frozen', async () => {
  const model = await loadPhi3V(modelDir);
  try {
    const adapter = applyLora(model.decoder, { r: 4, alpha: 8, targetModules: ['qkv_proj', 'gate_up_proj'] });
    assert.equal(adapter.modulePrefix, 'model.');
    for (const l of adapter.layers) l.loraB.assign(tf.randomNormal(l.loraB.shape, 0, 0.2, 'float32', 5));
    assert.ok([...model.vision.weights.values(), ...model.embeddingWeights.values()].every((v) => !v.trainable), 'tower, separators and projection frozen');
    const a = model.prepare('<|image_1|> a picture', await image('wide.png'));
    const b = model.prepare('<|image_1|> a picture', await image('tall.png'));
    const grad = (p: Phi3VPreparedInput) => {
      const { value, grads } = tf.variableGrads(() => tf.sum(model.embed([p])) as tf.Scalar, [adapter.layers[0]!.loraA]);
      const g = Object.values(grads)[0]!.dataSync().slice();
      tf.dispose([value, ...Object.values(grads)]);
      return g;
    };
    const ga = grad(a);
    assert.ok(ga.some((x) => x !== 0) && ga.every(Number.isFinite), 'a finite, non-zero LoRA gradient');
    assert.ok(maxAbsDiff(ga, grad(b)) > 1e-6, 'the LoRA gradient depends on the image');
  } finally {
    model.dispose();
  }
});

test("the single-image processor reader points Phi3VImageProcessor at the Phi-3.5-V loader", async () => {
  await assert.rejects(readImageProcessorConfig(modelDir), (e: Error) => e instanceof UnimeError && (e as UnimeError).field === 'image_processor_type' && /HD crops/.test(e.message) && /readHdProcessorConfig/.test((e as UnimeError).fix ?? ''));
});

test('unime inspect shows a phi3_v checkpoint as its assembly', async () => {
  const r = await runCli(['inspect', modelDir, '--no-tensors']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /assembly\s+Phi-3\.5-V: vision tower -> 2x2 merge with sub_GN \/ glb_GN separators -> img_projection -> phi3 decoder/);
  assert.match(r.stdout, /tower\s+clip_vision_model, 16x16 images, patch 4 \(4x4 grid\), hidden 16, 2 layers; 5\.0K params under model\.vision_embed_tokens\.img_processor\.vision_model\./);
  assert.match(r.stdout, /projector\s+64 -> 24 -> 24 \(gelu\); 2\.2K params under model\.vision_embed_tokens\.img_projection\./);
  assert.match(r.stdout, /decoder\s+phi3, hidden 24, 2 layers, vocab 425; 21\.8K params under model\. \+ lm_head 10\.2K/);
  assert.match(r.stdout, /image\s+tokens per image depend on the image size \(HD crops .*\); num_crops 4: at most 31 tokens/);
});
