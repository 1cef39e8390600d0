/**
 * Gradient destinations on the CPU (src/autograd/grad_into.ts): a small GPT trained through
 * initialize() (ZeRO 0, f32 and bf16, AdamW), with parameter gradients written straight into the
 * engine's gradient buckets and with the old path (every gradient returned, then added by the
 * engine): median step time, peak 'grad' bytes within a step, and gradients written per step.
 * Both variants are measured in this run, alternating, so the machine's noise hits both alike.
 *   npx tsx bench/grad_into.ts [--layers 4] [--embd 256] [--steps 9]
 */
import { GPT, gptConfig } from '../models/index.ts';
import { gradsWrittenInto, setGradInto } from '../src/autograd/grad_into.ts';
import {
  crossEntropy, destroyDistributed, initDistributed, initialize, manualSeed, memoryStats, noGrad, resetPeakMemoryStats, tensor, tidy,
} from '../src/index.ts';
import { median } from './timing.ts';

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const layers = arg('--layers', 4);
const nEmbd = arg('--embd', 256);
const steps = arg('--steps', 9);
const [batch, seq, vocab] = [4, 64, 512];

interface Result {
  seconds: number;
  peakGrad: number;
  written: number;
}

async function measure(dtype: 'f32' | 'bf16', on: boolean): Promise<Result> {
  const prev = setGradInto(on);
  try {
    manualSeed(0);
    const model = new GPT(gptConfig('tiny', { nLayer: layers, nEmbd, nHead: nEmbd / 64, nCtx: seq, vocabSize: vocab, dtype, dropout: 0 }));
    const config = {
      train_batch_size: batch, train_micro_batch_size_per_gpu: batch,
      optimizer: { type: 'AdamW', params: { lr: 1e-4, weight_decay: 0.1 } },
      zero_optimization: { stage: 0 }, bf16: { enabled: dtype === 'bf16' },
    };
    const { engine } = await initialize({ model, config, device: 'cpu', log: () => {} });
    const [ids, targets] = noGrad(() => [
      tensor(Array.from({ length: batch * seq }, (_, i) => (i * 7919) % vocab), { dtype: 'i32', shape: [batch, seq] }),
      tensor(Array.from({ length: batch * seq }, (_, i) => (i * 104729 + 7) % vocab), { dtype: 'i64' }),
    ]);
    const times: number[] = [];
    let peakGrad = 0;
    let written = 0;
    for (let s = 0; s < steps; s++) {
      resetPeakMemoryStats();
      const w0 = gradsWrittenInto();
      const t0 = performance.now();
      tidy(() => {
        const logits = engine.forward(ids).reshape([batch * seq, vocab]);
        engine.backward(crossEntropy(logits.dtype === 'f32' ? logits : logits.to('f32'), targets));
        engine.step();
      });
      times.push((performance.now() - t0) / 1000);
      peakGrad = Math.max(peakGrad, memoryStats().cpu.grad.peak);
      written = gradsWrittenInto() - w0;
    }
    engine.destroy();
    model.dispose();
    ids.dispose();
    targets.dispose();
    return { seconds: median(times.slice(1)), peakGrad, written };
  } finally {
    setGradInto(prev);
  }
}

await initDistributed({ timeoutMs: 30_000 });
console.log(`GPT ${layers} layers, d ${nEmbd}, T ${seq}, batch ${batch}, vocab ${vocab}; initialize() ZeRO 0, AdamW, CPU; median of ${steps - 1} steps\n`);
console.log('| dtype | path | step ms | peak grad MiB | gradients written per step |\n|---|---|---:|---:|---:|');
for (const dtype of ['f32', 'bf16'] as const) {
  const off = await measure(dtype, false);
  const on = await measure(dtype, true);
  const off2 = await measure(dtype, false);
  const on2 = await measure(dtype, true);
  for (const [name, a, b] of [['old (engine adds)', off, off2], ['into .grad', on, on2]] as const) {
    const ms = (Math.min(a.seconds, b.seconds) * 1000).toFixed(1);
    console.log(`| ${dtype} | ${name} | ${ms} | ${(a.peakGrad / 2 ** 20).toFixed(2)} | ${a.written} |`);
  }
}
await destroyDistributed();
