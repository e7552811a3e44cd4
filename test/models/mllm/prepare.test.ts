/**
 * Host-side preparation of multimodal inputs: marker rewriting, placeholder expansion, the bare
 * caption prefix, truncation that never cuts image tokens, and left padding.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UnimeError } from '../../../src/errors.js';
import { loadTokenizer } from '../../../src/tokenizers/load.js';
import type { Tokenizer } from '../../../src/tokenizers/types.js';
import { padInputs, tokenizeWithImage } from '../../../src/models/mllm/prepare.js';
import { fixture } from '../../helpers.js';

const tok = await loadTokenizer(fixture('llava', 'llava-tiny'));
const IMAGE_ID = tok.tokenToId('<image>')!;
const spec = { marker: '<image>', markerId: IMAGE_ID, imageTokens: 4 };

test('the fixture tokenizer keeps <image> as one added token', () => {
  assert.equal(typeof IMAGE_ID, 'number');
  const ids = tok.encode('a <image> b', { addSpecialTokens: false });
  assert.equal(ids.filter((x) => x === IMAGE_ID).length, 1);
});

test('markers in any backbone form become the model marker and expand to the image token count', () => {
  const llava = tokenizeWithImage(tok, 'USER: <image>\nWhat is it?', spec, { hasImage: true });
  const mmeb = tokenizeWithImage(tok, 'USER: <|image_1|>\nWhat is it?', spec, { hasImage: true });
  const qwen = tokenizeWithImage(tok, 'USER: <|vision_start|><|image_pad|><|vision_end|>\nWhat is it?', spec, { hasImage: true });
  assert.deepEqual(mmeb.ids, llava.ids);
  assert.deepEqual(qwen.ids, llava.ids);
  assert.equal(llava.ids.filter((x) => x === IMAGE_ID).length, 4);
  const at = llava.ids.indexOf(IMAGE_ID);
  assert.deepEqual(llava.ids.slice(at, at + 4), [IMAGE_ID, IMAGE_ID, IMAGE_ID, IMAGE_ID]);
  assert.equal(llava.ids[0], tok.specialIds.bos);
});

test('a bare caption with an image gets "<image>\\n" in front; text without an image is left alone', () => {
  const bare = tokenizeWithImage(tok, 'a red cube', spec, { hasImage: true });
  const explicit = tokenizeWithImage(tok, '<image>\na red cube', spec, { hasImage: true });
  assert.deepEqual(bare.ids, explicit.ids);
  const text = tokenizeWithImage(tok, 'a red cube', spec, { hasImage: false });
  assert.deepEqual(text.ids, tok.encode('a red cube', { addSpecialTokens: true }));
  assert.equal(text.ids.includes(IMAGE_ID), false);
});

test('truncation cuts text after the image, keeps BOS, refuses to cut image tokens', () => {
  const full = tokenizeWithImage(tok, '<image> and then a long description of everything in view', spec, { hasImage: true });
  const cut = tokenizeWithImage(tok, '<image> and then a long description of everything in view', spec, { hasImage: true, maxLength: 8 });
  assert.equal(cut.truncated, true);
  assert.deepEqual(cut.ids, full.ids.slice(0, 8));
  const fits = tokenizeWithImage(tok, '<image> ok', spec, { hasImage: true, maxLength: 100 });
  assert.equal(fits.truncated, false);
  assert.throws(
    () => tokenizeWithImage(tok, 'words before the image <image> after', spec, { hasImage: true, maxLength: 6 }),
    (e: Error) => e instanceof UnimeError && e.field === 'max_length' && /too short/.test(e.message),
  );
});

test('marker without image, two markers, image for a text-only model', () => {
  assert.throws(() => tokenizeWithImage(tok, 'see <image>', spec, { hasImage: false }), /image marker but no image/);
  assert.throws(() => tokenizeWithImage(tok, '<image><image>', spec, { hasImage: true }), /2 image markers/);
  assert.throws(() => tokenizeWithImage(tok, 'a cat', null, { hasImage: true }), /takes text only/);
});

test("padInputs pads on the left with the tokenizer's pad id and a mask, and refuses empty rows", () => {
  const tok = { specialIds: { pad: 0 } } as unknown as Tokenizer;
  const p = padInputs([[5, 6, 7], [8]], tok);
  assert.equal(p.batchSize, 2);
  assert.equal(p.seqLen, 3);
  assert.deepEqual([...p.inputIds], [5, 6, 7, 0, 0, 8]);
  assert.deepEqual([...p.attentionMask], [1, 1, 1, 0, 0, 1]);
  assert.throws(() => padInputs([[1], []], tok), /encodes to no tokens/);
});
