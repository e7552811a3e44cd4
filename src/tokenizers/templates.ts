import { UnimeError } from '../errors.js';
import type { Tokenizer } from './types.js';

export type BackboneName = 'phi3.5-v' | 'llava-1.6-mistral' | 'llava-onevision' | 'qwen2-vl';

/** Where the input text goes in a text prompt. */
export const SENTENCE_SLOT = '<sent>';

export interface PromptTemplate {
  backbone: BackboneName;
  /** Prompt for a text input; SENTENCE_SLOT marks where the text goes. */
  text: string;
  /** Prompt for an image input; holds `imageMarker` once. */
  image: string;
  /** How one image is written inside a prompt for this backbone. */
  imageMarker: string;
  /**
   * The vocabulary token that stands for one image position after expansion, or null where the
   * processor writes negative ids instead (Phi-3.5-V: image k fills its positions with -k).
   */
  imageToken: string | null;
  /** Whether the UniME authors published this prompt (false: our choice, a recipe field may override). */
  published: boolean;
  note: string;
}

const QWEN_VISION = '<|vision_start|><|image_pad|><|vision_end|>';

/**
 * UniME prompts (REFERENCE.md). LLaVA-OneVision and Qwen2-VL have no published UniME prompt: they
 * use the Qwen chat format with the same instruction, without a system turn, and the same trailing
 * space before the end-of-turn token as the Phi-3.5-V prompt.
 */
const TEMPLATES: Record<BackboneName, PromptTemplate> = {
  'phi3.5-v': {
    backbone: 'phi3.5-v',
    text: '<|user|>\n<sent>\nSummary above sentence in one word: <|end|>\n<|assistant|>\n',
    image: '<|user|>\n<|image_1|>\nSummary above image in one word: <|end|>\n<|assistant|>\n',
    imageMarker: '<|image_1|>',
    imageToken: null,
    published: true,
    note: 'UniME paper / DeepGlint-AI UniME inference code',
  },
  'llava-1.6-mistral': {
    backbone: 'llava-1.6-mistral',
    text: '[INST] <sent>\nSummary above sentence in one word: [/INST]',
    image: '[INST] <image>\nSummary above image in one word: [/INST]',
    imageMarker: '<image>',
    imageToken: '<image>',
    published: true,
    note: 'UniME paper / DeepGlint-AI UniME inference code',
  },
  'llava-onevision': {
    backbone: 'llava-onevision',
    text: '<|im_start|>user\n<sent>\nSummary above sentence in one word: <|im_end|>\n<|im_start|>assistant\n',
    image: '<|im_start|>user\n<image>\nSummary above image in one word: <|im_end|>\n<|im_start|>assistant\n',
    imageMarker: '<image>',
    imageToken: '<image>',
    published: false,
    note: 'not published for UniME: Qwen chat format chosen here; LLaVA-OneVision writes an image as <image>',
  },
  'qwen2-vl': {
    backbone: 'qwen2-vl',
    text: '<|im_start|>user\n<sent>\nSummary above sentence in one word: <|im_end|>\n<|im_start|>assistant\n',
    image: `<|im_start|>user\n${QWEN_VISION}\nSummary above image in one word: <|im_end|>\n<|im_start|>assistant\n`,
    imageMarker: QWEN_VISION,
    imageToken: '<|image_pad|>',
    published: false,
    note: 'not published for UniME (UniME-V2 uses Qwen2-VL): Qwen chat format chosen here',
  },
};

export const BACKBONE_NAMES = Object.keys(TEMPLATES) as BackboneName[];

export function getPromptTemplate(name: string): PromptTemplate {
  const t = (TEMPLATES as Record<string, PromptTemplate | undefined>)[name];
  if (t === undefined) {
    throw new UnimeError(`unknown prompt template "${name}"`, {
      field: 'template',
      fix: `use one of: ${BACKBONE_NAMES.join(', ')}`,
    });
  }
  return t;
}

