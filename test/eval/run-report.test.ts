import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, promises as fsp, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { tempDir } from '../helpers.js';
import { catalogMetadata, createMmebResult, writeMmebReport, type DatasetCatalog } from '../../src/eval/aggregate.js';
import { writeRunReport } from '../../src/eval/run-report.js';
import { RESULT_FILE, SUMMARY_FILE } from '../../src/eval/mmeb-eval.js';

let dir: string;
let cleanup: () => Promise<void>;
before(async () => ({ dir, cleanup } = await tempDir('unime-run-report-')));
after(() => cleanup());

const CATALOG: DatasetCatalog = {
  name: 'Synthetic MMEB',
  datasets: [
    { name: 'SynCls', metaTask: 'Classification', distribution: 'IND' },
    { name: 'SynVQA', metaTask: 'VQA', distribution: 'IND' },
    { name: 'SynRet-t2i', metaTask: 'Retrieval', distribution: 'IND' },
    { name: 'SynGrd', metaTask: 'Grounding', distribution: 'IND' },
    { name: 'SynCls-OOD', metaTask: 'Classification', distribution: 'OOD' },
    { name: 'SynGrd-OOD', metaTask: 'Grounding', distribution: 'OOD' },
  ],
};

async function evalStage(label: string, scores: Record<string, number>): Promise<{ label: string; dir: string }> {
  const d = path.join(dir, 'run', label);
  const metrics = Object.fromEntries(Object.entries(scores).map(([k, v]) => [k, { 'hit@1': v, num_pred: 8, num_data: 8 }]));
  await writeMmebReport(path.join(d, RESULT_FILE), createMmebResult(`model ${label}`, metrics, { dataset_catalog: catalogMetadata(CATALOG) }));
  return { label, dir: d };
}

async function trainStage(label: string, losses: number[]): Promise<{ label: string; dir: string }> {
  const d = path.join(dir, 'run', label);
  await fsp.mkdir(d, { recursive: true });
  const lines = losses.map((loss, i) => JSON.stringify({ step: i + 1, loss, lr: 1e-4, grad_norm: 1 })).join('\n') + '\n{"step": 9, "lo';
  await fsp.writeFile(path.join(d, 'metrics.jsonl'), lines);
  return { label, dir: d };
}

