/** Shared pieces of the loss tests: fixture loading, the name -> loss table, and tolerant comparison. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { tf, type Tensor } from '../../src/runtime/tf.js';
import { listDevices } from '../../src/runtime/devices.js';
import { fixture } from '../helpers.js';
import {
  clipInfoNce,
  hardNegativeInfoNce,
  inbatchInfoNce,
  inbatchKlDistillation,
  positiveCosineLoss,
  procLipDistillation,
  sigmoidPairLoss,
} from '../../src/losses/index.js';

export interface Arr {
  shape: number[];
  data: number[];
}

export interface FixtureCase {
  name: string;
  loss: string;
  options: Record<string, unknown>;
  inputs: Record<string, Arr>;
  expected: {
    loss: number;
    grads: Record<string, Arr>;
    stats?: Record<string, number | null>;
    indices?: number[];
    filteredCounts?: number[];
  };
}

export const FIXTURE_FILES = [
  'inbatch-infonce',
  'hard-negative-infonce',
  'inbatch-kl-distillation',
  'clip-infonce',
  'sigmoid-pair-loss',
  'positive-cosine-loss',
  'proclip-distillation',
] as const;

export function loadCases(file: string): FixtureCase[] {
  return (JSON.parse(readFileSync(fixture('losses', `${file}.json`), 'utf8')) as { cases: FixtureCase[] }).cases;
}

type LossFn = (x: Record<string, Tensor>, options: Record<string, unknown>) => Tensor;

/** Each fixture's loss name, called with the fixture's named inputs. */
export const LOSSES: Record<string, LossFn> = {
  inbatchInfoNce: (x, o) => inbatchInfoNce(x.queries!, x.candidates!, { ...o, extraNegatives: x.extraNegatives ?? null }),
  hardNegativeInfoNce: (x, o) => hardNegativeInfoNce(x.queries!, x.candidates!, o).loss,
  inbatchKlDistillation: (x, o) => inbatchKlDistillation(x.student!, x.teacher!, o),
  clipInfoNce: (x, o) => clipInfoNce(x.image!, x.text!, x.logScale!, { ...o, negativeText: x.negativeText ?? null }),
  sigmoidPairLoss: (x, o) => sigmoidPairLoss(x.image!, x.text!, x.logTemperature!, x.bias!, o),
  positiveCosineLoss: (x) => positiveCosineLoss(x.a!, x.b!),
  procLipDistillation: (x, o) => procLipDistillation(x.student!, x.teacher!, o),
};

export function toTensor(a: Arr): Tensor {
  return tf.tensor(a.data, a.shape, 'float32');
}

/** The loss value and its gradient w.r.t. every named input, as plain arrays (nothing left allocated). */
export function lossAndGrads(c: FixtureCase): { loss: number; grads: Record<string, Float32Array> } {
  const names = Object.keys(c.inputs);
  const fn = LOSSES[c.loss];
  assert.ok(fn, `no loss named ${c.loss}`);
  return tf.tidy(() => {
    const xs = names.map((n) => toTensor(c.inputs[n]!));
    const { value, grads } = tf.valueAndGrads((...ts: Tensor[]) => fn(Object.fromEntries(names.map((n, i) => [n, ts[i]!])), c.options) as tf.Scalar)(xs);
    return {
      loss: value.dataSync()[0]!,
      grads: Object.fromEntries(names.map((n, i) => [n, Float32Array.from(grads[i]!.dataSync())])),
    };
  });
}

/** ||actual - expected|| / ||expected|| (Euclidean; 0 when both are zero): the relative error of a whole tensor. */
export function normRelativeError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  assert.equal(actual.length, expected.length, 'length');
  let num = 0;
  let den = 0;
  for (let i = 0; i < expected.length; i++) {
    num += (actual[i]! - expected[i]!) ** 2;
    den += expected[i]! ** 2;
  }
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}

/**
 * Largest error of `actual` against `expected`, relative to max(|expected_i|, floor * max_j |expected_j|):
 * elementwise relative error, except that entries far below the tensor's own scale are measured against
 * that scale (float32 cannot resolve them relatively). floor 0 gives the pure elementwise relative error.
 */
export function relativeError(actual: ArrayLike<number>, expected: ArrayLike<number>, floor = 1e-2): number {
  assert.equal(actual.length, expected.length, 'length');
  let scale = 0;
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]!));
  let worst = 0;
  for (let i = 0; i < expected.length; i++) {
    const denom = Math.max(Math.abs(expected[i]!), floor * scale, 1e-30);
    worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!) / denom);
  }
  return worst;
}

const native = listDevices().find((d) => d.name === 'native');
/** node:test's skip option for the native parity checks. */
export const skipNative: string | false = native?.availability.available ? false : `native addon unavailable: ${native?.availability.reason ?? 'not registered'}`;
