/**
 * One error type for everything a user can get wrong. The CLI prints `message` alone (no stack)
 * for these, so the message must carry the whole story: where (file, field, line), what was
 * wrong, and how to fix it.
 */
export interface UnimeErrorDetails {
  /** The file the problem is in, as the user named it. */
  file?: string;
  /** The field or tensor inside that file, as a dotted path or a name. */
  field?: string;
  /** 1-based line (and column) in `file`, when known. */
  line?: number;
  column?: number;
  /** What the user should do about it. */
  fix?: string;
  cause?: unknown;
}

export class UnimeError extends Error {
  readonly file: string | undefined;
  readonly field: string | undefined;
  readonly line: number | undefined;
  readonly column: number | undefined;
  readonly fix: string | undefined;
  /** The problem alone, without location or fix; `message` has all three. */
  readonly problem: string;

  constructor(problem: string, details: UnimeErrorDetails = {}) {
    super(formatMessage(problem, details), details.cause === undefined ? undefined : { cause: details.cause });
    this.name = new.target.name;
    this.problem = problem;
    this.file = details.file;
    this.field = details.field;
    this.line = details.line;
    this.column = details.column;
    this.fix = details.fix;
  }
}

/** A command or stage whose engine is not part of this build. Exit code 3 from the CLI. */
export class NotImplementedYetError extends UnimeError {}

function formatMessage(problem: string, d: UnimeErrorDetails): string {
  let where = '';
  if (d.file !== undefined) {
    where = d.file;
    if (d.line !== undefined) where += `:${d.line}` + (d.column !== undefined ? `:${d.column}` : '');
  }
  if (d.field !== undefined) where += (where ? ': ' : '') + d.field;
  let msg = where ? `${where}: ${problem}` : problem;
  if (d.fix) msg += `\n  fix: ${d.fix}`;
  return msg;
}

export function isUnimeError(e: unknown): e is UnimeError {
  return e instanceof UnimeError;
}
