/**
 * Run as a child process by the worker-loader test: leaves worker-backed loops by `break`, by an
 * exception and by finishing, and must then exit by itself (a leaked pool would keep it alive).
 */
import { DataLoader, liveStorages, syntheticCifar10 } from '../../src/index.ts';

const data = syntheticCifar10({ length: 64 });
const loader = new DataLoader(data, { batchSize: 8, numWorkers: 2, shuffle: true });
let seen = 0;
for await (const [x] of loader) {
  seen += x.shape[0];
  break;
}
try {
  for await (const _ of loader) throw new Error('stop');
} catch (e) {
  if ((e as Error).message !== 'stop') throw e;
}
let full = 0;
for await (const [x] of loader) full += x.shape[0];
const persistent = new DataLoader(data, { batchSize: 16, numWorkers: 1, persistentWorkers: true });
for await (const _ of persistent) break;
for await (const _ of persistent) break;
await persistent.close();
console.log(`ok seen=${seen} full=${full} live=${liveStorages()}`);
