import { UnimeError, type UnimeErrorDetails } from '../errors.js';

/** One problem found in a recipe, located as precisely as the source allows. */
export interface RecipeProblem {
  /** What is wrong, phrased as "expected X, found Y" where that fits. */
  problem: string;
  /** Field path as users write it: `stages[1].train.lr`. */
  field?: string;
  line?: number;
  column?: number;
  /** The command line override that put the offending value there, as typed (`key=value`). */
  override?: string;
}

export interface RecipeErrorDetails extends UnimeErrorDetails {
  /** Recipe errors always name their file (or `<recipe>` for text given directly). */
  file: string;
  override?: string;
  /** Further problems found in the same pass; the message lists them after the first. */
  more?: RecipeProblem[];
}

/** At most this many further problems are spelled out in one message. */
const MAX_LISTED = 8;

/**
 * Everything wrong with a recipe file, its command line overrides or its interpolation. The message
 * carries file:line:column, the field path, what was expected and what was found; `problems` has the
 * same information as data (first entry = the one in the message head).
 */
export class RecipeError extends UnimeError {
  readonly override: string | undefined;
  readonly problems: RecipeProblem[];

  constructor(problem: string, details: RecipeErrorDetails) {
    const head = details.override !== undefined ? `command line override \`${details.override}\`: ${problem}` : problem;
    const more = details.more ?? [];
    let text = head;
    if (more.length > 0) {
      const listed = more.slice(0, MAX_LISTED).map((p) => `\n  also ${formatProblem(details.file, p)}`);
      text += listed.join('');
      if (more.length > MAX_LISTED) text += `\n  ... and ${more.length - MAX_LISTED} more problems`;
    }
    const { more: _more, override: _override, ...rest } = details;
    super(text, rest);
    this.override = details.override;
    this.problems = [
      { problem, field: details.field, line: details.line, column: details.column, override: details.override },
      ...more,
    ];
  }

  /** Build an error from a list of problems: the first one leads, the rest are listed. */
  static fromProblems(file: string, problems: RecipeProblem[], fix?: string): RecipeError {
    const [first, ...rest] = problems;
    if (!first) return new RecipeError('invalid recipe', { file, fix });
    return new RecipeError(first.problem, {
      file,
      field: first.field,
      line: first.line,
      column: first.column,
      override: first.override,
      more: rest,
      fix,
    });
  }
}

function formatProblem(file: string, p: RecipeProblem): string {
  let where = file;
  if (p.line !== undefined) where += `:${p.line}` + (p.column !== undefined ? `:${p.column}` : '');
  if (p.field !== undefined) where += `: ${p.field}`;
  const problem = p.override !== undefined ? `command line override \`${p.override}\`: ${p.problem}` : p.problem;
  return `${where}: ${problem}`;
}
