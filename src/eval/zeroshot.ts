/**
 * Zero-shot classification with prompt templates (the CLIP-side recipes' check): each class name is
 * written into every template, the class embedding is the L2-normalised mean of those template
 * embeddings, and an image's prediction ranks the classes by cosine. Top-1 and top-5 accuracy;
 * ties count against the true class (scoring.ts's pessimistic rule).
 *
 * Data: an ImageFolder tree (root/<class>/<images>), or a jsonl/json/csv with `image` and `label`
 * (image paths relative to the file), plus an optional class-names file: one name per line (in the
 * sorted order of the class folders, or indexed by integer labels), a JSON list, or a JSON object
 * mapping label -> name.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { UnimeError } from '../errors.js';
import { checkImagesExist, listImages, readAnnotationRows, readJsonFile, readText, statData, stringField } from './annotations.js';
import { DEFAULT_TIE_RULE, checkSameDim, cosineBlock, rankOfCorrect, recallAt, rowNorms, type EmbeddingMatrix, type TieRule } from './scoring.js';

/** A short ensemble of OpenAI CLIP's ImageNet templates (the 7 its notebook selected, plus the plain one). */
export const DEFAULT_TEMPLATES: readonly string[] = [
  'a photo of a {}.',
  'itap of a {}.',
  'a bad photo of the {}.',
  'a origami {}.',
  'a photo of the large {}.',
  'a {} in a video game.',
  'art of the {}.',
  'a photo of the small {}.',
];

/** Class embeddings from [classes * templates, dim] template embeddings (class-major): normalised means. */
export function classEmbeddings(templateEmbeddings: EmbeddingMatrix, classes: number, templates: number): EmbeddingMatrix {
  const { data, dim, rows } = templateEmbeddings;
  if (rows !== classes * templates) {
    throw new UnimeError(`${rows} template embeddings for ${classes} classes x ${templates} templates`, { field: 'zeroshot', fix: 'embed every template of every class, class by class' });
  }
  const out = new Float32Array(classes * dim);
  const acc = new Float64Array(dim);
  for (let c = 0; c < classes; c++) {
    acc.fill(0);
    for (let t = 0; t < templates; t++) {
      const base = (c * templates + t) * dim;
      for (let j = 0; j < dim; j++) acc[j]! += data[base + j]!;
    }
    let n = 0;
    for (let j = 0; j < dim; j++) n += acc[j]! * acc[j]!;
    n = Math.sqrt(n);
    for (let j = 0; j < dim; j++) out[c * dim + j] = n === 0 ? 0 : acc[j]! / n;
  }
  return { data: out, rows: classes, dim };
}

/** 1-based rank of each image's true class among all classes. */
export function zeroshotRanks(images: EmbeddingMatrix, classes: EmbeddingMatrix, labels: ArrayLike<number>, tieRule: TieRule = DEFAULT_TIE_RULE): Int32Array {
  if (labels.length !== images.rows) throw new UnimeError(`${images.rows} image embeddings but ${labels.length} labels`, { field: 'zeroshot' });
  checkSameDim(images, classes, 'zeroshot');
  const iN = rowNorms(images, 'zeroshot: images');
  const cN = rowNorms(classes, 'zeroshot: classes');
  const nC = classes.rows;
  const ranks = new Int32Array(images.rows);
  const scores = new Array<number>(nC);
  // Blocks of images: ImageNet's 50k x 1000 matrix whole would be 400 MB.
  for (let start = 0; start < images.rows; start += 256) {
    const end = Math.min(images.rows, start + 256);
    const sim = cosineBlock(images, start, end, classes, iN, cN);
    for (let i = start; i < end; i++) {
      const y = labels[i]!;
      if (!Number.isInteger(y) || y < 0 || y >= nC) throw new UnimeError(`label ${y} of image ${i} is outside the ${nC} classes`, { field: 'zeroshot' });
      const base = (i - start) * nC;
      scores[0] = sim[base + y]!;
      let j = 1;
      for (let c = 0; c < nC; c++) if (c !== y) scores[j++] = sim[base + c]!;
      ranks[i] = rankOfCorrect(scores, tieRule);
    }
  }
  return ranks;
}

export interface ZeroshotScores {
  top1: number;
  top5: number;
  images: number;
  classes: number;
  /** Top-1 per class name, percent. */
  per_class: Record<string, number>;
}

export function scoreZeroshot(images: EmbeddingMatrix, classes: EmbeddingMatrix, labels: ArrayLike<number>, classNames?: readonly string[], tieRule: TieRule = DEFAULT_TIE_RULE): ZeroshotScores {
  return zeroshotScoresFromRanks(zeroshotRanks(images, classes, labels, tieRule), labels, classes.rows, classNames);
}

/** The scores of {@link scoreZeroshot} from ranks already computed (the true class's rank per image). */
export function zeroshotScoresFromRanks(ranks: Int32Array, labels: ArrayLike<number>, classes: number, classNames?: readonly string[]): ZeroshotScores {
  const perClass: Record<string, number> = {};
  if (classNames) {
    const hit = new Array<number>(classes).fill(0);
    const count = new Array<number>(classes).fill(0);
    for (let i = 0; i < ranks.length; i++) {
      count[labels[i]!]!++;
      if (ranks[i] === 1) hit[labels[i]!]!++;
    }
    classNames.forEach((n, c) => {
      if (count[c]! > 0) perClass[n] = (100 * hit[c]!) / count[c]!;
    });
  }
  return { top1: recallAt(ranks, 1), top5: recallAt(ranks, 5), images: ranks.length, classes, per_class: perClass };
}

