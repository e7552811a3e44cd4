/**
 * The five synthetic tasks, one builder each, producing query/candidate examples with the correct
 * candidate first and the hard (compositional) distractors right after it. The same examples give
 * MMEB-eval rows (all candidates) and MMEB-train rows (positive = candidate 0, negative = candidate 1).
 *
 * | synthetic        | MMEB meta-task | MMEB analogue                      |
 * |------------------|----------------|------------------------------------|
 * | SynCls           | Classification | ImageNet-1K (image -> class label) |
 * | SynVQA           | VQA            | Visual7W / GQA (image + question -> answer) |
 * | SynRet-t2i       | Retrieval      | MSCOCO_t2i (caption -> image)      |
 * | SynRet-i2t       | Retrieval      | MSCOCO_i2t (image -> caption)      |
 * | SynGrd           | Grounding      | MSCOCO / RefCOCO (image + referring expression -> crop) |
 * Each has an `-OOD` twin built only from scenes holding a held-out colour-shape combination.
 */
import type { Rng } from '../../src/runtime/rng.js';
import {
  COLOURS, MAX_OBJECTS, SHAPES, allowedIn, cloneScene, isHeldOut, looseRelationHolds, randomScene, relation, swapAttribute,
  type Colour, type Relation, type Scene, type SceneObject, type Shape, type Split,
} from './scene.js';
import { cropCell, renderScene, type Image } from './render.js';
import { INSTR, NUMBER_WORDS, PARAPHRASES, classLabel, objectName, pairCaption, referringExpression } from './captions.js';

export const TASKS = ['SynCls', 'SynVQA', 'SynRet-t2i', 'SynRet-i2t', 'SynGrd'] as const;
export type TaskName = (typeof TASKS)[number];

export const TASK_INFO: Readonly<Record<TaskName, { metaTask: 'Classification' | 'VQA' | 'Retrieval' | 'Grounding'; mmebAnalogue: string }>> = {
  SynCls: { metaTask: 'Classification', mmebAnalogue: 'ImageNet-1K' },
  SynVQA: { metaTask: 'VQA', mmebAnalogue: 'Visual7W' },
  'SynRet-t2i': { metaTask: 'Retrieval', mmebAnalogue: 'MSCOCO_t2i' },
  'SynRet-i2t': { metaTask: 'Retrieval', mmebAnalogue: 'MSCOCO_i2t' },
  SynGrd: { metaTask: 'Grounding', mmebAnalogue: 'MSCOCO' },
};

/** Why a candidate is there, and what it depicts, so tests (and a false-negative filter) can check it. */
export type CandidateKind =
  | 'positive'
  | 'swap-colour' // objects 0 and 1 (or the target) exchange / change colour; nothing else differs
  | 'swap-shape'
  | 'swap-relation' // objects 0 and 1 exchange places: the relation is reversed
  | 'same-shape' // class label with the same shape, another colour
  | 'same-colour'
  | 'other-object' // another object of the same scene
  | 'other';

export interface CandidateMeta {
  kind: CandidateKind;
  /** The scene the candidate image or caption depicts (captions: objects 0 and 1 are described). */
  scene?: Scene;
  /** Grounding: the cell the crop was cut from. */
  cell?: number;
  /** Text answers and labels: the object they name, when they name one. */
  label?: string;
}

export interface Example {
  queryText: string;
  queryImage: string;
  candidates: { text: string; image: string; meta: CandidateMeta }[];
  /** Paraphrase group: rows with the same group describe the same scene (true false negatives). */
  group: number;
  queryScene: Scene;
  /** Caption template used (retrieval), for the paraphrase bookkeeping. */
  template?: number;
  /** What kind of query the row asks (VQA: which question), so an eval can score each kind apart. */
  queryKind?: string;
}

/** The four SynVQA questions, as `query_kind` in the annotations. */
export const VQA_QUERY_KINDS = ['colour-of-shape', 'shape-of-colour', 'relation', 'count'] as const;

/** Stores an image under a name and returns the path the parquet should hold. */
export type PutImage = (name: string, image: Image) => string;

export interface BuildContext {
  rng: Rng;
  split: Split;
  put: PutImage;
  /** Training data: include paraphrase duplicates. */
  train: boolean;
}

const LABEL_CANDIDATES = 10;
const RET_CANDIDATES = 8;
const VQA_CANDIDATES = 6;

function allCombos(split: Split): [Colour, Shape][] {
  const out: [Colour, Shape][] = [];
  for (const s of SHAPES) for (const c of COLOURS) if (split === 'ood' || !isHeldOut(c, s)) out.push([c, s]);
  return out;
}

