/**
 * Human-readable MMEB reports: a Markdown table and a self-contained HTML page (inline SVG bar
 * charts, inline CSS, no scripts, no external assets) for one result, and the same side by side for
 * several results (e.g. base vs stage 1 vs stage 2) with deltas against the first.
 *
 * Numbers are percentages rounded half to even ({@link formatScore}); deltas are computed from the
 * unrounded scores. Incomplete aggregates carry "(incomplete)", missing datasets are listed, and
 * every name that comes from a file is escaped.
 */
import * as path from 'node:path';
import { UnimeError } from '../errors.js';
import { writeBytesAtomic } from '../io/atomic.js';
import { type GroupScore, type MmebSummary, formatScore, roundHalfEven } from './aggregate.js';
import { type MetaTask, META_TASKS, META_TASK_SHORT } from './mmeb-datasets.js';
import { type AggregateKey, type DeltaIntervals, type Interval, type RowHits, aggregateOf, pairedBootstrap } from './significance.js';

export interface ReportOptions {
  /** Page / document title; default names the model. */
  title?: string;
  /** Decimals of the printed percentages (default 2). */
  decimals?: number;
  /** More sections at the end of a single result's report (Markdown and HTML bodies; '' for none). */
  appendix?: { markdown: string; html: string };
}

/** One column of a comparison: a label ("base", "stage 1", ...) and its summary. */
export interface ComparisonEntry {
  readonly label: string;
  readonly summary: MmebSummary;
  /** Per-row hit@1 (mmeb-summary.json `row_hits`): with it on both sides, deltas get a bootstrap interval. */
  readonly rowHits?: RowHits;
  /** A column that is the mean of several runs (seeds; `averageSummaries`): each run's per-row hits, by dataset. */
  readonly seedHits?: ReadonlyMap<string, readonly Uint8Array[]>;
}

const INCOMPLETE = '(incomplete)';

