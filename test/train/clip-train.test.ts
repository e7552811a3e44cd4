/**
 * The clip-train engine end to end on the synthetic image-text pairs: LIFT (both losses), LLM2CLIP and
 * ProCLIP (align to a CLIP text encoder, then finetune with the EMA teacher) each train a vision tower
 * from scratch for a few seconds and must beat chance on held-out image<->caption retrieval by a clear
 * margin. The frozen text features here are a bag of words over the captions (imported through the
 * teacher-embed stage's `import:`), so the test measures the image side and the wiring, not the LLM.
 * The saved model then loads in the evaluation's model loader.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { generateSynthetic } from '../../tools/synth/generate.js';
import { CLIP_SIZES } from '../../tools/synth/clip.js';
import { readImageTextRows } from '../../src/train/clip-train.js';
import { initClipModel, saveClipModel } from '../../src/models/clip/index.js';
import { isClipSideModel, loadClipSideModel } from '../../src/models/clip/dual-encoder.js';
import { parseRecipe, runRecipe } from '../../src/recipes/index.js';
import { Rng } from '../../src/runtime/rng.js';
import { useDevice } from '../../src/runtime/devices.js';
import { tempDir } from '../helpers.js';
import '../../src/train/teacher-embed.js';
import '../../src/train/clip-train.js';
import '../../src/train/mllm-align.js';

let dir: string;
let cleanup: () => Promise<void>;
let syn: string;
let vocab: string[];
const quiet = () => ({ info: (_: string) => {}, warn: (_: string) => {} });

function words(t: string): string[] {
  return t.toLowerCase().match(/[a-z]+/g) ?? [];
}

/** A float32 .npy file of a [rows, cols] matrix. */
async function writeNpy(file: string, data: Float32Array, rows: number, cols: number): Promise<void> {
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${rows}, ${cols}), }`;
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  const head = Buffer.alloc(10);
  Buffer.from([0x93]).copy(head, 0);
  head.write('NUMPY', 1, 'latin1');
  head[6] = 1;
  head[7] = 0;
  head.writeUInt16LE(header.length, 8);
  await fsp.writeFile(file, Buffer.concat([head, Buffer.from(header, 'latin1'), Buffer.from(data.buffer, data.byteOffset, data.byteLength)]));
}

before(async () => {
  ({ dir, cleanup } = await tempDir());
  await useDevice('auto');
  syn = path.join(dir, 'syn');
  await generateSynthetic({ out: syn, seed: 0, size: 'small' });
  // bag-of-words "LLM features" of every caption, train and test
  const data = { image_root: null, image_column: 'image', caption_column: 'caption', negative_column: 'neg_caption', max_samples: null };
  const rows = [...(await readImageTextRows({ ...data, path: path.join(syn, 'image-text', 'train.parquet') })), ...(await readImageTextRows({ ...data, path: path.join(syn, 'image-text', 'test.parquet') }))];
  const captions = [...new Set(rows.flatMap((r) => [r.caption, r.negative!]))];
  vocab = [...new Set(captions.flatMap(words))].sort();
  const m = new Float32Array(captions.length * vocab.length);
  captions.forEach((c, i) => {
    for (const w of words(c)) m[i * vocab.length + vocab.indexOf(w)]! += 1;
  });
  // centred, so the words every caption shares do not dominate the cosine
  for (let k = 0; k < vocab.length; k++) {
    let mean = 0;
    for (let i = 0; i < captions.length; i++) mean += m[i * vocab.length + k]! / captions.length;
    for (let i = 0; i < captions.length; i++) m[i * vocab.length + k]! -= mean;
  }
  await writeNpy(path.join(dir, 'bow.npy'), m, captions.length, vocab.length);
  await fsp.writeFile(path.join(dir, 'bow.txt'), captions.join('\n') + '\n');
  // a tiny random CLIP (text tower + projections) for ProCLIP's align phase, with the synthetic
  // tokenizer and an end-of-text id of its own (140, past the tokenizer's ids, as CLIP's is its highest)
  const clip = initClipModel({ vision: 'vit-tiny-8', imageSize: 48, text: { vocabSize: 141, eosTokenId: 140, preset: 'text-tiny', maxPositions: 64 }, projectionDim: 32, rng: new Rng(7) });
  await saveClipModel(path.join(dir, 'clip'), clip);
  clip.dispose();
  for (const f of ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'vocab.txt']) {
    const src = path.join(syn, 'models', 'tiny-mllm', f);
    if (existsSync(src)) await fsp.copyFile(src, path.join(dir, 'clip', f));
  }
});
after(() => cleanup());

function recipe(out: string, stages: string): string {
  return `name: clip-test
