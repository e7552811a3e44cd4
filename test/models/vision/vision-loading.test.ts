/** Loading vision towers: config selection, prefix detection, and clear errors that leak nothing. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync } from 'node:fs';
import * as path from 'node:path';
import { tf } from '../../../src/runtime/tf.js';
import { openCheckpoint, writeShardedSafetensors } from '../../../src/io/checkpoint.js';
import type { TensorInput } from '../../../src/io/safetensors.js';
import { loadVisionTower, selectVisionConfig } from '../../../src/models/vision/index.js';
import { WeightMismatchError } from '../../../src/models/text/load.js';
import { ModelConfigError } from '../../../src/models/text/config.js';
import { registeredVisionTowerTypes, registerVisionTower, visionTowerEntry } from '../../../src/models/registry.js';
import { tempDir } from '../../helpers.js';
import { visionFixtureDir } from './fixtures.js';

/** A copy of a fixture checkpoint with its tensors edited. */
async function edited(name: string, dir: string, edit: (t: Map<string, TensorInput>) => void): Promise<string> {
  const src = visionFixtureDir(name);
  const ckpt = await openCheckpoint(src);
  const tensors = new Map<string, TensorInput>();
  for (const n of ckpt.names) tensors.set(n, { dtype: ckpt.info(n).dtype, shape: ckpt.info(n).shape, data: await ckpt.read(n) });
  await ckpt.close();
  edit(tensors);
  const out = path.join(dir, name);
  await writeShardedSafetensors(out, tensors);
  copyFileSync(path.join(src, 'config.json'), path.join(out, 'config.json'));
  return out;
}

test('vision tower types are registered beside the text decoders', () => {
  assert.deepEqual(registeredVisionTowerTypes(), ['clip_vision_model', 'siglip_vision_model']);
  assert.equal(visionTowerEntry('clip_vision_model')?.hfClass, 'CLIPVisionModel');
  assert.equal(visionTowerEntry('llama'), undefined);
  assert.throws(() => registerVisionTower({ kind: 'vision-tower', modelType: 'llama', hfClass: 'X', buildConfig: visionTowerEntry('clip_vision_model')!.buildConfig }), /already registered/);
});

test('config selection: top level, vision_config, transformers defaults, and errors', () => {
  const top = selectVisionConfig({ model_type: 'siglip_vision_model', hidden_size: 64 }, 'c.json');
  assert.equal(top.fieldPrefix, '');
  const llava = selectVisionConfig({ model_type: 'llava', vision_config: { hidden_size: 1024, image_size: 336, patch_size: 14, num_hidden_layers: 24, num_attention_heads: 16, intermediate_size: 4096 } }, 'c.json');
  assert.equal(llava.entry.modelType, 'clip_vision_model');
  assert.equal(llava.fieldPrefix, 'vision_config.');
  const cfg = llava.entry.buildConfig(llava.cfg, { file: 'c.json', fieldPrefix: llava.fieldPrefix });
  assert.equal(cfg.seqLen, 577);
  assert.equal(cfg.headDim, 64);
  assert.equal(cfg.activation, 'quickGelu');
  const sig = visionTowerEntry('siglip_vision_model')!.buildConfig({ model_type: 'siglip_vision_model' }, { file: 'c.json', fieldPrefix: '' });
  assert.deepEqual([sig.imageSize, sig.patchSize, sig.seqLen, sig.activation, sig.layerNormEps, sig.useHead], [224, 16, 196, 'geluTanh', 1e-6, null]);
  // Phi-3.5-V: no vision_config, a fixed CLIP ViT-L/14-336
  const phi = selectVisionConfig({ model_type: 'phi3_v', img_processor: { image_dim_out: 1024, model_name: 'openai/clip-vit-large-patch14-336', name: 'clip_vision_model', num_img_tokens: 144 } }, 'c.json');
  const phiCfg = phi.entry.buildConfig(phi.cfg, { file: 'c.json', fieldPrefix: phi.fieldPrefix });
  assert.deepEqual([phiCfg.hiddenSize, phiCfg.numLayers, phiCfg.seqLen, phiCfg.activation], [1024, 24, 577, 'quickGelu']);
  assert.throws(() => selectVisionConfig({ model_type: 'llama' }, 'c.json'), (e: unknown) => e instanceof ModelConfigError && /c\.json: model_type: "llama" is not a supported vision tower/.test(e.message));
  assert.throws(() => selectVisionConfig({ model_type: 'x', vision_config: { model_type: 'eva' } }, 'c.json'), /vision_config\.model_type: vision tower type "eva" is not supported/);
  assert.throws(
    () => visionTowerEntry('clip_vision_model')!.buildConfig({ hidden_act: 'relu' }, { file: 'c.json', fieldPrefix: 'vision_config.' }),
    /c\.json: vision_config\.hidden_act: activation "relu" is not supported/,
  );
  assert.throws(() => visionTowerEntry('clip_vision_model')!.buildConfig({ image_size: 30, patch_size: 8 }, { file: 'c.json', fieldPrefix: '' }), /image_size 30 is not a multiple of patch_size 8/);
});

