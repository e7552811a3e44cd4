/**
 * Results of one non-MMEB suite (caption retrieval, SugarCrepe, zero-shot) side by side: a row per
 * headline metric, a column per result, deltas against the first with their paired bootstrap intervals
 * when both results kept their rows' outcomes. The run report shows one per suite; `unime eval
 * compare` shows one for `<suite>.json` files.
 */
import { UnimeError } from '../errors.js';
import { formatScore } from './aggregate.js';
import { escapeHtml, escapeMarkdown, formatDeltaWithInterval, htmlTable, mdTable } from './report.js';
import { suiteDeltaIntervals, type OtherSuite, type SuiteResultSummary } from './suite-eval.js';

export const SUITE_TITLES: Readonly<Record<OtherSuite, string>> = {
  retrieval: 'Caption retrieval (recall, percent)',
  sugarcrepe: 'SugarCrepe (accuracy of caption over hard negative, percent)',
  zeroshot: 'Zero-shot classification (accuracy, percent)',
};

export interface SuiteComparison {
  suite: OtherSuite;
  header: string[];
  /** Plain text: the metric label, then numbers. */
  rows: string[][];
  /** "label: model" per column. */
  models: string[];
  /** How to read the intervals, when the deltas have them. */
  note?: string;
}

export function suiteComparison(results: readonly { label: string; summary: SuiteResultSummary }[]): SuiteComparison {
  const base = results[0];
  if (!base) throw new UnimeError('nothing to compare', { fix: 'give at least one suite result' });
  const suite = base.summary.suite;
  const other = results.find((r) => r.summary.suite !== suite);
  if (other) throw new UnimeError(`"${other.label}" is a ${other.summary.suite} result and "${base.label}" a ${suite} one`, { fix: 'compare results of one suite at a time' });
  const labels: string[] = [];
  for (const r of results) for (const m of r.summary.metrics) if (!labels.includes(m.label)) labels.push(m.label);
  const header = ['Metric', base.label];
  for (const r of results.slice(1)) header.push(r.label, `Δ vs ${base.label}`);
  const value = (r: (typeof results)[number], label: string) => r.summary.metrics.find((m) => m.label === label)?.value ?? null;
  const intervals = results.slice(1).map((r) => suiteDeltaIntervals(base.summary, r.summary));
  const rows = labels.map((label) => {
    const b = value(base, label);
    const row = [label, b === null ? 'n/a' : formatScore(b)];
    results.slice(1).forEach((r, i) => {
      const v = value(r, label);
      const iv = intervals[i]?.intervals.get(label);
      row.push(v === null ? 'n/a' : formatScore(v), formatDeltaWithInterval(b, v, iv));
    });
    return row;
  });
  const withIntervals = intervals.find((x) => x !== null && x.intervals.size > 0);
  return {
    suite,
    header,
    rows,
    models: results.map((r) => `${r.label}: ${r.summary.model}`),
    ...(withIntervals
      ? { note: `In brackets after a Δ: its ${Math.round(withIntervals.level * 100)} % paired bootstrap interval over the suite's rows (${withIntervals.resamples} resamples; an interval that holds 0 is within what the choice of rows can make).` }
      : {}),
  };
}

/** The comparison under a heading of the given level ("###" for 3). */
export function suiteComparisonMarkdown(t: SuiteComparison, level = 3): string {
  return [
    `${'#'.repeat(level)} ${SUITE_TITLES[t.suite]}`,
    '',
    mdTable(t.header.map(escapeMarkdown), t.header.map((_, i) => (i === 0 ? 'l' : 'r')), t.rows.map((r) => [escapeMarkdown(r[0]!), ...r.slice(1)])),
    '',
    `Models: ${t.models.map(escapeMarkdown).join('; ')}.${t.note ? ` ${escapeMarkdown(t.note)}` : ''}`,
    '',
  ].join('\n');
}

export function suiteComparisonHtml(t: SuiteComparison, level = 3): string {
  return [
    `<h${level}>${escapeHtml(SUITE_TITLES[t.suite])}</h${level}>`,
    htmlTable(t.header.map(escapeHtml), t.rows.map((r) => r.map((c, i) => ({ html: escapeHtml(c), num: i > 0 })))),
    `<p class="note">Models: ${escapeHtml(t.models.join('; '))}.${t.note ? ` ${escapeHtml(t.note)}` : ''}</p>`,
  ].join('\n');
}
