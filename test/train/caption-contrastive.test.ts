import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { ADAPTER_CHAIN_FILE, ADAPTER_CONFIG, ADAPTER_WEIGHTS } from '../../src/models/peft/index.js';
import { loadTextDecoder } from '../../src/models/text/load.js';
import { parseRecipe, runRecipe } from '../../src/recipes/index.js';
import { Rng } from '../../src/runtime/rng.js';
import { tf } from '../../src/runtime/tf.js';
import { useDevice } from '../../src/runtime/devices.js';
import { captionContrastiveLoss, captionTriples } from '../../src/train/caption-contrastive.js';
import { readTeacherCache, type TeacherCache } from '../../src/train/teacher-embed.js';
import { buildTextPairs } from '../../tools/synth/generate.js';
import { writeTinyTeacher } from '../../tools/synth/models.js';
import { tempDir } from '../helpers.js';

let dir: string;
let cleanup: () => Promise<void>;
let model: string;
let pairsFile: string;
const PAIRS = buildTextPairs(new Rng(0).fork('text-pairs'), 64);

const quiet = () => ({ info: (_: string) => {}, warn: (_: string) => {} });

before(async () => {
  // the native kernels when this machine built them (the CLI picks them the same way); else the JS backend
  await useDevice('auto');
  ({ dir, cleanup } = await tempDir());
  model = path.join(dir, 'teacher');
  // the synthetic teacher's tokenizer and layout, narrower so the test is quick
  await writeTinyTeacher(model, 0, undefined, { hidden: 64, layers: 2, heads: 4, kvHeads: 4, intermediate: 128 });
  pairsFile = path.join(dir, 'pairs.jsonl');
  await fsp.writeFile(pairsFile, PAIRS.map((p) => JSON.stringify(p)).join('\n') + '\n');
});
after(() => cleanup());

/** Share of rows where the cached cos(sent0, sent1) beats cos(sent0, hard_neg). */
function cacheAccuracy(cache: TeacherCache): number {
  const cos = (a: string, b: string) => {
    const x = cache.get(a)!, y = cache.get(b)!;
    let s = 0;
    for (let i = 0; i < x.length; i++) s += x[i]! * y[i]!;
    return s;
  };
  return PAIRS.filter((p) => cos(p.sent0, p.sent1) > cos(p.sent0, p.hard_neg)).length / PAIRS.length;
}

function recipe(name: string, lora: string, { withRandom = true, train = 'lr: 4.0e-3, epochs: null, max_steps: 16, batch_size: 16, gradcache_chunk_size: 16' } = {}): string {
  return `name: ${name}
seed: 3
output_dir: ${JSON.stringify(path.join(dir, name))}
stages:
  - name: train
    kind: caption-contrastive
    model: ${JSON.stringify(model)}
    data:
      path: ${JSON.stringify(pairsFile)}
    max_length: 32
    lora: ${lora}
    train: {${train}, warmup_ratio: 0, log_every: 1, save_every: 8}
  - name: teacher
    kind: teacher-embed
    teacher: ${JSON.stringify(model)}
    init_from: train
    bidirectional: true
    pooling: mean
    data:
      path: ${JSON.stringify(pairsFile)}
    max_length: 32
    batch_size: 16
${withRandom ? randomTeacher() : ''}`;
}

function randomTeacher(): string {
  return `  - name: random-teacher
    kind: teacher-embed
    teacher: ${JSON.stringify(model)}
    bidirectional: true
    pooling: mean
    data:
      path: ${JSON.stringify(pairsFile)}
    max_length: 32
    batch_size: 16
`;
}

test('the caption-contrastive loss is cross-entropy over scale * cos(query, [positives; hard negatives])', () => {
  const rng = new Rng(11);
  const rows = (n: number) => Array.from({ length: n }, () => Array.from({ length: 5 }, () => rng.normal()));
  const q = rows(3), p = rows(3), n = rows(2);
  const unit = (v: number[]) => v.map((x) => x / Math.hypot(...v));
  const dot = (a: number[], b: number[]) => a.reduce((s, x, i) => s + x * b[i]!, 0);
  let want = 0;
  for (let i = 0; i < 3; i++) {
    const logits = [...p, ...n].map((c) => 50 * dot(unit(q[i]!), unit(c)));
    const m = Math.max(...logits);
    want += -(logits[i]! - m - Math.log(logits.reduce((s, l) => s + Math.exp(l - m), 0)));
  }
  want /= 3;
  const got = tf.tidy(() => captionContrastiveLoss(tf.tensor2d(q), tf.tensor2d(p), tf.tensor2d(n), 50).dataSync()[0]!);
  assert.ok(Math.abs(got - want) < 1e-4 * Math.max(1, want), `${got} vs ${want}`);
  // rows without a positive are dropped; a missing hard negative is allowed
  const triples = captionTriples([{ a: 'q', b: 'p', c: 'n' }, { a: 'q2', b: '' }, { a: 'q3', b: 'p3' }], ['a', 'b', 'c'], null);
  assert.deepEqual(triples, [{ query: 'q', positive: 'p', negative: 'n' }, { query: 'q3', positive: 'p3', negative: null }]);
});

