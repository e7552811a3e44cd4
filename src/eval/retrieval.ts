/**
 * Caption retrieval (Flickr30K, COCO, ShareGPT4V, Urban1K, DOCCI): every image against every
 * caption, recall@1/5/10 in both directions.
 *
 * - image -> text: an image's query is correct when any of its own captions is retrieved; its rank is
 *   that of its best-scoring caption, the other captions of the same image not competing.
 * - text -> image: a caption's only correct image is its own.
 * Ties count against the correct side (scoring.ts's pessimistic rule), so a collapsed model scores 0.
 *
 * Data: a canonical jsonl/json/csv (`image`, and `caption` or a `captions` list; image paths relative
 * to the file), or the Karpathy-split JSON of Flickr30K/COCO (`images: [{filename, filepath?, split,
 * sentences: [{raw}]}]`, split 'test'), or a folder holding one of them.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { UnimeError } from '../errors.js';
import { checkImagesExist, readAnnotationRows, readJsonFile, statData, stringField } from './annotations.js';
import { DEFAULT_TIE_RULE, TIE_RULES, checkSameDim, cosineAt, cosineBlock, rankOfCorrect, recallAt, rowNorms, type EmbeddingMatrix, type TieRule } from './scoring.js';

function checkTieRule(t: TieRule): TieRule {
  if (!TIE_RULES.includes(t)) throw new UnimeError(`unknown tie rule "${String(t)}"`, { field: 'tieRule', fix: `use one of: ${TIE_RULES.join(', ')}` });
  return t;
}

export const RETRIEVAL_KS = [1, 5, 10] as const;

export interface RetrievalScores {
  /** Percent, keyed `i2t_r1`, ..., `t2i_r10`, and `mean` (of the six recalls). */
  i2t_r1: number;
  i2t_r5: number;
  i2t_r10: number;
  t2i_r1: number;
  t2i_r5: number;
  t2i_r10: number;
  mean: number;
  images: number;
  captions: number;
}

/** Ranks in both directions. `captionImage[c]` is the image row of caption c. */
export function retrievalRanks(
  images: EmbeddingMatrix,
  captions: EmbeddingMatrix,
  captionImage: ArrayLike<number>,
  tieRule: TieRule = DEFAULT_TIE_RULE,
): { i2t: Int32Array; t2i: Int32Array } {
  if (captionImage.length !== captions.rows) {
    throw new UnimeError(`${captions.rows} caption embeddings but ${captionImage.length} caption->image links`, { field: 'retrieval', fix: 'pass one image index per caption' });
  }
  const nI = images.rows;
  const nT = captions.rows;
  const own: number[][] = Array.from({ length: nI }, () => []);
  for (let c = 0; c < nT; c++) {
    const g = captionImage[c]!;
    if (!Number.isInteger(g) || g < 0 || g >= nI) throw new UnimeError(`caption ${c} points at image ${g}, outside the ${nI} images`, { field: 'retrieval' });
    own[g]!.push(c);
  }
  checkSameDim(images, captions, 'retrieval');
  const iN = rowNorms(images, 'retrieval: images');
  const tN = rowNorms(captions, 'retrieval: captions');
  // Each caption's score with its own image; the block pass below counts the images that beat it.
  const ownScore = new Float64Array(nT);
  for (let c = 0; c < nT; c++) ownScore[c] = cosineAt(images, captionImage[c]!, captions, c, iN, tN);
  const pessimistic = checkTieRule(tieRule) === 'pessimistic';
  const t2i = new Int32Array(nT).fill(1);
  const i2t = new Int32Array(nI);
  const isMine = new Uint8Array(nT);
  const scores: number[] = [];
  // Blocks of images keep memory at BLOCK x captions (COCO's 5k x 25k matrix would be 1 GB).
  for (let start = 0; start < nI; start += BLOCK) {
    const end = Math.min(nI, start + BLOCK);
    const sim = cosineBlock(images, start, end, captions, iN, tN);
    for (let i = start; i < end; i++) {
      const mine = own[i]!;
      if (mine.length === 0) throw new UnimeError(`image ${i} has no caption`, { field: 'retrieval', fix: 'every image needs at least one caption' });
      const row = sim.subarray((i - start) * nT, (i - start + 1) * nT);
      let best = -Infinity;
      for (const c of mine) {
        best = Math.max(best, row[c]!);
        isMine[c] = 1;
      }
      scores.length = 0;
      scores.push(best);
      for (let c = 0; c < nT; c++) {
        const v = row[c]!;
        if (isMine[c]) continue;
        scores.push(v);
        const o = ownScore[c]!;
        if (Number.isNaN(o) || v > o || (pessimistic && v === o)) t2i[c]!++;
      }
      for (const c of mine) isMine[c] = 0;
      i2t[i] = rankOfCorrect(scores, tieRule);
    }
  }
  return { i2t, t2i };
}

