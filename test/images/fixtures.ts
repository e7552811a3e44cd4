/** The image fixtures and PIL references of tools/fixtures/make_vision_fixtures.py. */
import { readFileSync } from 'node:fs';
import { fixture } from '../helpers.js';

export interface ImagesReference {
  pil_version: string;
  decoded: Record<string, { mode: string; width: number; height: number; rgb: number[] }>;
  resized: { image: string; width: number; height: number; resample: number; rgb: number[] }[];
  processed: { processor: string; image: string; shape: [number, number, number]; values: number[] }[];
}

export const imageFixture = (name: string): string => fixture('images', name);

export function readImagesReference(): ImagesReference {
  return JSON.parse(readFileSync(imageFixture('reference.json'), 'utf8')) as ImagesReference;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}
