/**
 * Checking a checkpoint's tensors against what a module expects, before anything is read: one
 * error listing every missing tensor, shape or dtype mismatch and unexpected tensor, naming the file.
 * Shared by the decoder and vision-tower loaders.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { UnimeError } from '../errors.js';
import type { Checkpoint } from '../io/checkpoint.js';
import { tf } from '../runtime/tf.js';
import { namedVariable } from './clip/variables.js';

export class WeightMismatchError extends UnimeError {}

const LIST = 8;

function listOf(names: string[]): string {
  return names.slice(0, LIST).join(', ') + (names.length > LIST ? ` and ${names.length - LIST} more` : '');
}

export interface WeightCheckOptions {
  /** What the weights should be, for the message: "the llama decoder", "the siglip_vision_model vision tower". */
  what: string;
  /** The config file the expected shapes come from. */
  configFile: string;
  /** Which prefix, for the fix text: "decoder", "tower". */
  prefixLabel: string;
  /** Report tensors under the prefix that are not expected. */
  strict: boolean;
  /** Tensors (relative to the prefix) that may be present without being expected. */
  tolerated: (rel: string) => boolean;
}

export function checkWeights(ckpt: Checkpoint, prefix: string, expected: Map<string, number[]>, opts: WeightCheckOptions): void {
  const missing: string[] = [];
  const mismatched: string[] = [];
  let firstFile: string | undefined;
  let firstField: string | undefined;
  for (const [name, shape] of expected) {
    const full = prefix + name;
    if (!ckpt.has(full)) {
      missing.push(full);
      firstField ??= full;
      continue;
    }
    const info = ckpt.info(full);
    if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
      mismatched.push(`${full} is [${info.shape.join(', ')}] in ${path.basename(ckpt.fileOf(full))}, the config implies [${shape.join(', ')}]`);
      firstFile ??= ckpt.fileOf(full);
      firstField ??= full;
    } else if (!['F32', 'F16', 'BF16', 'F64'].includes(info.dtype)) {
      mismatched.push(`${full} has dtype ${info.dtype}, expected a floating-point dtype`);
      firstFile ??= ckpt.fileOf(full);
      firstField ??= full;
    }
  }
  const unexpected = opts.strict
    ? ckpt.names.filter((n) => {
        if (!n.startsWith(prefix)) return false;
        const rel = n.slice(prefix.length);
        return !expected.has(rel) && !opts.tolerated(rel);
      })
    : [];
  if (missing.length + mismatched.length + unexpected.length === 0) return;
  const parts: string[] = [];
  if (missing.length) parts.push(`missing ${missing.length} tensor${missing.length > 1 ? 's' : ''}: ${listOf(missing)}`);
  if (mismatched.length) parts.push(`${mismatched.length} shape mismatch${mismatched.length > 1 ? 'es' : ''}: ${listOf(mismatched)}`);
  if (unexpected.length) parts.push(`${unexpected.length} unexpected tensor${unexpected.length > 1 ? 's' : ''}: ${listOf(unexpected)}`);
  firstField ??= unexpected[0];
  throw new WeightMismatchError(`weights do not match ${opts.what} described by ${opts.configFile}: ${parts.join('; ')}`, {
    file: firstFile ?? ckpt.indexPath ?? ckpt.files[0] ?? ckpt.path,
    field: firstField,
    fix: `check that config.json belongs to these weights (and the ${opts.prefixLabel} prefix, now ${JSON.stringify(prefix)}); pass {strict: false} to ignore unexpected tensors`,
  });
}

/** The config.json beside a checkpoint given as a directory or as one of its weight files. */
export async function checkpointConfigFile(dirOrFile: string): Promise<string> {
  let dir = dirOrFile;
  try {
    if (!(await fsp.stat(dirOrFile)).isDirectory()) dir = path.dirname(dirOrFile);
  } catch {
    // openCheckpoint reports a missing path
  }
  return path.join(dir, 'config.json');
}

/**
 * Read the expected tensors (already checked with checkWeights) one at a time into float32
 * variables. On failure the variables made so far are disposed.
 */
export async function readWeightVariables(
  ckpt: Checkpoint,
  prefix: string,
  expected: Map<string, number[]>,
  trainable: boolean,
): Promise<Map<string, tf.Variable>> {
  const weights = new Map<string, tf.Variable>();
  try {
    for (const [name, shape] of expected) {
      const data = await ckpt.readFloat32(prefix + name);
      // The variable takes over the tensor's buffer; disposing the tensor drops only its reference.
      const t = tf.tensor(data, shape, 'float32');
      // Named by its checkpoint key, so training checkpoints find it again in any process and a
      // stage that rewrites the checkpoint knows which tensor each variable is (namedVariable).
      weights.set(name, namedVariable(t, trainable, prefix + name));
      t.dispose();
    }
    return weights;
  } catch (e) {
    for (const v of weights.values()) v.dispose();
    throw e;
  }
}
