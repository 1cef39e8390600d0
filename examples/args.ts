/** A tiny `--name value` / `--flag` parser for the examples, with a clear error for unknown flags. */
export function parseArgs<T extends Record<string, string | number | boolean>>(defaults: T, argv = process.argv.slice(2)): T {
  const out: Record<string, string | number | boolean> = { ...defaults };
  for (let i = 0; i < argv.length; i++) {
    const raw = argv[i];
    if (!raw.startsWith('--')) throw new Error(`unexpected argument ${JSON.stringify(raw)}`);
    const [name, inline] = raw.slice(2).split('=', 2);
    if (name === 'local_rank') continue; // appended by the launcher
    if (!(name in defaults)) throw new Error(`unknown option --${name} (options: ${Object.keys(defaults).map((k) => `--${k}`).join(', ')})`);
    const def = defaults[name];
    if (typeof def === 'boolean') {
      out[name] = inline === undefined ? true : inline !== 'false';
      continue;
    }
    const value = inline ?? argv[++i];
    if (value === undefined) throw new Error(`--${name} needs a value`);
    if (typeof def === 'number') {
      const n = Number(value);
      if (!Number.isFinite(n)) throw new Error(`--${name} needs a number, got ${JSON.stringify(value)}`);
      out[name] = n;
    } else {
      out[name] = value;
    }
  }
  return out as T;
}
