import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, promises as fsp, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { tempDir } from '../helpers.js';
import { makeTinyEmbedder } from '../models/embedder-fixture.js';
import { textRows, writeTextOnlyEvalSet, WORDS } from '../eval/eval-fixtures.js';
import { runCli } from './run-cli.js';

let dir: string;
let cleanup: () => Promise<void>;
let model: string;
let data: string;
before(async () => {
  ({ dir, cleanup } = await tempDir('unime-cli-eval-'));
  model = await makeTinyEmbedder(path.join(dir, 'model'), { seed: 5 });
  data = await writeTextOnlyEvalSet(path.join(dir, 'data'), { N24News: textRows(WORDS, 'news'), MSCOCO_t2i: textRows(WORDS, 'photo') });
});
after(() => cleanup());

test('unime eval mmeb: scores, prints the table, writes results and reports; the rerun embeds nothing', async () => {
  const out = path.join(dir, 'out');
  const r = await runCli(['eval', 'mmeb', '--model', model, '--data', data, '--out', out, '--batch-size', '4', '--max-length', '16']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /MMEB results: .*\(hit@1, percent\)/);
  assert.match(r.stdout, /N24News\s+Cls\s+IND\s+[0-9.]+\s+[0-9.]+/);
  assert.match(r.stdout, /Overall \(36-dataset mean, MMEB standard\)\s+[0-9.]+ \(incomplete\)\s+\[2\/36\]/);
  assert.match(r.stdout, /Missing \(34 of 36, not averaged\)/);
  assert.match(r.stderr, /\[1\/2 datasets done\] MSCOCO_t2i: hit@1/);
  assert.match(r.stderr, /24 inputs embedded at [0-9.]+ embeddings\/s, 8 from the cache/);
  for (const f of ['mmeb.json', 'mmeb-summary.json', 'mmeb-report.md', 'mmeb-report.html']) assert.ok(existsSync(path.join(out, f)), f);
  const json = JSON.parse(readFileSync(path.join(out, 'mmeb.json'), 'utf8'));
  assert.deepEqual(Object.keys(json.metrics.image), ['N24News', 'MSCOCO_t2i']);

  const again = await runCli(['eval', 'mmeb', '--model', model, '--data', data, '--out', out, '--batch-size', '4', '--max-length', '16']);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stderr, /^0 inputs embedded, 32 from the cache/m);
  assert.doesNotMatch(again.stderr, /loading/);
  const overall = (out: string) => /Overall.*$/m.exec(out)?.[0];
  assert.equal(overall(again.stdout), overall(r.stdout));

  // Another max length is another model identity: embedded afresh. --no-cache writes no cache.
  const other = path.join(dir, 'out-nocache');
  const nc = await runCli(['eval', 'mmeb', '--model', model, '--data', data, '--datasets', 'N24News', '--out', other, '--no-cache']);
  assert.equal(nc.code, 0, nc.stderr);
  assert.match(nc.stderr, /^16 inputs embedded/m);
  assert.ok(!existsSync(path.join(other, 'embed-cache')));
  const json2 = JSON.parse(readFileSync(path.join(other, 'mmeb.json'), 'utf8'));
  assert.deepEqual(Object.keys(json2.metrics.image), ['N24News']);
  // The summarize command reads the result back.
  const sum = await runCli(['eval', 'summarize', path.join(out, 'mmeb.json')]);
  assert.equal(sum.code, 0, sum.stderr);
  assert.match(sum.stdout, /\| N24News \| Classification \| IND \| [0-9.]+ \|/);
});

test('unime eval mmeb: a bad --data exits 2 naming the path; unknown datasets and bad numbers exit 2; a suite without --data fails', async () => {
  const nowhere = path.join(dir, 'no-such-folder');
  const a = await runCli(['eval', 'mmeb', '--model', model, '--data', nowhere]);
  assert.equal(a.code, 2);
  assert.ok(a.stderr.includes(nowhere), a.stderr);
  assert.match(a.stderr, /no such folder/);

  const empty = path.join(dir, 'empty');
  await fsp.mkdir(empty);
  const b = await runCli(['eval', 'mmeb', '--model', model, '--data', empty]);
  assert.equal(b.code, 2);
  assert.ok(b.stderr.includes(empty));
  assert.match(b.stderr, /holds no MMEB-eval dataset/);

  const c = await runCli(['eval', 'mmeb', '--model', model, '--data', data, '--datasets', 'N24News,Nope']);
  assert.equal(c.code, 2);
  assert.match(c.stderr, /dataset "Nope" is not in the data folder \(it has: MSCOCO_t2i, N24News\)/);

  const d = await runCli(['eval', 'mmeb', '--model', model, '--data', data, '--batch-size', '0']);
  assert.equal(d.code, 2);
  assert.match(d.stderr, /--batch-size: must be a positive whole number/);

  const e = await runCli(['eval', 'mmeb', '--model', path.join(dir, 'no-model'), '--data', data]);
  assert.equal(e.code, 2);
  assert.match(e.stderr, /neither an existing directory nor a Hub id/);

  const f = await runCli(['eval', 'sugarcrepe', '--model', model]);
  assert.notEqual(f.code, 0);
  assert.match(f.stderr, /data/);

  const g = await runCli(['eval', 'mmeb', '--data', data]);
  assert.notEqual(g.code, 0);
  assert.match(g.stderr, /model/);
});