function objectCount(rng: Rng): number {
  return 2 + rng.int(3);
}

export function buildClassification(ctx: BuildContext, row: number): Example {
  const { rng, split, put } = ctx;
  const scene = randomScene(rng, split, 1);
  const o = scene.objects[0] as SceneObject;
  const img = put(`${row}.png`, renderScene(scene));
  const label = classLabel(o);
  const pool = allCombos(split).filter(([c, s]) => !(c === o.colour && s === o.shape));
  const sameShape = rng.shuffle(pool.filter(([c, s]) => s === o.shape && c !== o.colour));
  const sameColour = rng.shuffle(pool.filter(([c, s]) => c === o.colour && s !== o.shape));
  const rest = rng.shuffle(pool.filter(([c, s]) => c !== o.colour && s !== o.shape));
  const hard: { c: Colour; s: Shape; kind: CandidateKind }[] = [];
  // Interleave the two hard kinds so both appear near the front.
  for (let i = 0; i < Math.max(sameShape.length, sameColour.length); i++) {
    const a = sameShape[i], b = sameColour[i];
    if (a) hard.push({ c: a[0], s: a[1], kind: 'same-shape' });
    if (b) hard.push({ c: b[0], s: b[1], kind: 'same-colour' });
  }
  const others = [...hard, ...rest.map(([c, s]) => ({ c, s, kind: 'other' as CandidateKind }))].slice(0, LABEL_CANDIDATES - 1);
  return {
    queryText: INSTR.cls,
    queryImage: img,
    queryScene: scene,
    group: row,
    candidates: [
      { text: label, image: '', meta: { kind: 'positive', label } },
      ...others.map((x) => ({ text: `${x.c} ${x.s}`, image: '', meta: { kind: x.kind, label: `${x.c} ${x.s}` } })),
    ],
  };
}

export function buildVqa(ctx: BuildContext, row: number): Example {
  const { rng, split, put } = ctx;
  const kind = rng.int(4);
  // Counting scenes hold 1..MAX_OBJECTS shapes (every count word offered is a possible answer, and
  // each occurs in training); the other questions need a pair, so 2..4.
  const scene = randomScene(rng, split, kind === 3 ? 1 + rng.int(MAX_OBJECTS) : objectCount(rng));
  const img = put(`${row}.png`, renderScene(scene));
  const objs = scene.objects;
  const a = objs[0] as SceneObject, b = objs[1] as SceneObject;
  // OOD questions are about object 0, the held-out combination; IND ones about any object.
  const target = split === 'ood' ? a : (objs[rng.int(objs.length)] as SceneObject);
  let question: string;
  let answer: string;
  let hard: { text: string; kind: CandidateKind; label?: string }[] = [];
  let fill: string[];
  const excluded: string[] = [];
  if (kind === 0) {
    question = `What color is the ${target.shape}?`;
    answer = target.colour;
    hard = objs.filter((o) => o !== target).map((o) => ({ text: o.colour, kind: 'other-object' as CandidateKind }));
    fill = [...COLOURS];
  } else if (kind === 1) {
    question = `What shape is the ${target.colour} object?`;
    answer = target.shape;
    hard = objs.filter((o) => o !== target).map((o) => ({ text: o.shape, kind: 'other-object' as CandidateKind }));
    fill = [...SHAPES];
  } else if (kind === 2) {
    const r = relation(a, b);
    const rel = r === 'left of' ? 'to the left of' : r === 'right of' ? 'to the right of' : (r as string);
    question = `What is ${rel} the ${objectName(b)}?`;
    answer = objectName(a);
    // b itself sits on the other side of the relation; a with b's colour is a swapped attribute.
    hard.push({ text: objectName(b), kind: 'swap-relation', label: objectName(b) });
    if (split === 'ood' || !isHeldOut(b.colour, a.shape)) hard.push({ text: `${b.colour} ${a.shape}`, kind: 'swap-colour', label: `${b.colour} ${a.shape}` });
    // Objects that a loose reader could also call "<rel> b" (diagonal neighbours) are left out entirely.
    for (const o of objs.slice(2)) {
      if (looseRelationHolds(o, b, r as Relation)) excluded.push(objectName(o));
      else hard.push({ text: objectName(o), kind: 'other-object', label: objectName(o) });
    }
    fill = allCombos(split).map(([c, s]) => `${c} ${s}`);
  } else {
    question = 'How many shapes are there?';
    answer = NUMBER_WORDS[objs.length - 1] as string;
    // Only counts a scene can have: "five" or "six" could never be right here, never occur in training,
    // and an embedding model that has not seen them can still rank them first.
    fill = NUMBER_WORDS.slice(0, MAX_OBJECTS);
  }
  const seen = new Set([answer, ...excluded]);
  const cands: { text: string; image: string; meta: CandidateMeta }[] = [{ text: answer, image: '', meta: { kind: 'positive', label: answer } }];
  for (const h of hard) {
    if (seen.has(h.text) || cands.length >= VQA_CANDIDATES) continue;
    seen.add(h.text);
    cands.push({ text: h.text, image: '', meta: h.label === undefined ? { kind: h.kind } : { kind: h.kind, label: h.label } });
  }
  for (const t of rng.shuffle(fill)) {
    if (seen.has(t) || cands.length >= VQA_CANDIDATES) continue;
    seen.add(t);
    cands.push({ text: t, image: '', meta: { kind: 'other', label: t } });
  }
  return { queryText: INSTR.vqa(question), queryImage: img, queryScene: scene, group: row, candidates: cands, queryKind: VQA_QUERY_KINDS[kind] };
}

