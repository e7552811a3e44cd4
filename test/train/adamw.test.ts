/** AdamW against torch.optim.AdamW (test/fixtures/train/adamw.json, tools/fixtures/make_adamw_fixture.py). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { tf, type Tensor } from '../../src/runtime/tf.js';
import { useDevice } from '../../src/runtime/devices.js';
import { AdamW } from '../../src/train/adamw.js';
import { fixture } from '../helpers.js';

interface Side { param: number[]; exp_avg: number[]; exp_avg_sq: number[] }
interface Case {
  name: string;
  betas: [number, number];
  eps: number;
  weight_decay: number;
  steps: number;
  shapes: Record<'w' | 'b', number[]>;
  lrs: number[];
  init: Record<'w' | 'b', number[]>;
  grads: Record<'w' | 'b', number[]>[];
  expected_float64: Record<'w' | 'b', Side>;
  expected_float32: Record<'w' | 'b', Side>;
}

/** A variable that owns its data (the initial tensor is freed). */
const mkVar = (values: number[], shape: number[], name: string): tf.Variable => tf.tidy(() => tf.variable(tf.tensor(values, shape), true, name));

const fx = JSON.parse(readFileSync(fixture('train', 'adamw.json'), 'utf8')) as { torch: string; cases: Case[] };

/** max |a - b| / max(|b|, floor) elementwise. */
function maxRel(a: ArrayLike<number>, b: ArrayLike<number>, floor = 1e-3): number {
  let m = 0;
  for (let i = 0; i < b.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!) / Math.max(Math.abs(b[i]!), floor));
  return m;
}

function runCase(c: Case): { opt: AdamW; vars: Record<'w' | 'b', tf.Variable> } {
  const vars = {
    w: mkVar(c.init.w, c.shapes.w, `adamw-test.${c.name}.w`),
    b: mkVar(c.init.b, c.shapes.b, `adamw-test.${c.name}.b`),
  };
  const opt = new AdamW([vars.w, vars.b], { beta1: c.betas[0], beta2: c.betas[1], eps: c.eps, weightDecay: c.weight_decay });
  for (let s = 0; s < c.steps; s++) {
    const g = c.grads[s]!;
    const grads = new Map<string, Tensor>([
      [vars.w.name, tf.tensor(g.w, c.shapes.w)],
      [vars.b.name, tf.tensor(g.b, c.shapes.b)],
    ]);
    opt.update(grads, c.lrs[s]!);
    tf.dispose([...grads.values()]);
  }
  return { opt, vars };
}

for (const c of fx.cases) {
  test(`AdamW matches torch.optim.AdamW (${fx.torch}), case ${c.name}: parameters and moments within 1e-6`, async () => {
    await useDevice('cpu');
    const before = tf.memory().numTensors;
    const { opt, vars } = runCase(c);
    const state = opt.stateTensors();
    const report: string[] = [];
    for (const k of ['w', 'b'] as const) {
      const p = vars[k].dataSync();
      const m = state.get(vars[k].name + '.exp_avg')!.dataSync();
      const v = state.get(vars[k].name + '.exp_avg_sq')!.dataSync();
      const ref = c.expected_float64[k];
      const errP = maxRel(p, ref.param);
      const errM = maxRel(m, ref.exp_avg, 1e-6);
      const errV = maxRel(v, ref.exp_avg_sq, 1e-9);
      const torch32 = maxRel(c.expected_float32[k].param, ref.param);
      const vs32 = maxRel(p, c.expected_float32[k].param);
      report.push(`${k}: param ${errP.toExponential(2)} (torch fp32 ${torch32.toExponential(2)}; ours vs torch fp32 ${vs32.toExponential(2)}), m ${errM.toExponential(2)}, v ${errV.toExponential(2)}`);
      assert.ok(errP < 1e-6, `${c.name}.${k} param rel error ${errP}`);
      assert.ok(errM < 1e-6, `${c.name}.${k} exp_avg rel error ${errM}`);
      assert.ok(errV < 1e-6, `${c.name}.${k} exp_avg_sq rel error ${errV}`);
    }
    assert.equal(opt.step, c.steps);
    console.log(`# adamw ${c.name}: ${report.join('; ')}`);
    opt.dispose();
    tf.dispose([vars.w, vars.b]);
    assert.equal(tf.memory().numTensors, before, 'no tensors left behind');
  });
}

test('AdamW state exports and imports exactly: a restored optimizer continues bit for bit', async () => {
  await useDevice('cpu');
  const c = fx.cases[0]!;
  const half = Math.floor(c.steps / 2);
  const mk = (tag: string) => ({
    w: mkVar(c.init.w, c.shapes.w, `adamw-rt.${tag}.w`),
    b: mkVar(c.init.b, c.shapes.b, `adamw-rt.${tag}.b`),
  });
  const stepWith = (opt: AdamW, vars: Record<'w' | 'b', tf.Variable>, s: number) => {
    const g = c.grads[s]!;
    const grads = new Map<string, Tensor>([[vars.w.name, tf.tensor(g.w, c.shapes.w)], [vars.b.name, tf.tensor(g.b, c.shapes.b)]]);
    opt.update(grads, c.lrs[s]!);
    tf.dispose([...grads.values()]);
  };
  const a = mk('a');
  const optA = new AdamW([a.w, a.b], { weightDecay: 0.05 });
  for (let s = 0; s < half; s++) stepWith(optA, a, s);
  // A second optimizer over same-named parameters: rename the moments by parameter name.
  const json = optA.stateJson();
  const moments = new Map<string, Float32Array>();
  for (const [k, t] of optA.stateTensors()) moments.set(k.replace('adamw-rt.a.', 'adamw-rt.b.'), t.dataSync() as Float32Array);
  const b = mk('b');
  b.w.assign(a.w);
  b.b.assign(a.b);
  const optB = new AdamW([b.w, b.b], { weightDecay: 0.05 });
  optB.loadState({ ...json, params: json.params.map((n) => n.replace('.a.', '.b.')) }, moments);
  for (let s = half; s < c.steps; s++) {
    stepWith(optA, a, s);
    stepWith(optB, b, s);
  }
  assert.deepEqual(Array.from(b.w.dataSync()), Array.from(a.w.dataSync()));
  assert.deepEqual(Array.from(b.b.dataSync()), Array.from(a.b.dataSync()));
  assert.equal(optB.step, optA.step);
  assert.throws(() => new AdamW([a.w], { weightDecay: 0.1 }).loadState(json, moments), /weightDecay/);
  optA.dispose();
  optB.dispose();
  tf.dispose([a.w, a.b, b.w, b.b]);
});