const BLOCK = 256;

/** Recall@1/5/10 in both directions and their mean, in percent. */
export function scoreRetrieval(images: EmbeddingMatrix, captions: EmbeddingMatrix, captionImage: ArrayLike<number>, tieRule: TieRule = DEFAULT_TIE_RULE): RetrievalScores {
  return retrievalScoresFromRanks(retrievalRanks(images, captions, captionImage, tieRule), images.rows, captions.rows);
}

/** The scores of {@link scoreRetrieval} from ranks already computed (one per image, one per caption). */
export function retrievalScoresFromRanks(ranks: { i2t: Int32Array; t2i: Int32Array }, images: number, captions: number): RetrievalScores {
  const { i2t, t2i } = ranks;
  const s = {
    i2t_r1: recallAt(i2t, 1),
    i2t_r5: recallAt(i2t, 5),
    i2t_r10: recallAt(i2t, 10),
    t2i_r1: recallAt(t2i, 1),
    t2i_r5: recallAt(t2i, 5),
    t2i_r10: recallAt(t2i, 10),
  };
  const vals = Object.values(s);
  return { ...s, mean: vals.reduce((a, b) => a + b, 0) / vals.length, images, captions };
}

// ---------------------------------------------------------------------------------------------
// Data

export interface RetrievalData {
  /** The annotation file read. */
  file: string;
  format: 'karpathy' | 'table';
  /** Absolute image paths, one per image. */
  images: string[];
  captions: string[];
  captionImage: Int32Array;
}

const ANNOTATION_NAMES = ['test.jsonl', 'annotations.jsonl', 'captions.jsonl', 'test.csv', 'annotations.csv', 'captions.csv', 'dataset.json', 'test.json'];

/** Find the annotation file in a folder: a known name, or the only .jsonl/.csv/.json there. */
async function findAnnotationFile(dir: string, field: string): Promise<string> {
  const names = await fsp.readdir(dir);
  for (const n of ANNOTATION_NAMES) if (names.includes(n)) return path.join(dir, n);
  const karpathy = names.filter((n) => /^dataset_.*\.json$/i.test(n));
  if (karpathy.length === 1) return path.join(dir, karpathy[0]!);
  const cands = names.filter((n) => /\.(jsonl|csv|tsv|json)$/i.test(n));
  if (cands.length === 1) return path.join(dir, cands[0]!);
  throw new UnimeError(cands.length === 0 ? 'holds no annotation file (.jsonl, .csv or a Karpathy-split .json)' : `holds several annotation files (${cands.join(', ')}) and none is named ${ANNOTATION_NAMES[0]}`, {
    file: dir,
    field,
    fix: 'pass the annotation file itself as --data',
  });
}

