import type { Argv } from 'yargs';
import * as path from 'node:path';
import { handler as wrap } from './common.js';
import { notInThisBuild } from './later.js';
import { readMmebReport, summarizeMmeb, MMEB_MAIN_METRIC } from '../eval/aggregate.js';
import { markdownReport, comparisonMarkdown, writeResultReports, writeComparisonReports } from '../eval/report.js';
import { UnimeError } from '../errors.js';

export const SUITES = ['mmeb', 'retrieval', 'sugarcrepe', 'zeroshot'] as const;

export const command = 'eval';
export const describe = 'Evaluate a model on MMEB or another suite; summarize and compare results';

function suiteBuilder(y: Argv) {
  return y
    .option('model', { type: 'string', describe: 'checkpoint directory or Hub id', demandOption: true })
    .option('data', { type: 'string', describe: 'local folder with the suite data (e.g. the MMEB-eval layout)' })
    .option('datasets', { type: 'string', array: true, describe: 'evaluate only these datasets' })
    .option('out', { type: 'string', describe: 'folder for results JSON, Markdown and HTML' })
    .option('batch-size', { type: 'number', default: 16 })
    .option('device', { type: 'string', choices: ['auto', 'cpu', 'native', 'cuda'], default: 'auto' });
}

interface SummarizeArgs {
  result: string;
  metric: string;
  out?: string;
}
interface CompareArgs {
  results: string[];
  labels?: string[];
  metric: string;
  out?: string;
}

/** Default label of a result file: its parent folder for the usual `<run>/<stage>/mmeb.json`, else the file name. */
function defaultLabel(file: string): string {
  const base = path.basename(file, path.extname(file));
  return /^(mmeb|results?|report|mmeb[-_]results?)$/i.test(base) ? path.basename(path.dirname(path.resolve(file))) : base;
}

export function builder(y: Argv) {
  let b: Argv = y;
  for (const suite of SUITES) {
    b = b.command(
      suite,
      `Evaluate a model on ${suite === 'mmeb' ? 'MMEB (36 image tasks, hit@1)' : suite}`,
      suiteBuilder,
      wrap(() => notInThisBuild(`eval ${suite}`, 'the model zoo (decoders, vision towers, tokenizers) to embed with')),
    );
  }
  return b
    .command(
      'summarize <result>',
      'Aggregate an MMEB result JSON (VLM2Vec layout): meta-tasks, IND/OOD, overall',
      (s) =>
        s
          .positional('result', { type: 'string', demandOption: true, describe: 'result JSON with metrics.image.<dataset>' })
          .option('metric', { type: 'string', default: MMEB_MAIN_METRIC, describe: 'metric to aggregate' })
          .option('out', { type: 'string', describe: 'also write <out>/mmeb-report.md and .html' }),
      wrap(async (a: SummarizeArgs) => {
        const summary = summarizeMmeb(await readMmebReport(a.result), a.metric);
        process.stdout.write(markdownReport(summary));
        if (a.out) {
          const w = await writeResultReports(a.out, summary);
          process.stderr.write(`wrote ${w.markdown} and ${w.html}\n`);
        }
      }),
    )
    .command(
      'compare <results..>',
      'Show several results side by side (base vs stage 1 vs stage 2), deltas against the first',
      (s) =>
        s
          .positional('results', { type: 'string', array: true, demandOption: true, describe: 'result JSON files, baseline first' })
          .option('labels', { type: 'string', array: true, describe: 'column labels, one per result (default: folder or file names)' })
          .option('metric', { type: 'string', default: MMEB_MAIN_METRIC })
          .option('out', { type: 'string', describe: 'also write <out>/mmeb-comparison.md and .html' }),
      wrap(async (a: CompareArgs) => {
        if (a.labels && a.labels.length !== a.results.length) {
          throw new UnimeError(`${a.labels.length} labels for ${a.results.length} results`, { field: '--labels', fix: 'give one label per result file, in the same order' });
        }
        const entries = [];
        for (const [i, file] of a.results.entries()) {
          entries.push({ label: a.labels?.[i] ?? defaultLabel(file), summary: summarizeMmeb(await readMmebReport(file), a.metric) });
        }
        process.stdout.write(comparisonMarkdown(entries));
        if (a.out) {
          const w = await writeComparisonReports(a.out, entries);
          process.stderr.write(`wrote ${w.markdown} and ${w.html}\n`);
        }
      }),
    )
    .demandCommand(1, 'name what to do: mmeb, retrieval, sugarcrepe, zeroshot, summarize or compare');
}

// The subcommands carry their own handlers.
export const handler = () => {};
