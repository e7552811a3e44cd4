/**
 * The one place the toolkit imports TensorFlow.js from. Importing this module gives a tfjs with the
 * cpu backend registered, every gradient registered, and the chained tensor methods (x.sum()) —
 * tfjs-core alone has neither of the last two in Node.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
// Types only: brings the chained-method declarations (x.square()) into the program; the code is
// loaded below from the vendored bundle.
import type {} from '@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops.js';
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as path from 'node:path';
import { UnimeError } from '../errors.js';

const extras = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'vendor', 'tfjs-extras.cjs');
if (!existsSync(extras)) {
  throw new UnimeError(`tfjs gradient registrations are missing (${extras} not found)`, {
    fix: 'run `npm run build` (or `npm ci`, which builds) in the unime checkout',
  });
}
createRequire(import.meta.url)(extras);

export { tf };
export type { Tensor, Rank, DataType } from '@tensorflow/tfjs-core';
