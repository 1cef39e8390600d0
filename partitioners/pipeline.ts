/**
 * Pipeline partitioners: pure functions from per-layer costs to contiguous stage boundaries.
 * Stage k holds layers [boundaries[k], boundaries[k+1]); every stage holds at least one layer.
 */

/** What a partitioner may know about a layer; only the fields a method reads are required. */
export interface LayerInfo {
  name?: string;
  type?: string;
  params?: number;
}

/** Plain data: `boundaries` has length stages+1, from 0 to the layer count. */
export interface StagePartition {
  method: string;
  boundaries: number[];
  stageCosts: number[];
  maxCost: number;
}

function checkStages(layers: number, stages: number): void {
  if (!Number.isInteger(stages) || stages < 1) throw new Error(`partition: stages must be a positive integer, got ${stages}`);
  if (layers === 0) throw new Error('partition: no layers to partition');
  if (stages > layers) throw new Error(`partition: ${stages} stages but only ${layers} layers (each stage needs at least one layer)`);
}

function checkCosts(costs: readonly number[], what: string): void {
  costs.forEach((c, i) => {
    if (typeof c !== 'number' || !Number.isFinite(c) || c < 0) throw new Error(`partition: ${what}[${i}] = ${c} is not a finite non-negative number`);
  });
}

function result(method: string, boundaries: number[], costs: readonly number[]): StagePartition {
  const stageCosts: number[] = [];
  for (let k = 0; k + 1 < boundaries.length; k++) {
    let s = 0;
    for (let i = boundaries[k]; i < boundaries[k + 1]; i++) s += costs[i];
    stageCosts.push(s);
  }
  return { method, boundaries, stageCosts, maxCost: Math.max(...stageCosts) };
}

/**
 * Equal layer counts, the first `layers % stages` stages one layer longer (as DeepSpeed's
 * partition_uniform). Stage costs are the given costs, or layer counts.
 */
export function partitionUniform(numLayers: number, stages: number, costs?: readonly number[]): StagePartition {
  checkStages(numLayers, stages);
  if (costs) {
    if (costs.length !== numLayers) throw new Error(`partition: ${costs.length} costs for ${numLayers} layers`);
    checkCosts(costs, 'costs');
  }
  const base = Math.floor(numLayers / stages);
  const extra = numLayers % stages;
  const boundaries = [0];
  for (let k = 0; k < stages; k++) boundaries.push(boundaries[k] + base + (k < extra ? 1 : 0));
  return result('uniform', boundaries, costs ?? new Array(numLayers).fill(1));
}

/**
 * Exact min–max contiguous partition: the smallest possible largest stage cost (DP over prefix
 * sums, O(stages·n²)), then the boundaries placed greedily from the left under that bottleneck.
 */
export function partitionBalanced(costs: readonly number[], stages: number, method = 'balanced'): StagePartition {
  const n = costs.length;
  checkStages(n, stages);
  checkCosts(costs, 'costs');
  const prefix = [0];
  for (let i = 0; i < n; i++) prefix.push(prefix[i] + costs[i]);
  // best[i]: the least bottleneck of the first i layers in j non-empty stages (j = current row).
  let best = prefix.map((p, i) => (i === 0 ? 0 : p));
  for (let j = 2; j <= stages; j++) {
    const next = new Array<number>(n + 1).fill(Number.POSITIVE_INFINITY);
    for (let i = j; i <= n; i++) {
      for (let t = j - 1; t < i; t++) {
        const v = Math.max(best[t], prefix[i] - prefix[t]);
        if (v < next[i]) next[i] = v;
      }
    }
    best = next;
  }
  const bound = best[n];
  const boundaries = [0];
  let start = 0;
  for (let k = 0; k < stages - 1; k++) {
    const latest = n - (stages - 1 - k); // leave one layer for each later stage
    let end = start + 1;
    while (end < latest && prefix[end + 1] - prefix[start] <= bound * (1 + 1e-12)) end++;
    boundaries.push(end);
    start = end;
  }
  boundaries.push(n);
  return result(method, boundaries, costs);
}

/** DeepSpeed's default: balance the parameter counts. */
export function partitionParameters(layers: readonly (LayerInfo | number)[], stages: number): StagePartition {
  const params = layers.map((l, i) => {
    const p = typeof l === 'number' ? l : l.params;
    if (p === undefined) throw new Error(`partition: layer ${i} has no parameter count`);
    return p;
  });
  checkCosts(params, 'params');
  return partitionBalanced(params, stages, 'parameters');
}

/** Balance the count of layers whose type or name matches `pattern` (DeepSpeed's `type:<regex>`). */
export function partitionByType(layers: readonly LayerInfo[], pattern: RegExp | string, stages: number): StagePartition {
  const re = typeof pattern === 'string' ? new RegExp(pattern, 'i') : pattern;
  const hits = layers.map((l) => (re.test(l.type ?? '') || re.test(l.name ?? '') ? 1 : 0));
  if (!hits.some((h) => h > 0)) throw new Error(`partition: type:${re.source} matches none of the ${layers.length} layers`);
  return partitionBalanced(hits, stages, `type:${re.source}`);
}

/**
 * By method name: 'uniform', 'parameters', 'type:<regex>' or 'balanced' (with `costs`, e.g.
 * FLOPs or measured per-layer time).
 */
export function partitionLayers(method: string, layers: readonly LayerInfo[], stages: number, costs?: readonly number[]): StagePartition {
  if (method === 'uniform') return partitionUniform(layers.length, stages, costs);
  if (method === 'parameters') return partitionParameters(layers, stages);
  if (method.startsWith('type:')) return partitionByType(layers, method.slice(5), stages);
  if (method === 'balanced') {
    if (!costs) throw new Error("partition: method 'balanced' needs a cost per layer");
    if (costs.length !== layers.length) throw new Error(`partition: ${costs.length} costs for ${layers.length} layers`);
    return partitionBalanced(costs, stages);
  }
  throw new Error(`partition: unknown method '${method}' (uniform, parameters, type:<regex>, balanced)`);
}

/** One line per stage: its layer range, cost and (given names) the first and last layer. */
export function formatPartition(p: StagePartition, names?: readonly string[]): string {
  const lines = [`${p.method}: ${p.stageCosts.length} stages, boundaries [${p.boundaries.join(', ')}], max cost ${p.maxCost}`];
  p.stageCosts.forEach((c, k) => {
    const [a, b] = [p.boundaries[k], p.boundaries[k + 1]];
    const span = names ? ` ${names[a]}..${names[b - 1]}` : '';
    lines.push(`  stage ${k}: layers ${a}..${b - 1} (${b - a}) cost ${c}${span}`);
  });
  return lines.join('\n');
}
