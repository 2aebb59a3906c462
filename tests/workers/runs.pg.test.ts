/**
 * The run executor against real Redis and Postgres, with a local HTTP receiver standing in for
 * webhooks and chat: steps, templates, outputs, the three error strategies, retries, delays that
 * survive a restart, guards, SSRF refusal, and history in Postgres.
 */
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signature } from '../../src/workers/actions.js';
import { Receiver } from './fakes/receiver.js';
import { event, eventually, type Harness, harness, REDIS_URL } from './harness.js';

let h: Harness;
let rx: Receiver;

beforeAll(async () => {
  rx = await new Receiver().start();
  h = await harness('runs');
  await h.start();
});
afterAll(async () => {
  await h?.close();
  await rx?.close();
});

describe('steps', () => {
  it('runs steps in order with templates, outputs, custom, signatures and idempotency keys', async () => {
    rx.script.set('/create', [{ status: 201, body: JSON.stringify({ id: 'T-77' }) }]);
    await h.rule({
      id: 'chain',
      actions: [
        { type: 'set', with: { owner: 'kim', prio: '{{ ticket.priority }}' } },
        {
          id: 'made',
          type: 'webhook',
          with: {
            url: `${rx.url}/create`,
            body: { summary: '{{ ticket.summary }}', prio: '{{ custom.prio }}' },
            secret: rx.secret,
          },
        },
        {
          type: 'slack',
          with: {
            url: `${rx.url}/slack`,
            text: 'Opened {{ steps.made.output.body.id }} for {{ custom.owner }} (run {{ meta.run.id }})',
          },
        },
        { type: 'log', with: { note: 'done {{ steps.made.output.status }}' } },
      ],
    });
    const id = await h.enqueue('chain', event('e-chain', { priority: 2 }));
    const run = await h.waitRun(id);
    expect(run.status).toBe('completed');
    expect(run.rule_version).toBe(1);
    const created = rx.on('/create');
    expect(created).toHaveLength(1);
    expect(JSON.parse(created[0]!.body)).toEqual({ summary: 'Printer down', prio: 2 });
    expect(created[0]!.signatureOk).toBe(true);
    expect(created[0]!.headers['idempotency-key']).toBe(`${id}:1`);
    const slack = rx.on('/slack');
    expect(JSON.parse(slack[0]!.body)).toEqual({ text: `Opened T-77 for kim (run ${id})` });
    expect(slack[0]!.headers['idempotency-key']).toBe(`${id}:2`);
    const steps = await h.steps(id);
    expect(steps.map((s) => [s.type, s.status, s.attempts])).toEqual([
      ['set', 'completed', 1],
      ['webhook', 'completed', 1],
      ['slack', 'completed', 1],
      ['log', 'completed', 1],
    ]);
    expect(steps[1]!.output).toEqual({ status: 201, body: { id: 'T-77' } });
    const audit = await h.db.query<{ details: { record: unknown } }>(
      "select details from audit_log where action = 'run.log' and entity_id = $1",
      [id],
    );
    expect(audit.rows.map((r) => r.details.record)).toEqual([{ note: 'done 201' }]);
    const rule = await eventually('run count', async () => {
      const r = await h.rules.get('acme', 'chain');
      return r && r.runCount === 1 ? r : undefined;
    });
    expect(rule.lastRunAt).not.toBeNull();
  });

  it('a bad signature secret is detectable by the receiver', () => {
    const body = '{"a":1}';
    expect(signature('s1', body, 1700000000)).not.toBe(signature('s2', body, 1700000000));
    expect(signature('s1', body, 1700000000)).toMatch(/^t=1700000000,v1=[0-9a-f]{64}$/);
  });
});

