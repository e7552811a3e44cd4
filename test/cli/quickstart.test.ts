/**
 * The README's first command, shortened: the bundled quickstart recipe through the CLI with the tiny
 * benchmark and a few steps per training stage. Every stage runs (data, teacher, the vision tower and
 * the aligned base MLLM, stage 1, stage 2 and its variant, four evals) and the run report is written
 * and named at the end.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { runCli } from './run-cli.js';
import { tempDir } from '../helpers.js';

const STAGES = ['data', 'teacher-train', 'teacher', 'caption-features', 'vision', 'align', 'distill', 'hardneg', 'hardneg-off', 'eval-base', 'eval-stage1', 'eval-stage2', 'eval-stage2-off'];

test('the quickstart recipe runs end to end through the CLI (shortened) and writes the run report', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const run = path.join(dir, 'run');
    const r = await runCli([
      'train',
      'recipes/quickstart.yaml',
      `output_dir=${run}`,
      `vars.data=${path.join(dir, 'synthetic')}`,
      'stages.data.size=tiny',
      'stages.teacher-train.train.epochs=null',
      'stages.teacher-train.train.max_steps=2',
      'stages.distill.train.epochs=null',
      'stages.distill.train.max_steps=2',
      'stages.hardneg.train.max_steps=2',
      'stages.hardneg.train.batch_size=8',
      'stages.hardneg.train.gradcache_chunk_size=8',
      'stages.hardneg.train.save_every=null',
      'stages.hardneg.loss.hard_negatives=4',
      'stages.hardneg.loss.inbatch_warmup_steps=1',
      'stages.vision.train.epochs=null',
      'stages.vision.train.max_steps=2',
      'stages.align.train.max_steps=2',
      'stages.align.train.batch_size=8',
    ], { timeoutMs: 900_000 });
    assert.equal(r.code, 0, r.stderr.slice(-3000));
    for (const s of STAGES) assert.ok(existsSync(path.join(run, s, 'stage.json')), `stage ${s} completed`);
    const md = await fsp.readFile(path.join(run, 'report.md'), 'utf8');
    for (const s of ['eval-base', 'eval-stage1', 'eval-stage2', 'eval-stage2-off']) assert.match(md, new RegExp(s), `report lists ${s}`);
    for (const s of ['teacher-train', 'vision', 'align', 'distill', 'hardneg', 'hardneg-off']) assert.match(md, new RegExp(`\\| ${s} \\|`), `report has the loss of ${s}`);
    assert.ok(existsSync(path.join(run, 'report.html')));
    assert.match(r.stderr, /report: .*report\.html/);
    // The whole chain of the intervals: the eval stages wrote each row's hit, the report read them back.
    assert.match(md, /\| Overall \(mean of 10 datasets\) \| [0-9.]+ \| [0-9.]+ \| ([-+][0-9.]+|0\.00) \[[-+0-9.]+, [-+0-9.]+\] \|/);
    assert.match(md, /paired bootstrap over the evaluation rows/);
    // The synthetic VQA rows name their question: the report scores each kind for every eval stage.
    assert.match(md, /### Hit@1 by kind of query\n[^]*\| Dataset \| Query kind \| eval-base \(base\) \| eval-stage1 \(distill\) \| eval-stage2 \(hardneg\) \| eval-stage2-off \(hardneg-off\) \|/);
    // Stage 2 trained on top of stage 1: its adapter chain names the distill adapter.
    const chain = JSON.parse(await fsp.readFile(path.join(run, 'hardneg', 'adapter-chain.json'), 'utf8')) as string[];
    assert.deepEqual(chain, [path.join(run, 'distill', 'adapter')]);
    // The variant really switched the filter off: in-batch loss, no false-negative statistics.
    const off = (await fsp.readFile(path.join(run, 'hardneg-off', 'metrics.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.ok(off.every((m) => m.false_negative_rate === undefined));
    const on = (await fsp.readFile(path.join(run, 'hardneg', 'metrics.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    // One in-batch warmup step, then the hard negatives with their false-negative statistics.
    assert.deepEqual(
      on.map((m) => typeof m.false_negative_rate === 'number'),
      [false, true],
    );
    // Every UniME stage and eval starts from the aligned tiny LLaVA the align stage wrote.
    const evalBase = JSON.parse(await fsp.readFile(path.join(run, 'eval-base', 'stage.json'), 'utf8')) as Record<string, unknown>;
    assert.match(JSON.stringify(evalBase), new RegExp(path.join(run, 'align', 'model').replace(/[/\\.]/g, '\\$&')));
    assert.ok(existsSync(path.join(run, 'align', 'model', 'unime_align.json')));
  } finally {
    await cleanup();
  }
});
