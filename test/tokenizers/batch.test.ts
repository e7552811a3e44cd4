import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fixture } from '../helpers.js';
import {
  encodeBatch,
  loadTokenizer,
  padBatch,
  protectedSuffixLength,
  textPrompt,
  truncateIds,
} from '../../src/tokenizers/index.js';

const row = (a: Int32Array, i: number, s: number): number[] => Array.from(a.subarray(i * s, (i + 1) * s));

test('left padding (the default) puts every last real token in the last column', async () => {
  const tok = await loadTokenizer(fixture('tokenizers', 'spm-bpe-bytefallback'));
  const texts = ['hello', 'a much longer sentence about a cat', 'x'];
  const b = encodeBatch(tok, texts);
  const pad = tok.specialIds.pad!;
  assert.equal(b.batchSize, 3);
  assert.ok(b.inputIds instanceof Int32Array && b.attentionMask instanceof Int32Array);
  assert.equal(b.inputIds.length, 3 * b.seqLen);
  texts.forEach((t, i) => {
    const ids = tok.encode(t);
    const padN = b.seqLen - ids.length;
    assert.deepEqual(row(b.inputIds, i, b.seqLen), [...new Array(padN).fill(pad), ...ids]);
    assert.deepEqual(row(b.attentionMask, i, b.seqLen), [...new Array(padN).fill(0), ...new Array(ids.length).fill(1)]);
    assert.equal(b.lengths[i], ids.length);
  });
});

test('right padding and pad-to-multiple', async () => {
  const tok = await loadTokenizer(fixture('tokenizers', 'bbpe-qwen'));
  const b = encodeBatch(tok, ['hi', 'hello world'], { paddingSide: 'right', padToMultipleOf: 8 });
  assert.equal(b.seqLen % 8, 0);
  const ids = tok.encode('hi');
  assert.deepEqual(row(b.inputIds, 0, b.seqLen).slice(0, ids.length), ids);
  assert.deepEqual(row(b.attentionMask, 0, b.seqLen), [...new Array(ids.length).fill(1), ...new Array(b.seqLen - ids.length).fill(0)]);
  assert.equal(row(b.inputIds, 0, b.seqLen)[b.seqLen - 1], tok.specialIds.pad);
});

test('truncateIds cuts the body and keeps the protected head and tail', () => {
  const ids = [1, 10, 11, 12, 13, 14, 15, 90, 91];
  assert.deepEqual(truncateIds(ids, 6, { keepFirst: 1, keepLast: 2 }), [1, 10, 11, 12, 90, 91]);
  assert.deepEqual(truncateIds(ids, 6, { keepFirst: 1, keepLast: 2, truncationSide: 'left' }), [1, 13, 14, 15, 90, 91]);
  assert.deepEqual(truncateIds(ids, 20), ids);
  assert.throws(() => truncateIds(ids, 2, { keepFirst: 1, keepLast: 2 }), /max_length 2[\s\S]*fix: raise max_length to at least 4/);
});

test('batch truncation keeps BOS and the template suffix whose last token is pooled', async () => {
  const tok = await loadTokenizer(fixture('tokenizers', 'spm-bpe-bytefallback'));
  const long = 'the cat sat on the mat and the dog sat on the log '.repeat(6);
  const prompt = textPrompt('phi3.5-v', long);
  const keep = protectedSuffixLength(tok, 'phi3.5-v', long);
  const full = tok.encode(prompt);
  const b = encodeBatch(tok, [prompt, textPrompt('phi3.5-v', 'short')], { maxLength: 40, keepLastPerRow: [keep, 0] });
  assert.equal(b.seqLen, 40);
  assert.deepEqual(b.truncated, [true, false]);
  const r0 = row(b.inputIds, 0, 40);
  assert.equal(r0[0], tok.specialIds.bos);
  assert.deepEqual(r0.slice(40 - keep), full.slice(full.length - keep));
  assert.deepEqual(r0.slice(1, 40 - keep), full.slice(1, 40 - keep));
  // the protected suffix decodes to the instruction and the assistant turn
  assert.match(tok.decode(full.slice(full.length - keep)), /Summary above sentence in one word: <\|end\|><\|assistant\|>$/);
});

test('padBatch pads pre-tokenized rows (after image expansion)', () => {
  const b = padBatch([[5, 6, 7], [8]], 0);
  assert.deepEqual(Array.from(b.inputIds), [5, 6, 7, 0, 0, 8]);
  assert.deepEqual(Array.from(b.attentionMask), [1, 1, 1, 0, 0, 1]);
});
