import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadNativeAddon, nativeInfo, openblasCore } from '../../src/runtime/devices.js';

const core = openblasCore();

const CPUINFO = (flags: string) => `processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 207\nflags\t\t: ${flags}\nbugs\t\t: spectre_v1\n\nprocessor\t: 1\nflags\t\t: fpu\n`;

test('cpuFlags reads the first CPU flags line of /proc/cpuinfo', () => {
  const flags = core.cpuFlags(CPUINFO('fpu sse2 avx2 fma avx512f'));
  assert.deepEqual([...flags].sort(), ['avx2', 'avx512f', 'fma', 'fpu', 'sse2']);
  assert.equal(core.cpuFlags('processor : 0\n').size, 0);
});

test('the OpenBLAS kernel family follows the instruction sets, not the CPU model', () => {
  const of = (f: string) => core.openblasCoreType(core.cpuFlags(CPUINFO(f)));
  assert.equal(of('sse2 avx avx2 fma avx512f avx512bw avx512dq avx512vl avx512_bf16 amx_tile'), 'SkylakeX');
  // AVX-512 without BW/VL (Knights Landing) is not a SkylakeX
  assert.equal(of('sse2 avx avx2 fma avx512f avx512cd avx512er'), 'Haswell');
  assert.equal(of('sse2 avx avx2 fma'), 'Haswell');
  assert.equal(of('sse2 avx avx2'), undefined);
  assert.equal(of('sse2 sse4_2 avx'), undefined);
});

test("chooseOpenblasCore sets OPENBLAS_CORETYPE only where the user has not, and only on x86-64", () => {
  const avx512 = core.cpuFlags(CPUINFO('avx2 fma avx512f avx512bw avx512dq avx512vl'));
  const env: NodeJS.ProcessEnv = {};
  assert.equal(core.chooseOpenblasCore(env, avx512, 'x64'), 'SkylakeX');
  assert.equal(env.OPENBLAS_CORETYPE, 'SkylakeX');
  const mine: NodeJS.ProcessEnv = { OPENBLAS_CORETYPE: 'Zen' };
  assert.equal(core.chooseOpenblasCore(mine, avx512, 'x64'), undefined);
  assert.equal(mine.OPENBLAS_CORETYPE, 'Zen');
  const arm: NodeJS.ProcessEnv = {};
  assert.equal(core.chooseOpenblasCore(arm, avx512, 'arm64'), undefined);
  assert.equal(arm.OPENBLAS_CORETYPE, undefined);
  const old: NodeJS.ProcessEnv = {};
  assert.equal(core.chooseOpenblasCore(old, core.cpuFlags(CPUINFO('sse2 avx')), 'x64'), undefined);
  assert.equal('OPENBLAS_CORETYPE' in old, false);
});

test('loading the addon chooses the family first, so a linked OpenBLAS runs the kernels it names', () => {
  const preset = process.env.OPENBLAS_CORETYPE;
  const { addon, reason } = loadNativeAddon();
  assert.ok(addon, `the native addon must load here: ${reason}`);
  const expected = preset ?? (process.arch === 'x64' ? core.openblasCoreType(core.cpuFlags()) : undefined);
  assert.equal(process.env.OPENBLAS_CORETYPE, expected);
  const gemm = nativeInfo()!.gemm;
  // OpenBLAS's config string names the kernel family in use; the builtin SGEMM has none to name
  if (gemm.startsWith('openblas') && expected !== undefined) assert.match(gemm, new RegExp(`\\b${expected}\\b`, 'i'));
  else assert.match(gemm, /^(openblas|builtin)/);
});
