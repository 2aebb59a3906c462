/**
 * Timing in the executor, on real Redis and Postgres: backoff delays read from BullMQ's delayed
 * set under a frozen clock (promoted by hand, never slept), Retry-After, debounce (re-armed,
 * cancelled, fired with the last event), throttle, the loop breaker, schedules, and email through
 * a real SMTP server (smtp-server).
 */
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunEvent, runJobId } from '../../src/config/runs.js';
import { Receiver } from './fakes/receiver.js';
import { event, eventually, type Harness, harness } from './harness.js';

let rx: Receiver;
beforeAll(async () => {
  rx = await new Receiver().start();
});
afterAll(async () => {
  await rx?.close();
});

async function delayedUntil(h: Harness, jobId: string): Promise<number> {
  const key = `${h.prefix}:signalbox-runs:delayed`;
  const score = await eventually(`job ${jobId} delayed`, async () => {
    const s = await h.redis.zscore(key, jobId);
    return s === null ? undefined : Number(s);
  });
  return Math.floor(score / 4096);
}

async function promote(h: Harness, jobId: string): Promise<void> {
  await (await h.queue.getJob(jobId))!.promote();
}

describe('backoff under a frozen clock', () => {
  let h: Harness;
  const T = Date.now() + 10 * 60_000;
  beforeAll(async () => {
    h = await harness('backoff');
    await h.start({ now: () => T, random: () => 0.5, retryBaseMs: 1000 });
  });
  afterAll(() => h?.close());

  it('retries after 1 s, 2 s, 4 s (jitter ±20%, here 0), then continues', async () => {
    rx.script.set('/b-down', [{ status: 503 }]);
    await h.rule({
      id: 'backoff',
      onError: 'retry',
      actions: [{ type: 'webhook', with: { url: `${rx.url}/b-down` } }],
    });
    const id = await h.enqueue('backoff', event('e-backoff'));
    const seen: number[] = [];
    for (let i = 0; i < 3; i++) {
      seen.push((await delayedUntil(h, id)) - T);
      await promote(h, id);
    }
    expect(seen).toEqual([1000, 2000, 4000]);
    const run = await h.waitRun(id);
    expect(run.status).toBe('completed');
    expect((await h.steps(id)).map((s) => [s.status, s.attempts])).toEqual([['failed', 4]]);
    expect(rx.on('/b-down')).toHaveLength(4);
  });

  it('honours Retry-After when it asks for longer than the backoff', async () => {
    rx.script.set('/b-429', [{ status: 429, headers: { 'retry-after': '7' } }, { status: 200 }]);
    await h.rule({
      id: 'ra',
      onError: 'retry',
      actions: [{ type: 'webhook', with: { url: `${rx.url}/b-429` } }],
    });
    const id = await h.enqueue('ra', event('e-ra'));
    expect((await delayedUntil(h, id)) - T).toBe(7000);
    await promote(h, id);
    expect((await h.waitRun(id)).status).toBe('completed');
  });
});

