/**
 * Image transforms with torchvision's semantics, as pure functions on typed arrays (they never
 * modify their input, which may be shared dataset memory). Randomness comes from the sample's
 * counter-based generator, so workers and the main thread draw the same crops and flips.
 * Layout convention: uint8 images are HWC, float images are CHW (see ndarray.ts).
 */
import type { Transform } from './dataset.ts';
import { imageGeometry, type NDArray } from './ndarray.ts';
import { portable } from './portable.ts';

const here = import.meta.url;

/** A new image of the input's dtype and layout with the given height and width. */
function blankLike(img: NDArray, h: number, w: number, c: number): NDArray {
  const n = h * w * c;
  if (img.data instanceof Uint8Array) return { data: new Uint8Array(n), shape: [h, w, c] };
  if (img.data instanceof Float64Array) return { data: new Float64Array(n), shape: [c, h, w] };
  return { data: new Float32Array(n), shape: [c, h, w] };
}

function sizePair(size: number | readonly [number, number], where: string): [number, number] {
  const [h, w] = typeof size === 'number' ? [size, size] : size;
  if (!Number.isInteger(h) || !Number.isInteger(w) || h <= 0 || w <= 0) {
    throw new Error(`${where}: size must be a positive integer or [height, width], got ${JSON.stringify(size)}`);
  }
  return [h, w];
}

/**
 * Pads every side by `padding` with `fill`, then cuts a `size` window at a random position
 * (top then left drawn uniformly from the valid offsets), as torchvision's RandomCrop.
 * @example
 * const crop = RandomCrop(32, { padding: 4 });   // CIFAR-10's standard augmentation
 */
export function RandomCrop(size: number | readonly [number, number], opts: { padding?: number; fill?: number } = {}): Transform {
  const [th, tw] = sizePair(size, 'RandomCrop');
  const pad = opts.padding ?? 0;
  const fill = opts.fill ?? 0;
  if (!Number.isInteger(pad) || pad < 0) throw new Error(`RandomCrop: padding must be a non-negative integer, got ${pad}`);
  const crop: Transform = (img, rng) => {
    const g = imageGeometry(img, 'RandomCrop');
    const ph = g.h + 2 * pad;
    const pw = g.w + 2 * pad;
    if (ph < th || pw < tw) throw new Error(`RandomCrop: crop ${th}x${tw} is larger than the padded image ${ph}x${pw}`);
    const top = rng.int(ph - th + 1) - pad;
    const left = rng.int(pw - tw + 1) - pad;
    const out = blankLike(img, th, tw, g.c);
    const o = imageGeometry(out, 'RandomCrop');
    const src = img.data as Float32Array;
    const dst = out.data as Float32Array;
    for (let c = 0; c < g.c; c++) {
      for (let y = 0; y < th; y++) {
        const sy = top + y;
        for (let x = 0; x < tw; x++) {
          const sx = left + x;
          const inside = sy >= 0 && sy < g.h && sx >= 0 && sx < g.w;
          dst[c * o.sc + y * o.sh + x * o.sw] = inside ? src[c * g.sc + sy * g.sh + sx * g.sw] : fill;
        }
      }
    }
    return out;
  };
  return portable(crop, here, 'RandomCrop', [size, opts]);
}

/**
 * Mirrors the image left-right with probability `p` (one draw per sample, whatever `p`).
 * @example
 * const flip = RandomHorizontalFlip();   // p = 0.5
 */
export function RandomHorizontalFlip(p = 0.5): Transform {
  if (!(p >= 0 && p <= 1)) throw new Error(`RandomHorizontalFlip: p must be in [0, 1], got ${p}`);
  const flip: Transform = (img, rng) => {
    const g = imageGeometry(img, 'RandomHorizontalFlip');
    const out = blankLike(img, g.h, g.w, g.c);
    const src = img.data as Float32Array;
    const dst = out.data as Float32Array;
    if (!(rng.float() < p)) {
      dst.set(src);
      return out;
    }
    for (let c = 0; c < g.c; c++) {
      for (let y = 0; y < g.h; y++) {
        const row = c * g.sc + y * g.sh;
        for (let x = 0; x < g.w; x++) dst[row + x * g.sw] = src[row + (g.w - 1 - x) * g.sw];
      }
    }
    return out;
  };
  return portable(flip, here, 'RandomHorizontalFlip', [p]);
}

/**
 * uint8 HWC in 0..255 → f32 CHW in 0..1, as torchvision's ToTensor.
 * @example
 * const x = ToTensor()(ndarray(new Uint8Array([0, 255, 51]), [1, 1, 3]), rng);  // [3,1,1]: 0, 1, 0.2
 */
export function ToTensor(): Transform {
  const toTensor: Transform = (img) => {
    if (!(img.data instanceof Uint8Array)) {
      throw new Error(`ToTensor: expected a uint8 HWC image, got ${img.data.constructor.name} (already converted?)`);
    }
    const g = imageGeometry(img, 'ToTensor');
    const src = img.data;
    const dst = new Float32Array(src.length);
    const plane = g.h * g.w;
    for (let p = 0; p < plane; p++) {
      for (let c = 0; c < g.c; c++) dst[c * plane + p] = src[p * g.c + c] / 255;
    }
    return { data: dst, shape: [g.c, g.h, g.w] };
  };
  return portable(toTensor, here, 'ToTensor', []);
}

/**
 * (x - mean[c]) / std[c] per channel of a float CHW image, as torchvision's Normalize.
 * @example
 * const norm = Normalize([0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]);
 */
export function Normalize(mean: readonly number[], std: readonly number[]): Transform {
  if (mean.length !== std.length || mean.length === 0) {
    throw new Error(`Normalize: mean (${mean.length} values) and std (${std.length} values) must have one value per channel`);
  }
  if (std.some((s) => !(s !== 0 && Number.isFinite(s)))) throw new Error(`Normalize: std must be finite and non-zero, got [${std.join(', ')}]`);
  const normalize: Transform = (img) => {
    const g = imageGeometry(img, 'Normalize');
    if (img.data instanceof Uint8Array) throw new Error('Normalize: expected a float CHW image; apply ToTensor() first');
    if (g.c !== mean.length) throw new Error(`Normalize: the image has ${g.c} channels, mean and std have ${mean.length}`);
    const src = img.data as Float32Array;
    const out = blankLike(img, g.h, g.w, g.c);
    const dst = out.data as Float32Array;
    const plane = g.h * g.w;
    for (let c = 0; c < g.c; c++) {
      const m = mean[c];
      const s = std[c];
      for (let p = c * plane; p < (c + 1) * plane; p++) dst[p] = (src[p] - m) / s;
    }
    return out;
  };
  return portable(normalize, here, 'Normalize', [[...mean], [...std]]);
}

/**
 * Applies transforms in order; they share the sample's generator, drawing one after another.
 * @example
 * const train = Compose([RandomCrop(32, { padding: 4 }), RandomHorizontalFlip(), ToTensor(), Normalize(mean, std)]);
 */
export function Compose(transforms: readonly Transform[]): Transform {
  const list = [...transforms];
  const composed: Transform = (img, rng) => {
    let x = img;
    for (const t of list) x = t(x, rng);
    return x;
  };
  return portable(composed, here, 'Compose', [list]);
}