/**
 * One user turn followed by the assistant's generation prompt, in the backbone's chat format (as its
 * chat template renders a single user message with add_generation_prompt, no system turn). The UniME
 * prompts are this with the instruction `<sent>\nSummary above sentence in one word: ` (or the image
 * marker and `Summary above image in one word: `); MMEB instructions go through it after
 * convertImageMarkers().
 */
export function chatPrompt(backbone: BackboneName, userContent: string): string {
  switch (getPromptTemplate(backbone).backbone) {
    case 'phi3.5-v':
      return `<|user|>\n${userContent}<|end|>\n<|assistant|>\n`;
    case 'llava-1.6-mistral':
      return `[INST] ${userContent}[/INST]`;
    case 'llava-onevision':
    case 'qwen2-vl':
      return `<|im_start|>user\n${userContent}<|im_end|>\n<|im_start|>assistant\n`;
  }
}

/** The UniME prompt for a text input. */
export function textPrompt(template: PromptTemplate | BackboneName, text: string): string {
  const t = typeof template === 'string' ? getPromptTemplate(template) : template;
  return t.text.replace(SENTENCE_SLOT, () => text);
}

/**
 * The UniME prompt for an image input. An image+text input is embedded as the sum of its image and
 * text embeddings (UniME), so it takes one prompt of each kind.
 */
export function imagePrompt(template: PromptTemplate | BackboneName): string {
  return (typeof template === 'string' ? getPromptTemplate(template) : template).image;
}

/** Every way an image is written in MMEB data and in the supported backbones' prompts. */
const ANY_IMAGE_MARKER = /<\|vision_start\|><\|image_pad\|><\|vision_end\|>|<\|image_\d+\|>|<image>/g;

/**
 * Rewrite the image markers in a text (MMEB instructions are written for Phi-3.5-V: `<|image_1|>`)
 * into the backbone's form: `<|image_k|>` (numbered in order) for Phi-3.5-V, `<image>` for LLaVA,
 * `<|vision_start|><|image_pad|><|vision_end|>` for Qwen2-VL.
 */
export function convertImageMarkers(text: string, backbone: BackboneName): string {
  let k = 0;
  return text.replace(ANY_IMAGE_MARKER, () => {
    k++;
    if (backbone === 'phi3.5-v') return `<|image_${k}|>`;
    return getPromptTemplate(backbone).imageMarker;
  });
}

/** Replace every image marker of any supported form by `marker` (an assembly's own image token). */
export function replaceImageMarkers(text: string, marker: string): string {
  return text.replace(ANY_IMAGE_MARKER, () => marker);
}

/** Count of image markers of any supported form in a text. */
export function countImageMarkers(text: string): number {
  return (text.match(ANY_IMAGE_MARKER) ?? []).length;
}

export interface ExpandedIds {
  ids: number[];
  /** For each image, the positions (indices into ids) its features go to. */
  imagePositions: number[][];
}

/**
 * Replace each occurrence of imageTokenId by `counts[k]` copies for the k-th image, as the LLaVA-NeXT /
 * LLaVA-OneVision / Qwen2-VL processors do. `counts` comes from the vision side (patches x crops,
 * merged Qwen2-VL patches, ...); a single number applies to every image.
 */
export function expandImageTokens(ids: readonly number[], imageTokenId: number, counts: number | readonly number[]): ExpandedIds {
  const found = ids.filter((id) => id === imageTokenId).length;
  const perImage = typeof counts === 'number' ? new Array<number>(found).fill(counts) : counts;
  if (perImage.length !== found) {
    throw new UnimeError(`the prompt has ${found} image token(s) but ${perImage.length} image(s) were given`, {
      field: 'images',
      fix: 'give one image per image placeholder in the prompt',
    });
  }
  const out: number[] = [];
  const imagePositions: number[][] = [];
  for (const id of ids) {
    if (id !== imageTokenId) {
      out.push(id);
      continue;
    }
    const n = perImage[imagePositions.length]!;
    if (!Number.isInteger(n) || n < 1) {
      throw new UnimeError(`an image needs a positive whole number of tokens, not ${n}`, {
        field: 'images',
        fix: 'pass the token count the vision tower produces for each image',
      });
    }
    const positions: number[] = [];
    for (let j = 0; j < n; j++) {
      positions.push(out.length);
      out.push(imageTokenId);
    }
    imagePositions.push(positions);
  }
  return { ids: out, imagePositions };
}

