import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS } from '../../src/models/peft/index.js';
import { parseRecipe, runRecipe } from '../../src/recipes/index.js';
import { PARAMS_FILE } from '../../src/train/checkpoints.js';
import { loadDistillStudent, type UnimeDistillStage } from '../../src/train/unime-distill.js';
import { Rng } from '../../src/runtime/rng.js';
import { tempDir } from '../helpers.js';
import { makeTinyEmbedder } from '../models/embedder-fixture.js';
import '../../src/train/teacher-embed.js';

let dir: string;
let cleanup: () => Promise<void>;
let student: string;
let teacher: string;
let pairsFile: string;
const PAIRS = Array.from({ length: 12 }, (_, i) => ({
  sent0: `question ${i} about the fox number ${i % 5}`,
  sent1: `answer ${i} the quick brown dog ${i * 7}`,
}));

async function snapshotDir(d: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const n of (await fsp.readdir(d)).sort()) out[n] = createHash('sha256').update(await fsp.readFile(path.join(d, n))).digest('hex');
  return out;
}

const quiet = () => ({ info: (_: string) => {}, warn: (_: string) => {} });

function distillStage(cache: string, data: string): string {
  return `  - name: distill
    kind: unime-distill
    model: ${JSON.stringify(student)}
    data:
      path: ${JSON.stringify(data)}
    prompt_template: "Summarize: <sent> in one word:"
    max_length: 32
    quantization: none
    teacher_cache: ${JSON.stringify(cache)}
    lora: {rank: 4, alpha: 8, dropout: 0.1, target_modules: all-linear}
    loss: {student_temperature: 0.1, teacher_temperature: 0.1}
    train: {lr: 0.01, epochs: null, max_steps: 8, batch_size: 8, gradcache_chunk_size: 3, warmup_ratio: 0, schedule: constant, log_every: 1, save_every: 4}
`;
}

before(async () => {
  ({ dir, cleanup } = await tempDir());
  student = await makeTinyEmbedder(path.join(dir, 'student'), { seed: 3 });
  teacher = await makeTinyEmbedder(path.join(dir, 'teacher'), { seed: 7, hidden: 48 });
  pairsFile = path.join(dir, 'pairs.jsonl');
  await fsp.writeFile(pairsFile, PAIRS.map((p) => JSON.stringify(p)).join('\n') + '\n');
});
after(() => cleanup());

