/**
 * The progress display on stderr. On a terminal one line is redrawn after every step (bar, loss, lr,
 * it/s, ETA); elsewhere (logs, CI) a plain line is printed every `logEvery` steps and at the end.
 */
export interface ProgressStream {
  write(s: string): boolean;
  isTTY?: boolean;
  columns?: number;
}

export interface ProgressUpdate {
  step: number;
  loss: number;
  lr: number;
  gradNorm?: number;
  samplesPerSec?: number;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  const two = (n: number) => String(n).padStart(2, '0');
  return h > 0 ? `${h}:${two(m)}:${two(sec)}` : `${two(m)}:${two(sec)}`;
}

const fmt = (x: number) => (Math.abs(x) >= 1e-3 && Math.abs(x) < 1e4 ? x.toFixed(4) : x.toExponential(3));

export class Progress {
  private readonly startTime = performance.now();
  private readonly startStep: number;
  private lastDrawn = 0;
  private drewTty = false;

  constructor(
    private readonly totalSteps: number,
    startStep: number,
    private readonly logEvery: number,
    private readonly stream: ProgressStream | null = process.stderr,
    private readonly label = 'train',
  ) {
    this.startStep = startStep;
  }

  /** Steps per second over this run (since the start or the resumption). */
  rate(step: number): number {
    const dt = (performance.now() - this.startTime) / 1000;
    return dt > 0 ? (step - this.startStep) / dt : 0;
  }

  line(u: ProgressUpdate, withBar: boolean): string {
    const rate = this.rate(u.step);
    const eta = rate > 0 ? (this.totalSteps - u.step) / rate : NaN;
    const parts = [`step ${u.step}/${this.totalSteps}`, `loss ${fmt(u.loss)}`, `lr ${u.lr.toExponential(2)}`];
    if (u.gradNorm !== undefined && Number.isFinite(u.gradNorm)) parts.push(`grad ${fmt(u.gradNorm)}`);
    // Slow steps (big models) read better as seconds per step, as tqdm shows them.
    parts.push(rate > 0 && rate < 1 ? `${(1 / rate).toFixed(2)} s/it` : `${rate.toFixed(2)} it/s`);
    if (u.samplesPerSec !== undefined) parts.push(`${u.samplesPerSec.toFixed(1)} samples/s`);
    parts.push(`ETA ${formatDuration(eta)}`);
    const text = parts.join(' | ');
    if (!withBar) return `${this.label}: ${text}`;
    const width = 24;
    const filled = Math.round((width * u.step) / Math.max(1, this.totalSteps));
    const pct = Math.floor((100 * u.step) / Math.max(1, this.totalSteps));
    return `${this.label} ${String(pct).padStart(3)}% [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${text}`;
  }

  update(u: ProgressUpdate): void {
    if (!this.stream) return;
    if (this.stream.isTTY) {
      let text = this.line(u, true);
      const cols = this.stream.columns ?? 120;
      if (text.length > cols - 1) text = text.slice(0, cols - 1);
      this.stream.write(`\r\x1b[2K${text}`);
      this.drewTty = true;
      return;
    }
    if (u.step % this.logEvery === 0 || u.step === this.totalSteps) {
      this.stream.write(this.line(u, false) + '\n');
      this.lastDrawn = u.step;
    }
  }

  /** A message on its own line (checkpoint saved, resumed from ...), without breaking the bar. */
  note(message: string): void {
    if (!this.stream) return;
    if (this.drewTty) this.stream.write('\r\x1b[2K');
    this.stream.write(message + '\n');
  }

  finish(): void {
    if (this.stream && this.drewTty) this.stream.write('\n');
    this.drewTty = false;
  }
}