/**
 * Tokenize a prompt that holds images and expand each image to its token count.
 * - When the template's image token is an added token of the tokenizer (`<image>`, `<|image_pad|>`),
 *   the whole prompt is encoded once and the image token is expanded at the id level.
 * - Phi-3.5-V writes `<|image_k|>`, which is not in its vocabulary: as Phi3VProcessor does, the text
 *   is split at the markers, each chunk is encoded (BOS/EOS only at the ends), and image k takes
 *   `counts[k-1]` positions of id -k, which the model replaces with image features.
 */
export function encodeWithImages(
  tok: Tokenizer,
  text: string,
  template: PromptTemplate | BackboneName,
  counts: number | readonly number[],
  options: { addSpecialTokens?: boolean } = {},
): ExpandedIds {
  const t = typeof template === 'string' ? getPromptTemplate(template) : template;
  const addSpecial = options.addSpecialTokens ?? true;
  if (t.imageToken !== null) {
    const id = tok.tokenToId(t.imageToken);
    if (id === undefined) {
      throw new UnimeError(`the tokenizer has no ${t.imageToken} token, which ${t.backbone} prompts need`, {
        file: tok.source,
        fix: `load the ${t.backbone} checkpoint's own tokenizer (its tokenizer_config.json lists ${t.imageToken})`,
      });
    }
    return expandImageTokens(tok.encode(text, { addSpecialTokens: addSpecial }), id, counts);
  }
  const chunks = text.split(/<\|image_(\d+)\|>/);
  const images = (chunks.length - 1) / 2;
  const perImage = typeof counts === 'number' ? new Array<number>(images).fill(counts) : counts;
  if (perImage.length !== images) {
    throw new UnimeError(`the prompt has ${images} image marker(s) but ${perImage.length} image(s) were given`, {
      field: 'images',
      fix: 'give one image per <|image_k|> marker in the prompt',
    });
  }
  const ids: number[] = [];
  const imagePositions: number[][] = [];
  const bos = addSpecial && tok.addBosToken ? tok.specialIds.bos : undefined;
  const eos = addSpecial && tok.addEosToken ? tok.specialIds.eos : undefined;
  if (bos !== undefined) ids.push(bos);
  for (let c = 0; c < chunks.length; c += 2) {
    if (c > 0) {
      const k = Number(chunks[c - 1]);
      const n = perImage[(c - 2) / 2]!;
      const positions: number[] = [];
      for (let j = 0; j < n; j++) {
        positions.push(ids.length);
        ids.push(-k);
      }
      imagePositions.push(positions);
    }
    const chunk = chunks[c]!;
    if (chunk !== '') ids.push(...tok.encode(chunk, { addSpecialTokens: false }));
  }
  if (eos !== undefined) ids.push(eos);
  return { ids, imagePositions };
}

/**
 * How many tokens at the end of `prompt`'s encoding belong to the template rather than to the text:
 * the common suffix of the encodings of the prompt and of the template with an empty text. Pass it
 * as keepLast so truncation never cuts the instruction whose last token is pooled.
 */
export function protectedSuffixLength(tok: Tokenizer, template: PromptTemplate | BackboneName, text: string): number {
  const t = typeof template === 'string' ? getPromptTemplate(template) : template;
  const full = tok.encode(textPrompt(t, text), { addSpecialTokens: false });
  const empty = tok.encode(textPrompt(t, ''), { addSpecialTokens: false });
  let n = 0;
  while (n < full.length && n < empty.length && full[full.length - 1 - n] === empty[empty.length - 1 - n]) n++;
  return n;
}
