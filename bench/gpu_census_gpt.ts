/**
 * The launch census of one GPT training step: the model of bench/gpu_gpt.ts at a small size
 * (GPT-2's structure; head dim 64, so attention takes the fused kernels as at 124M) trained
 * through initialize() with bf16 and ZeRO stage 0, AdamW. Counts per layer are structural: the
 * difference between the censuses of 2 and 1 layers is one layer's, which extrapolates to 12.
 * Needs a world of one (initDistributed) and a CUDA device, real or emulated.
 */
import { GPT, gptConfig } from '../models/index.ts';
import { type CensusEntry, crossEntropy, cudaCensus, cudaSynchronize, type Device, initialize, manualSeed, noGrad, tensor, tidy } from '../src/index.ts';

export interface GptCensusOptions {
  layers: number;
  /** Defaults: d 128, 2 heads (head dim 64), T 64, batch 2, vocab 256. */
  nEmbd?: number;
  nHead?: number;
  seq?: number;
  batch?: number;
  vocab?: number;
  /** DeepSpeed's gradient_clipping (default 0: none, as bench/gpu_gpt.ts). */
  clip?: number;
  /** ZeRO stage (default 0). */
  stage?: 0 | 1 | 2 | 3;
  device?: string;
}

/** One engine training step of the model, ready to call, and what to free afterwards. */
export interface GptEngineStep {
  /** `mark`, when given, is called after the loss, after backward and after the optimizer step (for timing phases). */
  step(mark?: (phase: 'forward' | 'backward' | 'step') => void): void;
  device: Device;
  config: ReturnType<typeof gptConfig>;
  batch: number;
  seq: number;
  dispose(): void;
}

/**
 * Builds the model (GPT-2's structure: gptConfig(size) with the options' sizes), the engine and
 * one fixed token batch on the device; `step()` runs forward, loss, backward and the optimizer step
 * in a tidy scope.
 */
export async function gptEngineStep(o: GptCensusOptions & { size?: string }): Promise<GptEngineStep> {
  const { layers, nEmbd = 128, nHead = 2, seq = 64, batch = 2, vocab = 256, clip = 0, stage = 0, device = 'cuda:0', size = 'tiny' } = o;
  manualSeed(0);
  const config = gptConfig(size, { nLayer: layers, nEmbd, nHead, nCtx: seq, vocabSize: vocab, dtype: 'bf16', dropout: 0 });
  const model = new GPT(config);
  const ds = {
    train_batch_size: batch, train_micro_batch_size_per_gpu: batch, gradient_clipping: clip,
    optimizer: { type: 'AdamW', params: { lr: 1e-4, weight_decay: 0.1 } },
    zero_optimization: { stage }, bf16: { enabled: true },
  };
  const { engine } = await initialize({ model, config: ds, device: device as 'cuda:0', log: () => {} });
  const [ids, targets] = noGrad(() => [
    tensor(Array.from({ length: batch * seq }, (_, i) => (i * 7919) % vocab), { dtype: 'i32', shape: [batch, seq], device: engine.device }),
    tensor(Array.from({ length: batch * seq }, (_, i) => (i * 104729 + 7) % vocab), { dtype: 'i64', device: engine.device }),
  ]);
  return {
    step: (mark) =>
      tidy(() => {
        const l = crossEntropy(engine.forward(ids).reshape([batch * seq, vocab]), targets);
        mark?.('forward');
        engine.backward(l);
        mark?.('backward');
        engine.step();
        mark?.('step');
      }),
    device: engine.device,
    config,
    batch,
    seq,
    dispose: () => {
      ids.dispose();
      targets.dispose();
      engine.destroy();
      model.dispose();
    },
  };
}

/** The census of the third step (the first two allocate the optimizer state and plans). */
export async function gptStepCensus(o: GptCensusOptions): Promise<CensusEntry[]> {
  const s = await gptEngineStep(o);
  try {
    s.step();
    s.step();
    cudaSynchronize(s.device);
    return cudaCensus(() => s.step()).entries;
  } finally {
    s.dispose();
  }
}

const key = (e: CensusEntry) => `${e.kind}|${e.name}|${e.site}|${e.label}`;

/**
 * Splits the censuses of 1 and 2 layers into one layer's entries and the rest's (embeddings,
 * final norm, head, loss, what runs once per step).
 */
export function perLayer(one: CensusEntry[], two: CensusEntry[]): { layer: CensusEntry[]; rest: CensusEntry[] } {
  const a = new Map(one.map((e) => [key(e), e]));
  const layer: CensusEntry[] = [];
  const rest: CensusEntry[] = [];
  for (const e of two) {
    const base = a.get(key(e));
    const d = e.count - (base?.count ?? 0);
    if (d !== 0) layer.push({ ...e, count: d, bytes: e.bytes - (base?.bytes ?? 0), threads: e.threads - (base?.threads ?? 0) });
    const r = (base?.count ?? 0) - d;
    if (r > 0 && base) rest.push({ ...base, count: r, bytes: base.bytes - (e.bytes - base.bytes), threads: base.threads - (e.threads - base.threads) });
  }
  return { layer, rest };
}

/** Groups by what a launch does, for the per-layer table; `essential` marks matmul, attention, layer norm and optimizer. */
export function category(e: CensusEntry): { name: string; essential: boolean } {
  const file = e.site.replace(/:\d+$/, '').replace(/^cuda\//, '');
  if (e.kind === 'library' && e.name.startsWith('cublasLt')) return { name: 'matmul (cuBLASLt)', essential: true };
  if (/^attention/.test(file)) return { name: 'attention', essential: true };
  if (/^layernorm/.test(file)) return { name: 'layer norm', essential: true };
  if ((file === 'optim.cu' && /adam|sgd/i.test(e.name)) || file === 'adam_multi.cu') return { name: 'optimizer', essential: true };
  if (file === 'copy.cu') return { name: e.name.startsWith('fill') ? `fill [${e.label}]` : `copy [${e.label}]`, essential: false };
  return { name: `${file.replace(/\.(cu|cc)$/, '')}: ${e.name}`, essential: false };
}
