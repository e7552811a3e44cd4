/**
 * Tiny models for the synthetic benchmark, in exact Hugging Face layouts (see tools/synth/README.md):
 *
 *   <out>/models/tiny-mllm/     LlavaForConditionalGeneration: CLIP vision tower + projector + Llama decoder
 *   <out>/models/tiny-teacher/  LlamaForCausalLM, wider than the MLLM's decoder; the quickstart's
 *                               caption-contrastive stage turns it into the stage-1 teacher embedder
 *
 * Both share one word-level tokenizer whose vocabulary is built from the generator's own word lists
 * and templates (not from the sampled data), so it covers every text any --size or --seed produces.
 * Weights are random from the seed (normal std 0.02, norms 1, biases 0), each tensor from its own
 * named RNG stream, so the files are byte-identical for the same seed.
 *
 * @huggingface/tokenizers (what src/tokenizers/load.ts runs tokenizer.json with) has no WordLevel
 * model; a WordPiece model whose vocabulary holds every whole word behaves the same: each word the
 * pre-tokenizer splits off is one token, an unknown one is <unk>.
 */
import * as path from 'node:path';
import { writeShardedSafetensors } from '../../src/io/checkpoint.js';
import type { TensorInput } from '../../src/io/safetensors.js';
import { writeBytesAtomic } from '../../src/io/atomic.js';
import { Rng } from '../../src/runtime/rng.js';
import { INSTR, NUMBER_WORDS, pairCaption, referringExpression } from './captions.js';
import { COLOURS, SHAPES, SIZES, type Scene } from './scene.js';

export const MODELS_DIR = 'models';
export const TINY_MLLM = 'tiny-mllm';
export const TINY_TEACHER = 'tiny-teacher';

export const UNK = '<unk>';
export const BOS = '<s>';
export const EOS = '</s>';
export const PAD = '<pad>';
export const IMAGE = '<image>';

/** Vision tower input size; the 48 px synthetic images are resized/cropped to it by preprocessor_config.json. */
export const TINY_IMAGE_SIZE = 32;
export const TINY_PATCH_SIZE = 8;

export interface DecoderSizes {
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  intermediate: number;
}

export const MLLM_DECODER: DecoderSizes = { hidden: 128, layers: 4, heads: 4, kvHeads: 4, intermediate: 344 };
export const MLLM_VISION = { hidden: 64, layers: 2, heads: 4, intermediate: 256 };
export const TEACHER_DECODER: DecoderSizes = { hidden: 192, layers: 4, heads: 4, kvHeads: 4, intermediate: 512 };

const ASCII_PUNCTUATION = '!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~';

/**
 * How the tokenizer splits a text into words (BertPreTokenizer after Lowercase): whitespace
 * separates, every punctuation character is a word of its own.
 */
export function splitWords(text: string): string[] {
  const out: string[] = [];
  for (const chunk of text.toLowerCase().split(/\s+/)) {
    let cur = '';
    for (const ch of chunk) {
      if (ASCII_PUNCTUATION.includes(ch) || /\p{P}/u.test(ch)) {
        if (cur) out.push(cur);
        out.push(ch);
        cur = '';
      } else cur += ch;
    }
    if (cur) out.push(cur);
  }
  return out;
}

/** Every text template the generator (and the UniME prompts the quickstart uses) can produce, with each slot filled once. */
function templateTexts(): string[] {
  const texts: string[] = [];
  // captions of every paraphrase template, for every relation (cells 0-1 left/right, 0-2 above/below, both orders)
  const obj = (cell: number, i: number) => ({ shape: SHAPES[i]!, colour: COLOURS[i]!, size: SIZES[i % 2]!, cell, dx: 0, dy: 0 });
  for (const [ca, cb] of [[0, 1], [1, 0], [0, 2], [2, 0]] as const) {
    const scene: Scene = { objects: [obj(ca, 0), obj(cb, 1)] };
    for (let t = 0; t < 4; t++) texts.push(pairCaption(scene, t));
    texts.push(referringExpression(scene, 0), referringExpression(scene, 1));
  }
  texts.push(COLOURS.join(' '), SHAPES.join(' '), SIZES.join(' '), NUMBER_WORDS.join(' '));
  // VQA questions (tools/synth/tasks.ts)
  texts.push('What color is the circle?', 'What shape is the red object?', 'What is to the left of the red circle?', 'How many shapes are there?');
  texts.push(INSTR.cls, INSTR.vqa('q'), INSTR.t2iQuery('c'), INSTR.t2iTarget, INSTR.i2tQuery, INSTR.grdQuery('e'), INSTR.grdTarget);
  // UniME's bare prompts (the quickstart's prompt_template) and the image prompt
  texts.push('Summary above sentence in one word:', 'Summary above image in one word:');
  return texts;
}

