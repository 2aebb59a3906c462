/**
 * Envelope validation (rule-language.md §1). Returns a reason instead of throwing, because the
 * callers (the match command, the ingest) report bad envelopes per item and go on.
 */
import type { Envelope } from './context.js';
import { describe } from './errors.js';
import { MAX_JSON_DEPTH, nestedDeeper } from './limits.js';
import { NAME, TYPE } from './rule.js';

export type EnvelopeCheck = { ok: true; envelope: Envelope } | { ok: false; reason: string };

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function bad(reason: string): EnvelopeCheck {
  return { ok: false, reason };
}

export function checkEnvelope(v: unknown): EnvelopeCheck {
  if (!isObject(v)) return bad(`an event must be a JSON object, not ${describe(v)}`);
  if (!Object.hasOwn(v, 'id')) return bad('missing "id"');
  if (typeof v.id !== 'string' || v.id.length === 0) return bad('"id" must be a non-empty string');
  if (Object.hasOwn(v, 'tenant') && (typeof v.tenant !== 'string' || !NAME.test(v.tenant))) {
    return bad('"tenant" must be a string of [a-z0-9][a-z0-9_-]{0,63} (omit it for "default")');
  }
  if (!Object.hasOwn(v, 'source')) return bad('missing "source"');
  if (typeof v.source !== 'string' || !NAME.test(v.source))
    return bad('"source" must be a string of [a-z0-9][a-z0-9_-]{0,63}');
  if (!Object.hasOwn(v, 'type')) return bad('missing "type"');
  if (typeof v.type !== 'string' || !TYPE.test(v.type)) {
    return bad(
      '"type" must be two or more dot-separated lowercase segments of [a-z0-9_], like "ticket.updated"',
    );
  }
  if (Object.hasOwn(v, 'time') && typeof v.time !== 'string')
    return bad('"time" must be a string (an ISO 8601 instant)');
  if (!Object.hasOwn(v, 'data')) return bad('missing "data"');
  if (!isObject(v.data)) return bad('"data" must be a JSON object');
  if (Object.hasOwn(v, 'previous') && v.previous !== null && !isObject(v.previous)) {
    return bad('"previous" must be a JSON object or null');
  }
  if (Object.hasOwn(v, 'self') && typeof v.self !== 'boolean') return bad('"self" must be true or false');
  for (const f of ['data', 'previous', 'raw'] as const) {
    if (nestedDeeper(v[f], MAX_JSON_DEPTH))
      return bad(`"${f}" is nested too deeply (more than ${MAX_JSON_DEPTH} levels)`);
  }
  return { ok: true, envelope: v as unknown as Envelope };
}
