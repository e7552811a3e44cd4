/**
 * Scoring one MMEB dataset with any embedding model: the model enters as an `embed(batch)`
 * function, so this file knows nothing about tfjs, tokenizers or checkpoints. Rows arrive as read
 * from an MMEB-eval parquet file (its column names are kept); every unique query and every unique
 * candidate (same text + same image path) is embedded once.
 */
import { UnimeError } from '../errors.js';
import {
  type DatasetMetrics,
  type EmbedItem,
  type EmbeddingMatrix,
  type TieRule,
  DEFAULT_KS,
  dedupeCandidateRows,
  dedupeItems,
  embeddingMatrix,
  metricsFromRanks,
  rankPooled,
} from './scoring.js';

/** One row of an MMEB-eval `test-00000-of-00001.parquet`; `''` as an image path means no image. */
export interface MmebEvalRow {
  readonly qry_text: string;
  readonly qry_img_path: string;
  readonly tgt_text: readonly string[];
  /** Same length as `tgt_text`; an empty list is read as "no images". */
  readonly tgt_img_path: readonly string[];
}

/** What the model is asked to embed. Queries and candidates may need different prompts. */
export interface EmbedRequest extends EmbedItem {
  readonly role: 'query' | 'candidate';
}

/** The model: one embedding per request, in order, as a [batch, dim] matrix or a list of vectors. */
export type EmbedFn = (batch: readonly EmbedRequest[]) => Promise<EmbeddingMatrix | readonly ArrayLike<number>[]>;

export interface EvaluateOptions {
  /** Requests per embed call (default 16). */
  batchSize?: number;
  tieRule?: TieRule;
  ks?: readonly number[];
  /** Called after every embed call. */
  onProgress?: (done: number, total: number) => void;
}

export interface DatasetEvaluation {
  dataset: string;
  metrics: DatasetMetrics;
  /** 1-based rank of the correct candidate per row. */
  ranks: Int32Array;
  /** Per row, per candidate: 1 where it ranks above the correct one (0 for the correct one itself). */
  outranked: Uint8Array[];
  /** How many unique queries and candidates were embedded. */
  embedded: { queries: number; candidates: number };
}

export async function evaluateMmebDataset(
  dataset: string,
  rows: readonly MmebEvalRow[],
  embed: EmbedFn,
  options: EvaluateOptions = {},
): Promise<DatasetEvaluation> {
  const batchSize = options.batchSize ?? 16;
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new UnimeError(`batch size ${batchSize} is not a positive whole number`, { field: 'batchSize', fix: 'use e.g. 16' });
  }
  if (rows.length === 0) throw new UnimeError('the dataset has no rows', { field: dataset, fix: 'check the parquet file of this dataset' });

  const queryItems: EmbedRequest[] = [];
  const candidateRows: EmbedRequest[][] = [];
  rows.forEach((row, i) => {
    const where = `${dataset}: rows[${i}]`;
    if (typeof row.qry_text !== 'string') throw rowError(where, 'qry_text', 'a string');
    if (typeof row.qry_img_path !== 'string') throw rowError(where, 'qry_img_path', "a string ('' for no image)");
    if (!Array.isArray(row.tgt_text) || row.tgt_text.length === 0) throw rowError(where, 'tgt_text', 'a non-empty list of strings');
    const paths = row.tgt_img_path;
    if (!Array.isArray(paths) || (paths.length !== 0 && paths.length !== row.tgt_text.length)) {
      throw new UnimeError(`tgt_img_path has ${Array.isArray(paths) ? paths.length : 'no'} entries for ${row.tgt_text.length} tgt_text entries`, {
        field: `${where}.tgt_img_path`,
        fix: "give one image path per candidate ('' for a text-only candidate)",
      });
    }
    queryItems.push({ role: 'query', text: row.qry_text, imagePath: row.qry_img_path });
    candidateRows.push(row.tgt_text.map((text, j) => ({ role: 'candidate', text, imagePath: paths[j] ?? '' })));
  });

  const queries = dedupeItems(queryItems);
  const candidates = dedupeCandidateRows(candidateRows);
  const total = queries.unique.length + candidates.unique.length;
  let done = 0;
  const run = async (items: readonly EmbedRequest[], side: string): Promise<EmbeddingMatrix> => {
    let dim = 0;
    let data = new Float32Array(0);
    for (let start = 0; start < items.length; start += batchSize) {
      const batch = items.slice(start, start + batchSize);
      const got = toMatrix(await embed(batch), `${dataset}: ${side} embeddings ${start}..${start + batch.length - 1}`);
      if (got.rows !== batch.length) {
        throw new UnimeError(`embed returned ${got.rows} embeddings for ${batch.length} inputs`, {
          field: `${dataset}: ${side} embeddings`,
          fix: 'the embed function must return exactly one embedding per input, in order',
        });
      }
      if (start === 0) {
        dim = got.dim;
        data = new Float32Array(items.length * dim);
      } else if (got.dim !== dim) {
        throw new UnimeError(`embed returned dimension ${got.dim} after ${dim}`, {
          field: `${dataset}: ${side} embeddings`,
          fix: 'every embedding of one model must have the same dimension',
        });
      }
      data.set(got.data, start * dim);
      done += batch.length;
      options.onProgress?.(done, total);
    }
    return embeddingMatrix(data, items.length, dim, `${dataset}: ${side} embeddings`);
  };
  const queryMatrix = await run(queries.unique, 'query');
  const pool = await run(candidates.unique, 'candidate');
  if (pool.dim !== queryMatrix.dim) {
    throw new UnimeError(`candidate dimension ${pool.dim} differs from query dimension ${queryMatrix.dim}`, {
      field: dataset,
      fix: 'queries and candidates must be embedded by the same model',
    });
  }
  const outranked: Uint8Array[] = [];
  const ranks = rankPooled(queryMatrix, pool, candidates.rows, {
    queryOfRow: queries.indexOf,
    outranked,
    label: dataset,
    ...(options.tieRule ? { tieRule: options.tieRule } : {}),
  });
  const metrics = metricsFromRanks(ranks, { ks: options.ks ?? DEFAULT_KS, numData: rows.length });
  return { dataset, metrics, ranks, outranked, embedded: { queries: queries.unique.length, candidates: candidates.unique.length } };
}

function toMatrix(out: EmbeddingMatrix | readonly ArrayLike<number>[], label: string): EmbeddingMatrix {
  if (Array.isArray(out)) {
    const list = out as readonly ArrayLike<number>[];
    const dim = list[0]?.length ?? 0;
    const data = new Float32Array(list.length * dim);
    list.forEach((v, i) => {
      if (v.length !== dim) {
        throw new UnimeError(`embedding ${i} has ${v.length} values, expected ${dim}`, { field: label, fix: 'every embedding must have the model dimension' });
      }
      for (let j = 0; j < dim; j++) data[i * dim + j] = v[j]!;
    });
    return { data, rows: list.length, dim };
  }
  const m = out as EmbeddingMatrix;
  if (!(m.data instanceof Float32Array)) {
    throw new UnimeError('embed returned neither a list of vectors nor a { data: Float32Array, rows, dim } matrix', {
      field: label,
      fix: 'return a matrix or an array with one vector per input',
    });
  }
  return embeddingMatrix(m.data, m.rows, m.dim, label);
}

function rowError(where: string, column: string, expected: string): UnimeError {
  return new UnimeError(`${column} must be ${expected}`, { field: `${where}.${column}`, fix: 'check that the file is an MMEB-eval parquet file' });
}
