/**
 * The action library (workflows.md, docs/actions.md): what each step type does. The executor
 * handles `delay` and `guard` itself; everything here receives the step's rendered parameters and
 * the run's context, and either returns the step's output or throws an ActionError (retryable or
 * not) or a WaitError (a budget is spent: wait, do not fail).
 */
import { createHmac } from 'node:crypto';
import nodemailer from 'nodemailer';
import type { ActionContext, Connections } from './context.js';
import { ActionError } from './errors.js';
import { allowedAddress, checkStatus, type HttpResponse, send } from './http.js';
import type { PsaClients } from './psa.js';

export type { ActionContext, Connections } from './context.js';

export interface ActionDeps {
  readonly connections: Connections;
  readonly psa: PsaClients;
  /** SMTP server for `email` steps without a connection: smtp://user:pass@host:port. */
  readonly smtpUrl?: string | undefined;
  readonly defaultFrom?: string | undefined;
  readonly timeoutMs?: number;
}

export type Action = (params: Record<string, unknown>, ctx: ActionContext) => Promise<unknown>;

function str(v: unknown, what: string, required = true): string {
  if (typeof v === 'string' && v.length > 0) return v;
  if (!required && (v === undefined || v === null || v === '')) return '';
  throw new ActionError(`${what} must be a non-empty string (after templates), got ${JSON.stringify(v)}`, {
    retryable: false,
    code: 'SB_PARAMS',
  });
}

/** `t=<unix>,v1=<hex HMAC-SHA256(secret, t + "." + body)>` (workflows.md). */
export function signature(secret: string, body: string, unixSeconds: number): string {
  const mac = createHmac('sha256', secret).update(`${unixSeconds}.${body}`).digest('hex');
  return `t=${unixSeconds},v1=${mac}`;
}

/** The answer as a step output: JSON when it is JSON, else bounded text. */
function output(res: HttpResponse): { status: number; body: unknown } {
  let body: unknown = res.body.length > 4096 ? `${res.body.slice(0, 4096)}…` : res.body;
  if ((res.headers['content-type'] ?? '').includes('json')) {
    try {
      body = JSON.parse(res.body);
    } catch {
      // keep the text
    }
  }
  return { status: res.status, body };
}

/**
 * Teams' Office 365 connector webhooks answer 200 to every post they take and deliver it after:
 * when delivery fails the body says so, `Webhook message delivery failed with error: Microsoft
 * Teams endpoint returned HTTP error 429 with ContextId …` (or `… Error contacting Microsoft Teams
 * endpoint`), and the status stays 200 (MicrosoftDocs/msteams-docs issues 400, 1810, 7425: by
 * design, so that connectors are not removed for a failure). Such an answer fails the step as
 * that status would: 429, 408 and 5xx are retried (Teams gives no Retry-After: the step's
 * backoff), others are permanent (400 a card Teams refuses, 413 over its 28 KB, 403, 404).
 * Teams workflows' webhooks answer 202 and report nothing; their answers pass as they are.
 */
function teamsFailure(out: { status: number; body: unknown }): void {
  if (typeof out.body !== 'string' || !out.body.startsWith('Webhook message delivery failed')) return;
  const status = Number(/returned HTTP error (\d{3})\b/.exec(out.body)?.[1] ?? 0);
  const retryable = status === 0 || status === 408 || status === 429 || status >= 500;
  throw new ActionError(`Teams answered ${out.status} but did not deliver: ${out.body.slice(0, 300)}`, {
    retryable,
    ...(status !== 0 ? { status } : {}),
  });
}

function headersOf(v: unknown): Record<string, string> {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v))
    throw new ActionError('headers must be an object of strings', { retryable: false, code: 'SB_PARAMS' });
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(v)) {
    if (/[^\t\x20-\x7e]/.test(String(x)) || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(k))
      throw new ActionError(`invalid header ${JSON.stringify(k)}`, { retryable: false, code: 'SB_PARAMS' });
    out[k.toLowerCase()] = String(x);
  }
  return out;
}

