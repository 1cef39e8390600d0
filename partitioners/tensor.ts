/**
 * Tensor-parallel plans as plain data: which modules of a model are split across the tp axis,
 * and how. A plan maps module-name patterns (dotted names; `*` matches one name segment, so
 * `h.*.mlp.c_fc` is every block's MLP input projection) to a style. Pure functions only: the
 * model is described by its module names and types; `parallelize` (src/tensor_parallel) applies
 * a plan to a model.
 *
 * | style       | module              | what happens                                                        |
 * |-------------|---------------------|---------------------------------------------------------------------|
 * | `colwise`   | Linear              | ColumnParallelLinear: output features split (`stacked` blocks each) |
 * | `rowwise`   | Linear              | RowParallelLinear: input features split, outputs summed             |
 * | `vocab`     | Embedding           | VocabParallelEmbedding: rows (the vocabulary) split                 |
 * | `heads`     | CausalSelfAttention | its heads split; its c_attn/c_proj must be colwise(3)/rowwise       |
 * | `sequence`  | LayerNorm, Dropout, any | runs on a sequence slice: own parameters marked, per-rank dropout |
 * | `replicate` | any                 | unchanged (every rank holds it whole); with `input`/`output` only   |
 *
 * `input` / `output` redistribute a module's first argument / its result with one of the
 * conjugate collectives of mappings.ts (e.g. `copyToRegion` before a vocab-parallel head).
 */

export type TensorParallelStyle = 'colwise' | 'rowwise' | 'vocab' | 'heads' | 'sequence' | 'replicate';
export const TENSOR_PARALLEL_STYLES: readonly TensorParallelStyle[] = ['colwise', 'rowwise', 'vocab', 'heads', 'sequence', 'replicate'];

/** The mappings.ts collectives a plan may put on a module's input or output. */
export type Redistribute = 'copyToRegion' | 'reduceFromRegion' | 'scatterToSequence' | 'gatherFromSequence' | 'allGatherFromSequence' | 'reduceScatterToSequence';
export const REDISTRIBUTES: readonly Redistribute[] = [
  'copyToRegion', 'reduceFromRegion', 'scatterToSequence', 'gatherFromSequence', 'allGatherFromSequence', 'reduceScatterToSequence',
];

export interface PlanEntry {
  style: TensorParallelStyle;
  /** colwise: equal matrices stacked along the outputs, each split (3 for fused q/k/v; default 1). */
  stacked?: number;
  /** colwise: all-gather the output slices (default false). */
  gatherOutput?: boolean;
  /** rowwise: the input arrives split on its last dim, as a colwise layer leaves it (default true). */
  inputIsParallel?: boolean;
  /** Applied to the module's first argument before forward. */
  input?: Redistribute;
  /** Applied to the module's result. */
  output?: Redistribute;
}

export interface TensorParallelPlan {
  /** Keep activations split along the sequence between tp regions (colwise/rowwise layers all-gather / reduce-scatter). */
  sequenceParallel?: boolean;
  /** Module-name pattern → style. A module may match one pattern at most. */
  modules: Record<string, TensorParallelStyle | PlanEntry>;
}

/** One module the plan touches. */
export interface PlanAssignment {
  name: string;
  pattern: string;
  entry: PlanEntry;
}

/** The entry form of a plan value, checked. */
export function planEntry(value: TensorParallelStyle | PlanEntry, pattern: string): PlanEntry {
  const e: PlanEntry = typeof value === 'string' ? { style: value } : { ...value };
  if (!TENSOR_PARALLEL_STYLES.includes(e.style)) {
    throw new Error(`tensor-parallel plan: "${pattern}" has style ${JSON.stringify(e.style)} (styles: ${TENSOR_PARALLEL_STYLES.join(', ')})`);
  }
  const known = ['style', 'stacked', 'gatherOutput', 'inputIsParallel', 'input', 'output'];
  for (const key of Object.keys(e)) if (!known.includes(key)) throw new Error(`tensor-parallel plan: "${pattern}" has unknown key "${key}" (keys: ${known.join(', ')})`);
  for (const side of ['input', 'output'] as const) {
    const r = e[side];
    if (r !== undefined && !REDISTRIBUTES.includes(r)) throw new Error(`tensor-parallel plan: "${pattern}".${side} is ${JSON.stringify(r)} (one of: ${REDISTRIBUTES.join(', ')})`);
  }
  if (e.stacked !== undefined && (!Number.isInteger(e.stacked) || e.stacked < 1)) throw new Error(`tensor-parallel plan: "${pattern}".stacked must be a positive integer, got ${e.stacked}`);
  return e;
}

/** Whether dotted `name` matches `pattern` (`*` = exactly one segment). */
export function matchesPattern(pattern: string, name: string): boolean {
  const p = pattern.split('.');
  const n = name.split('.');
  return p.length === n.length && p.every((s, i) => s === '*' || s === n[i]);
}

