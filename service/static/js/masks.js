// Masks as class-index arrays: {width, height, data: Uint8Array} with data[y * width + x]
// the class index. Pure functions: painting, flood fill, colours in and out, outlines and
// the example layout.

/** "#rrggbb" to [r, g, b]. */
export function hexToRgb(hex) {
  const v = parseInt(hex.slice(1), 16);
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}

export function blankMask(width, height, cls = 0) {
  return { width, height, data: new Uint8Array(width * height).fill(cls) };
}

export function copyMask(mask) {
  return { width: mask.width, height: mask.height, data: mask.data.slice() };
}

/** Fill a disc of `radius` around (cx, cy) with `cls`. */
export function stampDisc(mask, cx, cy, radius, cls) {
  const { width, height, data } = mask;
  const r = Math.max(0.5, radius);
  const y0 = Math.max(0, Math.floor(cy - r));
  const y1 = Math.min(height - 1, Math.ceil(cy + r));
  for (let y = y0; y <= y1; y++) {
    const dy = y + 0.5 - cy;
    const half = Math.sqrt(Math.max(0, r * r - dy * dy));
    const x0 = Math.max(0, Math.ceil(cx - half - 0.5));
    const x1 = Math.min(width - 1, Math.floor(cx + half - 0.5));
    if (x1 >= x0) data.fill(cls, y * width + x0, y * width + x1 + 1);
  }
}

/** Stamp discs along the segment (x0, y0) -> (x1, y1). */
export function strokeLine(mask, x0, y0, x1, y1, radius, cls) {
  const steps = Math.max(1, Math.ceil(Math.hypot(x1 - x0, y1 - y0) / Math.max(1, radius / 4)));
  for (let i = 1; i <= steps; i++) {
    const t = i / steps;
    stampDisc(mask, x0 + (x1 - x0) * t, y0 + (y1 - y0) * t, radius, cls);
  }
}

/** 4-connected flood fill from (x, y); returns whether anything changed. */
export function floodFill(mask, x, y, cls) {
  const { width, height, data } = mask;
  const start = y * width + x;
  const target = data[start];
  if (target === cls) return false;
  const stack = [start];
  while (stack.length) {
    const p = stack.pop();
    if (data[p] !== target) continue;
    // scan left and right along the row, then queue the rows above and below
    const row = p - (p % width);
    let left = p;
    while (left > row && data[left - 1] === target) left--;
    let right = p;
    while (right < row + width - 1 && data[right + 1] === target) right++;
    data.fill(cls, left, right + 1);
    for (let q = left; q <= right; q++) {
      if (q - width >= 0 && data[q - width] === target) stack.push(q - width);
      if (q + width < width * height && data[q + width] === target) stack.push(q + width);
    }
  }
  return true;
}

/** Replace class `from` by `to` (a new mask). */
export function relabel(mask, from, to) {
  const out = copyMask(mask);
  for (let i = 0; i < out.data.length; i++) if (out.data[i] === from) out.data[i] = to;
  return out;
}

/** Pixel share of each class (fractions, length `numClasses`). */
export function classShares(mask, numClasses) {
  const counts = new Array(numClasses).fill(0);
  for (const v of mask.data) counts[v] += 1;
  return counts.map((c) => c / mask.data.length);
}

/** Paint the mask's colours into an ImageData of the same size. */
export function toImageData(mask, palette, alpha = 255) {
  const image = new ImageData(mask.width, mask.height);
  const px = new Uint32Array(image.data.buffer);
  const lut = palette.map(([r, g, b]) => ((alpha << 24) | (b << 16) | (g << 8) | r) >>> 0);
  for (let i = 0; i < mask.data.length; i++) px[i] = lut[mask.data[i]];
  return image;
}

/** Class indices from RGBA pixels in the palette's colours; throws on any other colour. */
export function fromColorPixels(image, palette) {
  const lut = new Map(palette.map(([r, g, b], i) => [(r << 16) | (g << 8) | b, i]));
  const mask = blankMask(image.width, image.height);
  const d = image.data;
  for (let i = 0; i < mask.data.length; i++) {
    const code = (d[4 * i] << 16) | (d[4 * i + 1] << 8) | d[4 * i + 2];
    const cls = lut.get(code);
    if (cls === undefined) {
      const hex = `#${code.toString(16).padStart(6, "0")}`;
      throw new Error(`colour ${hex} at pixel ${i % image.width},${Math.floor(i / image.width)} is not a class colour`);
    }
    mask.data[i] = cls;
  }
  return mask;
}

