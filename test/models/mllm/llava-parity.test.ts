/**
 * The LLaVA assembly against the independent PyTorch reference (float64) of
 * tools/fixtures/make_llava_fixtures.py: pixel values, tokenization with the image placeholder
 * expanded, single and left-padded batched embeddings, in both checkpoint layouts and with a
 * concatenated multi-layer 'full' feature selection; LoRA training through image inputs and merging.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { tf, type Tensor } from '../../../src/runtime/tf.js';
import { decodeImage, type RgbImage } from '../../../src/images/decode.js';
import { loadLlava, loadMultimodalModel, LlavaModel, type PreparedInput } from '../../../src/models/mllm/index.js';
import { applyLora, getLoraAdapter, mergeAdapterChain, removeLora, saveLoraAdapter } from '../../../src/models/peft/index.js';
import { NotImplementedYetError, UnimeError } from '../../../src/errors.js';
import { fixture, tempDir } from '../../helpers.js';
import { fixtureDir, maxAbsDiff } from '../fixtures.js';

interface LlavaModelReference {
  layout: 'new' | 'old';
  vision_feature_layer: number | number[];
  vision_feature_select_strategy: string;
  image_tokens: number;
  ids: number[][];
  embeddings: number[][];
  batch_embeddings: number[];
}

interface LlavaReference {
  torch_version: string;
  image_token_id: number;
  hidden_size: number;
  cases: { text: string; image: string | null }[];
  batch: number[];
  pixel_values: Record<string, { shape: number[]; values: number[] }>;
  models: Record<string, LlavaModelReference>;
}

const TOL = 1e-4;
const ref = JSON.parse(readFileSync(fixture('llava', 'reference.json'), 'utf8')) as LlavaReference;
const llavaDir = (name: string) => fixture('llava', name);
const images = new Map<string, RgbImage>();

async function image(name: string | null): Promise<RgbImage | null> {
  if (name === null) return null;
  if (!images.has(name)) images.set(name, await decodeImage(fixture('llava', 'images', name)));
  return images.get(name)!;
}

async function prepareCases(model: LlavaModel): Promise<PreparedInput[]> {
  const out: PreparedInput[] = [];
  for (const c of ref.cases) out.push(model.prepare(c.text, await image(c.image)));
  return out;
}

function rowsDiff(got: Tensor, want: number[]): number {
  const d = maxAbsDiff(got, want);
  got.dispose();
  return d;
}

for (const [name, mref] of Object.entries(ref.models)) {
  test(`${name}: ids, pixels and embeddings match the PyTorch reference`, async (t) => {
    const model = await loadLlava(llavaDir(name));
    try {
      assert.equal(model.modelType, 'llava');
      assert.equal(model.imageTokenId, ref.image_token_id);
      assert.equal(model.imageMarker, '<image>');
      assert.equal(model.imageTokens, mref.image_tokens);
      assert.equal(model.dim, ref.hidden_size);
      assert.deepEqual(model.selection.layer, mref.vision_feature_layer);
      assert.equal(model.selection.strategy, mref.vision_feature_select_strategy);
      assert.equal(model.decoder.source.prefix, mref.layout === 'new' ? 'model.language_model.' : 'language_model.model.');
      assert.equal(model.vision.source.prefix, mref.layout === 'new' ? 'model.vision_tower.vision_model.' : 'vision_tower.vision_model.');
      const prepared = await prepareCases(model);
      prepared.forEach((p, i) => {
        assert.deepEqual(p.ids, mref.ids[i], `ids of case ${i} (${JSON.stringify(ref.cases[i]!.text)})`);
        assert.equal(p.truncated, false);
        assert.equal(p.pixels === null, ref.cases[i]!.image === null);
      });
      let pixelErr = 0;
      for (const [i, c] of ref.cases.entries()) {
        if (c.image === null) continue;
        const want = ref.pixel_values[c.image]!;
        assert.deepEqual(want.shape, [3, model.imageSize, model.imageSize]);
        pixelErr = Math.max(pixelErr, maxAbsDiff(prepared[i]!.pixels!, want.values));
      }
      const before = tf.memory().numTensors;
      const single = prepared.map((p, i) => rowsDiff(model.embed([p]), mref.embeddings[i]!));
      const batch = rowsDiff(
        model.embed(ref.batch.map((i) => prepared[i]!)),
        mref.batch_embeddings,
      );
      assert.equal(tf.memory().numTensors, before, 'embed leaks no tensors');
      const worst = Math.max(...single, batch);
      const line = `${name}: max abs diff embeddings single ${single.map((e) => e.toExponential(1)).join('/')} batch ${batch.toExponential(1)}, pixels ${pixelErr.toExponential(1)} (torch ${ref.torch_version})`;
      t.diagnostic(line);
      assert.ok(pixelErr < 1e-5, line);
      assert.ok(worst < TOL, line);
    } finally {
      model.dispose();
    }
  });
}

test('the new and old checkpoint layouts load to the same model', async () => {
  const a = await loadMultimodalModel(llavaDir('llava-tiny'));
  const b = await loadMultimodalModel(llavaDir('llava-tiny-old'));
  try {
    assert.ok(a instanceof LlavaModel && b instanceof LlavaModel);
    assert.equal(a.visionParameters, b.visionParameters);
    const pa = await prepareCases(a);
    const pb = await prepareCases(b);
    const ea = a.embed(pa);
    const eb = b.embed(pb);
    assert.equal(maxAbsDiff(ea, eb.dataSync()), 0);
    tf.dispose([ea, eb]);
  } finally {
    a.dispose();
    b.dispose();
  }
});

test('LoRA on the decoder trains through image inputs; the vision side stays frozen; the merged adapter embeds the same', async (t) => {
  const { dir, cleanup } = await tempDir();
  const model = await loadLlava(llavaDir('llava-tiny'));
  try {
    const adapter = applyLora(model.decoder, { r: 4, alpha: 8, targetModules: ['q_proj', 'v_proj', 'down_proj'] });
    assert.equal(adapter.modulePrefix, 'model.language_model.');
    const prepared = await prepareCases(model);
    const imageRows = prepared.filter((p) => p.pixels !== null);
    // B starts at zero; step it once so the adapter changes the outputs
    for (const l of adapter.layers) l.loraB.assign(tf.randomNormal(l.loraB.shape, 0, 0.2, 'float32', 7));
    const visionVars = [...model.vision.weights.values(), ...model.projectorWeights.values()];
    assert.ok(visionVars.every((v) => !v.trainable), 'vision tower and projector frozen');
    assert.ok([...model.decoder.weights.values()].every((v) => !v.trainable), 'decoder base weights frozen');
    const probe = tf.tensor1d(Array.from({ length: model.dim }, (_, i) => Math.cos(i + 1)));
    const { value, grads } = tf.variableGrads(() => tf.sum(tf.mul(model.embed(imageRows), probe)) as tf.Scalar);
    const names = Object.keys(grads);
    const loraNames = new Set(adapter.variables.map((v) => v.name));
    assert.equal(names.length, loraNames.size, 'gradients reach exactly the LoRA variables');
    let normA = 0;
    for (const [n, g] of Object.entries(grads)) {
      assert.ok(loraNames.has(n), `unexpected gradient for ${n}`);
      const d = g.dataSync();
      assert.ok(d.every(Number.isFinite), `${n}: gradient not finite`);
      const s = Array.from(d).reduce((acc, x) => acc + x * x, 0);
      assert.ok(s > 0, `${n}: gradient is zero`);
      if (adapter.layers.some((l) => l.loraA.name === n)) normA += s;
    }
    t.diagnostic(`LoRA gradient through image inputs: ${names.length} tensors, |grad A| ${Math.sqrt(normA).toExponential(2)}, loss ${value.dataSync()[0]!.toFixed(4)}`);
    tf.dispose([value, probe, ...Object.values(grads)]);
    // the image-feature path itself carries gradient: the LoRA gradient changes with the image
    const g1 = tf.variableGrads(() => tf.sum(model.embed([imageRows[0]!])) as tf.Scalar, [adapter.layers[0]!.loraA]);
    const swapped: PreparedInput = { ...imageRows[0]!, pixels: imageRows[1]!.pixels };
    const g2 = tf.variableGrads(() => tf.sum(model.embed([swapped])) as tf.Scalar, [adapter.layers[0]!.loraA]);
    const gd = maxAbsDiff(Object.values(g1.grads)[0]!, Object.values(g2.grads)[0]!.dataSync());
    assert.ok(gd > 1e-6, `LoRA gradient should depend on the image (changed by ${gd})`);
    tf.dispose([g1.value, g2.value, ...Object.values(g1.grads), ...Object.values(g2.grads)]);

    const live = model.embed(prepared);
    const liveData = live.dataSync().slice();
    live.dispose();
    await saveLoraAdapter(path.join(dir, 'adapter'), model.decoder);
    removeLora(model.decoder);
    assert.equal(getLoraAdapter(model.decoder), undefined);

    const fresh = await loadLlava(llavaDir('llava-tiny'));
    try {
      const base = fresh.embed(prepared);
      const baseDiff = maxAbsDiff(base, liveData);
      base.dispose();
      assert.ok(baseDiff > 1e-3, 'the adapter should change the embeddings');
      await mergeAdapterChain(fresh.decoder, [path.join(dir, 'adapter')]);
      assert.equal(getLoraAdapter(fresh.decoder), undefined, 'merged, no live adapter left');
      const merged = fresh.embed(prepared);
      const d = maxAbsDiff(merged, liveData);
      merged.dispose();
      t.diagnostic(`merged vs live adapter: max abs diff ${d.toExponential(1)}`);
      assert.ok(d < 1e-5, `merged adapter differs from the live one by ${d}`);
    } finally {
      fresh.dispose();
    }
  } finally {
    model.dispose();
    await cleanup();
  }
});

test('clear errors: marker without image, two markers, max_length too short, image to a text model', async () => {
  const model = await loadLlava(llavaDir('llava-tiny'));
  const img = (await image('red-square.png'))!;
  try {
    assert.throws(() => model.prepare('USER: <image>\nWhat is it?', null), (e: Error) => e instanceof UnimeError && /image marker but no image/.test(e.message));
    assert.throws(() => model.prepare('<image> and <|image_1|>', img), (e: Error) => e instanceof UnimeError && /2 image markers/.test(e.message));
    assert.throws(
      () => model.prepare('USER: <image>\nWhat is shown here?', img, { maxLength: 10 }),
      (e: Error) => e instanceof UnimeError && /max_length 10 is too short/.test(e.message) && (e as UnimeError).field === 'max_length',
    );
    // long enough for the image: the text after it is cut, the image tokens kept
    const cut = model.prepare('USER: <image>\nWhat is shown here? ASSISTANT:', img, { maxLength: 24 });
    assert.equal(cut.truncated, true);
    assert.equal(cut.ids.length, 24);
    assert.equal(cut.ids.filter((x) => x === model.imageTokenId).length, model.imageTokens);
    // inputs prepared elsewhere with the wrong number of image tokens are refused at embed time
    const bad: PreparedInput = { ids: [1, model.imageTokenId, 5], pixels: cut.pixels, truncated: false };
    assert.throws(() => model.embed([bad]), /image-token positions/);
  } finally {
    model.dispose();
  }
  // a text decoder (llama-tiny's weights with this tokenizer) loads as a text-only model
  const { dir, cleanup } = await tempDir();
  try {
    for (const f of ['config.json', 'model.safetensors']) await fsp.copyFile(path.join(fixtureDir('llama-tiny'), f), path.join(dir, f));
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) await fsp.copyFile(path.join(llavaDir('llava-tiny'), f), path.join(dir, f));
    const tm = await loadMultimodalModel(dir);
    try {
      assert.equal(tm.imageMarker, null);
      assert.equal(tm.visionParameters, 0);
      assert.throws(() => tm.prepare('a cat', img), (e: Error) => e instanceof UnimeError && /takes text only/.test(e.message));
    } finally {
      tm.dispose();
    }
  } finally {
    await cleanup();
  }
});

test('planned and unknown model types are refused by name', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const cfg = JSON.parse(readFileSync(path.join(llavaDir('llava-tiny'), 'config.json'), 'utf8')) as Record<string, unknown>;
    await fsp.writeFile(path.join(dir, 'config.json'), JSON.stringify({ ...cfg, model_type: 'qwen2_vl' }));
    await assert.rejects(loadMultimodalModel(dir), (e: Error) => e instanceof NotImplementedYetError && /Qwen2-VL/.test(e.message) && (e as UnimeError).field === 'model_type');
    await fsp.writeFile(path.join(dir, 'config.json'), JSON.stringify({ ...cfg, model_type: 'blip_2' }));
    await assert.rejects(
      loadMultimodalModel(dir),
      (e: Error) => e instanceof UnimeError && !(e instanceof NotImplementedYetError) && /"blip_2" is not a supported model/.test(e.message),
    );
  } finally {
    await cleanup();
  }
});
