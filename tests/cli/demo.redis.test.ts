/**
 * `signalbox demo` (the README's first command) end to end: rules as code, then a tour through the
 * admin API: connections, templates, a test, six PSA webhooks, the runs, an explanation, stats.
 */
import { execFile } from 'node:child_process';
import pg from 'pg';
import { afterAll, expect, it } from 'vitest';

const BIN = new URL('../../bin/signalbox.js', import.meta.url).pathname;
const ROOT = new URL('../..', import.meta.url).pathname;
const url = process.env.DATABASE_URL ?? 'postgres://signalbox:signalbox@127.0.0.1:5433/signalbox';
const schema = `sb_demo_${process.pid}_${Date.now().toString(36)}`;

afterAll(async () => {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  await c.query(`drop schema if exists ${schema} cascade`);
  await c.end();
});

it('brings up the service and tours it through the admin API', { timeout: 60_000 }, async () => {
  const r = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(
      process.execPath,
      [BIN, 'demo'],
      { cwd: ROOT, env: { ...process.env, DATABASE_URL: url, SIGNALBOX_DB_SCHEMA: schema } },
      (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  expect(r.stdout).toContain('5 rules: 5 changed');
  expect(r.stdout.match(/→ 202 1 accepted/g)).toHaveLength(6);
  expect(r.stdout).toContain('matched: cw-waiting-customer, printer-tickets');
  expect(r.stdout).toContain('matched: at-ticket-complete, printer-tickets');
  expect(r.stdout).toContain('matched: halo-ticket-closed, printer-tickets');
  expect(r.stdout.match(/hasSecret: true/g)).toHaveLength(3);
  expect(r.stdout).toContain('13 installed as drafts');
  expect(r.stdout).toContain('ticket-acknowledge on a raw Halo body → matched: true');
  // The workers ran every match, with templates rendered from each PSA's event; read back by the API.
  expect(r.stdout).toContain('· GET /v1/runs: the workers ran 12 runs');
  expect(r.stdout).toMatch(/^ {2}matched {2}halo-ticket-closed +changed\(ticket.status_id\)/m);
  expect(r.stdout).toMatch(/^ {2}no match new-ticket-ack +on: event type "ticket.updated"/m);
  expect(r.stdout).toContain('· GET /v1/stats: 12 runs');
  expect(r.stdout.match(/^ {2}completed /gm)).toHaveLength(12);
  expect(r.stdout).toContain('send the satisfaction survey: https://survey.example.com/?ticket=351181');
  expect(r.stdout).toContain('"acknowledgement":"We have your ticket #4242: Printer offline - 2nd floor"');
});
