/**
 * JSON with comments, as DeepSpeed users write configs: `//` and `/* *\/` comments and trailing
 * commas are accepted; everything else is strict JSON (numbers such as 1e9 included). A key given
 * twice in one object is an error, as in DeepSpeed (JSON.parse would silently keep the last one,
 * and a config whose two "stage" lines disagree must not train with either).
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
  let value: unknown;
  try {
    value = JSON.parse(clean);
  } catch (e) {
    const msg = (e as Error).message;
    const m = /position (\d+)/.exec(msg);
    throw new Error(`${source}: invalid JSON${m ? ` at ${where(clean, Number(m[1]))}` : ''}: ${msg}`);
  }
  checkDuplicateKeys(clean, source);
  return value;
}

/** Throws on the first key repeated within one object of valid JSON `text`, naming its path and line. */
function checkDuplicateKeys(text: string, source: string): void {
  // One frame per open object/array: an object's keys so far, whether the next string is a key, and its path.
  const stack: { keys: Set<string> | null; expectKey: boolean; path: string; last: string }[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    const top = stack[stack.length - 1];
    if (c === '"') {
      const start = i;
      for (i++; text[i] !== '"'; i++) if (text[i] === '\\') i++;
      if (top?.keys && top.expectKey) {
        const key = JSON.parse(text.slice(start, i + 1)) as string;
        const path = top.path ? `${top.path}.${key}` : key;
        if (top.keys.has(key)) throw new Error(`${source}: duplicate key "${path}" at ${where(text, start)}`);
        top.keys.add(key);
        top.expectKey = false;
        top.last = path;
      }
    } else if (c === '{' || c === '[') {
      const path = top ? (top.keys ? top.last : `${top.path}[]`) : '';
      stack.push({ keys: c === '{' ? new Set() : null, expectKey: c === '{', path, last: '' });
    } else if (c === '}' || c === ']') {
      stack.pop();
    } else if (c === ',' && top?.keys) {
      top.expectKey = true;
    }
  }
}
