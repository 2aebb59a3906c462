/**
 * The semantic checks of the rule language: the function table (§3, Functions) and the rules on
 * their arguments. The parser calls these as it goes, so that errors come out in reading order.
 */
import type { Node } from './ast.js';
import { FIXED_ROOTS } from './ast.js';

export interface FunctionSpec {
  readonly arity: number;
  /** The first argument must be a path. */
  readonly pathArg: boolean;
}

export const FUNCTIONS: ReadonlyMap<string, FunctionSpec> = new Map([
  ['exists', { arity: 1, pathArg: true }],
  ['changed', { arity: 1, pathArg: true }],
  ['lower', { arity: 1, pathArg: false }],
  ['upper', { arity: 1, pathArg: false }],
  ['trim', { arity: 1, pathArg: false }],
  ['len', { arity: 1, pathArg: false }],
  ['num', { arity: 1, pathArg: false }],
  ['str', { arity: 1, pathArg: false }],
  ['any', { arity: 2, pathArg: true }],
  ['all', { arity: 2, pathArg: true }],
]);

export interface CheckProblem {
  readonly reason: string;
  /** Offset of the offending token in the text. */
  readonly offset: number;
}

export function checkFunctionName(name: string, offset: number): CheckProblem | undefined {
  if (FUNCTIONS.has(name)) return undefined;
  return {
    reason: `unknown function "${name}" (functions: ${[...FUNCTIONS.keys()].join(', ')})`,
    offset,
  };
}

/** Checks a complete call; `nameOffset` is where its name starts. */
export function checkCall(name: string, args: readonly Node[], nameOffset: number): CheckProblem | undefined {
  const spec = FUNCTIONS.get(name);
  if (!spec) return undefined;
  if (args.length !== spec.arity) {
    return {
      reason: `${name}() takes ${spec.arity} argument${spec.arity === 1 ? '' : 's'}, got ${args.length}`,
      offset: nameOffset,
    };
  }
  const first = args[0]!;
  if (spec.pathArg && first.k !== 'path') {
    return {
      reason: `the first argument of ${name}() must be a path (like ticket.status)`,
      offset: first.start,
    };
  }
  if (name === 'changed' && first.k === 'path') return checkChangedPath(first.root, first.start);
  return undefined;
}

/** changed(p): p must be rooted at `data` or the entity name; `it` and the other roots are errors. */
export function checkChangedPath(root: string, offset: number): CheckProblem | undefined {
  if (root === 'it')
    return { reason: 'changed() of "it" is not allowed: an element has no previous value', offset };
  if (root !== 'data' && FIXED_ROOTS.has(root)) {
    return {
      reason: `changed() needs a path rooted at data or the entity name (like ticket.status), not "${root}"`,
      offset,
    };
  }
  return undefined;
}