describe('error strategies', () => {
  it('continue: the failure is recorded and the run goes on', async () => {
    rx.script.set('/c-bad', [{ status: 400 }]);
    await h.rule({
      id: 'cont',
      actions: [
        { type: 'webhook', with: { url: `${rx.url}/c-bad` } },
        { type: 'webhook', with: { url: `${rx.url}/c-next` } },
      ],
    });
    const id = await h.enqueue('cont', event('e-cont'));
    const run = await h.waitRun(id);
    expect(run.status).toBe('completed');
    expect(run.reason).toMatch(/1 step\(s\) failed/);
    const steps = await h.steps(id);
    expect(steps.map((s) => s.status)).toEqual(['failed', 'completed']);
    expect(steps[0]!.error?.code).toBe('HTTP_400');
    expect(rx.on('/c-next')).toHaveLength(1);
  });

  it('an answer nested too deeply to write is noted as the output, and the run goes on', async () => {
    const deep = `${'{"a":'.repeat(20_000)}1${'}'.repeat(20_000)}`;
    rx.script.set('/deep', [{ status: 200, body: deep }]);
    await h.rule({
      id: 'deep-answer',
      actions: [
        { type: 'webhook', with: { url: `${rx.url}/deep` } },
        { type: 'webhook', with: { url: `${rx.url}/deep-next` } },
      ],
    });
    const id = await h.enqueue('deep-answer', event('e-deep'));
    const run = await h.waitRun(id);
    expect(run.status).toBe('completed');
    const steps = await h.steps(id);
    expect(steps.map((s) => s.status)).toEqual(['completed', 'completed']);
    expect(steps[0]!.output).toMatchObject({
      truncated: true,
      unwritable: 'nested deeper than 64 levels',
    });
    expect(rx.on('/deep')).toHaveLength(1);
    expect(rx.on('/deep-next')).toHaveLength(1);
  });

  it('stop: the run ends as failed and later steps never run', async () => {
    rx.script.set('/s-bad', [{ status: 422 }]);
    await h.rule({
      id: 'stopper',
      onError: 'stop',
      actions: [
        { type: 'webhook', with: { url: `${rx.url}/s-bad` } },
        { type: 'webhook', with: { url: `${rx.url}/s-next` } },
      ],
    });
    const id = await h.enqueue('stopper', event('e-stop'));
    const run = await h.waitRun(id);
    expect(run.status).toBe('failed');
    expect(run.reason).toMatch(/step 0 \(webhook\) failed/);
    expect(rx.on('/s-next')).toHaveLength(0);
  });

  it('retry: retries the failed step only, with the same idempotency key, then succeeds', async () => {
    rx.script.set('/r-flaky', [{ status: 503 }, { status: 500 }, { status: 200 }]);
    await h.rule({
      id: 'retrier',
      onError: 'retry',
      actions: [
        { type: 'webhook', with: { url: `${rx.url}/r-first` } },
        { type: 'webhook', with: { url: `${rx.url}/r-flaky` } },
      ],
    });
    const id = await h.enqueue('retrier', event('e-retry'));
    const run = await h.waitRun(id);
    expect(run.status).toBe('completed');
    expect(rx.on('/r-first')).toHaveLength(1);
    expect(rx.on('/r-flaky')).toHaveLength(3);
    expect([...rx.keys('/r-flaky')]).toEqual([[`${id}:1`, 3]]);
    expect((await h.steps(id)).map((s) => s.attempts)).toEqual([1, 3]);
  });

  it('retry: a permanent error (404) is not retried; spent retries continue the run', async () => {
    rx.script.set('/p-gone', [{ status: 404 }]);
    rx.script.set('/p-down', [{ status: 503 }]);
    await h.rule({
      id: 'perm',
      onError: 'retry',
      retries: 2,
      actions: [
        { type: 'webhook', with: { url: `${rx.url}/p-gone` } },
        { type: 'webhook', with: { url: `${rx.url}/p-down` } },
        { type: 'webhook', with: { url: `${rx.url}/p-after` } },
      ],
    });
    const id = await h.enqueue('perm', event('e-perm'));
    const run = await h.waitRun(id);
    expect(run.status).toBe('completed');
    expect(rx.on('/p-gone')).toHaveLength(1);
    expect(rx.on('/p-down')).toHaveLength(3);
    expect(rx.on('/p-after')).toHaveLength(1);
    expect((await h.steps(id)).map((s) => [s.status, s.attempts])).toEqual([
      ['failed', 1],
      ['failed', 3],
      ['completed', 1],
    ]);
  });
});

