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

test('the fused host loop and the tensor-op update agree over several steps (weight decay on one parameter)', async () => {
  await useDevice('cpu');
  const make = (x: string) => [tf.variable(tf.tensor2d([[0.5, -1.25, 2], [3, -0.75, 0.125]]), true, `host-vs-ops-${x}-w`), tf.variable(tf.tensor1d([0.1, -0.2, 0.3]), true, `host-vs-ops-${x}-b`)];
  const [pa, pb] = [make('a'), make('b')];
  const opts = { weightDecay: 0.1, noDecay: (n: string) => n.endsWith('-b') };
  const host = new AdamW(pa, { ...opts, hostLoop: true });
  const ops = new AdamW(pb, { ...opts, hostLoop: false });
  for (let step = 0; step < 5; step++) {
    const g = (x: string, k: number) => new Map<string, tf.Tensor>([
      [`host-vs-ops-${x}-w`, tf.tensor2d([[0.3 * k, -0.1, 0.05], [-0.2, 0.4 * k, 0.01]])],
      [`host-vs-ops-${x}-b`, tf.tensor1d([0.02, -0.03 * k, 0.5])],
    ]);
    const [ga, gb] = [g('a', step + 1), g('b', step + 1)];
    host.update(ga, 1e-2);
    ops.update(gb, 1e-2);
    for (const t of [...ga.values(), ...gb.values()]) t.dispose();
  }
  for (let i = 0; i < 2; i++) {
    const [a, b] = [pa[i]!.dataSync(), pb[i]!.dataSync()];
    for (let j = 0; j < a.length; j++) assert.ok(Math.abs(a[j]! - b[j]!) < 1e-6, `param ${i}[${j}]: ${a[j]} vs ${b[j]}`);
  }
  for (const v of [...pa, ...pb]) v.dispose();
});