/** The tokenizer's vocabulary in id order: <unk> <s> </s>, punctuation, digits, sorted words (and letters), then <image> <pad> (as llava-hf adds them last). */
export function tinyVocabulary(): string[] {
  const words = new Set<string>();
  for (const t of templateTexts()) for (const w of splitWords(t)) words.add(w);
  // single letters, so a stray letter (a variable in a user's prompt) is not <unk>
  for (const c of 'abcdefghijklmnopqrstuvwxyz') words.add(c);
  const punct = [...ASCII_PUNCTUATION];
  const digits = [...'0123456789'];
  for (const x of [...punct, ...digits]) words.delete(x);
  const sorted = [...words].sort();
  return [UNK, BOS, EOS, ...punct, ...digits, ...sorted, IMAGE, PAD];
}

function addedToken(id: number, content: string) {
  return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true };
}

function tokenObject(content: string) {
  return { content, lstrip: false, normalized: false, rstrip: false, single_word: false };
}

export interface TokenizerFiles {
  vocab: string[];
  ids: { unk: number; bos: number; eos: number; pad: number; image: number };
  files: Record<string, string>;
}

/** tokenizer.json (WordPiece over whole words), tokenizer_config.json and special_tokens_map.json. */
export function tinyTokenizerFiles(): TokenizerFiles {
  const vocab = tinyVocabulary();
  const id = (t: string) => vocab.indexOf(t);
  const ids = { unk: id(UNK), bos: id(BOS), eos: id(EOS), pad: id(PAD), image: id(IMAGE) };
  const specials = [UNK, BOS, EOS, IMAGE, PAD];
  const vocabMap: Record<string, number> = {};
  vocab.forEach((t, i) => (vocabMap[t] = i));
  const tokenizer = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: specials.map((t) => addedToken(id(t), t)),
    normalizer: { type: 'Lowercase' },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: BOS, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ SpecialToken: { id: BOS, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: BOS, type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { [BOS]: { id: BOS, ids: [ids.bos], tokens: [BOS] } },
    },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: { type: 'WordPiece', unk_token: UNK, continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab: vocabMap },
  };
  const addedDecoder: Record<string, unknown> = {};
  for (const t of specials) {
    const { id: i, ...rest } = addedToken(id(t), t);
    addedDecoder[String(i)] = rest;
  }
  const config = {
    add_bos_token: true,
    add_eos_token: false,
    added_tokens_decoder: addedDecoder,
    bos_token: BOS,
    clean_up_tokenization_spaces: false,
    eos_token: EOS,
    extra_special_tokens: {},
    model_max_length: 512,
    pad_token: PAD,
    padding_side: 'left',
    tokenizer_class: 'PreTrainedTokenizerFast',
    unk_token: UNK,
  };
  const map = { bos_token: tokenObject(BOS), eos_token: tokenObject(EOS), pad_token: tokenObject(PAD), unk_token: tokenObject(UNK) };
  const json = (v: unknown) => JSON.stringify(v, null, 2) + '\n';
  return {
    vocab,
    ids,
    files: { 'tokenizer.json': json(tokenizer), 'tokenizer_config.json': json(config), 'special_tokens_map.json': json(map) },
  };
}

type Tensors = Map<string, TensorInput>;

class WeightMaker {
  readonly tensors: Tensors = new Map();
  constructor(private readonly rng: Rng) {}

  normal(name: string, shape: number[], std = 0.02): void {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    this.rng.fork(name).fillNormal(data, 0, std);
    this.tensors.set(name, { dtype: 'F32', shape, data });
  }

  constant(name: string, shape: number[], value: number): void {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(value);
    this.tensors.set(name, { dtype: 'F32', shape, data });
  }

  linear(name: string, out: number, inp: number, bias: boolean): void {
    this.normal(`${name}.weight`, [out, inp]);
    if (bias) this.constant(`${name}.bias`, [out], 0);
  }

  layerNorm(name: string, n: number): void {
    this.constant(`${name}.weight`, [n], 1);
    this.constant(`${name}.bias`, [n], 0);
  }
}

