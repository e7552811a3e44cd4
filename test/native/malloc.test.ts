import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { nativeAddonPath } from '../../src/runtime/devices.js';
import { skipNative } from './conformance.js';

/** info().malloc of the addon loaded in a fresh process with `env` added. */
function mallocMode(env: Record<string, string>): string {
  const script = `console.log(require(${JSON.stringify(nativeAddonPath())}).info().malloc)`;
  const clean = { ...process.env };
  for (const k of ['UNIME_MALLOC', 'MALLOC_MMAP_THRESHOLD_', 'MALLOC_TRIM_THRESHOLD_', 'GLIBC_TUNABLES']) delete clean[k];
  const r = spawnSync(process.execPath, ['-e', script], { env: { ...clean, ...env }, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim();
}

const glibc = process.platform === 'linux' && Boolean((process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header?.glibcVersionRuntime);

test('loading the addon tunes glibc malloc to keep big freed buffers, unless told not to', { skip: skipNative || (glibc ? false : 'not glibc') }, () => {
  assert.equal(mallocMode({}), 'tuned');
  assert.equal(mallocMode({ UNIME_MALLOC: 'default' }), 'default (UNIME_MALLOC=default)');
  // a user who tunes malloc himself keeps his settings
  assert.equal(mallocMode({ MALLOC_TRIM_THRESHOLD_: '4096' }), 'default (the environment tunes malloc)');
  assert.equal(mallocMode({ GLIBC_TUNABLES: 'glibc.malloc.mmap_threshold=65536' }), 'default (the environment tunes malloc)');
});
