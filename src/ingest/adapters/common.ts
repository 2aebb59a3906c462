/** Helpers shared by the adapters. */
import { bodyText } from '../../config/body.js';
import { AdapterError, type HookRequest } from '../connection.js';

/**
 * A webhook's body as JSON, in its charset, without a byte order mark. Bytes that are not UTF-8
 * are read as U+FFFD: the body is signed, and a PSA can do nothing about a refusal but retry.
 */
export function parseJson(req: HookRequest): unknown {
  try {
    return JSON.parse(bodyText(req.body, req.charset));
  } catch (e) {
    throw new AdapterError(400, `malformed JSON: ${(e as Error).message}`);
  }
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** An ISO 8601 instant with milliseconds, or undefined when the value is not a time. */
export function isoTime(v: unknown): string | undefined {
  if (typeof v !== 'string' || v.length > 64) return undefined;
  // Halo writes 7 fractional digits; keep milliseconds.
  let t = v.trim().replace(/(\.\d{3})\d+/, '$1');
  // A date-time without an offset is read as UTC, as the PSAs mean it: Date.parse would take it
  // as the server's local time, and the event would move by the server's time zone.
  if (ZONELESS.test(t)) t += 'Z';
  const ms = Date.parse(t);
  return Number.isFinite(ms) ? new Date(ms).toISOString() : undefined;
}

/** An ISO date-time with no `Z` nor offset. */
const ZONELESS = /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/;

/** A value as a type segment: lowercase [a-z0-9_], or undefined. */
export function segment(v: unknown): string | undefined {
  if (typeof v !== 'string') return undefined;
  const s = v
    .trim()
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .toLowerCase()
    .replace(/[^a-z0-9_]+/g, '_')
    .replace(/^_+|_+$/g, '');
  return s.length > 0 && s.length <= 64 ? s : undefined;
}

export function idString(v: unknown): string | undefined {
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  if (typeof v === 'string' && v.length > 0 && v.length <= 256) return v;
  return undefined;
}

export function isSelf(actor: string | null, selfActors: readonly string[] | undefined): boolean {
  return actor !== null && (selfActors?.includes(actor) ?? false);
}
