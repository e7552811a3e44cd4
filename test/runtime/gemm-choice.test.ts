import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { gemmChoice, loadNativeAddon, nativeAddonPath, nativeInfo, nativeSummary } from '../../src/runtime/devices.js';
import type { NativeKernels } from '../../src/runtime/native/addon.js';

type Gemm = Pick<NativeKernels, 'info' | 'batchMatMul'>;

const g = gemmChoice();
/** UNIME_GEMM as the user set it, before the addon is loaded (loading may set it from the record). */
const PRESET = process.env.UNIME_GEMM;

function tmpDir(): string {
  return mkdtempSync(path.join(os.tmpdir(), 'unime-gemm-choice-'));
}

/** Spins for `ms` milliseconds (a stand-in kernel whose speed the test sets). */
function spin(ms: number): void {
  const end = process.hrtime.bigint() + BigInt(Math.round(ms * 1e6));
  while (process.hrtime.bigint() < end) {
    // busy
  }
}

/** A stand-in addon linked against "BLAS" whose two kernels take the given times per call. */
function fakeAddon(blasMs: number, builtinMs: number, blas = true): Gemm {
  return {
    info: () => ({ gemm: blas ? 'openblas (fake)' : 'builtin', blas, threads: 1, simd: 'none' }),
    batchMatMul: (_a, _b, _out, _batch, _m, _n, _k, _ta, _tb, _ai, _bi, builtin) => spin(builtin ? builtinMs : blasMs),
  } as Gemm;
}

const SMALL: [number, number, number][] = [[8, 8, 8], [16, 8, 4]];

test('calibrate picks the builtin SGEMM only when it is clearly faster than BLAS', () => {
  const fast = g.calibrate(fakeAddon(4, 0.5), { budget: 0.01, shapes: SMALL });
  assert.equal(fast.gemm, 'builtin');
  assert.ok((fast.speedup ?? 0) > 2, `speedup ${fast.speedup}`);
  assert.equal(fast.shapes.length, 2);
  assert.ok(fast.shapes.every((s) => s.builtin_gflops > s.blas_gflops));
  const slow = g.calibrate(fakeAddon(0.5, 4), { budget: 0.01, shapes: SMALL });
  assert.equal(slow.gemm, 'blas');
  assert.match(slow.reason, /BLAS ran these shapes .*x as fast/);
});

test('calibrate keeps BLAS when the two are level (within the margin)', () => {
  assert.ok(g.MARGIN > 1);
  const level = g.calibrate(fakeAddon(1, 1), { budget: 0.01, shapes: SMALL });
  assert.equal(level.gemm, 'blas');
});

test('an addon without BLAS needs no timing: the builtin SGEMM is all it has', () => {
  let calls = 0;
  const addon = fakeAddon(1, 1, false);
  const counting = { info: addon.info, batchMatMul: (...args: Parameters<NativeKernels['batchMatMul']>) => void (calls++, addon.batchMatMul(...args)) };
  const r = g.calibrate(counting as Gemm);
  assert.equal(r.gemm, 'builtin');
  assert.equal(calls, 0);
});