describe('Teams', () => {
  it('a 200 whose body says Teams did not deliver fails the step as that status: 429 retried, 400 not', async () => {
    const failed = (code: number) => ({
      status: 200,
      headers: { 'content-type': 'text/plain; charset=utf-8' },
      body: `Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error ${code} with ContextId tcid=0,server=msgapi-production-weu-azsc2-4-178,cv=AbC.0..`,
    });
    // as a connector answers a post it delivered
    const delivered = { status: 200, headers: { 'content-type': 'text/plain; charset=utf-8' }, body: '1' };
    rx.script.set('/teams-busy', [failed(429), delivered]);
    rx.script.set('/teams-bad', [failed(400)]);
    await h.rule({
      id: 'teams200',
      onError: 'retry',
      actions: [
        { type: 'teams', with: { url: `${rx.url}/teams-busy`, text: 'P1 escalated' } },
        { type: 'teams', with: { url: `${rx.url}/teams-bad`, text: 'P1 escalated' } },
      ],
    });
    const id = await h.enqueue('teams200', event('e-teams'));
    expect((await h.waitRun(id)).status).toBe('completed');
    expect(rx.on('/teams-busy')).toHaveLength(2);
    expect(rx.on('/teams-bad')).toHaveLength(1);
    const steps = await h.steps(id);
    expect(steps.map((s) => [s.status, s.attempts])).toEqual([
      ['completed', 2],
      ['failed', 1],
    ]);
    expect(steps[1]!.error?.message).toMatch(
      /^Teams answered 200 but did not deliver: Webhook message delivery failed/,
    );
  });
});

describe('delay, guard, versions', () => {
  it('a delay survives a worker restart', async () => {
    await h.rule({
      id: 'waiter',
      actions: [
        { type: 'webhook', with: { url: `${rx.url}/d-before` } },
        { type: 'delay', with: { for: '1500ms' } },
        { type: 'webhook', with: { url: `${rx.url}/d-after` } },
      ],
    });
    const id = await h.enqueue('waiter', event('e-delay'));
    await h.waitRun(id, ['delayed']);
    expect(rx.on('/d-before')).toHaveLength(1);
    await h.worker!.close();
    expect(await (await h.queue.getJob(id))?.getState()).toBe('delayed');
    await h.start();
    const run = await h.waitRun(id);
    expect(run.status).toBe('completed');
    expect(rx.on('/d-before')).toHaveLength(1);
    expect(rx.on('/d-after')).toHaveLength(1);
    expect((await h.steps(id)).map((s) => s.status)).toEqual(['completed', 'completed', 'completed']);
  });

  it('a run keeps the rule version it started with', async () => {
    await h.rule({
      id: 'pinned',
      actions: [
        { type: 'delay', with: { for: '1s' } },
        { type: 'webhook', with: { url: `${rx.url}/v1` } },
      ],
    });
    const id = await h.enqueue('pinned', event('e-pin'));
    await h.waitRun(id, ['delayed']);
    await h.rule({ id: 'pinned', actions: [{ type: 'webhook', with: { url: `${rx.url}/v2` } }] });
    const run = await h.waitRun(id);
    expect([run.status, run.rule_version]).toEqual(['completed', 1]);
    expect(rx.on('/v1')).toHaveLength(1);
    expect(rx.on('/v2')).toHaveLength(0);
  });

  it('a guard reads the latest snapshot; false ends the run as skipped', async () => {
    await h.rule({
      id: 'guarded',
      actions: [
        { type: 'guard', with: { when: 'ticket.status == "Open"' } },
        { type: 'webhook', with: { url: `${rx.url}/g-after` } },
      ],
    });
    const snap = `${h.prefix}:s:acme:halo:ticket:42`;
    await h.redis.hset(snap, 'k:status', '"Closed"', '#v', '3');
    const id = await h.enqueue('guarded', event('e-guard', { status: 'Open' }), { snapshot: snap });
    const run = await h.waitRun(id);
    expect(run.status).toBe('skipped');
    expect((await h.steps(id)).map((s) => s.status)).toEqual(['completed', 'skipped']);
    await h.redis.hset(snap, 'k:status', '"Open"');
    const id2 = await h.enqueue('guarded', event('e-guard2', { status: 'Open' }), { snapshot: snap });
    expect((await h.waitRun(id2)).status).toBe('completed');
    expect(rx.on('/g-after')).toHaveLength(1);
  });

  it('a rule paused before its run starts makes no run', async () => {
    await h.rule({ id: 'paused', actions: [{ type: 'webhook', with: { url: `${rx.url}/paused` } }] });
    await h.rules.setStatus('acme', 'paused', 'paused', { actor: 'test' });
    // Workers learn of rule changes by notification; the run below is taken after this one arrived.
    await eventually(
      'pause seen',
      async () => (await h.worker!.rules.current('acme', 'paused')) === undefined,
    );
    const id = await h.enqueue('paused', event('e-paused'));
    await eventually('job done', async () => (await (await h.queue.getJob(id))?.getState()) === 'completed');
    expect(rx.on('/paused')).toHaveLength(0);
  });
});

