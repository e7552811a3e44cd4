/** Layer-wise lr decay (src/train/lr-groups.ts): depths of vision-tower keys and the lr multipliers. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UnimeError } from '../../src/errors.js';
import { layerwiseLrScale, visionDepth } from '../../src/train/lr-groups.js';

test('visionDepth: embeddings and pre_layrnorm 0, encoder.layers.i i + 1, everything above L + 1', () => {
  const L = 12;
  const cases: [string, number][] = [
    ['embeddings.patch_embedding.weight', 0],
    ['embeddings.class_embedding', 0],
    ['embeddings.position_embedding.weight', 0],
    ['pre_layrnorm.weight', 0],
    ['encoder.layers.0.self_attn.q_proj.weight', 1],
    ['encoder.layers.5.mlp.fc1.bias', 6],
    ['encoder.layers.11.layer_norm2.weight', 12],
    ['post_layernorm.weight', L + 1],
    ['head.attention.in_proj_weight', L + 1],
    ['visual_projection.weight', L + 1],
  ];
  for (const [key, depth] of cases) assert.equal(visionDepth(key, L), depth, key);
  assert.equal(visionDepth('post_layernorm.bias', 2), 3);
  assert.equal(visionDepth('encoder.layers.1.mlp.fc2.weight', 2), 2);
});

test('layerwiseLrScale: decay^(L + 1 - depth) under the tower prefix, 1 elsewhere', () => {
  const L = 4;
  const d = 0.65;
  const scale = layerwiseLrScale('vision_model.', L, d);
  const close = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) <= 1e-15 * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);
  close(scale('vision_model.embeddings.patch_embedding.weight'), d ** 5, 'embeddings');
  close(scale('vision_model.pre_layrnorm.bias'), d ** 5, 'pre_layrnorm');
  for (let i = 0; i < L; i++) close(scale(`vision_model.encoder.layers.${i}.self_attn.k_proj.weight`), d ** (L - i), `layer ${i}`);
  assert.equal(scale('vision_model.post_layernorm.weight'), 1);
  assert.equal(scale('vision_model.head.probe'), 1);
  for (const name of ['text_adapter.proj.weight', 'image_head.fc1.weight', 'logit_scale', 'embeddings.patch_embedding.weight', 'text_model.encoder.layers.0.mlp.fc1.weight']) {
    assert.equal(scale(name), 1, name);
  }
  // monotone in depth: deeper layers train faster
  const seq = [scale('vision_model.embeddings.x'), ...Array.from({ length: L }, (_, i) => scale(`vision_model.encoder.layers.${i}.w`)), scale('vision_model.post_layernorm.weight')];
  for (let i = 1; i < seq.length; i++) assert.ok(seq[i]! > seq[i - 1]!, `depth ${i}`);
  // decay 1 is no decay
  const flat = layerwiseLrScale('vision_model.', L, 1);
  for (const n of ['vision_model.embeddings.x', 'vision_model.encoder.layers.2.w', 'vision_model.post_layernorm.weight']) assert.equal(flat(n), 1, n);
  // a different prefix
  const other = layerwiseLrScale('clip.vision.', 2, 0.5);
  assert.equal(other('clip.vision.embeddings.patch_embedding.weight'), 0.125);
  assert.equal(other('clip.vision.encoder.layers.1.w'), 0.5);
  assert.equal(other('vision_model.embeddings.patch_embedding.weight'), 1);
});

test('layerwiseLrScale refuses a decay outside (0, 1]', () => {
  for (const d of [0, -0.5, 1.01, Number.NaN, Number.POSITIVE_INFINITY]) {
    assert.throws(() => layerwiseLrScale('vision_model.', 4, d), (e: unknown) => e instanceof UnimeError && e.message.includes('(0, 1]') && e.field === 'vision.layer_decay', `decay ${d}`);
  }
  assert.equal(typeof layerwiseLrScale('v.', 4, 0.01), 'function');
});