test('writeRunReport: base vs stage 1 vs stage 2 per meta-task, IND, OOD, overall with deltas, and each training stage\'s loss curve', async () => {
  const all = (v: number) => Object.fromEntries(CATALOG.datasets.map((d) => [d.name, v]));
  const base = await evalStage('base', all(0.25));
  const s1 = await evalStage('eval-stage1', { ...all(0.5), 'SynGrd-OOD': 0.75 });
  const { 'SynVQA': _dropped, ...partial } = all(0.875);
  const s2 = await evalStage('eval-stage2', partial);
  // Distractor statistics, as unime eval writes them into the summary for annotated data (stage 1 has none).
  const stat = (kind: string, beaten: number) => ({ kind, rows: 8, beaten, rate: (100 * beaten) / 8 });
  // Row hits (8 rows each, averaging to the scores above) on base and stage 1: their deltas get intervals.
  const hits = (n: number, extra: Record<string, string> = {}) => ({ ...Object.fromEntries(CATALOG.datasets.map((d) => [d.name, '1'.repeat(n) + '0'.repeat(8 - n)])), ...extra });
  await fsp.writeFile(path.join(base.dir, SUMMARY_FILE), JSON.stringify({ distractors: { SynCls: [stat('same-colour', 6), stat('other', 1)] }, row_hits: hits(2) }));
  await fsp.writeFile(path.join(s1.dir, SUMMARY_FILE), JSON.stringify({ row_hits: hits(4, { 'SynGrd-OOD': '11111100' }) }));
  const asked = (kind: string, hitCount: number) => ({ kind, rows: 4, hits: hitCount, rate: (100 * hitCount) / 4 });
  await fsp.writeFile(
    path.join(s2.dir, SUMMARY_FILE),
    JSON.stringify({ distractors: { SynCls: [stat('same-colour', 2)] }, query_kinds: { 'SynVQA-OOD': [asked('count', 3), asked('relation', 1)] } }),
  );
  const missingEval = { label: 'eval-never-ran', dir: path.join(dir, 'run', 'eval-never-ran') };
  const t1 = await trainStage('distill', [2.0, 1.5, 1.2, 1.0]);
  const t2 = await trainStage('hardneg', [3.0, 2.5, 1.0]);
  const t3 = { label: 'empty', dir: path.join(dir, 'run', 'empty') };

  const runDir = path.join(dir, 'run');
  const files = await writeRunReport(runDir, [base, s1, s2, missingEval], [t1, t2, t3]);
  assert.equal(files.markdown, path.join(runDir, 'report.md'));
  assert.equal(files.svgs.length, 2);
  for (const f of files.svgs) assert.ok(existsSync(f));

  const md = readFileSync(files.markdown, 'utf8');
  assert.match(md, /^# Run report: run$/m);
  assert.match(md, /^## Evaluation$/m);
  assert.match(md, /^## Synthetic MMEB results: base vs eval-stage1 vs eval-stage2$/m);
  // Overall: base 25, stage 1 (5*50 + 75)/6 = 54.17, stage 2 87.5 over 5 of 6 (incomplete).
  // Stage 1's deltas carry bootstrap intervals (both sides have row hits); stage 2's do not.
  const iv = '\\[[-+]?[0-9.]+, [-+]?[0-9.]+\\]';
  assert.match(md, new RegExp(`\\| Overall \\(mean of 6 datasets\\) \\| 25\\.00 \\| 54\\.17 \\| \\+29\\.17 ${iv} \\| 87\\.50 \\(incomplete\\) \\| \\+62\\.50 \\(incomplete\\) \\|`));
  assert.match(md, new RegExp(`\\| IND \\(4 datasets\\) \\| 25\\.00 \\| 50\\.00 \\| \\+25\\.00 ${iv} \\|`));
  assert.match(md, new RegExp(`\\| OOD \\(2 datasets\\) \\| 25\\.00 \\| 62\\.50 \\| \\+37\\.50 ${iv} \\|`));
  assert.match(md, new RegExp(`\\| Grounding \\(Grd\\) \\| 25\\.00 \\| 62\\.50 \\| \\+37\\.50 ${iv} \\|`));
  assert.match(md, new RegExp(`\\| VQA \\| 25\\.00 \\| 50\\.00 \\| \\+25\\.00 ${iv} \\| n\\/a \\| n\\/a \\(incomplete\\) \\|`));
  assert.match(md, /paired bootstrap over the evaluation rows/);
  assert.match(md, /\*\*eval-stage2 is incomplete\.\*\* 1 of 6 datasets missing: SynVQA/);
  assert.match(md, /Eval stage "eval-never-ran" has no results/);
  assert.match(md, /Training stage "empty" has no logged steps/);
  assert.match(md, /\| distill \| 4 \| 4 \| 2 \| 1 \| 1 \|/);
  assert.match(md, /\| hardneg \| 3 \| 3 \| 3 \| 1 \| 1 \|/);
  assert.match(md, /!\[loss: distill\]\(report-loss-1-distill\.svg\)/);
  assert.match(md, /^### Which distractors win$/m);
  assert.match(md, /\| Dataset \| Distractor kind \| base \| eval-stage2 \|\n/);
  assert.match(md, /\| SynCls \| same-colour \(8\) \| 75\.0 \| 25\.0 \|/);
  assert.match(md, /\| SynCls \| other \(8\) \| 12\.5 \|  \|/);
  // hit@1 per kind of query: only stage 2's summary has it
  assert.match(md, /^### Hit@1 by kind of query$/m);
  assert.match(md, /\| Dataset \| Query kind \| eval-stage2 \|\n/);
  assert.match(md, /\| SynVQA-OOD \| count \(4\) \| 75\.0 \|/);
  assert.match(md, /\| SynVQA-OOD \| relation \(4\) \| 25\.0 \|/);

  const html = readFileSync(files.html, 'utf8');
  assert.match(html, /^<!DOCTYPE html>/);
  assert.match(html, /<h1>Run report: run<\/h1>/);
  assert.match(html, /<h2>Synthetic MMEB results: base vs eval-stage1 vs eval-stage2<\/h2>/);
  assert.equal((html.match(/<polyline class="curve" data-points="4"/g) ?? []).length, 1);
  assert.equal((html.match(/<polyline class="curve" data-points="3"/g) ?? []).length, 1);
  assert.match(html, /empty: no logged steps/);
  assert.match(html, /<h3>Which distractors win<\/h3>/);
  assert.match(html, /<h3>Hit@1 by kind of query<\/h3>/);
  assert.doesNotMatch(html, /<script/);
});

test('writeRunReport with no results and no training stages still writes both files, saying so', async () => {
  const runDir = path.join(dir, 'bare');
  await fsp.mkdir(runDir);
  const files = await writeRunReport(runDir, [], []);
  assert.match(readFileSync(files.markdown, 'utf8'), /No eval stage has results yet\.[\s\S]*No training stages\./);
  assert.match(readFileSync(files.html, 'utf8'), /No eval stage has results yet/);
});

test('writeRunReport: a table per other suite (retrieval, SugarCrepe, zero-shot), one column per eval stage, deltas against the first; bad results are noted', async () => {
  const root = path.join(dir, 'suite-run');
  const write = async (name: string, value: unknown) => {
    const d = path.join(root, name);
    await fsp.mkdir(d, { recursive: true });
    const suite = (value as { suite: string }).suite;
    await fsp.writeFile(path.join(d, `${suite}.json`), JSON.stringify(value));
    return d;
  };
  const ret = (mean: number) => ({ suite: 'retrieval', model: `m${mean}`, scores: { i2t_r1: 10, i2t_r5: 30, i2t_r10: 50, t2i_r1: 12, t2i_r5: 32, t2i_r10: 52, mean } });
  // SugarCrepe results carry their per-sample outcomes (40 each): those deltas get bootstrap intervals.
  const bits = (pct: number) => '1'.repeat((pct * 40) / 100) + '0'.repeat(40 - (pct * 40) / 100);
  const sc = (swap: number) => ({
    suite: 'sugarcrepe',
    model: 'lift',
    scores: { subsets: { add_att: { accuracy: 70, samples: 40, row_hits: bits(70) }, swap_att: { accuracy: swap, samples: 40, row_hits: bits(swap) } }, mean: (70 + swap) / 2 },
  });
  const dirs = [
    { label: 'lift-ret', suite: 'retrieval' as const, dir: await write('lift-ret', ret(31)) },
    { label: 'llm2clip-ret', suite: 'retrieval' as const, dir: await write('llm2clip-ret', ret(36.5)) },
    { label: 'lift-sc', suite: 'sugarcrepe' as const, dir: await write('lift-sc', sc(40)) },
    { label: 'proclip-sc', suite: 'sugarcrepe' as const, dir: await write('proclip-sc', sc(52.5)) },
    { label: 'broken-zs', suite: 'zeroshot' as const, dir: await write('broken-zs', { suite: 'zeroshot', scores: { top1: 'high' } }) },
    { label: 'never-ran', suite: 'zeroshot' as const, dir: path.join(root, 'never-ran') },
  ];
  const files = await writeRunReport(root, [], [], dirs);
  const md = readFileSync(files.markdown, 'utf8');
  assert.doesNotMatch(md, /No eval stage has results yet/);
  assert.match(md, /^### Caption retrieval \(recall, percent\)\n\n\| Metric \| lift-ret \| llm2clip-ret \| Δ vs lift-ret \|/m);
  assert.match(md, /\| image-to-text R@1 \| 10\.00 \| 10\.00 \| 0\.00 \|/);
  // The candidate is right on five more rows (16-20) and wrong on none the baseline gets: a resample's
  // difference is 2.5 points per draw of those rows, and fewer than 2.5 % of resamples miss all five.
  assert.match(md, /\| swap\\_att \| 40\.00 \| 52\.50 \| \+12\.50 \[\+[0-9.]+, \+[0-9.]+\] \|/);
  assert.match(md, /\| add\\_att \| 70\.00 \| 70\.00 \| 0\.00 \[0\.0, 0\.0\] \|/);
  assert.match(md, /\| mean of 2 subsets \| 55\.00 \| 61\.25 \| \+6\.25 \[\+[0-9.]+, \+[0-9.]+\] \|/);
  assert.match(md, /paired bootstrap interval over the suite's rows/);
  assert.match(md, /\| mean of the six recalls \| 31\.00 \| 36\.50 \| \+5\.50 \|/); // no row outcomes: no interval
  assert.match(md, /Models: lift-ret: m31; llm2clip-ret: m36\.5\./);
  assert.doesNotMatch(md, /Zero-shot classification/);
  assert.match(md, /Eval stage "broken-zs": .*broken-zs[/\\]zeroshot\.json.*scores\.top1.*\(left out of the zeroshot table\)/);
  assert.match(md, /Eval stage "never-ran" has no results/);
  const html = readFileSync(files.html, 'utf8');
  assert.match(html, /<h3>SugarCrepe \(accuracy of caption over hard negative, percent\)<\/h3>/);
  assert.match(html, /<td class="num">\+12\.50 \[\+[0-9.]+, \+[0-9.]+\]<\/td>/);
});
