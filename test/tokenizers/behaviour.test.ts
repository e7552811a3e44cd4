import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { fixture, tempDir } from '../helpers.js';
import { UnimeError } from '../../src/errors.js';
import { AddedTokenSplitter, loadTokenizer, parseSentencePieceModel, type AddedToken } from '../../src/tokenizers/index.js';
import { withoutDummyPrefix } from '../../src/tokenizers/sentencepiece-model.js';

const SPM_UNIGRAM = fixture('tokenizers', 'spm-unigram');
const SPM_BPE = fixture('tokenizers', 'spm-bpe-bytefallback');
const SPM_NONLEGACY = fixture('tokenizers', 'spm-bpe-nonlegacy');
const SPM_JSON = fixture('tokenizers', 'spm-bpe-json');
const BBPE = fixture('tokenizers', 'bbpe-qwen');

const ROUND_TRIP = [
  'Hello world',
  'The quick brown fox jumps over the lazy dog.',
  'line1\nline2\n\n  indented',
  'Café naïve résumé jalapeño',
  '東京は日本の首都です。',
  'Emoji 😀 and 🚀 rocket',
  'digits 1234567890 and 3.14159',
  "It's we're they'll I'd",
  'tab\tseparated',
];

test('byte-fallback sentencepiece and byte-level BPE decode(encode(x)) === x for any text', async () => {
  for (const dir of [SPM_BPE, SPM_NONLEGACY, SPM_JSON, BBPE]) {
    const tok = await loadTokenizer(dir);
    for (const text of ROUND_TRIP) {
      assert.equal(tok.decode(tok.encode(text, { addSpecialTokens: false })), text, `${path.basename(dir)}: ${text}`);
    }
  }
});

test('unigram sentencepiece without byte fallback round-trips text it covers', async () => {
  const tok = await loadTokenizer(SPM_UNIGRAM);
  for (const text of ['Hello world', 'The quick brown fox jumps over the lazy dog.', '東京は日本の首都です。']) {
    assert.equal(tok.decode(tok.encode(text, { addSpecialTokens: false })), text);
  }
  // an emoji it never saw becomes <unk>
  assert.ok(tok.encode('😀', { addSpecialTokens: false }).includes(tok.specialIds.unk!));
});

test('special tokens written inline are single ids', async () => {
  const phi = await loadTokenizer(SPM_BPE);
  for (const name of ['<|user|>', '<|end|>', '<|assistant|>', '<|endoftext|>', '<s>', '</s>']) {
    const id = phi.tokenToId(name)!;
    assert.ok(id !== undefined, name);
    const ids = phi.encode(`a ${name} b`, { addSpecialTokens: false });
    assert.equal(ids.filter((x) => x === id).length, 1, name);
  }
  const qwen = await loadTokenizer(BBPE);
  const ids = qwen.encode('<|vision_start|><|image_pad|><|vision_end|><image><|im_start|>', { addSpecialTokens: false });
  assert.deepEqual(ids, ['<|vision_start|>', '<|image_pad|>', '<|vision_end|>', '<image>', '<|im_start|>'].map((t) => qwen.tokenToId(t)));
  const llava = await loadTokenizer(SPM_UNIGRAM);
  assert.equal(llava.encode('x<image>y', { addSpecialTokens: false }).filter((x) => x === llava.tokenToId('<image>')).length, 1);
});

test('legacy: false encodes text after an added token without the extra prefix space', async () => {
  const legacy = await loadTokenizer(SPM_BPE);
  const modern = await loadTokenizer(SPM_NONLEGACY);
  const after = (tok: typeof legacy): number[] => {
    const ids = tok.encode('<s>inline', { addSpecialTokens: false });
    return ids.slice(1);
  };
  assert.ok(!modern.idToToken(after(modern)[0]!)!.startsWith('\u2581'));
  assert.ok(legacy.idToToken(after(legacy)[0]!)!.startsWith('\u2581'));
  assert.equal(modern.decode(after(modern)), 'inline');
  // the same text without added tokens encodes the same either way
  assert.deepEqual(modern.encode('plain text here'), legacy.encode('plain text here'));
});

