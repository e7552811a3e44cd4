/**
 * Captions, paraphrases, questions and referring expressions for scenes. A caption describes the
 * pair (object 0, object 1) and their relation; its paraphrases say the same thing in other words
 * (they are true positives for each other, hence false negatives when met as in-batch negatives).
 */
import { inverseRelation, relation, type Relation, type Scene, type SceneObject } from './scene.js';

export function objectName(o: SceneObject): string {
  return `${o.colour} ${o.shape}`;
}

function np(o: SceneObject): string {
  return `a ${o.size} ${o.colour} ${o.shape}`;
}

export function relWords(r: Relation): string {
  return r === 'left of' ? 'to the left of' : r === 'right of' ? 'to the right of' : r;
}

function sideWords(r: Relation): string {
  // "b is <r> a" said from a's point of view: "with b on its left"
  return r === 'left of' ? 'on its left' : r === 'right of' ? 'on its right' : r === 'above' ? 'above it' : 'below it';
}

/** How many paraphrase templates {@link pairCaption} has. */
export const PARAPHRASES = 4;

/** Caption of the scene's pair (0, 1) in paraphrase template `t` (0..PARAPHRASES-1). */
export function pairCaption(scene: Scene, t: number): string {
  const a = scene.objects[0] as SceneObject, b = scene.objects[1] as SceneObject;
  const r = relation(a, b);
  if (r === null) throw new RangeError('pairCaption: objects 0 and 1 have no relation');
  switch (t % PARAPHRASES) {
    case 0:
      return `${np(a)} ${relWords(r)} ${np(b)}`;
    case 1:
      return `${np(b)} ${relWords(inverseRelation(r))} ${np(a)}`;
    case 2:
      return `there is ${np(a)} with ${np(b)} ${sideWords(inverseRelation(r))}`;
    default:
      return `a picture showing ${np(b)} and, ${relWords(r)} it, ${np(a)}`;
  }
}

/** A caption of one object (size, colour, shape) in template `t` (0..PARAPHRASES-1). */
export function objectCaption(o: SceneObject, t: number): string {
  switch (t % PARAPHRASES) {
    case 0:
      return np(o);
    case 1:
      return `a picture of ${np(o)}`;
    case 2:
      return `there is ${np(o)}`;
    default:
      return `a picture showing ${np(o)}`;
  }
}

/** A one-object scene's class label. */
export function classLabel(o: SceneObject): string {
  return objectName(o);
}

/** A referring expression naming object `i` uniquely (by colour and shape), with a relation when it has one. */
export function referringExpression(scene: Scene, i: number): string {
  const o = scene.objects[i] as SceneObject;
  for (let j = 0; j < scene.objects.length; j++) {
    if (j === i) continue;
    const other = scene.objects[j] as SceneObject;
    const r = relation(o, other);
    if (r !== null) return `the ${objectName(o)} ${relWords(r)} the ${objectName(other)}`;
  }
  return `the ${objectName(o)}`;
}

export const NUMBER_WORDS = ['one', 'two', 'three', 'four', 'five', 'six'] as const;

// Instructions, worded as MMEB's (VLM2Vec's) for the corresponding real datasets.
export const IMAGE_TOKEN = '<|image_1|>';
export const INSTR = {
  cls: `${IMAGE_TOKEN}\nRepresent the given image for classification`,
  vqa: (q: string) => `${IMAGE_TOKEN}\nRepresent the given image with the following question: ${q}`,
  t2iQuery: (c: string) => `Find me an everyday image that matches the given caption: ${c}`,
  t2iTarget: `${IMAGE_TOKEN}\nRepresent the given image.`,
  i2tQuery: `${IMAGE_TOKEN}\nFind an image caption describing the given everyday image.`,
  grdQuery: (e: string) => `${IMAGE_TOKEN}\nSelect the portion of the image that isolates the object labeled as "${e}"`,
  grdTarget: `${IMAGE_TOKEN}\nRepresent the given cropped image of the object`,
};

/** Where a grid cell is, in words the tiny tokenizer knows: "above on the left" ... "below on the right". */
export function placeWords(cell: number): string {
  return `${cell >> 1 === 0 ? 'above' : 'below'} on the ${(cell & 1) === 0 ? 'left' : 'right'}`;
}

/**
 * A long caption naming every object of the scene (size, colour, shape, place; in reading order of the
 * grid) and then the relation of the pair (0, 1), e.g. "a picture showing three shapes: a small red
 * circle above on the left, a large blue square above on the right and a small green star below on the
 * left. the red circle is to the left of the blue square."
 */
export function longCaption(scene: Scene): string {
  const objs = [...scene.objects].sort((x, y) => x.cell - y.cell);
  const parts = objs.map((o) => `${np(o)} ${placeWords(o.cell)}`);
  const list = parts.length === 1 ? parts[0]! : `${parts.slice(0, -1).join(', ')} and ${parts[parts.length - 1]!}`;
  const n = scene.objects.length;
  let text = `a picture showing ${NUMBER_WORDS[n - 1]} ${n === 1 ? 'shape' : 'shapes'}: ${list}.`;
  if (n >= 2) {
    const a = scene.objects[0] as SceneObject, b = scene.objects[1] as SceneObject;
    const r = relation(a, b);
    if (r !== null) text += ` the ${objectName(a)} is ${relWords(r)} the ${objectName(b)}.`;
  }
  return text;
}
