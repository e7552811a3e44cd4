/**
 * The LLaVA-NeXT and LLaVA-OneVision assemblies (src/models/mllm/llava-next.ts) against the
 * independent PyTorch reference (float64) of tools/fixtures/make_llava_next_fixtures.py: tokenization
 * with `<image>` expanded per image size, anyres tiles, single and left-padded batched embeddings;
 * token counts equal packed lengths over many image sizes; LoRA training through image inputs and
 * gradients into the projector and image_newline; clear errors for bad configs; dispatch and inspect.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { tf, type Tensor } from '../../../src/runtime/tf.js';
import { decodeImage, type RgbImage } from '../../../src/images/decode.js';
import { anyresNumPatches } from '../../../src/images/anyres.js';
import { loadMultimodalModel, LlavaNextModel, type PreparedInput } from '../../../src/models/mllm/index.js';
import { applyLora } from '../../../src/models/peft/index.js';
import { ModelConfigError } from '../../../src/models/text/config.js';
import { UnimeError } from '../../../src/errors.js';
import { fixture, tempDir } from '../../helpers.js';
import { maxAbsDiff } from '../fixtures.js';
import { runCli } from '../../cli/run-cli.js';

interface ModelReference {
  variant: 'llava_next' | 'llava_onevision';
  layout: 'new' | 'old';
  vision_feature_layer: number;
  vision_feature_select_strategy: string;
  pinpoints: [number, number][];
  max_num_patches: number | null;
  hidden_size: number;
  pixel_shapes: Record<string, number[]>;
  image_tokens: Record<string, number>;
  ids: number[][];
  embeddings: number[][];
  batch_embeddings: number[];
}

interface Reference {
  image_token_id: number;
  image_sizes: Record<string, [number, number]>;
  cases: { text: string; image: string | null }[];
  batch: number[];
  models: Record<string, ModelReference>;
}

const TOL = 1e-4;
const ref = JSON.parse(readFileSync(fixture('llava_next', 'reference.json'), 'utf8')) as Reference;
const modelDir = (name: string) => fixture('llava_next', name);
const images = new Map<string, RgbImage>();

async function image(name: string | null): Promise<RgbImage | null> {
  if (name === null) return null;
  if (!images.has(name)) images.set(name, await decodeImage(fixture('llava_next', 'images', name)));
  return images.get(name)!;
}

async function load(name: string, trainable = false): Promise<LlavaNextModel> {
  const m = await loadMultimodalModel(modelDir(name), { trainable });
  assert.ok(m instanceof LlavaNextModel, `${name} loads as LlavaNextModel`);
  return m;
}

async function prepareCases(model: LlavaNextModel): Promise<PreparedInput[]> {
  const out: PreparedInput[] = [];
  for (const c of ref.cases) out.push(model.prepare(c.text, await image(c.image)));
  return out;
}

/** A smooth RGB test image of any size. */
function synthImage(height: number, width: number): RgbImage {
  const data = new Uint8Array(height * width * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      data[i] = (x * 37 + y * 11) % 256;
      data[i + 1] = (y * 53) % 256;
      data[i + 2] = (x * y + 90) % 256;
    }
  }
  return { height, width, data };
}

