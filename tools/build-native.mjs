// Builds the native CPU kernels (native/ -> native/build/Release/unime_native.node). Run by the package's
// `install` script, so it must never fail the install: whatever goes wrong (no compiler, no Node headers,
// a compile error) ends in ONE line saying the toolkit will use the pure-JS kernels, and exit code 0.
// It downloads nothing: Node's headers must be on this machine (Debian: nodejs ships them; or npm's
// `nodedir`), and OpenBLAS is linked only when its headers and library are installed
// (Debian: apt-get install libopenblas-dev); otherwise our own multi-threaded SGEMM is compiled.
//
// Environment: UNIME_SKIP_NATIVE=1 skips the build; UNIME_BLAS=builtin ignores an installed OpenBLAS;
// UNIME_ARCH_FLAGS overrides the default -march=native (e.g. '' for a binary that runs on any x86-64);
// UNIME_NATIVE_VERBOSE=1 shows the compiler output.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const nativeDir = path.join(root, 'native');
const addonFile = path.join(nativeDir, 'build', 'Release', 'unime_native.node');
const logFile = path.join(nativeDir, 'build', 'build-native.log');
const verbose = process.env.UNIME_NATIVE_VERBOSE === '1';
const require = createRequire(import.meta.url);
const logLines = [];

function note(line) {
  logLines.push(line);
  if (verbose) console.error(line);
}

function writeLog() {
  try {
    mkdirSync(path.dirname(logFile), { recursive: true });
    writeFileSync(logFile, logLines.join('\n') + '\n');
  } catch {
    // the log is a courtesy; never fail the install over it
  }
}

function giveUp(reason) {
  writeLog();
  const where = existsSync(logFile) ? `; details in ${path.relative(process.cwd(), logFile) || logFile}` : '';
  console.log(`unime: native kernels not built (${reason})${where}; the toolkit will run on the slower pure-JS kernels`);
  process.exit(0);
}