test('the record is written atomically and applied only where the user has not set UNIME_GEMM', () => {
  const dir = tmpDir();
  try {
    assert.equal(g.readGemmChoice(dir), null);
    const none: NodeJS.ProcessEnv = {};
    assert.equal(g.applyGemmChoice(dir, none), undefined);
    assert.equal('UNIME_GEMM' in none, false);

    const file = g.writeGemmChoice(dir, { gemm: 'builtin', reason: 'faster here', speedup: 2, shapes: [] });
    assert.equal(path.basename(file), g.CHOICE_FILE);
    assert.deepEqual(readdirSync(dir), [g.CHOICE_FILE]);
    const env: NodeJS.ProcessEnv = {};
    assert.equal(g.applyGemmChoice(dir, env)?.gemm, 'builtin');
    assert.equal(env.UNIME_GEMM, 'builtin');
    const mine: NodeJS.ProcessEnv = { UNIME_GEMM: 'blas' };
    assert.equal(g.applyGemmChoice(dir, mine), undefined);
    assert.equal(mine.UNIME_GEMM, 'blas');

    // a damaged or foreign record is ignored, never trusted
    writeFileSync(file, '{"gemm": "cublas"}');
    assert.equal(g.readGemmChoice(dir), null);
    writeFileSync(file, '{not json');
    const after: NodeJS.ProcessEnv = {};
    assert.equal(g.applyGemmChoice(dir, after), undefined);
    assert.equal('UNIME_GEMM' in after, false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a record holds for the OpenBLAS kernels and the CPU it was timed with: under others it is not applied, and says why', () => {
  const dir = tmpDir();
  try {
    const then = { openblas_coretype: 'Haswell', cpu: 'AMD EPYC 9B45' };
    g.writeGemmChoice(dir, { gemm: 'builtin', reason: 'faster here', speedup: 2, shapes: [], conditions: then });
    const same: NodeJS.ProcessEnv = {};
    assert.equal(g.applyGemmChoice(dir, same, { ...then })?.stale, undefined);
    assert.equal(same.UNIME_GEMM, 'builtin');

    const otherCore: NodeJS.ProcessEnv = {};
    const r = g.applyGemmChoice(dir, otherCore, { openblas_coretype: 'SkylakeX', cpu: then.cpu });
    assert.equal(r?.gemm, 'builtin');
    assert.equal(r?.stale, 'timed with OPENBLAS_CORETYPE Haswell, this process has SkylakeX');
    assert.equal('UNIME_GEMM' in otherCore, false, 'a stale record leaves the addon its default');

    const unset: NodeJS.ProcessEnv = {};
    assert.match(g.applyGemmChoice(dir, unset, { openblas_coretype: null, cpu: then.cpu })?.stale ?? '', /this process has unset/);
    assert.equal('UNIME_GEMM' in unset, false);

    const otherCpu: NodeJS.ProcessEnv = {};
    assert.equal(g.applyGemmChoice(dir, otherCpu, { openblas_coretype: 'Haswell', cpu: 'Intel Xeon Platinum 8581C' })?.stale, 'timed on AMD EPYC 9B45, this CPU is Intel Xeon Platinum 8581C');
    assert.equal('UNIME_GEMM' in otherCpu, false);

    // a record from before conditions were kept still applies
    g.writeGemmChoice(dir, { gemm: 'builtin', reason: 'faster here', speedup: 2, shapes: [] });
    const old: NodeJS.ProcessEnv = {};
    assert.equal(g.applyGemmChoice(dir, old, { openblas_coretype: 'SkylakeX', cpu: 'x' })?.stale, undefined);
    assert.equal(old.UNIME_GEMM, 'builtin');

    // calibrate records the conditions it timed under
    const rec = g.calibrate(fakeAddon(4, 0.5), { budget: 0.01, shapes: SMALL, env: { OPENBLAS_CORETYPE: 'SkylakeX' } });
    assert.deepEqual(rec.conditions, { openblas_coretype: 'SkylakeX', cpu: os.cpus()[0]?.model ?? null });
    assert.equal(g.staleBecause(rec.conditions, g.timingConditions({ OPENBLAS_CORETYPE: 'SkylakeX' })), null);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('calibrate runs on the real addon and reports both kernels', { skip: loadNativeAddon().addon === null ? 'native addon not built' : false }, () => {
  const addon = loadNativeAddon().addon as unknown as NativeKernels;
  const r = g.calibrate(addon, { budget: 0.005, shapes: [[64, 48, 32]] });
  if (!addon.info().blas) {
    assert.equal(r.gemm, 'builtin');
    return;
  }
  assert.ok(r.gemm === 'blas' || r.gemm === 'builtin');
  assert.equal(r.shapes.length, 1);
  assert.ok(r.shapes[0]!.blas_gflops > 0 && r.shapes[0]!.builtin_gflops > 0);
});

test('loading the addon applies the install-time record unless the user set UNIME_GEMM', { skip: loadNativeAddon().addon === null ? 'native addon not built' : false }, () => {
  const info = nativeInfo()!;
  const record = g.readGemmChoice(path.dirname(nativeAddonPath()));
  // npm ci times the two kernels whenever OpenBLAS is linked
  if (info.blas && PRESET === undefined) assert.ok(record, 'a BLAS-linked addon has its timing record next to it');
  const stale = record ? g.staleBecause(record.conditions, g.timingConditions()) : null;
  const expected = PRESET ?? (stale === null ? record?.gemm : undefined);
  assert.equal(process.env.UNIME_GEMM, expected);
  if (expected === 'builtin' || !info.blas) assert.equal(info.gemm, 'builtin');
  else assert.match(info.gemm, /^openblas/);
  const summary = nativeSummary()!;
  assert.ok(summary.startsWith(`native: gemm ${info.gemm}`), summary);
  if (PRESET !== undefined) assert.match(summary, new RegExp(`from UNIME_GEMM=${PRESET}`));
  else if (record && stale !== null) assert.ok(summary.includes(`not applied (${stale})`), summary);
  else if (record) assert.ok(summary.includes(record.reason), summary);
});
