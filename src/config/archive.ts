/**
 * The lines of the event archive: the ingest's COMMIT appends a chunk's events to the archive
 * stream as one NDJSON field (`e`), one line an event; the archive drain (workers) and the tests
 * read them back here. A line has one of two forms:
 *
 * - `{"envelope":{…},"outcome":…,"rules":[…]}`: the envelope as matched, serialized.
 * - `{"in":<the event as received>,"tenant":…,"receivedAt":…,"outcome":…,"rules":[]}`: a generic
 *   event (POST /v1/events) that started no run, whose envelope is a function of what was sent,
 *   the API key's tenant and the time it arrived (genericEnvelope, matchedEnvelope). The ingest
 *   copies the event's JSON text as it came instead of serializing the envelope again:
 *   JSON.stringify of the envelope was 15% of the ingest's CPU on NDJSON batches. The text is
 *   one line of valid JSON (it parsed, and a line holds no newline), so it nests as it is.
 *
 * Both read back as the same OutboxEntry. A stream entry holds a chunk's lines in its `e` field, or,
 * for a large chunk, names the key that holds them (`k`) and, when some of the chunk's events did
 * not commit, which did (`c`, one character per line, `o` for committed): readArchive reads both.
 */
import type { Redis } from 'ioredis';
import { field, jsonLines } from './streams.js';

/** A generic event's envelope as the ingest makes it from what was sent (checkEnvelope's). */
export interface GenericEnvelope {
  readonly id: string;
  readonly tenant: string;
  readonly source: string;
  readonly type: string;
  readonly time: string;
  readonly data: Record<string, unknown>;
  readonly raw: unknown;
  readonly self: boolean;
  readonly previous: Record<string, unknown> | null;
}

/** What a checked generic event carries (engine's Envelope, loosely: tenant and time optional). */
export interface GenericItem {
  readonly id: string;
  readonly source: string;
  readonly type: string;
  readonly time?: string;
  readonly data: Record<string, unknown>;
  readonly raw?: unknown;
  readonly self?: unknown;
  readonly previous?: Record<string, unknown> | null;
}

/**
 * The envelope of a generic event: the API key's tenant (an event's own `tenant`, when it has one,
 * must be that one), the time it arrived when it says none, `raw` and `previous` null when absent.
 */
export function genericEnvelope(item: GenericItem, tenant: string, receivedAt: string): GenericEnvelope {
  return {
    id: item.id,
    tenant,
    source: item.source,
    type: item.type,
    time: item.time ?? receivedAt,
    data: item.data,
    raw: item.raw ?? null,
    self: item.self === true,
    previous: item.previous ?? null,
  };
}

/** The envelope an event is matched with, archived and given to its runs (handoff's plan). */
export interface MatchedEnvelope extends GenericEnvelope {
  readonly receivedAt: string;
}

/** What matchedEnvelope takes from an event's envelope besides its data and previous. */
type Head = Omit<GenericEnvelope, 'data' | 'previous'>;

/**
 * The matched envelope of an event, given its `data` and `previous` as merged. One object shape
 * for every event (a literal, not a spread: matching and JSON.stringify take their fast paths).
 */
export function matchedEnvelope(
  e: Head,
  data: Record<string, unknown>,
  previous: Record<string, unknown> | null,
  receivedAt: string,
): MatchedEnvelope {
  return {
    id: e.id,
    tenant: e.tenant,
    source: e.source,
    type: e.type,
    time: e.time,
    data,
    raw: e.raw,
    self: e.self,
    previous,
    receivedAt,
  };
}

/**
 * The matched envelope of an event with no entity snapshot (every generic event): `data` is what
 * it sent, over its own `previous` when it sent one.
 */
export function plainMatchedEnvelope(
  e: Head & { readonly data: Record<string, unknown>; readonly previous?: Record<string, unknown> | null },
  receivedAt: string,
): MatchedEnvelope {
  const previous = e.previous ?? null;
  return matchedEnvelope(e, previous ? { ...previous, ...e.data } : e.data, previous, receivedAt);
}

