/**
 * The CUDA groundwork that runs without a GPU: the run-time library loader (a real shared
 * library opened from MESHTRAIN_CUDA_LIB_PATH in a fresh process), the device report, device
 * names, and the errors for CUDA tensors where no device is usable.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cudaDeviceCount, cudaLibraries, native, nn, tensor, tidy, zeros } from '../../src/index.ts';

const root = path.resolve(import.meta.dirname, '../..');

/** A C compiler for the test libraries (nvcc's host compiler on the GPU machines), or null. */
const cc = ['cc', 'gcc', 'clang'].find((c) => spawnSync(c, ['--version']).status === 0) ?? null;

/** Builds `code` into `dir/name` as a shared library. */
function sharedLibrary(dir: string, name: string, code: string): void {
  const src = path.join(dir, `${name}.c`);
  writeFileSync(src, code);
  execFileSync(cc as string, ['-shared', '-fPIC', '-o', path.join(dir, name), src]);
}

test('cudaLibraries reports each library as found (path, version) or missing (a message naming it)', () => {
  const libs = cudaLibraries();
  assert.ok(Array.isArray(libs.searchDirs));
  for (const [name, so] of [['cublasLt', 'libcublasLt'], ['nccl', 'libnccl']] as const) {
    const r = libs[name];
    if (r.found) {
      assert.match(r.path, new RegExp(so));
      assert.match(r.version, /^\d+\.\d+\.\d+$/);
    } else {
      assert.match(r.error, new RegExp(`^missing ${so} \\(${so}\\.so`));
      assert.match(r.error, /MESHTRAIN_CUDA_LIB_PATH/);
    }
  }
});

/** The other functions the loader requires of libnccl (libraries.cc), as stubs: only their presence is tested. */
const NCCL_STUBS = [
  'const char* ncclGetErrorString(int r) { return "x"; }',
  ...['GetUniqueId', 'CommInitRank', 'CommGetAsyncError', 'CommAbort', 'CommDestroy', 'AllReduce', 'Reduce', 'ReduceScatter']
    .concat(['AllGather', 'Broadcast', 'Send', 'Recv', 'GroupStart', 'GroupEnd'])
    .map((f) => `int nccl${f}(void) { return 0; }`),
].join('\n');

test('a library in MESHTRAIN_CUDA_LIB_PATH is opened with dlopen and its version read', () => {
  if (!cc) return void console.log('SKIP: no C compiler (cc, gcc, clang) to build the test library');
  // A real shared object with NCCL's two entry points that the report calls, built here: the
  // loader's search, dlopen and dlsym run exactly as for libnccl.so.2 on a GPU machine.
  const dir = mkdtempSync(path.join(tmpdir(), 'mt-cudalib-'));
  try {
    sharedLibrary(dir, 'libnccl.so.2', `int ncclGetVersion(int* v) { *v = 22703; return 0; }\n${NCCL_STUBS}`);
    const script = "import { cudaLibraries } from './src/index.ts'; console.log(JSON.stringify(cudaLibraries().nccl));";
    const out = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: root,
      env: { ...process.env, MESHTRAIN_CUDA_LIB_PATH: `/nonexistent:${dir}` },
      encoding: 'utf8',
    });
    assert.is(out.status, 0, out.stderr);
    const nccl = JSON.parse(out.stdout.trim().split('\n').pop() as string);
    assert.equal(nccl, { found: true, path: path.join(dir, 'libnccl.so.2'), version: '2.27.3' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the Python wheels' nvidia/*/lib folders of a virtualenv are searched (as on the GPU machines)", () => {
  if (!cc) return void console.log('SKIP: no C compiler (cc, gcc, clang) to build the test library');
  const venv = mkdtempSync(path.join(tmpdir(), 'mt-venv-'));
  try {
    const lib = path.join(venv, 'lib', 'python3.12', 'site-packages', 'nvidia', 'nccl', 'lib');
    mkdirSync(lib, { recursive: true });
    sharedLibrary(lib, 'libnccl.so.2', `int ncclGetVersion(int* v) { *v = 22805; return 0; }\n${NCCL_STUBS}`);
    const script = "import { cudaLibraries } from './src/index.ts'; const l = cudaLibraries(); console.log(JSON.stringify([l.searchDirs, l.nccl]));";
    const env: NodeJS.ProcessEnv = { ...process.env, VIRTUAL_ENV: venv };
    delete env.MESHTRAIN_CUDA_LIB_PATH;
    const out = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: root, env, encoding: 'utf8' });
    assert.is(out.status, 0, out.stderr);
    const [dirs, nccl] = JSON.parse(out.stdout.trim().split('\n').pop() as string);
    assert.is(dirs[0], lib);
    assert.equal(nccl, { found: true, path: path.join(lib, 'libnccl.so.2'), version: '2.28.5' });
  } finally {
    rmSync(venv, { recursive: true, force: true });
  }
});

test('a library lacking a needed function is reported, naming the function', () => {
  if (!cc) return void console.log('SKIP: no C compiler (cc, gcc, clang) to build the test library');
  const dir = mkdtempSync(path.join(tmpdir(), 'mt-cudalib-'));
  try {
    sharedLibrary(dir, 'libnccl.so.2', 'int ncclGetVersion(int* v) { *v = 1; return 0; }\n');
    const script = "import { cudaLibraries } from './src/index.ts'; console.log(JSON.stringify(cudaLibraries().nccl));";
    const out = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: root,
      env: { ...process.env, MESHTRAIN_CUDA_LIB_PATH: dir },
      encoding: 'utf8',
    });
    assert.is(out.status, 0, out.stderr);
    const nccl = JSON.parse(out.stdout.trim().split('\n').pop() as string);
    assert.is(nccl.found, false);
    assert.match(nccl.error, /lacks the function ncclGetErrorString/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('deviceInfo says whether CUDA was compiled in and why no device is usable', () => {
  const info = native.deviceInfo();
  assert.type(info.cudaCompiled, 'boolean');
  assert.is(info.cudaDevices, cudaDeviceCount());
  if (info.cudaDevices === 0) assert.ok(info.cudaStatus.length > 0);
});

test('device names are checked', () => {
  assert.throws(() => zeros([2], { device: 'gpu' as never }), /empty: unknown device "gpu" \(expected 'cpu' or 'cuda:N'/);
  assert.throws(() => zeros([2], { device: 'cuda:8' as never }), /unknown device "cuda:8"/);
  assert.throws(() => tensor([1]).to('cuda:x' as never), /unknown dtype|unknown device/);
});

test('a CUDA tensor without a usable device is a clear error, not a crash', () => {
  if (cudaDeviceCount() > 0) return;
  assert.throws(() => zeros([4], { device: 'cuda:0' }), /cuda:0 is not available/);
  assert.throws(() => tidy(() => tensor([1, 2]).to('cuda:0')), /cuda:0 is not available/);
  assert.throws(() => nn.moduleToDevice(new nn.Linear(2, 2), 'cuda:0'), /cuda:0 is not available/);
});

test('copyBytes copies between CPU storages (the path every device pair shares)', () => {
  tidy(() => {
    const a = tensor([1, 2, 3, 4], { dtype: 'f32' });
    const b = zeros([4], { dtype: 'f32' });
    native.copyBytes(a.id, 4, b.id, 8, 8);
    assert.equal(b.toList(), [0, 0, 2, 3]);
    assert.throws(() => native.copyBytes(a.id, 8, b.id, 0, 16), /outside storage/);
  });
});

test.run();
