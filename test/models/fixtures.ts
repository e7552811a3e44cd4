/** Shared access to the decoder fixtures of tools/fixtures/make_decoder_fixtures.py. */
import { readFileSync } from 'node:fs';
import { fixture } from '../helpers.js';
import { tf, type Tensor } from '../../src/runtime/tf.js';

export const DECODER_FIXTURES = ['llama-tiny', 'llama3-tiny', 'mistral-tiny', 'qwen2-tiny', 'qwen3-tiny', 'phi3-tiny'] as const;

export interface DecoderReference {
  model_type: string;
  torch_version: string;
  input_ids: number[][];
  attention_mask: number[][];
  hidden_size: number;
  hidden_states: number[][];
  last_hidden_state: number[];
  pooled_last_token: number[];
  pooled_mean: number[];
  bidirectional: { last_hidden_state: number[]; pooled_last_token: number[] };
  /** 20-token inputs: past phi3-tiny's original context (long_factor) and qwen2-tiny's dynamic-NTK limit. */
  long: { input_ids: number[][]; attention_mask: number[][]; last_hidden_state: number[] };
}

export function fixtureDir(name: string): string {
  return fixture('models', name);
}

export function readReference(name: string): DecoderReference {
  return JSON.parse(readFileSync(fixture('models', name, 'reference.json'), 'utf8')) as DecoderReference;
}

/** Max |a - b| over positions where the mask is 1 (a is [batch, seq, hidden], b flattened the same way). */
export function maxAbsDiffMasked(a: Tensor, b: number[], mask: number[][]): number {
  const av = a.dataSync();
  const [batch, seq, hidden] = a.shape as [number, number, number];
  if (b.length !== batch * seq * hidden) throw new Error(`reference has ${b.length} values, tensor ${batch * seq * hidden}`);
  let m = 0;
  for (let r = 0; r < batch; r++)
    for (let j = 0; j < seq; j++) {
      if (!mask[r]![j]) continue;
      const o = (r * seq + j) * hidden;
      for (let k = 0; k < hidden; k++) m = Math.max(m, Math.abs(av[o + k]! - b[o + k]!));
    }
  return m;
}

export function maxAbsDiff(a: Tensor | ArrayLike<number>, b: ArrayLike<number>): number {
  const av = a instanceof tf.Tensor ? a.dataSync() : a;
  if (av.length !== b.length) throw new Error(`length ${av.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < av.length; i++) m = Math.max(m, Math.abs(av[i]! - b[i]!));
  return m;
}
