import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { repoRoot } from '../helpers.js';
import { skipNative } from './conformance.js';

const script = path.join(repoRoot, 'tools', 'build-native.mjs');

function runBuild(env: Record<string, string>) {
  return spawnSync(process.execPath, [script], { cwd: repoRoot, encoding: 'utf8', env: { ...process.env, ...env } });
}

test('the native build never fails an install: skipping it prints one line and exits 0', () => {
  const r = runBuild({ UNIME_SKIP_NATIVE: '1' });
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.equal(lines.length, 1, r.stdout);
  assert.match(lines[0]!, /native kernels not built .*pure-JS kernels/);
});

test('a missing compiler is one clear line and exit code 0, and leaves any built addon alone', () => {
  const r = runBuild({ CXX: '/nonexistent/c++' });
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.equal(lines.length, 1, r.stdout);
  assert.match(lines[0]!, /native kernels not built \(the compiler in CXX \(\/nonexistent\/c\+\+\) does not run\).*pure-JS kernels/);
  assert.equal(r.stderr, '');
});

test('UNIME_NUM_THREADS sets the native thread count', { skip: skipNative }, () => {
  const code = `const a = require(${JSON.stringify(path.join(repoRoot, 'native', 'build', 'Release', 'unime_native.node'))}); console.log(a.info().threads);`;
  const r = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8', env: { ...process.env, UNIME_NUM_THREADS: '3' } });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), '3');
});
