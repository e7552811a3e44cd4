#!/usr/bin/env -S node --max-semi-space-size=64
/**
 * The `unime` command line. Each command is a yargs command module in this folder; this file only
 * assembles them. Exit codes: 0 ok, 1 internal error, 2 bad input, 3 not available in this build.
 *
 * The shebang gives V8 a 64 MB young generation: training makes many short-lived tensor objects, and
 * with the default (16 MB) the scavenges that promote the backward pass's live tape cost 12 to 15 % of
 * a quickstart training stage's time on 2 cores (`node dist/src/cli/main.js` runs without it).
 */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as path from 'node:path';
import { EXIT } from './common.js';
import { setLogLevel } from '../runtime/log.js';
import * as train from './train.js';
import * as evalCmd from './eval.js';
import * as embed from './embed.js';
import * as push from './push.js';
import * as pull from './pull.js';
import * as exportCmd from './export.js';
import * as recipes from './recipes.js';
import * as inspect from './inspect.js';
import * as devices from './devices.js';

const pkg = JSON.parse(readFileSync(path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'package.json'), 'utf8')) as {
  version: string;
};

export async function main(argv: string[]): Promise<void> {
  const cli = yargs(argv)
    .scriptName('unime')
    .usage('$0 <command> [options]\n\nTurn a multimodal LLM into a universal embedding model.')
    .option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'only print warnings and errors' })
    .option('verbose', { alias: 'v', type: 'boolean', default: false, describe: 'print debug logs' })
    .middleware((a) => setLogLevel(a.quiet ? 'warn' : a.verbose ? 'debug' : 'info'))
    .command(train)
    .command(evalCmd)
    .command(embed)
    .command(push)
    .command(pull)
    .command(exportCmd)
    .command(recipes)
    .command(inspect)
    .command(devices)
    .demandCommand(1, 'name a command: train, eval, embed, pull, push, export, recipes, inspect or devices')
    .recommendCommands()
    .strict()
    .version(pkg.version)
    .help()
    .alias('h', 'help')
    .wrap(Math.min(110, process.stdout.columns || 100))
    .fail((msg, err) => {
      if (err) throw err;
      process.stderr.write(`error: ${msg}\nrun \`unime --help\` for usage\n`);
      process.exit(EXIT.usage);
    });
  await cli.parseAsync();
}

await main(hideBin(process.argv));