describe('bad parameters at run time', () => {
  it('a missing URL, a non-http URL and a missing connection fail the step at once, with the reason', async () => {
    await h.rule({
      id: 'badparams',
      onError: 'retry',
      actions: [
        { type: 'webhook', with: { url: '{{ ticket.nothing }}' } },
        // written as they are, these are refused when the rule is saved: here they come from templates
        { type: 'webhook', with: { url: '{{ "ftp://files.example.com/x" }}' } },
        { type: 'webhook', with: { url: '{{ "not a url" }}' } },
        { type: 'psa.ticket.create', connection: 'nope', with: { summary: 'x' } },
        { type: 'slack', with: { text: 'no url anywhere' } },
      ],
    });
    const id = await h.enqueue('badparams', event('e-bad'));
    expect((await h.waitRun(id)).status).toBe('completed');
    const steps = await h.steps(id);
    expect(steps.map((s) => [s.status, s.attempts])).toEqual(Array(5).fill(['failed', 1]));
    expect(steps.map((s) => s.error?.message)).toEqual([
      expect.stringMatching(/url must be a non-empty string \(after templates\), got null/),
      expect.stringMatching(/only http and https URLs are allowed, not ftp:/),
      expect.stringMatching(/not a URL: "not a url"/),
      expect.stringMatching(/no connection "nope"/),
      expect.stringMatching(/needs "url", or a "connection" whose secret holds the url/),
    ]);
  });
});

describe('rules that no longer compile', () => {
  it('a run of a stored rule version that does not compile is recorded as failed, with why, and not retried', async () => {
    // Saved straight to the store, as a rule saved before a check of the language was added.
    await h.rule({ id: 'stale', actions: [{ type: 'webhook', with: { url: 'ftp://files.example.com/x' } }] });
    const id = await h.enqueue('stale', event('e-stale'));
    const run = await h.waitRun(id);
    expect(run).toMatchObject({
      status: 'failed',
      rule_version: 1,
      reason: 'rule version 1 does not compile: actions[0].with.url: must be an http or https URL, not ftp',
    });
    expect(run.error).toMatchObject({ code: 'SB_RULE_BROKEN' });
    // the job ended (its run is the record), rather than being retried and failing in BullMQ
    const job = await h.queue.getJob(id);
    expect([await job?.getState(), job?.attemptsMade]).toEqual(['completed', 1]);
  });
});

describe('outbound safety', () => {
  it('refuses loopback, private and metadata addresses unless the tenant allows them', async () => {
    await h.rule(
      {
        id: 'ssrf',
        actions: [
          { type: 'webhook', with: { url: `${rx.url}/ssrf` } },
          { type: 'webhook', with: { url: 'http://169.254.169.254/latest/meta-data/' } },
          { type: 'webhook', with: { url: 'http://10.1.2.3/' } },
          { type: 'webhook', with: { url: 'http://localhost:1/' } },
        ],
      },
      'strict',
    );
    const id = await h.enqueue('ssrf', { ...event('e-ssrf'), tenant: 'strict' });
    const run = await h.waitRun(id);
    expect(run.status).toBe('completed');
    const steps = await h.steps(id);
    expect(steps.map((s) => [s.status, s.error?.code])).toEqual([
      ['failed', 'SB_SSRF'],
      ['failed', 'SB_SSRF'],
      ['failed', 'SB_SSRF'],
      ['failed', 'SB_SSRF'],
    ]);
    expect(rx.on('/ssrf')).toHaveLength(0);
  });
});