for (const [name, mref] of Object.entries(ref.models)) {
  test(`${name}: ids, tiles and embeddings match the PyTorch reference`, async (t) => {
    const model = await load(name);
    try {
      assert.equal(model.modelType, mref.variant);
      assert.equal(model.imageTokenId, ref.image_token_id);
      assert.equal(model.imageMarker, '<image>');
      assert.equal(model.dim, mref.hidden_size);
      assert.deepEqual(model.anyres.pinpoints, mref.pinpoints);
      assert.equal(model.anyres.maxNumPatches, mref.max_num_patches);
      assert.equal(model.decoder.source.prefix, mref.layout === 'new' ? 'model.language_model.' : 'language_model.model.');
      const prepared = await prepareCases(model);
      ref.cases.forEach((c, i) => {
        const p = prepared[i]!;
        assert.deepEqual(p.ids, mref.ids[i], `case ${i}: ids`);
        if (c.image === null) {
          assert.equal(p.pixels, null);
        } else {
          const shape = mref.pixel_shapes[c.image]!;
          assert.equal(p.pixels!.length, shape.reduce((a, b) => a * b, 1), `case ${i}: ${shape[0]} tiles`);
          assert.equal(p.ids.filter((x) => x === model.imageTokenId).length, mref.image_tokens[c.image], `case ${i}: image tokens`);
        }
      });
      let worst = 0;
      for (let i = 0; i < prepared.length; i++) {
        const e = model.embed([prepared[i]!]);
        worst = Math.max(worst, maxAbsDiff(e, mref.embeddings[i]!));
        e.dispose();
      }
      const batch = model.embed(ref.batch.map((i) => prepared[i]!));
      const batchErr = maxAbsDiff(batch, mref.batch_embeddings);
      batch.dispose();
      t.diagnostic(`${name}: max abs diff singles ${worst.toExponential(2)}, batch ${batchErr.toExponential(2)}; image tokens ${JSON.stringify(mref.image_tokens)}`);
      assert.ok(worst < TOL, `singles differ by ${worst}`);
      assert.ok(batchErr < TOL, `batch differs by ${batchErr}`);
    } finally {
      model.dispose();
    }
  });
}

test('the tokens prepare() makes equal the packed feature length, for many image sizes and aspect ratios', async () => {
  const sizes: [number, number][] = [
    [1, 1], [5, 7], [7, 5], [16, 16], [12, 40], [40, 12], [100, 20], [20, 100], [50, 47], [64, 64], [33, 97], [97, 33], [3, 200], [48, 16], [17, 31],
  ];
  for (const name of Object.keys(ref.models)) {
    const model = await load(name);
    try {
      const seen = new Set<number>();
      for (const [h, w] of sizes) {
        const p = model.prepare('<image> what is it?', synthImage(h, w));
        const tokens = p.ids.filter((x) => x === model.imageTokenId).length;
        assert.equal(tokens, model.imageTokensFor(h, w));
        assert.equal(p.pixels!.length, anyresNumPatches(h, w, model.anyres.pinpoints, model.imageSize) * 3 * model.imageSize ** 2);
        const feats = model.imageTokenFeatures([p]);
        assert.deepEqual(feats.shape, [tokens, model.dim], `${name} ${h}x${w}`);
        feats.dispose();
        seen.add(tokens);
      }
      // two images of different sizes in one call: one block each, in order
      const a = model.prepare('<image>', synthImage(12, 40));
      const b = model.prepare('<image>', synthImage(50, 47));
      const both = model.imageTokenFeatures([a, b]);
      const fa = model.imageTokenFeatures([a]);
      const fb = model.imageTokenFeatures([b]);
      assert.ok(maxAbsDiff(both, [...fa.dataSync(), ...fb.dataSync()]) < 1e-5);
      tf.dispose([both, fa, fb]);
      assert.ok(seen.size >= 5, `${name}: the sizes should give varied token counts, got ${[...seen].join(', ')}`);
    } finally {
      model.dispose();
    }
  }
});

test('a OneVision checkpoint with a CLIP tower (class token dropped by "default") counts its tokens as it packs them', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    await copyFixture('llava-next-tiny', dir);
    await editJson(path.join(dir, 'config.json'), (c) => {
      c.model_type = 'llava_onevision';
      c.architectures = ['LlavaOnevisionForConditionalGeneration'];
      c.vision_aspect_ratio = 'anyres_max_1';
    });
    await editJson(path.join(dir, 'preprocessor_config.json'), (c) => {
      c.image_processor_type = 'LlavaOnevisionImageProcessor';
      c.size = { height: 16, width: 16 };
      delete c.crop_size;
    });
    const model = await loadMultimodalModel(dir);
    try {
      assert.ok(model instanceof LlavaNextModel && model.modelType === 'llava_onevision' && model.vision.config.classToken);
      for (const [h, w] of [[5, 7], [12, 40], [31, 13], [50, 47], [16, 48]] as const) {
        const p = model.prepare('<image>', synthImage(h, w));
        const feats: Tensor = model.imageTokenFeatures([p]);
        assert.equal(feats.shape[0], p.ids.filter((x) => x === model.imageTokenId).length, `${h}x${w}`);
        feats.dispose();
        model.embed([p]).dispose();
      }
    } finally {
      model.dispose();
    }
  } finally {
    await cleanup();
  }
});

