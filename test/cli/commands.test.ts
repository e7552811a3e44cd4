import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { runCli } from './run-cli.js';
import { fixture, tempDir } from '../helpers.js';
import { writeShardedSafetensors } from '../../src/io/checkpoint.js';

test('recipes list and validate cover every bundled recipe', async () => {
  const list = await runCli(['recipes', 'list', '--json']);
  assert.equal(list.code, 0, list.stderr);
  const recipes = JSON.parse(list.stdout) as { file: string; ok: boolean; stages: { kind: string }[] }[];
  assert.ok(recipes.some((r) => r.file.endsWith('quickstart.yaml')));
  assert.ok(recipes.length >= 7);
  for (const r of recipes) assert.ok(r.ok, `${r.file} invalid`);
  const v = await runCli(['recipes', 'validate']);
  assert.equal(v.code, 0, v.stderr);
  assert.equal(v.stdout.trim().split('\n').filter((l) => l.startsWith('ok ')).length, recipes.length);
});

test('recipes validate names file, line and field of a bad recipe and exits 2', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const bad = path.join(dir, 'bad.yaml');
    await fsp.writeFile(bad, 'name: bad\nstages:\n  - name: s1\n    kind: unime-distill\n    train:\n      lr: fast\n');
    const r = await runCli(['recipes', 'validate', bad]);
    assert.equal(r.code, 2);
    assert.match(r.stdout, /INVALID/);
    assert.match(r.stderr, /bad\.yaml:6:\d+/);
    assert.match(r.stderr, /stages\[0\]\.train\.lr/);
    assert.match(r.stderr, /expected a number/);
  } finally {
    await cleanup();
  }
});

test('recipes show prints the resolved recipe with overrides applied', async () => {
  const r = await runCli(['recipes', 'show', 'recipes/quickstart.yaml', 'seed=123', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const recipe = JSON.parse(r.stdout) as { seed: number; output_dir: string; stages: { output_dir: string }[] };
  assert.equal(recipe.seed, 123);
  assert.ok(!recipe.output_dir.includes('${'));
  for (const s of recipe.stages) assert.ok(s.output_dir.startsWith(recipe.output_dir));
});

test('train --dry-run prints the plan and writes nothing', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const r = await runCli(['train', 'recipes/quickstart.yaml', `output_dir=${dir}/run`, '--dry-run']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /recipe quickstart/);
    assert.match(r.stdout, /1\. data  \(synthetic-data\)/);
    assert.match(r.stdout, /13\. eval-stage2-off  \(eval\)/);
    await assert.rejects(fsp.stat(path.join(dir, 'run')));
  } finally {
    await cleanup();
  }
});

test('train --only takes a comma list, and overrides written after it stay overrides', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const r = await runCli(['train', 'recipes/quickstart.yaml', `output_dir=${dir}/run`, '--dry-run', '--only', 'data,teacher-train', `stages.data.out=${dir}/syn`]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /1\. data  \(synthetic-data\)[^\n]* run\n/);
    assert.match(r.stdout, /2\. teacher-train  \(caption-contrastive\)[^\n]* run\n/);
    assert.match(r.stdout, /3\. teacher  \(teacher-embed\)[^\n]* skip \(not selected\)/);
    assert.ok(r.stdout.includes(`out: ${dir}/syn`), r.stdout);
    const typo = await runCli(['train', 'recipes/quickstart.yaml', `output_dir=${dir}/run`, '--dry-run', '--only', 'data,hardnge']);
    assert.equal(typo.code, 2);
    assert.match(typo.stderr, /--only names stage `hardnge`/);
  } finally {
    await cleanup();
  }
});

test('train with a bad override is a usage error naming the override', async () => {
  const r = await runCli(['train', 'recipes/quickstart.yaml', 'stages.distill.train.lr=abc', '--dry-run']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /stages\.distill\.train\.lr=abc/);
  const missing = await runCli(['train', 'recipes/nope.yaml']);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /nope\.yaml/);
});

test('inspect shows a sharded fixture checkpoint', async () => {
  const r = await runCli(['inspect', fixture('safetensors', 'sharded')]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /\(2 shards\)/);
  assert.match(r.stdout, /parameters\s+43 \(43\) in 5 tensors/);
  assert.match(r.stdout, /model\.layers\.0\.mlp\.weight\s+F32\s+\[2, 4\]\s+8/);
  assert.match(r.stdout, /model\.layers\.\*\s+2\s+16/);
});

