/**
 * What each CUDA kernel costs the SM before it runs, from ptxas alone (no GPU needed): registers
 * per thread, spilled bytes (local-memory traffic the source never asked for), stack frame and
 * static shared memory, for sm_90 (H100/H200), and the warps per SM its registers allow (of 64).
 * A memory-bound kernel needs many resident warps to hide latency; a spill in a hot kernel is a
 * slowdown no emulated test can show. Compiles each native/cuda/*.cu to a cubin with `-Xptxas -v`
 * (device code only), as many files at once as there are cores.
 *
 *   npx tsx bench/kernel_resources.ts [--all] [--json FILE] [file.cu ...]
 * Default rows: bf16 and non-template instantiations (the dtype GPT and ResNet train in) and every
 * kernel that spills; --all prints every instantiation. Skipped without nvcc.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const REGS_PER_SM = 65536;
const MAX_WARPS_PER_SM = 64;
/** sm_90 hands registers to a warp in units of 256 (8 per thread). */
const REG_UNIT = 256;

export interface KernelResources {
  file: string;
  kernel: string;
  registers: number;
  stackBytes: number;
  spillStores: number;
  spillLoads: number;
  sharedBytes: number;
  /** Resident warps per SM that the register file allows (block granularity ignored). */
  warpsByRegisters: number;
}

/** Parses ptxas -v output (one file's) into one record per entry function. */
export function parsePtxas(file: string, text: string): KernelResources[] {
  const out: KernelResources[] = [];
  let cur: KernelResources | undefined;
  for (const line of text.split('\n')) {
    const entry = /Compiling entry function '([^']+)' for/.exec(line);
    if (entry) {
      cur = { file, kernel: entry[1], registers: 0, stackBytes: 0, spillStores: 0, spillLoads: 0, sharedBytes: 0, warpsByRegisters: MAX_WARPS_PER_SM };
      out.push(cur);
      continue;
    }
    if (!cur) continue;
    const frame = /(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads/.exec(line);
    if (frame) [cur.stackBytes, cur.spillStores, cur.spillLoads] = frame.slice(1).map(Number);
    const used = /Used (\d+) registers/.exec(line);
    if (used) {
      cur.registers = Number(used[1]);
      const perWarp = Math.ceil((cur.registers * 32) / REG_UNIT) * REG_UNIT;
      cur.warpsByRegisters = Math.min(MAX_WARPS_PER_SM, Math.floor(REGS_PER_SM / perWarp));
    }
    const smem = /(\d+) bytes smem/.exec(line);
    if (smem) cur.sharedBytes = Number(smem[1]);
  }
  return out;
}

function findNvcc(): string | undefined {
  for (const p of [process.env.NVCC, '/usr/local/cuda/bin/nvcc']) if (p && existsSync(p)) return p;
  try {
    return execFileSync('sh', ['-c', 'command -v nvcc'], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

function ptxas(nvcc: string, file: string, dir: string): Promise<string> {
  const args = ['-O3', '-DNDEBUG', '-DMESHTRAIN_CUDA=1', '-std=c++17', '-arch=sm_90', '-cubin', '-Xptxas', '-v'];
  for (const inc of ['native', 'node_modules/node-api-headers/include', 'node_modules/node-addon-api']) args.push('-I', path.join(root, inc));
  args.push(path.join(root, file), '-o', path.join(dir, `${path.basename(file)}.cubin`));
  return new Promise((resolve, reject) => {
    const child = spawn(nvcc, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    child.stdout.on('data', (d) => (text += d));
    child.stderr.on('data', (d) => (text += d));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve(text) : reject(new Error(`nvcc failed on ${file} (exit ${code}):\n${text.slice(-2000)}`))));
  });
}

/** Demangled names, in order (c++filt when present; the mangled names otherwise). */
function demangle(names: string[]): string[] {
  try {
    const out = execFileSync('c++filt', { input: names.join('\n'), encoding: 'utf8' }).split('\n');
    return names.map((n, i) => (out[i] ?? n).replace(/mt::\(anonymous namespace\)::|mt::|\(anonymous namespace\)::/g, '').replace(/\(.*$/, '').replace(/^void /, ''));
  } catch {
    return names;
  }
}

async function main(): Promise<void> {
  const nvcc = findNvcc();
  if (!nvcc) {
    console.log('skipped: nvcc not found (set NVCC or put it on the PATH)');
    return;
  }
  const argFiles = process.argv.slice(2).filter((a) => a.endsWith('.cu'));
  const files = argFiles.length ? argFiles : readdirSync(path.join(root, 'native/cuda')).filter((f) => f.endsWith('.cu')).sort().map((f) => `native/cuda/${f}`);
  const dir = mkdtempSync(path.join(tmpdir(), 'mt-ptxas-'));
  const rows: KernelResources[] = [];
  try {
    let next = 0;
    const worker = async () => {
      while (next < files.length) {
        const f = files[next++];
        rows.push(...parsePtxas(path.basename(f), await ptxas(nvcc, f, dir)));
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, availableParallelism()) }, worker));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const names = demangle(rows.map((r) => r.kernel));
  rows.forEach((r, i) => (r.kernel = names[i]));
  rows.sort((a, b) => a.file.localeCompare(b.file) || a.kernel.localeCompare(b.kernel));
  const spills = rows.filter((r) => r.spillStores + r.spillLoads > 0);
  const all = process.argv.includes('--all');
  // Rows GPT and ResNet run: bf16 instantiations, and kernels with no dtype parameter.
  const shown = all ? rows : rows.filter((r) => r.spillStores + r.spillLoads > 0 || /bfloat16/.test(r.kernel) || !/<.*(float|double|__half|long|int)/.test(r.kernel));
  console.log(`ptxas resources for sm_90 (${files.length} files, ${rows.length} kernels; warps/SM: what the registers allow of ${MAX_WARPS_PER_SM})`);
  console.log(`${'file'.padEnd(22)}${'regs'.padStart(6)}${'warps'.padStart(7)}${'spill st/ld'.padStart(13)}${'stack'.padStart(7)}${'smem'.padStart(8)}  kernel`);
  for (const r of shown) {
    const spill = r.spillStores + r.spillLoads ? `${r.spillStores}/${r.spillLoads}` : '-';
    console.log(
      `${r.file.padEnd(22)}${String(r.registers).padStart(6)}${String(r.warpsByRegisters).padStart(7)}${spill.padStart(13)}${String(r.stackBytes).padStart(7)}${String(r.sharedBytes).padStart(8)}  ${r.kernel.slice(0, 100)}`,
    );
  }
  const j = process.argv.indexOf('--json');
  if (j >= 0) writeFileSync(process.argv[j + 1], JSON.stringify(rows, null, 1));
  // The last line is the summary.
  console.log(
    `kernel resources: ${rows.length} kernels in ${files.length} files; ${spills.length} spill` +
      (spills.length ? ` (${spills.map((r) => `${r.kernel.replace(/<.*/, '')} ${r.spillStores}/${r.spillLoads} B`).join(', ')})` : '') +
      `; most registers ${Math.max(...rows.map((r) => r.registers))}`,
  );
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) await main();
