/**
 * Device ops of one bf16 GPT engine step (bench/gpu_census_gpt.ts: 2 layers, d 128, T 64, AdamW)
 * at ZeRO stages 0-3, with a leaf's first gradient copied (setGradAdopt(false), the old path) and
 * adopted (src/autograd/grad_adopt.ts), and the copy kernels by site. World of one; runs on a GPU
 * or the emulated device (counts are the same; nothing is timed).
 *   npx tsx bench/gpu_census_zero.ts [--layers 2]
 */
import { setGradAdopt } from '../src/autograd/grad_adopt.ts';
import { type CensusEntry, censusTotals, cudaIsAvailable, destroyDistributed, initDistributed } from '../src/index.ts';
import { gptStepCensus } from './gpu_census_gpt.ts';

const arg = (name: string) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
};

/** Flat copies (copy.cu) by site, "count site" joined. */
const copies = (es: CensusEntry[]) =>
  es.filter((e) => e.kind === 'kernel' && /copy\.cu/.test(e.site) && !e.name.startsWith('fill')).map((e) => `${e.count} ${e.site} ${e.label}`).join(', ');

async function census(stage: 0 | 1 | 2 | 3, adopt: boolean, layers: number): Promise<CensusEntry[]> {
  const prev = setGradAdopt(adopt);
  try {
    return await gptStepCensus({ layers, stage });
  } finally {
    setGradAdopt(prev);
  }
}

if (!cudaIsAvailable()) {
  console.log('skipped: no CUDA device (real or emulated)');
} else {
  await initDistributed({ timeoutMs: 30_000 });
  const layers = Number(arg('--layers') ?? 2);
  console.log(`GPT bf16 engine step, ${layers} layers, d 128, T 64, batch 2, AdamW, world of one: device ops\n`);
  console.log('| ZeRO stage | copied | adopted | copy kernels (adopted) |\n|---|---:|---:|---|');
  for (const stage of [0, 1, 2, 3] as const) {
    const before = await census(stage, false, layers);
    const after = await census(stage, true, layers);
    console.log(`| ${stage} | ${censusTotals(before).deviceOps} | ${censusTotals(after).deviceOps} | ${copies(after) || '-'} |`);
  }
  await destroyDistributed();
}