test('an explicit prefix and trainable: false are honoured', async () => {
  const tower = await loadVisionTower(visionFixtureDir('llava-clip-tiny'), { prefix: 'vision_tower.vision_model.', trainable: false });
  try {
    assert.equal(tower.source.configField, 'vision_config.');
    assert.ok([...tower.weights.values()].every((v) => !v.trainable));
    assert.equal(tower.head, null);
  } finally {
    tower.dispose();
  }
});

test('a missing tensor, a shape mismatch and an unexpected tensor are named, and nothing leaks', async () => {
  const { dir, cleanup } = await tempDir();
  const before = tf.memory().numTensors;
  try {
    const missing = await edited('clip-vision-tiny', dir, (t) => t.delete('vision_model.encoder.layers.1.mlp.fc2.bias'));
    await assert.rejects(loadVisionTower(missing), (e: unknown) => {
      assert.ok(e instanceof WeightMismatchError);
      assert.equal(e.field, 'vision_model.encoder.layers.1.mlp.fc2.bias');
      assert.match(e.message, /missing 1 tensor: vision_model\.encoder\.layers\.1\.mlp\.fc2\.bias/);
      return true;
    });
    const shape = await edited('siglip-vision-tiny', path.join(dir, 's'), (t) => {
      t.set('vision_model.post_layernorm.bias', { dtype: 'F32', shape: [16], data: new Float32Array(16) });
    });
    await assert.rejects(loadVisionTower(shape), /vision_model\.post_layernorm\.bias is \[16\] in model\.safetensors, the config implies \[32\]/);
    const extra = await edited('llava-clip-tiny', path.join(dir, 'e'), (t) => {
      t.set('vision_tower.vision_model.encoder.layers.9.extra', { dtype: 'F32', shape: [2], data: new Float32Array(2) });
    });
    await assert.rejects(loadVisionTower(extra), /1 unexpected tensor: vision_tower\.vision_model\.encoder\.layers\.9\.extra/);
    const lenient = await loadVisionTower(extra, { strict: false });
    lenient.dispose();
    // a tensor read that fails midway disposes what was already loaded
    const noHead = await edited('siglip-vision-tiny', path.join(dir, 'h'), (t) => t.delete('vision_model.head.mlp.fc2.bias'));
    await assert.rejects(loadVisionTower(noHead), /missing 1 tensor: vision_model\.head\.mlp\.fc2\.bias/);
    await assert.rejects(loadVisionTower(visionFixtureDir('clip-vision-tiny'), { prefix: 'vision_tower.' }), /missing \d+ tensors: vision_tower\.embeddings/);
    assert.equal(tf.memory().numTensors, before, 'failed loads leaked tensors');
  } finally {
    await cleanup();
  }
});

test('a SigLIP head is optional: loaded when present, skipped when vision_use_head is false', async () => {
  const withHead = await loadVisionTower(visionFixtureDir('siglip-vision-tiny'));
  try {
    assert.ok(withHead.head);
    assert.equal(withHead.config.useHead, null);
  } finally {
    withHead.dispose();
  }
  const { dir, cleanup } = await tempDir();
  try {
    const d = await edited('siglip-vision-tiny', dir, () => {});
    const t = await loadVisionTower(d, { config: { model_type: 'siglip_vision_model', hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4, image_size: 32, patch_size: 8, vision_use_head: false } });
    try {
      assert.equal(t.head, null);
      const out = tf.tidy(() => t.forward(tf.zeros([1, 3, 32, 32])).pooled);
      assert.equal(out, undefined);
    } finally {
      t.dispose();
    }
  } finally {
    await cleanup();
  }
});
