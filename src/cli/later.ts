/**
 * Commands whose engine is not in this build say so plainly and exit 3; none pretends to work.
 */
import { NotImplementedYetError } from '../errors.js';

export function notInThisBuild(command: string, what: string): never {
  throw new NotImplementedYetError(`\`unime ${command}\` needs ${what}, which is not part of this build yet. Nothing was run.`, {
    fix: 'see README.md ("Status") for what works today: `unime recipes`, `unime inspect`, `unime train --dry-run`',
  });
}
