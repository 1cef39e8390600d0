/**
 * Which ops a test file exercises, read from its source: an op counts when a name imported from
 * src/ is used in code (called, or passed as in parity('neg', neg, ...)), or when a Tensor method
 * of the op's name is called (x.narrow(...)). Comments, strings and regex literals are blanked
 * first, so a test's title or an error pattern naming an op does not count.
 *
 * @example
 * opsUsedIn(readFileSync('test/unit/cuda_ops.test.ts', 'utf8'), new Set(['narrow']));  // Set {'add', ..., 'narrow'}
 */

/** `text` with comments, string and template literals and regex literals replaced by spaces (newlines kept). */
export function codeOnly(text: string): string {
  const out = text.split('');
  const blank = (from: number, to: number) => {
    for (let j = from; j < to; j++) if (out[j] !== '\n') out[j] = ' ';
  };
  let i = 0;
  // The last significant code character: a '/' after one of these starts a regex, else it divides.
  let prev = '';
  while (i < text.length) {
    const c = text[i];
    const next = text[i + 1];
    if (c === '/' && (next === '/' || next === '*')) {
      const close = next === '/' ? text.indexOf('\n', i) : text.indexOf('*/', i + 2);
      const end = close < 0 ? text.length : next === '/' ? close : close + 2;
      blank(i, end);
      i = end;
      continue;
    }
    let end = -1;
    if (c === "'" || c === '"' || c === '`') end = quotedEnd(text, i, c);
    else if (c === '/' && (prev === '' || '(,=:[!&|?{};'.includes(prev))) end = regexEnd(text, i);
    if (end >= 0) {
      // The delimiters stay, so that `from '...'` still reads as a (blank) string.
      blank(i + 1, end - 1);
      i = end;
      prev = 'x';
      continue;
    }
    if (!/\s/.test(c)) prev = c;
    i++;
  }
  return out.join('');
}

/** The index just past the literal that opens with quote `q` at `i` (backslash escapes skipped). */
function quotedEnd(text: string, i: number, q: string): number {
  let j = i + 1;
  while (j < text.length && text[j] !== q) j += text[j] === '\\' ? 2 : 1;
  return Math.min(j + 1, text.length);
}

/** The index just past the regex literal at `i`, its flags included ('/' inside [...] does not end it). */
function regexEnd(text: string, i: number): number {
  let j = i + 1;
  let inClass = false;
  while (j < text.length && text[j] !== '\n') {
    const c = text[j];
    if (c === '\\') j++;
    else if (c === '[') inClass = true;
    else if (c === ']') inClass = false;
    else if (c === '/' && !inClass) break;
    j++;
  }
  j++;
  while (j < text.length && /[a-z]/.test(text[j])) j++;
  return j;
}

/** Local name -> exported name of the values a file imports from src/ (type-only imports left out). */
export function srcImports(text: string): Map<string, string> {
  const names = new Map<string, string>();
  for (const m of text.matchAll(/import\s+(type\s+)?\{([^}]*)\}\s*from\s*['"]([^'"]+)['"]/g)) {
    if (m[1] || !/(^|\/)src\//.test(m[3])) continue;
    for (const entry of m[2].split(',')) {
      const e = entry.trim();
      if (!e || e.startsWith('type ')) continue;
      const [exported, local] = e.split(/\s+as\s+/);
      names.set((local ?? exported).trim(), exported.trim());
    }
  }
  return names;
}

/** The ops among `ops` that the test source `text` uses (see the file comment); `methods`: Tensor's method names. */
export function opsUsedIn(text: string, ops: ReadonlySet<string>, methods: ReadonlySet<string> = new Set()): Set<string> {
  const imported = srcImports(text);
  // Import statements blanked too, so that importing an op alone does not count.
  const code = codeOnly(text).replace(/\bimport\s[^;]*;/g, (s) => s.replace(/[^\n]/g, ' '));
  const used = new Set<string>();
  for (const m of code.matchAll(/(\.\s*)?(?<![\w$])([A-Za-z_$][\w$]*)(\s*\()?/g)) {
    const [, dot, name, call] = m;
    if (dot) {
      if (call && methods.has(name) && ops.has(name)) used.add(name);
    } else {
      const op = imported.get(name);
      if (op && ops.has(op)) used.add(op);
    }
  }
  return used;
}
