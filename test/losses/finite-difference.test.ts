/**
 * Finite-difference checks of every loss's gradient: along random directions in the space of all its
 * inputs, the central difference (f(x + h v) - f(x - h v)) / 2h must match grad . v. float32 forward
 * passes limit the precision, so moderate temperatures, h = 1e-2 and a 2% tolerance are used: this catches
 * a wrong or missing gradient, the fixtures check precision.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf, type Tensor } from '../../src/runtime/tf.js';
import { useDevice } from '../../src/runtime/devices.js';
import { Rng } from '../../src/runtime/rng.js';
import { LOSSES } from './support.js';

interface Check {
  loss: string;
  options: Record<string, unknown>;
  shapes: Record<string, number[]>;
  /** Inputs to hold fixed (no gradient expected, e.g. a teacher), or set to a given value. */
  values?: Record<string, number>;
  noGradient?: string[];
  /** Step; smaller where a piecewise term (SmoothL1) has a kink in its second derivative nearby. */
  h?: number;
}

const CHECKS: Check[] = [
  { loss: 'inbatchInfoNce', options: { temperature: 0.2 }, shapes: { queries: [5, 6], candidates: [5, 6], extraNegatives: [2, 6] } },
  { loss: 'inbatchInfoNce', options: { temperature: 1, normalize: false }, shapes: { queries: [4, 3], candidates: [4, 3] } },
  { loss: 'hardNegativeInfoNce', options: { temperature: 0.2, k: 3, beta: 0.1 }, shapes: { queries: [4, 6], candidates: [7, 6] } },
  { loss: 'hardNegativeInfoNce', options: { temperature: 0.2, k: 8, beta: 0.3 }, shapes: { queries: [4, 6], candidates: [7, 6] } },
  { loss: 'inbatchKlDistillation', options: { studentTemperature: 0.2, teacherTemperature: 0.1 }, shapes: { student: [5, 4], teacher: [5, 7] }, noGradient: ['teacher'] },
  {
    loss: 'inbatchKlDistillation',
    options: { studentTemperature: 0.3, teacherTemperature: 0.2, direction: 'student-teacher', reduction: 'sum', includeDiagonal: false },
    shapes: { student: [5, 4], teacher: [5, 7] },
    noGradient: ['teacher'],
  },
  { loss: 'clipInfoNce', options: {}, shapes: { image: [4, 5], text: [4, 5], logScale: [] }, values: { logScale: Math.log(5) } },
  { loss: 'sigmoidPairLoss', options: {}, shapes: { image: [4, 5], text: [4, 5], logTemperature: [], bias: [] }, values: { logTemperature: Math.log(3), bias: -1 } },
  { loss: 'positiveCosineLoss', options: {}, shapes: { a: [4, 5], b: [4, 5] } },
  { loss: 'procLipDistillation', options: { smoothL1Beta: 0.3 }, shapes: { student: [5, 4], teacher: [5, 4] }, noGradient: ['teacher'], h: 2e-3 },
  { loss: 'procLipDistillation', options: { reduction: 'mean', structureOnNormalized: false }, shapes: { student: [5, 4], teacher: [5, 4] }, noGradient: ['teacher'] },
];

function evalLoss(c: Check, xs: Record<string, Tensor>): number {
  return tf.tidy(() => LOSSES[c.loss]!(xs, c.options).dataSync()[0]!);
}

for (const [n, c] of CHECKS.entries()) {
  test(`finite differences: ${c.loss} ${JSON.stringify(c.options)}`, async () => {
    await useDevice('cpu');
    const rng = new Rng(`fd-${n}`);
    const names = Object.keys(c.shapes);
    const base: Record<string, Float32Array> = {};
    for (const name of names) {
      const size = c.shapes[name]!.reduce((a, b) => a * b, 1);
      base[name] = c.values?.[name] !== undefined ? Float32Array.of(c.values[name]!) : rng.fillNormal(new Float32Array(size), 0, 1);
    }
    const make = (shift: Record<string, Float32Array> | null, h: number) =>
      Object.fromEntries(names.map((name) => [name, tf.tensor(base[name]!.map((x, i) => x + (shift ? h * shift[name]![i]! : 0)), c.shapes[name]!)]));
    const before = tf.memory().numTensors;
    const grads = tf.tidy(() => {
      const xs = make(null, 0);
      const { grads: g } = tf.valueAndGrads((...ts: Tensor[]) => LOSSES[c.loss]!(Object.fromEntries(names.map((nm, i) => [nm, ts[i]!])), c.options) as tf.Scalar)(names.map((nm) => xs[nm]!));
      return names.map((_, i) => Float32Array.from(g[i]!.dataSync()));
    });
    for (const name of c.noGradient ?? []) assert.ok(grads[names.indexOf(name)]!.every((x) => x === 0), `${name} must get no gradient`);
    const h = c.h ?? 1e-2;
    for (let trial = 0; trial < 4; trial++) {
      const dir: Record<string, Float32Array> = {};
      let analytic = 0;
      names.forEach((name, i) => {
        // A stop-gradient input is held fixed: its finite difference is not meant to match (zero) gradients.
        const held = c.noGradient?.includes(name) ?? false;
        dir[name] = held ? new Float32Array(base[name]!.length) : rng.fillNormal(new Float32Array(base[name]!.length), 0, 1);
        dir[name]!.forEach((v, j) => (analytic += v * grads[i]![j]!));
      });
      const plus = make(dir, h);
      const minus = make(dir, -h);
      const numeric = (evalLoss(c, plus) - evalLoss(c, minus)) / (2 * h);
      tf.dispose([...Object.values(plus), ...Object.values(minus)]);
      assert.ok(Math.abs(numeric - analytic) <= 2e-2 * Math.max(Math.abs(analytic), 1e-1), `direction ${trial}: finite difference ${numeric} vs gradient ${analytic}`);
    }
    assert.equal(tf.memory().numTensors, before, 'tensors leaked');
  });
}
