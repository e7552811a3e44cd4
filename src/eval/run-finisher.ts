/**
 * After a run, the run report (report.md + report.html in the recipe's output dir) when the recipe
 * has eval stages: the comparison of its MMEB ones, labelled by stage name (with what each starts
 * from), a table per other suite, and the loss curves of its training stages. The path is printed
 * last, so the user knows where to look.
 */
import * as path from 'node:path';
import { registerRunFinisher, type RunFinishContext } from '../recipes/registry.js';
import { writeRunReport, type StageDir, type SuiteStageDir } from './run-report.js';
import { OTHER_SUITES, type OtherSuite } from './suite-eval.js';

const TRAINING_KINDS = new Set(['caption-contrastive', 'unime-distill', 'unime-hardneg', 'clip-train', 'mllm-align']);

export async function finishRunReport(ctx: RunFinishContext): Promise<void> {
  const evals: StageDir[] = [];
  const suites: SuiteStageDir[] = [];
  const trains: StageDir[] = [];
  ctx.recipe.stages.forEach((stage, i) => {
    const s = ctx.stages[i]!;
    const suite = s.kind === 'eval' ? (stage as { suite?: string }).suite : undefined;
    if (suite === 'mmeb') {
      evals.push({ label: s.initFrom ? `${s.name} (${path.basename(s.initFrom)})` : `${s.name} (base)`, dir: s.outputDir });
    } else if (suite !== undefined && (OTHER_SUITES as readonly string[]).includes(suite)) {
      suites.push({ label: s.name, dir: s.outputDir, suite: suite as OtherSuite });
    } else if (TRAINING_KINDS.has(s.kind) && s.completed) {
      trains.push({ label: s.name, dir: s.outputDir });
    }
  });
  if (evals.length === 0 && suites.length === 0) return;
  const files = await writeRunReport(ctx.outputDir, evals, trains, suites);
  const rel = (p: string) => path.relative(process.cwd(), p) || p;
  ctx.log.info(`report: ${rel(files.html)} (and ${rel(files.markdown)})`);
}

registerRunFinisher('run-report', finishRunReport);