// ---------------------------------------------------------------------------------------------
// Escaping

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** Escape text for a Markdown table cell: punctuation that could format or break the table, and newlines. */
export function escapeMarkdown(s: string): string {
  return s.replace(/\r?\n|\r/g, ' ').replace(/[\\`*_[\]<>|&~#!]/g, '\\$&');
}

// ---------------------------------------------------------------------------------------------
// Rows shared by both formats

interface SummaryLine {
  label: (s: MmebSummary) => string;
  key: AggregateKey;
  unit: 'datasets' | 'meta-tasks';
}

// The labels count the expected datasets: 36 / 20 / 16 for MMEB, the catalog's counts otherwise.
const SUMMARY_LINES: readonly SummaryLine[] = [
  {
    label: (s) => `Overall (mean of ${s.overall.expected} datasets${s.benchmark === 'MMEB' ? ', MMEB standard' : ''})`,
    key: 'overall',
    unit: 'datasets',
  },
  { label: (s) => `IND (${s.ind.expected} datasets)`, key: 'ind', unit: 'datasets' },
  { label: (s) => `OOD (${s.ood.expected} datasets)`, key: 'ood', unit: 'datasets' },
  ...META_TASKS.map((t): SummaryLine => ({ label: () => metaTaskLabel(t), key: t, unit: 'datasets' })),
  {
    label: (s) => `Four-category mean (paper-style overall${s.benchmark === 'MMEB' ? ', not the MMEB standard' : ''})`,
    key: 'fourCategoryMean',
    unit: 'meta-tasks',
  },
];

function resultsHeading(s: MmebSummary): string {
  return s.benchmark === 'MMEB' ? 'MMEB image results' : `${s.benchmark} results`;
}

function metaTaskLabel(t: MetaTask): string {
  return META_TASK_SHORT[t] === t ? t : `${t} (${META_TASK_SHORT[t]})`;
}

const SHORT_SUMMARY_LABELS = ['Overall', 'IND', 'OOD', ...META_TASKS.map((t) => META_TASK_SHORT[t]), '4-cat mean'];

function groupCell(g: GroupScore, decimals: number): string {
  if (g.mean === null) return 'n/a';
  return formatScore(g.mean, decimals) + (g.complete ? '' : ` ${INCOMPLETE}`);
}

function scoreCell(v: number | null, decimals: number): string {
  return v === null ? 'missing' : formatScore(v, decimals);
}

/** Signed delta, from unrounded values; "n/a" when either side is missing. */
export function formatDelta(from: number | null, to: number | null, decimals = 2): string {
  if (from === null || to === null) return 'n/a';
  const d = roundHalfEven(to - from, decimals);
  if (d === 0) return (0).toFixed(decimals);
  return (d > 0 ? '+' : '-') + Math.abs(d).toFixed(decimals);
}

function missingSentence(s: MmebSummary, esc: (x: string) => string): string | null {
  const parts: string[] = [];
  if (s.missing.length) {
    parts.push(`${s.missing.length} of ${s.datasets.length} datasets missing: ${s.missing.map((m) => `${esc(m.name)} (${esc(m.reason)})`).join(', ')}.`);
  }
  if (s.partial.length) parts.push(`Scored on only part of their rows: ${s.partial.map(esc).join(', ')}.`);
  if (!parts.length) return null;
  parts.push(`Aggregates marked ${INCOMPLETE} average only what is there and are not comparable with complete results.`);
  return parts.join(' ');
}

function metricNote(metric: string, decimals: number): string {
  return `Metric: ${metric}, in percent, rounded half to even to ${decimals} decimals.`;
}

// ---------------------------------------------------------------------------------------------
// Markdown

export function mdTable(header: readonly string[], align: readonly ('l' | 'r')[], rows: readonly (readonly string[])[]): string {
  const line = (cells: readonly string[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(align.map((a) => (a === 'r' ? '---:' : '---'))), ...rows.map(line)].join('\n');
}

/** Markdown for one result. */
export function markdownReport(summary: MmebSummary, options: ReportOptions = {}): string {
  const dec = options.decimals ?? 2;
  const esc = escapeMarkdown;
  const out: string[] = [];
  out.push(`# ${esc(options.title ?? `${resultsHeading(summary)}: ${summary.modelName}`)}`, '');
  out.push(metricNote(esc(summary.metric), dec), '');
  out.push(
    mdTable(
      ['Score', 'Value', 'Present'],
      ['l', 'r', 'r'],
      SUMMARY_LINES.map((l) => {
        const g = aggregateOf(summary, l.key);
        return [l.label(summary), groupCell(g, dec), `${g.present}/${g.expected} ${l.unit}`];
      }),
    ),
    '',
  );
  const missing = missingSentence(summary, esc);
  if (missing) out.push(`**Incomplete.** ${missing}`, '');
  out.push('## Per dataset', '');
  out.push(
    mdTable(
      ['Dataset', 'Meta-task', 'Split', esc(summary.metric)],
      ['l', 'l', 'l', 'r'],
      summary.datasets.map((d) => [esc(d.name), d.metaTask, d.distribution, scoreCell(d.score, dec) + (d.partial ? ' (partial)' : '')]),
    ),
    '',
  );
  if (summary.extra.length) {
    out.push('## Other datasets in the report (not averaged)', '');
    out.push(mdTable(['Dataset', esc(summary.metric)], ['l', 'r'], summary.extra.map((e) => [esc(e.name), scoreCell(e.score, dec)])), '');
  }
  if (options.appendix?.markdown) out.push(options.appendix.markdown);
  return out.join('\n');
}

/** Markdown side by side; deltas are against the first entry. */
export function comparisonMarkdown(entries: readonly ComparisonEntry[], options: ReportOptions = {}): string {
  const t = comparisonTables(entries, options);
  const esc = escapeMarkdown;
  // Cell texts are numbers and fixed words ("missing", "(incomplete)"): nothing to escape.
  const text = (cells: readonly ComparisonCell[]) => cells.map((c) => c.text);
  const out: string[] = [];
  out.push(`# ${esc(t.title)}`, '');
  out.push(
    mdTable(
      ['Run', 'Model'],
      ['l', 'l'],
      entries.map((e) => [esc(e.label), esc(e.summary.modelName)]),
    ),
    '',
  );
  out.push(esc(t.note), '');
  const align = t.header.map((_, i) => (i === 0 ? 'l' : 'r') as 'l' | 'r');
  out.push(mdTable(t.header.map(esc), align, t.summaryRows.map((r) => [esc(r.label), ...text(r.cells)])), '');
  for (const e of entries) {
    const missing = missingSentence(e.summary, esc);
    if (missing) out.push(`**${esc(e.label)} is incomplete.** ${missing}`, '');
  }
  out.push('## Per dataset', '');
  out.push(
    mdTable(
      ['Dataset', 'Meta-task', 'Split', ...t.header.slice(1)].map(esc),
      ['l', 'l', 'l', ...align.slice(1)],
      t.datasetRows.map((r) => [esc(r.name), r.metaTask, r.distribution, ...text(r.cells)]),
    ),
    '',
  );
  return out.join('\n');
}

interface ComparisonCell {
  text: string;
  incomplete: boolean;
}

/** What both formats of a comparison show, as plain text (each format escapes it). */
interface ComparisonTables {
  title: string;
  /** Score, the baseline, then per other entry its score and its delta. */
  header: string[];
  /** The metric, the delta and (when there are intervals) how to read them. */
  note: string;
  summaryRows: { label: string; cells: ComparisonCell[] }[];
  datasetRows: { name: string; metaTask: MetaTask; distribution: string; cells: ComparisonCell[] }[];
}

function comparisonTables(entries: readonly ComparisonEntry[], options: ReportOptions): ComparisonTables {
  checkEntries(entries);
  const dec = options.decimals ?? 2;
  const base = entries[0]!;
  const others = entries.slice(1);
  const intervals = others.map((e) => pairedBootstrap(base, e));
  const header = ['Score', base.label];
  for (const e of others) header.push(e.label, `Δ vs ${base.label}`);
  const cells = (
    pick: (s: MmebSummary) => { v: number | null; text: string; complete: boolean },
    intervalOf: (d: DeltaIntervals) => Interval | undefined,
  ): ComparisonCell[] => {
    const b = pick(base.summary);
    const row: ComparisonCell[] = [{ text: b.text, incomplete: !b.complete }];
    others.forEach((e, i) => {
      const x = pick(e.summary);
      const both = b.complete && x.complete;
      const iv = intervals[i] ? intervalOf(intervals[i]!) : undefined;
      const delta = formatDeltaWithInterval(b.v, x.v, iv, dec);
      row.push({ text: x.text, incomplete: !x.complete }, { text: delta + (both ? '' : ` ${INCOMPLETE}`), incomplete: !both });
    });
    return row;
  };
  const withIntervals = intervals.find((d) => d !== null && (d.datasets.size > 0 || d.aggregates.size > 0));
  let note = `${metricNote(base.summary.metric, dec)} Δ is against ${base.label}, from unrounded scores.`;
  if (withIntervals) {
    note +=
      ` In brackets after a Δ: its ${Math.round(withIntervals.level * 100)} % interval from a paired bootstrap over the evaluation rows` +
      ` (${withIntervals.resamples} resamples of each dataset's rows, the same rows for both runs). An interval that holds 0 is a difference` +
      ' that another draw of rows like these might not show; it does not measure how much another training run would vary.';
    if (entries.some((e) => e.seedHits !== undefined)) {
      note +=
        ' A column that is the mean of several runs (seeds) scores each dataset as the mean of the runs, and each resample draws the same rows for every run:' +
        ' its Δ averages over how runs vary, its interval still only over the rows.';
    }
  }
  return {
    title: options.title ?? `${resultsHeading(base.summary)}: ${entries.map((e) => e.label).join(' vs ')}`,
    header,
    note,
    summaryRows: SUMMARY_LINES.map((l) => ({
      label: l.label(base.summary),
      cells: cells(
        (s) => {
          const g = aggregateOf(s, l.key);
          return { v: g.mean, text: groupCell(g, dec), complete: g.complete };
        },
        (d) => d.aggregates.get(l.key),
      ),
    })),
    datasetRows: base.summary.datasets.map((d, i) => ({
      name: d.name,
      metaTask: d.metaTask,
      distribution: d.distribution,
      cells: cells(
        (s) => {
          const row = s.datasets[i]!;
          return { v: row.score, text: scoreCell(row.score, dec) + (row.partial ? ' (partial)' : ''), complete: !row.partial };
        },
        (iv) => iv.datasets.get(d.name),
      ),
    })),
  };
}

/** The delta, then its interval in brackets when there is one (and both values are). */
export function formatDeltaWithInterval(from: number | null, to: number | null, iv: Interval | undefined, decimals = 2): string {
  return formatDelta(from, to, decimals) + (iv && from !== null && to !== null ? ` ${formatInterval(iv)}` : '');
}

/** "[-3.5, +7.0]": an interval of a difference, in percentage points, one decimal. */
export function formatInterval(iv: Interval): string {
  const signed = (x: number) => {
    const r = roundHalfEven(x, 1);
    return r === 0 ? '0.0' : (r > 0 ? '+' : '-') + Math.abs(r).toFixed(1);
  };
  return `[${signed(iv.low)}, ${signed(iv.high)}]`;
}

// ---------------------------------------------------------------------------------------------
// HTML

const PALETTE = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#b07aa1', '#edc948', '#9c755f'];

const CSS = `
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 72rem; padding: 0 1rem; color: #222; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; }
th { background: #f3f3f3; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.incomplete { color: #a33; }
.note { color: #555; }
.warn { border-left: 4px solid #c33; padding: 0.4rem 0.8rem; background: #fdf1f1; }
.legend span { display: inline-block; margin-right: 1rem; }
.legend i { display: inline-block; width: 0.8rem; height: 0.8rem; margin-right: 0.3rem; vertical-align: middle; }
figure { margin: 1rem 0; }
`;

interface ChartGroup {
  label: string;
  values: readonly (number | null)[];
  incomplete?: readonly boolean[];
}

/** Horizontal bars on a 0..100 scale, one group per label and one bar per series. */
export function barChartSvg(title: string, series: readonly string[], groups: readonly ChartGroup[], decimals = 2): string {
  const labelW = 230;
  const plotW = 420;
  const valueW = 110;
  const barH = 14;
  const gap = 10;
  const top = 28;
  const groupH = series.length * barH + gap;
  const height = top + groups.length * groupH + 24;
  const width = labelW + plotW + valueW;
  const x = (v: number) => labelW + (Math.max(0, Math.min(100, v)) / 100) * plotW;
  const parts: string[] = [];
  parts.push(
    `<svg width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${escapeHtml(title)}" font-size="12" font-family="system-ui, sans-serif">`,
    `<title>${escapeHtml(title)}</title>`,
    `<text x="0" y="16" font-weight="bold" font-size="14">${escapeHtml(title)}</text>`,
  );
  for (const tick of [0, 25, 50, 75, 100]) {
    const tx = x(tick);
    parts.push(
      `<line x1="${tx}" y1="${top - 4}" x2="${tx}" y2="${height - 20}" stroke="#ddd"/>`,
      `<text x="${tx}" y="${height - 6}" text-anchor="middle" fill="#666">${tick}</text>`,
    );
  }
  groups.forEach((g, gi) => {
    const y0 = top + gi * groupH;
    parts.push(`<text x="${labelW - 8}" y="${y0 + (series.length * barH) / 2 + 4}" text-anchor="end">${escapeHtml(g.label)}</text>`);
    g.values.forEach((v, si) => {
      const y = y0 + si * barH;
      const name = series[si] ?? '';
      if (v === null) {
        parts.push(`<text x="${labelW + 4}" y="${y + barH - 3}" fill="#a33">missing${name ? ` (${escapeHtml(name)})` : ''}</text>`);
        return;
      }
      const inc = g.incomplete?.[si] ?? false;
      const text = formatScore(v, decimals) + (inc ? ' (incomplete)' : '');
      const w = Math.max(0, x(v) - labelW);
      parts.push(
        `<rect x="${labelW}" y="${y + 1}" width="${w.toFixed(2)}" height="${barH - 2}" fill="${PALETTE[si % PALETTE.length]}"${inc ? ' fill-opacity="0.45"' : ''}>` +
          `<title>${escapeHtml(`${name ? name + ': ' : ''}${g.label} ${text}`)}</title></rect>`,
        `<text x="${x(v) + 4}" y="${y + barH - 3}"${inc ? ' fill="#a33"' : ''}>${escapeHtml(text)}</text>`,
      );
    });
  });
  parts.push('</svg>');
  return parts.join('\n');
}

/** A whole self-contained page around `body` (the reports' inline CSS, no scripts). */
export function htmlPage(title: string, body: string): string {
  return [
    '<!DOCTYPE html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>${escapeHtml(title)}</title>`,
    `<style>${CSS}</style>`,
    '</head>',
    '<body>',
    body,
    '</body>',
    '</html>',
    '',
  ].join('\n');
}

export function htmlTable(header: readonly string[], rows: readonly (readonly { html: string; num?: boolean; cls?: string }[])[]): string {
  const th = header.map((h) => `<th>${h}</th>`).join('');
  const trs = rows.map(
    (r) =>
      '<tr>' +
      r.map((c) => {
        const classes = [c.num ? 'num' : '', c.cls ?? ''].filter(Boolean).join(' ');
        return `<td${classes ? ` class="${classes}"` : ''}>${c.html}</td>`;
      }).join('') +
      '</tr>',
  );
  return `<table>\n<thead><tr>${th}</tr></thead>\n<tbody>\n${trs.join('\n')}\n</tbody>\n</table>`;
}

function summaryChartGroups(summaries: readonly MmebSummary[]): ChartGroup[] {
  return SUMMARY_LINES.map((l, i) => ({
    label: SHORT_SUMMARY_LABELS[i]!,
    values: summaries.map((s) => aggregateOf(s, l.key).mean),
    incomplete: summaries.map((s) => !aggregateOf(s, l.key).complete),
  }));
}

function metaTaskChartGroups(summaries: readonly MmebSummary[], task: MetaTask): ChartGroup[] {
  const first = summaries[0]!;
  return first.datasets
    .map((d, i) => ({ d, i }))
    .filter(({ d }) => d.metaTask === task)
    .map(({ d, i }) => ({
      label: `${d.name} (${d.distribution})`,
      values: summaries.map((s) => s.datasets[i]!.score),
      incomplete: summaries.map((s) => s.datasets[i]!.partial),
    }));
}

function chartsHtml(summaries: readonly MmebSummary[], series: readonly string[], dec: number): string {
  const figs = [
    barChartSvg('Summary', series, summaryChartGroups(summaries), dec),
    ...META_TASKS.map((t) => barChartSvg(metaTaskLabel(t), series, metaTaskChartGroups(summaries, t), dec)),
  ];
  return figs.map((f) => `<figure>\n${f}\n</figure>`).join('\n');
}

/** A self-contained HTML page for one result. */
export function htmlReport(summary: MmebSummary, options: ReportOptions = {}): string {
  const dec = options.decimals ?? 2;
  const title = options.title ?? `${resultsHeading(summary)}: ${summary.modelName}`;
  const body: string[] = [];
  body.push(`<h1>${escapeHtml(title)}</h1>`);
  body.push(`<p class="note">${escapeHtml(metricNote(summary.metric, dec))}</p>`);
  const missing = missingSentence(summary, (x) => x);
  if (missing) body.push(`<p class="warn"><strong>Incomplete.</strong> ${escapeHtml(missing)}</p>`);
  body.push(
    htmlTable(
      ['Score', 'Value', 'Present'],
      SUMMARY_LINES.map((l) => {
        const g = aggregateOf(summary, l.key);
        return [
          { html: escapeHtml(l.label(summary)) },
          { html: escapeHtml(groupCell(g, dec)), num: true, cls: g.complete ? '' : 'incomplete' },
          { html: `${g.present}/${g.expected} ${l.unit}`, num: true },
        ];
      }),
    ),
  );
  body.push('<h2>Charts</h2>', chartsHtml([summary], [''], dec));
  body.push('<h2>Per dataset</h2>');
  body.push(
    htmlTable(
      ['Dataset', 'Meta-task', 'Split', escapeHtml(summary.metric)],
      summary.datasets.map((d) => [
        { html: escapeHtml(d.name) },
        { html: d.metaTask },
        { html: d.distribution },
        {
          html: escapeHtml(scoreCell(d.score, dec) + (d.partial ? ' (partial)' : '') + (d.missingReason ? ` (${d.missingReason})` : '')),
          num: true,
          cls: d.score === null || d.partial ? 'incomplete' : '',
        },
      ]),
    ),
  );
  if (summary.extra.length) {
    body.push('<h2>Other datasets in the report (not averaged)</h2>');
    body.push(htmlTable(['Dataset', escapeHtml(summary.metric)], summary.extra.map((e) => [{ html: escapeHtml(e.name) }, { html: escapeHtml(scoreCell(e.score, dec)), num: true }])));
  }
  if (options.appendix?.html) body.push(options.appendix.html);
  return htmlPage(title, body.join('\n'));
}

/** A self-contained HTML page comparing several results; deltas are against the first. */
export function comparisonHtml(entries: readonly ComparisonEntry[], options: ReportOptions = {}): string {
  const { title, body } = comparisonHtmlParts(entries, options);
  return htmlPage(title, body);
}

/** The comparison's title and the HTML inside <body>, for pages that hold more (a run report). */
export function comparisonHtmlParts(entries: readonly ComparisonEntry[], options: ReportOptions = {}): { title: string; body: string } {
  const t = comparisonTables(entries, options);
  const dec = options.decimals ?? 2;
  const html = (cells: readonly ComparisonCell[]) => cells.map((c) => ({ html: escapeHtml(c.text), num: true, cls: c.incomplete ? 'incomplete' : '' }));
  const header = t.header.map(escapeHtml);
  const body: string[] = [];
  body.push(`<h1>${escapeHtml(t.title)}</h1>`);
  body.push(
    htmlTable(
      ['Run', 'Model'],
      entries.map((e) => [{ html: escapeHtml(e.label) }, { html: escapeHtml(e.summary.modelName) }]),
    ),
  );
  body.push(`<p class="note">${escapeHtml(t.note)}</p>`);
  for (const e of entries) {
    const missing = missingSentence(e.summary, (x) => x);
    if (missing) body.push(`<p class="warn"><strong>${escapeHtml(e.label)} is incomplete.</strong> ${escapeHtml(missing)}</p>`);
  }
  body.push(htmlTable(header, t.summaryRows.map((r) => [{ html: escapeHtml(r.label) }, ...html(r.cells)])));
  const legend = entries
    .map((e, i) => `<span><i style="background:${PALETTE[i % PALETTE.length]}"></i>${escapeHtml(e.label)}</span>`)
    .join('');
  body.push('<h2>Charts</h2>', `<p class="legend">${legend}</p>`);
  body.push(chartsHtml(entries.map((e) => e.summary), entries.map((e) => e.label), dec));
  body.push('<h2>Per dataset</h2>');
  body.push(
    htmlTable(
      ['Dataset', 'Meta-task', 'Split', ...header.slice(1)],
      t.datasetRows.map((r) => [{ html: escapeHtml(r.name) }, { html: r.metaTask }, { html: escapeHtml(r.distribution) }, ...html(r.cells)]),
    ),
  );
  return { title: t.title, body: body.join('\n') };
}

// ---------------------------------------------------------------------------------------------
// Files

export interface WrittenReports {
  markdown: string;
  html: string;
}

/** Write `<baseName>.md` and `<baseName>.html` for one result into `outDir`, atomically. */
export async function writeResultReports(
  outDir: string,
  summary: MmebSummary,
  options: ReportOptions & { baseName?: string } = {},
): Promise<WrittenReports> {
  const base = path.join(outDir, options.baseName ?? 'mmeb-report');
  const written = { markdown: `${base}.md`, html: `${base}.html` };
  await writeBytesAtomic(written.markdown, markdownReport(summary, options));
  await writeBytesAtomic(written.html, htmlReport(summary, options));
  return written;
}

/** Write `<baseName>.md` and `<baseName>.html` comparing several results, atomically. */
export async function writeComparisonReports(
  outDir: string,
  entries: readonly ComparisonEntry[],
  options: ReportOptions & { baseName?: string } = {},
): Promise<WrittenReports> {
  const base = path.join(outDir, options.baseName ?? 'mmeb-comparison');
  const written = { markdown: `${base}.md`, html: `${base}.html` };
  await writeBytesAtomic(written.markdown, comparisonMarkdown(entries, options));
  await writeBytesAtomic(written.html, comparisonHtml(entries, options));
  return written;
}

function checkEntries(entries: readonly ComparisonEntry[]): void {
  if (entries.length === 0) throw new UnimeError('a comparison needs at least one result', { fix: 'pass the results to compare, baseline first' });
  const metric = entries[0]!.summary.metric;
  const names = entries[0]!.summary.datasets.map((d) => d.name).join('\n');
  for (const e of entries) {
    if (e.summary.datasets.map((d) => d.name).join('\n') !== names) {
      throw new UnimeError(`"${e.label}" is summarised over other datasets (${e.summary.benchmark}) than the baseline (${entries[0]!.summary.benchmark})`, {
        fix: 'compare results of the same benchmark',
      });
    }
    if (e.summary.metric !== metric) {
      throw new UnimeError(`"${e.label}" is summarised on ${e.summary.metric}, the baseline on ${metric}`, {
        fix: 'summarise every result on the same metric before comparing',
      });
    }
  }
}
