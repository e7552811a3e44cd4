/**
 * Loss and learning-rate curves as one self-contained HTML page (inline SVG, no scripts, no network),
 * rendered from metrics.jsonl.
 */
import { writeBytesAtomic } from '../io/atomic.js';
import { readMetrics, type MetricRecord } from './metrics.js';

export interface Series {
  name: string;
  /** [step, value] pairs; non-finite values are left out. */
  points: [number, number][];
}

const W = 640;
const H = 260;
const M = { left: 64, right: 16, top: 28, bottom: 36 };

function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

const num = (x: number) => (x === 0 ? '0' : Math.abs(x) >= 1e-3 && Math.abs(x) < 1e5 ? String(Number(x.toPrecision(4))) : x.toExponential(2));

/** One line chart as an <svg> element. */
export function lineChartSvg(title: string, series: Series, color = '#1f77b4'): string {
  const pts = series.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-series="${escapeHtml(series.name)}" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">`);
  parts.push(`<title>${escapeHtml(title)}</title>`);
  parts.push(`<text x="${M.left}" y="18" font-size="14" font-family="sans-serif">${escapeHtml(title)}</text>`);
  parts.push(`<rect x="${M.left}" y="${M.top}" width="${pw}" height="${ph}" fill="none" stroke="#999"/>`);
  if (pts.length === 0) {
    parts.push(`<text x="${M.left + 8}" y="${M.top + 20}" font-size="12" font-family="sans-serif">no data</text></svg>`);
    return parts.join('\n');
  }
  let x0 = Math.min(...pts.map((p) => p[0]));
  let x1 = Math.max(...pts.map((p) => p[0]));
  let y0 = Math.min(...pts.map((p) => p[1]));
  let y1 = Math.max(...pts.map((p) => p[1]));
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) {
    y0 -= Math.abs(y0) * 0.05 || 0.5;
    y1 += Math.abs(y1) * 0.05 || 0.5;
  }
  const sx = (x: number) => M.left + ((x - x0) / (x1 - x0)) * pw;
  const sy = (y: number) => M.top + ph - ((y - y0) / (y1 - y0)) * ph;
  for (let i = 0; i <= 4; i++) {
    const y = y0 + ((y1 - y0) * i) / 4;
    const py = sy(y).toFixed(1);
    parts.push(`<line x1="${M.left}" x2="${M.left + pw}" y1="${py}" y2="${py}" stroke="#eee"/>`);
    parts.push(`<text x="${M.left - 6}" y="${py}" font-size="10" font-family="sans-serif" text-anchor="end" dominant-baseline="middle">${num(y)}</text>`);
  }
  for (let i = 0; i <= 4; i++) {
    const x = x0 + ((x1 - x0) * i) / 4;
    parts.push(`<text x="${sx(x).toFixed(1)}" y="${M.top + ph + 14}" font-size="10" font-family="sans-serif" text-anchor="middle">${num(Math.round(x))}</text>`);
  }
  parts.push(`<text x="${M.left + pw / 2}" y="${H - 4}" font-size="11" font-family="sans-serif" text-anchor="middle">step</text>`);
  const poly = pts.map(([x, y]) => `${sx(x).toFixed(2)},${sy(y).toFixed(2)}`).join(' ');
  parts.push(`<polyline class="curve" data-points="${pts.length}" fill="none" stroke="${color}" stroke-width="1.5" points="${poly}"/>`);
  parts.push('</svg>');
  return parts.join('\n');
}

/** The page: loss, learning rate, and gradient norm when recorded. */
export function renderPlotsHtml(records: readonly MetricRecord[], title = 'Training curves'): string {
  const series = (key: string): Series => ({
    name: key,
    points: records.filter((r) => typeof r[key] === 'number').map((r) => [r.step, r[key] as number]),
  });
  const charts = [lineChartSvg('loss', series('loss'), '#d62728'), lineChartSvg('learning rate', series('lr'), '#1f77b4')];
  const gn = series('grad_norm');
  if (gn.points.some(([, y]) => Number.isFinite(y))) charts.push(lineChartSvg('gradient norm (before clipping)', gn, '#2ca02c'));
  const last = records[records.length - 1];
  const summary = last ? `${records.length} steps logged; last step ${last.step}, loss ${num(last.loss)}, lr ${num(last.lr)}` : 'no steps logged yet';
  return [
    '<!doctype html>',
    '<html lang="en"><head><meta charset="utf-8">',
    `<title>${escapeHtml(title)}</title>`,
    '<style>body{font-family:sans-serif;margin:24px}svg.chart{display:block;margin:12px 0}</style>',
    '</head><body>',
    `<h1>${escapeHtml(title)}</h1>`,
    `<p>${escapeHtml(summary)}</p>`,
    ...charts,
    '</body></html>',
    '',
  ].join('\n');
}

/** Read metrics.jsonl and write the page atomically. */
export async function writePlots(metricsFile: string, htmlFile: string, title?: string): Promise<void> {
  await writeBytesAtomic(htmlFile, renderPlotsHtml(await readMetrics(metricsFile), title));
}
