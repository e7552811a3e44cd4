// Which OpenBLAS kernel family to ask for (OPENBLAS_CORETYPE), shared by the addon loader
// (src/runtime/devices.ts) and the install-time build check (tools/build-native.mjs).
//
// OpenBLAS builds with DYNAMIC_ARCH (Debian's, for one) pick their kernels by CPU model, and a build
// older than the CPU falls back to its generic Prescott (SSE3) kernels. Debian 12's OpenBLAS 0.3.21 on an
// Emerald Rapids Xeon (family 6, model 207) ran a 1024 matmul at 28 GFLOP/s that way and at 160 as
// SkylakeX. So the family comes from the CPU's instruction-set flags instead: SkylakeX with AVX-512
// (F, BW, DQ, VL), Haswell with AVX2 and FMA; newer x86 families run these SGEMM kernels at full speed.
// OpenBLAS reads the variable once, when it is loaded, so it is set before the addon is.
'use strict';
const fs = require('node:fs');

/** The kernel family for a set of /proc/cpuinfo flags, or undefined (OpenBLAS's own choice stands). */
function openblasCoreType(flags) {
  if (['avx512f', 'avx512bw', 'avx512dq', 'avx512vl'].every((f) => flags.has(f))) return 'SkylakeX';
  if (flags.has('avx2') && flags.has('fma')) return 'Haswell';
  return undefined;
}

/** The first CPU's flags in a /proc/cpuinfo text (read from the machine when not given; empty where there is none). */
function cpuFlags(cpuinfo) {
  let text = cpuinfo;
  if (text === undefined) {
    try {
      text = fs.readFileSync('/proc/cpuinfo', 'utf8');
    } catch {
      return new Set();
    }
  }
  const line = /^flags\s*:(.*)$/m.exec(text);
  return new Set(line ? line[1].trim().split(/\s+/) : []);
}

/**
 * Sets env.OPENBLAS_CORETYPE from the flags unless it is set already (the user's choice wins) or the
 * machine is not x86-64. Returns the family it set, or undefined.
 */
function chooseOpenblasCore(env = process.env, flags = cpuFlags(), arch = process.arch) {
  if (env.OPENBLAS_CORETYPE !== undefined || arch !== 'x64') return undefined;
  const core = openblasCoreType(flags);
  if (core !== undefined) env.OPENBLAS_CORETYPE = core;
  return core;
}

module.exports = { openblasCoreType, cpuFlags, chooseOpenblasCore };
