/** `unime eval retrieval|sugarcrepe|zeroshot` end to end with the tiny LLaVA fixture on a few generated PNGs. */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, promises as fsp, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { fixture, tempDir } from '../helpers.js';
import { encodePng } from '../../tools/synth/encode.js';
import { runCli } from './run-cli.js';
import { readSuiteResult } from '../../src/eval/suite-eval.js';

let dir: string;
let cleanup: () => Promise<void>;
const model = fixture('llava', 'llava-tiny');
const COLORS: Record<string, [number, number, number]> = { red: [220, 20, 20], green: [20, 200, 40], blue: [30, 40, 210], yellow: [230, 220, 30] };

async function png(file: string, rgb: [number, number, number], seed: number): Promise<void> {
  const px = new Uint8Array(16 * 16 * 3);
  for (let i = 0; i < 256; i++) for (let c = 0; c < 3; c++) px[i * 3 + c] = Math.max(0, Math.min(255, rgb[c]! + (((i * 7 + seed * 13 + c * 5) % 21) - 10)));
  await fsp.mkdir(path.dirname(file), { recursive: true });
  await fsp.writeFile(file, encodePng(16, 16, px));
}

before(async () => {
  ({ dir, cleanup } = await tempDir('unime-cli-suites-'));
  const names = Object.keys(COLORS);
  for (const [i, n] of names.entries()) {
    await png(path.join(dir, 'ret', 'img', `${n}.png`), COLORS[n]!, i);
    await png(path.join(dir, 'sc', 'val2017', `0000${i}.jpg`.replace('.jpg', '.png')), COLORS[n]!, i);
    await png(path.join(dir, 'zs', n, 'a.png'), COLORS[n]!, i);
    await png(path.join(dir, 'zs', n, 'b.png'), COLORS[n]!, i + 9);
  }
  await fsp.writeFile(
    path.join(dir, 'ret', 'captions.jsonl'),
    names.map((n) => JSON.stringify({ image: `img/${n}.png`, captions: [`a ${n} square`, `something ${n}`] })).join('\n') + '\n',
  );
  for (const sub of ['add_att', 'swap_obj']) {
    const d = Object.fromEntries(names.map((n, i) => [String(i), { filename: `0000${i}.png`, caption: `a ${n} square`, negative_caption: `a ${names[(i + 1) % names.length]} circle` }]));
    await fsp.writeFile(path.join(dir, 'sc', `${sub}.json`), JSON.stringify(d));
  }
  await fsp.writeFile(path.join(dir, 'templates.txt'), 'a photo of a {} thing.\n{}\n');
});
after(() => cleanup());

const common = ['--model', model, '--batch-size', '4', '--max-length', '64', '--progress-every', '0'];

test('unime eval retrieval: recall both ways, results JSON and Markdown; the rerun embeds nothing', async () => {
  const out = path.join(dir, 'out-ret');
  const r = await runCli(['eval', 'retrieval', ...common, '--data', path.join(dir, 'ret'), '--out', out], { timeoutMs: 300000 });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /retrieval results: .*\(percent\)/);
  assert.match(r.stdout, /image-to-text\s+[0-9.]+\s+[0-9.]+\s+100\.00/);
  assert.match(r.stderr, /4 images, 8 captions/);
  assert.match(r.stderr, /^12 inputs embedded/m);
  const json = JSON.parse(readFileSync(path.join(out, 'retrieval.json'), 'utf8'));
  assert.equal(json.suite, 'retrieval');
  for (const k of ['i2t_r1', 'i2t_r5', 'i2t_r10', 't2i_r1', 't2i_r5', 't2i_r10', 'mean']) assert.equal(typeof json.scores[k], 'number', k);
  assert.equal(json.scores.t2i_r5, 100); // 4 images: R@5 is certain
  assert.equal(json.scores.i2t_r10, 100); // 8 captions, 2 of them right: rank 7 at worst
  assert.equal(json.settings.image_prompt, '<image>\nSummary above image in one word:');
  assert.match(readFileSync(path.join(out, 'retrieval-report.md'), 'utf8'), /\| image-to-text \| [0-9.]+ \|/);
  // What a run report reads back: the six recalls and their mean, as written.
  const back = await readSuiteResult(path.join(out, 'retrieval.json'));
  assert.deepEqual(back.metrics.map((m) => m.value), ['i2t_r1', 'i2t_r5', 'i2t_r10', 't2i_r1', 't2i_r5', 't2i_r10', 'mean'].map((k) => json.scores[k]));
  assert.equal(back.metrics[6]!.label, 'mean of the six recalls');
  // ... and the per-row outcomes behind them: per image (i2t) and per caption (t2i), R@1 <= R@5 <= R@10.
  assert.deepEqual(back.rows!.strata.map((g) => g.map((m) => m.length)), [[4, 4, 4], [8, 8, 8]]);
  for (const g of back.rows!.strata) for (let i = 0; i < g[0]!.length; i++) assert.ok(g[0]![i]! <= g[1]![i]! && g[1]![i]! <= g[2]![i]!);
  assert.equal(json.scores.row_hits.t2i_r5, '11111111');
  const again = await runCli(['eval', 'retrieval', ...common, '--data', path.join(dir, 'ret', 'captions.jsonl'), '--out', out], { timeoutMs: 300000 });
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stderr, /^0 inputs embedded, 12 from the cache/m);
  assert.equal(JSON.parse(readFileSync(path.join(out, 'retrieval.json'), 'utf8')).scores.mean, json.scores.mean);
});