test('LoRA on the decoder trains through anyres image inputs; with trainable weights, gradients reach the projector and image_newline', async (t) => {
  for (const name of Object.keys(ref.models)) {
    const model = await load(name);
    try {
      const adapter = applyLora(model.decoder, { r: 4, alpha: 8, targetModules: ['q_proj', 'v_proj', 'down_proj'] });
      for (const l of adapter.layers) l.loraB.assign(tf.randomNormal(l.loraB.shape, 0, 0.2, 'float32', 7));
      const rows = (await prepareCases(model)).filter((p) => p.pixels !== null);
      assert.ok([...model.projectorWeights.values(), model.imageNewline, ...model.vision.weights.values()].every((v) => !v.trainable), 'vision side frozen');
      const probe = tf.tensor1d(Array.from({ length: model.dim }, (_, i) => Math.cos(i + 1)));
      const { value, grads } = tf.variableGrads(() => tf.sum(tf.mul(model.embed(rows), probe)) as tf.Scalar);
      const loraNames = new Set(adapter.variables.map((v) => v.name));
      assert.equal(Object.keys(grads).length, loraNames.size, 'gradients reach exactly the LoRA variables');
      for (const [n, g] of Object.entries(grads)) {
        assert.ok(loraNames.has(n), `unexpected gradient for ${n}`);
        const d = g.dataSync();
        assert.ok(d.every(Number.isFinite) && d.some((x) => x !== 0), `${n}: gradient finite and non-zero`);
      }
      tf.dispose([value, probe, ...Object.values(grads)]);
    } finally {
      model.dispose();
    }

    const full = await load(name, true);
    try {
      const rows = (await prepareCases(full)).filter((p) => p.pixels !== null);
      const vars = [...full.projectorWeights.values(), full.imageNewline];
      assert.ok(vars.every((v) => v.trainable));
      const { value, grads } = tf.variableGrads(() => tf.sum(full.embed(rows.slice(0, 2))) as tf.Scalar, vars);
      const norms = vars.map((v) => {
        const d = grads[v.name]!.dataSync();
        assert.ok(d.every(Number.isFinite), `${v.name}: finite`);
        return Math.sqrt(Array.from(d).reduce((s, x) => s + x * x, 0));
      });
      assert.ok(norms.every((n) => n > 0), `every projector / image_newline gradient non-zero: ${norms.join(', ')}`);
      t.diagnostic(`${name}: |grad image_newline| ${norms[norms.length - 1]!.toExponential(2)}`);
      tf.dispose([value, ...Object.values(grads)]);
    } finally {
      full.dispose();
    }
  }
});

async function copyFixture(name: string, dir: string): Promise<void> {
  for (const f of await fsp.readdir(modelDir(name))) await fsp.copyFile(path.join(modelDir(name), f), path.join(dir, f));
}

async function editJson(file: string, edit: (c: Record<string, unknown>) => void): Promise<void> {
  const c = JSON.parse(await fsp.readFile(file, 'utf8')) as Record<string, unknown>;
  edit(c);
  await fsp.writeFile(file, JSON.stringify(c));
}