test('rstrip added tokens swallow the whitespace after them (Phi-3 style), others do not', async () => {
  const phi = await loadTokenizer(SPM_BPE);
  const end = phi.tokenToId('<|end|>')!;
  const user = phi.tokenToId('<|user|>')!;
  assert.deepEqual(phi.encode('<|end|>\n', { addSpecialTokens: false }), [end]);
  assert.notDeepEqual(phi.encode('<|user|>\n', { addSpecialTokens: false }), [user]);
});

test('skipSpecialTokens drops BOS/EOS and chat markers from decoded text', async () => {
  const phi = await loadTokenizer(SPM_BPE);
  const ids = phi.encode('<|user|>\nhello world<|end|>\n');
  assert.equal(ids[0], phi.specialIds.bos);
  assert.ok(phi.decode(ids).startsWith('<s><|user|>'));
  assert.equal(phi.decode(ids, { skipSpecialTokens: true }).trim(), 'hello world');
});

test('BOS/EOS follow add_bos_token / add_eos_token in tokenizer_config.json', async () => {
  const phi = await loadTokenizer(SPM_BPE);
  assert.equal(phi.addBosToken, true);
  assert.equal(phi.addEosToken, false);
  const plain = phi.encode('hello', { addSpecialTokens: false });
  assert.deepEqual(phi.encode('hello'), [phi.specialIds.bos, ...plain]);

  const qwen = await loadTokenizer(BBPE);
  assert.equal(qwen.addBosToken, false);
  assert.equal(qwen.addEosToken, false);
  assert.deepEqual(qwen.encode('hello'), qwen.encode('hello', { addSpecialTokens: false }));

  const { dir, cleanup } = await tempDir();
  try {
    for (const [src, files] of [
      [SPM_BPE, ['tokenizer.model', 'tokenizer_config.json']],
      [BBPE, ['tokenizer.json', 'tokenizer_config.json']],
    ] as const) {
      const d = path.join(dir, path.basename(src));
      await fsp.mkdir(d);
      for (const f of files) await fsp.copyFile(path.join(src, f), path.join(d, f));
      const cfgFile = path.join(d, 'tokenizer_config.json');
      const cfg = JSON.parse(await fsp.readFile(cfgFile, 'utf8'));
      Object.assign(cfg, { add_bos_token: false, add_eos_token: true });
      await fsp.writeFile(cfgFile, JSON.stringify(cfg));
      const tok = await loadTokenizer(d);
      const body = tok.encode('hello', { addSpecialTokens: false });
      assert.deepEqual(tok.encode('hello'), [...body, tok.specialIds.eos], src);
    }
  } finally {
    await cleanup();
  }
});

test('special tokens come from special_tokens_map.json when tokenizer_config.json does not name them', async () => {
  const tok = await loadTokenizer(SPM_UNIGRAM);
  assert.deepEqual(tok.specialTokens, { bos: '<s>', eos: '</s>', unk: '<unk>', pad: '<unk>' });
});

test('a single file path loads too, and prefer picks sentencepiece when both files exist', async () => {
  const tok = await loadTokenizer(path.join(BBPE, 'tokenizer.json'));
  assert.equal(tok.kind, 'tokenizer.json');
  const { dir, cleanup } = await tempDir();
  try {
    await fsp.copyFile(path.join(SPM_BPE, 'tokenizer.model'), path.join(dir, 'tokenizer.model'));
    await fsp.copyFile(path.join(BBPE, 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
    assert.equal((await loadTokenizer(dir)).kind, 'tokenizer.json');
    assert.equal((await loadTokenizer(dir, { prefer: 'sentencepiece' })).kind, 'sentencepiece');
  } finally {
    await cleanup();
  }
});

test('loading many sentencepiece models leaves no process-wide listeners behind', async () => {
  const before = [process.listenerCount('uncaughtException'), process.listenerCount('unhandledRejection')];
  for (let i = 0; i < 3; i++) await loadTokenizer(SPM_UNIGRAM);
  assert.deepEqual([process.listenerCount('uncaughtException'), process.listenerCount('unhandledRejection')], before);
});

async function assertUnimeError(p: Promise<unknown>, file: string, fix: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof UnimeError, String(e));
    assert.equal(e.file, file);
    assert.match(e.message, fix);
    return true;
  });
}

