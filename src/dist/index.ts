/** Distributed runtime: rendezvous, process groups and collectives, the device mesh. */
export {
  initDistributed, isInitialized, getWorld, getRank, getWorldSize, getLocalRank, getStore, barrier, newGroup,
  destroyDistributed, type InitOptions, type BackendName,
} from './distributed.ts';
export { ProcessGroup, type OpOptions } from './process_group.ts';
export { Work } from './work.ts';
export type { ReduceOp, Communicator, Backend, CommSetup, PendingOp } from './communicator.ts';
export { StoreClient, StoreServer, type StoreValue } from './store.ts';
export { cleanupStaleSegments } from './shm.ts';
export { DeviceMesh, formatMesh, MESH_AXES, type MeshAxis, type MeshCoords } from './mesh.ts';
export { DataParallel, DEFAULT_BUCKET_BYTES, type DataParallelOptions, type BucketInfo, type PassStats } from './data_parallel.ts';
export type { BucketLaunch } from './data_parallel_comms.ts';
