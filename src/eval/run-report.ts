/**
 * The report of a multi-stage run (report.md + report.html in the run dir): the MMEB comparison of
 * its eval stages (base vs stage 1 vs stage 2: meta-tasks, IND, OOD, overall, per dataset, with
 * deltas against the first), a table per other suite (caption retrieval, SugarCrepe, zero-shot: one
 * column per eval stage) and the loss curve of each training stage from its metrics.jsonl.
 * An eval stage without results, or a training stage without metrics, is said so in the report,
 * never dropped silently.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import * as path from 'node:path';
import { writeBytesAtomic } from '../io/atomic.js';
import { lineChartSvg } from '../train/plots.js';
import { METRICS_FILE, readMetrics, type MetricRecord } from '../train/metrics.js';
import { readMmebReport, summarizeMmeb } from './aggregate.js';
import { annotationTables, type DistractorColumn, type DistractorStats, type KindColumn, type QueryKindStats } from './distractors.js';
import { RESULT_FILE, SUMMARY_FILE } from './mmeb-eval.js';
import { parseRowHits, type RowHits } from './significance.js';
import { type ComparisonEntry, comparisonHtmlParts, comparisonMarkdown, escapeHtml, escapeMarkdown, htmlPage } from './report.js';
import { suiteComparison, suiteComparisonHtml, suiteComparisonMarkdown, type SuiteComparison } from './suite-compare.js';
import { OTHER_SUITES, readSuiteResult, type OtherSuite, type SuiteResultSummary } from './suite-eval.js';

export interface StageDir {
  label: string;
  dir: string;
}

/** An eval stage of another suite than MMEB (caption retrieval, SugarCrepe, zero-shot). */
export interface SuiteStageDir extends StageDir {
  suite: OtherSuite;
}

/** One table per suite: its headline metrics, one column per eval stage, deltas against the first. */
async function suiteTables(dirs: readonly SuiteStageDir[], notes: string[]): Promise<SuiteComparison[]> {
  const tables: SuiteComparison[] = [];
  for (const suite of OTHER_SUITES) {
    const results: { label: string; summary: SuiteResultSummary }[] = [];
    for (const s of dirs.filter((d) => d.suite === suite)) {
      const file = path.join(s.dir, `${suite}.json`);
      if (!existsSync(file)) {
        notes.push(`Eval stage "${s.label}" has no results (no ${file}): left out of the ${suite} table.`);
        continue;
      }
      try {
        results.push({ label: s.label, summary: await readSuiteResult(file) });
      } catch (e) {
        notes.push(`Eval stage "${s.label}": ${(e as Error).message.split('\n')[0]} (left out of the ${suite} table).`);
      }
    }
    if (results.length > 0) tables.push(suiteComparison(results));
  }
  return tables;
}

export const RUN_REPORT_BASENAME = 'report';

export interface RunReportFiles {
  markdown: string;
  html: string;
  /** One loss-curve SVG per training stage with metrics (linked from the Markdown). */
  svgs: string[];
}

interface TrainCurve {
  label: string;
  dir: string;
  records: MetricRecord[];
}

const num = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? 'n/a' : Math.abs(x) >= 1e-3 && Math.abs(x) < 1e5 ? String(Number(x.toPrecision(5))) : x.toExponential(3));

function slug(label: string, i: number): string {
  const s = label.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '');
  return `${RUN_REPORT_BASENAME}-loss-${i + 1}${s ? `-${s}` : ''}.svg`;
}

