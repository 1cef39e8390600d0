/**
 * The nccl backend's checks that need no GPU: a CPU tensor given to an nccl group (through
 * ProcessGroup, and to the communicator directly) is an error naming the op, the tensor and this
 * rank's device, before anything reaches NCCL; a destroyed communicator says so; and where NCCL
 * cannot run, ncclUnavailableReason() names what is missing. The communicator here wraps a handle
 * that is never used: every call is refused before the addon sees it.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { planNcclDevices, type RankReport } from '../../src/dist/nccl.ts';
import { cudaIsAvailable, NcclCommunicator, ncclUnavailableReason, ProcessGroup, type StoreClient, tensor, zeros } from '../../src/index.ts';

function group(comm: NcclCommunicator): ProcessGroup {
  const ctx = { store: null as unknown as StoreClient, backend: null as never, timeoutMs: 1000, checkCollectives: false, groups: new Set<ProcessGroup>() };
  return new ProcessGroup(comm, ctx, 'test/nccl', { name: 'world', rank: 0, ranks: [0, 1] });
}

test('CPU tensors given to an nccl group: errors naming the op, the tensor and the device', () => {
  const g = group(new NcclCommunicator(1 << 20, 'cuda:0', "group 'world' (rank 0 of 2, cuda:0)", 2));
  const cases: [string, () => unknown, RegExp][] = [
    ['allReduce', () => g.allReduce(tensor([1, 2, 3, 4]), 'avg'), /^allReduce\(avg\) on group 'world' \(ranks 0,1\): the tensor \[4\] f32 is on cpu; the nccl backend works on device tensors on cuda:0/],
    ['allGather', () => g.allGather(zeros([8]), zeros([4]), { async: true }), /^allGather on group 'world' .*: the output \[8\] f32 is on cpu; .*cuda:0/],
    ['reduceScatter', () => g.reduceScatter(zeros([2], { dtype: 'bf16' }), zeros([4], { dtype: 'bf16' })), /^reduceScatter\(sum\) .*the output \[2\] bf16 is on cpu/],
    ['broadcast', () => g.broadcast(zeros([3], { dtype: 'i64' }), 1), /^broadcast .*the tensor \[3\] i64 is on cpu.*use \.to\('cuda:0'\)/],
    ['send', () => g.send(zeros([3]), 1), /^send .*the tensor \[3\] f32 is on cpu/],
  ];
  for (const [name, run, expected] of cases) assert.throws(run, expected, name);
});

test('the communicator itself refuses host tensors and use after destroy', () => {
  const comm = new NcclCommunicator(1 << 20, 'cuda:0', "group 'tp' (rank 1 of 2, cuda:0)", 2);
  assert.throws(() => comm.recv(zeros([5]), 0, false), /^nccl: recv from rank 0 on group 'tp' \(rank 1 of 2, cuda:0\): the output f32\[5\] is on cpu; the nccl backend works on tensors on cuda:0/);
  assert.is(comm.sharedEmpty(), null);
  (comm as unknown as { handle: number }).handle = -1;   // as after destroy()
  assert.throws(() => comm.barrier(false), /^nccl: barrier on group 'tp' .*: the communicator was destroyed/);
});

test('ncclUnavailableReason: empty where NCCL runs, else naming what is missing', () => {
  const why = ncclUnavailableReason();
  if (cudaIsAvailable() && why === '') return;
  assert.match(why, /no CUDA device|built without CUDA|missing libnccl|emulation build|predates the nccl backend/);
  if (!cudaIsAvailable()) assert.not.match(why, /^$/);
});

const BUS = ['0000:19:00.0', '0000:3b:00.0', '0000:4c:00.0'];
const rep = (host: string, localRank: number, busIds: string[], why = ''): RankReport => ({ host, why, localRank, busIds });

test('planNcclDevices: cuda:(LOCAL_RANK % devices) per rank, or the position among the host\'s ranks', () => {
  const two = [rep('a', 0, BUS.slice(0, 2)), rep('a', 1, BUS.slice(0, 2)), rep('b', 0, BUS.slice(0, 2)), rep('b', 1, BUS.slice(0, 2))];
  assert.equal([0, 1, 2, 3].map((r) => planNcclDevices(two, r)), [0, 1, 0, 1].map((d) => ({ problem: null, device: `cuda:${d}` })));
  const noEnv = [rep('a', -1, BUS), rep('b', -1, BUS), rep('a', -1, BUS)];
  assert.equal([0, 1, 2].map((r) => planNcclDevices(noEnv, r).device), ['cuda:0', 'cuda:0', 'cuda:1']);
  // The launcher's slots set CUDA_VISIBLE_DEVICES: each rank sees one device, a different one.
  const slots = [rep('a', 0, [BUS[0]]), rep('a', 1, [BUS[1]]), rep('a', 2, [BUS[2]])];
  assert.equal([0, 1, 2].map((r) => planNcclDevices(slots, r)), [0, 1, 2].map(() => ({ problem: null, device: 'cuda:0' })));
});

test('planNcclDevices: two ranks on one GPU, or a rank without NCCL, is every rank\'s error', () => {
  const three = [rep('a', 0, BUS.slice(0, 2)), rep('a', 1, BUS.slice(0, 2)), rep('a', 2, BUS.slice(0, 2))];
  for (const r of [0, 1, 2]) {
    const p = planNcclDevices(three, r);
    assert.is(p.device, 'cpu');
    assert.match(p.problem ?? '', /^ranks 0 and 2 would share the GPU 0000:19:00\.0 of host a; NCCL cannot run two ranks on one GPU \(the host runs 3 ranks/);
  }
  const shared = [rep('a', 0, [BUS[0]]), rep('a', 1, [BUS[0]])];   // the same CUDA_VISIBLE_DEVICES twice
  assert.match(planNcclDevices(shared, 1).problem ?? '', /ranks 0 and 1 would share the GPU 0000:19:00\.0/);
  const missing = [rep('a', 0, [], 'no CUDA device (x)'), rep('a', 1, [], 'no CUDA device (x)'), rep('b', 0, BUS), rep('b', 1, [], 'missing libnccl (y)')];
  assert.equal(planNcclDevices(missing, 2), { problem: 'NCCL cannot be used (ranks 0,1: no CUDA device (x); rank 3: missing libnccl (y))', device: 'cpu' });
});

test.run();
