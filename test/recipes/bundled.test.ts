import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import {
  listBundledRecipes,
  loadRecipe,
  parseRecipe,
  recipeToYaml,
  validateBundledRecipes,
  validateRecipeFile,
  type UnimeDistillStage,
  type UnimeHardnegStage,
} from '../../src/recipes/index.js';
import { repoRoot, tempDir } from '../helpers.js';
import { promises as fsp } from 'node:fs';

const EXPECTED = [
  'clip-synthetic.yaml',
  'lift-vitb16.yaml',
  'llm2clip-vitl14.yaml',
  'proclip-vitl14.yaml',
  'quickstart.yaml',
  'unime-llava16-stage1.yaml',
  'unime-llava16-stage2.yaml',
  'unime-llavaov-stage1.yaml',
  'unime-llavaov-stage2.yaml',
  'unime-phi35v-stage1.yaml',
  'unime-phi35v-stage2.yaml',
];

test('the bundled recipes are all there', () => {
  const files = listBundledRecipes();
  assert.deepEqual(files.map((f) => path.basename(f)), EXPECTED);
  for (const f of files) assert.equal(path.dirname(f), path.join(repoRoot, 'recipes'));
});

test('every bundled recipe validates (without its data existing)', async () => {
  const reports = await validateBundledRecipes({ env: {} });
  assert.equal(reports.length, EXPECTED.length);
  for (const r of reports) {
    assert.ok(r.ok, `${r.file}: ${r.error?.message}`);
    assert.equal(r.name, path.basename(r.file, '.yaml'));
    assert.ok(r.stages.length >= 2);
  }
  const quick = reports.find((r) => r.name === 'quickstart')!;
  assert.deepEqual(quick.stages, [
    { name: 'data', kind: 'synthetic-data' },
    { name: 'teacher-train', kind: 'caption-contrastive' },
    { name: 'teacher', kind: 'teacher-embed' },
    { name: 'caption-features', kind: 'teacher-embed' },
    { name: 'vision', kind: 'clip-train' },
    { name: 'align', kind: 'mllm-align' },
    { name: 'distill', kind: 'unime-distill' },
    { name: 'hardneg', kind: 'unime-hardneg' },
    { name: 'hardneg-off', kind: 'unime-hardneg' },
    { name: 'eval-base', kind: 'eval' },
    { name: 'eval-stage1', kind: 'eval' },
    { name: 'eval-stage2', kind: 'eval' },
    { name: 'eval-stage2-off', kind: 'eval' },
  ]);
});

test('validateRecipeFile reports a bad file without throwing, with a best-effort outline', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const f = path.join(dir, 'bad.yaml');
    await fsp.writeFile(f, 'name: bad\nstages:\n  - name: a\n    kind: eval\n    suite: nope\n');
    const r = await validateRecipeFile(f);
    assert.equal(r.ok, false);
    assert.equal(r.name, 'bad');
    assert.deepEqual(r.stages, [{ name: 'a', kind: 'eval' }]);
    assert.match(r.error!.message, /bad\.yaml:5:\d+: stages\[0\]\.suite: expected one of/);
    const missing = await validateRecipeFile(path.join(dir, 'nope.yaml'));
    assert.equal(missing.ok, false);
    assert.match(missing.error!.message, /not found/);
    assert.deepEqual(missing.stages, []);
  } finally {
    await cleanup();
  }
});

test('the UniME recipes carry the published hyperparameters', async () => {
  const load = (n: string) => loadRecipe(path.join(repoRoot, 'recipes', n), [], { env: {} });
  for (const [bb, lr2] of [
    ['phi35v', 1e-4],
    ['llava16', 2e-5],
  ] as const) {
    const s1 = (await load(`unime-${bb}-stage1.yaml`)).recipe;
    const distill = s1.stages.find((s) => s.kind === 'unime-distill') as unknown as UnimeDistillStage;
    assert.equal(distill.train.lr, 5e-4);
    assert.equal(distill.train.epochs, 2);
    assert.equal(distill.train.batch_size, 768);
    assert.equal(distill.lora.rank, 32);
    assert.equal(distill.quantization, 'nf4');
    assert.equal(distill.teacher_cache, 'runs/unime-' + bb + '-stage1/teacher');
    assert.equal((s1.stages[0] as { teacher?: { path: string } }).teacher?.path, 'nvidia/NV-Embed-v2');

    const s2 = (await load(`unime-${bb}-stage2.yaml`)).recipe;
    const hn = s2.stages.find((s) => s.kind === 'unime-hardneg') as unknown as UnimeHardnegStage;
    assert.equal(hn.train.lr, lr2);
    assert.equal(hn.train.max_steps, 1000);
    assert.equal(hn.train.batch_size, 1024);
    assert.equal(hn.lora.rank, 16);
    assert.equal(hn.loss.temperature, 0.02);
    assert.equal(hn.loss.false_negative_beta, 0.1);
    assert.equal(hn.loss.hard_negatives, 8);
    assert.equal(hn.data.cap_per_subset, 50000);
    assert.equal(hn.image_size, 336);
    assert.equal(s2.precision, 'bf16');
    assert.equal(hn.init_from, `runs/unime-${bb}-stage1/distill`);
  }
  const phi = (await load('unime-phi35v-stage1.yaml')).recipe.stages[1] as unknown as UnimeDistillStage;
  assert.equal(phi.prompt_template, '<|user|>\n<sent>\nSummary above sentence in one word: <|end|>\n<|assistant|>\n');
  const llava = (await load('unime-llava16-stage1.yaml')).recipe.stages[1] as unknown as UnimeDistillStage;
  assert.equal(llava.prompt_template, '[INST] <sent>\nSummary above sentence in one word: [/INST]');
});

test('the resolved YAML loads back to the same recipe (escaped ${ survives)', async () => {
  for (const f of listBundledRecipes()) {
    const loaded = await loadRecipe(f, ['vars.note=$${not a ref}'], { env: {} });
    const again = parseRecipe(recipeToYaml(loaded), { file: 'resolved.yaml', env: {} });
    assert.deepEqual(again.recipe, loaded.recipe, f);
  }
  const q = await loadRecipe(path.join(repoRoot, 'recipes', 'quickstart.yaml'), ['vars.note=$${x}'], { env: {} });
  assert.equal(q.recipe.vars.note, '${x}');
  assert.match(recipeToYaml(q), /overrides: vars\.note=\$\$\{x\}/);
});
