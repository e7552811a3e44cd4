/**
 * A small progress reporter for long transfers (and anything else with a known total). On a TTY it
 * redraws one line on stderr, at most ten times a second; otherwise (CI, pipes, log files) it
 * writes a plain log line now and then, so logs stay readable. Quiet mode (log level warn or
 * above) silences it.
 */
import { getLogLevel, log } from '../runtime/log.js';
import { formatBytes as formatBytesIn } from '../util/format.js';

export interface Progress {
  /** `n` more units done. */
  add(n: number): void;
  /** Set the done count (e.g. after a resumed download starts from an offset). */
  set(done: number): void;
  /** Grow the total (work discovered on the way). */
  addTotal(n: number): void;
  /** Finish: draw the final state and end the line. */
  done(): void;
}

export interface ProgressOptions {
  label: string;
  total: number;
  unit?: 'bytes' | 'items';
  /** Default process.stderr. */
  stream?: { isTTY?: boolean; columns?: number; write(s: string): unknown };
  /** Between two plain log lines when not on a TTY (default 10 s). */
  logIntervalMs?: number;
  /** Force on/off; default: on unless the log level is warn or quieter. */
  enabled?: boolean;
}

/** Byte counts in decimal units (kB, MB), as the Hub shows them. */
export function formatBytes(n: number): string {
  return formatBytesIn(n, 'decimal');
}

function formatDuration(s: number): string {
  if (!Number.isFinite(s) || s < 0) return '--:--';
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = Math.floor(s % 60);
  const mm = String(m).padStart(2, '0');
  const ss = String(sec).padStart(2, '0');
  return h > 0 ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

const SILENT: Progress = { add() {}, set() {}, addTotal() {}, done() {} };

export function createProgress(opts: ProgressOptions): Progress {
  const level = getLogLevel();
  const enabled = opts.enabled ?? (level === 'debug' || level === 'info');
  if (!enabled) return SILENT;
  const stream = opts.stream ?? process.stderr;
  const tty = stream.isTTY === true;
  const unit = opts.unit ?? 'bytes';
  const fmt = (n: number) => (unit === 'bytes' ? formatBytes(n) : String(n));
  const start = Date.now();
  const logEvery = opts.logIntervalMs ?? 10_000;
  let total = opts.total;
  let doneCount = 0;
  let lastDraw = 0;
  let lastLog = start;
  let finished = false;

  const summary = () => {
    const pct = total > 0 ? Math.min(100, Math.floor((doneCount / total) * 100)) : 100;
    const secs = (Date.now() - start) / 1000;
    const rate = secs > 0 ? doneCount / secs : 0;
    const eta = rate > 0 ? (total - doneCount) / rate : Infinity;
    const rateText = unit === 'bytes' ? `${formatBytes(Math.round(rate))}/s` : `${rate.toFixed(1)}/s`;
    return { pct, text: `${fmt(doneCount)}/${fmt(total)} ${rateText} ${finished ? formatDuration(secs) : `eta ${formatDuration(eta)}`}` };
  };

  const draw = (force: boolean) => {
    const now = Date.now();
    if (tty) {
      if (!force && now - lastDraw < 100) return;
      lastDraw = now;
      const { pct, text } = summary();
      const width = Math.max(40, (stream.columns ?? 80) - 1);
      const barWidth = Math.max(10, Math.min(30, width - opts.label.length - text.length - 10));
      const filled = Math.round((pct / 100) * barWidth);
      const line = `${opts.label} [${'#'.repeat(filled)}${'.'.repeat(barWidth - filled)}] ${String(pct).padStart(3)}% ${text}`;
      stream.write(`\r${line.slice(0, width).padEnd(width)}`);
    } else {
      if (!force && now - lastLog < logEvery) return;
      lastLog = now;
      const { pct, text } = summary();
      log.info(`${opts.label}: ${pct}% ${text}`);
    }
  };

  return {
    add(n) {
      doneCount += n;
      draw(false);
    },
    set(n) {
      doneCount = n;
      draw(false);
    },
    addTotal(n) {
      total += n;
    },
    done() {
      if (finished) return;
      finished = true;
      draw(true);
      if (tty) stream.write('\n');
    },
  };
}
