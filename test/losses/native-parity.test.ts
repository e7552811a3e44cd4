/**
 * The losses on the native backend (fused log-softmax / cross-entropy kernels and native matmul) agree
 * with the cpu reference and with PyTorch. Skipped when the addon is not built.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useDevice } from '../../src/runtime/devices.js';
import { FIXTURE_FILES, loadCases, lossAndGrads, normRelativeError, skipNative } from './support.js';

test('native backend: every fixture loss and gradient agrees with cpu and with PyTorch', { skip: skipNative }, async () => {
  let worstLoss = 0;
  let worstGrad = 0;
  try {
    for (const file of FIXTURE_FILES) {
      for (const c of loadCases(file)) {
        await useDevice('cpu');
        const cpu = lossAndGrads(c);
        await useDevice('native');
        const native = lossAndGrads(c);
        const lossErr = Math.abs(native.loss - cpu.loss) / Math.abs(cpu.loss);
        assert.ok(lossErr <= 1e-5, `${file} / ${c.name}: native loss ${native.loss} vs cpu ${cpu.loss}`);
        assert.ok(Math.abs(native.loss - c.expected.loss) <= 1e-5 * Math.abs(c.expected.loss), `${file} / ${c.name}: native loss vs PyTorch`);
        worstLoss = Math.max(worstLoss, lossErr);
        for (const name of Object.keys(c.inputs)) {
          const err = normRelativeError(native.grads[name]!, cpu.grads[name]!);
          worstGrad = Math.max(worstGrad, err);
          // Gradients: 1e-4, since the kernels sum in a different order and a scalar parameter's gradient
          // (CLIP's log-scale) is a sum of cancelling terms.
          assert.ok(err <= 1e-4, `${file} / ${c.name}: d/d${name} native vs cpu relative error ${err}`);
        }
      }
    }
  } finally {
    await useDevice('cpu');
  }
  if (process.env.UNIME_LOSS_REPORT) console.log(`native vs cpu: loss ${worstLoss.toExponential(1)}, grads ${worstGrad.toExponential(1)}`);
});