test('inspect --json reports architecture from config.json, counts and dtypes', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    await writeShardedSafetensors(dir, {
      'language_model.model.layers.0.self_attn.q_proj.weight': { dtype: 'BF16', shape: [8, 8], data: new Uint16Array(64) },
      'language_model.model.layers.1.self_attn.q_proj.weight': { dtype: 'BF16', shape: [8, 8], data: new Uint16Array(64) },
      'vision_tower.embeddings.patch.weight': { dtype: 'F32', shape: [4, 3], data: new Float32Array(12) },
    }, { maxShardBytes: 150 });
    await fsp.writeFile(path.join(dir, 'config.json'), JSON.stringify({
      model_type: 'llava', architectures: ['LlavaForConditionalGeneration'],
      text_config: { model_type: 'llama', hidden_size: 8 }, vision_config: { model_type: 'clip_vision_model' },
    }));
    const r = await runCli(['inspect', dir, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const rep = JSON.parse(r.stdout) as { parameters: number; files: string[]; architecture: { modelType: string; textModelType: string; visionModelType: string }; dtypes: Record<string, { tensors: number }>; modules: { name: string; params: number }[] };
    assert.equal(rep.parameters, 140);
    assert.ok(rep.files.length >= 2);
    assert.equal(rep.architecture.modelType, 'llava');
    assert.equal(rep.architecture.textModelType, 'llama');
    assert.equal(rep.architecture.visionModelType, 'clip_vision_model');
    assert.equal(rep.dtypes.BF16?.tensors, 2);
    assert.equal(rep.modules.find((m) => m.name === 'language_model.model.layers.*')?.params, 128);
    const text = await runCli(['inspect', dir, '--no-tensors']);
    assert.match(text.stdout, /LlavaForConditionalGeneration \(model_type llava; text llama; vision clip_vision_model\)/);
    assert.doesNotMatch(text.stdout, /q_proj\.weight/);
  } finally {
    await cleanup();
  }
});

test('inspect of a missing or corrupt file is a clear error, exit 2', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const missing = await runCli(['inspect', path.join(dir, 'none.safetensors')]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /none\.safetensors/);
    const corrupt = path.join(dir, 'bad.safetensors');
    const good = await fsp.readFile(fixture('safetensors', 'plain.safetensors'));
    await fsp.writeFile(corrupt, good.subarray(0, good.length - 3));
    const r = await runCli(['inspect', corrupt]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /bad\.safetensors/);
    assert.doesNotMatch(r.stderr, /internal error/);
  } finally {
    await cleanup();
  }
});

test('eval summarize reproduces the published MMEB aggregates of a VLM2Vec report', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const r = await runCli(['eval', 'summarize', fixture('eval', 'mmeb-report-vlm2vec-v2-qwen2vl-2b.json'), '--out', dir]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Overall \(mean of 36 datasets, MMEB standard\) \| 64\.92/);
    assert.match(r.stdout, /IND \(20 datasets\) \| 68\.82/);
    assert.match(r.stdout, /OOD \(16 datasets\) \| 60\.05/);
    assert.match(r.stdout, /Four-category mean .* \| 66\.52/);
    const html = await fsp.readFile(path.join(dir, 'mmeb-report.html'), 'utf8');
    assert.match(html, /<svg/);
    assert.match(html, /64\.92/);
  } finally {
    await cleanup();
  }
});

test('eval compare shows results side by side with deltas, and names a bad file', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const report = JSON.parse(await fsp.readFile(fixture('eval', 'mmeb-report-vlm2vec-v2-qwen2vl-2b.json'), 'utf8')) as { metrics: { image: Record<string, Record<string, number>> } };
    // A "worse" copy: every hit@1 lowered by 0.1 (10 points).
    for (const m of Object.values(report.metrics.image)) if (typeof m['hit@1'] === 'number') m['hit@1'] = Math.max(0, m['hit@1'] - 0.1);
    const worse = path.join(dir, 'worse.json');
    await fsp.writeFile(worse, JSON.stringify(report));
    const r = await runCli(['eval', 'compare', worse, fixture('eval', 'mmeb-report-vlm2vec-v2-qwen2vl-2b.json'), '--labels', 'base', 'trained']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /base/);
    assert.match(r.stdout, /trained/);
    assert.match(r.stdout, /\+10\.00/);
    const bad = path.join(dir, 'bad.json');
    await fsp.writeFile(bad, '{"metrics": {"image": {"ImageNet-1K": {"hit@1": "high"}}}}');
    const e = await runCli(['eval', 'compare', bad]);
    assert.equal(e.code, 2);
    assert.match(e.stderr, /bad\.json/);
    const mismatch = await runCli(['eval', 'compare', worse, worse, '--labels', 'one']);
    assert.equal(mismatch.code, 2);
    assert.match(mismatch.stderr, /1 labels for 2 results/);
  } finally {
    await cleanup();
  }
});

