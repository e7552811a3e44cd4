/**
 * The CLIP dual encoder (src/models/clip): parity of loadClipModel against the independent PyTorch
 * reference of tools/fixtures/make_clip_fixtures.py (float64), save -> load round trips, the init
 * presets, gradients through the text tower, and the errors for bad inputs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { fixture, tempDir } from '../helpers.js';
import { tf, type Tensor } from '../../src/runtime/tf.js';
import { Rng } from '../../src/runtime/rng.js';
import { UnimeError } from '../../src/errors.js';
import { writeSafetensors } from '../../src/io/safetensors.js';
import { openCheckpoint } from '../../src/io/checkpoint.js';
import { expectedVisionWeights } from '../../src/models/vision/tower.js';
import {
  clipTextPresetConfig,
  eosPositions,
  expectedClipTextWeights,
  initClipModel,
  initClipTextTower,
  initProjection,
  initVisionTower,
  loadClipModel,
  saveClipModel,
  visionArchConfig,
  VISION_ARCHS,
} from '../../src/models/clip/index.js';

interface ClipReference {
  torch_version: string;
  input_ids: number[][];
  attention_mask: number[][];
  eos_positions: number[];
  pixel_values_shape: [number, number, number, number];
  pixel_values: number[];
  text_last_hidden_state: number[];
  text_pooled: number[];
  vision_pooled: number[];
  image_embeds: number[];
  text_embeds: number[];
  logit_scale: number;
}

const FIXTURES = ['clip-tiny', 'clip-tiny-legacy-eos'];
const TOL = 1e-5;

const readRef = (name: string) => JSON.parse(readFileSync(fixture('clip', name, 'reference.json'), 'utf8')) as ClipReference;

function maxAbsDiff(a: Tensor, b: ArrayLike<number>): number {
  const av = a.dataSync();
  assert.equal(av.length, b.length);
  let m = 0;
  for (let i = 0; i < av.length; i++) m = Math.max(m, Math.abs(av[i]! - b[i]!));
  return m;
}

const sum = (shapes: Iterable<number[]>) => [...shapes].reduce((s, sh) => s + sh.reduce((a, b) => a * b, 1), 0);

for (const name of FIXTURES) {
  test(`${name}: loadClipModel matches the PyTorch reference`, async (t) => {
    const ref = readRef(name);
    const model = await loadClipModel(fixture('clip', name));
    try {
      assert.ok(model.text && model.visualProjection && model.textProjection && model.logitScale);
      assert.ok(Math.abs(model.logitScale.dataSync()[0]! - ref.logit_scale) < 1e-6);
      const ids = ref.input_ids;
      assert.deepEqual(eosPositions(ids.flat(), ids.length, ids[0]!.length, model.text.config.eosTokenId), ref.eos_positions);
      const before = tf.memory().numTensors;
      const errs = tf.tidy(() => {
        const idsT = tf.tensor2d(ref.input_ids, undefined, 'int32');
        const maskT = tf.tensor2d(ref.attention_mask, undefined, 'int32');
        const px = tf.tensor4d(ref.pixel_values, ref.pixel_values_shape);
        const out = model.text!.forward(idsT, maskT);
        return {
          last: maxAbsDiff(out.lastHiddenState, ref.text_last_hidden_state),
          pooled: maxAbsDiff(out.pooled, ref.text_pooled),
          visionPooled: maxAbsDiff(model.vision.forward(px).pooled!, ref.vision_pooled),
          image: maxAbsDiff(model.imageEmbeds(px), ref.image_embeds),
          text: maxAbsDiff(model.textEmbeds(idsT, maskT), ref.text_embeds),
        };
      });
      assert.equal(tf.memory().numTensors, before, 'forward leaked tensors');
      const line = `${name}: max abs err ${Object.entries(errs).map(([k, v]) => `${k} ${v.toExponential(1)}`).join(', ')} (torch ${ref.torch_version})`;
      t.diagnostic(line);
      assert.ok(Math.max(...Object.values(errs)) < TOL, line);
    } finally {
      model.dispose();
    }
  });
}

test('save -> load round trip is identical, in the HF CLIPModel layout', async () => {
  const { dir, cleanup } = await tempDir();
  const a = await loadClipModel(fixture('clip', 'clip-tiny'), { trainable: false });
  try {
    await saveClipModel(dir, a);
    const cfg = JSON.parse(await fsp.readFile(path.join(dir, 'config.json'), 'utf8'));
    assert.equal(cfg.model_type, 'clip');
    assert.deepEqual(cfg.architectures, ['CLIPModel']);
    assert.equal(cfg.projection_dim, 12);
    assert.equal(cfg.text_config.eos_token_id, 39);
    assert.equal(cfg.text_config.hidden_act, 'quick_gelu');
    assert.equal(cfg.vision_config.model_type, 'clip_vision_model');
    const ckpt = await openCheckpoint(dir);
    const names = new Set(ckpt.names);
    await ckpt.close();
    for (const k of ['visual_projection.weight', 'text_projection.weight', 'logit_scale', 'text_model.final_layer_norm.weight', 'vision_model.post_layernorm.bias']) assert.ok(names.has(k), k);
    const b = await loadClipModel(dir);
    try {
      const wa = a.namedWeights();
      const wb = b.namedWeights();
      assert.deepEqual([...wb.keys()].sort(), [...wa.keys()].sort());
      for (const [k, v] of wa) assert.deepEqual(wb.get(k)!.dataSync(), v.dataSync(), k);
      assert.deepEqual(b.config, a.config);
      // vision side alone: CLIPVisionModelWithProjection
      const vdir = path.join(dir, 'vision');
      const v = await loadClipModel(dir, { textTower: false });
      try {
        assert.equal(v.text, null);
        assert.equal(v.textProjection, null);
        await saveClipModel(vdir, v);
        const vcfg = JSON.parse(await fsp.readFile(path.join(vdir, 'config.json'), 'utf8'));
        assert.equal(vcfg.model_type, 'clip_vision_model');
        assert.deepEqual(vcfg.architectures, ['CLIPVisionModelWithProjection']);
        const v2 = await loadClipModel(vdir);
        try {
          assert.equal(v2.text, null);
          tf.tidy(() => {
            const px = tf.randomUniform([1, 3, 16, 16], -1, 1, 'float32', 3);
            assert.equal(maxAbsDiff(v2.imageEmbeds(px), a.imageEmbeds(px).dataSync()), 0);
          });
        } finally {
          v2.dispose();
        }
      } finally {
        v.dispose();
      }
    } finally {
      b.dispose();
    }
  } finally {
    a.dispose();
    await cleanup();
  }
});

test('a SigLIP vision checkpoint loads as the vision side, pooled by its head', async () => {
  const m = await loadClipModel(fixture('vision', 'siglip-vision-tiny'));
  try {
    assert.equal(m.config.vision.kind, 'siglip');
    assert.equal(m.text, null);
    assert.equal(m.visualProjection, null);
    const ref = JSON.parse(readFileSync(fixture('vision', 'siglip-vision-tiny', 'reference.json'), 'utf8'));
    tf.tidy(() => {
      const e = m.imageEmbeds(tf.tensor4d(ref.pixel_values, ref.pixel_values_shape));
      assert.ok(maxAbsDiff(e, ref.pooled) < 1e-4);
    });
  } finally {
    m.dispose();
  }
  await assert.rejects(loadClipModel(fixture('vision', 'siglip-vision-tiny'), { textTower: true }), /text_config.*textTower: false/s);
});

test('init presets: shapes, parameter counts, stable names, deterministic per seed', () => {
  // OpenAI's ViT-B/32 vision tower has 87,456,000 parameters (87,849,216 with its 768 -> 512 projection)
  assert.equal(sum(expectedVisionWeights(visionArchConfig('vit-b-32'), false).values()), 87_456_000);
  const l336 = visionArchConfig('vit-l-14-336');
  assert.equal(l336.imageSize, 336);
  assert.equal(l336.seqLen, 24 * 24 + 1);
  assert.equal(visionArchConfig('vit-l-14').hiddenSize, 1024);
  assert.equal(visionArchConfig('vit-b-16').patchSize, 16);
  // OpenAI's text transformer: 63,165,952 parameters with the 49408 vocabulary and 77 positions
  // (openai/clip-vit-base-patch32 in all: 87,456,000 + 63,165,952 + 768*512 + 512*512 + 1 = 151,277,313)
  assert.equal(sum(expectedClipTextWeights(clipTextPresetConfig({ vocabSize: 49408, eosTokenId: 49407, preset: 'text-b' })).values()), 63_165_952);

  const v = initVisionTower('vit-tiny-8', { imageSize: 32, rng: new Rng(1), namePrefix: 'clipA.vision_model.' });
  const v2 = initVisionTower('vit-tiny-8', { imageSize: 32, rng: new Rng(1), namePrefix: 'clipB.vision_model.' });
  const v3 = initVisionTower('vit-tiny-8', { imageSize: 32, rng: new Rng(2) });
  const txt = initClipTextTower({ vocabSize: 100, eosTokenId: 99, maxPositions: 16, preset: 'text-mini' }, new Rng(1));
  try {
    assert.equal(v.config.hiddenSize, 64);
    assert.equal(v.config.numLayers, 2);
    assert.equal(v.layers.length, 2);
    assert.equal(v.config.seqLen, 17);
    assert.equal(v.numParameters, sum(expectedVisionWeights(v.config, false).values()));
    // 64*3*8*8 + 64 + 17*64 + 2*64 (pre) + 2*(4*(64*64+64) + 2*128 + 64*256+256 + 256*64+64) + 2*64 (post)
    assert.equal(v.numParameters, 12288 + 64 + 1088 + 128 + 2 * (16640 + 256 + 16640 + 16448) + 128);
    const w = v.weights.get('encoder.layers.0.self_attn.q_proj.weight')!;
    assert.equal(w.name, 'clipA.vision_model.encoder.layers.0.self_attn.q_proj.weight');
    assert.ok(w.trainable);
    for (const [k, a] of v.weights) {
      assert.deepEqual(a.dataSync(), v2.weights.get(k)!.dataSync(), `same seed, ${k}`);
    }
    assert.notDeepEqual(w.dataSync(), v3.weights.get('encoder.layers.0.self_attn.q_proj.weight')!.dataSync());
    assert.ok(v.weights.get('pre_layrnorm.weight')!.dataSync().every((x) => x === 1));
    assert.ok(v.weights.get('encoder.layers.1.mlp.fc1.bias')!.dataSync().every((x) => x === 0));
    // q_proj std = H^-0.5 (2L)^-0.5 = 0.0625
    const qs = Array.from(w.dataSync());
    const std = Math.sqrt(qs.reduce((s, x) => s + x * x, 0) / qs.length);
    assert.ok(Math.abs(std - 0.0625) < 0.005, `q_proj std ${std}`);

    assert.equal(txt.config.hiddenSize, 128);
    assert.equal(txt.layers.length, 4);
    assert.equal(txt.weights.get('final_layer_norm.weight')!.name, 'text_model.final_layer_norm.weight');
    assert.equal(txt.numParameters, sum(expectedClipTextWeights(txt.config).values()));

    const mini = visionArchConfig('vit-mini-8', { imageSize: 64 });
    assert.deepEqual([mini.hiddenSize, mini.numLayers, mini.numHeads, mini.intermediateSize, mini.patchSize], [128, 4, 4, 512, 8]);
    const p = initProjection(32, 64, new Rng(5), 'x.visual_projection.weight');
    assert.deepEqual(p.shape, [32, 64]);
    p.dispose();
  } finally {
    v.dispose();
    v2.dispose();
    v3.dispose();
    txt.dispose();
  }
  assert.ok(Object.keys(VISION_ARCHS).includes('vit-l-14-336'));
});

test('gradients reach every text-tower variable and the projection, finite and non-zero', () => {
  const m = initClipModel({
    vision: 'vit-tiny-8',
    imageSize: 16,
    text: { vocabSize: 50, eosTokenId: 49, maxPositions: 8, preset: 'text-tiny' },
    projectionDim: 16,
    rng: new Rng(7),
    namePrefix: 'gradtest.',
  });
  try {
    const vars = [...m.text!.weights.values(), m.textProjection!];
    const ids = tf.tensor2d([[48, 3, 9, 49, 0, 0], [48, 5, 6, 7, 8, 49]], undefined, 'int32');
    const mask = tf.tensor2d([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], undefined, 'int32');
    const target = tf.randomNormal([2, 16], 0, 1, 'float32', 11);
    const { value, grads } = tf.variableGrads(() => tf.sum(tf.mul(m.textEmbeds(ids, mask), target)) as tf.Scalar, vars);
    try {
      assert.ok(Number.isFinite(value.dataSync()[0]!));
      for (const v of vars) {
        const g = grads[v.name]!;
        assert.ok(g, `no gradient for ${v.name}`);
        const d = g.dataSync();
        assert.ok(d.every(Number.isFinite), `non-finite gradient for ${v.name}`);
        assert.ok(d.some((x) => x !== 0), `zero gradient for ${v.name}`);
      }
      // padding does not leak into the pooled output: changing a padded id changes nothing
      tf.tidy(() => {
        const ids2 = tf.tensor2d([[48, 3, 9, 49, 7, 7], [48, 5, 6, 7, 8, 49]], undefined, 'int32');
        assert.equal(maxAbsDiff(m.textEmbeds(ids2, mask), m.textEmbeds(ids, mask).dataSync()), 0);
      });
    } finally {
      value.dispose();
      for (const g of Object.values(grads)) g.dispose();
      tf.dispose([ids, mask, target]);
    }
  } finally {
    m.dispose();
  }
});

test('bad inputs give clear errors', async () => {
  assert.throws(
    () => initVisionTower('vit-h-99', { rng: new Rng(0) }),
    (e: unknown) => e instanceof UnimeError && e.field === 'vision.arch' && /vit-b-16/.test(e.message) && /vit-tiny-8/.test(e.message),
  );
  assert.throws(() => clipTextPresetConfig({ vocabSize: 10, eosTokenId: 9, preset: 'text-xl' }), /text-tiny/);

  // a checkpoint missing one tensor: the error names the tensor, the file and a fix
  const { dir, cleanup } = await tempDir();
  try {
    const src = fixture('clip', 'clip-tiny');
    await fsp.copyFile(path.join(src, 'config.json'), path.join(dir, 'config.json'));
    const ckpt = await openCheckpoint(src);
    const tensors: [string, { dtype: 'F32'; shape: number[]; data: Float32Array }][] = [];
    for (const n of ckpt.names) {
      if (n === 'text_model.encoder.layers.1.mlp.fc2.weight') continue;
      tensors.push([n, { dtype: 'F32', shape: [...ckpt.info(n).shape], data: await ckpt.readFloat32(n) }]);
    }
    await ckpt.close();
    await writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
    await assert.rejects(loadClipModel(dir), (e: unknown) => {
      assert.ok(e instanceof UnimeError);
      assert.match(e.message, /text_model\.encoder\.layers\.1\.mlp\.fc2\.weight/);
      assert.match(e.message, /model\.safetensors/);
      assert.ok(e.fix);
      return true;
    });
    // the vision side alone still loads
    const v = await loadClipModel(dir, { textTower: false });
    v.dispose();
    // no config.json
    await fsp.rm(path.join(dir, 'config.json'));
    await assert.rejects(loadClipModel(dir), (e: unknown) => e instanceof UnimeError && /config\.json/.test(e.message));
  } finally {
    await cleanup();
  }

  const m = await loadClipModel(fixture('clip', 'clip-tiny'));
  try {
    assert.throws(() => m.textEmbeds(tf.tensor2d([[1, 2]], undefined, 'float32')), /int32/);
    assert.throws(() => m.textEmbeds(tf.tensor2d([[1, 40]], undefined, 'int32')), /outside the vocabulary/);
    assert.throws(() => m.textEmbeds(tf.zeros([1, 13], 'int32')), /max_position_embeddings/);
  } finally {
    m.dispose();
  }
});
