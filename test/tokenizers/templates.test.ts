import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fixture } from '../helpers.js';
import { UnimeError } from '../../src/errors.js';
import {
  BACKBONE_NAMES,
  chatPrompt,
  convertImageMarkers,
  countImageMarkers,
  encodeWithImages,
  expandImageTokens,
  getPromptTemplate,
  imagePrompt,
  loadTokenizer,
  textPrompt,
} from '../../src/tokenizers/index.js';

test('UniME prompts, exactly as published (Phi-3.5-V, LLaVA-1.6-Mistral)', () => {
  assert.equal(
    textPrompt('phi3.5-v', 'A dog runs.'),
    '<|user|>\nA dog runs.\nSummary above sentence in one word: <|end|>\n<|assistant|>\n',
  );
  assert.equal(imagePrompt('phi3.5-v'), '<|user|>\n<|image_1|>\nSummary above image in one word: <|end|>\n<|assistant|>\n');
  assert.equal(textPrompt('llava-1.6-mistral', 'A dog runs.'), '[INST] A dog runs.\nSummary above sentence in one word: [/INST]');
  assert.equal(imagePrompt('llava-1.6-mistral'), '[INST] <image>\nSummary above image in one word: [/INST]');
  assert.equal(getPromptTemplate('phi3.5-v').published, true);
  assert.equal(getPromptTemplate('llava-1.6-mistral').published, true);
});

test('Qwen chat prompts for LLaVA-OneVision and Qwen2-VL, marked unpublished', () => {
  assert.equal(
    textPrompt('qwen2-vl', 'A dog runs.'),
    '<|im_start|>user\nA dog runs.\nSummary above sentence in one word: <|im_end|>\n<|im_start|>assistant\n',
  );
  assert.equal(
    imagePrompt('qwen2-vl'),
    '<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>\nSummary above image in one word: <|im_end|>\n<|im_start|>assistant\n',
  );
  assert.equal(imagePrompt('llava-onevision'), '<|im_start|>user\n<image>\nSummary above image in one word: <|im_end|>\n<|im_start|>assistant\n');
  assert.equal(getPromptTemplate('qwen2-vl').published, false);
  assert.equal(getPromptTemplate('llava-onevision').published, false);
});

test('text with $ patterns is inserted literally', () => {
  assert.equal(textPrompt('llava-1.6-mistral', "costs $& and $1"), '[INST] costs $& and $1\nSummary above sentence in one word: [/INST]');
});

test('unknown template name: UnimeError listing the known ones', () => {
  assert.throws(
    () => getPromptTemplate('llava-2'),
    (e: unknown) => e instanceof UnimeError && e.field === 'template' && /unknown prompt template "llava-2"/.test(e.message) && e.message.includes(BACKBONE_NAMES.join(', ')),
  );
});

test('MMEB image markers are swapped per backbone', () => {
  const mmeb = '<|image_1|> Represent the given image with the following question: what is it?';
  assert.equal(convertImageMarkers(mmeb, 'llava-1.6-mistral'), '<image> Represent the given image with the following question: what is it?');
  assert.equal(convertImageMarkers(mmeb, 'llava-onevision'), mmeb.replace('<|image_1|>', '<image>'));
  assert.equal(convertImageMarkers(mmeb, 'qwen2-vl'), mmeb.replace('<|image_1|>', '<|vision_start|><|image_pad|><|vision_end|>'));
  assert.equal(convertImageMarkers('<image> and <image>', 'phi3.5-v'), '<|image_1|> and <|image_2|>');
  assert.equal(convertImageMarkers('<|vision_start|><|image_pad|><|vision_end|>x', 'llava-1.6-mistral'), '<image>x');
  assert.equal(countImageMarkers('<|image_1|> <image> <|vision_start|><|image_pad|><|vision_end|>'), 3);
});

test('expandImageTokens: N copies per image at the right positions', () => {
  const { ids, imagePositions } = expandImageTokens([1, 7, 99, 8, 99, 9], 99, [3, 2]);
  assert.deepEqual(ids, [1, 7, 99, 99, 99, 8, 99, 99, 9]);
  assert.deepEqual(imagePositions, [[2, 3, 4], [6, 7]]);
  assert.throws(() => expandImageTokens([99], 99, [1, 2]), /1 image token\(s\) but 2 image\(s\)/);
  assert.throws(() => expandImageTokens([99], 99, 0), /positive whole number/);
});

