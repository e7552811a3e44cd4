/**
 * CLIP-side data from the synthetic scenes (see tools/synth/README.md):
 *
 *   image-text/{train,test}.parquet     image, caption, neg_caption, long_caption, key, ood   (image paths relative to image-text/)
 *   image-text/images/{train,test}/*.png
 *   suites/retrieval/test.jsonl         image (relative to the file), captions: two paraphrases
 *   suites/zeroshot/<colour>_<shape>/*.png, classnames.txt, templates.txt   (ImageFolder, 24 classes)
 *   suites/sugarcrepe/<subset>.json     id -> {filename, caption, negative_caption}; images in suites/sugarcrepe/images/
 *
 * Train scenes hold no held-out colour-shape combination; test, retrieval, zero-shot and SugarCrepe
 * draw from all combinations. Test scenes are kept mutually unambiguous: no test image's pair caption
 * (relations read loosely) is true of another test image, so retrieval over them has one right answer.
 */
import { parquetWriteBuffer } from 'hyparquet-writer';
import type { Rng } from '../../src/runtime/rng.js';
import { SUGARCREPE_SUBSETS, type SugarcrepeSubset } from '../../src/eval/sugarcrepe.js';
import { encodePng } from './encode.js';
import { renderScene } from './render.js';
import {
  COLOURS, SHAPES, SIZES as OBJECT_SIZES, cloneScene, isHeldOut, looseRelationHolds, randomScene, randomSceneAny, relation, sceneHasHeldOut,
  type Colour, type Relation, type Scene, type SceneObject, type Shape, type Size, type Split,
} from './scene.js';
import { PARAPHRASES, longCaption, objectCaption, pairCaption, relWords } from './captions.js';
import { captionHolds } from './tasks.js';

/** train: pair scenes (2-4 objects, the pair caption); single: single-object scenes after them. */
export const CLIP_SIZES = {
  tiny: { train: 64, single: 16, test: 32, zeroshotPerClass: 2, sugarcrepe: 8 },
  small: { train: 512, single: 512, test: 128, zeroshotPerClass: 5, sugarcrepe: 40 },
  medium: { train: 4096, single: 2048, test: 512, zeroshotPerClass: 20, sugarcrepe: 200 },
} as const;

export const IMAGE_TEXT_COLUMNS = ['image', 'caption', 'neg_caption', 'long_caption', 'key', 'ood'] as const;
export const ZEROSHOT_TEMPLATES = ['a {}.', 'a picture of a {}.', 'an image with a {}.', 'a picture showing a {}.'] as const;

export interface ImageTextRow {
  image: string;
  caption: string;
  /** The caption with one object's shape replaced: false for the image (a hard negative). */
  neg_caption: string;
  long_caption: string;
  key: string;
  ood: boolean;
}

export interface ClipFile {
  path: string;
  data: string | Uint8Array;
}

export interface ClipSummary {
  train: number;
  test: number;
  testOod: number;
  retrievalImages: number;
  retrievalCaptions: number;
  zeroshotClasses: number;
  zeroshotImages: number;
  heldOutClasses: string[];
  sugarcrepe: Record<SugarcrepeSubset, number>;
  sugarcrepeImages: number;
}

