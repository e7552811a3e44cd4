/** Shared pieces of the evaluation tests: a counting fake model and a text-only MMEB-eval folder. */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { encodeEvalParquet, EVAL_PARQUET } from '../../tools/synth/generate.js';
import type { EvalModel, ModelInput } from '../../src/eval/mmeb-eval.js';

export interface FakeCounters {
  calls: number;
  inputs: number;
  loads: number;
  disposed: number;
  texts: string[];
}

/**
 * A deterministic fake embedder: bag of hashed words plus the image bytes' hash, L2-normalised.
 * Texts that share words are close, so a caption and its label score sensibly. `onCall` runs before
 * every embed call (to simulate a crash or a kill).
 */
export function fakeModel(opts: { dim?: number; onCall?: (call: number) => void } = {}): { counters: FakeCounters; load: () => Promise<EvalModel> } {
  const dim = opts.dim ?? 16;
  const counters: FakeCounters = { calls: 0, inputs: 0, loads: 0, disposed: 0, texts: [] };
  // One bucket per word (and per image): texts sharing words are close, others near-orthogonal.
  const vec = (x: ModelInput): Float32Array => {
    const v = new Float32Array(dim);
    const add = (s: string, w: number) => {
      const h = createHash('sha256').update(s).digest();
      v[h.readUInt32LE(0) % dim]! += w;
      v[h.readUInt32LE(4) % dim]! += 0.1 * w;
    };
    for (const word of x.text.toLowerCase().split(/[^a-z0-9]+/).filter(Boolean)) add(word, 1);
    if (x.image) add(createHash('sha256').update(x.image).digest('hex'), 2);
    let n = 0;
    for (const a of v) n += a * a;
    n = Math.sqrt(n) || 1;
    return v.map((a) => a / n);
  };
  const model: EvalModel = {
    dim,
    embed: async (inputs) => {
      counters.calls++;
      opts.onCall?.(counters.calls);
      counters.inputs += inputs.length;
      const out = new Float32Array(inputs.length * dim);
      inputs.forEach((x, i) => {
        counters.texts.push(x.text);
        out.set(vec(x), i * dim);
      });
      return out;
    },
    dispose: () => {
      counters.disposed++;
    },
  };
  return {
    counters,
    load: async () => {
      counters.loads++;
      return model;
    },
  };
}

/** Rows of a text-only retrieval dataset: query "find <word>", candidates "<word> ..." with the right one first. */
export function textRows(words: readonly string[], prefix: string) {
  return words.map((w, i) => ({
    qry_text: `find ${w}`,
    qry_img_path: '',
    tgt_text: [`${w} ${prefix}`, ...[1, 2, 3].map((k) => `${words[(i + k) % words.length]} ${prefix}`)],
    tgt_img_path: [] as string[],
  }));
}

/**
 * A text-only MMEB-eval folder with MMEB dataset names (so a text-only model can score it):
 * N24News and MSCOCO_t2i, sharing candidate texts; plus a manifest-free layout.
 */
export async function writeTextOnlyEvalSet(root: string, datasets: Record<string, ReturnType<typeof textRows>>): Promise<string> {
  for (const [name, rows] of Object.entries(datasets)) {
    await fsp.mkdir(path.join(root, name), { recursive: true });
    await fsp.writeFile(path.join(root, name, EVAL_PARQUET), encodeEvalParquet(rows));
  }
  return root;
}

export const WORDS = ['apple', 'river', 'mountain', 'violin', 'candle', 'tiger', 'cloud', 'harbor'];

export const quietLog = () => {
  const lines: string[] = [];
  return { lines, info: (m: string) => void lines.push(m), warn: (m: string) => void lines.push('WARN ' + m) };
};
