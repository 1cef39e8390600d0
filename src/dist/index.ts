/** Distributed runtime: rendezvous, process groups and collectives, the device mesh. */

export type { Backend, CommSetup, Communicator, PendingOp, ReduceOp } from './communicator.ts';
export { type BucketInfo, DataParallel, type DataParallelOptions, DEFAULT_BUCKET_BYTES, type PassStats } from './data_parallel.ts';
export type { BucketLaunch } from './data_parallel_comms.ts';
export {type BackendName,barrier, 
  destroyDistributed, getDevice, getLocalRank, getRank, getStore, getWorld, getWorldSize, type InitOptions, 
  initDistributed, isInitialized, newGroup,
} from './distributed.ts';
export { DeviceMesh, formatMesh, MESH_AXES, type MeshAxis, type MeshCoords } from './mesh.ts';
export { NcclBackend, NcclCommunicator, ncclUnavailableReason } from './nccl.ts';
export { type OpOptions, ProcessGroup } from './process_group.ts';
export { cleanupStaleSegments } from './shm.ts';
export { StoreClient, StoreServer, type StoreValue } from './store.ts';
export { Work } from './work.ts';
