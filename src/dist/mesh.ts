/**
 * DeviceMesh: the world's ranks laid out on named axes, Megatron's way — tp varies fastest,
 * then dp, then pp: rank = (pp * dp_size + dp) * tp_size + tp. Each axis has one process group
 * per line of the mesh along it; `group(axis)` is the one this rank belongs to.
 */
import { getWorld } from './distributed.ts';
import type { ProcessGroup } from './process_group.ts';

export type MeshAxis = 'pp' | 'dp' | 'tp';
export const MESH_AXES: readonly MeshAxis[] = ['pp', 'dp', 'tp'];  // slowest to fastest
export type MeshCoords = Record<MeshAxis, number>;

export class DeviceMesh {
  private constructor(
    readonly sizes: Readonly<MeshCoords>,
    readonly world: ProcessGroup,
    private readonly groups: Readonly<Record<MeshAxis, ProcessGroup>>,
  ) {}

  /**
   * Every rank calls it with the same sizes (missing axes are 1; the product must be the
   * world size).
   * @example
   * const mesh = await DeviceMesh.init({ dp: 2, tp: 2 });    // 2D: pp = 1
   * mesh.group('tp').allReduce(partial);
   */
  static async init(sizes: Partial<MeshCoords>, opts: { world?: ProcessGroup } = {}): Promise<DeviceMesh> {
    const world = opts.world ?? getWorld();
    const s: MeshCoords = { pp: sizes.pp ?? 1, dp: sizes.dp ?? 1, tp: sizes.tp ?? 1 };
    for (const a of MESH_AXES) {
      if (!Number.isInteger(s[a]) || s[a] < 1) throw new Error(`DeviceMesh.init: ${a} must be a positive integer, got ${s[a]}`);
    }
    for (const k of Object.keys(sizes)) {
      if (!MESH_AXES.includes(k as MeshAxis)) throw new Error(`DeviceMesh.init: unknown axis '${k}' (axes: ${MESH_AXES.join(', ')})`);
    }
    const product = s.pp * s.dp * s.tp;
    if (product !== world.size) {
      throw new Error(`DeviceMesh.init: pp ${s.pp} x dp ${s.dp} x tp ${s.tp} = ${product}, but the world has ${world.size} ranks`);
    }
    const me = coordsOf(s, world.rank);
    const groups = {} as Record<MeshAxis, ProcessGroup>;
    for (const axis of MESH_AXES) {
      // One split per axis: ranks that agree on the other two coordinates share a group.
      const [a, b] = MESH_AXES.filter((x) => x !== axis);
      const color = me[a] * s[b] + me[b];
      const name = `${axis}(${a}=${me[a]},${b}=${me[b]})`;
      const g = await world.split(color, me[axis], { name });
      groups[axis] = g as ProcessGroup;
    }
    return new DeviceMesh(s, world, groups);
  }

  /** This rank's group along `axis`. */
  group(axis: MeshAxis): ProcessGroup {
    const g = this.groups[axis];
    if (!g) throw new Error(`DeviceMesh.group: unknown axis '${axis}' (axes: ${MESH_AXES.join(', ')})`);
    return g;
  }

  /** The coordinates of world rank `rank` (default: this rank). */
  coords(rank: number = this.world.rank): MeshCoords {
    if (!Number.isInteger(rank) || rank < 0 || rank >= this.world.size) {
      throw new Error(`DeviceMesh.coords: rank ${rank} is outside a world of ${this.world.size}`);
    }
    return coordsOf(this.sizes, rank);
  }

  /** The world rank at `coords` (missing axes are 0). */
  rank(coords: Partial<MeshCoords>): number {
    let r = 0;
    for (const a of MESH_AXES) {
      const c = coords[a] ?? 0;
      if (!Number.isInteger(c) || c < 0 || c >= this.sizes[a]) {
        throw new Error(`DeviceMesh.rank: ${a} = ${c} is outside 0..${this.sizes[a] - 1}`);
      }
      r = r * this.sizes[a] + c;
    }
    return r;
  }

  /** The rank grid: one block per pipeline stage, dp rows by tp columns. */
  toString(): string {
    return formatMesh(this.sizes, this.world.rank);
  }

  /** Frees the axis groups (the world stays). */
  destroy(): void {
    for (const a of MESH_AXES) this.groups[a].destroy();
  }
}

function coordsOf(s: MeshCoords, rank: number): MeshCoords {
  return { tp: rank % s.tp, dp: Math.floor(rank / s.tp) % s.dp, pp: Math.floor(rank / (s.tp * s.dp)) };
}

/** The mesh drawn as text; `me` is marked with an asterisk. Pure, for tests and logs. */
export function formatMesh(s: MeshCoords, me = -1): string {
  const world = s.pp * s.dp * s.tp;
  const width = Math.max(3, String(world - 1).length + 1, `tp${s.tp - 1}`.length);
  const cell = (v: string) => v.padStart(width + 1);
  const lines = [`DeviceMesh pp=${s.pp} x dp=${s.dp} x tp=${s.tp} (${world} ranks; tp varies fastest, then dp, then pp)`];
  for (let pp = 0; pp < s.pp; pp++) {
    lines.push(`pp ${pp}:${' '.repeat(4)}${Array.from({ length: s.tp }, (_, t) => cell(`tp${t}`)).join('')}`);
    for (let dp = 0; dp < s.dp; dp++) {
      const row = Array.from({ length: s.tp }, (_, t) => {
        const r = (pp * s.dp + dp) * s.tp + t;
        return cell(r === me ? `*${r}` : String(r));
      });
      lines.push(`  dp ${String(dp).padEnd(4)}${row.join('')}`);
    }
  }
  return lines.join('\n');
}
