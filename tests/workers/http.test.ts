/** The workers' HTTP client against a local server: what it does with an answer that never ends. */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { send } from '../../src/workers/http.js';

let server: Server;
let url = '';
let closed = false;

beforeAll(async () => {
  server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    const more = () => {
      while (!res.destroyed && res.write(chunk)) {}
      if (!res.destroyed) res.once('drain', more);
    };
    res.on('close', () => (closed = true));
    more();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/endless`;
});

afterAll(() => new Promise<void>((r) => server.close(() => r())));

it('answers with the first MiB of a body that never ends, instead of timing out', async () => {
  const res = await send({ method: 'POST', url, body: '{}', allowPrivate: true, timeoutMs: 5_000 });
  expect(res.status).toBe(200);
  expect(res.body.length).toBe(1 << 20);
  expect(res.body.startsWith('aaaa')).toBe(true);
  for (let i = 0; i < 100 && !closed; i++) await new Promise((r) => setTimeout(r, 10));
  expect(closed).toBe(true);
});