const STRING = { type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' } as const;

/** The image-text parquet: five string columns and a boolean `ood`. */
export function encodeImageTextParquet(rows: readonly ImageTextRow[]): Uint8Array {
  const buf = parquetWriteBuffer({
    columnData: [
      { name: 'image', data: rows.map((r) => r.image) },
      { name: 'caption', data: rows.map((r) => r.caption) },
      { name: 'neg_caption', data: rows.map((r) => r.neg_caption) },
      { name: 'long_caption', data: rows.map((r) => r.long_caption) },
      { name: 'key', data: rows.map((r) => r.key) },
      { name: 'ood', data: rows.map((r) => r.ood) },
    ],
    schema: [
      { name: 'schema', num_children: 6 },
      { name: 'image', ...STRING },
      { name: 'caption', ...STRING },
      { name: 'neg_caption', ...STRING },
      { name: 'long_caption', ...STRING },
      { name: 'key', ...STRING },
      { name: 'ood', type: 'BOOLEAN', repetition_type: 'OPTIONAL' },
    ],
    createdBy: 'unime synthetic generator',
  });
  return new Uint8Array(buf);
}

const pad = (i: number) => String(i).padStart(5, '0');
const png = (scene: Scene) => {
  const img = renderScene(scene);
  return encodePng(img.width, img.height, img.data);
};
const objectCount = (rng: Rng) => 2 + rng.int(3);

/**
 * The pair caption (template `t`) with object 0's or 1's shape replaced by one neither has: false for
 * the scene, since colours are unique in a scene and the only object of that colour has another shape.
 * Only the shape word differs from the true caption, so it can be told apart by shape alone. IND
 * (training) captions never name a held-out combination.
 */
export function shapeReplacedCaption(rng: Rng, scene: Scene, t: number, split: Split): string {
  const edited = cloneScene(scene);
  const i = rng.int(2);
  const o = edited.objects[i] as SceneObject;
  const other = edited.objects[1 - i] as SceneObject;
  o.shape = replacementShape(rng, o, [other.shape], split);
  return pairCaption(edited, t);
}

/**
 * Another shape for object `o` in a hard-negative caption: not its own, none in `avoid` (the scene's
 * other shapes), and in IND (training) data never a held-out colour-shape combination.
 */
export function replacementShape(rng: Rng, o: SceneObject, avoid: readonly Shape[], split: Split): Shape {
  return pick(rng, SHAPES.filter((sh) => sh !== o.shape && !avoid.includes(sh) && (split === 'ood' || !isHeldOut(o.colour, sh))));
}

/** Whether two scenes' pair captions could be confused: either is (loosely) true of the other. */
function ambiguous(a: Scene, b: Scene): boolean {
  return captionHolds(a, b) || captionHolds(b, a);
}

export interface ClipRngs {
  train: Rng;
  test: Rng;
  /** The hard-negative captions (their own stream: the images and captions do not depend on it). */
  negatives: Rng;
  /** The single-object training pairs. */
  single: Rng;
  retrieval: Rng;
  zeroshot: Rng;
  sugarcrepe: Rng;
}

/** Build every CLIP-side file (paths relative to the output root) and a summary for the manifest. */
export function buildClipData(rngs: ClipRngs, size: (typeof CLIP_SIZES)[keyof typeof CLIP_SIZES]): { files: ClipFile[]; summary: ClipSummary } {
  const files: ClipFile[] = [];

  // Image-text pairs. Train: IND scenes only (paraphrase template drawn per row).
  const train: ImageTextRow[] = [];
  for (let i = 0; i < size.train; i++) {
    const scene = randomScene(rngs.train, 'ind', objectCount(rngs.train));
    const image = `images/train/${pad(i)}.png`;
    files.push({ path: `image-text/${image}`, data: png(scene) });
    const t = rngs.train.int(PARAPHRASES);
    train.push({ image, caption: pairCaption(scene, t), neg_caption: shapeReplacedCaption(rngs.negatives, scene, t, 'ind'), long_caption: longCaption(scene), key: `synth-train-${pad(i)}`, ood: false });
  }
  // Single-object scenes (object-centric pairs, as CLIP-style pretraining data has): one object's
  // size, colour and shape; its own random stream, so the pair rows above do not depend on it.
  // Without them the tower learnt colour and hardly shape: in a scene of 2-4 objects with distinct
  // colours, the colours alone tell a batch's captions apart (zero-shot top-1 over the 24 classes 22 %,
  // about what colour alone gives; 73 % with them).
  for (let i = 0; i < size.single; i++) {
    const r = rngs.single;
    const scene = randomScene(r, 'ind', 1);
    const o = scene.objects[0] as SceneObject;
    const n = size.train + i;
    const image = `images/train/${pad(n)}.png`;
    files.push({ path: `image-text/${image}`, data: png(scene) });
    const t = r.int(PARAPHRASES);
    const neg = { ...o, shape: replacementShape(rngs.negatives, o, [], 'ind') };
    train.push({ image, caption: objectCaption(o, t), neg_caption: objectCaption(neg, t), long_caption: longCaption(scene), key: `synth-train-${pad(n)}`, ood: false });
  }
  files.push({ path: 'image-text/train.parquet', data: encodeImageTextParquet(train) });

  // Test: all combinations (so a share holds a held-out one), mutually unambiguous scenes.
  const test: ImageTextRow[] = [];
  const testScenes: Scene[] = [];
  for (let i = 0; i < size.test; i++) {
    let scene: Scene;
    do scene = randomSceneAny(rngs.test, objectCount(rngs.test));
    while (testScenes.some((s) => ambiguous(s, scene)));
    testScenes.push(scene);
    const image = `images/test/${pad(i)}.png`;
    files.push({ path: `image-text/${image}`, data: png(scene) });
    const t = rngs.test.int(PARAPHRASES);
    test.push({ image, caption: pairCaption(scene, t), neg_caption: shapeReplacedCaption(rngs.negatives, scene, t, 'ood'), long_caption: longCaption(scene), key: `synth-test-${pad(i)}`, ood: sceneHasHeldOut(scene) });
  }
  files.push({ path: 'image-text/test.parquet', data: encodeImageTextParquet(test) });

  // Retrieval suite over the test images: two distinct paraphrases per image.
  const retrieval = testScenes.map((scene, i) => {
    const t0 = rngs.retrieval.int(PARAPHRASES);
    const t1 = (t0 + 1 + rngs.retrieval.int(PARAPHRASES - 1)) % PARAPHRASES;
    return JSON.stringify({ image: `../../image-text/${test[i]!.image}`, captions: [pairCaption(scene, t0), pairCaption(scene, t1)] });
  });
  files.push({ path: 'suites/retrieval/test.jsonl', data: retrieval.map((l) => l + '\n').join('') });

  // Zero-shot classification: one class per colour-shape combination, single-object images.
  const classes: { dir: string; name: string; colour: Colour; shape: Shape }[] = [];
  for (const colour of COLOURS) for (const shape of SHAPES) classes.push({ dir: `${colour}_${shape}`, name: `${colour} ${shape}`, colour, shape });
  classes.sort((a, b) => (a.dir < b.dir ? -1 : a.dir > b.dir ? 1 : 0));
  for (const c of classes) {
    for (let j = 0; j < size.zeroshotPerClass; j++) {
      const r = rngs.zeroshot;
      const obj: SceneObject = { shape: c.shape, colour: c.colour, size: OBJECT_SIZES[r.int(2)] as Size, cell: r.int(4), dx: r.int(5) - 2, dy: r.int(5) - 2 };
      files.push({ path: `suites/zeroshot/${c.dir}/${pad(j)}.png`, data: png({ objects: [obj] }) });
    }
  }
  files.push({ path: 'suites/zeroshot/classnames.txt', data: classes.map((c) => c.name + '\n').join('') });
  files.push({ path: 'suites/zeroshot/templates.txt', data: ZEROSHOT_TEMPLATES.map((t) => t + '\n').join('') });

  // SugarCrepe: one pool of scenes (images/), each subset edits the pair caption of every scene.
  const pool: Scene[] = [];
  for (let i = 0; i < size.sugarcrepe; i++) {
    const scene = randomSceneAny(rngs.sugarcrepe, objectCount(rngs.sugarcrepe));
    pool.push(scene);
    files.push({ path: `suites/sugarcrepe/images/${pad(i)}.png`, data: png(scene) });
  }
  const counts = {} as Record<SugarcrepeSubset, number>;
  for (const subset of SUGARCREPE_SUBSETS) {
    const rng = rngs.sugarcrepe.fork(subset);
    const out: Record<string, { filename: string; caption: string; negative_caption: string }> = {};
    pool.forEach((scene, i) => {
      const { caption, negative } = sugarcrepePair(rng, scene, subset);
      out[String(i)] = { filename: `${pad(i)}.png`, caption, negative_caption: negative };
    });
    counts[subset] = pool.length;
    files.push({ path: `suites/sugarcrepe/${subset}.json`, data: JSON.stringify(out, null, 1) + '\n' });
  }

  const heldOutClasses = classes.filter((c) => isHeldOut(c.colour, c.shape)).map((c) => c.name);
  return {
    files,
    summary: {
      train: train.length,
      test: test.length,
      testOod: test.filter((r) => r.ood).length,
      retrievalImages: testScenes.length,
      retrievalCaptions: 2 * testScenes.length,
      zeroshotClasses: classes.length,
      zeroshotImages: classes.length * size.zeroshotPerClass,
      heldOutClasses,
      sugarcrepe: counts,
      sugarcrepeImages: pool.length,
    },
  };
}

interface Phrase {
  size?: Size;
  colour: Colour;
  shape: Shape;
}

/** "a [size] colour shape <relation> a [size] colour shape [and a colour shape]". */
function phrase(a: Phrase, r: Relation, b: Phrase, extra?: Phrase): string {
  const np = (p: Phrase) => `a ${p.size ? p.size + ' ' : ''}${p.colour} ${p.shape}`;
  return `${np(a)} ${relWords(r)} ${np(b)}${extra ? ` and ${np(extra)}` : ''}`;
}

function pick<T>(rng: Rng, xs: readonly T[]): T {
  return xs[rng.int(xs.length)] as T;
}

/**
 * A SugarCrepe pair for the scene's pair (0, 1): the true caption "a red circle to the left of a blue
 * square" (no sizes), and the subset's edit of it, which is false for the scene (colours and shapes are
 * distinct within a scene, so a swapped or replaced colour/shape names no object there):
 * swap_att swaps the two colours, swap_obj the two shapes; replace_att / replace_obj give one object
 * a colour / shape neither has; replace_rel a relation that does not hold even read loosely;
 * add_att adds the wrong size to one object; add_obj adds an object the scene does not hold.
 */
export function sugarcrepePair(rng: Rng, scene: Scene, subset: SugarcrepeSubset): { caption: string; negative: string } {
  const a = scene.objects[0] as SceneObject, b = scene.objects[1] as SceneObject;
  const r = relation(a, b);
  if (r === null) throw new RangeError('sugarcrepePair: objects 0 and 1 have no relation');
  const pa: Phrase = { colour: a.colour, shape: a.shape }, pb: Phrase = { colour: b.colour, shape: b.shape };
  const caption = phrase(pa, r, pb);
  const first = rng.int(2) === 0;
  let negative: string;
  switch (subset) {
    case 'swap_att':
      negative = phrase({ ...pa, colour: b.colour }, r, { ...pb, colour: a.colour });
      break;
    case 'swap_obj':
      negative = phrase({ ...pa, shape: b.shape }, r, { ...pb, shape: a.shape });
      break;
    case 'replace_att': {
      const c = pick(rng, COLOURS.filter((x) => x !== a.colour && x !== b.colour));
      negative = first ? phrase({ ...pa, colour: c }, r, pb) : phrase(pa, r, { ...pb, colour: c });
      break;
    }
    case 'replace_obj': {
      const s = pick(rng, SHAPES.filter((x) => x !== a.shape && x !== b.shape));
      negative = first ? phrase({ ...pa, shape: s }, r, pb) : phrase(pa, r, { ...pb, shape: s });
      break;
    }
    case 'replace_rel': {
      const rels: Relation[] = ['left of', 'right of', 'above', 'below'];
      negative = phrase(pa, pick(rng, rels.filter((x) => !looseRelationHolds(a, b, x))), pb);
      break;
    }
    case 'add_att': {
      const wrong = (o: SceneObject): Size => (o.size === 'small' ? 'large' : 'small');
      negative = first ? phrase({ ...pa, size: wrong(a) }, r, pb) : phrase(pa, r, { ...pb, size: wrong(b) });
      break;
    }
    case 'add_obj': {
      const absent: Phrase[] = [];
      for (const colour of COLOURS) for (const shape of SHAPES) {
        // an object the scene lacks, sharing neither colour nor shape with the described pair
        if (colour === a.colour || colour === b.colour || shape === a.shape || shape === b.shape) continue;
        if (!scene.objects.some((o) => o.colour === colour && o.shape === shape)) absent.push({ colour, shape });
      }
      negative = phrase(pa, r, pb, pick(rng, absent));
      break;
    }
  }
  return { caption, negative };
}