/** One event of the archive. */
export interface OutboxEntry {
  readonly envelope: MatchedEnvelope;
  readonly outcome: 'accepted' | 'stale';
  readonly rules: readonly string[];
}

/** How an archive line of an event kept as received starts; its JSON text follows, then its tail. */
export const RECEIVED_HEAD = '{"in":';

/** The last tail receivedTail made: a request's events share tenant and arrival. */
let lastTenant = '';
let lastAt = '';
let lastOutcome = '';
let lastTail = '';

/**
 * The end of an archive line of an event kept as received, after its JSON text. The same string
 * object while tenant, arrival and outcome stay the same (the ingest compares it by identity).
 */
export function receivedTail(tenant: string, receivedAt: string, outcome: string): string {
  if (tenant !== lastTenant || receivedAt !== lastAt || outcome !== lastOutcome) {
    lastTenant = tenant;
    lastAt = receivedAt;
    lastOutcome = outcome;
    lastTail = `,"tenant":${JSON.stringify(tenant)},"receivedAt":${JSON.stringify(receivedAt)},"outcome":${JSON.stringify(outcome)},"rules":[]}`;
  }
  return lastTail;
}

/** The archive line of an event kept as received: `text` is its JSON, one line. */
export function receivedLine(text: string, tenant: string, receivedAt: string, outcome: string): string {
  return `${RECEIVED_HEAD}${text}${receivedTail(tenant, receivedAt, outcome)}`;
}

type Line =
  | OutboxEntry
  | {
      readonly in: GenericItem;
      readonly tenant: string;
      readonly receivedAt: string;
      readonly outcome: OutboxEntry['outcome'];
      readonly rules: readonly string[];
    };

/**
 * The events of one archive stream entry, given its field/value list. A line that does not parse,
 * or is neither form, is skipped; the others still count.
 */
export function outboxEntries(fields: ReadonlyArray<Buffer | string> | null): OutboxEntry[] {
  const out: OutboxEntry[] = [];
  for (const l of jsonLines<Line>(fields, 'e')) {
    if (l === null || typeof l !== 'object') continue;
    if ('in' in l) {
      const item = l.in;
      if (item === null || typeof item !== 'object') continue;
      out.push({
        envelope: plainMatchedEnvelope(genericEnvelope(item, l.tenant, l.receivedAt), l.receivedAt),
        outcome: l.outcome,
        rules: l.rules,
      });
    } else if (l.envelope !== null && typeof l.envelope === 'object') out.push(l);
  }
  return out;
}

type Fields = ReadonlyArray<Buffer | string> | null;

/**
 * The events of archive stream entries (their field lists, as XRANGE or XREADGROUP give them), in
 * order, with the NDJSON of those that name a key read in one MGET; and those keys, for the
 * archive drain to delete once it has written the events. A key that is gone (deleted by a drain
 * that wrote its events and then failed to acknowledge the entry) gives no events.
 */
export async function readArchive(
  redis: Redis,
  entries: readonly Fields[],
): Promise<{ events: OutboxEntry[]; keys: string[] }> {
  // Per entry, the key that holds its NDJSON, when one does.
  const named = entries.map((f) => field(f, 'k')?.toString());
  const keys = named.filter((k): k is string => k !== undefined);
  const texts = keys.length > 0 ? await redis.mgetBuffer(...keys) : [];
  const events: OutboxEntry[] = [];
  let t = 0;
  for (let i = 0; i < entries.length; i++) {
    const f = entries[i]!;
    if (named[i] === undefined) {
      for (const e of outboxEntries(f)) events.push(e);
      continue;
    }
    const text = texts[t++]?.toString();
    if (text === undefined) continue;
    const committed = field(f, 'c')?.toString();
    const lines =
      committed === undefined
        ? text
        : text
            .split('\n')
            .filter((_, j) => committed[j] === 'o')
            .join('\n');
    for (const e of outboxEntries(['e', lines])) events.push(e);
  }
  return { events, keys };
}
