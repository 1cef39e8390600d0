/**
 * GPT-2 124M bf16 with dropout 0.1 (as GPT-2 trains): the eager step vs forward+backward replayed
 * as a CUDA graph (bench/graphed_step.ts), whose dropout masks come from the device's generator
 * base (src/tensor/graph_rng.ts). Prints ms/step of each at batch 8 x 1024 (bench/gpu.ts (b)'s
 * shape) and 1 x 1024 (host-bound), the graph's nodes, and whether the loss of step 3 (the second
 * replay) equals the eager step 3's (same seed, same masks; informative: cuBLASLt may pick another
 * algorithm between runs).
 *   node --import tsx bench/gpu_graph_dropout.ts [--smoke]   (--smoke: GPT tiny 2 x 16, one step: plumbing only)
 */
import { GPT, gptConfig } from '../models/index.ts';
import { AdamW, crossEntropy, manualSeed, nn, noGrad, tensor, tidy } from '../src/index.ts';
import { DEV, deviceSeconds } from './gpu_timing.ts';
import { graphedStep } from './graphed_step.ts';
import { median } from './timing.ts';

const smoke = process.argv.includes('--smoke');
const STEPS = smoke ? 1 : 5;

interface Result {
  ms: number;
  /** Loss of training step 3 (graphed: the second replay). */
  loss3: number;
}

function run(batch: number, seq: number, graph: boolean): Result {
  manualSeed(0);
  const config = gptConfig(smoke ? 'tiny' : '124M', { dtype: 'bf16', dropout: 0.1 });
  const model = nn.moduleToDevice(new GPT(config), DEV);
  model.train();
  const optimizer = new AdamW(model.parameters(), { lr: 1e-4, weightDecay: 0.1 });
  const V = config.vocabSize;
  const ids = Array.from({ length: batch * seq }, (_, i) => (i * 7919) % V);
  const next = Array.from({ length: batch * seq }, (_, i) => (i * 104729 + 7) % V);
  const [x, y] = noGrad(() => [tensor(ids, { dtype: 'i32', shape: [batch, seq], device: DEV }), tensor(next, { dtype: 'i64', device: DEV })]);
  const forwardBackward = () => {
    const l = crossEntropy(model.forward(x).reshape([batch * seq, V]), y);
    l.backward();
    return l;
  };
  const graphed = graph ? graphedStep(forwardBackward, optimizer, model.parameters()) : null;
  // Returns the loss's value when asked (a synchronization).
  const step = (read: boolean): number => {
    if (graphed) {
      const l = graphed.step();
      return read ? l.item() : Number.NaN;
    }
    return tidy(() => {
      const l = forwardBackward();
      optimizer.step();
      optimizer.zeroGrad();
      return read ? l.item() : Number.NaN;
    });
  };
  try {
    // Graphed, the first call is an eager step, the capture and the first replay: two training steps.
    step(false);
    if (!graphed) step(false);
    const loss3 = step(true);
    const times: number[] = [];
    for (let k = 0; k < STEPS; k++) times.push(deviceSeconds(() => step(false)));
    return { ms: median(times) * 1e3, loss3 };
  } finally {
    graphed?.dispose();
    model.dispose();
    x.dispose();
    y.dispose();
  }
}

const shapes: [number, number][] = smoke ? [[2, 16]] : [[8, 1024], [1, 1024]];
const parts: string[] = [];
for (const [b, t] of shapes) {
  const eager = run(b, t, false);
  const graphed = run(b, t, true);
  const same = eager.loss3 === graphed.loss3 ? 'equal' : `differ (${eager.loss3} vs ${graphed.loss3})`;
  console.log(
    `GPT-2 ${smoke ? 'tiny' : '124M'} bf16 dropout 0.1, batch ${b} x ${t}: eager ${eager.ms.toFixed(2)} ms/step, graphed ${graphed.ms.toFixed(2)} ms/step ` +
      `(x${(eager.ms / graphed.ms).toFixed(2)}); step-3 losses ${same}`,
  );
  parts.push(`${b}x${t} ${eager.ms.toFixed(1)}->${graphed.ms.toFixed(1)} ms (x${(eager.ms / graphed.ms).toFixed(2)})`);
}
// Last line, for gpu_check's table.
console.log(`graph+dropout: ${parts.join(', ')}`);
