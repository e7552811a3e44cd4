import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { tempDir } from '../helpers.js';
import { generateSynthetic } from '../../tools/synth/generate.js';
import { generateModels, IMAGE, MLLM_DECODER, MLLM_VISION, splitWords, TEACHER_DECODER, TINY_IMAGE_SIZE, tinyVocabulary } from '../../tools/synth/models.js';
import { renderScene } from '../../tools/synth/render.js';
import { listMmebEvalDatasets, listMmebTrainSubsets, readMmebEvalDataset, readMmebTrainSubset, readTextPairs } from '../../src/data/mmeb.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { loadTextDecoder } from '../../src/models/text/load.js';
import { loadVisionTower } from '../../src/models/vision/load.js';
import { loadMultimodalModel } from '../../src/models/mllm/load.js';
import { loadTokenizer } from '../../src/tokenizers/load.js';

let tmp: { dir: string; cleanup: () => Promise<void> };
let out: string;
let mllm: string;
let teacher: string;

before(async () => {
  tmp = await tempDir('unime-synth-models-');
  out = path.join(tmp.dir, 'a');
  await generateSynthetic({ out, seed: 0, size: 'tiny' });
  mllm = path.join(out, 'models', 'tiny-mllm');
  teacher = path.join(out, 'models', 'tiny-teacher');
});
after(() => tmp.cleanup());

async function hashes(dir: string): Promise<Record<string, string>> {
  const r: Record<string, string> = {};
  for (const n of (await fsp.readdir(dir)).sort()) r[n] = createHash('sha256').update(await fsp.readFile(path.join(dir, n))).digest('hex');
  return r;
}

test('tiny-mllm is a LLaVA-1.5-style checkpoint in transformers layout that every zoo loader reads', async () => {
  const cfg = JSON.parse(await fsp.readFile(path.join(mllm, 'config.json'), 'utf8'));
  assert.equal(cfg.model_type, 'llava');
  assert.deepEqual(cfg.architectures, ['LlavaForConditionalGeneration']);
  assert.equal(cfg.text_config.model_type, 'llama');
  assert.equal(cfg.vision_config.model_type, 'clip_vision_model');
  assert.equal(cfg.vision_config.image_size, TINY_IMAGE_SIZE);
  assert.equal(cfg.vision_config.patch_size, 8);
  assert.equal(cfg.vision_feature_layer, -2);
  assert.equal(cfg.vision_feature_select_strategy, 'default');
  assert.equal(cfg.projector_hidden_act, 'gelu');
  const pre = JSON.parse(await fsp.readFile(path.join(mllm, 'preprocessor_config.json'), 'utf8'));
  assert.equal(pre.image_processor_type, 'CLIPImageProcessor');
  assert.deepEqual(pre.crop_size, { height: TINY_IMAGE_SIZE, width: TINY_IMAGE_SIZE });

  const tok = await loadTokenizer(mllm);
  assert.equal(cfg.text_config.vocab_size, tok.vocabSize);
  assert.equal(cfg.image_token_index, tok.tokenToId(IMAGE));

  // transformers' current key names, sensible init
  const f = await SafetensorsFile.open(path.join(mllm, 'model.safetensors'));
  try {
    const prefixes = new Set(f.names.map((n) => (n === 'lm_head.weight' ? n : n.split('.').slice(0, 2).join('.'))));
    assert.deepEqual([...prefixes].sort(), ['lm_head.weight', 'model.language_model', 'model.multi_modal_projector', 'model.vision_tower']);
    assert.ok(f.has('model.vision_tower.vision_model.embeddings.class_embedding'));
    assert.ok(f.has('model.multi_modal_projector.linear_2.bias'));
    assert.ok(f.has('model.language_model.layers.3.mlp.gate_proj.weight'));
    const q = await f.readFloat32('model.language_model.layers.0.self_attn.q_proj.weight');
    const std = Math.sqrt(q.reduce((s, v) => s + v * v, 0) / q.length);
    assert.ok(Math.abs(std - 0.02) < 0.001, `std ${std}`);
    assert.ok((await f.readFloat32('model.language_model.norm.weight')).every((v) => v === 1));
    assert.ok((await f.readFloat32('model.multi_modal_projector.linear_1.bias')).every((v) => v === 0));
  } finally {
    await f.close();
  }

  const dec = await loadTextDecoder(mllm);
  try {
    assert.equal(dec.source.prefix, 'model.language_model.');
    assert.equal(dec.config.hiddenSize, MLLM_DECODER.hidden);
    assert.equal(dec.config.numLayers, MLLM_DECODER.layers);
    assert.equal(dec.config.intermediateSize, MLLM_DECODER.intermediate);
  } finally {
    dec.dispose();
  }
  const tower = await loadVisionTower(mllm);
  try {
    assert.equal(tower.source.prefix, 'model.vision_tower.vision_model.');
    assert.equal(tower.config.hiddenSize, MLLM_VISION.hidden);
    assert.equal(tower.config.gridSize, TINY_IMAGE_SIZE / 8);
  } finally {
    tower.dispose();
  }
  // the whole model: a 48 px synthetic image is resized to the tower's input, its 16 features replace <image>
  const model = await loadMultimodalModel(mllm);
  try {
    assert.equal(model.modelType, 'llava');
    const img = renderScene({ objects: [{ shape: 'circle', colour: 'red', size: 'large', cell: 0, dx: 0, dy: 0 }] });
    const withImage = model.prepare(`${IMAGE}\nRepresent the given image.`, img);
    const textOnly = model.prepare('a large red circle', null);
    const e = model.embed([withImage, textOnly]);
    assert.deepEqual(e.shape, [2, MLLM_DECODER.hidden]);
    const v = await e.data();
    e.dispose();
    assert.ok(v.every(Number.isFinite));
  } finally {
    model.dispose();
  }
});

