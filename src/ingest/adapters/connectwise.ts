/**
 * ConnectWise PSA callbacks (sources.md). Keys are matched case-insensitively; the record comes as
 * a JSON string in `Entity` (sometimes an object, null on delete). Verified with
 * `x-content-signature`: base64(HMAC-SHA256(key = SHA-256(signing key), raw body)), the key being
 * fixed on the connection or fetched from Metadata.key_url (allow-listed, cached).
 */
import { type AdaptedEvent, AdapterError, type Connection, type HookRequest } from '../connection.js';
import { KeyFetchError, type KeyFetcher } from '../keys.js';
import { connectwiseDigest, signatureMatches } from '../verify.js';
import { idString, isObject, isoTime, isSelf, parseJson, segment } from './common.js';

const ACTIONS: Record<string, string> = { added: 'created', updated: 'updated', deleted: 'deleted' };

/** The body's keys, lower-cased (ConnectWise's casing varies between versions). */
function lowerKeys(o: Record<string, unknown>): Map<string, unknown> {
  const m = new Map<string, unknown>();
  for (const [k, v] of Object.entries(o)) m.set(k.toLowerCase(), v);
  return m;
}

export async function connectwise(
  conn: Connection,
  req: HookRequest,
  keys: KeyFetcher,
): Promise<AdaptedEvent[]> {
  const body = parseJson(req);
  if (!isObject(body)) throw new AdapterError(400, 'a ConnectWise callback must be a JSON object');
  const b = lowerKeys(body);
  const signature = req.headers['x-content-signature'];
  if (!signature) throw new AdapterError(401, 'missing x-content-signature header');

  // Verify before anything of the body is used.
  const fixed = conn.connectwise?.signingKey;
  const metadata = b.get('metadata');
  const keyUrl = isObject(metadata) ? lowerKeys(metadata).get('key_url') : undefined;
  let ok = false;
  if (fixed !== undefined) {
    ok = signatureMatches(connectwiseDigest(fixed, req.body), signature);
  } else {
    if (typeof keyUrl !== 'string')
      throw new AdapterError(
        401,
        'no signing key: the connection has none and the callback names no Metadata.key_url',
      );
    try {
      ok = signatureMatches(
        connectwiseDigest(await keys.get(keyUrl, conn.connectwise?.keyOrigin), req.body),
        signature,
      );
      if (!ok) {
        // The key may have been rotated: fetch it once more before refusing.
        keys.forget(keyUrl);
        ok = signatureMatches(
          connectwiseDigest(await keys.get(keyUrl, conn.connectwise?.keyOrigin), req.body),
          signature,
        );
      }
    } catch (e) {
      if (e instanceof KeyFetchError) throw new AdapterError(401, e.message);
      throw e;
    }
  }
  if (!ok) throw new AdapterError(401, 'x-content-signature does not match the body');

  const action = ACTIONS[String(b.get('action') ?? '').toLowerCase()];
  const entity = segment(b.get('type'));
  const recordId = idString(b.get('id'));
  if (!action) throw new AdapterError(422, 'Action must be added, updated or deleted');
  if (!entity) throw new AdapterError(422, 'Type is missing');
  if (!recordId) throw new AdapterError(422, 'ID is missing');

  let record: unknown = b.get('entity');
  if (typeof record === 'string') {
    try {
      record = JSON.parse(record);
    } catch (e) {
      throw new AdapterError(422, `Entity is not valid JSON: ${(e as Error).message}`);
    }
  }
  const data = isObject(record) ? record : undefined;
  if (action !== 'deleted' && !data) throw new AdapterError(422, 'Entity is missing');
  const info = data && isObject(data._info) ? data._info : undefined;
  const lastUpdated = info?.lastUpdated;
  const messageId = idString(b.get('messageid'));
  const id = messageId
    ? `connectwise:${messageId}`
    : `connectwise:${entity}:${recordId}:${typeof lastUpdated === 'string' ? lastUpdated : ''}`;
  const actor = idString(b.get('memberid')) ?? null;
  return [
    {
      envelope: {
        id,
        tenant: conn.tenant,
        source: 'connectwise',
        type: `${entity}.${action}`,
        time: isoTime(lastUpdated) ?? new Date(req.receivedAt).toISOString(),
        data: data ?? { id: Number.isNaN(Number(recordId)) ? recordId : Number(recordId) },
        raw: body,
        self: isSelf(actor, conn.selfActors),
      },
      entity,
      entityId: recordId,
      merge: action === 'deleted' ? 'delete' : 'replace',
      actor,
    },
  ];
}