test('encodeWithImages: LLaVA <image> and Qwen2-VL <|image_pad|> expand at the id level', async () => {
  const llava = await loadTokenizer(fixture('tokenizers', 'spm-unigram'));
  const prompt = imagePrompt('llava-1.6-mistral');
  const base = llava.encode(prompt);
  const img = llava.tokenToId('<image>')!;
  const at = base.indexOf(img);
  const { ids, imagePositions } = encodeWithImages(llava, prompt, 'llava-1.6-mistral', 5);
  assert.equal(ids.length, base.length + 4);
  assert.deepEqual(imagePositions, [[at, at + 1, at + 2, at + 3, at + 4]]);
  assert.deepEqual(ids.slice(0, at), base.slice(0, at));
  assert.deepEqual(ids.slice(at + 5), base.slice(at + 1));

  const qwen = await loadTokenizer(fixture('tokenizers', 'bbpe-qwen'));
  const q = encodeWithImages(qwen, imagePrompt('qwen2-vl'), 'qwen2-vl', [4]);
  const pad = qwen.tokenToId('<|image_pad|>')!;
  assert.equal(q.ids.filter((x) => x === pad).length, 4);
  const start = q.ids.indexOf(qwen.tokenToId('<|vision_start|>')!);
  assert.deepEqual(q.imagePositions, [[start + 1, start + 2, start + 3, start + 4]]);
  assert.equal(q.ids[start + 5], qwen.tokenToId('<|vision_end|>'));
});

test('encodeWithImages: Phi-3.5-V <|image_k|> becomes -k at N positions, BOS once', async () => {
  const phi = await loadTokenizer(fixture('tokenizers', 'spm-bpe-bytefallback'));
  const prompt = '<|user|>\n<|image_1|>\n<|image_2|>\nSummary above image in one word: <|end|>\n<|assistant|>\n';
  const { ids, imagePositions } = encodeWithImages(phi, prompt, 'phi3.5-v', [3, 2]);
  assert.equal(ids[0], phi.specialIds.bos);
  assert.equal(ids.filter((x) => x === phi.specialIds.bos).length, 1);
  assert.deepEqual(imagePositions.map((p) => p.map((i) => ids[i])), [[-1, -1, -1], [-2, -2]]);
  const first = imagePositions[0]!;
  assert.deepEqual(first, [first[0]!, first[0]! + 1, first[0]! + 2]);
  assert.deepEqual(ids.slice(1, first[0]), phi.encode('<|user|>\n', { addSpecialTokens: false }));
  assert.throws(() => encodeWithImages(phi, prompt, 'phi3.5-v', [1]), /2 image marker\(s\) but 1 image/);
});

test('encodeWithImages: a tokenizer without the backbone image token is a clear error', async () => {
  const phi = await loadTokenizer(fixture('tokenizers', 'spm-bpe-bytefallback'));
  assert.throws(
    () => encodeWithImages(phi, imagePrompt('qwen2-vl'), 'qwen2-vl', 4),
    (e: unknown) => e instanceof UnimeError && /no <\|image_pad\|> token/.test(e.message) && e.file === phi.source,
  );
});

test('every UniME prompt is the backbone chat format around the UniME instruction', () => {
  for (const b of BACKBONE_NAMES) {
    const t = getPromptTemplate(b);
    assert.equal(t.text, chatPrompt(b, '<sent>\nSummary above sentence in one word: '), b);
    assert.equal(t.image, chatPrompt(b, `${t.imageMarker}\nSummary above image in one word: `), b);
    assert.equal(t.image.split(t.imageMarker).length, 2, b);
  }
  assert.equal(
    chatPrompt('llava-1.6-mistral', convertImageMarkers('<|image_1|> Represent the given image. ', 'llava-1.6-mistral')),
    '[INST] <image> Represent the given image. [/INST]',
  );
});
