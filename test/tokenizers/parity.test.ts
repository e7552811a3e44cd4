import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { fixture } from '../helpers.js';
import { loadTokenizer, type Tokenizer } from '../../src/tokenizers/index.js';

interface Case {
  text: string;
  ids: number[];
  ids_with_special: number[];
  decoded: string;
}
interface FixtureRef {
  dir: string;
  vocab_size: number;
  bos: number | null;
  eos: number | null;
  unk: number | null;
  pad: number | null;
  pieces?: { piece: string; control: boolean; byte: boolean; unknown: boolean }[];
  cases: Case[];
}

const reference = JSON.parse(readFileSync(fixture('tokenizers', 'reference.json'), 'utf8')) as {
  fixtures: Record<string, FixtureRef>;
};

for (const [name, ref] of Object.entries(reference.fixtures)) {
  let tok: Tokenizer;
  const load = async (): Promise<Tokenizer> => (tok ??= await loadTokenizer(fixture('tokenizers', ref.dir)));

  test(`${name}: loads as the right kind with the reference vocabulary size and special ids`, async () => {
    const t = await load();
    const hasJson = existsSync(fixture('tokenizers', ref.dir, 'tokenizer.json'));
    assert.equal(t.kind, hasJson ? 'tokenizer.json' : 'sentencepiece');
    assert.equal(t.vocabSize, ref.vocab_size);
    assert.deepEqual(t.specialIds, {
      bos: ref.bos ?? undefined,
      eos: ref.eos ?? undefined,
      unk: ref.unk ?? undefined,
      pad: ref.pad ?? undefined,
    });
  });

  for (const c of ref.cases) {
    test(`${name}: ids match the reference for ${JSON.stringify(c.text)}`, async () => {
      const t = await load();
      assert.deepEqual(t.encode(c.text, { addSpecialTokens: false }), c.ids);
      assert.deepEqual(t.encode(c.text), c.ids_with_special);
      assert.deepEqual(t.encode(c.text, { addSpecialTokens: true }), c.ids_with_special);
      assert.equal(t.decode(c.ids), c.decoded);
    });
  }

  if (ref.pieces) {
    test(`${name}: every piece maps to its id and back`, async () => {
      const t = await load();
      ref.pieces!.forEach((p, id) => {
        assert.equal(t.idToToken(id), p.piece, `id ${id}`);
        // a piece that is also an added token (<unk>, <s>, </s>) keeps the same id
        assert.equal(t.tokenToId(p.piece), id, `piece ${p.piece}`);
      });
    });
  }
}
