/**
 * `meshtrain [flags] script.ts [args]`: starts one process per rank on this node, serves the
 * rendezvous store on node 0, prefixes output with the rank, and supervises: when one rank
 * fails, the others are stopped within seconds and the launcher exits with that rank's code.
 * Multi-host runs start one launcher per host with its --node_rank (no ssh).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { StoreServer } from '../dist/store.ts';
import { nodeRanks, parseHostfile, type Resources, selectResources } from './hosts.ts';

const USAGE = `usage: meshtrain [options] script.ts [script args]

  --num_gpus N, --num_procs N   ranks per node (default 1; with a hostfile: its slots)
  --num_nodes N                 number of nodes (default: 1, or every host of the hostfile)
  --node_rank N                 which node this launcher is (default 0)
  --master_addr ADDR            address of node 0, where the rendezvous store runs (default 127.0.0.1)
  --master_port P               its port (default 29500; 0 picks a free port, one node only)
  --hostfile FILE               lines "hostname slots=N"
  --include SPEC, --exclude SPEC  select hosts/slots, e.g. "host1:0,2@host2"
  --no_local_rank               do not append --local_rank=N to the script's arguments
  --enable_each_rank_log DIR    write each rank's output to DIR/rank_N.log instead of the console
  --backend NAME                the ranks' default initDistributed backend (MESHTRAIN_BACKEND):
                                shm, nccl (one GPU per rank) or auto (nccl when every rank has a GPU)
`;

export interface LaunchOptions {
  numProcs?: number;
  numNodes?: number;
  nodeRank: number;
  masterAddr: string;
  masterPort: number;
  hostfile?: string;
  include?: string;
  exclude?: string;
  noLocalRank: boolean;
  eachRankLog?: string;
  backend?: string;
  script: string;
  args: string[];
}

class HelpRequested extends Error {
  constructor() {
    super(USAGE);
  }
}

function intFlag(name: string, v: string | undefined, min = 0): number {
  const n = Number(v);
  if (v === undefined || !Number.isInteger(n) || n < min) throw new Error(`${name} needs an integer >= ${min}, got ${v ?? 'nothing'}`);
  return n;
}

/** Launcher flags come first; the first argument that is not a flag is the script. */
export function parseArgs(argv: string[]): LaunchOptions {
  const o: Partial<LaunchOptions> & { nodeRank: number; masterAddr: string; masterPort: number; noLocalRank: boolean } = {
    nodeRank: 0, masterAddr: '127.0.0.1', masterPort: 29500, noLocalRank: false,
  };
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('-')) break;
    if (a === '-h' || a === '--help') throw new HelpRequested();
    const eq = a.indexOf('=');
    const name = eq >= 0 ? a.slice(0, eq) : a;
    const value = () => (eq >= 0 ? a.slice(eq + 1) : argv[++i]);
    switch (name) {
      case '--num_gpus':
      case '--num_procs':
        o.numProcs = intFlag(name, value(), 1);
        break;
      case '--num_nodes':
        o.numNodes = intFlag(name, value(), 1);
        break;
      case '--node_rank':
        o.nodeRank = intFlag(name, value());
        break;
      case '--master_addr':
        o.masterAddr = value() ?? '';
        break;
      case '--master_port':
        o.masterPort = intFlag(name, value());
        break;
      case '--hostfile':
        o.hostfile = value();
        break;
      case '--include':
        o.include = value();
        break;
      case '--exclude':
        o.exclude = value();
        break;
      case '--no_local_rank':
        o.noLocalRank = true;
        break;
      case '--enable_each_rank_log':
        o.eachRankLog = value();
        break;
      case '--backend': {
        const b = value();
        if (b !== 'shm' && b !== 'nccl' && b !== 'auto') throw new Error(`--backend must be shm, nccl or auto, got ${b ?? 'nothing'}`);
        o.backend = b;
        break;
      }
      default:
        throw new Error(`unknown option ${name}\n\n${USAGE}`);
    }
  }
  if (i >= argv.length) throw new Error(`no script given\n\n${USAGE}`);
  return { ...o, script: argv[i], args: argv.slice(i + 1) };
}

