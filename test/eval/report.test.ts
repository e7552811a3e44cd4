import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { fixture, tempDir } from '../helpers.js';
import { UnimeError } from '../../src/errors.js';
import { type MmebSummary, parseMmebReport, summarizeMmeb } from '../../src/eval/aggregate.js';
import {
  comparisonHtml,
  comparisonMarkdown,
  escapeHtml,
  escapeMarkdown,
  formatDelta,
  htmlReport,
  markdownReport,
  writeComparisonReports,
  writeResultReports,
} from '../../src/eval/report.js';

type ReportJson = { metadata: Record<string, unknown>; metrics: { image: Record<string, unknown> } };
const load = (): ReportJson => JSON.parse(readFileSync(fixture('eval', 'mmeb-report-vlm2vec-v2-qwen2vl-2b.json'), 'utf8')) as ReportJson;
const summaryOf = (json: ReportJson): MmebSummary => summarizeMmeb(parseMmebReport(json, 'test.json'));

const PUBLISHED = ['64.92', '68.82', '60.05', '62.93', '56.42', '69.60', '77.12', '66.52'];

/** The fixture with every hit@1 raised by `delta` (fraction), under another model name. */
function shifted(name: string, delta: number): ReportJson {
  const json = load();
  json.metadata.model_name = name;
  for (const v of Object.values(json.metrics.image)) {
    const m = v as Record<string, number>;
    m['hit@1'] = Math.min(1, m['hit@1']! + delta);
  }
  return json;
}

function assertSelfContained(html: string): void {
  assert.ok(html.startsWith('<!DOCTYPE html>'));
  assert.ok(html.trimEnd().endsWith('</html>'));
  for (const banned of ['<script', '<link', '<img', '<iframe', 'src=', 'href=', 'http:', 'https:', 'url(', '@import']) {
    assert.ok(!html.includes(banned), `page contains ${banned}`);
  }
}

test('Markdown for one result carries the aggregates, both overalls labelled, and every dataset', () => {
  const md = markdownReport(summaryOf(load()));
  for (const n of PUBLISHED) assert.ok(md.includes(`| ${n} |`), n);
  assert.match(md, /\| Overall \(mean of 36 datasets, MMEB standard\) \| 64\.92 \| 36\/36 datasets \|/);
  assert.match(md, /\| Four-category mean \(paper-style overall, not the MMEB standard\) \| 66\.52 \| 4\/4 meta-tasks \|/);
  assert.match(md, /\| ImageNet-1K \| Classification \| IND \| 80\.80 \|/);
  assert.match(md, /\| VisualNews\\_t2i \| Retrieval \| IND \| 74\.70 \|/);
  assert.match(md, /\| Visual7W-Pointing \| Grounding \| OOD \| 69\.00 \|/);
  assert.ok(!md.includes('incomplete'));
});

test('HTML for one result is self-contained, has one SVG chart per meta-task and the numbers', () => {
  const html = htmlReport(summaryOf(load()));
  assertSelfContained(html);
  for (const n of PUBLISHED) assert.ok(html.includes(`>${n}<`), n);
  assert.equal(html.match(/<svg /g)?.length, 5); // summary + 4 meta-tasks
  for (const t of ['Classification (Cls)', 'VQA', 'Retrieval (Ret)', 'Grounding (Grd)']) assert.ok(html.includes(`<title>${t}</title>`), t);
  assert.ok(html.includes('<td>ImageNet-1K</td>'));
  assert.ok(html.includes('>80.80<'));
});

test('names from files are escaped in Markdown and HTML', () => {
  const json = load();
  json.metadata.model_name = '<b>evil</b> & co';
  json.metrics.image['<img src=x onerror=alert(1)>|col'] = { 'hit@1': 0.5, num_pred: 2, num_data: 2 };
  const s = summaryOf(json);
  const html = htmlReport(s);
  assert.ok(!html.includes('<img src=x'));
  assert.ok(!html.includes('<b>evil'));
  assert.ok(html.includes('&lt;img src=x onerror=alert(1)&gt;|col'));
  assert.ok(html.includes('&lt;b&gt;evil&lt;/b&gt; &amp; co'));
  assertSelfContained(html.replaceAll('src=x', 'SRC')); // the escaped name is the only "src="
  const md = markdownReport(s);
  assert.ok(md.includes('\\<img src=x onerror=alert(1)\\>\\|col'));
  assert.ok(md.includes('\\<b\\>evil\\</b\\> \\& co'));
  assert.ok(md.includes('| 50.00 |'));
  assert.equal(escapeMarkdown('a|b\nc_d'), 'a\\|b c\\_d');
  assert.equal(escapeHtml(`<a href="x">'&'</a>`), '&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;');
});

