/** `unime inspect` on LLaVA checkpoints: the assembly (tower, features, projector, decoder, image tokens) in both layouts. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { fixture, tempDir } from '../helpers.js';
import type { InspectReport } from '../../src/cli/inspect.js';
import { runCli } from './run-cli.js';

test('inspect shows a LLaVA checkpoint as an assembly, new and old layouts alike', async () => {
  for (const [name, tower, projector, decoder] of [
    ['llava-tiny', 'model.vision_tower.vision_model.', 'model.multi_modal_projector.', 'model.language_model.'],
    ['llava-tiny-old', 'vision_tower.vision_model.', 'multi_modal_projector.', 'language_model.model.'],
  ] as const) {
    const r = await runCli(['inspect', fixture('llava', name), '--no-tensors']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /assembly\s+LLaVA: vision tower -> multi_modal_projector -> llama decoder/);
    assert.match(r.stdout, new RegExp(`tower\\s+clip_vision_model, 16x16 images, patch 4 \\(4x4 grid\\), hidden 16, 2 layers; 5\\.0K params under ${tower.replace(/\./g, '\\.')}`));
    assert.match(r.stdout, /features\s+hidden_states -2, strategy default \(class token dropped\)/);
    assert.match(r.stdout, new RegExp(`projector\\s+16 -> 12 -> 12 \\(gelu\\); 360 params under ${projector.replace(/\./g, '\\.')}`));
    assert.match(r.stdout, new RegExp(`decoder\\s+llama, hidden 12, 2 layers, vocab 426; 7\\.8K params under ${decoder.replace(/\./g, '\\.')} \\+ lm_head 5\\.1K`));
    assert.match(r.stdout, /image\s+16 tokens per image \(<image> id 425\)/);
  }
});

test('inspect --json carries the assembly; multi-layer full selection counts the class token', async () => {
  const r = await runCli(['inspect', fixture('llava', 'llava-tiny-full'), '--json']);
  assert.equal(r.code, 0, r.stderr);
  const rep = JSON.parse(r.stdout) as InspectReport;
  const a = rep.assembly!;
  assert.equal(a.modelType, 'llava');
  assert.deepEqual(a.features, { layer: [-2, -1], strategy: 'full' });
  assert.equal(a.projector.inDim, 32);
  assert.equal(a.imageTokens, 17);
  assert.equal(a.imageToken, '<image>');
  assert.equal(a.tower.params + a.projector.params + a.decoder.params + a.decoder.lmHeadParams, rep.parameters);
  const plain = await runCli(['inspect', fixture('models', 'llama-tiny'), '--json']);
  assert.equal((JSON.parse(plain.stdout) as InspectReport).assembly, null);
});

test('inspect still describes a LLaVA checkpoint whose feature selection is invalid, and names the problem', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const src = fixture('llava', 'llava-tiny');
    await fsp.copyFile(path.join(src, 'model.safetensors'), path.join(dir, 'model.safetensors'));
    const cfg = JSON.parse(await fsp.readFile(path.join(src, 'config.json'), 'utf8')) as Record<string, unknown>;
    await fsp.writeFile(path.join(dir, 'config.json'), JSON.stringify({ ...cfg, vision_feature_select_strategy: 'cls' }));
    const r = await runCli(['inspect', dir, '--no-tensors']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /problem\s+.*vision_feature_select_strategy: must be "default" or "full"/);
    assert.match(r.stdout, /image\s+16 tokens per image \(token id 425\)/);
  } finally {
    await cleanup();
  }
});