/** Fill a template's `{}` with a class name. */
export function fillTemplate(template: string, name: string): string {
  return template.split('{}').join(name);
}

// ---------------------------------------------------------------------------------------------
// Data

export interface ZeroshotData {
  source: string;
  format: 'imagefolder' | 'table';
  classNames: string[];
  images: string[];
  labels: Int32Array;
}

/** Read a templates file: one template per line with `{}` where the class name goes (or a JSON list). */
export async function readTemplates(file: string, field = '--templates'): Promise<string[]> {
  const text = await readText(path.resolve(file), field);
  let list: unknown;
  if (/^\s*\[/.test(text)) {
    try {
      list = JSON.parse(text);
    } catch (e) {
      throw new UnimeError(`is not valid JSON: ${(e as Error).message}`, { file, field });
    }
  } else list = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  if (!Array.isArray(list) || list.length === 0) throw new UnimeError('holds no templates', { file, field, fix: 'one template per line, e.g. "a photo of a {}."' });
  list.forEach((t, i) => {
    if (typeof t !== 'string' || !t.includes('{}')) throw new UnimeError(`template ${i + 1} (${JSON.stringify(t)}) has no {} for the class name`, { file, field });
  });
  return list as string[];
}

/** Class names file: lines, JSON list, or JSON object label -> name. */
async function readClassNames(file: string): Promise<string[] | Record<string, string>> {
  const text = await readText(file, '--classnames');
  if (/^\s*[[{]/.test(text)) {
    const v = await readJsonFile(file);
    if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v as string[];
    if (v && typeof v === 'object' && !Array.isArray(v) && Object.values(v).every((x) => typeof x === 'string')) return v as Record<string, string>;
    throw new UnimeError('expected a list of names or an object label -> name', { file, field: '--classnames' });
  }
  return text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '');
}

export async function readZeroshotData(dataPath: string, opts: { classNames?: string; field?: string } = {}): Promise<ZeroshotData> {
  const field = opts.field ?? '--data';
  const kind = await statData(dataPath, field);
  const source = path.resolve(dataPath);
  const names = opts.classNames ? await readClassNames(path.resolve(opts.classNames)) : undefined;
  const namesFile = opts.classNames ? path.resolve(opts.classNames) : undefined;
  if (kind === 'dir') {
    const entries = await fsp.readdir(source, { withFileTypes: true });
    const classDirs = entries.filter((e) => e.isDirectory() && !e.name.startsWith('.')).map((e) => e.name).sort();
    if (classDirs.length === 0) {
      const tables = entries.filter((e) => e.isFile() && /\.(jsonl|csv|tsv)$/i.test(e.name)).map((e) => e.name);
      if (tables.length === 1) return readZeroshotData(path.join(source, tables[0]!), opts);
      throw new UnimeError('has no class folders (ImageFolder layout: <root>/<class>/<images>) and no single jsonl/csv of image,label', { file: source, field });
    }
    const images: string[] = [];
    const labels: number[] = [];
    for (const [c, d] of classDirs.entries()) {
      for (const f of await listImages(path.join(source, d))) {
        images.push(path.join(source, d, f));
        labels.push(c);
      }
    }
    if (images.length === 0) throw new UnimeError('has class folders but no images in them', { file: source, field });
    let classNames = classDirs;
    if (names) {
      if (Array.isArray(names)) {
        if (names.length !== classDirs.length) throw new UnimeError(`lists ${names.length} class names for ${classDirs.length} class folders`, { file: namesFile, field: '--classnames', fix: 'one name per class folder, in sorted folder order' });
        classNames = names;
      } else classNames = classDirs.map((d) => names[d] ?? d);
    }
    return { source, format: 'imagefolder', classNames, images, labels: Int32Array.from(labels) };
  }
  const rows = await readAnnotationRows(source);
  const root = path.dirname(source);
  const images: string[] = [];
  const rawLabels: string[] = [];
  rows.forEach((row, i) => {
    images.push(path.resolve(root, stringField(row, 'image', source, i + 1)));
    const l = row.label;
    if (typeof l === 'number' && Number.isInteger(l)) rawLabels.push(String(l));
    else rawLabels.push(stringField(row, 'label', source, i + 1));
  });
  if (images.length === 0) throw new UnimeError('holds no rows', { file: source, field });
  let classNames: string[];
  let labels: number[];
  if (Array.isArray(names) && rawLabels.every((l) => /^\d+$/.test(l))) {
    // Integer labels index the names list.
    labels = rawLabels.map((l, i) => {
      const y = Number(l);
      if (y >= names.length) throw new UnimeError(`row ${i + 1}: label ${y} is outside the ${names.length} class names`, { file: source, field: 'label', line: i + 1 });
      return y;
    });
    classNames = names;
  } else {
    const keys = [...new Set(rawLabels)].sort();
    if (Array.isArray(names)) {
      // Names list: the classes are those names, labels are names too.
      const unknown = keys.filter((k) => !names.includes(k));
      if (unknown.length) throw new UnimeError(`labels ${unknown.slice(0, 3).join(', ')} are not in the class names`, { file: source, field: 'label' });
      classNames = names;
      labels = rawLabels.map((l) => names.indexOf(l));
    } else {
      classNames = keys.map((k) => names?.[k] ?? k);
      labels = rawLabels.map((l) => keys.indexOf(l));
    }
  }
  await checkImagesExist(images, source, 'image');
  return { source, format: 'table', classNames, images, labels: Int32Array.from(labels) };
}