test('unime eval sugarcrepe: per-subset accuracy and the mean; missing subsets are listed', async () => {
  const out = path.join(dir, 'out-sc');
  const r = await runCli(['eval', 'sugarcrepe', ...common, '--data', path.join(dir, 'sc'), '--out', out, '--no-cache'], { timeoutMs: 300000 });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /add_att\s+[0-9.]+\s+4/);
  assert.match(r.stdout, /replace_rel\s+missing/);
  assert.match(r.stdout, /mean \(2 subsets, incomplete\)\s+[0-9.]+/);
  const json = JSON.parse(readFileSync(path.join(out, 'sugarcrepe.json'), 'utf8'));
  assert.deepEqual(Object.keys(json.scores.subsets), ['add_att', 'swap_obj']);
  assert.equal(json.scores.complete, false);
  assert.equal(json.scores.missing.length, 5);
  assert.deepEqual((await readSuiteResult(path.join(out, 'sugarcrepe.json'))).metrics, [
    { label: 'add_att', value: json.scores.subsets.add_att.accuracy },
    { label: 'swap_obj', value: json.scores.subsets.swap_obj.accuracy },
    { label: 'mean of 2 subsets', value: json.scores.mean },
  ]);
  assert.ok(existsSync(path.join(out, 'sugarcrepe-report.md')));
  assert.ok(!existsSync(path.join(out, 'embed-cache')));
  const one = await runCli(['eval', 'sugarcrepe', ...common, '--data', path.join(dir, 'sc'), '--out', out, '--no-cache', '--subsets', 'swap_obj']);
  assert.equal(one.code, 0, one.stderr);
  assert.deepEqual(Object.keys(JSON.parse(readFileSync(path.join(out, 'sugarcrepe.json'), 'utf8')).scores.subsets), ['swap_obj']);
  const unknown = await runCli(['eval', 'sugarcrepe', ...common, '--data', path.join(dir, 'sc'), '--subsets', 'swap_cat']);
  assert.equal(unknown.code, 2, unknown.stderr);
  assert.match(unknown.stderr, /unknown SugarCrepe subset "swap_cat"/);
});

test('unime eval zeroshot: ImageFolder with a templates file; top-1 and top-5', async () => {
  const out = path.join(dir, 'out-zs');
  const r = await runCli(['eval', 'zeroshot', ...common, '--data', path.join(dir, 'zs'), '--templates', path.join(dir, 'templates.txt'), '--out', out, '--text-prompt', 'Label: <sent>\\nIn one word:'], { timeoutMs: 300000 });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /8 images, 4 classes x 2 templates/);
  assert.match(r.stdout, /top-5\s+100\.00/);
  const json = JSON.parse(readFileSync(path.join(out, 'zeroshot.json'), 'utf8'));
  assert.deepEqual(json.scores.class_names, ['blue', 'green', 'red', 'yellow']);
  assert.equal(json.scores.top5, 100);
  assert.equal(typeof json.scores.top1, 'number');
  assert.deepEqual(json.settings.templates, ['a photo of a {} thing.', '{}']);
  assert.deepEqual((await readSuiteResult(path.join(out, 'zeroshot.json'))).metrics, [
    { label: 'top-1', value: json.scores.top1 },
    { label: 'top-5', value: 100 },
  ]);
  assert.equal(json.scores.row_hits.top5, '11111111');
  assert.equal([...json.scores.row_hits.top1].filter((c: string) => c === '1').length / 8 * 100, json.scores.top1);
  assert.equal(json.settings.text_prompt, 'Label: <sent>\nIn one word:');
  assert.ok(existsSync(path.join(out, 'zeroshot-report.md')));
});

test('unime eval retrieval|sugarcrepe|zeroshot: bad --data exits 2 naming the path and field', async () => {
  const nowhere = path.join(dir, 'no-such');
  const a = await runCli(['eval', 'retrieval', '--model', model, '--data', nowhere]);
  assert.equal(a.code, 2, a.stderr);
  assert.ok(a.stderr.includes(nowhere), a.stderr);
  const bad = path.join(dir, 'bad.jsonl');
  await fsp.writeFile(bad, JSON.stringify({ image: 'ret/img/red.png', text: 'oops' }) + '\n');
  const b = await runCli(['eval', 'retrieval', '--model', model, '--data', bad]);
  assert.equal(b.code, 2, b.stderr);
  assert.ok(b.stderr.includes(bad), b.stderr);
  assert.match(b.stderr, /caption/);
  const c = await runCli(['eval', 'sugarcrepe', '--model', model, '--data', path.join(dir, 'zs')]);
  assert.equal(c.code, 2, c.stderr);
  assert.match(c.stderr, /SugarCrepe|image folder/);
  const d = await runCli(['eval', 'zeroshot', '--model', model, '--data', path.join(dir, 'ret', 'img')]);
  assert.equal(d.code, 2, d.stderr);
  assert.match(d.stderr, /no class folders/);
});
