/**
 * GPU benchmark (issue 8, item 5), one GPU, each number beside a peer measured in the same run:
 *  (a) matmul vs cuBLASLt called directly, bf16, f16 and f32, sizes 1024-8192 (goal: ratio >= 0.95);
 *  (b) GPT-2 124M bf16 training step: tokens/s and MFU (goal >= 40%; FLOPs counted as
 *      bench/gpu_gpt.ts says), against the datasheet peak and against part (a)'s cuBLASLt rate,
 *      then PyTorch's step on the same GPU and batch (bench/gpu_gpt_peer.ts): ours / its tokens/s;
 *  (c) ResNet-101, CIFAR-10-shaped batch 128, bf16: images/s beside PyTorch on the same GPU;
 *  (d) NCCL all-reduce bandwidth: bench/gpu_nccl.ts, when it exists.
 * A part whose op or library is missing prints "skipped: <reason>" and the rest go on. The
 * summary table comes last; with $OUT set (the GPU machine) it is also written to
 * $OUT/bench_gpu.json.
 * --smoke shrinks every part (matmul 64, GPT tiny 4 x 16, ResNet-101 batch 4, one step) to check the
 * plumbing on the emulated device, where timings mean nothing.
 * --peer-cache FILE: (b)'s PyTorch results are read from FILE when an earlier run with the same
 * arguments wrote it, else measured and written there (gpu_check's reruns of (b) share one peer run);
 * MT_TORCH_COMPILE=1 also times torch.compile(model) (slow: a minute or more of compiling).
 *   node --import tsx bench/gpu.ts [--quick | --smoke] [--peak 989e12] [--only a,b,c,d] [--peer-cache FILE]
 */
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { cudaDeviceProperties, cudaIsAvailable, native, rowPitchMode } from '../src/index.ts';
import { paddedPitch } from '../src/ops/row_pitch.ts';
import { benchGpt } from './gpu_gpt.ts';
import { benchGptPeer, type GptPeerReport, type OursGpt } from './gpu_gpt_peer.ts';
import { benchMatmulSize, type MatmulResult } from './gpu_matmul.ts';
import { benchResnet } from './gpu_resnet.ts';
import { type BenchRow, guarded } from './gpu_timing.ts';

const argv = process.argv.slice(2);
const smoke = argv.includes('--smoke');
const quick = smoke || argv.includes('--quick');
const flag = (name: string): string | undefined => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
/** NVIDIA's dense bf16 tensor-core peak for H100 SXM (H200: the same chip, the same rate). */
const peak = Number(flag('--peak') ?? 989e12);
const only = new Set((flag('--only') ?? 'a,b,c,d').split(','));

const cell = (c: string | number, w: number) => String(c).padStart(w);

if (!cudaIsAvailable()) {
  console.log(`bench/gpu: no usable CUDA device (${native.deviceInfo().cudaStatus}); nothing measured`);
  process.exit(0);
}
const props = cudaDeviceProperties('cuda:0');
console.log(`bench/gpu on ${props.name} (sm_${props.major}${props.minor}, ${props.multiProcessors} SMs, L2 ${(props.l2CacheBytes / 2 ** 20).toFixed(0)} MiB)${smoke ? ', --smoke' : quick ? ', --quick' : ''}`);
const rows: BenchRow[] = [];
let bestBf16 = 0;
let gptPeer: GptPeerReport['record'] = null;

if (only.has('a')) {
  const sizes: Record<'bf16' | 'f16' | 'f32', number[]> = smoke
    ? { bf16: [64], f16: [64], f32: [64] }
    : quick
      ? { bf16: [1024, 4096, 8192], f16: [4096], f32: [4096] }
      : { bf16: [1024, 2048, 4096, 8192], f16: [1024, 4096, 8192], f32: [1024, 2048, 4096, 8192] };
  console.log(`\n(a) matmul M=N=K${cell('ours ms', 12)}${cell('cuBLASLt ms', 13)}${cell('ratio', 8)}${cell('ours TF/s', 11)}${cell('cuBLASLt TF/s', 15)}`);
  const results: MatmulResult[] = [];
  for (const dtype of ['bf16', 'f16', 'f32'] as const) {
    for (const n of sizes[dtype]) {
      rows.push(
        guarded(`matmul ${dtype} ${n}`, () => {
          const r = benchMatmulSize(dtype, n, props.l2CacheBytes || 50 * 2 ** 20, smoke ? { iters: 2, rounds: 2 } : undefined);
          results.push(r);
          if (dtype === 'bf16') bestBf16 = Math.max(bestBf16, r.peerTflops * 1e12);
          console.log(`${`${dtype} ${n}`.padEnd(17)}${cell((r.oursS * 1e3).toFixed(3), 12)}${cell((r.peerS * 1e3).toFixed(3), 13)}${cell(r.ratio.toFixed(3), 8)}${cell(r.oursTflops.toFixed(1), 11)}${cell(r.peerTflops.toFixed(1), 15)}`);
          return `ratio ${r.ratio.toFixed(3)} (${r.oursTflops.toFixed(0)} vs ${r.peerTflops.toFixed(0)} TF/s)`;
        }),
      );
    }
  }
}

