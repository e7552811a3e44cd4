/**
 * Every fixture decoder against the independent PyTorch reference (float64) of
 * tools/fixtures/make_decoder_fixtures.py: hidden states, final state, pooled embeddings, causal
 * and bidirectional.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf } from '../../src/runtime/tf.js';
import { loadTextDecoder, type LoadedTextDecoder } from '../../src/models/text/load.js';
import { poolEmbeddings } from '../../src/models/pooling.js';
import { DECODER_FIXTURES, fixtureDir, maxAbsDiff, maxAbsDiffMasked, readReference } from './fixtures.js';

const TOL = 1e-4;

for (const name of DECODER_FIXTURES) {
  test(`${name}: matches the PyTorch reference`, async (t) => {
    const ref = readReference(name);
    const dec: LoadedTextDecoder = await loadTextDecoder(fixtureDir(name));
    try {
      assert.equal(dec.config.modelType, ref.model_type);
      assert.equal(dec.source.prefix, 'model.');
      const mask = ref.attention_mask;
      const errs = tf.tidy(() => {
        const ids = tf.tensor2d(ref.input_ids, undefined, 'int32');
        const out = dec.forward({ inputIds: ids, attentionMask: mask, outputHiddenStates: true });
        const hs = out.hiddenStates!;
        assert.equal(hs.length, dec.config.numLayers + 1);
        const hidden = hs.map((h, i) => maxAbsDiffMasked(h, ref.hidden_states[i]!, mask));
        const last = maxAbsDiffMasked(out.lastHiddenState, ref.last_hidden_state, mask);
        // transformers' last hidden_states entry is the final-normed state
        assert.equal(maxAbsDiff(hs[hs.length - 1]!, out.lastHiddenState.dataSync()), 0);
        const pooledLast = maxAbsDiff(poolEmbeddings(out.lastHiddenState, mask, 'last'), ref.pooled_last_token);
        const pooledMean = maxAbsDiff(poolEmbeddings(out.lastHiddenState, mask, 'mean'), ref.pooled_mean);
        const bi = dec.forward({ inputIds: ids, attentionMask: mask, bidirectional: true });
        const biLast = maxAbsDiffMasked(bi.lastHiddenState, ref.bidirectional.last_hidden_state, mask);
        const biPooled = maxAbsDiff(poolEmbeddings(bi.lastHiddenState, mask, 'last'), ref.bidirectional.pooled_last_token);
        const biChange = maxAbsDiffMasked(bi.lastHiddenState, ref.last_hidden_state, mask);
        const long = dec.forward({ inputIds: ref.long.input_ids, attentionMask: ref.long.attention_mask });
        const longLast = maxAbsDiffMasked(long.lastHiddenState, ref.long.last_hidden_state, ref.long.attention_mask);
        return { hidden, last, pooledLast, pooledMean, biLast, biPooled, biChange, longLast };
      });
      const worst = Math.max(...errs.hidden, errs.last, errs.pooledLast, errs.pooledMean, errs.biLast, errs.biPooled, errs.longLast);
      const line = `${name}: max abs err hidden_states ${errs.hidden.map((e) => e.toExponential(1)).join('/')} last ${errs.last.toExponential(1)} pooled last ${errs.pooledLast.toExponential(1)} mean ${errs.pooledMean.toExponential(1)} bidirectional ${errs.biLast.toExponential(1)} 20-token ${errs.longLast.toExponential(1)} (torch ${ref.torch_version})`;
      t.diagnostic(line);
      for (const [i, e] of errs.hidden.entries()) assert.ok(e < TOL, `hidden_states[${i}] off by ${e}`);
      assert.ok(worst < TOL, line);
      assert.ok(errs.biChange > 1e-3, 'bidirectional attention should change the outputs');
    } finally {
      dec.dispose();
    }
  });
}

test('left-padded, right-padded and unpadded rows give the same embedding', async () => {
  for (const name of DECODER_FIXTURES) {
    const ref = readReference(name);
    const dec = await loadTextDecoder(fixtureDir(name));
    try {
      tf.tidy(() => {
        // Row 1 of the fixture is left-padded by 3.
        const row = ref.input_ids[1]!.slice(3);
        const alone = dec.forward({ inputIds: [row] });
        const embAlone = poolEmbeddings(alone.lastHiddenState, [[1, 1, 1, 1]]);
        const leftMask = ref.attention_mask;
        const left = poolEmbeddings(dec.forward({ inputIds: ref.input_ids, attentionMask: leftMask }).lastHiddenState, leftMask);
        const leftRow = tf.slice(left, [1, 0], [1, -1]);
        const rightIds = [[...row, 0, 0, 0], ref.input_ids[0]!];
        const rightMask = [[1, 1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1]];
        const right = poolEmbeddings(dec.forward({ inputIds: rightIds, attentionMask: rightMask }).lastHiddenState, rightMask);
        const rightRow = tf.slice(right, [0, 0], [1, -1]);
        assert.ok(maxAbsDiff(leftRow, embAlone.dataSync()) < 1e-5, `${name}: left padding changed the embedding`);
        assert.ok(maxAbsDiff(rightRow, embAlone.dataSync()) < 1e-5, `${name}: right padding changed the embedding`);
        // mean pooling too
        const meanAlone = poolEmbeddings(alone.lastHiddenState, [[1, 1, 1, 1]], 'mean');
        const meanRight = poolEmbeddings(dec.forward({ inputIds: rightIds, attentionMask: rightMask }).lastHiddenState, rightMask, 'mean');
        assert.ok(maxAbsDiff(tf.slice(meanRight, [0, 0], [1, -1]), meanAlone.dataSync()) < 1e-5, `${name}: mean pooling differs`);
      });
    } finally {
      dec.dispose();
    }
  }
});
