import { test } from 'node:test';
import assert from 'node:assert/strict';
import { z } from 'zod';
import {
  attachStageRunner,
  getStageKind,
  listStageKinds,
  parseRecipe,
  registerStageKind,
  stageSchema,
  type ClipTrainStage,
  type EvalStage,
  type UnimeDistillStage,
  type UnimeHardnegStage,
} from '../../src/recipes/index.js';
import { MINIMAL, recipeError } from './helpers.js';

test('top-level and stage defaults are filled', () => {
  const { recipe } = parseRecipe(MINIMAL, { env: {} });
  assert.equal(recipe.name, 't');
  assert.equal(recipe.description, '');
  assert.equal(recipe.seed, 0);
  assert.equal(recipe.device, 'auto');
  assert.equal(recipe.precision, 'fp32');
  assert.equal(recipe.output_dir, 'runs/t');
  assert.deepEqual(recipe.vars, {});
  const s = recipe.stages[0] as unknown as EvalStage;
  assert.equal(s.output_dir, 'runs/t/s1');
  assert.equal(s.init_from, null);
  assert.deepEqual(s.model, { path: 'm', revision: 'main' });
  assert.equal(s.datasets, 'all');
  assert.equal(s.batch_size, 16);
  assert.equal(s.image_token, 'auto');
  assert.equal(s.precision, undefined);
});

test('an explicit output_dir moves the stage dirs with it', () => {
  const { recipe } = parseRecipe(MINIMAL + 'output_dir: /tmp/out/${name}\n', { env: {} });
  assert.equal(recipe.output_dir, '/tmp/out/t');
  assert.equal(recipe.stages[0]!.output_dir, '/tmp/out/t/s1');
});

test('UniME stage kinds default to the published values', () => {
  const text = `name: u
stages:
  - name: distill
    kind: unime-distill
    model: microsoft/Phi-3.5-vision-instruct
    data: {path: nli.csv}
    teacher_cache: cache
  - name: hardneg
    kind: unime-hardneg
    init_from: distill
    model: microsoft/Phi-3.5-vision-instruct
    data: {root: mmeb}
  - name: teacher
    kind: teacher-embed
    data: {path: nli.csv}
`;
  const { recipe } = parseRecipe(text, { env: {} });
  const d = recipe.stages[0] as unknown as UnimeDistillStage;
  assert.equal(d.train.lr, 5e-4);
  assert.equal(d.train.epochs, 2);
  assert.equal(d.train.max_steps, null);
  assert.equal(d.train.batch_size, 768);
  assert.equal(d.lora.rank, 32);
  assert.equal(d.quantization, 'nf4');
  assert.equal(d.loss.kl_direction, 'teacher_student');
  assert.equal(d.prompt_template, 'auto');
  assert.deepEqual(d.data.text_columns, ['sent0', 'sent1', 'hard_neg']);
  assert.equal(d.train.optimizer.name, 'adamw');

  const h = recipe.stages[1] as unknown as UnimeHardnegStage;
  assert.equal(h.init_from, 'distill');
  assert.equal(h.train.lr, 1e-4);
  assert.equal(h.train.max_steps, 1000);
  assert.equal(h.train.batch_size, 1024);
  assert.equal(h.lora.rank, 16);
  assert.equal(h.loss.mode, 'hardneg');
  assert.equal(h.loss.temperature, 0.02);
  assert.equal(h.loss.false_negative_beta, 0.1);
  assert.equal(h.loss.hard_negatives, 8);
  assert.equal(h.image_size, null); // the model's own (336 for the paper's CLIP towers)
  assert.equal(h.data.cap_per_subset, 50000);
  assert.equal(h.data.split, 'original');

  const t = recipe.stages[2] as { teacher?: { path: string }; pooling?: string };
  assert.equal(t.teacher?.path, 'nvidia/NV-Embed-v2');
  assert.ok(t.pooling === 'mean' || t.pooling === 'last');
});

test('clip-train: each method has its own loss fields and defaults', () => {
  const text = `name: c
stages:
  - name: l2c
    kind: clip-train
    method: llm2clip
    text_model: llm
    vision: {model: eva}
    data: {path: pairs.parquet}
  - name: lift
    kind: clip-train
    method: lift
    text_model: nvidia/NV-Embed-v2
    data: {path: pairs.parquet}
    loss: {type: cosine}
  - name: pro
    kind: clip-train
    method: proclip
    text_model: llm
    clip_text_model: openai/clip-vit-large-patch14
    vision: {model: openai/clip-vit-large-patch14}
    data: {path: pairs.parquet}
`;
  const { recipe } = parseRecipe(text, { env: {} });
  const [a, b, c] = recipe.stages as unknown as ClipTrainStage[];
  assert.ok(a && b && c);
  assert.equal(a.method, 'llm2clip');
  if (a.method === 'llm2clip') {
    assert.equal(a.loss.logit_scale_init, 1 / 0.07);
    assert.equal(a.loss.logit_scale_max, 100);
    assert.equal(a.adapter.blocks, 4);
    assert.equal(a.train.lr, 1e-5);
    assert.equal(a.train.weight_decay, 0.05);
    assert.equal(a.train.batch_size, 4096);
  }
  if (b.method === 'lift') {
    assert.equal(b.loss.type, 'cosine');
    assert.equal(b.vision.model, null);
    assert.equal(b.vision.pooling, 'mean');
    assert.equal(b.head.out_dim, 4096);
  } else assert.fail('lift');
  if (c.method === 'proclip') {
    assert.equal(c.phase, 'align');
    assert.equal(typeof c.loss.ema_decay, 'number');
  } else assert.fail('proclip');

  const bad = recipeError(() => parseRecipe(text.replace('method: lift', 'method: lifft'), { file: 'c.yaml', env: {} }));
  assert.match(bad.message, /c\.yaml:11:13: stages\[1\]\.method: expected one of "llm2clip", "lift", "proclip", found the string "lifft" \(did you mean `lift`\?\)/);
  const unknown = recipeError(() => parseRecipe(text.replace('loss: {type: cosine}', 'loss: {type: cosine, ema_decay: 0.9}'), { file: 'c.yaml', env: {} }));
  assert.match(unknown.message, /stages\[1\]\.loss\.ema_decay: unknown field `ema_decay`/);
  const align = recipeError(() => parseRecipe(text.replace('    clip_text_model: openai/clip-vit-large-patch14\n', ''), { file: 'c.yaml', env: {} }));
  assert.match(align.message, /stages\[2\]\.clip_text_model: expected a CLIP text encoder for phase align, found null/);
});

