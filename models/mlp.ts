/** A multi-layer perceptron: Linear layers with an activation (and optional dropout) between them. */
import type { DType } from '../src/index.ts';
import { Dropout, GELU, Linear, type Module, ReLU, Sequential } from '../src/nn/index.ts';

export interface MLPOptions {
  /** Layer widths from input to output, e.g. [784, 256, 256, 10]; at least two. */
  sizes: number[];
  /** Between layers (default 'relu'). */
  activation?: 'relu' | 'gelu';
  /** Dropout after each activation (default 0: none). */
  dropout?: number;
  dtype?: DType;
}

/**
 * A Sequential of Linear layers (PyTorch default init) with activations between them; state-dict
 * keys `0.weight`, `0.bias`, `2.weight`, ... as nn.Sequential numbers them.
 * @example
 * const model = mlp({ sizes: [32, 128, 8] });
 * const y = model.forward(x);   // [N, 32] -> [N, 8]
 */
export function mlp(opts: MLPOptions): Sequential {
  const { sizes } = opts;
  if (!Array.isArray(sizes) || sizes.length < 2) throw new Error(`mlp: sizes must list at least the input and output widths, got ${JSON.stringify(sizes)}`);
  const layers: Module[] = [];
  for (let i = 0; i + 1 < sizes.length; i++) {
    layers.push(new Linear(sizes[i], sizes[i + 1], { dtype: opts.dtype }));
    if (i + 2 < sizes.length) {
      layers.push((opts.activation ?? 'relu') === 'gelu' ? new GELU() : new ReLU());
      if (opts.dropout) layers.push(new Dropout(opts.dropout));
    }
  }
  return new Sequential(...layers);
}
