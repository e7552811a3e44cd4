/**
 * Which kinds of distractor beat the correct candidate. A dataset folder may carry candidate
 * annotations (`synthetic-meta.jsonl`, written by tools/synth for the synthetic benchmark: one JSON
 * line per row with `candidates[j].kind`, in tgt_text order, `positive` first). For each kind, the
 * share of the rows offering a candidate of that kind where at least one of them ranks above the
 * correct one: a model that reads which colours are in the image but not which object has which
 * colour loses to `other-object` answers often and to `other` ones rarely.
 */
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { UnimeError } from '../errors.js';
import { readAnnotationRows } from './annotations.js';
import { escapeHtml, escapeMarkdown } from './report.js';

export const CANDIDATE_ANNOTATIONS_FILE = 'synthetic-meta.jsonl';

export interface DistractorStats {
  kind: string;
  /** Rows that offer at least one candidate of this kind. */
  rows: number;
  /** Of those, rows where one of them ranks above the correct candidate. */
  beaten: number;
  /** beaten / rows, in percent. */
  rate: number;
}

/**
 * The candidate kinds of each row (`kinds[i][j]`), or null when the dataset folder has no annotation
 * file. A file that does not match the rows is an error naming the file, the line and the field.
 */
export async function readCandidateKinds(datasetDir: string, candidatesPerRow: readonly number[]): Promise<string[][] | null> {
  const file = path.join(datasetDir, CANDIDATE_ANNOTATIONS_FILE);
  if (!existsSync(file)) return null;
  const rows = await readAnnotationRows(file);
  const fix = 'regenerate the annotations with the data (tools/synth), or remove the file';
  if (rows.length !== candidatesPerRow.length) {
    throw new UnimeError(`has ${rows.length} annotation lines for ${candidatesPerRow.length} rows`, { file, fix });
  }
  return rows.map((row, i) => {
    const cands = row.candidates;
    const kinds = Array.isArray(cands) ? cands.map((c) => (c as { kind?: unknown } | null)?.kind) : null;
    if (kinds === null || !kinds.every((k): k is string => typeof k === 'string' && k !== '')) {
      throw new UnimeError(`line ${i + 1}: expected candidates to be a list of objects with a string kind`, { file, field: `rows[${i}].candidates`, fix });
    }
    if (kinds.length !== candidatesPerRow[i]) {
      throw new UnimeError(`line ${i + 1}: ${kinds.length} annotated candidates for ${candidatesPerRow[i]} in tgt_text`, { file, field: `rows[${i}].candidates`, fix });
    }
    return kinds;
  });
}

/** Per distractor kind (candidate 0, the correct one, is left out), sorted by kind. */
export function distractorStats(outranked: readonly Uint8Array[], kinds: readonly (readonly string[])[]): DistractorStats[] {
  if (outranked.length !== kinds.length) throw new UnimeError(`${outranked.length} scored rows but ${kinds.length} annotated rows`, { fix: 'score and annotate the same rows' });
  const acc = new Map<string, { rows: number; beaten: number }>();
  kinds.forEach((row, i) => {
    const beatenBy = new Map<string, boolean>();
    for (let j = 1; j < row.length; j++) beatenBy.set(row[j]!, (beatenBy.get(row[j]!) ?? false) || outranked[i]![j] === 1);
    for (const [kind, beaten] of beatenBy) {
      const a = acc.get(kind) ?? { rows: 0, beaten: 0 };
      a.rows++;
      if (beaten) a.beaten++;
      acc.set(kind, a);
    }
  });
  return [...acc.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([kind, a]) => ({ kind, rows: a.rows, beaten: a.beaten, rate: (100 * a.beaten) / a.rows }));
}

/** One column per model: its stats per dataset (datasets without annotations absent). */
export interface DistractorColumn {
  label: string;
  stats: Readonly<Record<string, readonly DistractorStats[]>>;
}

const INTRO =
  'Share of rows (in percent) where a distractor of the kind ranks above the correct candidate, among the rows that offer one; lower is better. Rows offering the kind in brackets.';

function tableRows(columns: readonly DistractorColumn[]): { dataset: string; kind: string; rows: number; cells: (DistractorStats | undefined)[] }[] {
  const datasets = [...new Set(columns.flatMap((c) => Object.keys(c.stats)))];
  return datasets.flatMap((dataset) => {
    const kinds = [...new Set(columns.flatMap((c) => (c.stats[dataset] ?? []).map((s) => s.kind)))].sort();
    return kinds.map((kind) => {
      const cells = columns.map((c) => c.stats[dataset]?.find((s) => s.kind === kind));
      return { dataset, kind, rows: Math.max(...cells.map((s) => s?.rows ?? 0)), cells };
    });
  });
}

const cell = (s: DistractorStats | undefined) => (s === undefined ? '' : s.rate.toFixed(1));

/** The table as Markdown (an empty string when no column has annotated datasets). */
export function distractorMarkdown(columns: readonly DistractorColumn[], heading = '## Which distractors win'): string {
  const rows = tableRows(columns);
  if (rows.length === 0) return '';
  const header = ['Dataset', 'Distractor kind', ...columns.map((c) => escapeMarkdown(c.label))];
  const out = [heading, '', INTRO, '', `| ${header.join(' | ')} |`, `| --- | --- |${columns.map(() => ' ---: |').join('')}`];
  for (const r of rows) out.push(`| ${escapeMarkdown(r.dataset)} | ${escapeMarkdown(r.kind)} (${r.rows}) | ${r.cells.map(cell).join(' | ')} |`);
  return out.join('\n') + '\n';
}

/** The same table as HTML (an empty string when no column has annotated datasets). */
export function distractorHtml(columns: readonly DistractorColumn[], heading = 'Which distractors win', level = 2): string {
  const rows = tableRows(columns);
  if (rows.length === 0) return '';
  const th = ['Dataset', 'Distractor kind', ...columns.map((c) => c.label)].map((h) => `<th>${escapeHtml(h)}</th>`).join('');
  const body = rows
    .map((r) => `<tr><td>${escapeHtml(r.dataset)}</td><td>${escapeHtml(r.kind)} (${r.rows})</td>${r.cells.map((s) => `<td class="num">${cell(s)}</td>`).join('')}</tr>`)
    .join('\n');
  return `<h${level}>${escapeHtml(heading)}</h${level}>\n<p class="note">${escapeHtml(INTRO)}</p>\n<table>\n<thead><tr>${th}</tr></thead>\n<tbody>\n${body}\n</tbody>\n</table>`;
}