/** Write report.md and report.html (and the loss-curve SVGs) into `runDir`. */
export async function writeRunReport(
  runDir: string,
  evalStageDirs: readonly StageDir[],
  trainStageDirs: readonly StageDir[],
  suiteStageDirs: readonly SuiteStageDir[] = [],
): Promise<RunReportFiles> {
  const entries: ComparisonEntry[] = [];
  const notes: string[] = [];
  const distractors: DistractorColumn[] = [];
  const queryKinds: KindColumn<QueryKindStats>[] = [];
  for (const s of evalStageDirs) {
    const file = path.join(s.dir, RESULT_FILE);
    if (!existsSync(file)) {
      notes.push(`Eval stage "${s.label}" has no results (no ${file}): left out of the comparison.`);
      continue;
    }
    try {
      const extras = await readSummaryExtras(path.join(s.dir, SUMMARY_FILE));
      if (extras.problem) notes.push(`Eval stage "${s.label}": ${extras.problem}`);
      entries.push({ label: s.label, summary: summarizeMmeb(await readMmebReport(file)), ...(extras.rowHits ? { rowHits: extras.rowHits } : {}) });
      if (extras.distractors !== null) distractors.push({ label: s.label, stats: extras.distractors });
      if (extras.queryKinds !== null) queryKinds.push({ label: s.label, stats: extras.queryKinds });
    } catch (e) {
      notes.push(`Eval stage "${s.label}": ${(e as Error).message.split('\n')[0]} (left out of the comparison).`);
    }
  }
  // Results over other dataset sets than the first cannot share a table.
  let comparable = entries;
  if (entries.length > 1) {
    const names = entries[0]!.summary.datasets.map((d) => d.name).join('\n');
    comparable = entries.filter((e) => {
      const same = e.summary.datasets.map((d) => d.name).join('\n') === names;
      if (!same) notes.push(`Eval stage "${e.label}" is scored on other datasets (${e.summary.benchmark}) than "${entries[0]!.label}": left out of the comparison.`);
      return same;
    });
  }
  const suites = await suiteTables(suiteStageDirs, notes);
  const curves: TrainCurve[] = [];
  for (const s of trainStageDirs) {
    const records = await readMetrics(path.join(s.dir, METRICS_FILE));
    if (records.length === 0) notes.push(`Training stage "${s.label}" has no logged steps (no ${path.join(s.dir, METRICS_FILE)} or it is empty).`);
    curves.push({ label: s.label, dir: s.dir, records });
  }

  const title = `Run report: ${path.basename(path.resolve(runDir))}`;
  const svgs: string[] = [];
  const svgOf = new Map<TrainCurve, { file: string; svg: string }>();
  curves.forEach((c, i) => {
    if (c.records.length === 0) return;
    const svg = lineChartSvg(`loss: ${c.label}`, { name: 'loss', points: c.records.map((r) => [r.step, r.loss]) }, '#d62728');
    const file = path.join(runDir, slug(c.label, i));
    svgOf.set(c, { file, svg });
    svgs.push(file);
  });
  for (const { file, svg } of svgOf.values()) await writeBytesAtomic(file, svg + '\n');

  // Markdown
  const md: string[] = [`# ${escapeMarkdown(title)}`, ''];
  if (notes.length) md.push(...notes.map((n) => `- ${escapeMarkdown(n)}`), '');
  md.push('## Evaluation', '');
  if (comparable.length === 0 && suites.length === 0) md.push('No eval stage has results yet.', '');
  else if (comparable.length > 0) md.push(comparisonMarkdown(comparable).replace(/^#/gm, '##'), '');
  const annotated = annotationTables(queryKinds, distractors, 3);
  if (annotated.markdown) md.push(annotated.markdown);
  for (const t of suites) md.push(suiteComparisonMarkdown(t, 3));
  md.push('## Training', '');
  if (curves.length === 0) md.push('No training stages.', '');
  else {
    md.push('| Stage | Steps logged | Last step | First loss | Last loss | Min loss |', '| --- | ---: | ---: | ---: | ---: | ---: |');
    for (const c of curves) md.push(`| ${escapeMarkdown(c.label)} | ${curveCells(c.records).join(' | ')} |`);
    md.push('');
    for (const c of curves) {
      const s = svgOf.get(c);
      if (s) md.push(`![loss: ${escapeMarkdown(c.label)}](${path.basename(s.file)})`, '');
    }
  }

  // HTML
  const body: string[] = [`<h1>${escapeHtml(title)}</h1>`];
  if (notes.length) body.push(`<ul class="warn">${notes.map((n) => `<li>${escapeHtml(n)}</li>`).join('')}</ul>`);
  body.push('<h2>Evaluation</h2>');
  if (comparable.length === 0 && suites.length === 0) body.push('<p>No eval stage has results yet.</p>');
  else if (comparable.length > 0) body.push(comparisonHtmlParts(comparable).body.replace(/<(\/?)h([1-5])>/g, (_m, close: string, n: string) => `<${close}h${Number(n) + 1}>`));
  if (annotated.html) body.push(annotated.html);
  for (const t of suites) body.push(suiteComparisonHtml(t, 3));
  body.push('<h2>Training</h2>');
  if (curves.length === 0) body.push('<p>No training stages.</p>');
  else {
    body.push(
      '<table>\n<thead><tr><th>Stage</th><th>Steps logged</th><th>Last step</th><th>First loss</th><th>Last loss</th><th>Min loss</th></tr></thead>\n<tbody>\n' +
        curves.map((c) => `<tr><td>${escapeHtml(c.label)}</td>${curveCells(c.records).map((x) => `<td class="num">${escapeHtml(x)}</td>`).join('')}</tr>`).join('\n') +
        '\n</tbody>\n</table>',
    );
    for (const c of curves) {
      const s = svgOf.get(c);
      body.push(`<figure>\n${s ? s.svg : `<p>${escapeHtml(c.label)}: no logged steps.</p>`}\n</figure>`);
    }
  }

  const files = { markdown: path.join(runDir, `${RUN_REPORT_BASENAME}.md`), html: path.join(runDir, `${RUN_REPORT_BASENAME}.html`), svgs };
  await writeBytesAtomic(files.markdown, md.join('\n'));
  await writeBytesAtomic(files.html, htmlPage(title, body.join('\n')));
  return files;
}

function curveCells(records: readonly MetricRecord[]): string[] {
  if (records.length === 0) return ['0', 'n/a', 'n/a', 'n/a', 'n/a'];
  const losses = records.map((r) => r.loss).filter((x) => Number.isFinite(x));
  return [
    String(records.length),
    String(records[records.length - 1]!.step),
    num(records[0]!.loss),
    num(records[records.length - 1]!.loss),
    num(losses.length ? Math.min(...losses) : undefined),
  ];
}

/**
 * What an eval stage wrote into its summary beside the scores: the distractor statistics, hit@1 per
 * kind of query and the per-row hits, each null when absent. A missing or unreadable summary only
 * loses these optional parts (the scores come from mmeb.json): nulls, no error. Malformed row hits are
 * said in `problem`.
 */
export async function readSummaryExtras(file: string): Promise<{
  distractors: Record<string, DistractorStats[]> | null;
  queryKinds: Record<string, QueryKindStats[]> | null;
  rowHits: RowHits | null;
  problem?: string;
}> {
  let summary: { distractors?: Record<string, DistractorStats[]>; query_kinds?: Record<string, QueryKindStats[]>; row_hits?: unknown } | null;
  try {
    summary = JSON.parse(await readFile(file, 'utf8')) as typeof summary;
  } catch {
    return { distractors: null, queryKinds: null, rowHits: null };
  }
  const distractors = summary?.distractors && typeof summary.distractors === 'object' ? summary.distractors : null;
  const queryKinds = summary?.query_kinds && typeof summary.query_kinds === 'object' ? summary.query_kinds : null;
  try {
    return { distractors, queryKinds, rowHits: parseRowHits(summary?.row_hits, file) };
  } catch (e) {
    return { distractors, queryKinds, rowHits: null, problem: `no intervals for its deltas: ${(e as Error).message.replace(/\s*\n\s*/g, '; ')}` };
  }
}