test('an incomplete result says so in both formats', () => {
  const json = load();
  delete json.metrics.image.OVEN;
  json.metrics.image.VizWiz = 'FILE_N/A';
  const s = summaryOf(json);
  const md = markdownReport(s);
  assert.match(md, /\*\*Incomplete\.\*\* 2 of 36 datasets missing: VizWiz \(marked FILE\\_N/);
  assert.match(md, /OVEN \(not in the report\)/);
  assert.match(md, /\| Overall \(mean of 36 datasets, MMEB standard\) \| [0-9.]+ \(incomplete\) \| 34\/36 datasets \|/);
  assert.match(md, /\| Classification \(Cls\) \| 62\.93 \| 10\/10 datasets \|/);
  assert.match(md, /\| OVEN \| Retrieval \| OOD \| missing \|/);
  const html = htmlReport(s);
  assertSelfContained(html);
  assert.match(html, /<p class="warn"><strong>Incomplete\.<\/strong> 2 of 36 datasets missing/);
  assert.match(html, /class="num incomplete">[0-9.]+ \(incomplete\)</);
  assert.ok(html.includes('missing (not in the report)'));
});

test('comparison: base vs stage 1 vs stage 2, deltas against the base', () => {
  const base = summaryOf(load());
  const stage1 = summaryOf(shifted('stage-1', 0.01));
  const stage2Json = shifted('stage-2', -0.005);
  delete stage2Json.metrics.image.EDIS;
  const stage2 = summaryOf(stage2Json);
  const entries = [
    { label: 'base', summary: base },
    { label: 'stage 1', summary: stage1 },
    { label: 'stage 2', summary: stage2 },
  ];
  const md = comparisonMarkdown(entries);
  assert.match(md, /\| Score \| base \| stage 1 \| Δ vs base \| stage 2 \| Δ vs base \|/);
  // Classification: every dataset +1 point in stage 1, -0.5 in stage 2 (complete).
  assert.match(md, /\| Classification \(Cls\) \| 62\.93 \| 63\.93 \| \+1\.00 \| 62\.43 \| -0\.50 \|/);
  assert.match(md, /\| Overall \(mean of 36 datasets, MMEB standard\) \| 64\.92 \| [0-9.]+ \| \+1\.00 \| [0-9.]+ \(incomplete\) \| [-+0-9.]+ \(incomplete\) \|/);
  assert.match(md, /\| EDIS \| Retrieval \| OOD \| 84\.20 \| 85\.20 \| \+1\.00 \| missing \| n\/a \|/);
  assert.match(md, /\*\*stage 2 is incomplete\.\*\* 1 of 36 datasets missing: EDIS/);
  const html = comparisonHtml(entries);
  assertSelfContained(html);
  assert.equal(html.match(/<svg /g)?.length, 5);
  for (const label of ['base', 'stage 1', 'stage 2']) assert.ok(html.includes(`</i>${label}</span>`), label);
  assert.ok(html.includes('>+1.00<'));
  assert.ok(html.includes('>-0.50<'));
  assert.ok(html.includes('missing (stage 2)'));
  assert.throws(() => comparisonMarkdown([]), (e: unknown) => e instanceof UnimeError);
  const other = summarizeMmeb(parseMmebReport(load(), 'x.json'), 'hit@5');
  assert.throws(() => comparisonHtml([{ label: 'a', summary: base }, { label: 'b', summary: other }]), /summarised on hit@5/);
});

test('formatDelta rounds the unrounded difference half to even and signs it', () => {
  assert.equal(formatDelta(50, 51), '+1.00');
  assert.equal(formatDelta(50, 49.5), '-0.50');
  assert.equal(formatDelta(50, 50), '0.00');
  assert.equal(formatDelta(50, 50.001), '0.00');
  assert.equal(formatDelta(10, 10.125), '+0.12');
  assert.equal(formatDelta(null, 3), 'n/a');
  assert.equal(formatDelta(3, null), 'n/a');
});

test('reports are written atomically to the output folder', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    const s = summaryOf(load());
    const one = await writeResultReports(path.join(dir, 'run'), s);
    assert.deepEqual(one, { markdown: path.join(dir, 'run', 'mmeb-report.md'), html: path.join(dir, 'run', 'mmeb-report.html') });
    assert.equal(await fsp.readFile(one.markdown, 'utf8'), markdownReport(s));
    assert.equal(await fsp.readFile(one.html, 'utf8'), htmlReport(s));
    const cmp = await writeComparisonReports(path.join(dir, 'run'), [{ label: 'a', summary: s }, { label: 'b', summary: s }], { baseName: 'a-vs-b' });
    assert.ok((await fsp.readFile(cmp.markdown, 'utf8')).includes('| 64.92 | 64.92 | 0.00 |'));
    assert.deepEqual((await fsp.readdir(path.join(dir, 'run'))).sort(), ['a-vs-b.html', 'a-vs-b.md', 'mmeb-report.html', 'mmeb-report.md']);
  } finally {
    await cleanup();
  }
});
