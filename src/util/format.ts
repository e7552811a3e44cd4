/** Human-readable numbers for logs and tables. No dependencies, so any module can use it cheaply. */

/**
 * A byte count with binary units (KiB, MiB: memory, tensor sizes) or decimal ones (kB, MB: what the
 * Hugging Face Hub and download tools show).
 */
export function formatBytes(n: number, system: 'binary' | 'decimal' = 'binary'): string {
  if (!Number.isFinite(n)) return String(n);
  const base = system === 'binary' ? 1024 : 1000;
  const units = system === 'binary' ? ['B', 'KiB', 'MiB', 'GiB', 'TiB'] : ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = n;
  while (Math.abs(v) >= base && i < units.length - 1) {
    v /= base;
    i++;
  }
  return `${i === 0 ? v.toFixed(0) : v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)} ${units[i]}`;
}
