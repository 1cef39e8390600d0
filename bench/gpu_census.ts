/**
 * Prints the launch census of one bf16 GPT training step through the engine (bench/gpu_census_gpt.ts):
 * every site of one layer, then per layer and outside the layers by category, marking what is not
 * matmul / attention / layer norm / optimizer work, and the totals extrapolated to GPT-2 124M's 12
 * layers. Runs on a GPU or the emulated device (counts are the same; nothing is timed).
 *   npx tsx bench/gpu_census.ts [--clip 1.0] [--json FILE]
 */
import { writeFileSync } from 'node:fs';
import { type CensusEntry, censusTotals, cudaIsAvailable, destroyDistributed, formatCensus, initDistributed } from '../src/index.ts';
import { category, gptStepCensus, perLayer } from './gpu_census_gpt.ts';

const arg = (name: string) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
};

function byCategory(entries: CensusEntry[]): Map<string, { count: number; essential: boolean }> {
  const m = new Map<string, { count: number; essential: boolean }>();
  for (const e of entries) {
    if (e.kind === 'note') continue;
    const c = category(e);
    const name = e.kind === 'kernel' || e.kind === 'library' ? c.name : `${e.kind}: ${e.name}`;
    const cur = m.get(name) ?? { count: 0, essential: c.essential };
    cur.count += e.count;
    m.set(name, cur);
  }
  return m;
}

if (!cudaIsAvailable()) {
  console.log('skipped: no CUDA device (real or emulated)');
} else {
  await initDistributed({ timeoutMs: 30_000 });
  const clip = Number(arg('--clip') ?? 0);
  const one = await gptStepCensus({ layers: 1, clip });
  const two = await gptStepCensus({ layers: 2, clip });
  await destroyDistributed();
  const { layer, rest } = perLayer(one, two);
  console.log(`GPT bf16 step through initialize() (ZeRO 0, AdamW${clip ? `, clip ${clip}` : ''}), d 128, 2 heads, T 64, batch 2\n`);
  console.log('One layer, by site:');
  console.log(formatCensus(layer));
  console.log('\nOutside the layers, by site:');
  console.log(formatCensus(rest));
  const L = byCategory(layer);
  const R = byCategory(rest);
  const names = [...new Set([...L.keys(), ...R.keys()])].sort((a, b) => (L.get(b)?.count ?? 0) - (L.get(a)?.count ?? 0) || a.localeCompare(b));
  console.log('\n| what | per layer | outside the layers | essential |\n|---|---:|---:|---|');
  for (const n of names) {
    const e = L.get(n)?.essential ?? R.get(n)?.essential;
    console.log(`| ${n} | ${L.get(n)?.count ?? 0} | ${R.get(n)?.count ?? 0} | ${e ? 'yes' : 'no'} |`);
  }
  const tl = censusTotals(layer);
  const tr = censusTotals(rest);
  console.log(
    `\nDevice ops per step: ${tl.deviceOps} per layer + ${tr.deviceOps} outside = ${censusTotals(two).deviceOps} at 2 layers, ` +
      `${12 * tl.deviceOps + tr.deviceOps} at 12 layers (GPT-2 124M); copies to the host (each a synchronization) ` +
      `${two.filter((e) => e.kind === 'memcpy' && /to host/.test(e.name)).reduce((n, e) => n + e.count, 0)}`,
  );
  const out = arg('--json');
  if (out) writeFileSync(out, JSON.stringify({ one, two, layer, rest }, null, 1));
}
