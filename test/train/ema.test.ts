/** Ema (src/train/ema.ts): copy at construction, the closed form after k updates, state()/load(), decay checks. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf } from '../../src/runtime/tf.js';
import { useDevice } from '../../src/runtime/devices.js';
import { Rng } from '../../src/runtime/rng.js';
import { UnimeError } from '../../src/errors.js';
import { Ema } from '../../src/train/ema.js';

const SHAPES: Record<string, number[]> = { 'layer.weight': [3, 4], 'layer.bias': [4], scalar: [] };

function values(rng: Rng, n: number): Float32Array {
  return rng.fillNormal(new Float32Array(n), 0, 1);
}

function makeParams(rng: Rng, tag: string): Map<string, tf.Variable> {
  const out = new Map<string, tf.Variable>();
  for (const [k, shape] of Object.entries(SHAPES)) {
    const n = shape.reduce((a, b) => a * b, 1);
    out.set(k, tf.tidy(() => tf.variable(tf.tensor(values(rng, n), shape), true, `ema-test.${tag}.${k}`)));
  }
  return out;
}

const size = (k: string) => SHAPES[k]!.reduce((a, b) => a * b, 1);

test('Ema starts as a copy of the parameters, independent of them', async () => {
  await useDevice('cpu');
  const params = makeParams(new Rng('ema-copy'), 'copy');
  const ema = new Ema(params, 0.9);
  try {
    assert.equal(ema.updates, 0);
    assert.deepEqual([...ema.shadow.keys()], [...params.keys()]);
    for (const [k, p] of params) {
      const s = ema.shadow.get(k)!;
      assert.notEqual(s, p);
      assert.deepEqual(s.shape, p.shape);
      assert.deepEqual(s.dataSync(), p.dataSync(), k);
      assert.equal(s.trainable, false, `${k} shadow is not trainable`);
    }
    const w = params.get('layer.weight')!;
    const before = Float32Array.from(w.dataSync());
    w.assign(tf.zerosLike(w));
    assert.deepEqual(ema.shadow.get('layer.weight')!.dataSync(), before, 'changing a parameter does not change its shadow');
  } finally {
    ema.dispose();
    for (const p of params.values()) p.dispose();
  }
});

for (const decay of [0, 0.5, 0.9, 0.999]) {
  test(`Ema with decay ${decay}: after k updates each shadow equals the float64 closed form`, async () => {
    await useDevice('cpu');
    const rng = new Rng(`ema-closed-${decay}`);
    const params = makeParams(rng, `closed-${decay}`);
    const ema = new Ema(params, decay);
    const k = 7;
    // p_0 = initial; before update j (1..k) the params take new values p_j.
    const seq = new Map<string, Float64Array[]>();
    for (const [key, p] of params) seq.set(key, [Float64Array.from(p.dataSync())]);
    try {
      for (let j = 1; j <= k; j++) {
        for (const [key, p] of params) {
          const v = values(rng, size(key));
          for (let i = 0; i < v.length; i++) v[i] = v[i]! + j; // drift, so the average is not the mean
          p.assign(tf.tensor(v, SHAPES[key]));
          seq.get(key)!.push(Float64Array.from(v));
        }
        const before = tf.memory().numTensors;
        ema.update();
        assert.equal(tf.memory().numTensors, before, 'update leaks nothing');
      }
      assert.equal(ema.updates, k);
      for (const [key, ps] of seq) {
        // shadow_k = d^k p_0 + sum_{j=1..k} (1 - d) d^(k - j) p_j
        const want = new Float64Array(size(key));
        for (let i = 0; i < want.length; i++) {
          let s = decay ** k * ps[0]![i]!;
          for (let j = 1; j <= k; j++) s += (1 - decay) * decay ** (k - j) * ps[j]![i]!;
          want[i] = s;
        }
        const got = ema.shadow.get(key)!.dataSync();
        for (let i = 0; i < want.length; i++) {
          assert.ok(Math.abs(got[i]! - want[i]!) <= 1e-5 * Math.max(1, Math.abs(want[i]!)), `${key}[${i}]: ${got[i]} vs ${want[i]}`);
        }
        if (decay === 0) assert.deepEqual(got, Float32Array.from(ps[k]!), `${key}: decay 0 tracks the parameter exactly`);
      }
    } finally {
      ema.dispose();
      for (const p of params.values()) p.dispose();
    }
  });
}

test('Ema state() / load() round trip restores the shadows and the update count exactly', async () => {
  await useDevice('cpu');
  const rng = new Rng('ema-state');
  const params = makeParams(rng, 'state');
  const a = new Ema(params, 0.8);
  const b = new Ema(params, 0.8);
  try {
    for (let j = 0; j < 3; j++) {
      for (const [key, p] of params) p.assign(tf.tensor(values(rng, size(key)), SHAPES[key]));
      a.update();
    }
    const state = await a.state();
    assert.deepEqual([...state.keys()].sort(), Object.keys(SHAPES).sort());
    for (const [key, s] of state) assert.deepEqual(s.shape, SHAPES[key]);
    assert.notDeepEqual(b.shadow.get('layer.weight')!.dataSync(), a.shadow.get('layer.weight')!.dataSync());
    b.load(state, a.updates, 'ckpt/ema.safetensors');
    assert.equal(b.updates, 3);
    for (const [key, s] of a.shadow) assert.deepEqual(b.shadow.get(key)!.dataSync(), s.dataSync(), key);
    // both continue identically
    for (const [key, p] of params) p.assign(tf.tensor(values(rng, size(key)), SHAPES[key]));
    a.update();
    b.update();
    for (const [key, s] of a.shadow) assert.deepEqual(b.shadow.get(key)!.dataSync(), s.dataSync(), key);
    assert.equal(b.updates, a.updates);

    const missing = new Map(state);
    missing.delete('layer.bias');
    assert.throws(() => b.load(missing, 1, 'ckpt/ema.safetensors'), (e: unknown) => e instanceof UnimeError && e.message.includes('layer.bias') && e.file === 'ckpt/ema.safetensors');
    const wrong = new Map(state);
    wrong.set('layer.weight', { shape: [2, 2], data: new Float32Array(4) });
    assert.throws(() => b.load(wrong, 1, 'ckpt/ema.safetensors'), (e: unknown) => e instanceof UnimeError && e.message.includes('layer.weight'));
  } finally {
    a.dispose();
    b.dispose();
    for (const p of params.values()) p.dispose();
  }
});

test('Ema refuses a decay outside [0, 1)', async () => {
  await useDevice('cpu');
  const params = makeParams(new Rng('ema-bad'), 'bad');
  try {
    for (const d of [1, 1.5, -0.1, Number.NaN, Number.POSITIVE_INFINITY]) {
      const before = tf.memory().numTensors;
      assert.throws(() => new Ema(params, d), (e: unknown) => e instanceof UnimeError && e.message.includes('[0, 1)') && e.field === 'loss.ema_decay', `decay ${d}`);
      assert.equal(tf.memory().numTensors, before);
    }
    const ok = new Ema(params, 0);
    ok.dispose();
  } finally {
    for (const p of params.values()) p.dispose();
  }
});
