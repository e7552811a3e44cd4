/**
 * The fixture CLIP and SigLIP vision towers against the independent PyTorch reference (float64) of
 * tools/fixtures/make_vision_fixtures.py: every hidden state, last_hidden_state, the pooled output
 * and LLaVA's feature selections.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf } from '../../../src/runtime/tf.js';
import { featureSelectionFromConfig, loadVisionTower } from '../../../src/models/vision/index.js';
import { readHfConfig } from '../../../src/io/hf-config.js';
import { maxAbsDiff, pixelsOf, readVisionReference, VISION_FIXTURES, visionFixtureDir } from './fixtures.js';

const TOL = 1e-4;

for (const name of VISION_FIXTURES) {
  test(`${name}: matches the PyTorch reference`, async (t) => {
    const ref = readVisionReference(name);
    const tower = await loadVisionTower(visionFixtureDir(name));
    try {
      assert.equal(tower.config.kind, ref.kind);
      assert.equal(tower.source.prefix, ref.prefix);
      assert.equal(tower.config.seqLen, ref.seq_len);
      const before = tf.memory().numTensors;
      const errs = tf.tidy(() => {
        const px = pixelsOf(ref);
        const out = tower.forward(px, { outputHiddenStates: true });
        const hs = out.hiddenStates!;
        assert.equal(hs.length, tower.config.numLayers + 1);
        assert.deepEqual(out.lastHiddenState.shape, [2, ref.seq_len, ref.hidden_size]);
        const hidden = hs.map((h, i) => maxAbsDiff(h, ref.hidden_states[i]!));
        const last = maxAbsDiff(out.lastHiddenState, ref.last_hidden_state);
        let pooled = 0;
        if (ref.pooled) {
          assert.deepEqual(out.pooled!.shape, [2, ref.hidden_size]);
          pooled = maxAbsDiff(out.pooled!, ref.pooled);
        } else assert.equal(out.pooled, undefined);
        const features = ref.features.map((f) => {
          const got = tower.selectFeatures(px, { layer: f.layer, strategy: f.strategy });
          assert.deepEqual(got.shape, f.shape, `features ${JSON.stringify(f.layer)}/${f.strategy}`);
          return maxAbsDiff(got, f.values);
        });
        // a forward without hidden states gives the same outputs
        const plain = tower.forward(px);
        assert.equal(plain.hiddenStates, undefined);
        assert.equal(maxAbsDiff(plain.lastHiddenState, out.lastHiddenState.dataSync()), 0);
        return { hidden, last, pooled, features };
      });
      assert.equal(tf.memory().numTensors, before, 'forward leaked tensors');
      const worst = Math.max(...errs.hidden, errs.last, errs.pooled, ...errs.features);
      const line = `${name}: max abs err hidden_states ${errs.hidden.map((e) => e.toExponential(1)).join('/')} last ${errs.last.toExponential(1)} pooled ${errs.pooled.toExponential(1)} features ${errs.features.map((e) => e.toExponential(1)).join('/')} (torch ${ref.torch_version})`;
      t.diagnostic(line);
      assert.ok(worst < TOL, line);
    } finally {
      tower.dispose();
    }
  });
}

test('LLaVA feature selection: config fields, default drops the class token, full keeps it', async () => {
  const dir = visionFixtureDir('llava-clip-tiny');
  const sel = featureSelectionFromConfig(await readHfConfig(dir));
  assert.deepEqual(sel, { layer: -2, strategy: 'default' });
  const ov = featureSelectionFromConfig(await readHfConfig(visionFixtureDir('llava-ov-siglip-tiny')));
  assert.deepEqual(ov, { layer: -2, strategy: 'full' });
  assert.deepEqual(featureSelectionFromConfig({ model_type: 'llava' }), { layer: -2, strategy: 'default' });
  assert.throws(() => featureSelectionFromConfig({ vision_feature_select_strategy: 'cls' }), /vision_feature_select_strategy: must be "default" or "full"/);

  const ref = readVisionReference('llava-clip-tiny');
  const tower = await loadVisionTower(dir);
  try {
    tf.tidy(() => {
      const px = pixelsOf(ref);
      const full = tower.selectFeatures(px, { layer: -2, strategy: 'full' });
      const dflt = tower.selectFeatures(px, sel);
      assert.deepEqual(full.shape, [2, ref.seq_len, ref.hidden_size]);
      assert.deepEqual(dflt.shape, [2, ref.seq_len - 1, ref.hidden_size]);
      // 'default' is 'full' without position 0 (the class token)
      assert.equal(maxAbsDiff(dflt, tf.slice(full, [0, 1, 0], [2, ref.seq_len - 1, ref.hidden_size]).dataSync()), 0);
      // -2 is the second-to-last hidden state, i.e. index numLayers - 1
      const out = tower.forward(px, { outputHiddenStates: true });
      assert.equal(maxAbsDiff(full, out.hiddenStates![tower.config.numLayers - 1]!.dataSync()), 0);
      assert.throws(() => tower.selectFeatures(px, { layer: 3, strategy: 'full' }), /vision_feature_layer 3 is out of range: the tower has 3 hidden states/);
      assert.throws(() => tower.selectFeatures(px, { layer: -4, strategy: 'full' }), /out of range/);
      assert.throws(() => tower.forward(tf.zeros([1, 3, 24, 24])), /pixel values must be \[batch, 3, 16, 16\], got \[1, 3, 24, 24\]/);
    });
  } finally {
    tower.dispose();
  }
});

test('gradients flow to every tower weight (for training the vision tower)', async () => {
  for (const name of ['clip-vision-tiny', 'siglip-vision-tiny'] as const) {
    const ref = readVisionReference(name);
    const tower = await loadVisionTower(visionFixtureDir(name));
    try {
      const before = tf.memory().numTensors;
      const vars = [...tower.weights.values()];
      const { value, grads } = tf.variableGrads(() => tf.tidy(() => tf.sum(tf.square(tower.forward(pixelsOf(ref)).pooled!))) as tf.Scalar, vars);
      const dead = Object.entries(grads).filter(([, g]) => !g.dataSync().some((v) => v !== 0) || g.dataSync().some((v) => !Number.isFinite(v)));
      assert.ok(Number.isFinite(value.dataSync()[0]!));
      // the pooled output (CLIP's class token, SigLIP's head) reads every position through attention, so every weight matters
      assert.deepEqual(dead.map(([n]) => n), [], `${name}: weights without a gradient`);
      value.dispose();
      tf.dispose(Object.values(grads));
      assert.equal(tf.memory().numTensors, before, `${name}: gradient pass leaked tensors`);
    } finally {
      tower.dispose();
    }
  }
});