test('eval compare reads the row hits `unime eval mmeb` writes beside mmeb.json: deltas get bootstrap intervals; malformed ones are a warning', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    // Two MMEB results on ImageNet-1K alone (10 rows), each with its summary's per-row hits.
    const write = async (name: string, hits: string) => {
      const d = path.join(dir, name);
      await fsp.mkdir(d, { recursive: true });
      const score = [...hits].filter((c) => c === '1').length / hits.length;
      await fsp.writeFile(path.join(d, 'mmeb.json'), JSON.stringify({ metadata: { model_name: name }, metrics: { image: { 'ImageNet-1K': { 'hit@1': score } } } }));
      await fsp.writeFile(path.join(d, 'mmeb-summary.json'), JSON.stringify({ row_hits: { 'ImageNet-1K': hits } }));
      return path.join(d, 'mmeb.json');
    };
    const base = await write('base', '1100000000');
    const trained = await write('trained', '1111111100');
    const r = await runCli(['eval', 'compare', base, trained]);
    assert.equal(r.code, 0, r.stderr);
    // Every row the base gets right the trained model gets right too: the interval stays above 0.
    assert.match(r.stdout, /\| ImageNet-1K \| Classification \| IND \| 20\.00 \| 80\.00 \| \+60\.00 \[\+[0-9.]+, \+[0-9.]+\] \|/);
    assert.match(r.stdout, /paired bootstrap/);
    await fsp.writeFile(path.join(dir, 'trained', 'mmeb-summary.json'), JSON.stringify({ row_hits: { 'ImageNet-1K': 'yes' } }));
    const w = await runCli(['eval', 'compare', base, trained]);
    assert.equal(w.code, 0, w.stderr);
    assert.match(w.stderr, /warning: no intervals for its deltas: [^\n]*trained[/\\]mmeb-summary\.json: row_hits\.ImageNet-1K: must be a string of 0 and 1, one per row; fix: /);
    assert.match(w.stdout, /\| ImageNet-1K \| Classification \| IND \| 20\.00 \| 80\.00 \| \+60\.00 \|/);
    // runs of other seeds joined with '+': one column, their mean, with an interval over the rows
    const s1 = await write('seed1', '1111110000');
    const s2 = await write('seed2', '1111111111');
    const g = await runCli(['eval', 'compare', base, `${s1}+${s2}`]);
    assert.equal(g.code, 0, g.stderr);
    assert.match(g.stdout, /\| ImageNet-1K \| Classification \| IND \| 20\.00 \| 80\.00 \| \+60\.00 \[\+[0-9.]+, \+[0-9.]+\] \|/);
    assert.match(g.stdout, /seed1 \(mean of 2\)/);
    assert.match(g.stdout, /mean of several runs \(seeds\)/);
  } finally {
    await cleanup();
  }
});

test('eval compare takes <suite>.json files too: the suite table with intervals; mixing them with MMEB results is refused', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const bits = (n: number) => '1'.repeat(n) + '0'.repeat(20 - n);
    const write = async (name: string, right: number) => {
      const f = path.join(dir, name, 'sugarcrepe.json');
      await fsp.mkdir(path.dirname(f), { recursive: true });
      const acc = (right / 20) * 100;
      await fsp.writeFile(f, JSON.stringify({ suite: 'sugarcrepe', model: name, scores: { subsets: { swap_att: { accuracy: acc, samples: 20, row_hits: bits(right) } }, mean: acc } }));
      return f;
    };
    const lift = await write('lift', 8);
    const proclip = await write('proclip', 14);
    const out = path.join(dir, 'cmp');
    const r = await runCli(['eval', 'compare', lift, proclip, '--labels', 'LIFT', 'ProCLIP', '--out', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^# sugarcrepe results: LIFT vs ProCLIP$/m);
    assert.match(r.stdout, /\| Metric \| LIFT \| ProCLIP \| Δ vs LIFT \|/);
    assert.match(r.stdout, /\| swap\\_att \| 40\.00 \| 70\.00 \| \+30\.00 \[\+[0-9.]+, \+[0-9.]+\] \|/);
    assert.match(r.stdout, /Models: LIFT: lift; ProCLIP: proclip\./);
    assert.match(await fsp.readFile(path.join(out, 'sugarcrepe-comparison.html'), 'utf8'), /<h2>SugarCrepe/);
    assert.ok((await fsp.readFile(path.join(out, 'sugarcrepe-comparison.md'), 'utf8')).includes('| Metric | LIFT | ProCLIP |'));
    const mixed = await runCli(['eval', 'compare', lift, fixture('eval', 'mmeb-report-vlm2vec-v2-qwen2vl-2b.json')]);
    assert.equal(mixed.code, 2, mixed.stderr);
    assert.match(mixed.stderr, /is not a suite result while the others are/);
  } finally {
    await cleanup();
  }
});