describe('admin operations on live runs', () => {
  it('RetryRun resumes a failed run at its failed step: the completed step is not sent again', async () => {
    const { AdminService } = await import('../../src/admin/service.js');
    const { ApiKeys } = await import('../../src/admin/keys.js');
    const admin = new AdminService({
      db: h.db,
      rules: h.rules,
      connections: h.connections,
      keys: new ApiKeys(h.db),
      queue: h.queue,
    });
    const caller = { tenant: 'acme', keyId: 'k-test', role: 'editor' as const };
    rx.script.set('/retry-2', [{ status: 400 }, { status: 200 }]);
    await h.rule({
      id: 'retry-me',
      onError: 'stop',
      actions: [
        { id: 'first', type: 'webhook', with: { url: `${rx.url}/retry-1` } },
        { type: 'set', with: { marker: 'kept' } },
        {
          type: 'webhook',
          with: {
            url: `${rx.url}/retry-2`,
            body: { first: '{{ steps.first.output.status }}', marker: '{{ custom.marker }}' },
          },
        },
      ],
    });
    const id = await h.enqueue('retry-me', event('e-retry'));
    const failed = await h.waitRun(id);
    expect(failed.status).toBe('failed');
    const out = await admin.retryRun(caller, { id });
    expect(out).toMatchObject({ runId: id, fromStep: 2 });
    const done = await h.waitRun(id, ['completed']);
    expect(done.status).toBe('completed');
    expect(rx.on('/retry-1')).toHaveLength(1);
    expect(rx.on('/retry-2')).toHaveLength(2);
    // The resumed step still sees the outputs and custom values of the steps before it.
    expect(JSON.parse(rx.on('/retry-2')[1]!.body)).toEqual({ first: 200, marker: 'kept' });
    expect((await h.steps(id)).map((s) => s.status)).toEqual(['completed', 'completed', 'completed']);
  });
});

describe('history ordering', () => {
  it("sends a run's history record on the connection its job completes on, before the completion", async () => {
    // The worker does not wait for Redis's answer to the record (history.ts: ordered): that is
    // sound only while BullMQ completes the job on the same connection, after it. Watched here
    // with MONITOR, which names each command's connection.
    await h.rule({ id: 'ordered', actions: [{ type: 'log', with: { m: 'x' } }] });
    const seen: Array<{ source: string; args: string[] }> = [];
    // A plain socket, not ioredis's monitor(): its command queue can take a MONITOR line for a
    // reply (ioredis "Command queue state error", seen in CI).
    const monitor = await watchRedis(REDIS_URL, (source, args) => {
      if (args.some((a) => a.startsWith(h.prefix))) seen.push({ source, args });
    });
    try {
      const id = await h.enqueue('ordered', event('e-ordered'));
      expect((await h.waitRun(id)).status).toBe('completed');
      await new Promise((r) => setTimeout(r, 100));
      const record = seen.findIndex(
        (c) =>
          c.args[0]?.toLowerCase() === 'xadd' &&
          c.args[1] === `${h.prefix}:history` &&
          c.args.join(' ').includes(id),
      );
      // The job's completion, as BullMQ's script records it (MONITOR shows a script's own
      // commands with the source "lua").
      const completed = seen.findIndex(
        (c) => c.source === 'lua' && c.args.includes('completed') && c.args.includes(id),
      );
      // The script that completed it: MONITOR lists a script call, then the commands it ran.
      let finished = completed - 1;
      while (finished >= 0 && seen[finished]!.source === 'lua') finished--;
      expect(record).toBeGreaterThanOrEqual(0);
      expect(completed).toBeGreaterThan(record);
      expect(finished).toBeGreaterThan(record);
      expect(seen[finished]!.args[0]?.toLowerCase()).toMatch(/^eval(sha)?$/);
      expect(seen[finished]!.args).toContain(`${h.prefix}:signalbox-runs:completed`);
      expect(seen[finished]!.source).toBe(seen[record]!.source);
    } finally {
      monitor.destroy();
    }
  });
});

/**
 * MONITOR on a plain socket: calls `on` with each command's source ("ip:port", or "lua" for a
 * script's own commands) and arguments. Resolves once Redis has said OK.
 */
async function watchRedis(url: string, on: (source: string, args: string[]) => void): Promise<Socket> {
  const u = new URL(url);
  const socket = connect(Number(u.port || 6379), u.hostname);
  let buffered = '';
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.on('data', (d: Buffer) => {
      buffered += d.toString('utf8');
      let nl = buffered.indexOf('\r\n');
      while (nl >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 2);
        nl = buffered.indexOf('\r\n');
        if (line === '+OK') resolve();
        // +1795350948.278953 [0 127.0.0.1:52116] "evalsha" "b685…" "3" …
        const m = /^\+\d+\.\d+ \[\d+ ([^\]]+)\] (.*)$/.exec(line);
        if (!m) continue;
        const args = [...m[2]!.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((x) => x[1]!);
        on(m[1]!, args);
      }
    });
    socket.write('MONITOR\r\n');
  });
  return socket;
}
