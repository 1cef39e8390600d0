/**
 * Byte-level language-model samples from any text (vocabulary 256): sample i is the window of
 * `seqLen` bytes at i * seqLen as input ids and the same window shifted by one as targets.
 * Windows do not overlap. The bytes live in a SharedArrayBuffer that workers share.
 */
import fs from 'node:fs';
import { checkIndex, type Dataset } from './dataset.ts';
import { portable } from './portable.ts';

/** Input ids [T] and target ids [T] (the next byte of each input position). */
export type TokenSample = [Int32Array, Int32Array];

export interface TokenDatasetOptions {
  /** The text itself (encoded as UTF-8) ... */
  text?: string;
  /** ... or a file to read (any bytes). */
  file?: string;
  /** Tokens per sample, T. */
  seqLen: number;
}

/**
 * @example
 * const ds = tokenDataset({ file: 'input.txt', seqLen: 256 });
 * const [ids, targets] = ds.get(0);   // Int32Array(256) each; batches are i64 [B, 256]
 */
export function tokenDataset(opts: TokenDatasetOptions): Dataset<TokenSample> {
  if ((opts.text === undefined) === (opts.file === undefined)) throw new Error('tokenDataset: give exactly one of text or file');
  let bytes: Uint8Array;
  if (opts.file !== undefined) {
    try {
      bytes = fs.readFileSync(opts.file);
    } catch (e) {
      throw new Error(`tokenDataset: cannot read ${opts.file}: ${(e as Error).message}`, { cause: e });
    }
  } else {
    bytes = Buffer.from(opts.text as string, 'utf8');
  }
  const shared = new SharedArrayBuffer(bytes.length);
  new Uint8Array(shared).set(bytes);
  return tokensFromBytes(shared, opts.seqLen);
}

/** The dataset over bytes already in memory (what workers rebuild; `bytes` is shared). */
export function tokensFromBytes(bytes: SharedArrayBuffer | ArrayBuffer, seqLen: number): Dataset<TokenSample> {
  if (!Number.isInteger(seqLen) || seqLen < 1) throw new Error(`tokenDataset: seqLen must be a positive integer, got ${seqLen}`);
  const data = new Uint8Array(bytes);
  if (data.length < seqLen + 1) {
    throw new Error(`tokenDataset: the text has ${data.length} bytes; one sample needs seqLen + 1 = ${seqLen + 1}`);
  }
  const length = Math.floor((data.length - 1) / seqLen);
  const ds: Dataset<TokenSample> = {
    length,
    get(index) {
      checkIndex(index, length, 'tokenDataset');
      const at = index * seqLen;
      return [Int32Array.from(data.subarray(at, at + seqLen)), Int32Array.from(data.subarray(at + 1, at + seqLen + 1))];
    },
  };
  return portable(ds, import.meta.url, 'tokensFromBytes', [bytes, seqLen]);
}
