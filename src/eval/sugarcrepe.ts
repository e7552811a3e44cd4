/**
 * SugarCrepe: for each COCO val2017 image a true caption and a hard negative that differs by one
 * compositional edit; a sample is right when the image is closer (cosine) to the true caption.
 * Seven subsets, each a JSON dict id -> {filename, caption, negative_caption}; accuracy per subset
 * and the mean over the subsets present (missing ones are listed, never averaged in silently).
 * A tie counts as wrong (pessimistic, as in scoring.ts).
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { UnimeError } from '../errors.js';
import { checkImagesExist, readJsonFile, statData } from './annotations.js';
import { cosineSimilarity, matrixRow, rowNorms, type EmbeddingMatrix } from './scoring.js';
import { percentOf } from './significance.js';

export const SUGARCREPE_SUBSETS = ['add_att', 'add_obj', 'replace_att', 'replace_obj', 'replace_rel', 'swap_att', 'swap_obj'] as const;
export type SugarcrepeSubset = (typeof SUGARCREPE_SUBSETS)[number];

/** Percent of rows where cos(image, positive) > cos(image, negative), rows aligned. */
export function sugarcrepeAccuracy(images: EmbeddingMatrix, positives: EmbeddingMatrix, negatives: EmbeddingMatrix, label = 'sugarcrepe'): number {
  return percentOf(sugarcrepeCorrect(images, positives, negatives, label));
}

/** Per sample: 1 where the image is closer to its caption than to the negative (ties count as wrong). */
export function sugarcrepeCorrect(images: EmbeddingMatrix, positives: EmbeddingMatrix, negatives: EmbeddingMatrix, label = 'sugarcrepe'): Uint8Array {
  if (positives.rows !== images.rows || negatives.rows !== images.rows) {
    throw new UnimeError(`${images.rows} images, ${positives.rows} captions and ${negatives.rows} negatives`, { field: label, fix: 'pass one caption and one negative per image row' });
  }
  if (images.rows === 0) throw new UnimeError('no samples', { field: label });
  // Reject non-finite embeddings with the row named.
  rowNorms(images, `${label}: images`);
  rowNorms(positives, `${label}: captions`);
  rowNorms(negatives, `${label}: negative captions`);
  const right = new Uint8Array(images.rows);
  for (let i = 0; i < images.rows; i++) {
    const im = matrixRow(images, i);
    if (cosineSimilarity(im, matrixRow(positives, i)) > cosineSimilarity(im, matrixRow(negatives, i))) right[i] = 1;
  }
  return right;
}

export interface SugarcrepeSample {
  id: string;
  image: string;
  caption: string;
  negative: string;
}

export interface SugarcrepeData {
  dir: string;
  imageDir: string;
  subsets: { name: SugarcrepeSubset; file: string; samples: SugarcrepeSample[] }[];
  missing: SugarcrepeSubset[];
}

const IMAGE_DIR_NAMES = ['images', 'val2017', 'coco_val2017', 'image'];

/**
 * Read the subset files of a folder (`<subset>.json`, also found under `data/`), images from
 * `imageDir` (default: an images/ or val2017/ folder beside them). `subsets` limits which to read.
 */
export async function readSugarcrepe(dataPath: string, opts: { imageDir?: string; subsets?: readonly string[]; field?: string; imagesField?: string } = {}): Promise<SugarcrepeData> {
  const field = opts.field ?? '--data';
  if ((await statData(dataPath, field)) !== 'dir') {
    throw new UnimeError('is a file; SugarCrepe needs the folder holding its subset files', { file: path.resolve(dataPath), field, fix: `pass the folder with ${SUGARCREPE_SUBSETS.map((s) => s + '.json').join(', ')}` });
  }
  let dir = path.resolve(dataPath);
  const has = async (d: string) => (await fsp.readdir(d).catch(() => [] as string[])).some((n) => SUGARCREPE_SUBSETS.some((s) => n === `${s}.json`));
  if (!(await has(dir)) && (await has(path.join(dir, 'data')))) dir = path.join(dir, 'data');
  const wanted = (opts.subsets ?? SUGARCREPE_SUBSETS).map((s) => {
    if (!(SUGARCREPE_SUBSETS as readonly string[]).includes(s)) throw new UnimeError(`unknown SugarCrepe subset "${s}"`, { field: 'subsets', fix: `use some of: ${SUGARCREPE_SUBSETS.join(', ')}` });
    return s as SugarcrepeSubset;
  });
  const present = new Set(await fsp.readdir(dir).catch(() => [] as string[]));
  if (!wanted.some((s) => present.has(`${s}.json`))) {
    throw new UnimeError(`holds none of the SugarCrepe subset files (${wanted.map((s) => s + '.json').join(', ')})`, { file: dir, field, fix: 'download them from the SugarCrepe repository (data/)' });
  }
  let imageDir = opts.imageDir ? path.resolve(opts.imageDir) : undefined;
  if (!imageDir) {
    for (const base of [dir, path.dirname(dir)]) {
      for (const n of IMAGE_DIR_NAMES) {
        const st = await fsp.stat(path.join(base, n)).catch(() => null);
        if (st?.isDirectory()) {
          imageDir = path.join(base, n);
          break;
        }
      }
      if (imageDir) break;
    }
  }
  if (!imageDir) throw new UnimeError(`has no image folder (${IMAGE_DIR_NAMES.join('/')})`, { file: dir, field: opts.imagesField ?? '--images', fix: `pass the COCO val2017 folder (${opts.imagesField ?? '--images'})` });
  const subsets: SugarcrepeData['subsets'] = [];
  const missing: SugarcrepeSubset[] = [];
  for (const name of wanted) {
    const file = path.join(dir, `${name}.json`);
    if (!(await fsp.stat(file).catch(() => null))) {
      missing.push(name);
      continue;
    }
    const v = await readJsonFile(file);
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new UnimeError('expected a JSON object of id -> {filename, caption, negative_caption}', { file });
    const samples: SugarcrepeSample[] = [];
    for (const [id, raw] of Object.entries(v as Record<string, unknown>)) {
      const o = raw as Record<string, unknown>;
      for (const k of ['filename', 'caption', 'negative_caption']) {
        if (o === null || typeof o !== 'object' || typeof o[k] !== 'string' || (o[k] as string).trim() === '') {
          throw new UnimeError(`has no "${k}" string`, { file, field: `${id}.${k}` });
        }
      }
      samples.push({ id, image: path.join(imageDir, o.filename as string), caption: o.caption as string, negative: o.negative_caption as string });
    }
    if (samples.length === 0) throw new UnimeError('holds no samples', { file });
    await checkImagesExist(
      samples.map((s) => s.image),
      file,
      'filename',
    );
    subsets.push({ name, file, samples });
  }
  if (subsets.length === 0) {
    throw new UnimeError(`holds none of the SugarCrepe subset files (${wanted.map((s) => s + '.json').join(', ')})`, { file: dir, field, fix: 'download them from the SugarCrepe repository (data/)' });
  }
  return { dir, imageDir, subsets, missing };
}