test('unime-distill trains a LoRA adapter on the student from a teacher-embed cache', async () => {
  const baseBefore = await snapshotDir(student);
  const text = `name: distill-test
seed: 5
output_dir: ${JSON.stringify(path.join(dir, 'run'))}
stages:
  - name: teacher
    kind: teacher-embed
    teacher: ${JSON.stringify(teacher)}
    data:
      path: ${JSON.stringify(pairsFile)}
    max_length: 32
    batch_size: 8
${distillStage('${stages.teacher.output_dir}', pairsFile)}`;
  const loaded = parseRecipe(text, { file: 'distill.yaml', env: {} });
  const run = await runRecipe(loaded, { log: quiet() });
  assert.deepEqual(
    run.stages.map((s) => s.status),
    ['ran', 'ran'],
  );
  const r = (run.stages[1] as { result?: Record<string, unknown> }).result!;
  assert.equal(r.steps, 8);
  const losses = r.losses as number[];
  assert.equal(losses.length, 8);
  for (const l of losses) assert.ok(Number.isFinite(l));
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  assert.ok(mean(losses.slice(-3)) < mean(losses.slice(0, 3)), `loss did not go down: ${losses.join(', ')}`);
  assert.equal(r.first_loss, losses[0]);
  assert.equal(r.final_loss, losses[7]);

  // the final adapter, in PEFT layout, holds only LoRA weights, and training moved them
  const out = path.join(dir, 'run', 'distill');
  const adapterDir = path.join(out, 'adapter');
  assert.equal(r.adapter, adapterDir);
  const cfg = JSON.parse(await fsp.readFile(path.join(adapterDir, ADAPTER_CONFIG), 'utf8')) as Record<string, unknown>;
  assert.equal(cfg.peft_type, 'LORA');
  assert.equal(cfg.r, 4);
  assert.equal(cfg.lora_alpha, 8);
  const f = await SafetensorsFile.open(path.join(adapterDir, ADAPTER_WEIGHTS));
  try {
    const names = f.names;
    assert.ok(names.length > 0);
    let movedB = false;
    for (const n of names) {
      assert.match(n, /^base_model\.model\.model\.layers\.\d+\..+\.lora_[AB]\.weight$/);
      if (n.endsWith('lora_B.weight') && (await f.readFloat32(n)).some((v) => v !== 0)) movedB = true;
    }
    assert.ok(movedB, 'every lora_B is still zero');
  } finally {
    await f.close();
  }
  // every checkpoint carries its adapter; the student's base weights are untouched
  const ckRoot = path.join(out, 'checkpoints');
  const cks = (await fsp.readdir(ckRoot, { withFileTypes: true })).filter((d) => d.isDirectory() && !d.name.startsWith('.')).map((d) => d.name);
  assert.ok(cks.length >= 2, cks.join(', ')); // save_every 4 of 8 steps
  for (const c of cks) {
    assert.ok(existsSync(path.join(ckRoot, c, 'adapter', ADAPTER_WEIGHTS)), c);
    assert.ok(existsSync(path.join(ckRoot, c, 'adapter', ADAPTER_CONFIG)), c);
  }
  assert.deepEqual(await snapshotDir(student), baseBefore);
  // the optimizer saw only the LoRA parameters
  const last = path.join(ckRoot, cks.sort().at(-1)!, PARAMS_FILE);
  const pf = await SafetensorsFile.open(last);
  try {
    assert.equal(pf.names.length, (r.lora_layers as number) * 2);
    assert.equal(pf.names.reduce((n, k) => n + pf.info(k).shape.reduce((a, b) => a * b, 1), 0), r.lora_parameters);
  } finally {
    await pf.close();
  }

  // --force reruns the stage from scratch: the same 8 losses again, not a resume at the finished step
  const again = await runRecipe(loaded, { log: quiet(), only: ['distill'], force: true });
  const r2 = (again.stages[1] as { result?: Record<string, unknown> }).result!;
  assert.deepEqual(r2.losses, losses);
  // without --force a rerun of an interrupted stage continues from its checkpoint (nothing left to do here)
  await fsp.rm(path.join(out, 'stage.json'));
  const resumed = await runRecipe(loaded, { log: quiet(), only: ['distill'] });
  const r3 = (resumed.stages[1] as { result?: Record<string, unknown> }).result!;
  assert.equal(r3.steps, 8);
  assert.deepEqual(r3.losses, []);

  // a text without a teacher vector is a clear error naming the cache
  const extra = path.join(dir, 'extra.jsonl');
  await fsp.writeFile(extra, [...PAIRS, { sent0: 'a text the teacher never saw', sent1: 'nor this one' }].map((p) => JSON.stringify(p)).join('\n') + '\n');
  const cacheDir = path.join(dir, 'run', 'teacher');
  const bad = parseRecipe(`name: distill-missing
output_dir: ${JSON.stringify(path.join(dir, 'run2'))}
stages:
${distillStage(cacheDir, extra)}`, { file: 'missing.yaml', env: {} });
  await assert.rejects(runRecipe(bad, { log: quiet() }), (e: Error) => {
    assert.match(e.message, /2 of the 26 texts have no teacher vector/);
    assert.ok(e.message.includes(cacheDir) || JSON.stringify(e).includes(cacheDir), e.message);
    return true;
  });
});

test('the distillation student is frozen: only the LoRA variables are trainable', async () => {
  const stage = { lora: { rank: 4, alpha: 8, dropout: 0, target_modules: 'all-linear' } } as unknown as UnimeDistillStage;
  const { decoder, adapter } = await loadDistillStudent(student, stage, new Rng(1));
  try {
    assert.ok(adapter.layers.length > 0);
    for (const v of decoder.weights.values()) assert.equal(v.trainable, false);
    for (const v of adapter.variables) assert.equal(v.trainable, true);
  } finally {
    decoder.dispose();
    for (const v of adapter.variables) if (!v.isDisposed) v.dispose();
  }
});
