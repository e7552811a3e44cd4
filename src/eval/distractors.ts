/**
 * What a dataset's row annotations tell about a model's hits. A dataset folder may carry them
 * (`synthetic-meta.jsonl`, written by tools/synth for the synthetic benchmark: one JSON line per row
 * with `candidates[j].kind`, in tgt_text order, `positive` first, and on SynVQA the row's
 * `query_kind`, which question it asks).
 * - Which kinds of distractor beat the correct candidate: for each kind, the share of the rows offering
 *   a candidate of that kind where at least one of them ranks above the correct one. A model that reads
 *   which colours are in the image but not which object has which colour loses to `other-object`
 *   answers often and to `other` ones rarely.
 * - hit@1 per kind of query: what a model answers right, question by question.
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

/** hit@1 of the rows asking one kind of query. */
export interface QueryKindStats {
  kind: string;
  rows: number;
  hits: number;
  /** hits / rows, in percent. */
  rate: number;
}

export interface RowAnnotations {
  /** The kind of each candidate of each row (`candidateKinds[i][j]`). */
  candidateKinds: string[][];
  /** The kind of query of each row, or null when the rows carry none. */
  queryKinds: string[] | null;
}

/**
 * The row annotations of a dataset folder, or null when it has no annotation file. A file that does
 * not match the rows is an error naming the file, the line and the field.
 */
