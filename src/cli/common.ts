/**
 * What every command shares: turning errors into exit codes and one clear message, and plain-text
 * tables for stdout.
 */
import { isUnimeError, NotImplementedYetError } from '../errors.js';

export const EXIT = { ok: 0, internal: 1, usage: 2, notImplemented: 3 } as const;

/** Wrap a command handler: UnimeErrors print their message alone; anything else prints a stack. */
export function handler<A>(fn: (args: A) => Promise<void> | void): (args: A) => Promise<void> {
  return async (args: A) => {
    try {
      await fn(args);
    } catch (e) {
      process.exitCode = reportError(e);
    }
  };
}

export function reportError(e: unknown): number {
  if (e instanceof NotImplementedYetError) {
    process.stderr.write(`unime: not available in this build: ${e.message}\n`);
    return EXIT.notImplemented;
  }
  if (isUnimeError(e)) {
    process.stderr.write(`error: ${e.message}\n`);
    return EXIT.usage;
  }
  const err = e as Error;
  process.stderr.write(`internal error (please report it): ${err?.stack ?? String(e)}\n`);
  return EXIT.internal;
}

/** Left-aligned text table; columns listed in `right` are right-aligned (numbers). */
export function formatTable(header: string[], rows: string[][], right: number[] = []): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (right.includes(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

/** 7063427072 -> "7.06B"; used for parameter counts. */
export function formatCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}K`;
  return String(n);
}
