/**
 * bench/gpu.ts part (b)'s peer: PyTorch's GPT-2 124M bf16 training step (bench/gpu_torch_gpt.py) on the
 * same GPU, batch, token batches and vocabularies as ours, run after ours. The ratio is our tokens/s
 * over PyTorch's (> 1: ours is faster); PyTorch's MFU uses our FLOP count (gptStepFlops), so the two
 * MFUs differ exactly as the step times do.
 */
import { gptConfig, gptParamCount } from '../models/index.ts';
import type { GptResult } from './gpu_gpt.ts';
import type { BenchRow } from './gpu_timing.ts';
import { runTorchPeer } from './torch_peer.ts';

/** One line of bench/gpu_torch_gpt.py's output (one per vocabulary). */
export interface TorchGpt {
  tokens_per_s: number;
  step_ms: number;
  loss: number;
  torch: string;
  /** The attention kernel PyTorch picked, e.g. "sdpa:flash_attention". */
  attention: string;
  vocab: number;
  /** Parameters, the tied head counted once: the same as ours, or the work differs. */
  params: number;
  optimizer: string;
  steps_trained: number;
  device: string;
  /** With --compile (MT_TORCH_COMPILE=1): torch.compile(model)'s step, measured after the eager one; null: no torch.compile (torch < 2.0). */
  compiled?: { tokens_per_s: number; step_ms: number; total_s: number } | null;
}

/** One of our part (b) rows, for the peer to set beside. */
export interface OursGpt {
  /** Its row's `part` in bench/gpu.ts. */
  part: string;
  /** How the step ran, e.g. "vocab 50304, CUDA graph". */
  label: string;
  result: GptResult;
  /** The vocabulary PyTorch trains for this row (default result.vocab): 50304 for ours padded inside the model, as nanoGPT pads. */
  peerVocab?: number;
}

export interface GptPeerOptions {
  smoke: boolean;
  quick: boolean;
  /** MFU's denominator, FLOP/s. */
  peak: number;
  /** Also time torch.compile(model) (slow to compile). */
  compile?: boolean;
  /** Share one peer run between benchmark steps: see PeerOptions.cache. */
  cache?: string;
}

export interface GptPeerReport {
  row: BenchRow;
  /** Our tokens/s over PyTorch's, by our row's part. */
  ratios: Map<string, number>;
  /** For bench_gpu.json; null when the peer did not run. */
  record: { torch: TorchGpt[]; ours: { part: string; label: string; vocab: number; tokensPerS: number; torchTokensPerS: number; ratio: number }[] } | null;
}

const PART = 'PyTorch peer of GPT-2';

/**
 * Runs the peer once for every vocabulary among `ours` (one process: one start-up) and prints
 * "ours X tok/s, PyTorch Y tok/s, ratio r" for each of our rows. Never throws for the peer's
 * absence: the row is 'skipped' with the reason.
 * @example
 * const peer = benchGptPeer([{ part: 'GPT-2 124M bf16 step', label: 'vocab 50257', result: g }], { smoke: false, quick: true, peak: 989e12 });
 */
export function benchGptPeer(ours: OursGpt[], o: GptPeerOptions): GptPeerReport {
  const ratios = new Map<string, number>();
  const skip = (reason: string): GptPeerReport => {
    console.log(`(b) PyTorch peer: skipped (${reason})`);
    return { row: { part: PART, status: 'skipped', key: reason.slice(0, 100) }, ratios, record: null };
  };
  if (ours.length === 0) return skip('none of our GPT-2 steps ran');
  const peerVocab = (g: OursGpt) => g.peerVocab ?? g.result.vocab;
  const vocabs = [...new Set(ours.map(peerVocab))];
  // 124M: ~5 s to import torch and start CUDA, then ~1-2 s per vocabulary (15-20 steps of ~30 ms at batch 8 on an H200).
  const args = o.smoke ? ['--smoke', '--device', 'auto'] : ['--warmup', o.quick ? '5' : '10', '--steps', '10'];
  args.push('--vocab', vocabs.join(','));
  if (o.compile) args.push('--compile');
  const r = runTorchPeer<TorchGpt>('gpu_torch_gpt.py', args, { timeoutMs: o.compile ? 600_000 : 180_000, cache: o.cache });
  if (!r.ok) return skip(r.reason);
  const t0 = r.results[0];
  console.log(
    `(b) PyTorch ${t0.torch} peer on ${t0.device} (bench/gpu_torch_gpt.py: ${t0.attention}, ${t0.optimizer}; the same batch and tokens, ` +
      `${t0.steps_trained} steps${r.cached ? '; measured by an earlier step of this run' : ''}):`,
  );
  const out: NonNullable<GptPeerReport['record']>['ours'] = [];
  for (const g of ours) {
    const t = r.results.find((x) => x.vocab === peerVocab(g));
    if (!t) continue;
    const ratio = g.result.tokensPerS / t.tokens_per_s;
    ratios.set(g.part, ratio);
    out.push({ part: g.part, label: g.label, vocab: g.result.vocab, tokensPerS: g.result.tokensPerS, torchTokensPerS: t.tokens_per_s, ratio });
    // Rows as allocated: a vocabulary padded inside the model counts its padding rows, as PyTorch's 50304 does.
    const params = gptParamCount(gptConfig(o.smoke ? 'tiny' : '124M', { vocabSize: g.result.headRows }));
    if (t.params !== params) console.log(`    WARNING: PyTorch's model has ${t.params} parameters, ours ${params}: not the same work`);
    const mfu = ((g.result.flopsPerStep / (t.step_ms / 1e3) / o.peak) * 100).toFixed(1);
    console.log(
      `    ${g.label}: ours ${g.result.tokensPerS.toFixed(0)} tok/s, PyTorch ${t.tokens_per_s.toFixed(0)} tok/s (${t.step_ms.toFixed(1)} ms/step, ` +
        `MFU ${mfu}% by our FLOP count), ratio ${ratio.toFixed(2)}; loss ours ${g.result.loss.toFixed(3)}, PyTorch ${t.loss.toFixed(3)}`,
    );
  }
  for (const t of r.results) {
    if (t.compiled === null && t === t0) console.log(`    PyTorch torch.compile: not in torch ${t.torch}`);
    if (t.compiled) {
      const g = ours.find((x) => peerVocab(x) === t.vocab);
      const vs = g ? `, ratio ${(g.result.tokensPerS / t.compiled.tokens_per_s).toFixed(2)} (ours ${g.label})` : '';
      console.log(`    PyTorch torch.compile, vocab ${t.vocab}: ${t.compiled.tokens_per_s.toFixed(0)} tok/s (${t.compiled.step_ms.toFixed(1)} ms/step, ${t.compiled.total_s.toFixed(0)} s with compiling)${vs}`);
    }
  }
  const first = out[0];
  const rest = out.slice(1).map((x) => `; ${x.label} ${x.ratio.toFixed(2)}`);
  const key = first ? `ratio ${first.ratio.toFixed(2)} (${first.tokensPerS.toFixed(0)} vs ${first.torchTokensPerS.toFixed(0)} tok/s)${rest.join('')}` : 'no vocabulary in common';
  return { row: { part: PART, status: 'ok', key }, ratios, record: { torch: r.results, ours: out } };
}