/** Pixels of an image element or bitmap as ImageData. */
export function pixelsOf(source) {
  const width = source.naturalWidth || source.width;
  const height = source.naturalHeight || source.height;
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(source, 0, 0);
  return ctx.getImageData(0, 0, width, height);
}

/** The mask as an RGB PNG in the class colours (what /generate reads with encoding=color). */
export async function toColorPng(mask, palette) {
  const canvas = new OffscreenCanvas(mask.width, mask.height);
  canvas.getContext("2d").putImageData(toImageData(mask, palette), 0, 0);
  return canvas.convertToBlob({ type: "image/png" });
}

/**
 * Overlay pixels: class outlines `thickness` px wide, or every class in translucent colour.
 */
export function overlayImage(mask, palette, mode, thickness = 2) {
  if (mode === "fill") return toImageData(mask, palette, 110);
  const { width, height, data } = mask;
  const edge = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = y * width + x;
      const v = data[i];
      if ((x + 1 < width && data[i + 1] !== v) || (y + 1 < height && data[i + width] !== v)) {
        edge[i] = 1;
      }
    }
  }
  const image = new ImageData(width, height);
  const px = new Uint32Array(image.data.buffer);
  const lut = palette.map(([r, g, b]) => ((255 << 24) | (b << 16) | (g << 8) | r) >>> 0);
  const t = Math.max(0, Math.floor(thickness / 2));
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (!edge[y * width + x]) continue;
      const colour = lut[data[y * width + x]];
      for (let yy = Math.max(0, y - t); yy <= Math.min(height - 1, y + t); yy++) {
        px.fill(colour, yy * width + Math.max(0, x - t), yy * width + Math.min(width - 1, x + t) + 1);
      }
    }
  }
  return image;
}

/** A small deterministic PRNG (mulberry32) so that an example layout has a seed. */
function random(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Smooth random field: a coarse grid of random values, upsampled with smoothstep weights. */
function smoothField(width, height, cell, rand) {
  const gw = Math.ceil(width / cell) + 2;
  const gh = Math.ceil(height / cell) + 2;
  const grid = Float32Array.from({ length: gw * gh }, rand);
  const field = new Float32Array(width * height);
  for (let y = 0; y < height; y++) {
    const gy = y / cell;
    const y0 = Math.floor(gy);
    const fy = smooth(gy - y0);
    for (let x = 0; x < width; x++) {
      const gx = x / cell;
      const x0 = Math.floor(gx);
      const fx = smooth(gx - x0);
      const a = grid[y0 * gw + x0] * (1 - fx) + grid[y0 * gw + x0 + 1] * fx;
      const b = grid[(y0 + 1) * gw + x0] * (1 - fx) + grid[(y0 + 1) * gw + x0 + 1] * fx;
      field[y * width + x] = a * (1 - fy) + b * fy;
    }
  }
  return field;
}

function smooth(t) {
  return t * t * (3 - 2 * t);
}

function ellipse(mask, cx, cy, rx, ry, angle, cls, onlyOver) {
  const { width, height, data } = mask;
  const r = Math.max(rx, ry);
  const cos = Math.cos(angle);
  const sin = Math.sin(angle);
  for (let y = Math.max(0, Math.floor(cy - r)); y <= Math.min(height - 1, cy + r); y++) {
    for (let x = Math.max(0, Math.floor(cx - r)); x <= Math.min(width - 1, cx + r); x++) {
      const u = (x - cx) * cos + (y - cy) * sin;
      const v = -(x - cx) * sin + (y - cy) * cos;
      const i = y * width + x;
      if ((u / rx) ** 2 + (v / ry) ** 2 < 1 && data[i] === onlyOver) data[i] = cls;
    }
  }
}

/**
 * An example layout: class 0 as background, the last class as fused blobs from a smooth
 * random field, the classes between as round glands.
 */
export function exampleLayout(width, height, numClasses, seed) {
  const rand = random(seed);
  const mask = blankMask(width, height, 0);
  const last = numClasses - 1;
  const scale = Math.min(width, height);
  const field = smoothField(width, height, Math.max(8, scale / 6), rand);
  for (let i = 0; i < field.length; i++) if (field[i] > 0.68) mask.data[i] = last;
  const glandClasses = numClasses > 2 ? Array.from({ length: numClasses - 2 }, (_, i) => i + 1) : [last];
  const count = Math.round((width * height) / (scale * scale / 30));
  for (let k = 0; k < count; k++) {
    const cls = glandClasses[k % glandClasses.length];
    const r = scale * (0.02 + 0.03 * rand());
    ellipse(mask, rand() * width, rand() * height, r * (0.7 + 0.6 * rand()), r,
      rand() * Math.PI, cls, 0);
  }
  return mask;
}
