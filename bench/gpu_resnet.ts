/**
 * bench/gpu.ts part (c): ResNet-101 (torchvision's: ImageNet stem, 10 classes, as in DeepSpeed's
 * CIFAR-10 example) training steps on CIFAR-10-shaped synthetic batches (3×32×32, batch 128),
 * SGD with momentum, images/s for meshtrain and for PyTorch on the same GPU in this run
 * (bench/gpu_torch_resnet.py: the same model, batch, optimizer and precision, channels-last as
 * our convolutions' outputs are).
 */
import { ResNet } from '../models/index.ts';
import { censusTotals, crossEntropy, cudaCensus, type DType, manualSeed, native, nn, noGrad, randn, SGD, tensor, tidy } from '../src/index.ts';
import { DEV, deviceSeconds } from './gpu_timing.ts';
import { graphedStep } from './graphed_step.ts';
import { median } from './timing.ts';
import { runTorchPeer } from './torch_peer.ts';

export interface ResnetResult {
  ours: number;
  /** Ours with the whole step (forward, backward, SGD) replayed as one CUDA graph (null: the capture failed; `graphNote` says why). */
  oursGraphed: number | null;
  graphNote: string;
  torch: number | null;
  torchNote: string;
  /** Device ops of one eager step (launch census); `fused`: ReLU and residual add inside batch norm (batchNormRelu). */
  opsPerStep: number;
  fused: boolean;
}

/**
 * The model, optimizer and one fixed batch that oursImagesPerS times (bench/gpu_profile.ts times its ops);
 * `graph`: the whole step replays a CUDA graph (bench/graphed_step.ts).
 */
export function resnetBenchStep(
  dtype: DType,
  batch: number,
  depth: 18 | 34 | 50 | 101 | 152 = 101,
  graph = false,
): { step(): void; dispose(): void } {
  manualSeed(0);
  const model = nn.moduleToDevice(new ResNet(depth, { numClasses: 10, dtype }), DEV);
  const opt = new SGD(model.parameters(), { lr: 0.01, momentum: 0.9, weightDecay: 5e-4 });
  const x = noGrad(() => tidy(() => randn([batch, 3, 32, 32]).to(dtype).to(DEV)));
  const y = tensor(Array.from({ length: batch }, (_, i) => i % 10), { dtype: 'i64', device: DEV });
  const forwardBackward = () => {
    const l = crossEntropy(model.forward(x), y);
    l.backward();
    return l;
  };
  const graphed = graph ? graphedStep(forwardBackward, opt, model.parameters()) : null;
  return {
    step: () => {
      if (graphed) graphed.step();
      else
        tidy(() => {
          forwardBackward();
          opt.step();
          opt.zeroGrad();
        });
    },
    dispose: () => {
      graphed?.dispose();
      model.dispose();
      x.dispose();
      y.dispose();
    },
  };
}

/** Images/s over `steps` timed steps, and the device ops of one more step (counted, not timed). */
function oursImagesPerS(dtype: DType, batch: number, steps: number, graph = false): { ips: number; ops: number } {
  const r = resnetBenchStep(dtype, batch, 101, graph);
  try {
    for (let k = 0; k < 2; k++) r.step();
    const times: number[] = [];
    for (let k = 0; k < steps; k++) times.push(deviceSeconds(r.step));
    const ops = censusTotals(cudaCensus(r.step).entries).deviceOps;
    return { ips: batch / median(times), ops };
  } finally {
    r.dispose();
  }
}

function torchImagesPerS(dtype: DType, batch: number, steps: number): { value: number | null; note: string } {
  const r = runTorchPeer<{ images_per_s: number; device: string }>('gpu_torch_resnet.py', ['--batch', String(batch), '--steps', String(steps), '--dtype', dtype]);
  return r.ok ? { value: r.results[0].images_per_s, note: r.results[0].device } : { value: null, note: `PyTorch peer did not run: ${r.reason}` };
}

/** Ours, then PyTorch's; when ours fails, PyTorch's number is still printed before the error goes up. */
export function benchResnet(batch: number, steps: number, dtype: DType = 'bf16'): ResnetResult {
  let ours = 0;
  let opsPerStep = 0;
  let failure: unknown = null;
  try {
    ({ ips: ours, ops: opsPerStep } = oursImagesPerS(dtype, batch, steps));
  } catch (e) {
    failure = e;
  }
  let oursGraphed: number | null = null;
  let graphNote = 'CUDA graph';
  if (failure === null) {
    try {
      oursGraphed = oursImagesPerS(dtype, batch, steps, true).ips;
    } catch (e) {
      graphNote = `CUDA graph failed: ${String((e as Error).message ?? e).slice(0, 300)}`;
    }
  }
  const t = torchImagesPerS(dtype, batch, steps);
  if (failure !== null) {
    console.log(`(c) PyTorch alone: ${t.value?.toFixed(0) ?? 'n/a'} img/s (${t.note})`);
    throw failure;
  }
  const fused = (native.cuda as Record<string, unknown> | undefined)?.batchNormRelu === true;
  return { ours, oursGraphed, graphNote, torch: t.value, torchNote: t.note, opsPerStep, fused };
}
