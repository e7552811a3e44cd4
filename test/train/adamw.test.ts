/** AdamW against torch.optim.AdamW (test/fixtures/train/adamw.json, tools/fixtures/make_adamw_fixture.py). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { tf, type Tensor } from '../../src/runtime/tf.js';
import { useDevice } from '../../src/runtime/devices.js';
import { AdamW } from '../../src/train/adamw.js';
import { fixture } from '../helpers.js';
import { UnimeError } from '../../src/errors.js';

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

// ---- per-parameter lr multipliers (lrScale) ----

/** Two parameters' worth of steps: the initial values and a gradient sequence, seeded. */
function lrScaleProblem(seed: number, steps: number) {
  let s = seed >>> 0;
  const rand = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
  const shapes: Record<string, number[]> = { a: [3, 4], b: [5], c: [2, 2] };
  const init: Record<string, number[]> = {};
  const grads: Record<string, number[]>[] = [];
  for (const [k, sh] of Object.entries(shapes)) init[k] = Array.from({ length: sh.reduce((x, y) => x * y, 1) }, rand);
  for (let t = 0; t < steps; t++) {
    const g: Record<string, number[]> = {};
    for (const [k, sh] of Object.entries(shapes)) g[k] = Array.from({ length: sh.reduce((x, y) => x * y, 1) }, () => 2 * rand());
    grads.push(g);
  }
  return { shapes, init, grads };
}

for (const hostLoop of [true, false]) {
  test(`AdamW lrScale (hostLoop ${hostLoop}): each parameter follows an unscaled AdamW at lr * scale, weight decay included`, async () => {
    await useDevice('cpu');
    const steps = 5;
    const lrs = [1e-2, 3e-2, 2e-2, 5e-3, 1e-2];
    const scales: Record<string, number> = { a: 0.25, b: 3, c: 1 };
    const { shapes, init, grads } = lrScaleProblem(hostLoop ? 11 : 12, steps);
    const hyper = { beta1: 0.85, beta2: 0.99, eps: 1e-7, weightDecay: 0.1, hostLoop };
    const tag = `adamw-lrscale-${hostLoop}`;
    const scaled = Object.fromEntries(Object.keys(shapes).map((k) => [k, mkVar(init[k]!, shapes[k]!, `${tag}.scaled.${k}`)]));
    const optScaled = new AdamW(Object.values(scaled), { ...hyper, noDecay: (n) => n.endsWith('.c'), lrScale: (n) => scales[n.slice(n.lastIndexOf('.') + 1)]! });
    for (let t = 0; t < steps; t++) {
      const g = new Map(Object.keys(shapes).map((k) => [scaled[k]!.name, tf.tensor(grads[t]![k]!, shapes[k])] as [string, Tensor]));
      optScaled.update(g, lrs[t]!);
      tf.dispose([...g.values()]);
    }
    for (const k of Object.keys(shapes)) {
      // the reference: this parameter alone, no lrScale, lr * scale
      const ref = mkVar(init[k]!, shapes[k]!, `${tag}.ref.${k}`);
      const opt = new AdamW([ref], { ...hyper, noDecay: () => k === 'c' });
      for (let t = 0; t < steps; t++) {
        const g = new Map([[ref.name, tf.tensor(grads[t]![k]!, shapes[k])] as [string, Tensor]]);
        opt.update(g, lrs[t]! * scales[k]!);
        tf.dispose([...g.values()]);
      }
      const got = scaled[k]!.dataSync();
      const want = ref.dataSync();
      for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got[i]! - want[i]!) <= 1e-7 * Math.max(1, Math.abs(want[i]!)), `${k}[${i}]: ${got[i]} vs ${want[i]}`);
      const mGot = optScaled.stateTensors().get(scaled[k]!.name + '.exp_avg')!.dataSync();
      const mWant = opt.stateTensors().get(ref.name + '.exp_avg')!.dataSync();
      assert.deepEqual(mGot, mWant, `${k}: moments do not depend on the lr`);
      // and the scale mattered: an unscaled run differs for a and b
      if (scales[k] !== 1) assert.ok(maxRel(got, init[k]!) > 0, `${k} moved`);
      opt.dispose();
      ref.dispose();
    }
    // the scales really are applied: a moved less than b relative to an unscaled run would
    const moved = (k: string) => Math.max(...Array.from(scaled[k]!.dataSync(), (x, i) => Math.abs(x - init[k]![i]!)));
    assert.ok(moved('b') > moved('a'), `b (scale 3) moved ${moved('b')}, a (scale 0.25) ${moved('a')}`);
    optScaled.dispose();
    tf.dispose(Object.values(scaled));
  });

  test(`AdamW lrScale 0 (hostLoop ${hostLoop}) leaves the parameter unchanged, weight decay included`, async () => {
    await useDevice('cpu');
    const { shapes, init, grads } = lrScaleProblem(hostLoop ? 21 : 22, 3);
    const tag = `adamw-lrscale0-${hostLoop}`;
    const a = mkVar(init.a!, shapes.a!, `${tag}.a`);
    const b = mkVar(init.b!, shapes.b!, `${tag}.b`);
    const opt = new AdamW([a, b], { weightDecay: 0.5, hostLoop, lrScale: (n) => (n === a.name ? 0 : 1) });
    for (let t = 0; t < 3; t++) {
      const g = new Map<string, Tensor>([
        [a.name, tf.tensor(grads[t]!.a!, shapes.a)],
        [b.name, tf.tensor(grads[t]!.b!, shapes.b)],
      ]);
      opt.update(g, 0.1);
      tf.dispose([...g.values()]);
    }
    assert.deepEqual(a.dataSync(), Float32Array.from(init.a!), 'scale 0: unchanged');
    assert.notDeepEqual(b.dataSync(), Float32Array.from(init.b!), 'scale 1: moved');
    assert.ok(opt.stateTensors().get(a.name + '.exp_avg')!.dataSync().some((x) => x !== 0), 'the moments still accumulate');
    opt.dispose();
    tf.dispose([a, b]);
  });
}

test('AdamW refuses a negative, NaN or infinite lrScale, naming the parameter', async () => {
  await useDevice('cpu');
  const p = mkVar([1, 2, 3], [3], 'adamw-lrscale-bad.p');
  const q = mkVar([1], [1], 'adamw-lrscale-bad.q');
  try {
    for (const bad of [-0.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      assert.throws(
        () => new AdamW([q, p], { lrScale: (n) => (n === p.name ? bad : 1) }),
        (e: unknown) => e instanceof UnimeError && e.message.includes('adamw-lrscale-bad.p') && e.message.includes(String(bad)),
        `scale ${bad}`,
      );
      // (a refused scale allocates nothing: the next test)
    }
    const ok = new AdamW([p, q], { lrScale: () => 0 });
    ok.dispose();
  } finally {
    tf.dispose([p, q]);
  }
});

test('AdamW: a refused lrScale leaves no moment variables behind', async () => {
  await useDevice('cpu');
  const p = mkVar([1, 2, 3], [3], 'adamw-lrscale-leak.p');
  try {
    const before = tf.memory().numTensors;
    assert.throws(() => new AdamW([p], { lrScale: () => -1 }), UnimeError);
    assert.equal(tf.memory().numTensors, before, 'moments left behind');
  } finally {
    p.dispose();
  }
});