/** Llama decoder tensors under `prefix` (transformers' LlamaModel names) plus lm_head. */
function llamaWeights(w: WeightMaker, prefix: string, d: DecoderSizes, vocab: number): void {
  const hd = d.hidden / d.heads;
  w.normal(`${prefix}embed_tokens.weight`, [vocab, d.hidden]);
  for (let i = 0; i < d.layers; i++) {
    const p = `${prefix}layers.${i}`;
    w.constant(`${p}.input_layernorm.weight`, [d.hidden], 1);
    w.constant(`${p}.post_attention_layernorm.weight`, [d.hidden], 1);
    w.linear(`${p}.self_attn.q_proj`, d.heads * hd, d.hidden, false);
    w.linear(`${p}.self_attn.k_proj`, d.kvHeads * hd, d.hidden, false);
    w.linear(`${p}.self_attn.v_proj`, d.kvHeads * hd, d.hidden, false);
    w.linear(`${p}.self_attn.o_proj`, d.hidden, d.heads * hd, false);
    w.linear(`${p}.mlp.gate_proj`, d.intermediate, d.hidden, false);
    w.linear(`${p}.mlp.up_proj`, d.intermediate, d.hidden, false);
    w.linear(`${p}.mlp.down_proj`, d.hidden, d.intermediate, false);
  }
  w.constant(`${prefix}norm.weight`, [d.hidden], 1);
  w.normal('lm_head.weight', [vocab, d.hidden]);
}

function llamaConfig(d: DecoderSizes, vocab: number, ids: TokenizerFiles['ids']) {
  return {
    attention_bias: false,
    attention_dropout: 0.0,
    bos_token_id: ids.bos,
    eos_token_id: ids.eos,
    head_dim: d.hidden / d.heads,
    hidden_act: 'silu',
    hidden_size: d.hidden,
    initializer_range: 0.02,
    intermediate_size: d.intermediate,
    max_position_embeddings: 512,
    mlp_bias: false,
    model_type: 'llama',
    num_attention_heads: d.heads,
    num_hidden_layers: d.layers,
    num_key_value_heads: d.kvHeads,
    pad_token_id: ids.pad,
    pretraining_tp: 1,
    rms_norm_eps: 1e-5,
    rope_scaling: null,
    rope_theta: 10000.0,
    tie_word_embeddings: false,
    torch_dtype: 'float32',
    use_cache: true,
    vocab_size: vocab,
  };
}

const TRANSFORMERS_VERSION = '4.52.4';

function json(v: unknown): string {
  return JSON.stringify(v, null, 2) + '\n';
}

export interface ModelSummary {
  dir: string;
  files: number;
  bytes: number;
  parameters: number;
}

async function writeModel(dir: string, textFiles: Record<string, string>, tensors: Tensors): Promise<ModelSummary> {
  let bytes = 0;
  for (const [name, text] of Object.entries(textFiles)) {
    await writeBytesAtomic(path.join(dir, name), text);
    bytes += Buffer.byteLength(text);
  }
  const written = await writeShardedSafetensors(dir, tensors, { metadata: { format: 'pt' } });
  let parameters = 0;
  for (const t of tensors.values()) parameters += t.shape.reduce((a, b) => a * b, 1);
  return { dir, files: Object.keys(textFiles).length + written.files.length, bytes: bytes + written.totalSize, parameters };
}

