/**
 * The scene model of the synthetic benchmark: 1-4 shapes on a 2x2 grid of cells, each with a shape,
 * a colour and a size. Within a scene colours are distinct and shapes are distinct, so every object
 * is named uniquely by "<colour> <shape>" and a caption that swaps two objects' colours, shapes or
 * places is false for the scene (that is what makes the compositional distractors true negatives).
 * Relations come from the grid: objects in one row are left/right of each other, in one column
 * above/below. OOD: a fixed set of held-out colour-shape combinations appears only in OOD data.
 */
import type { Rng } from '../../src/runtime/rng.js';

export const SHAPES = ['circle', 'square', 'triangle', 'star'] as const;
export type Shape = (typeof SHAPES)[number];
export const COLOURS = ['red', 'green', 'blue', 'yellow', 'purple', 'orange'] as const;
export type Colour = (typeof COLOURS)[number];
export const SIZES = ['small', 'large'] as const;
export type Size = (typeof SIZES)[number];

export const COLOUR_RGB: Readonly<Record<Colour, readonly [number, number, number]>> = {
  red: [220, 40, 40],
  green: [40, 170, 60],
  blue: [40, 80, 220],
  yellow: [235, 210, 40],
  purple: [150, 60, 190],
  orange: [245, 140, 30],
};

/** Colour-shape combinations that never occur in training or IND evaluation data (one per shape). */
export const HELD_OUT_COMBOS: readonly (readonly [Colour, Shape])[] = [
  ['green', 'circle'],
  ['yellow', 'square'],
  ['blue', 'triangle'],
  ['red', 'star'],
];

export type Split = 'ind' | 'ood';

export function isHeldOut(colour: Colour, shape: Shape): boolean {
  return HELD_OUT_COMBOS.some(([c, s]) => c === colour && s === shape);
}

export interface SceneObject {
  shape: Shape;
  colour: Colour;
  size: Size;
  /** Grid cell 0..3: row = cell >> 1, column = cell & 1. */
  cell: number;
  /** Sub-cell jitter of the centre in pixels (at the 48 px reference size), for variety. */
  dx: number;
  dy: number;
}

export interface Scene {
  objects: SceneObject[];
}

export type Relation = 'left of' | 'right of' | 'above' | 'below';

/** Where `a` is relative to `b`, or null when they share neither a row nor a column. */
export function relation(a: SceneObject, b: SceneObject): Relation | null {
  const ra = a.cell >> 1, ca = a.cell & 1, rb = b.cell >> 1, cb = b.cell & 1;
  if (ra === rb && ca !== cb) return ca < cb ? 'left of' : 'right of';
  if (ca === cb && ra !== rb) return ra < rb ? 'above' : 'below';
  return null;
}

/**
 * Whether `a` is `r` of `b` read loosely: by column alone for left/right and by row alone for
 * above/below, so a diagonal neighbour up and to the left counts as both "left of" and "above".
 * Distractors are kept false under this reading too, so they are unambiguous to any reader.
 */
export function looseRelationHolds(a: SceneObject, b: SceneObject, r: Relation): boolean {
  const ra = a.cell >> 1, ca = a.cell & 1, rb = b.cell >> 1, cb = b.cell & 1;
  return r === 'left of' ? ca < cb : r === 'right of' ? ca > cb : r === 'above' ? ra < rb : ra > rb;
}

export function inverseRelation(r: Relation): Relation {
  return r === 'left of' ? 'right of' : r === 'right of' ? 'left of' : r === 'above' ? 'below' : 'above';
}

export function sceneHasHeldOut(scene: Scene): boolean {
  return scene.objects.some((o) => isHeldOut(o.colour, o.shape));
}

/** A scene is allowed in a split when IND scenes hold no held-out combination (OOD scenes may hold any). */
export function allowedIn(scene: Scene, split: Split): boolean {
  return split === 'ood' || !sceneHasHeldOut(scene);
}

export function cloneScene(scene: Scene): Scene {
  return { objects: scene.objects.map((o) => ({ ...o })) };
}