export function actionLibrary(deps: ActionDeps): Record<string, Action> {
  const timeoutMs = deps.timeoutMs ?? 10_000;

  /** A URL given directly, or the `url` secret of the step's connection (chat webhooks). */
  async function urlOf(p: Record<string, unknown>, ctx: ActionContext): Promise<string> {
    if (p.url !== undefined) return str(p.url, 'url');
    if (ctx.connection) {
      const s = await deps.connections.secret(ctx.tenant, ctx.connection);
      if (s.url) return s.url;
    }
    throw new ActionError('needs "url", or a "connection" whose secret holds the url', {
      retryable: false,
      code: 'SB_PARAMS',
    });
  }

  async function post(url: string, body: unknown, ctx: ActionContext, what: string) {
    const res = await send({
      method: 'POST',
      url,
      headers: { 'content-type': 'application/json', 'idempotency-key': ctx.idempotencyKey },
      body: JSON.stringify(body),
      timeoutMs,
      allowPrivate: ctx.allowPrivate,
    });
    checkStatus(res, what);
    return output(res);
  }

  const webhook: Action = async (p, ctx) => {
    const url = str(p.url, 'url');
    const method = p.method === undefined ? 'POST' : str(p.method, 'method').toUpperCase();
    if (!/^(GET|POST|PUT|PATCH|DELETE)$/.test(method))
      throw new ActionError(`method must be GET, POST, PUT, PATCH or DELETE, not ${method}`, {
        retryable: false,
      });
    const body =
      method === 'GET' || method === 'DELETE'
        ? undefined
        : typeof p.body === 'string'
          ? p.body
          : JSON.stringify(p.body === undefined ? ctx.event : p.body);
    const headers: Record<string, string> = {
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...headersOf(p.headers),
      'idempotency-key': ctx.idempotencyKey,
    };
    let secret = typeof p.secret === 'string' && p.secret !== '' ? p.secret : undefined;
    if (secret === undefined && ctx.connection)
      secret = (await deps.connections.secret(ctx.tenant, ctx.connection)).secret;
    if (secret !== undefined)
      headers['x-signalbox-signature'] = signature(secret, body ?? '', Math.floor(ctx.now() / 1000));
    const res = await send({
      method,
      url,
      headers,
      ...(body !== undefined ? { body } : {}),
      timeoutMs,
      allowPrivate: ctx.allowPrivate,
    });
    checkStatus(res, `webhook ${new URL(url).origin}`);
    return output(res);
  };

  const slack: Action = async (p, ctx) => {
    const url = await urlOf(p, ctx);
    const body: Record<string, unknown> = { text: str(p.text, 'text') };
    if (p.blocks !== undefined) body.blocks = p.blocks;
    return post(url, body, ctx, 'Slack');
  };

  const teams: Action = async (p, ctx) => {
    const url = await urlOf(p, ctx);
    const text = str(p.text, 'text');
    const title = str(p.title, 'title', false);
    // An Adaptive Card, which Teams workflows ("Post to a channel when a webhook request is
    // received") and the older connectors both accept.
    const card = {
      type: 'message',
      attachments: [
        {
          contentType: 'application/vnd.microsoft.card.adaptive',
          content: {
            $schema: 'http://adaptivecards.io/schemas/adaptive-card.json',
            type: 'AdaptiveCard',
            version: '1.4',
            body: [
              ...(title
                ? [{ type: 'TextBlock', text: title, weight: 'Bolder', size: 'Medium', wrap: true }]
                : []),
              { type: 'TextBlock', text, wrap: true },
            ],
          },
        },
      ],
    };
    const out = await post(url, card, ctx, 'Teams');
    teamsFailure(out);
    return out;
  };

  const email: Action = async (p, ctx) => {
    let transport: string | Record<string, unknown> | undefined = deps.smtpUrl;
    let from = typeof p.from === 'string' && p.from ? p.from : deps.defaultFrom;
    if (ctx.connection) {
      const info = await deps.connections.info(ctx.tenant, ctx.connection);
      if (info?.kind !== 'smtp')
        throw new ActionError(`connection "${ctx.connection}" is not an SMTP connection`, {
          retryable: false,
        });
      const secret = await deps.connections.secret(ctx.tenant, ctx.connection);
      const s = info.settings;
      if (typeof s.host !== 'string' || s.host === '')
        throw new ActionError(`connection "${ctx.connection}" has no "host" setting`, {
          retryable: false,
          code: 'SB_CONFIG',
        });
      // A tenant's SMTP host is checked like any outbound address (the operator's
      // SIGNALBOX_SMTP_URL is trusted); TLS still verifies the certificate against the name.
      const host = ctx.allowPrivate ? s.host : await allowedAddress(s.host);
      transport = {
        host,
        port: s.port ?? 587,
        secure: s.secure === true,
        tls: { servername: s.host },
        ...(secret.user ? { auth: { user: secret.user, pass: secret.pass } } : {}),
      };
      from ??= typeof s.from === 'string' ? s.from : undefined;
    }
    if (!transport)
      throw new ActionError('no SMTP server: set SIGNALBOX_SMTP_URL or give the step an smtp connection', {
        retryable: false,
        code: 'SB_CONFIG',
      });
    const to = Array.isArray(p.to) ? p.to.map((x) => str(x, 'to')) : str(p.to, 'to');
    const t = nodemailer.createTransport(transport as string, {
      connectionTimeout: timeoutMs,
      greetingTimeout: timeoutMs,
      socketTimeout: timeoutMs,
    });
    try {
      // The Message-ID comes from the idempotency key, so a repeated attempt is recognisable.
      const info = await t.sendMail({
        from: from ?? 'signalbox@localhost',
        to,
        ...(p.cc !== undefined ? { cc: p.cc as string } : {}),
        subject: str(p.subject, 'subject'),
        text: typeof p.text === 'string' ? p.text : '',
        ...(typeof p.html === 'string' ? { html: p.html } : {}),
        messageId: `<${ctx.idempotencyKey.replace(/[^A-Za-z0-9.-]/g, '.')}@signalbox>`,
        headers: { 'X-Signalbox-Idempotency-Key': ctx.idempotencyKey },
      });
      return { messageId: info.messageId, accepted: info.accepted, rejected: info.rejected };
    } catch (e) {
      const err = e as Error & { responseCode?: number; code?: string };
      // SMTP 4xx is transient, 5xx permanent; connection problems are worth retrying.
      const retryable = err.responseCode === undefined ? err.code !== 'EENVELOPE' : err.responseCode < 500;
      throw new ActionError(`SMTP: ${err.message}`, {
        retryable,
        code: err.responseCode ? `SMTP_${err.responseCode}` : 'SB_SMTP',
      });
    } finally {
      t.close();
    }
  };

  const psa =
    (op: 'ticket.create' | 'ticket.update' | 'note.add' | 'request'): Action =>
    (p, ctx) =>
      deps.psa.call(ctx.tenant, ctx.connection!, op, p, ctx);

  return {
    webhook,
    slack,
    teams,
    email,
    'psa.ticket.create': psa('ticket.create'),
    'psa.ticket.update': psa('ticket.update'),
    'psa.note.add': psa('note.add'),
    'psa.request': psa('request'),
    set: async (p) => p,
    log: async (p) => p,
  };
}
