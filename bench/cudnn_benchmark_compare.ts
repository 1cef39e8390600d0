/**
 * One line for scripts/gpu_check.sh's bench:resnet:cudnn_benchmark step: ResNet-101 img/s (eager and
 * graphed) with MESHTRAIN_CUDNN_BENCHMARK=1 beside the default's, from two bench/gpu.ts JSON files
 * (the searched run's, and the main bench step's; either may be missing: "n/a").
 *
 * @example
 * node --import tsx bench/cudnn_benchmark_compare.ts "$OUT/cudnn_benchmark/bench_gpu.json" "$OUT/bench_gpu.json"
 */
import { existsSync, readFileSync } from 'node:fs';

/** "ours (graphed g) vs torch t" from the ResNet row's key, or n/a. */
function resnet(file: string | undefined): string {
  if (!file || !existsSync(file)) return 'n/a';
  const rows = (JSON.parse(readFileSync(file, 'utf8')) as { rows?: { part: string; status: string; key: string }[] }).rows ?? [];
  const row = rows.find((r) => r.part.startsWith('ResNet'));
  const m = row && /(\d+) \(graphed ([^)]+)\) vs torch (\S+) img\/s/.exec(row.key);
  return m ? `${m[1]} (graphed ${m[2]}) vs torch ${m[3]}` : (row ? `${row.status}: ${row.key}` : 'n/a').slice(0, 60);
}

const [searched, base] = process.argv.slice(2);
console.log(`ResNet-101 img/s, cudnn benchmark: ${resnet(searched)}; default: ${resnet(base)}`);
