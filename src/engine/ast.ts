/**
 * The checked syntax tree, shared by both rule forms (text and condition tree). Every node keeps
 * the text it came from (`src`, `start`, `end`) so that `explain()` can show it.
 */

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export type CmpOp =
  | '=='
  | '!='
  | '<'
  | '<='
  | '>'
  | '>='
  | 'contains'
  | 'startsWith'
  | 'endsWith'
  | 'in'
  | 'nin';

/** The fixed roots of rule-language.md §2. Any other root name is an entity name (or null). */
export const FIXED_ROOTS = new Set(['event', 'data', 'previous', 'raw', 'it']);

interface Span {
  /** The text this node was parsed from (shared, not copied) and its offsets in it. */
  readonly src: string;
  readonly start: number;
  readonly end: number;
}

export type Segment = string | number;

export type Node =
  | (Span & { readonly k: 'lit'; readonly v: Json })
  | (Span & { readonly k: 'path'; readonly root: string; readonly segs: readonly Segment[] })
  | (Span & { readonly k: 'call'; readonly fn: string; readonly args: readonly Node[] })
  | (Span & { readonly k: 'not'; readonly x: Node })
  | (Span & { readonly k: 'and'; readonly xs: readonly Node[] })
  | (Span & { readonly k: 'or'; readonly xs: readonly Node[] })
  | (Span & { readonly k: 'cmp'; readonly op: CmpOp; readonly l: Node; readonly r: Node })
  | (Span & {
      readonly k: 'match';
      readonly l: Node;
      readonly pattern: string;
      readonly flags: string;
      readonly re: RegExp;
    });

export type PathNode = Extract<Node, { k: 'path' }>;

export function nodeText(n: Node): string {
  return n.src.slice(n.start, n.end);
}

/** Renders a path the way a user would write it: `ticket.customfields[0]["a b"]`. */
export function pathText(root: string, segs: readonly Segment[]): string {
  let s = root;
  for (const seg of segs) {
    if (typeof seg === 'number') s += `[${seg}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(seg)) s += `.${seg}`;
    else s += `[${JSON.stringify(seg)}]`;
  }
  return s;
}