/** The tiny LLaVA-1.5-style checkpoint (model_type llava) in transformers' current key layout. */
export async function writeTinyMllm(dir: string, seed: number, tok: TokenizerFiles = tinyTokenizerFiles()): Promise<ModelSummary> {
  const vocab = tok.vocab.length;
  const v = MLLM_VISION;
  const d = MLLM_DECODER;
  const grid = TINY_IMAGE_SIZE / TINY_PATCH_SIZE;
  const w = new WeightMaker(new Rng(seed).fork(TINY_MLLM));
  const vp = 'model.vision_tower.vision_model.';
  w.normal(`${vp}embeddings.class_embedding`, [v.hidden]);
  w.normal(`${vp}embeddings.patch_embedding.weight`, [v.hidden, 3, TINY_PATCH_SIZE, TINY_PATCH_SIZE]);
  w.normal(`${vp}embeddings.position_embedding.weight`, [grid * grid + 1, v.hidden]);
  w.layerNorm(`${vp}pre_layrnorm`, v.hidden);
  for (let i = 0; i < v.layers; i++) {
    const p = `${vp}encoder.layers.${i}`;
    w.layerNorm(`${p}.layer_norm1`, v.hidden);
    for (const proj of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) w.linear(`${p}.self_attn.${proj}`, v.hidden, v.hidden, true);
    w.layerNorm(`${p}.layer_norm2`, v.hidden);
    w.linear(`${p}.mlp.fc1`, v.intermediate, v.hidden, true);
    w.linear(`${p}.mlp.fc2`, v.hidden, v.intermediate, true);
  }
  w.layerNorm(`${vp}post_layernorm`, v.hidden);
  w.linear('model.multi_modal_projector.linear_1', d.hidden, v.hidden, true);
  w.linear('model.multi_modal_projector.linear_2', d.hidden, d.hidden, true);
  llamaWeights(w, 'model.language_model.', d, vocab);

  const config = {
    architectures: ['LlavaForConditionalGeneration'],
    ignore_index: -100,
    image_seq_length: grid * grid,
    image_token_index: tok.ids.image,
    model_type: 'llava',
    multimodal_projector_bias: true,
    projector_hidden_act: 'gelu',
    text_config: llamaConfig(d, vocab, tok.ids),
    tie_word_embeddings: false,
    torch_dtype: 'float32',
    transformers_version: TRANSFORMERS_VERSION,
    vision_config: {
      attention_dropout: 0.0,
      hidden_act: 'quick_gelu',
      hidden_size: v.hidden,
      image_size: TINY_IMAGE_SIZE,
      initializer_factor: 1.0,
      initializer_range: 0.02,
      intermediate_size: v.intermediate,
      layer_norm_eps: 1e-5,
      model_type: 'clip_vision_model',
      num_attention_heads: v.heads,
      num_channels: 3,
      num_hidden_layers: v.layers,
      patch_size: TINY_PATCH_SIZE,
      projection_dim: v.hidden,
    },
    vision_feature_layer: -2,
    vision_feature_select_strategy: 'default',
  };
  const preprocessor = {
    crop_size: { height: TINY_IMAGE_SIZE, width: TINY_IMAGE_SIZE },
    do_center_crop: true,
    do_convert_rgb: true,
    do_normalize: true,
    do_rescale: true,
    do_resize: true,
    image_mean: [0.48145466, 0.4578275, 0.40821073],
    image_processor_type: 'CLIPImageProcessor',
    image_std: [0.26862954, 0.26130258, 0.27577711],
    processor_class: 'LlavaProcessor',
    resample: 3,
    rescale_factor: 0.00392156862745098,
    size: { shortest_edge: TINY_IMAGE_SIZE },
  };
  const processor = {
    image_token: IMAGE,
    num_additional_image_tokens: 1,
    patch_size: TINY_PATCH_SIZE,
    processor_class: 'LlavaProcessor',
    vision_feature_select_strategy: 'default',
  };
  const generation = { _from_model_config: true, bos_token_id: tok.ids.bos, eos_token_id: tok.ids.eos, pad_token_id: tok.ids.pad, transformers_version: TRANSFORMERS_VERSION };
  return writeModel(
    dir,
    {
      'config.json': json(config),
      'generation_config.json': json(generation),
      'preprocessor_config.json': json(preprocessor),
      'processor_config.json': json(processor),
      ...tok.files,
    },
    w.tensors,
  );
}

/** The tiny teacher's base: a random LlamaForCausalLM with the same tokenizer, trained into an embedder by the quickstart. */
export async function writeTinyTeacher(dir: string, seed: number, tok: TokenizerFiles = tinyTokenizerFiles(), sizes: DecoderSizes = TEACHER_DECODER): Promise<ModelSummary> {
  const vocab = tok.vocab.length;
  const d = sizes;
  const w = new WeightMaker(new Rng(seed).fork(TINY_TEACHER));
  llamaWeights(w, 'model.', d, vocab);
  const config = { architectures: ['LlamaForCausalLM'], ...llamaConfig(d, vocab, tok.ids), transformers_version: TRANSFORMERS_VERSION };
  const generation = { _from_model_config: true, bos_token_id: tok.ids.bos, eos_token_id: tok.ids.eos, pad_token_id: tok.ids.pad, transformers_version: TRANSFORMERS_VERSION };
  return writeModel(dir, { 'config.json': json(config), 'generation_config.json': json(generation), ...tok.files }, w.tensors);
}

/** Both tiny models under <out>/models/. */
export async function generateModels(out: string, seed: number): Promise<ModelSummary[]> {
  const tok = tinyTokenizerFiles();
  const root = path.join(out, MODELS_DIR);
  return [await writeTinyMllm(path.join(root, TINY_MLLM), seed, tok), await writeTinyTeacher(path.join(root, TINY_TEACHER), seed, tok)];
}
