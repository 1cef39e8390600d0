/**
 * A short profile of a layer list for the 'balanced' partitioner: each layer's forward and
 * backward time on a sample micro-batch, measured one layer at a time. Layers given as specs are
 * built without initialization (no random numbers drawn, so the generator is left as it was) and
 * freed after their turn, so the profile holds one layer and its input at a time, not the model.
 */
import { noGrad } from '../autograd/grad_mode.ts';
import type { ProcessGroup } from '../dist/process_group.ts';
import { withoutInit } from '../nn/init.ts';
import { Module } from '../nn/module.ts';
import { ones, tensor } from '../ops/create.ts';
import { tidy } from '../tensor/scope.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { LayerSpec, type PipeLayer, TiedLayerSpec } from './layer_spec.ts';

export interface ProfileOptions {
  /** Timed forward + backward passes per layer after one warm-up pass; the median is kept (default 3). */
  reps?: number;
  /**
   * Every rank of this group calls profileLayerTimes and gets rank 0's times: ranks must agree on
   * the partition, and times measured on different processes differ.
   */
  group?: ProcessGroup;
}

const FLOAT = new Set(['f32', 'f64', 'f16', 'bf16']);

/**
 * Milliseconds of forward + backward per layer (median over `reps`), for
 * `partitionMethod: 'balanced'` with `partitionCosts`. `input` is the first layer's input (a
 * micro-batch); each layer's output feeds the next.
 * @example
 * const costs = profileLayerTimes(layers, sampleIds, { group: mesh.group('pp') });
 * const pipe = new PipelineModule({ layers, numStages: 4, partitionMethod: 'balanced', partitionCosts: costs, group: mesh.group('pp') });
 */
export function profileLayerTimes(layers: readonly PipeLayer[], input: Tensor, opts: ProfileOptions = {}): number[] {
  const reps = opts.reps ?? 3;
  if (!Number.isInteger(reps) || reps < 1) throw new Error(`profileLayerTimes: reps must be a positive integer, got ${reps}`);
  if (!Array.isArray(layers) || layers.length === 0) throw new Error('profileLayerTimes: layers must be a non-empty array');
  let times: number[];
  if (!opts.group || opts.group.rank === 0) times = measure(layers, input, reps);
  else times = new Array(layers.length).fill(0);
  if (opts.group && opts.group.size > 1) {
    const t = tensor(Float64Array.from(times), { dtype: 'f64', tag: 'comm' });
    opts.group.broadcast(t, 0);
    times = Array.from(t.toArray() as Float64Array);
    t.dispose();
  }
  return times;
}

function measure(layers: readonly PipeLayer[], input: Tensor, reps: number): number[] {
  const times: number[] = [];
  let x = input;
  layers.forEach((l, i) => {
    const { run, dispose } = runner(l, i);
    const samples: number[] = [];
    for (let r = 0; r <= reps; r++) {
      const ms = tidy(() => {
        const xi = x.detach();
        if (FLOAT.has(xi.dtype)) xi.requiresGrad = true;
        const t0 = performance.now();
        const y = run(xi);
        if (y.requiresGrad) y.backward(ones([...y.shape], { dtype: y.dtype, tag: 'activation', device: y.device }));
        return performance.now() - t0;
      });
      if (r > 0) samples.push(ms);
    }
    samples.sort((a, b) => a - b);
    times.push(samples[Math.floor(samples.length / 2)]);
    const next = noGrad(() => tidy(() => run(x)));
    // A layer may hand its input back (identity): free the previous input only when it is not the next.
    if (x !== input && x !== next) x.dispose();
    x = next;
    dispose();
  });
  if (x !== input) x.dispose();
  return times;
}

/** How layer i runs during the profile, and how to free what was built for it. */
function runner(l: PipeLayer, i: number): { run: (x: Tensor) => Tensor; dispose: () => void } {
  if (l instanceof LayerSpec) {
    const m = withoutInit(() => l.build());
    const fn = l instanceof TiedLayerSpec ? l.forwardFn : undefined;
    // Gradients stay on the built module and go with it.
    return { run: (x) => (fn ? fn(m, x) : (m.forward(x) as Tensor)), dispose: () => m.dispose() };
  }
  if (l instanceof Module) {
    return {
      run: (x) => l.forward(x) as Tensor,
      dispose: () => {
        // The caller keeps its module: drop only the gradients the profile left.
        for (const p of l.parameters()) {
          p.grad?.dispose();
          p.grad = null;
        }
      },
    };
  }
  if (typeof l === 'function') return { run: l, dispose: () => {} };
  throw new Error(`profileLayerTimes: layers[${i}] must be a Module, a LayerSpec, a TiedLayerSpec or a function`);
}
