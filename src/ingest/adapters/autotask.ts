/**
 * Autotask webhooks (sources.md). Verified with `X-Hook-Signature: sha1=<base64 HMAC-SHA1>` over
 * the bytes as received (they may carry .NET-style escapes such as \u0026). `Fields` holds only
 * the changed and "display always" fields: the ingest merges them over the last snapshot.
 */
import { type AdaptedEvent, AdapterError, type Connection, type HookRequest } from '../connection.js';
import { autotaskDigest, signatureMatches } from '../verify.js';
import { idString, isObject, isoTime, isSelf, parseJson, segment } from './common.js';

const ENTITIES: Record<string, string> = {
  ticket: 'ticket',
  ticketnote: 'ticket_note',
  company: 'company',
  account: 'company',
  contact: 'contact',
  configurationitem: 'configuration_item',
  installedproduct: 'configuration_item',
};

const ACTIONS: Record<string, AdaptedEvent['merge'] | 'deactivated'> = {
  create: 'replace',
  update: 'patch',
  delete: 'delete',
  deactivated: 'deactivated',
};

/** REST API casing: first letter lower-cased (TicketNumber → ticketNumber, CompanyID → companyID). */
export function camel(key: string): string {
  return key.length === 0 ? key : key[0]!.toLowerCase() + key.slice(1);
}

export function autotask(conn: Connection, req: HookRequest): AdaptedEvent[] {
  const secret = conn.autotask?.secret;
  if (secret === undefined) throw new AdapterError(401, 'the connection has no Autotask secret key');
  const header = req.headers['x-hook-signature'];
  if (!header?.startsWith('sha1='))
    throw new AdapterError(401, 'missing or malformed X-Hook-Signature header');
  if (!signatureMatches(autotaskDigest(secret, req.body), header.slice(5))) {
    throw new AdapterError(401, 'X-Hook-Signature does not match the body');
  }
  const body = parseJson(req);
  if (!isObject(body)) throw new AdapterError(400, 'an Autotask webhook must be a JSON object');
  const action = ACTIONS[String(body.Action ?? '').toLowerCase()];
  if (!action) throw new AdapterError(422, 'Action must be Create, Update, Delete or Deactivated');
  const guid = idString(body.Guid);
  const seq = idString(body.SequenceNumber);
  if (!guid || seq === undefined) throw new AdapterError(422, 'Guid and SequenceNumber are required');
  const rawType = String(body.EntityType ?? '');
  const entity = ENTITIES[rawType.toLowerCase()] ?? segment(rawType);
  const recordId = idString(body.Id);
  const actor = idString(body.PersonID ?? body.PersonId) ?? null;
  const time = isoTime(body.EventTime) ?? new Date(req.receivedAt).toISOString();
  if (action === 'deactivated') {
    // Honoured only because the signature was valid (checked above).
    return [
      {
        envelope: {
          id: `autotask:${guid}:${seq}`,
          tenant: conn.tenant,
          source: 'autotask',
          type: 'webhook.deactivated',
          time,
          data: { guid, entityType: rawType },
          raw: body,
          self: false,
        },
        entity: 'webhook',
        entityId: guid,
        merge: 'none',
        actor,
      },
    ];
  }
  if (!entity) throw new AdapterError(422, 'EntityType is missing');
  if (!recordId) throw new AdapterError(422, 'Id is missing');
  const data: Record<string, unknown> = {};
  if (isObject(body.Fields)) for (const [k, v] of Object.entries(body.Fields)) data[camel(k)] = v;
  data.id = Number.isNaN(Number(recordId)) ? recordId : Number(recordId);
  const verb = action === 'replace' ? 'created' : action === 'patch' ? 'updated' : 'deleted';
  return [
    {
      envelope: {
        id: `autotask:${guid}:${seq}`,
        tenant: conn.tenant,
        source: 'autotask',
        type: `${entity}.${verb}`,
        time,
        data,
        raw: body,
        self: isSelf(actor, conn.selfActors),
      },
      entity,
      entityId: recordId,
      merge: action,
      actor,
    },
  ];
}
