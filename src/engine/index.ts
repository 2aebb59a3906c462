/** The engine's public surface: an explicit list, no `export *` (style.md). */
export type { CmpOp, Json, Node, PathNode, Segment } from './ast.js';
export { nodeText, pathText } from './ast.js';
export { FUNCTIONS } from './check.js';
export { CompiledCondition, type Pred } from './compile.js';
export { type Envelope, EvalContext } from './context.js';
export { type EnvelopeCheck, checkEnvelope } from './envelope.js';
export { EngineError, ERROR_CODES, type ErrorCode, type Position, caretSnippet, positionAt } from './errors.js';
export { type Explanation, type Trace, explain } from './explain.js';
export { MAX_DEPTH, MAX_EXPR_BYTES, MAX_LIST, MAX_REGEX_SOURCE, REGEX_BIG_REPEAT } from './limits.js';
export { Engine, RuleIndex, type RuleChange } from './match.js';
export { parseExpression, parsePath } from './parse.js';
export { compileRegex } from './regex.js';
export {
  CompiledRule,
  compileRule,
  compileRuleSet,
  type OnPatterns,
  parseWhen,
  RULE_ID,
  type RuleSetError,
  type RuleStatus,
  ruleLabel,
} from './rule.js';
export { Bucket, buildBucket } from './rule-index.js';
export { treeToNode } from './tree.js';
