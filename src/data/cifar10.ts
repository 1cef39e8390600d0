/**
 * CIFAR-10 from the official binary batches (cifar-10-binary.tar.gz): `data_batch_1.bin` …
 * `data_batch_5.bin` (train, 50,000 images) and `test_batch.bin` (10,000). Each file holds
 * exactly 10,000 records of 3073 bytes: a label byte, then 1024 red, 1024 green and 1024 blue
 * bytes of a row-major 32x32 image. The records are read once into a SharedArrayBuffer, which
 * worker threads share instead of copying.
 */
import fs from 'node:fs';
import path from 'node:path';
import { checkIndex, type Dataset, DEFAULT_CONTEXT, sampleRng, type Transform } from './dataset.ts';
import type { NDArray } from './ndarray.ts';
import { portable } from './portable.ts';
import { ToTensor } from './transforms.ts';

export const CIFAR10_RECORD_BYTES = 3073;
export const CIFAR10_RECORDS_PER_FILE = 10000;
export const CIFAR10_TRAIN_FILES = ['data_batch_1.bin', 'data_batch_2.bin', 'data_batch_3.bin', 'data_batch_4.bin', 'data_batch_5.bin'];
export const CIFAR10_TEST_FILES = ['test_batch.bin'];
export const CIFAR10_CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];
/** Per-channel mean and standard deviation of the training images (for `Normalize`). */
export const CIFAR10_MEAN = [0.4914, 0.4822, 0.4465];
export const CIFAR10_STD = [0.247, 0.2435, 0.2616];

const PLANE = 1024;

export interface Cifar10Options {
  /** The 50,000 training images (default) or the 10,000 test images. */
  train?: boolean;
  /** Applied to each uint8 HWC [32, 32, 3] image; default `ToTensor()`; null keeps the raw bytes. */
  transform?: Transform | null;
}

/** A CIFAR-10 sample: the image (after the transform) and its label 0..9. */
export type Cifar10Sample = [NDArray, number];

/** `dir` itself, or the folder the tarball unpacks to inside it. */
function batchesDir(dir: string): string {
  const inner = path.join(dir, 'cifar-10-batches-bin');
  return !fs.existsSync(path.join(dir, 'test_batch.bin')) && fs.existsSync(inner) ? inner : dir;
}

/** Checks a batch file's size: it names the file when it is missing, truncated or of another kind. */
function checkFile(file: string): void {
  let size: number;
  try {
    size = fs.statSync(file).size;
  } catch {
    throw new Error(`cifar10: missing ${file} (expected the binary batches data_batch_1.bin … data_batch_5.bin and test_batch.bin of cifar-10-binary.tar.gz)`);
  }
  if (size % CIFAR10_RECORD_BYTES !== 0) {
    throw new Error(`cifar10: ${file} is truncated or not a CIFAR-10 binary batch: ${size} bytes is not a whole number of ${CIFAR10_RECORD_BYTES}-byte records`);
  }
  if (size / CIFAR10_RECORD_BYTES !== CIFAR10_RECORDS_PER_FILE) {
    throw new Error(`cifar10: ${file} holds ${size / CIFAR10_RECORD_BYTES} records, expected ${CIFAR10_RECORDS_PER_FILE} (truncated?)`);
  }
}

/**
 * Reads CIFAR-10's official binary batches from `dir` (or `dir/cifar-10-batches-bin`).
 * @example
 * const train = cifar10('data', { train: true, transform: Compose([RandomCrop(32, { padding: 4 }), RandomHorizontalFlip(), ToTensor(), Normalize(CIFAR10_MEAN, CIFAR10_STD)]) });
 * const [img, label] = train.get(0);   // f32 [3, 32, 32], 0..9
 */
export function cifar10(dir: string, opts: Cifar10Options = {}): Dataset<Cifar10Sample> {
  const root = batchesDir(dir);
  const files = (opts.train ?? true ? CIFAR10_TRAIN_FILES : CIFAR10_TEST_FILES).map((f) => path.join(root, f));
  for (const f of files) checkFile(f);
  const fileBytes = CIFAR10_RECORDS_PER_FILE * CIFAR10_RECORD_BYTES;
  const records = new SharedArrayBuffer(files.length * fileBytes);
  files.forEach((file, k) => {
    const view = new Uint8Array(records, k * fileBytes, fileBytes);
    const fd = fs.openSync(file, 'r');
    try {
      let done = 0;
      while (done < fileBytes) {
        const n = fs.readSync(fd, view, done, fileBytes - done, done);
        if (n === 0) throw new Error(`cifar10: ${file} ended after ${done} of ${fileBytes} bytes while reading`);
        done += n;
      }
    } finally {
      fs.closeSync(fd);
    }
    for (let r = 0; r < CIFAR10_RECORDS_PER_FILE; r++) {
      const label = view[r * CIFAR10_RECORD_BYTES];
      if (label > 9) throw new Error(`cifar10: ${file} record ${r} has label ${label}, not 0..9 (not a CIFAR-10 binary batch?)`);
    }
  });
  return cifar10FromRecords(records, opts.transform === undefined ? ToTensor() : opts.transform);
}

/** The dataset over records already in memory (what workers rebuild; `records` is shared). */
export function cifar10FromRecords(records: SharedArrayBuffer | ArrayBuffer, transform: Transform | null): Dataset<Cifar10Sample> {
  const bytes = new Uint8Array(records);
  if (bytes.length % CIFAR10_RECORD_BYTES !== 0) throw new Error(`cifar10: ${bytes.length} bytes is not a whole number of records`);
  const length = bytes.length / CIFAR10_RECORD_BYTES;
  const ds: Dataset<Cifar10Sample> = {
    length,
    get(index, ctx = DEFAULT_CONTEXT) {
      checkIndex(index, length, 'cifar10');
      const at = index * CIFAR10_RECORD_BYTES;
      const hwc = new Uint8Array(3 * PLANE);
      for (let p = 0; p < PLANE; p++) {
        hwc[3 * p] = bytes[at + 1 + p];
        hwc[3 * p + 1] = bytes[at + 1 + PLANE + p];
        hwc[3 * p + 2] = bytes[at + 1 + 2 * PLANE + p];
      }
      const img: NDArray = { data: hwc, shape: [32, 32, 3] };
      return [transform ? transform(img, sampleRng(index, ctx)) : img, bytes[at]];
    },
  };
  return portable(ds, import.meta.url, 'cifar10FromRecords', [records, transform]);
}
