/**
 * JSON with comments, as DeepSpeed users write configs: `//` and `/* *\/` comments and trailing
 * commas are accepted; everything else is strict JSON (numbers such as 1e9 included).
 */

/** The text with comments and trailing commas blanked out (positions kept for error messages). */
function stripJsonc(text: string, source: string): string {
  const out = text.split('');
  let i = 0;
  let lastSignificant = -1; // index of the last non-space character kept
  while (i < text.length) {
    const c = text[i];
    if (c === '"') {
      const start = i;
      for (i++; i < text.length && text[i] !== '"'; i++) if (text[i] === '\\') i++;
      if (i >= text.length) throw new Error(`${source}: unterminated string starting at ${where(text, start)}`);
      lastSignificant = i++;
    } else if (c === '/' && text[i + 1] === '/') {
      for (; i < text.length && text[i] !== '\n'; i++) out[i] = ' ';
    } else if (c === '/' && text[i + 1] === '*') {
      const end = text.indexOf('*/', i + 2);
      if (end < 0) throw new Error(`${source}: unterminated /* comment starting at ${where(text, i)}`);
      for (; i < end + 2; i++) if (text[i] !== '\n') out[i] = ' ';
    } else if (c === '}' || c === ']') {
      if (lastSignificant >= 0 && out[lastSignificant] === ',') out[lastSignificant] = ' ';
      lastSignificant = i++;
    } else {
      if (!/\s/.test(c)) lastSignificant = i;
      i++;
    }
  }
  return out.join('');
}

function where(text: string, pos: number): string {
  const before = text.slice(0, pos).split('\n');
  return `line ${before.length}, column ${before[before.length - 1].length + 1}`;
}

/**
 * Parses JSON-with-comments text; errors name `source` and the line and column.
 * @example
 * parseJsonc('{ "stage": 3, // ZeRO-3\n }', 'ds_config.json') // { stage: 3 }
 */
export function parseJsonc(text: string, source = 'config'): unknown {
  const clean = stripJsonc(text, source);
  try {
    return JSON.parse(clean);
  } catch (e) {
    const msg = (e as Error).message;
    const m = /position (\d+)/.exec(msg);
    throw new Error(`${source}: invalid JSON${m ? ` at ${where(clean, Number(m[1]))}` : ''}: ${msg}`);
  }
}