test('cross-field rules: epochs or max_steps, chunk size, hard negatives vs batch', () => {
  const base = `name: u
stages:
  - name: hardneg
    kind: unime-hardneg
    model: m
    data: {root: mmeb}
`;
  const e1 = recipeError(() => parseRecipe(base, { file: 'u.yaml', overrides: ['stages.0.train.max_steps=null'], env: {} }));
  assert.match(e1.message, /train\.epochs or train\.max_steps/);
  const e2 = recipeError(() => parseRecipe(base, { file: 'u.yaml', overrides: ['stages.0.train.batch_size=4'], env: {} }));
  assert.match(e2.message, /stages\[0\]\.train\.gradcache_chunk_size: expected at most batch_size \(4\), found 8/);
  const e3 = recipeError(() =>
    parseRecipe(base, { file: 'u.yaml', overrides: ['stages.0.train={batch_size: 8, gradcache_chunk_size: 4}'], env: {} }),
  );
  assert.match(e3.message, /stages\[0\]\.loss\.hard_negatives: expected fewer hard negatives than train\.batch_size \(8\), found 8/);
  parseRecipe(base, { overrides: ['stages.0.train={batch_size: 8, gradcache_chunk_size: 4}', 'stages.0.loss.mode=inbatch'], env: {} });
});

test('registry: kinds are listed, duplicates refused, runners attach and detach', async () => {
  const kinds = listStageKinds().map((k) => k.kind);
  for (const k of ['teacher-embed', 'unime-distill', 'unime-hardneg', 'eval', 'clip-train']) {
    assert.ok(kinds.includes(k), k);
    assert.equal(getStageKind(k)!.run, undefined, `${k} has no engine in this build`);
    assert.ok(getStageKind(k)!.description.length > 10);
  }
  assert.throws(() => registerStageKind({ kind: 'eval', schema: z.object({}), description: 'dup' }), /already registered/);
  assert.throws(() => registerStageKind({ kind: 'Bad Kind', schema: z.object({}), description: 'x' }), /lowercase/);
  assert.throws(() => attachStageRunner('no-such-kind', async () => {}), /not registered/);

  const detach = attachStageRunner('eval', async () => ({ ok: true }));
  assert.equal(typeof getStageKind('eval')!.run, 'function');
  detach();
  assert.equal(getStageKind('eval')!.run, undefined);

  const unregister = registerStageKind({
    kind: 'test-schema-kind',
    schema: stageSchema('test-schema-kind', { size: z.int().min(1).default(3) }),
    description: 'test kind',
  });
  try {
    const { recipe } = parseRecipe('name: r\nstages:\n  - name: a\n    kind: test-schema-kind\n', { env: {} });
    assert.equal(recipe.stages[0]!.size, 3);
  } finally {
    unregister();
  }
  assert.equal(getStageKind('test-schema-kind'), undefined);
  const gone = recipeError(() => parseRecipe('name: r\nstages:\n  - name: a\n    kind: test-schema-kind\n', { file: 'r.yaml', env: {} }));
  assert.match(gone.message, /unknown stage kind/);
});

test('stage names and output dirs must be unique; init_from must name an earlier stage', () => {
  const two = `name: t
stages:
  - name: a
    kind: eval
    suite: mmeb
    model: m
    data: {root: d}
  - name: b
    kind: eval
    suite: mmeb
    model: m
    data: {root: d}
`;
  parseRecipe(two, { env: {} });
  const dup = recipeError(() => parseRecipe(two, { file: 't.yaml', overrides: ['stages.1.name=a'], env: {} }));
  assert.match(dup.message, /stages\[1\]\.name: .*stage name `a` is already used by stages\[0\]/);
  const dir = recipeError(() => parseRecipe(two, { file: 't.yaml', overrides: ['stages.1.output_dir=runs/t/a/'], env: {} }));
  assert.match(dir.message, /output_dir `runs\/t\/a\/` is already used by stages\[0\]/);
  const later = recipeError(() => parseRecipe(two, { file: 't.yaml', overrides: ['stages.0.init_from=b'], env: {} }));
  assert.match(later.message, /stages\[0\]\.init_from: .*runs after this one/);
  const self = recipeError(() => parseRecipe(two, { file: 't.yaml', overrides: ['stages.b.init_from=b'], env: {} }));
  assert.match(self.message, /its own output/);
  const named = two.replace('  - name: a', '  - name: first');
  const typo = recipeError(() => parseRecipe(named, { file: 't.yaml', overrides: ['stages.b.init_from=frist'], env: {} }));
  assert.match(typo.message, /init_from `frist` is not a stage name \(did you mean `first`\?\); write \.\/frist for a directory/);
  parseRecipe(two, { overrides: ['stages.1.init_from=a'], env: {} });
  parseRecipe(two, { overrides: ['stages.1.init_from=./checkpoints/a'], env: {} });
});