test('clear errors for missing and broken tokenizer files, naming the file and the fix', async () => {
  const { dir, cleanup } = await tempDir();
  try {
    await assertUnimeError(loadTokenizer(path.join(dir, 'nope')), path.join(dir, 'nope'), /fix: .*checkpoint directory/);
    await assertUnimeError(loadTokenizer(dir), dir, /neither tokenizer\.json nor tokenizer\.model[\s\S]*fix:/);
    await fsp.writeFile(path.join(dir, 'tokenizer.json'), '{"model": ');
    await assertUnimeError(loadTokenizer(dir), path.join(dir, 'tokenizer.json'), /not valid JSON[\s\S]*fix: download/);
    await fsp.writeFile(path.join(dir, 'tokenizer.json'), '{}');
    await assertUnimeError(loadTokenizer(dir), path.join(dir, 'tokenizer.json'), /no "model" section/);
    await fsp.rm(path.join(dir, 'tokenizer.json'));
    await fsp.writeFile(path.join(dir, 'tokenizer.model'), Buffer.from([0x0a, 0xff, 0x01]));
    await assertUnimeError(loadTokenizer(dir), path.join(dir, 'tokenizer.model'), /not a readable sentencepiece model[\s\S]*fix:/);
    await fsp.copyFile(path.join(SPM_BPE, 'tokenizer.model'), path.join(dir, 'tokenizer.model'));
    await fsp.writeFile(path.join(dir, 'tokenizer_config.json'), '{"add_bos_token": "yes"}');
    await assertUnimeError(loadTokenizer(dir), path.join(dir, 'tokenizer_config.json'), /add_bos_token: must be true or false/);
  } finally {
    await cleanup();
  }
});

test('decode rejects ids outside the vocabulary', async () => {
  for (const dir of [SPM_BPE, BBPE]) {
    const tok = await loadTokenizer(dir);
    assert.throws(() => tok.decode([tok.vocabSize]), /outside the vocabulary/);
  }
});

test('a lone surrogate encodes as U+FFFD and does not garble the text after it', async () => {
  for (const dir of [SPM_BPE, SPM_NONLEGACY, SPM_JSON, BBPE]) {
    const tok = await loadTokenizer(dir);
    assert.deepEqual(tok.encode('x\ud800y z'), tok.encode('x\ufffdy z'), dir);
  }
});

test('withoutDummyPrefix rewrites only add_dummy_prefix in the model protobuf', async () => {
  const file = path.join(SPM_BPE, 'tokenizer.model');
  const buf = await fsp.readFile(file);
  const before = parseSentencePieceModel(buf, file);
  const after = parseSentencePieceModel(withoutDummyPrefix(buf, file), file);
  assert.equal(before.addDummyPrefix, true);
  assert.deepEqual(after, { ...before, addDummyPrefix: false });
  assert.equal(before.modelType, 2);
  assert.equal(before.byteFallback, true);
  assert.equal(before.normalizerName, 'identity');
});

test('AddedTokenSplitter: longest match wins, lstrip/rstrip eat whitespace, single_word needs word edges', () => {
  const mk = (id: number, content: string, o: Partial<AddedToken> = {}): AddedToken => ({
    id, content, special: true, lstrip: false, rstrip: false, singleWord: false, normalized: false, ...o,
  });
  const s = new AddedTokenSplitter([mk(1, '<a>'), mk(2, '<a><b>'), mk(3, '<l>', { lstrip: true }), mk(4, 'cat', { singleWord: true })]);
  const show = (text: string): (string | number)[] => s.split(text).map((g) => ('token' in g ? g.token.id : g.text));
  assert.deepEqual(show('x<a><b>y<a>'), ['x', 2, 'y', 1]);
  assert.deepEqual(show('x  <l> y'), ['x', 3, ' y']);
  assert.deepEqual(show('a cat, concat cats'), ['a ', 4, ', concat cats']);
  assert.deepEqual(show(''), []);
});
