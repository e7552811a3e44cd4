import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import * as path from 'node:path';
import { repoRoot } from './helpers.js';

test('the library entry point exposes the public API', async () => {
  const lib = await import('../src/index.js');
  for (const name of ['UnimeError', 'runtime', 'recipes', 'SafetensorsFile', 'writeSafetensors', 'openCheckpoint', 'readHfConfig']) {
    assert.ok(name in lib, `missing export ${name}`);
  }
});

test('package.json bin and main point at built files', () => {
  const pkg = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { bin: Record<string, string>; main: string };
  assert.ok(existsSync(path.join(repoRoot, pkg.bin.unime!)), 'bin missing');
  assert.ok(existsSync(path.join(repoRoot, pkg.main)), 'main missing');
});

test('.ci/run runs exactly the README test command', () => {
  const readme = readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
  const m = /Run the tests:\s*```sh\n([^\n]+)\n```/.exec(readme);
  assert.ok(m, 'README has no "Run the tests" command block');
  const ci = readFileSync(path.join(repoRoot, '.ci', 'run'), 'utf8');
  assert.ok(ci.split('\n').some((l) => l.trim() === m[1]!.trim()), `.ci/run does not run \`${m[1]}\``);
});