/** The hosts and slots of the job, from the hostfile or from --num_nodes x --num_procs. */
export function resources(o: LaunchOptions): Resources {
  if (o.hostfile) {
    const all = parseHostfile(fs.readFileSync(o.hostfile, 'utf8'), o.hostfile);
    return selectResources(all, { include: o.include, exclude: o.exclude, numNodes: o.numNodes, numGpus: o.numProcs });
  }
  const n = o.numProcs ?? 1;
  const nodes = o.numNodes ?? 1;
  const all: Resources = Array.from({ length: nodes }, (_, k) => [nodes === 1 ? 'localhost' : `node${k}`, Array.from({ length: n }, (_, s) => s)]);
  return selectResources(all, { include: o.include, exclude: o.exclude });
}

/** Writes a child's output line by line with a prefix; a trailing partial line is kept until more arrives. */
function prefixLines(src: NodeJS.ReadableStream, dst: NodeJS.WritableStream, prefix: string): void {
  let partial = '';
  src.setEncoding('utf8');
  src.on('data', (chunk: string) => {
    const text = partial + chunk;
    const end = text.lastIndexOf('\n');
    if (end < 0) {
      partial = text;
      return;
    }
    partial = text.slice(end + 1);
    dst.write(`${text.slice(0, end).split('\n').map((l) => prefix + l).join('\n')}\n`);
  });
  src.on('end', () => {
    if (partial) dst.write(`${prefix}${partial}\n`);
    partial = '';
  });
}

function describeExit(code: number | null, signal: NodeJS.Signals | null): { code: number; text: string } {
  if (signal) return { code: 128 + (os.constants.signals[signal] ?? 1), text: `was killed by ${signal}` };
  return { code: code ?? 1, text: `exited with code ${code}` };
}

/**
 * Removes the shared-memory segments of this job. Ranks unlink theirs as soon as every peer has
 * mapped them, so only a crash during set-up leaves any; returns how many were left.
 */
function removeSegments(jobId: string): number {
  let n = 0;
  try {
    for (const f of fs.readdirSync('/dev/shm')) {
      if (!f.startsWith(`mtshm.${jobId}.`)) continue;
      fs.rmSync(path.join('/dev/shm', f), { force: true });
      n++;
    }
  } catch {
    // no /dev/shm (not Linux): nothing to clean
  }
  return n;
}