function run(cmd, args, opts = {}) {
  note(`$ ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, ...opts });
  if (r.stdout) note(r.stdout.trimEnd());
  if (r.stderr) note(r.stderr.trimEnd());
  if (r.error) note(String(r.error));
  return r;
}

/** $CXX when set (and only it: a user who names a compiler means that one), else the usual names. */
function findCompiler() {
  const candidates = process.env.CXX ? [process.env.CXX] : ['c++', 'g++', 'clang++'];
  for (const c of candidates) {
    const r = spawnSync(c, ['--version'], { encoding: 'utf8' });
    if (r.status === 0) return c;
  }
  return null;
}

/** Node's C headers, without downloading: npm's nodedir, else the prefix this node was installed under. */
function findNodeDir() {
  const fromNpm = process.env.npm_config_nodedir;
  if (fromNpm && existsSync(path.join(fromNpm, 'include', 'node', 'node_api.h'))) return fromNpm;
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  if (existsSync(path.join(prefix, 'include', 'node', 'node_api.h')) && existsSync(path.join(prefix, 'include', 'node', 'common.gypi'))) return prefix;
  // node-gyp's own header cache, from an earlier build on this machine
  const cache = path.join(os.homedir(), '.cache', 'node-gyp', process.versions.node);
  if (existsSync(path.join(cache, 'include', 'node', 'node_api.h'))) return cache;
  return null;
}

/** OpenBLAS's include and library directories, if a test program compiles, links and runs against them. */
function findOpenBlas(cxx) {
  if (process.env.UNIME_BLAS === 'builtin') {
    note('UNIME_BLAS=builtin: not looking for OpenBLAS');
    return null;
  }
  const ma = spawnSync(cxx, ['-print-multiarch'], { encoding: 'utf8' });
  const triplet = ma.status === 0 ? ma.stdout.trim() : '';
  const inc = [];
  const lib = [];
  if (triplet) {
    // Debian's pthread flavour first: a plain library, so our thread pool and its threads do not fight OpenMP.
    inc.push(`/usr/include/${triplet}/openblas-pthread`, `/usr/include/${triplet}`);
    lib.push(`/usr/lib/${triplet}/openblas-pthread`, `/usr/lib/${triplet}`);
  }
  inc.push('/usr/include/openblas', '/usr/include', '/usr/local/include', '/opt/homebrew/opt/openblas/include', '/usr/local/opt/openblas/include');
  lib.push('/usr/lib64', '/usr/lib', '/usr/local/lib', '/opt/homebrew/opt/openblas/lib', '/usr/local/opt/openblas/lib');
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'unime-blas-'));
  try {
    const src = path.join(tmp, 'probe.cc');
    writeFileSync(
      src,
      [
        '#include <cblas.h>',
        'extern "C" char* openblas_get_config(void);',
        'int main() { float a = 2, b = 3, c = 0;',
        '  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 1, 1, 1, 1.f, &a, 1, &b, 1, 0.f, &c, 1);',
        '  return (c == 6.f && openblas_get_config() != 0) ? 0 : 1; }',
      ].join('\n'),
    );
    for (const i of inc.filter((d) => existsSync(path.join(d, 'cblas.h')))) {
      for (const l of lib.filter((d) => existsSync(path.join(d, 'libopenblas.so')) || existsSync(path.join(d, 'libopenblas.dylib')))) {
        const exe = path.join(tmp, 'probe');
        const c = run(cxx, [src, '-o', exe, `-I${i}`, `-L${l}`, `-Wl,-rpath,${l}`, '-lopenblas']);
        if (c.status !== 0) continue;
        const r = run(exe, []);
        if (r.status === 0) return { include: i, libdir: l };
      }
    }
    note('OpenBLAS not found (no cblas.h + libopenblas that link and run); using the builtin SGEMM');
    return null;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

function nodeGyp(nodedir, blas) {
  let gypBin;
  try {
    gypBin = require.resolve('node-gyp/bin/node-gyp.js');
  } catch {
    return { ok: false, reason: 'node-gyp is not installed (run npm install)' };
  }
  const env = {
    ...process.env,
    UNIME_BLAS: blas ? 'openblas' : 'builtin',
    UNIME_BLAS_INCLUDE: blas?.include ?? '',
    UNIME_BLAS_LIBDIR: blas?.libdir ?? '',
    JOBS: String(os.availableParallelism?.() ?? os.cpus().length),
  };
  const r = run(process.execPath, [gypBin, 'rebuild', `--nodedir=${nodedir}`, '--jobs=max', '--release'], { cwd: nativeDir, env });
  if (r.status !== 0 || !existsSync(addonFile)) return { ok: false, reason: r.error ? String(r.error.message) : 'the compile failed' };
  return { ok: true };
}

/** The environment the toolkit loads the addon with: the OpenBLAS kernel family chosen from the CPU flags. */
function loaderEnv() {
  const env = { ...process.env };
  require(path.join(nativeDir, 'openblas-core.cjs')).chooseOpenblasCore(env);
  return env;
}

function checkLoads() {
  const env = loaderEnv();
  const r = run(process.execPath, ['-e', `const a = require(${JSON.stringify(addonFile)}); const i = a.info(); console.log(JSON.stringify(i));`], { env });
  if (r.status !== 0) return null;
  try {
    return JSON.parse(r.stdout.trim().split('\n').pop());
  } catch {
    return null;
  }
}

/**
 * With OpenBLAS linked: times it against the builtin SGEMM in a child process (loaded as the toolkit
 * loads it) and records the faster in native/build/Release/gemm-choice.json, which the loader applies.
 * Without a record (a failed timing) the addon keeps its default, OpenBLAS.
 */
function chooseGemm() {
  const env = loaderEnv();
  delete env.UNIME_GEMM;
  const script = [
    `const g = require(${JSON.stringify(path.join(nativeDir, 'gemm-choice.cjs'))});`,
    `const a = require(${JSON.stringify(addonFile)});`,
    `const r = g.calibrate(a);`,
    `g.writeGemmChoice(${JSON.stringify(path.dirname(addonFile))}, r);`,
    `console.log(JSON.stringify(r));`,
  ].join(' ');
  const r = run(process.execPath, ['-e', script], { env });
  if (r.status !== 0) {
    note('timing OpenBLAS against the builtin SGEMM failed; OpenBLAS stays the default');
    return null;
  }
  try {
    return JSON.parse(r.stdout.trim().split('\n').pop());
  } catch {
    return null;
  }
}

function main() {
  if (process.env.UNIME_SKIP_NATIVE === '1') {
    console.log('unime: native kernels not built (UNIME_SKIP_NATIVE=1); the toolkit will run on the slower pure-JS kernels');
    return;
  }
  if (!existsSync(path.join(nativeDir, 'binding.gyp'))) giveUp('native/binding.gyp is missing from this package');
  const cxx = findCompiler();
  if (!cxx) giveUp(process.env.CXX ? `the compiler in CXX (${process.env.CXX}) does not run` : 'no C++ compiler found; on Debian: apt-get install g++');
  const nodedir = findNodeDir();
  if (!nodedir) giveUp(`Node ${process.version} headers not found locally; set npm's nodedir or install your distribution's Node headers`);
  const blas = findOpenBlas(cxx);
  const started = Date.now();
  let built = nodeGyp(nodedir, blas);
  if (!built.ok && blas) {
    note('build against OpenBLAS failed; retrying with the builtin SGEMM');
    built = nodeGyp(nodedir, null);
  }
  if (!built.ok) giveUp(built.reason);
  const info = checkLoads();
  if (!info) giveUp('the built addon does not load');
  const seconds = ((Date.now() - started) / 1000).toFixed(0);
  const choice = info.blas ? chooseGemm() : null;
  writeLog();
  console.log(`unime: native kernels built in ${seconds} s (gemm: ${info.gemm}, ${info.threads} threads, ${info.simd})`);
  if (choice) {
    const user = process.env.UNIME_GEMM !== undefined ? `; UNIME_GEMM=${process.env.UNIME_GEMM} is set and overrides it` : '';
    console.log(`unime: SGEMM timed on this machine: ${choice.reason}, so the toolkit will use ${choice.gemm === 'blas' ? 'OpenBLAS' : 'the builtin SGEMM'} (UNIME_GEMM=blas|builtin overrides${user})`);
  }
}

try {
  main();
} catch (e) {
  giveUp(`unexpected error: ${e instanceof Error ? e.message : String(e)}`);
}