if (only.has('b')) {
  const gptPart = `GPT-2 ${smoke ? 'tiny' : '124M'} bf16 step`;
  const gptOurs: OursGpt[] = [];
  rows.push(
    guarded(gptPart, () => {
      const g = smoke ? benchGpt(4, 16, 1, 'tiny') : benchGpt(8, 1024, quick ? 3 : 8);
      gptOurs.push({ part: gptPart, label: `vocab ${g.vocab}`, result: g });
      const rate = g.flopsPerStep / g.stepS;
      const vsLt = bestBf16 > 0 ? `, ${((rate / bestBf16) * 100).toFixed(1)}% of cuBLASLt's measured ${(bestBf16 / 1e12).toFixed(0)} TF/s` : '';
      console.log(
        `\n(b) GPT-2 ${smoke ? 'tiny' : '124M'} bf16, batch ${g.batch} x ${g.seq}: ${(g.stepS * 1e3).toFixed(1)} ms/step, ${g.tokensPerS.toFixed(0)} tokens/s, ` +
          `${(g.flopsPerStep / 1e12).toFixed(2)} TFLOP/step, ${(rate / 1e12).toFixed(1)} TFLOP/s: MFU ${((rate / peak) * 100).toFixed(1)}% of ${(peak / 1e12).toFixed(0)} TFLOP/s${vsLt} (goal >= 40%); loss ${g.loss.toFixed(3)}` +
          `; logits rows ${paddedPitch(g.batch * g.seq, g.vocab, 'bf16', 'cuda:0')} apart (MESHTRAIN_PAD_LD ${rowPitchMode()}; bench:row_pitch compares it off)`,
      );
      return `MFU ${((rate / peak) * 100).toFixed(1)}%, ${g.tokensPerS.toFixed(0)} tok/s`;
    }),
    // The vocabulary padded to a multiple of 128 (Megatron's default, 50304), eagerly and with the whole step (forward, backward, AdamW) as one CUDA graph.
    ...[false, true].map((graph) => {
      const part = `${gptPart}, vocab padded${graph ? ', CUDA graph' : ''}`;
      return guarded(part, () => {
        const opts = { padVocabTo: 128, graph };
        const g = smoke ? benchGpt(4, 16, 1, 'tiny', opts) : benchGpt(8, 1024, quick ? 3 : 8, '124M', opts);
        gptOurs.push({ part, label: `vocab ${g.vocab}${graph ? ', CUDA graph' : ''}`, result: g });
        const rate = g.flopsPerStep / g.stepS;
        console.log(
          `(b) the same, vocabulary padded to a multiple of 128${graph ? ', the whole step as one CUDA graph' : ''}: ${(g.stepS * 1e3).toFixed(1)} ms/step, MFU ${((rate / peak) * 100).toFixed(1)}%; loss ${g.loss.toFixed(3)}`,
        );
        return `MFU ${((rate / peak) * 100).toFixed(1)}%, ${g.tokensPerS.toFixed(0)} tok/s`;
      });
    }),
    // GPT-2's 50257 padded inside the model to 50304 (makeVocabSizeDivisibleBy 128): the same losses as
    // 50257, the head's product 50304 wide; MFU counts 50257's FLOPs. Its PyTorch peer trains 50304 (nanoGPT's padding).
    guarded(`${gptPart}, vocab padded inside the model`, () => {
      const part = `${gptPart}, vocab padded inside the model`;
      const opts = { padVocabInside: 128 };
      const g = smoke ? benchGpt(4, 16, 1, 'tiny', opts) : benchGpt(8, 1024, quick ? 3 : 8, '124M', opts);
      gptOurs.push({ part, label: `vocab ${g.vocab} padded inside to ${g.headRows}`, result: g, peerVocab: g.headRows });
      const rate = g.flopsPerStep / g.stepS;
      console.log(
        `(b) the same, vocabulary ${g.vocab} padded inside the model to ${g.headRows} (makeVocabSizeDivisibleBy 128; MFU counts ${g.vocab}'s FLOPs): ` +
          `${(g.stepS * 1e3).toFixed(1)} ms/step, MFU ${((rate / peak) * 100).toFixed(1)}%; loss ${g.loss.toFixed(3)}`,
      );
      return `MFU ${((rate / peak) * 100).toFixed(1)}%, ${g.tokensPerS.toFixed(0)} tok/s`;
    }),
  );
  // PyTorch after ours, in a child process on the same GPU; its ratio goes beside each of our rows' MFU.
  const peer = benchGptPeer(gptOurs, { smoke, quick, peak, compile: process.env.MT_TORCH_COMPILE === '1', cache: flag('--peer-cache') });
  rows.push(peer.row);
  gptPeer = peer.record;
  for (const r of rows) {
    const ratio = peer.ratios.get(r.part);
    if (ratio !== undefined) r.key += `, ${ratio.toFixed(2)}x PyTorch`;
  }
}

