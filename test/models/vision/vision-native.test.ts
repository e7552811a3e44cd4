/**
 * The vision towers on the native backend (fused layer norm, attention and activations) against the
 * same PyTorch reference as the cpu backend; skipped where the addon is not built.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf } from '../../../src/runtime/tf.js';
import { useDevice } from '../../../src/runtime/devices.js';
import { loadVisionTower } from '../../../src/models/vision/index.js';
import { skipNative } from '../../native/conformance.js';
import { maxAbsDiff, pixelsOf, readVisionReference, VISION_FIXTURES, visionFixtureDir } from './fixtures.js';

test('native backend: every fixture tower matches the PyTorch reference within 1e-4, forward and backward leak-free', { skip: skipNative }, async (t) => {
  await useDevice('native');
  try {
    for (const name of VISION_FIXTURES) {
      const ref = readVisionReference(name);
      const tower = await loadVisionTower(visionFixtureDir(name));
      try {
        const before = tf.memory().numTensors;
        const worst = tf.tidy(() => {
          const px = pixelsOf(ref);
          const out = tower.forward(px, { outputHiddenStates: true });
          const errs = out.hiddenStates!.map((h, i) => maxAbsDiff(h, ref.hidden_states[i]!));
          errs.push(maxAbsDiff(out.lastHiddenState, ref.last_hidden_state));
          if (ref.pooled) errs.push(maxAbsDiff(out.pooled!, ref.pooled));
          for (const f of ref.features) errs.push(maxAbsDiff(tower.selectFeatures(px, f), f.values));
          return Math.max(...errs);
        });
        const { value, grads } = tf.variableGrads(() => tf.tidy(() => tf.sum(tower.forward(pixelsOf(ref)).lastHiddenState)) as tf.Scalar, [...tower.weights.values()]);
        assert.ok(Number.isFinite(value.dataSync()[0]!));
        value.dispose();
        tf.dispose(Object.values(grads));
        assert.equal(tf.memory().numTensors, before, `${name}: leaked tensors`);
        t.diagnostic(`${name} (native): max abs err ${worst.toExponential(1)}`);
        assert.ok(worst < 1e-4, `${name}: off by ${worst}`);
      } finally {
        tower.dispose();
      }
    }
  } finally {
    await useDevice('cpu');
  }
});
