/** The engine's public surface: an explicit list, no `export *` (style.md). */
export type { CmpOp, Json, Node, PathNode, Segment } from './ast.js';
export { nodeText, pathText } from './ast.js';
export { FUNCTIONS } from './check.js';
export { CompileCache, CompiledCondition, type Pred } from './compile.js';
export { contextOf, type Envelope, EvalContext } from './context.js';
export { checkEnvelope, type EnvelopeCheck } from './envelope.js';
export {
  caretSnippet,
  EngineError,
  ERROR_CODES,
  type ErrorCode,
  type Position,
  positionAt,
} from './errors.js';
export { type Explanation, explain, type Trace } from './explain.js';
export {
  MAX_DEPTH,
  MAX_EXPR_BYTES,
  MAX_JSON_DEPTH,
  MAX_LIST,
  MAX_REGEX_SOURCE,
  nestedDeeper,
  REGEX_BIG_REPEAT,
} from './limits.js';
export { Engine, type RuleChange, RuleIndex } from './match.js';
export { parseExpression, parsePath } from './parse.js';
export { compileRegex } from './regex.js';
export {
  CompiledRule,
  compileRule,
  compileRuleSet,
  type OnPatterns,
  parseWhen,
  RULE_ID,
  RuleCompiler,
  type RuleSetError,
  type RuleStatus,
  ruleLabel,
  storedRuleProblem,
} from './rule.js';
export { Bucket, buildBucket } from './rule-index.js';
export {
  compileGuard,
  compileParams,
  compileTemplate,
  interpolated,
  type Render,
  RUN_ROOTS,
  SOURCE_ALIASES,
} from './template.js';
export { treeToNode } from './tree.js';
export {
  ACTION_TYPES,
  compileWorkflow,
  DEFAULT_LOOP,
  DEFAULT_RETRIES,
  type Debounce,
  type ErrorStrategy,
  type LoopBreaker,
  parseDuration,
  type Schedule,
  type Step,
  type Throttle,
  type Workflow,
} from './workflow.js';
