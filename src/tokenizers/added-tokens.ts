import type { AddedToken } from './types.js';

/** A piece of input text: ordinary text for the model, or one added token. */
export type Segment = { text: string } | { token: AddedToken };

const isSpace = (c: string | undefined): boolean => c !== undefined && /\s/u.test(c);
const isWordChar = (c: string | undefined): boolean => c !== undefined && /[\p{L}\p{N}_]/u.test(c);

/**
 * Split text on added tokens the way transformers does before the model sees the text: at each
 * position the longest added token that matches wins, scanning left to right; `lstrip`/`rstrip`
 * tokens absorb the whitespace beside them; `single_word` tokens only match as whole words.
 * Empty text segments are dropped.
 */
export class AddedTokenSplitter {
  private readonly byFirstChar = new Map<string, AddedToken[]>();

  constructor(tokens: Iterable<AddedToken>) {
    for (const t of tokens) {
      if (t.content === '') continue;
      const first = t.content[0]!;
      const list = this.byFirstChar.get(first) ?? [];
      list.push(t);
      this.byFirstChar.set(first, list);
    }
    for (const list of this.byFirstChar.values()) list.sort((a, b) => b.content.length - a.content.length);
  }

  split(text: string): Segment[] {
    const out: Segment[] = [];
    let start = 0;
    let i = 0;
    while (i < text.length) {
      const hit = this.matchAt(text, i);
      if (hit === undefined) {
        i++;
        continue;
      }
      let before = text.slice(start, i);
      if (hit.lstrip) before = before.replace(/\s+$/u, '');
      if (before !== '') out.push({ text: before });
      out.push({ token: hit });
      i += hit.content.length;
      if (hit.rstrip) while (i < text.length && isSpace(text[i])) i++;
      start = i;
    }
    const rest = text.slice(start);
    if (rest !== '') out.push({ text: rest });
    return out;
  }

  private matchAt(text: string, i: number): AddedToken | undefined {
    const candidates = this.byFirstChar.get(text[i]!);
    if (candidates === undefined) return undefined;
    for (const t of candidates) {
      if (!text.startsWith(t.content, i)) continue;
      if (t.singleWord && (isWordChar(text[i - 1]) || isWordChar(text[i + t.content.length]))) continue;
      return t;
    }
    return undefined;
  }
}
