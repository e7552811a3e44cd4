/** Shared access to the vision fixtures of tools/fixtures/make_vision_fixtures.py. */
import { readFileSync } from 'node:fs';
import { fixture } from '../../helpers.js';
import { tf, type Tensor } from '../../../src/runtime/tf.js';

export const VISION_FIXTURES = ['clip-vision-tiny', 'llava-clip-tiny', 'siglip-vision-tiny', 'llava-ov-siglip-tiny'] as const;

export interface VisionReference {
  torch_version: string;
  kind: 'clip' | 'siglip';
  prefix: string;
  pixel_values_shape: [number, number, number, number];
  pixel_values: number[];
  seq_len: number;
  hidden_size: number;
  hidden_states: number[][];
  last_hidden_state: number[];
  pooled: number[] | null;
  features: { layer: number | number[]; strategy: 'default' | 'full'; shape: number[]; values: number[] }[];
}

export function visionFixtureDir(name: string): string {
  return fixture('vision', name);
}

export function readVisionReference(name: string): VisionReference {
  return JSON.parse(readFileSync(fixture('vision', name, 'reference.json'), 'utf8')) as VisionReference;
}

export function pixelsOf(ref: VisionReference): Tensor {
  return tf.tensor4d(ref.pixel_values, ref.pixel_values_shape, 'float32');
}

export function maxAbsDiff(a: Tensor | ArrayLike<number>, b: ArrayLike<number>): number {
  const av = a instanceof tf.Tensor ? a.dataSync() : a;
  if (av.length !== b.length) throw new Error(`length ${av.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < av.length; i++) m = Math.max(m, Math.abs(av[i]! - b[i]!));
  return m;
}