test('bad config fields are refused before any weight is read, naming the file, the field and a fix', async () => {
  const cases: { model: string; file: 'config.json' | 'preprocessor_config.json'; edit: (c: Record<string, unknown>) => void; field: string; message: RegExp; fix: RegExp }[] = [
    { model: 'llava-next-tiny', file: 'config.json', edit: (c) => (c.image_grid_pinpoints = [[16, 20]]), field: 'image_grid_pinpoints', message: /\[16, 20\] is not a multiple of the vision tower's image_size 16/, fix: /multiples of 16/ },
    { model: 'llava-next-tiny', file: 'config.json', edit: (c) => (c.image_grid_pinpoints = 'anyres'), field: 'image_grid_pinpoints', message: /must be a non-empty list/, fix: /model card/ },
    { model: 'llava-onevision-tiny', file: 'config.json', edit: (c) => (c.vision_aspect_ratio = 'anyres_9'), field: 'vision_aspect_ratio', message: /must be "anyres_max_N"/, fix: /anyres_max_9/ },
    { model: 'llava-next-tiny', file: 'config.json', edit: (c) => (c.vision_feature_select_strategy = 'full'), field: 'vision_feature_select_strategy', message: /has class token/, fix: /"default" with a CLIP tower/ },
    { model: 'llava-onevision-tiny', file: 'config.json', edit: (c) => (c.vision_feature_select_strategy = 'default'), field: 'vision_feature_select_strategy', message: /has no class token/, fix: /"full" with a SigLIP tower/ },
    { model: 'llava-next-tiny', file: 'preprocessor_config.json', edit: (c) => (c.image_grid_pinpoints = [[16, 32]]), field: 'image_grid_pinpoints', message: /differ from config\.json's/, fix: /the same in preprocessor_config\.json and config\.json/ },
    { model: 'llava-onevision-tiny', file: 'preprocessor_config.json', edit: (c) => (c.image_processor_type = 'LlavaNextImageProcessor'), field: 'image_processor_type', message: /is LlavaNextImageProcessor, but config\.json's model_type is llava_onevision/, fix: /LlavaOnevisionImageProcessor/ },
    { model: 'llava-onevision-tiny', file: 'preprocessor_config.json', edit: (c) => (c.size = { height: 32, width: 32 }), field: 'size', message: /32-pixel tiles .* takes 16x16/, fix: /"height": 16/ },
  ];
  for (const c of cases) {
    const { dir, cleanup } = await tempDir();
    try {
      await copyFixture(c.model, dir);
      await editJson(path.join(dir, c.file), c.edit);
      // no weights: the check must come first
      await fsp.rm(path.join(dir, 'model.safetensors'));
      await assert.rejects(loadMultimodalModel(dir), (e: Error) => {
        assert.ok(e instanceof ModelConfigError, `${c.field}: ${e.message}`);
        assert.equal(e.field, c.field, e.message);
        assert.equal(path.basename(e.file ?? ''), c.file, e.message);
        assert.match(e.message, c.message);
        assert.match(e.fix ?? '', c.fix);
        return true;
      });
    } finally {
      await cleanup();
    }
  }
  // an input prepared by another model (no original size) is refused at embed time
  const model = await load('llava-next-tiny');
  try {
    const p = model.prepare('<image> x', (await image('wide.png'))!);
    const { originalSize: _, ...stripped } = p;
    assert.throws(() => model.embed([stripped]), (e: Error) => e instanceof UnimeError && /carries no original image size/.test(e.message));
    assert.throws(() => model.embed([{ ...p, ids: p.ids.filter((x, i) => x !== model.imageTokenId || i !== p.ids.indexOf(x)) }]), (e: Error) => e instanceof UnimeError && /image-token positions/.test(e.message));
    const small = model.prepare('<image> x', (await image('small.png'))!);
    assert.throws(() => model.embed([{ ...p, pixels: small.pixels }]), (e: Error) => e instanceof UnimeError && /tiles of 3x16x16 pixel values/.test(e.message));
  } finally {
    model.dispose();
  }
});

test('loadMultimodalModel dispatches both model types, and `unime inspect` describes them', async () => {
  for (const [name, label, decoder, tower] of [
    ['llava-next-tiny', 'LLaVA-NeXT', 'llama', 'clip_vision_model'],
    ['llava-onevision-tiny', 'LLaVA-OneVision', 'qwen2', 'siglip_vision_model'],
  ] as const) {
    const m = await loadMultimodalModel(modelDir(name));
    try {
      assert.equal(m.modelType, ref.models[name]!.variant);
      assert.equal(m.imageSize, 16);
      assert.ok(m.visionParameters > 0);
    } finally {
      m.dispose();
    }
    const r = await runCli(['inspect', modelDir(name), '--no-tensors']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`assembly\\s+${label}: vision tower -> multi_modal_projector -> ${decoder} decoder`));
    assert.match(r.stdout, new RegExp(`tower\\s+${tower}, 16x16 images`));
    assert.match(r.stdout, /image\s+tokens per image depend on the image size \(anyres tiling\) \(<image> id \d+\)/);
    assert.match(r.stdout, /anyres\s+\d+ grid pinpoints/);
  }
});