test('caption-contrastive (LoRA) teaches the tiny teacher to rank paraphrases above swapped-attribute captions; teacher-embed uses it through init_from', async () => {
  const run = await runRecipe(parseRecipe(recipe('cc-lora', '{rank: 8, alpha: 16, dropout: 0.0}'), { file: 'cc.yaml', env: {} }), { log: quiet() });
  assert.deepEqual(run.stages.map((s) => s.status), ['ran', 'ran', 'ran']);
  const r = (run.stages[0] as { result?: Record<string, unknown> }).result!;
  assert.equal(r.steps, 16);
  assert.equal(r.mode, 'lora');
  const losses = r.losses as number[];
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  assert.ok(mean(losses.slice(-4)) < mean(losses.slice(0, 4)), `loss did not go down: ${losses.join(', ')}`);
  const beforeAcc = r.pair_accuracy_before as number;
  const afterAcc = r.pair_accuracy_after as number;
  console.log(`caption-contrastive LoRA: pair accuracy ${beforeAcc.toFixed(3)} -> ${afterAcc.toFixed(3)}, loss ${losses[0]!.toFixed(3)} -> ${losses.at(-1)!.toFixed(3)}, ${(r.seconds as number).toFixed(1)} s`);
  assert.ok(afterAcc >= beforeAcc + 0.25, `pair accuracy ${beforeAcc} -> ${afterAcc}`);

  const out = path.join(dir, 'cc-lora', 'train');
  assert.ok(existsSync(path.join(out, 'adapter', ADAPTER_CONFIG)));
  assert.ok(existsSync(path.join(out, 'adapter', ADAPTER_WEIGHTS)));
  assert.deepEqual(JSON.parse(await fsp.readFile(path.join(out, ADAPTER_CHAIN_FILE), 'utf8')), []);

  // the trained teacher's cache ranks pairs as the trained model did; the untrained one's as before
  const trained = await readTeacherCache(path.join(dir, 'cc-lora', 'teacher'));
  const random = await readTeacherCache(path.join(dir, 'cc-lora', 'random-teacher'));
  assert.equal(trained.index.bidirectional, true);
  assert.equal(trained.index.adapters!.length, 1);
  assert.ok(Math.abs(cacheAccuracy(trained) - afterAcc) <= 1 / PAIRS.length, `${cacheAccuracy(trained)} vs ${afterAcc}`);
  assert.ok(Math.abs(cacheAccuracy(random) - beforeAcc) <= 1 / PAIRS.length, `${cacheAccuracy(random)} vs ${beforeAcc}`);
});

test('caption-contrastive with lora: null fine-tunes every decoder weight and saves a full checkpoint that teacher-embed loads', async () => {
  const text = recipe('cc-full', 'null', { withRandom: false, train: 'lr: 1.0e-3, epochs: null, max_steps: 3, batch_size: 8, gradcache_chunk_size: 4' });
  const run = await runRecipe(parseRecipe(text, { file: 'cc-full.yaml', env: {} }), { log: quiet() });
  assert.deepEqual(run.stages.map((s) => s.status), ['ran', 'ran']);
  const r = (run.stages[0] as { result?: Record<string, unknown> }).result!;
  assert.equal(r.mode, 'full');
  const saved = path.join(dir, 'cc-full', 'train', 'model');
  assert.equal(r.output, saved);
  const dec = await loadTextDecoder(saved);
  const base = await loadTextDecoder(model);
  try {
    assert.equal(r.trainable_parameters, dec.numParameters);
    const a = await dec.weights.get('layers.0.self_attn.q_proj.weight')!.data();
    const b = await base.weights.get('layers.0.self_attn.q_proj.weight')!.data();
    assert.ok(a.some((v, i) => v !== b[i]), 'weights did not move');
  } finally {
    dec.dispose();
    base.dispose();
  }
  const trained = await readTeacherCache(path.join(dir, 'cc-full', 'teacher'));
  assert.deepEqual(trained.index.adapters, []);
  assert.ok(Math.abs(cacheAccuracy(trained) - (r.pair_accuracy_after as number)) <= 1 / PAIRS.length);
});