/** Runs the job; resolves with the exit code the launcher should exit with. */
export async function launch(o: LaunchOptions): Promise<number> {
  const res = resources(o);
  const { first, local, world } = nodeRanks(res, o.nodeRank);
  if (o.masterPort === 0 && res.length > 1) throw new Error('--master_port 0 (a free port) works on one node only');
  const jobId = process.env.MESHTRAIN_JOB_ID ?? randomBytes(4).toString('hex');
  const log = (msg: string) => process.stderr.write(`meshtrain: ${msg}\n`);
  // A closed console (`meshtrain ... | head`) must not crash the supervisor: drop the output.
  for (const out of [process.stdout, process.stderr]) out.on('error', () => {});

  const server = o.nodeRank === 0 ? await StoreServer.listen(o.masterPort) : null;
  const port = server ? server.port : o.masterPort;
  const cores = os.availableParallelism();
  const ompThreads = process.env.OMP_NUM_THREADS || String(Math.max(1, Math.floor(cores / local.length)));
  const tsx = import.meta.resolve('tsx');
  if (o.eachRankLog) fs.mkdirSync(o.eachRankLog, { recursive: true });
  const customSlots = local.some((s, i) => s !== i);

  const children: (ChildProcess | null)[] = [];
  let remaining = local.length;
  let failure: { rank: number; code: number } | null = null;
  let signalCode: number | null = null;
  let killTimer: NodeJS.Timeout | undefined;
  let finish: (code: number) => void = () => {};
  const finished = new Promise<number>((r) => (finish = r));

  const stopAll = (signal: NodeJS.Signals) => {
    for (const c of children) if (c && c.exitCode === null && c.signalCode === null) c.kill(signal);
    if (!killTimer) {
      killTimer = setTimeout(() => {
        for (const c of children) if (c && c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
      }, 3000);
      killTimer.unref();
    }
  };

  local.forEach((slot, localRank) => {
    const rank = first + localRank;
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      RANK: String(rank), LOCAL_RANK: String(localRank), WORLD_SIZE: String(world), LOCAL_SIZE: String(local.length),
      MASTER_ADDR: o.masterAddr, MASTER_PORT: String(port), OMP_NUM_THREADS: ompThreads,
      MESHTRAIN_JOB_ID: jobId, MESHTRAIN_LAUNCHER_PID: String(process.pid), MESHTRAIN_STORE_SERVED: '1',
      ...(o.backend ? { MESHTRAIN_BACKEND: o.backend } : {}),
    };
    if (customSlots) env.CUDA_VISIBLE_DEVICES = String(slot);
    const args = ['--import', tsx, o.script, ...o.args, ...(o.noLocalRank ? [] : [`--local_rank=${localRank}`])];
    const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    if (o.eachRankLog) {
      const file = fs.createWriteStream(path.join(o.eachRankLog, `rank_${rank}.log`));
      child.stdout?.pipe(file, { end: false });
      child.stderr?.pipe(file, { end: false });
      child.on('close', () => file.end());
    } else {
      prefixLines(child.stdout!, process.stdout, `[rank ${rank}] `);
      prefixLines(child.stderr!, process.stderr, `[rank ${rank}] `);
    }
    child.on('error', (e) => log(`rank ${rank}: cannot start ${process.execPath}: ${e.message}`));
    child.on('close', (code, signal) => {
      const exit = describeExit(code, signal);
      if (exit.code !== 0 && failure === null && signalCode === null) {
        failure = { rank, code: exit.code };
        const others = remaining - 1;
        log(`rank ${rank} (pid ${child.pid}) ${exit.text}${others > 0 ? `; stopping the other ${others} rank${others > 1 ? 's' : ''}` : ''}` +
          (o.eachRankLog ? ` (its output: ${path.join(o.eachRankLog, `rank_${rank}.log`)})` : ''));
        stopAll('SIGTERM');
      }
      if (--remaining === 0) finish(failure?.code ?? signalCode ?? 0);
    });
  });

  const onSignal = (sig: NodeJS.Signals) => {
    if (signalCode === null) {
      signalCode = 128 + (os.constants.signals[sig] ?? 1);
      stopAll(sig);
    } else {
      stopAll('SIGKILL');
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const code = await finished;
  clearTimeout(killTimer);
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  await server?.close();
  const left = removeSegments(jobId);
  if (left > 0) log(`removed ${left} shared-memory segment${left > 1 ? 's' : ''} that ranks of this job left in /dev/shm`);
  if (failure) {
    const f = failure as { rank: number; code: number };
    log(`exiting with code ${f.code} because rank ${f.rank} failed`);
  }
  return code;
}

/** CLI entry: parses argv, launches, and returns the exit code (usage errors: 2). */
export async function main(argv: string[]): Promise<number> {
  let o: LaunchOptions;
  try {
    o = parseArgs(argv);
  } catch (e) {
    if (e instanceof HelpRequested) {
      process.stdout.write(USAGE);
      return 0;
    }
    process.stderr.write(`${(e as Error).message}\n`);
    return 2;
  }
  try {
    return await launch(o);
  } catch (e) {
    process.stderr.write(`meshtrain: ${(e as Error).message}\n`);
    return 1;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  main(process.argv.slice(2)).then((code) => process.exit(code));
}