/**
 * The modules (by name, in the given order) each pattern selects. Every pattern must select at
 * least one module and no module may be selected twice; errors name the pattern(s).
 */
export function matchPlan(plan: TensorParallelPlan, moduleNames: readonly string[]): PlanAssignment[] {
  const out: PlanAssignment[] = [];
  const seen = new Map<string, string>();
  for (const [pattern, value] of Object.entries(plan.modules)) {
    const entry = planEntry(value, pattern);
    const names = moduleNames.filter((n) => n !== '' && matchesPattern(pattern, n));
    if (names.length === 0) {
      const near = moduleNames.filter((n) => n.split('.').length === pattern.split('.').length).slice(0, 6);
      throw new Error(`tensor-parallel plan: "${pattern}" matches no module${near.length ? ` (modules at that depth: ${near.join(', ')}${near.length === 6 ? ', ...' : ''})` : ''}`);
    }
    for (const name of names) {
      const prev = seen.get(name);
      if (prev) throw new Error(`tensor-parallel plan: module "${name}" matches both "${prev}" and "${pattern}"`);
      seen.set(name, pattern);
      out.push({ name, pattern, entry });
    }
  }
  return out;
}

function describeEntry(e: PlanEntry): string {
  const opts: string[] = [];
  if (e.stacked && e.stacked > 1) opts.push(`stacked ${e.stacked}`);
  if (e.gatherOutput) opts.push('gatherOutput');
  if (e.inputIsParallel === false) opts.push('input whole');
  if (e.input) opts.push(`input ${e.input}`);
  if (e.output) opts.push(`output ${e.output}`);
  return opts.length ? `${e.style} (${opts.join(', ')})` : e.style;
}

/**
 * The plan as a table, one pattern per line (with the number of modules it selects when
 * `moduleNames` is given).
 * @example
 * console.log(formatPlan(gptTensorParallelPlan({ sequenceParallel: true })));
 */
export function formatPlan(plan: TensorParallelPlan, moduleNames?: readonly string[]): string {
  const rows = Object.entries(plan.modules).map(([pattern, v]) => {
    const e = planEntry(v, pattern);
    const n = moduleNames ? moduleNames.filter((m) => m !== '' && matchesPattern(pattern, m)).length : null;
    return [pattern, describeEntry(e), n === null ? '' : `${n} module${n === 1 ? '' : 's'}`];
  });
  const w0 = Math.max(7, ...rows.map((r) => r[0].length));
  const w1 = Math.max(5, ...rows.map((r) => r[1].length));
  const head = `tensor-parallel plan${plan.sequenceParallel ? ' (sequence parallel)' : ''}:`;
  return [head, ...rows.map(([a, b, c]) => `  ${a.padEnd(w0)}  ${b.padEnd(w1)}  ${c}`.trimEnd())].join('\n');
}

/**
 * Megatron's split of models/gpt.ts: per block, c_attn column-parallel (q, k, v blocks) and
 * c_proj row-parallel with the heads split, the MLP's c_fc column- and c_proj row-parallel;
 * wte vocab-parallel, and ln_f's output entering the tied head (logits = ln_f(x)·wteᵀ, each rank
 * its vocabulary slice: take the loss with vocabParallelCrossEntropy). Layer norms are
 * replicated, or with `sequenceParallel` run on sequence slices (the first block's input is
 * scattered along the sequence, ln_f's output all-gathered into the head).
 * @example
 * parallelize(model, gptTensorParallelPlan({ sequenceParallel: true }), mesh);
 * const loss = vocabParallelCrossEntropy(model.forward(ids), targets, mesh.group('tp'));
 */
export function gptTensorParallelPlan(opts: { sequenceParallel?: boolean } = {}): TensorParallelPlan {
  const sp = opts.sequenceParallel ?? false;
  const modules: Record<string, TensorParallelStyle | PlanEntry> = {
    wte: 'vocab',
    ...(sp ? { 'h.0': { style: 'replicate', input: 'scatterToSequence' } as PlanEntry, 'h.*.ln_1': 'sequence' as const } : {}),
    'h.*.attn': 'heads',
    'h.*.attn.c_attn': { style: 'colwise', stacked: 3 },
    'h.*.attn.c_proj': 'rowwise',
    ...(sp ? { 'h.*.ln_2': 'sequence' as const, 'h.*.mlp': 'sequence' as const } : {}),
    'h.*.mlp.c_fc': 'colwise',
    'h.*.mlp.c_proj': 'rowwise',
    ln_f: sp ? { style: 'sequence', output: 'allGatherFromSequence' } : { style: 'replicate', output: 'copyToRegion' },
  };
  return { sequenceParallel: sp, modules };
}