if (only.has('c')) {
  rows.push(
    guarded(`ResNet-101 bs${smoke ? 4 : 128} bf16`, () => {
      const r = smoke ? benchResnet(4, 1) : benchResnet(128, quick ? 5 : 10);
      const ratio = r.torch ? (r.ours / r.torch).toFixed(2) : '-';
      const gRatio = r.torch && r.oursGraphed ? (r.oursGraphed / r.torch).toFixed(2) : '-';
      console.log(`\n(c) ResNet-101 CIFAR-10 shape, batch ${smoke ? 4 : 128}, bf16: ours ${r.ours.toFixed(0)} img/s, PyTorch ${r.torch?.toFixed(0) ?? 'n/a'} img/s, ratio ${ratio} (${r.torchNote})`);
      console.log(`    ours: ${r.opsPerStep} device ops per step (ReLU and residual add ${r.fused ? 'inside batch norm' : 'as separate ops'})`);
      console.log(`    ours with the whole step (forward, backward, SGD) as one CUDA graph: ${r.oursGraphed?.toFixed(0) ?? 'n/a'} img/s, ratio ${gRatio} (${r.graphNote}; PyTorch eager)`);
      return `ratio ${ratio} (graphed ${gRatio}), ${r.ours.toFixed(0)} (graphed ${r.oursGraphed?.toFixed(0) ?? 'n/a'}) vs torch ${r.torch?.toFixed(0) ?? 'n/a'} img/s, ${r.opsPerStep} ops/step`;
    }),
  );
}

if (only.has('d')) {
  rows.push(
    guarded('NCCL all-reduce', () => {
      const script = path.join(import.meta.dirname, 'gpu_nccl.ts');
      if (!existsSync(script)) throw new Error('skipped: bench/gpu_nccl.ts is not present yet');
      const r = spawnSync(process.execPath, ['--import', 'tsx', script, ...(quick ? ['--quick'] : [])], { encoding: 'utf8', timeout: 180_000 });
      process.stdout.write(`\n(d) NCCL all-reduce (bench/gpu_nccl.ts)\n${r.stdout ?? ''}${r.stderr ?? ''}`);
      if (r.status !== 0) throw new Error(`bench/gpu_nccl.ts exited ${r.status ?? r.signal}`);
      const out = `${r.stdout ?? ''}`.trim().split('\n');
      const last = out[out.length - 1] ?? '';
      if (/skipped:/.test(last)) throw new Error(last.slice(last.indexOf('skipped:')));
      return last.slice(0, 100);
    }),
  );
}

console.log('\nbench/gpu summary');
for (const r of rows) console.log(`${r.part.padEnd(54)}${r.status.padEnd(9)}${r.key}`);
// One line last, for gpu_check's table: the largest bf16 matmul, GPT, ResNet and NCCL.
const pick = (prefix: string) => rows.filter((r) => r.part.startsWith(prefix) && !r.part.includes('padded')).pop();
const paddedGpt = rows.filter((r) => r.part.startsWith('GPT') && r.part.includes('padded'));
const digest = [...['matmul bf16', 'GPT', 'ResNet', 'NCCL'].map(pick), ...paddedGpt]
  .filter((r): r is BenchRow => r !== undefined)
  .map((r) => {
    const variant = r.part.includes('padded inside') ? ' padded inside' : r.part.includes('padded') ? (r.part.endsWith('CUDA graph') ? ' padded+graph' : ' padded') : '';
    const name = r.part.split(' ').slice(0, r.part.startsWith('matmul') ? 3 : 1).join(' ') + variant;
    return `${name}: ${r.status === 'ok' ? r.key.replace(/ \(.*$/, '') : r.status}`;
  });
console.log(`bench/gpu: ${digest.join('; ')}`);
if (process.env.OUT) writeFileSync(path.join(process.env.OUT, 'bench_gpu.json'), `${JSON.stringify({ device: props.name, quick, peak, rows, gptPeer }, null, 1)}\n`);
process.exitCode = rows.some((r) => r.status === 'failed') ? 1 : 0;