export async function readRowAnnotations(datasetDir: string, candidatesPerRow: readonly number[]): Promise<RowAnnotations | null> {
  const file = path.join(datasetDir, CANDIDATE_ANNOTATIONS_FILE);
  if (!existsSync(file)) return null;
  const rows = await readAnnotationRows(file);
  const fix = 'regenerate the annotations with the data (tools/synth), or remove the file';
  if (rows.length !== candidatesPerRow.length) {
    throw new UnimeError(`has ${rows.length} annotation lines for ${candidatesPerRow.length} rows`, { file, fix });
  }
  const named = (r: (typeof rows)[number]) => typeof r.query_kind === 'string' && r.query_kind !== '';
  let queryKinds: string[] | null = null;
  if (rows.some((r) => r.query_kind !== undefined)) {
    const count = rows.filter(named).length;
    queryKinds = rows.map((row, i) => {
      if (!named(row)) {
        throw new UnimeError(`line ${i + 1}: expected a string query_kind, as ${count} of the ${rows.length} lines have`, { file, field: `rows[${i}].query_kind`, fix });
      }
      return row.query_kind as string;
    });
  }
  const candidateKinds = rows.map((row, i) => {
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
  return { candidateKinds, queryKinds };
}

/** hit@1 per kind of query, sorted by kind; `ranks` are 1-based, one per row. */
export function queryKindStats(ranks: ArrayLike<number>, queryKinds: readonly string[]): QueryKindStats[] {
  if (ranks.length !== queryKinds.length) throw new UnimeError(`${ranks.length} scored rows but ${queryKinds.length} annotated rows`, { fix: 'score and annotate the same rows' });
  const acc = new Map<string, { rows: number; hits: number }>();
  queryKinds.forEach((kind, i) => {
    const a = acc.get(kind) ?? { rows: 0, hits: 0 };
    a.rows++;
    if (ranks[i]! <= 1) a.hits++;
    acc.set(kind, a);
  });
  return [...acc.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([kind, a]) => ({ kind, rows: a.rows, hits: a.hits, rate: (100 * a.hits) / a.rows }));
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
export interface KindColumn<S extends { kind: string; rows: number; rate: number } = DistractorStats> {
  label: string;
  stats: Readonly<Record<string, readonly S[]>>;
}
export type DistractorColumn = KindColumn<DistractorStats>;

/** What a per-kind table says: its heading, the line under it, and what its kinds are. */
export interface KindTable {
  heading: string;
  intro: string;
  kindHeader: string;
}

export const DISTRACTOR_TABLE: KindTable = {
  heading: 'Which distractors win',
  intro:
    'Share of rows (in percent) where a distractor of the kind ranks above the correct candidate, among the rows that offer one; lower is better. Rows offering the kind in brackets.',
  kindHeader: 'Distractor kind',
};

export const QUERY_KIND_TABLE: KindTable = {
  heading: 'Hit@1 by kind of query',
  intro: 'hit@1 (in percent) of the rows asking each kind of query (the row annotations say which); higher is better. Rows of the kind in brackets.',
  kindHeader: 'Query kind',
};

type AnyStats = { kind: string; rows: number; rate: number };

function tableRows(columns: readonly KindColumn<AnyStats>[]): { dataset: string; kind: string; rows: number; cells: (AnyStats | undefined)[] }[] {
  const datasets = [...new Set(columns.flatMap((c) => Object.keys(c.stats)))];
  return datasets.flatMap((dataset) => {
    const kinds = [...new Set(columns.flatMap((c) => (c.stats[dataset] ?? []).map((s) => s.kind)))].sort();
    return kinds.map((kind) => {
      const cells = columns.map((c) => c.stats[dataset]?.find((s) => s.kind === kind));
      return { dataset, kind, rows: Math.max(...cells.map((s) => s?.rows ?? 0)), cells };
    });
  });
}

const cell = (s: AnyStats | undefined) => (s === undefined ? '' : s.rate.toFixed(1));

/** A per-kind table as Markdown (an empty string when no column has annotated datasets); `level` is the heading's. */
export function kindTableMarkdown(columns: readonly KindColumn<AnyStats>[], table: KindTable, level = 2): string {
  const rows = tableRows(columns);
  if (rows.length === 0) return '';
  const header = ['Dataset', table.kindHeader, ...columns.map((c) => escapeMarkdown(c.label))];
  const out = [`${'#'.repeat(level)} ${table.heading}`, '', table.intro, '', `| ${header.join(' | ')} |`, `| --- | --- |${columns.map(() => ' ---: |').join('')}`];
  for (const r of rows) out.push(`| ${escapeMarkdown(r.dataset)} | ${escapeMarkdown(r.kind)} (${r.rows}) | ${r.cells.map(cell).join(' | ')} |`);
  return out.join('\n') + '\n';
}

/** The same table as HTML (an empty string when no column has annotated datasets). */
export function kindTableHtml(columns: readonly KindColumn<AnyStats>[], table: KindTable, level = 2): string {
  const rows = tableRows(columns);
  if (rows.length === 0) return '';
  const th = ['Dataset', table.kindHeader, ...columns.map((c) => c.label)].map((h) => `<th>${escapeHtml(h)}</th>`).join('');
  const body = rows
    .map((r) => `<tr><td>${escapeHtml(r.dataset)}</td><td>${escapeHtml(r.kind)} (${r.rows})</td>${r.cells.map((s) => `<td class="num">${cell(s)}</td>`).join('')}</tr>`)
    .join('\n');
  return `<h${level}>${escapeHtml(table.heading)}</h${level}>\n<p class="note">${escapeHtml(table.intro)}</p>\n<table>\n<thead><tr>${th}</tr></thead>\n<tbody>\n${body}\n</tbody>\n</table>`;
}

/**
 * The per-kind tables of annotated datasets, in the order every report shows them (hit@1 per kind of
 * query, then which distractors win), as Markdown and HTML; a table with no data is left out.
 */
export function annotationTables(
  queryKinds: readonly KindColumn<QueryKindStats>[],
  distractors: readonly DistractorColumn[],
  level = 2,
): { markdown: string; html: string } {
  const tables = [
    [queryKinds, QUERY_KIND_TABLE],
    [distractors, DISTRACTOR_TABLE],
  ] as const;
  return {
    markdown: tables.map(([c, t]) => kindTableMarkdown(c, t, level)).filter((x) => x !== '').join('\n'),
    html: tables.map(([c, t]) => kindTableHtml(c, t, level)).filter((x) => x !== '').join('\n'),
  };
}
