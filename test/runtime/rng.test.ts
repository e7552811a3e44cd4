import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../../src/runtime/rng.js';

test('same seed, same stream; different seeds differ', () => {
  const a = new Rng(42), b = new Rng(42), c = new Rng(43);
  const sa = Array.from({ length: 100 }, () => a.nextUint32());
  const sb = Array.from({ length: 100 }, () => b.nextUint32());
  const sc = Array.from({ length: 100 }, () => c.nextUint32());
  assert.deepEqual(sa, sb);
  assert.notDeepEqual(sa, sc);
  assert.notEqual(new Rng('a').nextUint32(), new Rng('b').nextUint32());
  assert.notEqual(new Rng(1).nextUint32(), new Rng(2 ** 32 + 1).nextUint32());
});

test('state round trip continues the exact stream (including the cached normal)', () => {
  const r = new Rng(9);
  r.normal();
  const state = JSON.parse(JSON.stringify(r.getState()));
  const expected = [r.normal(), r.uniform(), r.int(17), r.normal()];
  const resumed = Rng.fromState(state);
  assert.deepEqual([resumed.normal(), resumed.uniform(), resumed.int(17), resumed.normal()], expected);
  assert.throws(() => Rng.fromState({ s: [0, 0, 0, 0], spare: null }), /all zero/);
  assert.throws(() => Rng.fromState({ s: [1, 2, 3] as never, spare: null }), /four unsigned/);
});

test('uniform, normal and int have the right distributions', () => {
  const r = new Rng(5);
  const n = 200000;
  let su = 0, sn = 0, sn2 = 0, lo = 1, hi = 0;
  for (let i = 0; i < n; i++) {
    const u = r.uniform();
    su += u; lo = Math.min(lo, u); hi = Math.max(hi, u);
    const z = r.normal();
    sn += z; sn2 += z * z;
  }
  assert.ok(lo >= 0 && hi < 1);
  assert.ok(Math.abs(su / n - 0.5) < 0.005);
  assert.ok(Math.abs(sn / n) < 0.01);
  assert.ok(Math.abs(sn2 / n - 1) < 0.01);
  const counts = new Array(7).fill(0);
  for (let i = 0; i < 70000; i++) counts[r.int(7)]++;
  for (const c of counts) assert.ok(Math.abs(c - 10000) < 400, `bucket count ${c}`);
  assert.throws(() => r.int(0), RangeError);
});

test('shuffle is a permutation and fork gives stable independent streams', () => {
  const r = new Rng(11);
  const p = r.permutation(50);
  assert.deepEqual([...p].sort((a, b) => a - b), Array.from({ length: 50 }, (_, i) => i));
  assert.notDeepEqual(p, Array.from({ length: 50 }, (_, i) => i));
  const f1 = r.fork('dropout').nextUint32();
  const f2 = r.fork('dropout').nextUint32();
  const f3 = r.fork('data').nextUint32();
  assert.equal(f1, f2);
  assert.notEqual(f1, f3);
  assert.notEqual(f1, r.nextUint32());
});
