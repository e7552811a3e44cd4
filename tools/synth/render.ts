/**
 * A tiny rasteriser: a scene to an RGB image, shapes filled with 4x4 supersampling (anti-aliased
 * edges), on a light grey background. Geometry is defined at a 48 px reference size and scaled.
 */
import { COLOUR_RGB, type Scene, type SceneObject } from './scene.js';

export interface Image {
  width: number;
  height: number;
  data: Uint8Array;
}

export const REFERENCE_SIZE = 48;
const BACKGROUND = [236, 236, 236] as const;
const RADIUS = { small: 5.5, large: 9.5 } as const;

function centre(o: SceneObject): [number, number] {
  const cellSize = REFERENCE_SIZE / 2;
  return [(o.cell & 1) * cellSize + cellSize / 2 + o.dx, (o.cell >> 1) * cellSize + cellSize / 2 + o.dy];
}

function flat(points: readonly (readonly [number, number])[]): Float64Array {
  return Float64Array.from(points.flat());
}
const STAR = flat(
  Array.from({ length: 10 }, (_, k) => {
    const r = k % 2 === 0 ? 1 : 0.45;
    const t = -Math.PI / 2 + (k * Math.PI) / 5;
    return [r * Math.cos(t), r * Math.sin(t)] as const;
  }),
);
const TRIANGLE = flat([
  [0, -1],
  [0.95, 0.8],
  [-0.95, 0.8],
]);

/** Even-odd test against a polygon given as flat x0, y0, x1, y1, ... */
function insidePolygon(x: number, y: number, poly: Float64Array): boolean {
  let inside = false;
  const m = poly.length;
  for (let i = 0, j = m - 2; i < m; j = i, i += 2) {
    const xi = poly[i]!, yi = poly[i + 1]!, xj = poly[j]!, yj = poly[j + 1]!;
    if (yi > y !== yj > y && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

/** Whether the unit-scaled point (u, v) (object centre at 0, radius 1) lies inside the shape. */
function insideShape(shape: SceneObject['shape'], u: number, v: number): boolean {
  switch (shape) {
    case 'circle':
      return u * u + v * v <= 1;
    case 'square':
      return Math.abs(u) <= 0.82 && Math.abs(v) <= 0.82;
    case 'triangle':
      return insidePolygon(u, v, TRIANGLE);
    case 'star':
      return insidePolygon(u, v, STAR);
  }
}

export function renderScene(scene: Scene, size = REFERENCE_SIZE): Image {
  const data = new Uint8Array(size * size * 3);
  const scale = REFERENCE_SIZE / size;
  const SS = 4;
  const n = size * SS;
  // The object owning each subsample (-1: background); later objects are drawn over earlier ones.
  const owner = new Int8Array(n * n).fill(-1);
  scene.objects.forEach((o, k) => {
    const [cx, cy] = centre(o);
    const r = RADIUS[o.size];
    const lo = (v: number) => Math.max(0, Math.floor(((v - r) / scale) * SS));
    const hi = (v: number) => Math.min(n - 1, Math.ceil(((v + r) / scale) * SS));
    for (let sy = lo(cy); sy <= hi(cy); sy++) {
      const y = ((sy + 0.5) / SS) * scale;
      for (let sx = lo(cx); sx <= hi(cx); sx++) {
        const x = ((sx + 0.5) / SS) * scale;
        if (insideShape(o.shape, (x - cx) / r, (y - cy) / r)) owner[sy * n + sx] = k;
      }
    }
  });
  const colours = scene.objects.map((o) => COLOUR_RGB[o.colour]);
  const acc = [0, 0, 0];
  for (let py = 0; py < size; py++) {
    for (let px = 0; px < size; px++) {
      acc[0] = acc[1] = acc[2] = 0;
      for (let sy = 0; sy < SS; sy++) {
        for (let sx = 0; sx < SS; sx++) {
          const k = owner[(py * SS + sy) * n + px * SS + sx] as number;
          const c = k < 0 ? BACKGROUND : (colours[k] as readonly [number, number, number]);
          acc[0] += c[0];
          acc[1] += c[1];
          acc[2] += c[2];
        }
      }
      const i = (py * size + px) * 3;
      for (let ch = 0; ch < 3; ch++) data[i + ch] = Math.round((acc[ch] as number) / (SS * SS));
    }
  }
  return { width: size, height: size, data };
}

/** The grid cell of `cell` (0..3) cut out of an image: the region a grounding candidate shows. */
export function cropCell(image: Image, cell: number): Image {
  const half = image.width >> 1;
  const x0 = (cell & 1) * half, y0 = (cell >> 1) * half;
  const data = new Uint8Array(half * half * 3);
  for (let y = 0; y < half; y++) {
    const src = ((y0 + y) * image.width + x0) * 3;
    data.set(image.data.subarray(src, src + half * 3), y * half * 3);
  }
  return { width: half, height: half, data };
}