/** Read caption-retrieval data from a file or a folder holding one. `imageRoot` overrides where image paths are relative to. */
export async function readRetrievalData(dataPath: string, opts: { imageRoot?: string; field?: string } = {}): Promise<RetrievalData> {
  const field = opts.field ?? '--data';
  const kind = await statData(dataPath, field);
  const file = path.resolve(kind === 'dir' ? await findAnnotationFile(dataPath, field) : dataPath);
  const data = path.extname(file).toLowerCase() === '.json' ? await readJsonOrKarpathy(file, opts.imageRoot) : await readTable(file, opts.imageRoot);
  if (data.images.length === 0) throw new UnimeError('holds no image-caption pairs', { file, field, fix: 'check the split (Karpathy: split "test") and the fields' });
  await checkImagesExist(data.images, file, 'image');
  return data;
}

async function readJsonOrKarpathy(file: string, imageRoot?: string): Promise<RetrievalData> {
  const v = await readJsonFile(file);
  if (Array.isArray(v)) return readTable(file, imageRoot);
  const imgs = (v as { images?: unknown }).images;
  if (!Array.isArray(imgs)) throw new UnimeError('is neither a row list nor a Karpathy-split file (no "images" list)', { file, field: 'images' });
  const root = imageRoot ?? path.dirname(file);
  const images: string[] = [];
  const captions: string[] = [];
  const link: number[] = [];
  imgs.forEach((im: unknown, i: number) => {
    const where = `images[${i}]`;
    const o = im as Record<string, unknown>;
    if (o === null || typeof o !== 'object') throw new UnimeError('is not an object', { file, field: where });
    if (o.split !== 'test') return;
    if (typeof o.filename !== 'string' || o.filename === '') throw new UnimeError('has no "filename" string', { file, field: `${where}.filename` });
    const sentences = o.sentences;
    if (!Array.isArray(sentences) || sentences.length === 0) throw new UnimeError('has no "sentences" list', { file, field: `${where}.sentences` });
    const sub = typeof o.filepath === 'string' ? o.filepath : '';
    const at = images.length;
    images.push(path.resolve(root, sub, o.filename));
    sentences.forEach((s: unknown, j: number) => {
      const raw = (s as { raw?: unknown })?.raw;
      if (typeof raw !== 'string' || raw.trim() === '') throw new UnimeError('has no "raw" string', { file, field: `${where}.sentences[${j}].raw` });
      captions.push(raw.trim());
      link.push(at);
    });
  });
  return { file, format: 'karpathy', images, captions, captionImage: Int32Array.from(link) };
}

async function readTable(file: string, imageRoot?: string): Promise<RetrievalData> {
  const rows = await readAnnotationRows(file);
  const root = imageRoot ?? path.dirname(file);
  const index = new Map<string, number>();
  const images: string[] = [];
  const captions: string[] = [];
  const link: number[] = [];
  rows.forEach((row, i) => {
    const n = i + 1;
    const img = path.resolve(root, stringField(row, 'image', file, n));
    let at = index.get(img);
    if (at === undefined) {
      at = images.length;
      index.set(img, at);
      images.push(img);
    }
    let caps: unknown[];
    if (row.captions !== undefined) {
      let c = row.captions;
      // A csv cell holds the list as JSON text.
      if (typeof c === 'string') {
        try {
          c = JSON.parse(c);
        } catch {
          c = [c];
        }
      }
      if (!Array.isArray(c) || c.length === 0) throw new UnimeError(`row ${n}: "captions" must be a non-empty list of strings`, { file, field: 'captions', line: n });
      caps = c;
    } else if (row.caption !== undefined) caps = [row.caption];
    else throw new UnimeError(`row ${n} has neither "caption" nor "captions"`, { file, field: 'caption', line: n });
    for (const c of caps) {
      if (typeof c !== 'string' || c.trim() === '') throw new UnimeError(`row ${n}: a caption is not a non-empty string (${JSON.stringify(c)})`, { file, field: 'caption', line: n });
      captions.push(c.trim());
      link.push(at);
    }
  });
  return { file, format: 'table', images, captions, captionImage: Int32Array.from(link) };
}