seed: 1
output_dir: ${JSON.stringify(out)}
vars:
  syn: ${JSON.stringify(syn)}
stages:
  - name: features
    kind: teacher-embed
    data: {path: "\${vars.syn}/image-text", text_columns: [caption, neg_caption]}
    import: {path: ${JSON.stringify(path.join(dir, 'bow.npy'))}, keys: ${JSON.stringify(path.join(dir, 'bow.txt'))}}
${stages}`;
}

function clipStage(name: string, body: string): string {
  return `  - name: ${name}
    kind: clip-train
    text_model: \${vars.syn}/models/tiny-teacher
    text_features: \${stages.features.output_dir}
    data: {path: "\${vars.syn}/image-text/train.parquet"}
    eval_data: \${vars.syn}/image-text/test.parquet
    image_size: 48
${body}
`;
}

interface Retrieval {
  i2t_r1: number;
  t2i_r1: number;
  mean: number;
  images: number;
}

/** The mean of R@1/5/10 both ways must clear `factor` times its chance value (R@k = k / images) and the untrained model. */
function assertBeatsChance(r: Record<string, unknown>, label: string, factor = 2.5): void {
  const after = r.retrieval_after as Retrieval;
  const before = r.retrieval_before as Retrieval;
  assert.equal(r.chance_r1, 100 / after.images);
  const chanceMean = (100 * (1 + 5 + 10)) / 3 / after.images;
  assert.ok(after.mean > factor * chanceMean, `${label}: mean recall after training ${after.mean.toFixed(1)} (R@1 ${after.i2t_r1} / ${after.t2i_r1}), chance ${chanceMean.toFixed(1)}`);
  assert.ok(after.mean > before.mean + 5, `${label}: mean recall ${before.mean.toFixed(1)} before, ${after.mean.toFixed(1)} after training`);
  assert.ok((r.final_loss as number) < (r.first_loss as number), `${label}: loss ${r.first_loss} -> ${r.final_loss}`);
}

test('LIFT (InfoNCE and positive-only cosine) and LLM2CLIP train a tower from scratch above chance', async () => {
  const out = path.join(dir, 'run1');
  const text = recipe(
    out,
    clipStage(
      'lift',
      `    method: lift
    vision: {arch: vit-tiny-8}
    head: {hidden_dim: 128, out_dim: ${vocab.length}}
    train: {lr: 2.0e-3, epochs: 6, batch_size: 64, warmup_ratio: 0.1, save_every: null}`,
    ) +
      clipStage(
        'lift-cos',
        `    method: lift
    vision: {arch: vit-tiny-8}
    head: {hidden_dim: 128, out_dim: ${vocab.length}}
    loss: {type: cosine}
    train: {lr: 3.0e-3, epochs: 10, batch_size: 64, warmup_ratio: 0.1, save_every: null}`,
      ) +
      clipStage(
        'llm2clip',
        `    method: llm2clip
    vision: {arch: vit-tiny-8}
    adapter: {blocks: 2, hidden_mult: 2, embed_dim: 32}
    train: {lr: 2.0e-3, epochs: 6, batch_size: 64, warmup_ratio: 0.1, save_every: null}`,
      ),
  );
  const run = await runRecipe(parseRecipe(text, { file: 'clip.yaml', env: {} }), { log: quiet(), hub: { offline: true } });
  assert.deepEqual(run.stages.map((s) => s.status), ['ran', 'ran', 'ran', 'ran']);
  const [, lift, cos, l2c] = run.stages.map((s) => (s as { result?: Record<string, unknown> }).result!);
  assertBeatsChance(lift!, 'lift');
  assertBeatsChance(cos!, 'lift cosine');
  assertBeatsChance(l2c!, 'llm2clip');
  // the saved model: the format, the learned scale, and a reload that embeds as the trained one did
  const modelDir = path.join(out, 'llm2clip', 'model');
  assert.ok(isClipSideModel(modelDir));
  const m = await loadClipSideModel(modelDir);
  try {
    assert.equal(m.config.method, 'llm2clip');
    assert.equal(m.config.embed_dim, 32);
    assert.equal(m.config.text.adapter?.blocks, 2);
    assert.ok(m.config.logit_scale! > 0 && m.config.logit_scale! <= 100);
  } finally {
    m.dispose();
  }
  const liftCfg = JSON.parse(await fsp.readFile(path.join(out, 'lift-cos', 'model', 'unime_clip.json'), 'utf8'));
  assert.equal(liftCfg.logit_scale, null, 'the cosine loss has no temperature');
  assert.equal(liftCfg.image.projection, 'mlp');
});

test('ProCLIP: align the adapter to a CLIP text encoder, then finetune with the EMA teacher from it', async () => {
  const out = path.join(dir, 'run2');
  const clip = path.join(dir, 'clip');
  const text = recipe(
    out,
    clipStage(
      'align',
      `    method: proclip
    phase: align
    vision: {model: ${JSON.stringify(clip)}}
    clip_text_model: ${JSON.stringify(clip)}
    train: {lr: 3.0e-3, epochs: 4, batch_size: 64, save_every: null}`,
    ) +
      clipStage(
        'finetune',
        `    method: proclip
    phase: finetune
    init_from: align
    vision: {model: ${JSON.stringify(clip)}}
    loss: {distill_weight: 0.2, ema_decay: 0.9}
    train: {lr: 2.0e-3, epochs: 10, batch_size: 64, warmup_ratio: 0.1, save_every: 40}`,
      ),
  );
  const run = await runRecipe(parseRecipe(text, { file: 'proclip.yaml', env: {} }), { log: quiet(), hub: { offline: true } });
  assert.deepEqual(run.stages.map((s) => s.status), ['ran', 'ran', 'ran']);
  const [, align, ft] = run.stages.map((s) => (s as { result?: Record<string, unknown> }).result!);
  // align trains only the adapter: its loss falls, the image side stays the CLIP's
  assert.ok((align!.final_loss as number) < (align!.first_loss as number), `align loss ${align!.first_loss} -> ${align!.final_loss}`);
  assert.ok((align!.trainable_parameters as number) < 200_000);
  assertBeatsChance(ft!, 'proclip finetune');
  // the EMA teacher is checkpointed with the run, so a resume continues the same average
  const ckpts = await fsp.readdir(path.join(out, 'finetune', 'checkpoints'));
  assert.ok(ckpts.some((c) => existsSync(path.join(out, 'finetune', 'checkpoints', c, 'ema.safetensors'))), ckpts.join(', '));
  const metrics = (await fsp.readFile(path.join(out, 'finetune', 'metrics.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
  assert.ok(metrics.some((m) => typeof m.instance === 'number' && typeof m.contrastive === 'number'), 'the distillation terms are logged');
});

test('a LIFT tower in the tiny LLaVA\'s shape, then mllm-align: the aligned MLLM retrieves captions well above chance', async () => {
  // The quickstart's recipe for a base MLLM, shortened: a tower from scratch against the (bag-of-words)
  // caption features, lent to the random tiny LLaVA, whose projector and decoder then learn image ->
  // caption. (With its own random tower, mllm-align collapses to one embedding: the loss sits at ln(batch).)
  const out = path.join(dir, 'run-align');
  const text =
    recipe(
      out,
      clipStage(
        'vision',
        `    method: lift
    vision: {arch: vit-tiny-8, pooling: mean}
    head: {hidden_dim: 128, out_dim: ${vocab.length}}
    train: {lr: 2.0e-3, epochs: 8, batch_size: 64, warmup_ratio: 0.1, save_every: null}`,
      ).replace('image_size: 48', 'image_size: 32'),
    ) +
    `  - name: align
    kind: mllm-align
    model: \${vars.syn}/models/tiny-mllm
    vision_from: \${stages.vision.output_dir}/model
    data: {path: "\${vars.syn}/image-text/train.parquet"}
    eval_data: \${vars.syn}/image-text/test.parquet
    train: {lr: 1.0e-3, max_steps: 100, batch_size: 32, warmup_ratio: 0.05, save_every: null}