/**
 * Whether "pair (0,1) of `described`" could be read as a true caption of `scene`: the same two objects
 * (colour, shape, size), with the relation read loosely (a diagonal neighbour up and to the left also
 * counts as "left of" and "above"), so that unrelated distractors are unambiguous to any reader.
 */
export function captionHolds(scene: Scene, described: Scene): boolean {
  const [da, db] = described.objects as [SceneObject, SceneObject];
  const r = relation(da, db);
  const find = (d: SceneObject) => scene.objects.find((o) => o.colour === d.colour && o.shape === d.shape && o.size === d.size);
  const a = find(da), b = find(db);
  return a !== undefined && b !== undefined && a !== b && r !== null && looseRelationHolds(a, b, r);
}

/** The compositional variants of a scene's pair, those allowed in the split. */
function swaps(scene: Scene, split: Split): { kind: CandidateKind; scene: Scene }[] {
  const out: { kind: CandidateKind; scene: Scene }[] = [];
  const c = swapAttribute(scene, 0, 1, 'colour');
  if (allowedIn(c, split)) out.push({ kind: 'swap-colour', scene: c });
  const s = swapAttribute(scene, 0, 1, 'shape');
  if (allowedIn(s, split)) out.push({ kind: 'swap-shape', scene: s });
  out.push({ kind: 'swap-relation', scene: swapAttribute(scene, 0, 1, 'cell') });
  return out;
}

/** A random scene of the split that the query's caption does not describe (and vice versa). */
function unrelatedScene(rng: Rng, split: Split, query: Scene): Scene {
  for (;;) {
    const s = randomScene(rng, split, objectCount(rng));
    if (!captionHolds(s, query) && !captionHolds(query, s)) return s;
  }
}

interface RetrievalBase {
  scene: Scene;
  group: number;
  template: number;
  image: string;
}

/** Scene, template and image of a retrieval row; in training, some rows repeat a recent row's scene in other words. */
function retrievalBase(ctx: BuildContext, row: number, previous: readonly RetrievalBase[]): RetrievalBase {
  const { rng, split, put } = ctx;
  if (ctx.train && previous.length > 0 && rng.uniform() < 0.25) {
    const src = previous[previous.length - 1 - rng.int(Math.min(8, previous.length))] as RetrievalBase;
    // A paraphrase: a template no row of the group has used yet (else a fresh scene).
    const used = new Set(previous.filter((p) => p.group === src.group).map((p) => p.template));
    const free = Array.from({ length: PARAPHRASES }, (_, t) => t).filter((t) => !used.has(t));
    if (free.length > 0) return { scene: src.scene, group: src.group, template: free[rng.int(free.length)] as number, image: src.image };
  }
  const scene = randomScene(rng, split, objectCount(rng));
  return { scene, group: row, template: rng.int(PARAPHRASES), image: put(`${row}.png`, renderScene(scene)) };
}

export function buildRetrievalT2i(ctx: BuildContext, row: number, previous: RetrievalBase[]): Example {
  const { rng, split, put } = ctx;
  const base = retrievalBase(ctx, row, previous);
  previous.push(base);
  const caption = pairCaption(base.scene, base.template);
  const cands: Example['candidates'] = [{ text: INSTR.t2iTarget, image: base.image, meta: { kind: 'positive', scene: base.scene } }];
  const variants = swaps(base.scene, split);
  if (ctx.train) rng.shuffle(variants);
  for (const v of variants) cands.push({ text: INSTR.t2iTarget, image: put(`${row}-${v.kind}.png`, renderScene(v.scene)), meta: { kind: v.kind, scene: v.scene } });
  for (let k = 0; !ctx.train && cands.length < RET_CANDIDATES; k++) {
    const s = unrelatedScene(rng, split, base.scene);
    cands.push({ text: INSTR.t2iTarget, image: put(`${row}-other${k}.png`, renderScene(s)), meta: { kind: 'other', scene: s } });
  }
  return { queryText: INSTR.t2iQuery(caption), queryImage: '', queryScene: base.scene, group: base.group, template: base.template, candidates: cands };
}

