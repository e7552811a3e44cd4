import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { runCli } from './run-cli.js';
import { repoRoot } from '../helpers.js';

test('unime --help lists every command', async () => {
  const r = await runCli(['--help']);
  assert.equal(r.code, 0, r.stderr);
  for (const c of ['train', 'eval', 'embed', 'pull', 'push', 'recipes', 'inspect', 'devices']) {
    assert.match(r.stdout, new RegExp(`unime ${c}`), `--help lacks ${c}`);
  }
});

test('unime --version prints the package version', async () => {
  const r = await runCli(['--version']);
  assert.equal(r.code, 0);
  assert.match(r.stdout.trim(), /^\d+\.\d+\.\d+/);
});

test('the bin starts through its own shebang line (interpreter and V8 flags valid here), as npx runs it', () => {
  const bin = path.join(repoRoot, 'dist', 'src', 'cli', 'main.js');
  // npx runs it directly; a copy of the package it cached earlier does not chmod it again (Permission denied).
  if (process.platform !== 'win32') assert.ok(statSync(bin).mode & 0o100, `${bin} is not executable: npm run build makes it so`);
  const line = readFileSync(bin, 'utf8').split('\n', 1)[0]!;
  const m = /^#!(\S+)(?: (.*))?$/.exec(line);
  assert.ok(m, line);
  // The kernel passes everything after the interpreter as one argument, then the script's path.
  const r = spawnSync(m[1]!, [...(m[2] ? [m[2]] : []), bin, '--version'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout.trim(), /^\d+\.\d+\.\d+/);
});

test('no command or an unknown command is a usage error (exit 2)', async () => {
  const none = await runCli([]);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /name a command/);
  const bad = await runCli(['trian']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /Did you mean train/i);
});

test('every eval suite is a real command: without --data it is a usage error naming the option, not exit 3', async () => {
  for (const suite of ['retrieval', 'sugarcrepe', 'zeroshot']) {
    const r = await runCli(['eval', suite, '--model', 'x']);
    assert.notEqual(r.code, 3, `${suite}: ${r.stderr}`);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /data/);
    assert.equal(r.stdout, '');
  }
});

test('embed names a missing model clearly and exits 2', async () => {
  const r = await runCli(['embed', '--model', 'x', '--text', 'hello']);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /no such model: 'x'/);
  assert.equal(r.stdout, '');
});

test('eval without or with an unknown subcommand is a usage error', async () => {
  const none = await runCli(['eval']);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /mmeb, retrieval, sugarcrepe, zeroshot, summarize or compare/);
  const typo = await runCli(['eval', 'mmbe', '--model', 'x']);
  assert.equal(typo.code, 2);
  assert.match(typo.stderr, /Did you mean mmeb/i);
});

test('unime devices reports cpu available and a reason for every unavailable device', async () => {
  const r = await runCli(['devices', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const list = JSON.parse(r.stdout) as { name: string; availability: { available: boolean; reason?: string } }[];
  assert.equal(list.find((d) => d.name === 'cpu')?.availability.available, true);
  for (const d of list.filter((x) => !x.availability.available)) assert.ok(d.availability.reason, `${d.name} has no reason`);
});