describe('rule-level timing', () => {
  let h: Harness;
  let smtp: SMTPServer;
  const mail: Array<{ to: string[]; data: string }> = [];
  beforeAll(async () => {
    smtp = new SMTPServer({
      authOptional: true,
      disabledCommands: ['STARTTLS', 'AUTH'],
      onRcptTo(address, _s, cb) {
        if (address.address.startsWith('full@'))
          return cb(Object.assign(new Error('mailbox full, try later'), { responseCode: 452 }));
        if (address.address.startsWith('nobody@'))
          return cb(Object.assign(new Error('no such user'), { responseCode: 550 }));
        cb();
      },
      onData(stream, session, cb) {
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => {
          mail.push({
            to: session.envelope.rcptTo.map((r) => r.address),
            data: Buffer.concat(chunks).toString('utf8'),
          });
          cb();
        });
      },
    });
    await new Promise<void>((r) => smtp.listen(0, '127.0.0.1', r));
    h = await harness('timing');
    await h.start({
      smtpUrl: `smtp://127.0.0.1:${(smtp.server.address() as AddressInfo).port}`,
      defaultFrom: 'alerts@msp.example',
    });
  });
  afterAll(async () => {
    await h?.close();
    await new Promise<void>((r) => smtp?.close(() => r()));
  });

  const dev = (id: string, device: string, status: string) => ({
    ...event(id, { id: device, name: `SRV-${device}`, status }, `device.${status}`),
  });

  it('debounce: re-armed by matches, fired once with the last matching event', async () => {
    await h.rule({
      id: 'offline',
      on: ['device.offline', 'device.online'],
      when: 'device.status == "offline"',
      debounce: { for: '1s', key: '{{ device.id }}' },
      actions: [{ type: 'webhook', with: { url: `${rx.url}/deb`, body: { event: '{{ event.id }}' } } }],
    });
    await h.enqueue('offline', dev('o1', 'd1', 'offline'));
    await new Promise((r) => setTimeout(r, 300));
    await h.enqueue('offline', dev('o2', 'd1', 'offline'));
    const run = await h.waitRun(runJobId('acme', 'o2', 'offline', 'debounced'));
    expect(run.status).toBe('completed');
    expect(rx.on('/deb').map((r) => JSON.parse(r.body))).toEqual([{ event: 'o2' }]);
    expect(await h.run(runJobId('acme', 'o1', 'offline', 'debounced'))).toBeUndefined();
  });

  /** Arms a timer with `arm`, cancels it with `cancel`, and shows that it never fires. */
  async function armThenCancel(arm: RunEvent, cancel: RunEvent): Promise<void> {
    await h.enqueue('offline', arm);
    await eventually('armed', async () => ((await h.worker!.timers.size()) > 0 ? true : undefined));
    await h.enqueue('offline', cancel, { kind: 'cancel' });
    await eventually('cancelled', async () => ((await h.worker!.timers.size()) === 0 ? true : undefined));
    // Cancelled, not fired: past the debounce, no run.
    await new Promise((r) => setTimeout(r, 1500));
    expect(await h.run(runJobId('acme', arm.id, 'offline', 'debounced'))).toBeUndefined();
    expect(rx.on('/deb').map((r) => JSON.parse(r.body))).toEqual([{ event: 'o2' }]);
  }

  it('debounce: a non-matching event of the key cancels the timer', async () => {
    await armThenCancel(dev('o3', 'd2', 'offline'), dev('o4', 'd2', 'online'));
  });

  it('debounce: an event dated far ahead of its arrival does not stop later real events from cancelling', async () => {
    // Armed by a record dated 2099 that arrived ten minutes ago (a PSA clock or data error).
    const bogus = {
      ...dev('o6', 'd3', 'offline'),
      time: '2099-01-01T00:00:00.000Z',
      receivedAt: new Date(Date.now() - 600_000).toISOString(),
    };
    // A real event of the device now: newer than the bogus one's arrival plus the 5 minutes allowed.
    await armThenCancel(bogus, dev('o7', 'd3', 'online'));
  });

  it('debounce: a timer that fires after its rule was paused starts no run', async () => {
    await h.enqueue('offline', dev('o5', 'd3', 'offline'));
    await eventually('armed', async () => ((await h.worker!.timers.size()) > 0 ? true : undefined));
    await h.rules.setStatus('acme', 'offline', 'paused', { actor: 'test' });
    await eventually(
      'pause seen',
      async () => (await h.worker!.rules.current('acme', 'offline')) === undefined,
    );
    const id = runJobId('acme', 'o5', 'offline', 'debounced');
    await eventually('fired', async () => (await (await h.queue.getJob(id))?.getState()) === 'completed');
    expect((await h.queue.getJob(id))!.returnvalue).toEqual({ status: 'not-run' });
    expect(await h.run(id)).toBeUndefined();
    expect(rx.on('/deb')).toHaveLength(1);
    await h.rules.setStatus('acme', 'offline', 'active', { actor: 'test' });
  });

  it('throttle: runs past the budget of a key are recorded as throttled', async () => {
    await h.rule({
      id: 'thr',
      throttle: { max: 1, per: '1h', key: '{{ ticket.id }}' },
      actions: [{ type: 'webhook', with: { url: `${rx.url}/thr` } }],
    });
    const a = await h.enqueue('thr', event('t1'));
    expect((await h.waitRun(a)).status).toBe('completed');
    const b = await h.enqueue('thr', event('t2'));
    const run = await h.waitRun(b);
    expect(run.status).toBe('throttled');
    expect(run.reason).toMatch(/at most 1 runs per 3600 s/);
    const c = await h.enqueue('thr', event('t3', { id: 43 }));
    expect((await h.waitRun(c)).status).toBe('completed');
    expect(rx.on('/thr')).toHaveLength(2);
  });

  it('loop breaker: more than max runs of a rule for one entity are skipped, with the reason', async () => {
    await h.rule({
      id: 'looper',
      loop: { max: 2, within: '10m' },
      actions: [{ type: 'log', with: { m: 'x' } }],
    });
    const statuses: string[] = [];
    for (const e of ['l1', 'l2', 'l3'])
      statuses.push((await h.waitRun(await h.enqueue('looper', event(e)))).status);
    expect(statuses).toEqual(['completed', 'completed', 'skipped']);
    const last = await h.run(runJobId('acme', 'l3', 'looper'));
    expect(last?.reason).toMatch(/loop breaker/);
    // A match the ingest already counted carries the verdict, and the worker goes by it: `over`
    // is skipped without running, `ok` runs although this worker's window is full.
    const over = await h.enqueue('looper', event('l4'), { loop: 'over' });
    expect(await h.waitRun(over)).toMatchObject({
      status: 'skipped',
      reason: expect.stringMatching(/loop breaker/),
    });
    const ok = await h.enqueue('looper', event('l5'), { loop: 'ok' });
    expect((await h.waitRun(ok)).status).toBe('completed');
    // Neither was counted again here: the window still holds l1 and l2 only.
    const windows = await h.redis.keys(`${h.prefix}:loop:*looper*`);
    expect(windows).toHaveLength(1);
    expect((await h.redis.zrange(windows[0]!, '0', '-1')).sort()).toEqual(
      [runJobId('acme', 'l1', 'looper'), runJobId('acme', 'l2', 'looper')].sort(),
    );
  });

  it('schedule: a scheduled rule runs with schedule.tick events, and stops when paused', async () => {
    await h.rule({
      id: 'ticker',
      schedule: { cron: '* * * * * *', tz: 'UTC' },
      actions: [{ type: 'webhook', with: { url: `${rx.url}/tick` } }],
    });
    const r = await eventually(
      'a tick',
      () => (rx.on('/tick').length > 0 ? rx.on('/tick') : undefined),
      15_000,
    );
    expect(JSON.parse(r[0]!.body)).toMatchObject({ type: 'schedule.tick', source: 'signalbox' });
    await h.rules.setStatus('acme', 'ticker', 'paused', { actor: 'test' });
    await eventually('scheduler removed', async () =>
      (await h.queue.getJobSchedulers()).length === 0 ? true : undefined,
    );
  });

  it('email: sent through SMTP with a Message-ID from the idempotency key; 5xx is permanent, 4xx retried', async () => {
    await h.rule({
      id: 'mailer',
      onError: 'retry',
      retries: 1,
      actions: [
        {
          type: 'email',
          with: {
            to: 'tech@msp.example',
            subject: 'P1: {{ ticket.summary }}',
            text: 'Ticket {{ ticket.id }}',
          },
        },
        { type: 'email', with: { to: 'nobody@msp.example', subject: 'x', text: 'x' } },
        { type: 'email', with: { to: 'full@msp.example', subject: 'x', text: 'x' } },
      ],
    });
    const id = await h.enqueue('mailer', event('m1'));
    const run = await h.waitRun(id);
    expect(run.status).toBe('completed');
    expect(mail).toHaveLength(1);
    expect(mail[0]!.to).toEqual(['tech@msp.example']);
    expect(mail[0]!.data).toMatch(/Subject: P1: Printer down/);
    expect(mail[0]!.data).toContain(`Message-ID: <${id}.0@signalbox>`);
    const steps = await h.steps(id);
    expect(steps.map((s) => [s.status, s.attempts, s.error?.code ?? null])).toEqual([
      ['completed', 1, null],
      ['failed', 1, 'SMTP_550'],
      ['failed', 2, 'SMTP_452'],
    ]);
  });

  it('email through a tenant SMTP connection: sent when the tenant allows private networks, refused (SB_SSRF) otherwise', async () => {
    const port = (smtp.server.address() as AddressInfo).port;
    for (const tenant of ['acme', 'strict']) {
      await h.connections.put(
        tenant,
        { id: 'smtp', kind: 'smtp', settings: { host: 'localhost', port } },
        'test',
      );
      await h.rule(
        {
          id: 'conn-mail',
          actions: [
            {
              type: 'email',
              connection: 'smtp',
              with: { to: `via-${tenant}@msp.example`, subject: 's', text: 't' },
            },
          ],
        },
        tenant,
      );
    }
    const ok = await h.enqueue('conn-mail', { ...event('cm1'), tenant: 'acme' });
    const refused = await h.enqueue('conn-mail', { ...event('cm2'), tenant: 'strict' });
    await h.waitRun(ok);
    await h.waitRun(refused);
    expect((await h.steps(ok)).map((s) => s.status)).toEqual(['completed']);
    expect((await h.steps(refused)).map((s) => [s.status, s.error?.code])).toEqual([['failed', 'SB_SSRF']]);
    expect(mail.flatMap((m) => m.to).filter((t) => t.startsWith('via-'))).toEqual(['via-acme@msp.example']);
  });
});
