/**
 * Which slots (devices, or processes on CPU) each host runs: DeepSpeed's hostfile
 * (`host slots=N`), `--include`/`--exclude` filters (`host1:0,2@host2`), `--num_nodes` and
 * `--num_gpus` caps. Pure functions, so the rank layout is testable without processes.
 */

/** Hosts in order, each with the slot indices it runs. */
export type Resources = [host: string, slots: number[]][];

export function parseHostfile(text: string, where = 'hostfile'): Resources {
  const out: Resources = [];
  const seen = new Set<string>();
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/#.*/, '').trim();
    if (!line) return;
    const m = /^(\S+)\s+slots\s*=\s*(\d+)$/.exec(line);
    if (!m) throw new Error(`${where}:${i + 1}: expected "hostname slots=N", got "${raw.trim()}"`);
    if (seen.has(m[1])) throw new Error(`${where}:${i + 1}: host ${m[1]} is listed twice`);
    seen.add(m[1]);
    out.push([m[1], Array.from({ length: Number(m[2]) }, (_, k) => k)]);
  });
  if (out.length === 0) throw new Error(`${where}: no hosts listed`);
  return out;
}

/** `host1:0,2@host2` → host → slots (undefined: every slot of that host). */
function parseFilter(spec: string, flag: string): Map<string, number[] | undefined> {
  const m = new Map<string, number[] | undefined>();
  for (const part of spec.split('@')) {
    if (!part) continue;
    const [host, slots] = part.split(':');
    if (!host) throw new Error(`${flag}: missing host name in "${part}"`);
    const list = slots === undefined ? undefined : slots.split(',').map((s) => {
      const n = Number(s);
      if (!Number.isInteger(n) || n < 0) throw new Error(`${flag}: bad slot "${s}" in "${part}"`);
      return n;
    });
    m.set(host, list);
  }
  return m;
}

export interface ResourceOptions {
  include?: string;
  exclude?: string;
  numNodes?: number;
  numGpus?: number;
}

/** Applies the filters and caps; throws when a filter names an unknown host or slot. */
export function selectResources(all: Resources, opts: ResourceOptions): Resources {
  if (opts.include && opts.exclude) throw new Error('--include and --exclude cannot be used together');
  let res: Resources = all.map(([h, s]) => [h, [...s]]);
  const known = new Map(res);
  const checkKnown = (f: Map<string, number[] | undefined>, flag: string) => {
    for (const [host, slots] of f) {
      const have = known.get(host);
      if (!have) throw new Error(`${flag}: host ${host} is not in the host list (${[...known.keys()].join(', ')})`);
      for (const s of slots ?? []) if (!have.includes(s)) throw new Error(`${flag}: ${host} has no slot ${s} (slots ${have.join(',')})`);
    }
  };
  if (opts.include) {
    const f = parseFilter(opts.include, '--include');
    checkKnown(f, '--include');
    res = res.filter(([h]) => f.has(h)).map(([h, s]) => [h, f.get(h) ?? s]);
  }
  if (opts.exclude) {
    const f = parseFilter(opts.exclude, '--exclude');
    checkKnown(f, '--exclude');
    res = res
      .map(([h, s]): [string, number[]] => {
        if (!f.has(h)) return [h, s];
        const drop = f.get(h);
        return [h, drop === undefined ? [] : s.filter((x) => !drop.includes(x))];
      })
      .filter(([, s]) => s.length > 0);
  }
  if (opts.numNodes !== undefined) {
    if (opts.numNodes > res.length) throw new Error(`--num_nodes ${opts.numNodes}: only ${res.length} hosts are available`);
    res = res.slice(0, opts.numNodes);
  }
  if (opts.numGpus !== undefined) {
    for (const [h, s] of res) {
      if (s.length < opts.numGpus) throw new Error(`--num_gpus ${opts.numGpus}: host ${h} has only ${s.length} slots`);
    }
    res = res.map(([h, s]) => [h, s.slice(0, opts.numGpus)]);
  }
  if (res.length === 0) throw new Error('no hosts left after --include/--exclude');
  return res;
}

/** Global rank of each local slot of node `nodeRank`: nodes are laid out one after another. */
export function nodeRanks(res: Resources, nodeRank: number): { first: number; local: number[]; world: number } {
  if (nodeRank < 0 || nodeRank >= res.length) {
    throw new Error(`--node_rank ${nodeRank} is out of range: there are ${res.length} nodes (${res.map(([h]) => h).join(', ')})`);
  }
  let first = 0;
  for (let i = 0; i < nodeRank; i++) first += res[i][1].length;
  const world = res.reduce((a, [, s]) => a + s.length, 0);
  return { first, local: res[nodeRank][1], world };
}