function pick<T>(rng: Rng, xs: readonly T[]): T {
  return xs[rng.int(xs.length)] as T;
}

/**
 * A random scene of `count` objects. Objects 0 and 1 always share a row or a column (so the pair
 * has a relation). IND: no held-out combination anywhere. OOD: object 0 is a held-out combination.
 */
export function randomScene(rng: Rng, split: Split, count: number): Scene {
  return drawScene(rng, split, count);
}

/**
 * A random scene of `count` objects drawn from all colour-shape combinations, held-out ones included
 * (about one object in six is held out, so a share of such scenes are OOD). Objects 0 and 1 share a
 * row or a column, as in {@link randomScene}.
 */
export function randomSceneAny(rng: Rng, count: number): Scene {
  return drawScene(rng, 'any', count);
}

/** At most one object per cell of the 2x2 grid. */
export const MAX_OBJECTS = 4;

function drawScene(rng: Rng, split: Split | 'any', count: number): Scene {
  if (count < 1 || count > MAX_OBJECTS) throw new RangeError(`randomScene: count must be 1..${MAX_OBJECTS}, got ${count}`);
  const shapes = rng.shuffle([...SHAPES]).slice(0, count);
  const colours = rng.shuffle([...COLOURS]);
  const chosen: Colour[] = [];
  if (split === 'ood') {
    const s0 = shapes[0] as Shape;
    const combo = HELD_OUT_COMBOS.find(([, s]) => s === s0) as readonly [Colour, Shape];
    chosen.push(combo[0]);
  }
  for (let i = chosen.length; i < count; i++) {
    const shape = shapes[i] as Shape;
    const c = colours.find((x) => !chosen.includes(x) && (split !== 'ind' || !isHeldOut(x, shape)));
    if (c === undefined) throw new Error('randomScene: no colour left (cannot happen with 6 colours and 4 shapes)');
    chosen.push(c);
  }
  const cell0 = rng.int(4);
  // The two cells sharing a row or column with cell0: flip the column bit or the row bit.
  const cell1 = rng.int(2) === 0 ? cell0 ^ 1 : cell0 ^ 2;
  const rest = rng.shuffle([0, 1, 2, 3].filter((c) => c !== cell0 && c !== cell1));
  const cells = [cell0, cell1, ...rest];
  const objects: SceneObject[] = [];
  for (let i = 0; i < count; i++) {
    objects.push({
      shape: shapes[i] as Shape,
      colour: chosen[i] as Colour,
      size: pick(rng, SIZES),
      cell: cells[i] as number,
      dx: rng.int(5) - 2,
      dy: rng.int(5) - 2,
    });
  }
  return { objects };
}

/** The fields in which two scenes with the same number of objects differ, per object index. */
export function sceneDiff(a: Scene, b: Scene): { index: number; field: 'shape' | 'colour' | 'size' | 'cell' }[] {
  const out: { index: number; field: 'shape' | 'colour' | 'size' | 'cell' }[] = [];
  if (a.objects.length !== b.objects.length) throw new RangeError('sceneDiff: scenes differ in object count');
  a.objects.forEach((oa, i) => {
    const ob = b.objects[i] as SceneObject;
    for (const f of ['shape', 'colour', 'size', 'cell'] as const) if (oa[f] !== ob[f]) out.push({ index: i, field: f });
  });
  return out;
}

/** Swap one attribute (colour, shape or place) between objects i and j. */
export function swapAttribute(scene: Scene, i: number, j: number, field: 'colour' | 'shape' | 'cell'): Scene {
  const s = cloneScene(scene);
  const a = s.objects[i] as SceneObject, b = s.objects[j] as SceneObject;
  if (field === 'colour') [a.colour, b.colour] = [b.colour, a.colour];
  else if (field === 'shape') [a.shape, b.shape] = [b.shape, a.shape];
  else {
    [a.cell, b.cell] = [b.cell, a.cell];
    [a.dx, b.dx] = [b.dx, a.dx];
    [a.dy, b.dy] = [b.dy, a.dy];
  }
  return s;
}
