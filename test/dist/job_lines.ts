// Fixtures that run several jobs in one launch (one process start-up per rank instead of one per
// job) print "JOB <i>" before job i's lines; jobOutputs splits the launcher's "[rank R] ..." output
// back into one stdout per job, as if each job had been launched alone.

/** Each job's lines of `stdout` (every rank's, in order); lines without a rank prefix go to every job. */
export function jobOutputs(stdout: string, jobs: number): string[] {
  const out: string[][] = Array.from({ length: jobs }, () => []);
  const current = new Map<string, number>();
  for (const line of stdout.split('\n')) {
    const m = /^\[rank (\d+)\] (.*)$/.exec(line);
    if (!m) {
      for (const o of out) o.push(line);
      continue;
    }
    const job = /^JOB (\d+)$/.exec(m[2]);
    if (job) current.set(m[1], Number(job[1]));
    else out[current.get(m[1]) ?? 0].push(line);
  }
  return out.map((lines) => lines.join('\n'));
}
