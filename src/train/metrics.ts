/**
 * metrics.jsonl: one JSON object per optimizer step. Each record is appended with a single write, so a
 * crash can at worst leave a torn last line, which readers skip and a resumed run cuts off.
 */
import { promises as fsp } from 'node:fs';
import { writeBytesAtomic } from '../io/atomic.js';

export interface MetricRecord {
  step: number;
  loss: number;
  lr: number;
  grad_norm: number;
  epoch?: number;
  samples_per_s?: number;
  tokens_per_s?: number;
  /** Seconds since the run (or its resumption) started. */
  elapsed_s?: number;
  [stat: string]: number | undefined;
}

export const METRICS_FILE = 'metrics.jsonl';

export async function appendMetric(file: string, record: MetricRecord): Promise<void> {
  await fsp.appendFile(file, JSON.stringify(record) + '\n');
}

/** Every complete, parseable record; a torn or corrupt line is skipped. Missing file: []. */
export async function readMetrics(file: string): Promise<MetricRecord[]> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const out: MetricRecord[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      const r = JSON.parse(line) as MetricRecord;
      if (r && typeof r === 'object' && typeof r.step === 'number') out.push(r);
    } catch {
      // torn line
    }
  }
  return out;
}

/** Keep only the records up to `step` (for a resumed run), rewriting the file atomically. */
export async function truncateMetrics(file: string, step: number): Promise<MetricRecord[]> {
  const kept = (await readMetrics(file)).filter((r) => r.step <= step);
  await writeBytesAtomic(file, kept.map((r) => JSON.stringify(r) + '\n').join(''));
  return kept;
}