test('tiny-teacher is a wider Llama with the same tokenizer', async () => {
  const dec = await loadTextDecoder(teacher);
  try {
    assert.equal(dec.source.prefix, 'model.');
    assert.equal(dec.config.hiddenSize, TEACHER_DECODER.hidden);
    assert.equal(dec.config.numLayers, TEACHER_DECODER.layers);
  } finally {
    dec.dispose();
  }
  for (const f of ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json']) {
    assert.deepEqual(await fsp.readFile(path.join(teacher, f)), await fsp.readFile(path.join(mllm, f)), f);
  }
});

test('the word-level tokenizer: BOS added, <image> one token, ids round-trip, no <unk> in any generated text', async () => {
  const tok = await loadTokenizer(mllm);
  const vocab = tinyVocabulary();
  assert.equal(tok.vocabSize, vocab.length);
  assert.equal(tok.specialIds.bos, vocab.indexOf('<s>'));
  assert.equal(tok.specialIds.pad, vocab.indexOf('<pad>'));
  const text = 'A small red circle to the left of a large blue square';
  const ids = tok.encode(text);
  assert.equal(ids[0], tok.specialIds.bos);
  assert.deepEqual(ids.slice(1).map((i) => tok.idToToken(i)), splitWords(text));
  assert.equal(tok.decode(ids, { skipSpecialTokens: true }), text.toLowerCase());
  const img = tok.encode(`${IMAGE}\nWhat color is the star?`, { addSpecialTokens: false });
  assert.equal(img[0], tok.tokenToId(IMAGE));
  assert.equal(img.filter((i) => i === tok.tokenToId(IMAGE)).length, 1);
  assert.deepEqual(img.slice(1).map((i) => tok.idToToken(i)), ['what', 'color', 'is', 'the', 'star', '?']);

  // every text of two generated benchmarks (another seed and size too)
  const other = path.join(tmp.dir, 'b');
  await generateSynthetic({ out: other, seed: 5, size: 'small', models: false });
  const unk = tok.specialIds.unk!;
  let checked = 0;
  const check = (t: string) => {
    if (t === '') return;
    // engines swap MMEB's image token for the backbone's before tokenizing
    const ids = tok.encode(t.replaceAll('<|image_1|>', IMAGE), { addSpecialTokens: false });
    assert.ok(!ids.includes(unk), `<unk> in ${JSON.stringify(t)}: ${ids.map((i) => tok.idToToken(i)).join(' ')}`);
    checked++;
  };
  for (const root of [out, other]) {
    for (const p of await readTextPairs(path.join(root, 'text-pairs.jsonl'))) [p.sent0, p.sent1, p.hard_neg ?? ''].forEach(check);
    const train = path.join(root, 'mmeb-train');
    for (const s of await listMmebTrainSubsets(train)) for (const r of (await readMmebTrainSubset(train, s)).rows) [r.qry, r.pos_text, r.neg_text].forEach(check);
    const ev = path.join(root, 'mmeb-eval');
    for (const d of await listMmebEvalDatasets(ev)) for (const r of (await readMmebEvalDataset(ev, d)).rows) [r.qry_text, ...r.tgt_text].forEach(check);
  }
  assert.ok(checked > 5000, `${checked} texts`);
  // the prompts the quickstart wraps texts in
  check('Summary above sentence in one word:');
  check('<|image_1|>\nSummary above image in one word:');
});

test('models are byte-identical for the same seed and differ for another', async () => {
  const same = path.join(tmp.dir, 'same');
  const other = path.join(tmp.dir, 'other');
  await generateModels(same, 0);
  await generateModels(other, 1);
  for (const m of ['tiny-mllm', 'tiny-teacher']) {
    const a = await hashes(path.join(out, 'models', m));
    assert.deepEqual(await hashes(path.join(same, 'models', m)), a, m);
    const b = await hashes(path.join(other, 'models', m));
    assert.equal(b['config.json'], a['config.json']);
    assert.notEqual(b['model.safetensors'], a['model.safetensors']);
  }
});