export function buildRetrievalI2t(ctx: BuildContext, row: number, previous: RetrievalBase[]): Example {
  const { rng, split } = ctx;
  const base = retrievalBase(ctx, row, previous);
  previous.push(base);
  const t = base.template;
  const cands: Example['candidates'] = [{ text: pairCaption(base.scene, t), image: '', meta: { kind: 'positive', scene: base.scene } }];
  const variants = swaps(base.scene, split);
  if (ctx.train) rng.shuffle(variants);
  for (const v of variants) cands.push({ text: pairCaption(v.scene, t), image: '', meta: { kind: v.kind, scene: v.scene } });
  while (!ctx.train && cands.length < RET_CANDIDATES) {
    const s = unrelatedScene(rng, split, base.scene);
    const text = pairCaption(s, rng.int(PARAPHRASES));
    // an unrelated scene can still read like a candidate already there (few OOD combinations): draw again
    if (cands.some((c) => c.text === text)) continue;
    cands.push({ text, image: '', meta: { kind: 'other', scene: s } });
  }
  return { queryText: INSTR.i2tQuery, queryImage: base.image, queryScene: base.scene, group: base.group, template: t, candidates: cands };
}

export function buildGrounding(ctx: BuildContext, row: number): Example {
  const { rng, split, put } = ctx;
  const scene = randomScene(rng, split, objectCount(rng));
  const ti = split === 'ood' ? 0 : rng.int(scene.objects.length);
  const target = scene.objects[ti] as SceneObject;
  const full = renderScene(scene);
  const img = put(`${row}.png`, full);
  const crop = (s: Scene, name: string, image = renderScene(s)) => put(`${row}-${name}.png`, cropCell(image, s.objects[ti]!.cell));
  const cands: Example['candidates'] = [
    { text: INSTR.grdTarget, image: put(`${row}-target.png`, cropCell(full, target.cell)), meta: { kind: 'positive', scene, cell: target.cell } },
  ];
  // The referred object alone, recoloured / reshaped in place: differs in exactly one attribute.
  const used = new Set(scene.objects.map((o) => o.colour));
  const colours = rng.shuffle(COLOURS.filter((c) => c !== target.colour && !used.has(c) && (split === 'ood' || !isHeldOut(c, target.shape))));
  const c0 = colours[0];
  if (c0 !== undefined) {
    const s = cloneScene(scene);
    s.objects[ti]!.colour = c0;
    cands.push({ text: INSTR.grdTarget, image: crop(s, 'swap-colour'), meta: { kind: 'swap-colour', scene: s, cell: target.cell } });
  }
  const usedShapes = new Set(scene.objects.map((o) => o.shape));
  const shapes = rng.shuffle(SHAPES.filter((x) => x !== target.shape && !usedShapes.has(x) && (split === 'ood' || !isHeldOut(target.colour, x))));
  const s0 = shapes[0];
  if (s0 !== undefined) {
    const s = cloneScene(scene);
    s.objects[ti]!.shape = s0;
    cands.push({ text: INSTR.grdTarget, image: crop(s, 'swap-shape'), meta: { kind: 'swap-shape', scene: s, cell: target.cell } });
  }
  scene.objects.forEach((o, j) => {
    if (j === ti) return;
    cands.push({ text: INSTR.grdTarget, image: put(`${row}-obj${j}.png`, cropCell(full, o.cell)), meta: { kind: 'other-object', scene, cell: o.cell } });
  });
  return { queryText: INSTR.grdQuery(referringExpression(scene, ti)), queryImage: img, queryScene: scene, group: row, candidates: cands };
}

/** Build `n` examples of a task. */
export function buildTask(task: TaskName, ctx: BuildContext, n: number): Example[] {
  const out: Example[] = [];
  const previous: RetrievalBase[] = [];
  for (let row = 0; row < n; row++) {
    switch (task) {
      case 'SynCls':
        out.push(buildClassification(ctx, row));
        break;
      case 'SynVQA':
        out.push(buildVqa(ctx, row));
        break;
      case 'SynRet-t2i':
        out.push(buildRetrievalT2i(ctx, row, previous));
        break;
      case 'SynRet-i2t':
        out.push(buildRetrievalI2t(ctx, row, previous));
        break;
      case 'SynGrd':
        out.push(buildGrounding(ctx, row));
        break;
    }
  }
  return out;
}