`;
  const run = await runRecipe(parseRecipe(text, { file: 'align.yaml', env: {} }), { log: quiet(), hub: { offline: true } });
  const r = (run.stages[2] as { result?: Record<string, unknown> }).result!;
  const before = r.retrieval_before as { i2t_r1: number; t2i_r1: number; images: number };
  const after = r.retrieval_after as { i2t_r1: number; t2i_r1: number; images: number };
  const chance = 100 / after.images;
  const mean = (x: { i2t_r1: number; t2i_r1: number }) => (x.i2t_r1 + x.t2i_r1) / 2;
  assert.ok(mean(after) > 4 * chance, `held-out R@1 after alignment ${after.i2t_r1} / ${after.t2i_r1}, chance ${chance.toFixed(2)}`);
  assert.ok(mean(after) > mean(before) + 3, `held-out R@1 ${mean(before)} before, ${mean(after)} after`);
  const losses = r.losses as number[];
  const last = losses.slice(-5).reduce((a, b) => a + b, 0) / 5;
  assert.ok(last < Math.log(32) - 0.5, `loss ${last.toFixed(3)} at the end, ln(batch) = ${Math.log(32).toFixed(3)} (collapsed)`);
});

test('NegCLIP hard-negative captions (negative_column): extra image -> text columns from the feature cache', async () => {
  const out = path.join(dir, 'run-neg');
  const lift = (name: string, neg: boolean) =>
    clipStage(name, `    method: lift\n    vision: {arch: vit-tiny-8}\n    head: {hidden_dim: 64, out_dim: ${vocab.length}}\n    train: {lr: 2.0e-3, epochs: 6, batch_size: 64, warmup_ratio: 0.1, save_every: null}`).replace(
      'data: {path: "${vars.syn}/image-text/train.parquet"}',
      `data: {path: "\${vars.syn}/image-text/train.parquet"${neg ? ', negative_column: neg_caption' : ''}}`,
    );
  const run = await runRecipe(parseRecipe(recipe(out, lift('plain', false) + lift('neg', true)), { file: 'neg.yaml', env: {} }), { log: quiet(), hub: { offline: true } });
  const [, plain, neg] = run.stages.map((s) => (s as { result?: Record<string, unknown> }).result!);
  assertBeatsChance(neg!, 'lift with hard negatives');
  // the same seed gives the same first batch and weights: the extra columns can only raise the image -> text loss
  assert.ok((neg!.first_loss as number) > (plain!.first_loss as number) + 1e-3, `first loss ${neg!.first_loss} with negatives, ${plain!.first_loss} without`);
  assert.equal(neg!.negatives, CLIP_SIZES.small.train + CLIP_SIZES.small.single);
  assert.equal(plain!.negatives, 0);

  // LLM2CLIP's adapter embeds the negatives too: through GradCache (chunks mixing captions and
  // negatives) the steps must be those of the plain gradient, losses included
  const l2c = (name: string, chunk: number | null) =>
    clipStage(name, `    method: llm2clip\n    vision: {arch: vit-tiny-8}\n    adapter: {blocks: 1, hidden_mult: 2, embed_dim: 32}\n    train: {lr: 2.0e-3, max_steps: 4, batch_size: 24, gradcache_chunk_size: ${chunk}, warmup_ratio: 0, save_every: null}`).replace(
      'data: {path: "${vars.syn}/image-text/train.parquet"}',
      'data: {path: "\${vars.syn}/image-text/train.parquet", negative_column: neg_caption}',
    );
  // (one recipe each, the stage at the same place: its index seeds the weights and the batch order)
  const l2cRun = async (chunk: number | null) => {
    const r = await runRecipe(parseRecipe(recipe(path.join(dir, `run-neg-gc-${chunk}`), l2c('l2c', chunk)), { file: 'neg-gc.yaml', env: {} }), { log: quiet(), hub: { offline: true } });
    return (r.stages[1] as { result?: Record<string, unknown> }).result!;
  };
  const whole = await l2cRun(null);
  const chunked = await l2cRun(10);
  const lw = whole!.losses as number[], lc = chunked!.losses as number[];
  assert.equal(lw.length, 4);
  lw.forEach((l, i) => assert.ok(Math.abs(l - lc[i]!) < 1e-3 * Math.max(1, Math.abs(l)), `step ${i + 1}: loss ${l} whole, ${lc[i]} with GradCache`));
  assert.ok(lw[3]! !== lw[0]!, 'the steps changed the model');
});

test('bad clip-train input names the field and the fix', async () => {
  const out = path.join(dir, 'run3');
  const text = recipe(
    out,
    clipStage(
      'lift',
      `    method: lift
    vision: {arch: vit-tiny-8}
    head: {hidden_dim: 64, out_dim: 7}
    train: {lr: 1.0e-3, max_steps: 1, batch_size: 8}`,
    ),
  );
  await assert.rejects(runRecipe(parseRecipe(text, { file: 'bad.yaml', env: {} }), { log: quiet(), hub: { offline: true } }), (e: Error) => /head\.out_dim/.test(e.message) && /LIFT maps images onto the text features/.test(e.message));
  const wrongCol = recipe(out, clipStage('lift', `    method: lift\n    vision: {arch: nope-9}\n    head: {hidden_dim: 64, out_dim: ${vocab.length}}\n    train: {lr: 1.0e-3, max_steps: 1, batch_size: 8}`));
  await assert.rejects(runRecipe(parseRecipe(wrongCol, { file: 'bad2.yaml', env: {} }), { log: quiet(), hub: { offline: true }, force: true } as never), (e: Error) => /vit-tiny-8/.test(e.message));
  await assert.rejects(
    readImageTextRows({ path: path.join(syn, 'image-text', 'train.parquet'), image_root: null, image_column: 'image', caption_column: 'nope', max_samples: null }),
    (e: Error) => /caption_column/.test(e.message) && /long_caption/.test(e.message),
  );
  await assert.rejects(
    readImageTextRows({ path: path.join(syn, 'image-text', 'train.parquet'), image_root: null, image_column: 'image', caption_column: 'caption', negative_column: 'negs', max_samples: null }),
    (e: Error) => /negative_column/.test(e.message) && /"negs"/.test(e.message) && /neg_caption/.test(e.message),
  );
  // the cosine loss has no negatives to add them to
  const cosNeg = recipe(out, clipStage('lift', `    method: lift\n    vision: {arch: vit-tiny-8}\n    head: {hidden_dim: 64, out_dim: ${vocab.length}}\n    loss: {type: cosine}\n    train: {lr: 1.0e-3, max_steps: 1, batch_size: 8}`).replace('train.parquet"}', 'train.parquet", negative_column: neg_caption}'));
  assert.throws(() => parseRecipe(cosNeg, { file: 'bad3.yaml', env: {} }), (e: Error) => /negative_column/.test(e.message) && /infonce/.test(e.message));
});
