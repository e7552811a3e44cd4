/**
 * Adapters stack across stages: stage 2 trains a fresh LoRA on top of the stage-1 model, so a
 * stage's trained model is its base checkpoint plus, in order, every adapter merged before its own.
 * A training stage writes that list beside its adapter (adapter-chain.json); `init_from` resolves
 * to the full list, which loaders merge in order.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { UnimeError } from '../../errors.js';
import { writeJsonAtomic } from '../../io/atomic.js';
import { ADAPTER_CONFIG, loadLoraAdapter } from './adapter-io.js';
import { mergeLora, type LoraTarget } from './lora.js';

/** Where a training stage puts its final adapter, inside its output dir. */
export const ADAPTER_DIR = 'adapter';
/** The adapters merged under a stage's own adapter (absolute paths, merge order). */
export const ADAPTER_CHAIN_FILE = 'adapter-chain.json';

async function exists(p: string): Promise<boolean> {
  try {
    await fsp.stat(p);
    return true;
  } catch {
    return false;
  }
}

/**
 * The adapters (merge order) a model reference stands for: none for null; [dir] for an adapter
 * directory; a stage output dir gives its adapter-chain.json followed by its own adapter/.
 */
export async function resolveAdapterChain(ref: string | null, field = 'init_from'): Promise<string[]> {
  if (ref === null) return [];
  const dir = path.resolve(ref);
  if (await exists(path.join(dir, ADAPTER_CONFIG))) return [dir];
  const own = path.join(dir, ADAPTER_DIR);
  if (await exists(path.join(own, ADAPTER_CONFIG))) {
    const chainFile = path.join(dir, ADAPTER_CHAIN_FILE);
    let before: string[] = [];
    if (await exists(chainFile)) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(await fsp.readFile(chainFile, 'utf8'));
      } catch (e) {
        throw new UnimeError(`is not valid JSON (${(e as Error).message})`, { file: chainFile, fix: 'rerun the stage that wrote it' });
      }
      if (!Array.isArray(parsed) || !parsed.every((x) => typeof x === 'string')) {
        throw new UnimeError('must be a JSON list of adapter directories', { file: chainFile, fix: 'rerun the stage that wrote it' });
      }
      before = parsed.map((p) => path.resolve(dir, p));
    }
    return [...before, own];
  }
  throw new UnimeError(`${ref} holds no LoRA adapter (no ${ADAPTER_CONFIG} in it or in its ${ADAPTER_DIR}/)`, {
    field,
    fix: 'name a finished training stage, or a directory with adapter_config.json and adapter_model.safetensors',
  });
}

/** Record the adapters merged under a stage's own adapter. */
export async function writeAdapterChain(outputDir: string, chain: readonly string[]): Promise<void> {
  await writeJsonAtomic(path.join(outputDir, ADAPTER_CHAIN_FILE), chain.map((p) => path.resolve(p)));
}

/** Load each adapter in turn and fold it into the model's base weights. */
export async function mergeAdapterChain(model: LoraTarget, chain: readonly string[]): Promise<void> {
  for (const dir of chain) {
    await loadLoraAdapter(dir, model);
    mergeLora(model);
  }
}
