/**
 * HaloPSA webhooks (sources.md). Halo does not sign: the connection sets Basic auth (checked in
 * constant time) and/or an unguessable secret in the hook URL (a path segment after the
 * connection id, or `?secret=`). A body is one payload or, with batching on, an array of them.
 */
import { type AdaptedEvent, AdapterError, type Connection, type HookRequest } from '../connection.js';
import { safeEqual } from '../verify.js';
import { idString, isObject, isoTime, isSelf, parseJson, segment } from './common.js';

/** Keys of the payload itself; any other key holding an object is the entity. */
const ENVELOPE_KEYS = new Set([
  'id',
  'webhook_id',
  'notification_id',
  'escmsg_id',
  'event',
  'message',
  'object_id',
  'agent_id',
  'timestamp',
]);

export function verifyHalo(conn: Connection, req: HookRequest): void {
  const h = conn.halo;
  if (!h || (h.username === undefined && h.urlSecret === undefined)) {
    throw new AdapterError(401, 'the connection has neither Basic credentials nor a URL secret');
  }
  if (h.username !== undefined) {
    const auth = req.headers.authorization ?? '';
    const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(auth);
    if (!m) throw new AdapterError(401, 'missing Basic authorization');
    const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    const user = colon < 0 ? decoded : decoded.slice(0, colon);
    const pass = colon < 0 ? '' : decoded.slice(colon + 1);
    // Both compared, always, so the time does not tell which one was wrong.
    const okUser = safeEqual(user, h.username);
    const okPass = safeEqual(pass, h.password ?? '');
    if (!(okUser && okPass)) throw new AdapterError(401, 'wrong Basic credentials');
  }
  if (h.urlSecret !== undefined) {
    const fromPath = req.rest.split('/').filter(Boolean)[0] ?? '';
    const fromQuery = new URLSearchParams(req.query).get('secret') ?? '';
    if (!(safeEqual(fromPath, h.urlSecret) || safeEqual(fromQuery, h.urlSecret)))
      throw new AdapterError(401, 'wrong or missing URL secret');
  }
}

/** Halo objects whose name can appear in an event name ("ticket status changed", "new client"). */
const NAMED_ENTITIES = [
  'ticket',
  'client',
  'site',
  'user',
  'asset',
  'contract',
  'invoice',
  'supplier',
  'opportunity',
  'project',
  'quote',
  'appointment',
];

/** An "event information only" payload names no object key: the entity comes from the event name. */
const NAMED = NAMED_ENTITIES.map((e) => [e, new RegExp(`\\b${e}s?\\b`)] as const);

function entityOfEvent(event: string): string | undefined {
  return NAMED.find(([, re]) => re.test(event))?.[0];
}

function verbOf(event: string): string {
  if (/\b(new|logged|created)\b/.test(event)) return 'created';
  if (/\bdeleted?\b/.test(event)) return 'deleted';
  return 'updated';
}

function one(conn: Connection, p: Record<string, unknown>, receivedAt: number): AdaptedEvent {
  const delivery = idString(p.id);
  if (!delivery) throw new AdapterError(422, 'a Halo payload needs its delivery id');
  const event = typeof p.event === 'string' ? p.event.toLowerCase() : '';
  let entity = 'object';
  let record: Record<string, unknown> | undefined;
  for (const [k, v] of Object.entries(p)) {
    if (!ENVELOPE_KEYS.has(k) && isObject(v)) {
      entity = segment(k) ?? 'object';
      record = v;
      break;
    }
  }
  if (!record) entity = entityOfEvent(event) ?? entity;
  const objectId = idString(p.object_id) ?? idString(record?.id);
  const verb = verbOf(event);
  const actor = idString(p.agent_id) ?? null;
  const data = record ?? {
    id: typeof p.object_id === 'number' || typeof p.object_id === 'string' ? p.object_id : null,
  };
  return {
    envelope: {
      id: `halo:${delivery}`,
      tenant: conn.tenant,
      source: 'halo',
      type: `${entity}.${verb}`,
      time: isoTime(p.timestamp) ?? new Date(receivedAt).toISOString(),
      data,
      raw: p,
      self: isSelf(actor, conn.selfActors),
    },
    entity,
    entityId: objectId ?? delivery,
    // An "event information only" payload carries no record: nothing to merge (the ingest may
    // fetch it from the Halo API when the connection has credentials).
    merge: verb === 'deleted' ? 'delete' : record ? 'replace' : 'none',
    actor,
  };
}

/** Returns one adapted event per payload; a malformed payload in a batch is reported by index. */
export function halo(
  conn: Connection,
  req: HookRequest,
): { events: AdaptedEvent[]; errors: Array<{ index: number; error: string }> } {
  verifyHalo(conn, req);
  const body = parseJson(req);
  const list = Array.isArray(body) ? body : [body];
  const events: AdaptedEvent[] = [];
  const errors: Array<{ index: number; error: string }> = [];
  list.forEach((p, index) => {
    try {
      if (!isObject(p)) throw new AdapterError(422, 'a Halo payload must be a JSON object');
      events.push(one(conn, p, req.receivedAt));
    } catch (e) {
      if (!(e instanceof AdapterError)) throw e;
      errors.push({ index, error: e.message });
    }
  });
  return { events, errors };
}
