/**
 * Minimal leveled logging to stderr, so stdout stays clean for command output (tables, JSON).
 * `once` keys make sure a notice such as "running on the JS kernels" is printed a single time.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
const order: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

export interface Logger {
  debug(msg: string): void;
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
  /** Log at `level` unless a message with the same key was already logged. */
  once(key: string, level: Exclude<LogLevel, 'silent'>, msg: string): void;
}

let level: LogLevel = (process.env.UNIME_LOG_LEVEL as LogLevel) in order ? (process.env.UNIME_LOG_LEVEL as LogLevel) : 'info';
const seen = new Set<string>();
let sink: (line: string) => void = (line) => process.stderr.write(line + '\n');

export function setLogLevel(l: LogLevel): void {
  level = l;
}
export function getLogLevel(): LogLevel {
  return level;
}
/** Redirect log lines (tests capture them this way). Returns a function that restores the old sink. */
export function setLogSink(fn: (line: string) => void): () => void {
  const old = sink;
  sink = fn;
  return () => {
    sink = old;
  };
}

function emit(l: Exclude<LogLevel, 'silent'>, msg: string): void {
  if (order[l] < order[level]) return;
  const prefix = l === 'info' || l === 'debug' ? '' : `${l}: `;
  sink(`${prefix}${msg}`);
}

export const log: Logger = {
  debug: (m) => emit('debug', m),
  info: (m) => emit('info', m),
  warn: (m) => emit('warn', m),
  error: (m) => emit('error', m),
  once(key, l, m) {
    if (seen.has(key)) return;
    seen.add(key);
    emit(l, m);
  },
};
