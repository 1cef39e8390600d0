/** The ResNet-style golden reference (PyTorch 1.13, f64): see shared/reference/pytorch-golden/README.md. */
import { readFileSync } from 'node:fs';

export interface ConvnetGolden {
  input_shape: number[];
  inputs: number[];
  labels: number[];
  weights: Record<string, { shape: number[]; data: number[] }>;
  loss: number;
  grads: Record<string, number[]>;
  running_stats_after_forward: Record<string, number[]>;
}

export function loadConvnetGolden(): ConvnetGolden {
  return JSON.parse(readFileSync(new URL('../fixtures/convnet_tiny.json', import.meta.url), 'utf8'));
}
