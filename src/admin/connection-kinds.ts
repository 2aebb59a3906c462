/**
 * What each kind of connection holds (docs/admin.md, docs/actions.md): its settings with their
 * types, and the names of its secrets. PutConnection checks a connection against it, so a
 * misspelt setting (`apiURL`) or secret (`clientsecret`), which the workers and the ingest would
 * silently never read, is refused with its field instead of failing every run or webhook later.
 * `generic` connections hold anything.
 */
import type { FieldError } from './errors.js';

type Check = 'text' | 'url' | 'origin' | 'port' | 'boolean' | 'texts' | 'rateLimit';

interface Kind {
  readonly settings: Readonly<Record<string, Check>>;
  readonly secret: readonly string[];
}

/** Every PSA connection may list the identities Signalbox acts as, and override its API budget. */
const PSA = { selfActors: 'texts', rateLimit: 'rateLimit' } as const;

export const CONNECTION_KINDS: Readonly<Record<string, Kind | undefined>> = {
  connectwise: {
    settings: { apiUrl: 'url', companyId: 'text', clientId: 'text', keyOrigin: 'origin', ...PSA },
    secret: ['publicKey', 'privateKey', 'webhookSigningKey'],
  },
  autotask: {
    settings: { username: 'text', zoneLookupUrl: 'url', ...PSA },
    secret: ['secret', 'integrationCode', 'webhookSecret'],
  },
  halo: {
    settings: {
      apiUrl: 'url',
      authUrl: 'url',
      clientId: 'text',
      tenant: 'text',
      scope: 'text',
      webhookUsername: 'text',
      ...PSA,
    },
    secret: ['clientSecret', 'webhookPassword', 'webhookUrlSecret'],
  },
  smtp: {
    settings: { host: 'text', port: 'port', secure: 'boolean', from: 'text' },
    secret: ['user', 'pass'],
  },
  slack: { settings: {}, secret: ['url'] },
  teams: { settings: {}, secret: ['url'] },
  webhook: { settings: {}, secret: ['secret'] },
  generic: undefined,
};

const isHttpUrl = (v: unknown): boolean => {
  if (typeof v !== 'string' || !URL.canParse(v)) return false;
  const u = new URL(v);
  return (u.protocol === 'https:' || u.protocol === 'http:') && !u.username && !u.password;
};

/** An http(s) origin: scheme, host and port, nothing else (ConnectWise's `keyOrigin`). */
export const isOrigin = (v: unknown): boolean =>
  isHttpUrl(v) && new URL(v as string).origin === (v as string).replace(/\/$/, '');
export const ORIGIN_REASON = 'must be an origin (scheme, host and port only), like https://cw.example.com';

const WANTS: Record<Check, [(v: unknown) => boolean, string]> = {
  text: [(v) => typeof v === 'string' && v !== '', 'must be a non-empty string'],
  url: [isHttpUrl, 'must be an http(s) URL without credentials'],
  origin: [isOrigin, ORIGIN_REASON],
  port: [
    (v) => Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 65_535,
    'must be a port number',
  ],
  boolean: [(v) => typeof v === 'boolean', 'must be true or false'],
  texts: [
    (v) => Array.isArray(v) && v.every((x) => typeof x === 'string' && x !== ''),
    'must be a list of non-empty strings',
  ],
  rateLimit: [
    (v) => {
      if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
      const { max, windowMs, ...rest } = v as Record<string, unknown>;
      const whole = (n: unknown) => Number.isInteger(n) && (n as number) >= 1;
      return whole(max) && whole(windowMs) && Object.keys(rest).length === 0;
    },
    'must be {"max": requests, "windowMs": milliseconds}, both whole numbers of at least 1',
  ],
};

/** Problems with a connection's settings and secret names for its kind; empty when it is fine. */
export function connectionProblems(
  kind: string,
  settings: Record<string, unknown> | undefined,
  secret: Record<string, string> | undefined,
): FieldError[] {
  const k = CONNECTION_KINDS[kind];
  if (!k) return [];
  const out: FieldError[] = [];
  const known = Object.keys(k.settings);
  for (const [name, value] of Object.entries(settings ?? {})) {
    const check = k.settings[name];
    if (!check) {
      out.push({
        field: `settings.${name}`,
        reason: `not a setting of a ${kind} connection (${known.length > 0 ? `its settings: ${known.join(', ')}` : 'it has none'})`,
      });
      continue;
    }
    const [ok, want] = WANTS[check];
    if (!ok(value)) out.push({ field: `settings.${name}`, reason: want });
  }
  for (const name of Object.keys(secret ?? {})) {
    if (!k.secret.includes(name))
      out.push({
        field: `secret.${name}`,
        reason: `not a secret of a ${kind} connection (its secrets: ${k.secret.join(', ')})`,
      });
  }
  return out;
}
