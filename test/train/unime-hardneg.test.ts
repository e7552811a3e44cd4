/**
 * The unime-hardneg engine end to end on the synthetic benchmark's tiny LLaVA: stage 1 (teacher
 * cache + distill) then stage 2 from its adapter; the stage-2 adapter sits on the merged stage-1
 * one, the base checkpoint is untouched, and the per-step false-negative statistics are logged.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { generateSynthetic } from '../../tools/synth/generate.js';
import { MultimodalEmbedder } from '../../src/models/mllm/embedder.js';
import { loadMultimodalModel } from '../../src/models/mllm/load.js';
import { mergeMultimodalAdapterChain, multimodalLoraTarget } from '../../src/models/mllm/lora-target.js';
import type { MultimodalModel } from '../../src/models/mllm/types.js';
import { exportMergedCheckpoint } from '../../src/models/export.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { ADAPTER_CHAIN_FILE, ADAPTER_CONFIG, ADAPTER_WEIGHTS, resolveAdapterChain } from '../../src/models/peft/index.js';
import { parseRecipe, runRecipe } from '../../src/recipes/index.js';
import { useDevice } from '../../src/runtime/devices.js';
import { tempDir } from '../helpers.js';
import '../../src/train/teacher-embed.js';
import '../../src/train/unime-distill.js';
import '../../src/train/unime-hardneg.js';

let dir: string;
let cleanup: () => Promise<void>;
const quiet = () => ({ info: (_: string) => {}, warn: (_: string) => {} });

async function hashDir(d: string): Promise<string> {
  const h = createHash('sha256');
  for (const n of (await fsp.readdir(d)).sort()) h.update(n).update(await fsp.readFile(path.join(d, n)));
  return h.digest('hex');
}

before(async () => {
  ({ dir, cleanup } = await tempDir());
  await useDevice('auto'); // the native kernels when the addon is built, as `unime train` runs
  await generateSynthetic({ out: path.join(dir, 'syn'), seed: 0, size: 'tiny' });
});
after(() => cleanup());

function recipe(out: string, hardneg: string): string {
  const syn = path.join(dir, 'syn');
  return `name: hardneg-test
seed: 3
output_dir: ${JSON.stringify(out)}
vars:
  syn: ${JSON.stringify(syn)}
stages:
  - name: teacher
    kind: teacher-embed
    teacher: \${vars.syn}/models/tiny-teacher
    data: {path: "\${vars.syn}/text-pairs.jsonl"}
    max_length: 32
    batch_size: 16
  - name: distill
    kind: unime-distill
    model: \${vars.syn}/models/tiny-mllm
    data: {path: "\${vars.syn}/text-pairs.jsonl"}
    prompt_template: "<sent>\\nSummary above sentence in one word:"
    max_length: 32
    quantization: none
    teacher_cache: \${stages.teacher.output_dir}
    lora: {rank: 4, alpha: 8, dropout: 0.0}
    train: {lr: 1.0e-3, epochs: null, max_steps: 2, batch_size: 8, gradcache_chunk_size: 4, warmup_ratio: 0, log_every: 1}
  - name: hardneg
    kind: unime-hardneg
    model: \${vars.syn}/models/tiny-mllm
    init_from: distill
    data: {root: "\${vars.syn}/mmeb-train", cap_per_subset: 8}
    max_length: 48
${hardneg}`;
}

test('unime-hardneg trains a fresh LoRA over the merged stage-1 adapter and logs false-negative statistics', async () => {
  const model = path.join(dir, 'syn', 'models', 'tiny-mllm');
  const before = await hashDir(model);
  const out = path.join(dir, 'run');
  const text = recipe(
    out,
    `    loss: {mode: hardneg, temperature: 0.02, false_negative_beta: 0.1, hard_negatives: 3}
    lora: {rank: 4, alpha: 8, dropout: 0.1}
    train: {lr: 1.0e-3, max_steps: 3, batch_size: 8, gradcache_chunk_size: 3, warmup_ratio: 0, log_every: 1, save_every: 2}
`,
  );
  const run = await runRecipe(parseRecipe(text, { file: 'hardneg.yaml', env: {} }), { log: quiet(), hub: { offline: true } });
  assert.deepEqual(
    run.stages.map((s) => s.status),
    ['ran', 'ran', 'ran'],
  );
  const r = (run.stages[2] as { result?: Record<string, unknown> }).result!;
  assert.equal(r.steps, 3);
  assert.ok((r.losses as number[]).every(Number.isFinite));
  const hn = path.join(out, 'hardneg');
  for (const f of [ADAPTER_CONFIG, ADAPTER_WEIGHTS]) assert.ok(existsSync(path.join(hn, 'adapter', f)), f);
  // The chain: stage 1's adapter under stage 2's own.
  const chain = await resolveAdapterChain(hn);
  assert.deepEqual(chain, [path.join(out, 'distill', 'adapter'), path.join(hn, 'adapter')]);
  assert.deepEqual(JSON.parse(await fsp.readFile(path.join(hn, ADAPTER_CHAIN_FILE), 'utf8')), [path.join(out, 'distill', 'adapter')]);
  // Per-step statistics of the filter and the similarities.
  const metrics = (await fsp.readFile(path.join(hn, 'metrics.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
  assert.equal(metrics.length, 3);
  for (const m of metrics) {
    assert.ok(m.false_negative_rate! >= 0 && m.false_negative_rate! <= 1, `fn rate ${m.false_negative_rate}`);
    assert.ok(Math.abs(m.pos_sim!) <= 1);
    // copies of a row's positive (same label or answer) are counted, and left out of its negatives
    assert.ok(m.positive_copies! >= 0 && m.positive_copies! < 8, `positive copies ${m.positive_copies}`);
  }
  // The base checkpoint is untouched; the trained model embeds differently from it.
  assert.equal(await hashDir(model), before);
  const item = { text: '<|image_1|>\nRepresent the given image for classification', image: path.join(dir, 'syn', 'mmeb-train', 'images', 'SynCls', (await fsp.readdir(path.join(dir, 'syn', 'mmeb-train', 'images', 'SynCls')))[0]!) };
  const base = await MultimodalEmbedder.load(model);
  const trained = await MultimodalEmbedder.load(model, { adapters: chain });
  try {
    const [a, b] = [await base.embed([item, { text: 'a red circle' }]), await trained.embed([item, { text: 'a red circle' }])];
    let diff = 0;
    for (let i = 0; i < a.length; i++) diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    assert.ok(diff > 1e-4, `trained adapters change the embeddings (max diff ${diff})`);
  } finally {
    base.dispose();
    trained.dispose();
  }
});

test('unime-hardneg in-batch mode with the rows\' own negatives among the candidates', async () => {
  const out = path.join(dir, 'run-inbatch');
  const text = recipe(
    out,
    `    loss: {mode: inbatch, temperature: 0.05, dataset_negatives: true, exclude_positive_copies: false}
    lora: {rank: 2, alpha: 4, dropout: 0.0}
    train: {lr: 1.0e-3, max_steps: 2, batch_size: 6, gradcache_chunk_size: 4, warmup_ratio: 0, log_every: 1}
`,
  );
  const run = await runRecipe(parseRecipe(text, { file: 'inbatch.yaml', env: {} }), { log: quiet(), only: ['hardneg'], hub: { offline: true } }).catch((e: Error) => e);
  // Running only stage 2 needs stage 1's output: the runner says so rather than training on a missing adapter.
  assert.ok(run instanceof Error && /has not completed/.test(run.message), String(run));
  const full = await runRecipe(parseRecipe(text, { file: 'inbatch.yaml', env: {} }), { log: quiet(), hub: { offline: true } });
  const r = (full.stages[2] as { result?: Record<string, unknown> }).result!;
  assert.equal(r.steps, 2);
  assert.ok((r.losses as number[]).every(Number.isFinite));
  // exclude_positive_copies: false counts copies as negatives and logs no copy statistic
  const metrics = (await fsp.readFile(path.join(out, 'hardneg', 'metrics.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
  assert.ok(metrics.every((m) => !('positive_copies' in m)));
});

test('unime-hardneg loss.inbatch_warmup_steps: in-batch InfoNCE for the first steps, then the hard negatives', async () => {
  const out = path.join(dir, 'run-warmup');
  const text = recipe(
    out,
    `    loss: {mode: hardneg, temperature: 0.05, hard_negatives: 3, inbatch_warmup_steps: 2}
    lora: {rank: 2, alpha: 4, dropout: 0.0}
    train: {lr: 1.0e-3, max_steps: 4, batch_size: 8, gradcache_chunk_size: 4, warmup_ratio: 0, log_every: 1}
`,
  );
  const run = await runRecipe(parseRecipe(text, { file: 'warmup.yaml', env: {} }), { log: quiet(), hub: { offline: true } });
  assert.equal((run.stages[2] as { result?: { steps: number } }).result!.steps, 4);
  const metrics = (await fsp.readFile(path.join(out, 'hardneg', 'metrics.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
  // The hard-negative statistics exist only once the hard-negative loss runs (steps 3 and 4).
  assert.deepEqual(
    metrics.map((m) => m.step),
    [1, 2, 3, 4],
  );
  assert.deepEqual(
    metrics.map((m) => 'false_negative_rate' in m),
    [false, false, true, true],
  );
});

test('unime-hardneg refuses an image size the tower does not take, naming the field', async () => {
  const out = path.join(dir, 'run-size');
  const text = recipe(out, `    image_size: 336\n    train: {max_steps: 1, batch_size: 4, gradcache_chunk_size: 4}\n    loss: {hard_negatives: 2}\n`);
  await assert.rejects(runRecipe(parseRecipe(text, { file: 'size.yaml', env: {} }), { log: quiet(), hub: { offline: true } }), /image_size.*32x32/s);
});

test('CollapseWatch says once that embeddings collapsed after five steps of cosines near 1, and not for a healthy run', async () => {
  const { CollapseWatch } = await import('../../src/train/unime-hardneg.js');
  const w = new CollapseWatch();
  const collapsed = { pos_sim: 0.9999, hard_neg_sim: 0.9998 };
  const said = [collapsed, collapsed, collapsed, { pos_sim: 0.6, hard_neg_sim: 0.999 }, ...Array(7).fill(collapsed)].map((s) => w.update(s));
  assert.deepEqual(said, [false, false, false, false, false, false, false, false, true, false, false]);
  const healthy = new CollapseWatch();
  assert.ok(Array.from({ length: 20 }, () => healthy.update({ pos_sim: 0.8, hard_neg_sim: 0.5 })).every((x) => !x));
});

test('lora.vision_tower: one peft adapter over the language model and the vision tower, merged into both by eval and export', async () => {
  const model = path.join(dir, 'syn', 'models', 'tiny-mllm');
  const out = path.join(dir, 'run-vision');
  const text = recipe(
    out,
    `    loss: {mode: inbatch, temperature: 0.05}
    lora: {rank: 4, alpha: 8, dropout: 0.0, target_modules: [q_proj, k_proj, v_proj, o_proj, out_proj], vision_tower: true}
    train: {lr: 1.0e-2, max_steps: 3, batch_size: 8, gradcache_chunk_size: 4, warmup_ratio: 0, log_every: 1}
`,
  );
  const run = await runRecipe(parseRecipe(text, { file: 'vision.yaml', env: {} }), { log: quiet(), hub: { offline: true } });
  assert.deepEqual(run.stages.map((s) => s.status), ['ran', 'ran', 'ran']);
  const adapterDir = path.join(out, 'hardneg', 'adapter');
  const cfg = JSON.parse(await fsp.readFile(path.join(adapterDir, ADAPTER_CONFIG), 'utf8')) as { target_modules: string[] };
  assert.deepEqual(cfg.target_modules, ['k_proj', 'o_proj', 'out_proj', 'q_proj', 'v_proj']);
  // peft's keys for the whole LlavaForConditionalGeneration: both parts under their checkpoint names
  const file = await SafetensorsFile.open(path.join(adapterDir, ADAPTER_WEIGHTS));
  const names = file.names;
  const vq = 'base_model.model.model.vision_tower.vision_model.encoder.layers.0.self_attn.q_proj';
  assert.ok(names.includes(`${vq}.lora_A.weight`) && names.includes(`${vq}.lora_B.weight`), names.slice(0, 6).join(', '));
  assert.ok(names.includes('base_model.model.model.vision_tower.vision_model.encoder.layers.0.self_attn.out_proj.lora_B.weight'));
  assert.ok(names.includes('base_model.model.model.language_model.layers.0.self_attn.o_proj.lora_B.weight'));
  // every vision layer's q/k/v/out and every decoder layer's q/k/v/o: 2 x 4 + 4 x 4 modules, A and B each
  assert.equal(names.length, 2 * (2 * 4 + 4 * 4));
  // the tower's first layer feeds the LLaVA (vision_feature_layer -2 of 2): it learnt something
  const b = await file.readFloat32(`${vq}.lora_B.weight`);
  const a = await file.readFloat32(`${vq}.lora_A.weight`);
  await file.close();
  assert.ok(b.some((x) => x !== 0), 'the vision LoRA got gradients');

  // Merged for evaluation: the tower's q_proj is the base weight plus scaling * B A (scaling alpha / r = 2).
  const chain = await resolveAdapterChain(path.join(out, 'hardneg'));
  const base = await loadMultimodalModel(model, { trainable: false });
  const merged = await loadMultimodalModel(model, { trainable: false });
  try {
    await mergeMultimodalAdapterChain(merged, chain);
    const key = 'encoder.layers.0.self_attn.q_proj.weight';
    const w0 = base.vision!.weights.get(key)!.dataSync();
    const w1 = merged.vision!.weights.get(key)!.dataSync();
    const [outDim, inDim] = base.vision!.weights.get(key)!.shape as [number, number];
    let err = 0;
    for (let o = 0; o < outDim; o++) {
      for (let i = 0; i < inDim; i++) {
        let d = 0;
        for (let r = 0; r < 4; r++) d += b[o * 4 + r]! * a[r * inDim + i]!;
        err = Math.max(err, Math.abs(w1[o * inDim + i]! - (w0[o * inDim + i]! + 2 * d)));
      }
    }
    assert.ok(err < 1e-5, `merged tower weight = base + scaling B A (max error ${err})`);
    // a decoder-only adapter (stage 1's) still merges into the decoder alone
    const distillOnly = await loadMultimodalModel(model, { trainable: false });
    try {
      await mergeMultimodalAdapterChain(distillOnly, [chain[0]!]);
      assert.deepEqual(distillOnly.vision!.weights.get(key)!.dataSync(), w0);
    } finally {
      distillOnly.dispose();
    }
  } finally {
    base.dispose();
    merged.dispose();
  }

  // Exported: a plain checkpoint whose tower carries the merged weights, and embeds as the adapters do.
  const exported = path.join(dir, 'export-vision');
  await exportMergedCheckpoint(model, exported, { adapters: [path.join(out, 'hardneg')] });
  const item = { text: '<|image_1|>\nRepresent the given image for classification', image: path.join(dir, 'syn', 'mmeb-train', 'images', 'SynCls', (await fsp.readdir(path.join(dir, 'syn', 'mmeb-train', 'images', 'SynCls')))[0]!) };
  const viaAdapters = await MultimodalEmbedder.load(model, { adapters: chain });
  const plain = await MultimodalEmbedder.load(exported);
  try {
    const [x, y] = [await viaAdapters.embed([item]), await plain.embed([item])];
    let diff = 0;
    for (let i = 0; i < x.length; i++) diff = Math.max(diff, Math.abs(x[i]! - y[i]!));
    assert.ok(diff < 1e-4, `export embeds like base + adapters (max diff ${diff})`);
  } finally {
    viaAdapters.dispose();
    plain.dispose();
  }
});

test('lora.vision_tower belongs to unime-hardneg (other kinds refuse it) and needs a vision tower, naming the field', () => {
  const text = recipe(
    path.join(dir, 'run-refused'),
    `    lora: {vision_tower: true}
`,
  );
  // the schema takes it for unime-hardneg and nowhere else
  assert.doesNotThrow(() => parseRecipe(text, { file: 'v.yaml', env: {} }));
  const bad = text.replace('    lora: {rank: 4, alpha: 8, dropout: 0.0}\n    train: {lr: 1.0e-3, epochs: null', '    lora: {rank: 4, alpha: 8, dropout: 0.0, vision_tower: true}\n    train: {lr: 1.0e-3, epochs: null');
  assert.throws(() => parseRecipe(bad, { file: 'v.yaml', env: {} }), /vision_tower/);
  const textOnly = { dir: '/models/text-only', decoder: {} } as unknown as MultimodalModel;
  assert.equal(multimodalLoraTarget(textOnly, false), textOnly.decoder);
  assert.throws(() => multimodalLoraTarget(textOnly, true), (e: Error & { field?: string }) => /text-only model/.test(e.message) && e.field === 'lora.vision_tower');
});
