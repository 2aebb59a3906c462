/**
 * A stand-in for the outside world's HTTP endpoints (webhook receivers, Slack and Teams incoming
 * webhooks): checks `X-Signalbox-Signature` as workflows.md defines it, counts requests per
 * `Idempotency-Key`, and answers from a script (status, Retry-After) per path.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Received {
  readonly path: string;
  readonly method: string;
  readonly headers: IncomingMessage['headers'];
  readonly body: string;
  readonly at: number;
  /** true/false when a signature was sent and checked, undefined when none was sent. */
  readonly signatureOk: boolean | undefined;
}

export interface Answer {
  readonly status: number;
  readonly headers?: Record<string, string>;
  readonly body?: string;
}

export class Receiver {
  readonly requests: Received[] = [];
  private server: Server | undefined;
  /** Answers per path, used in order; the last one repeats. Default: 200 {"ok":true}. */
  readonly script = new Map<string, Answer[]>();
  secret = 'whsec-test';
  /** How long each answer takes (a slow receiver keeps steps in flight). */
  delayMs = 0;
  url = '';

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        const path = (req.url ?? '/').split('?')[0]!;
        this.requests.push({
          path,
          method: req.method ?? '',
          headers: req.headers,
          body,
          at: Date.now(),
          signatureOk: this.check(req.headers['x-signalbox-signature'] as string | undefined, body),
        });
        if (this.delayMs > 0) {
          setTimeout(() => this.answer(path, res), this.delayMs);
          return;
        }
        this.answer(path, res);
      });
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  private answer(path: string, res: import('node:http').ServerResponse): void {
    const list = this.script.get(path);
    const a: Answer =
      list && list.length > 0 ? (list.length > 1 ? list.shift()! : list[0]!) : { status: 200 };
    res.writeHead(a.status, { 'content-type': 'application/json', ...a.headers });
    res.end(a.body ?? JSON.stringify({ ok: a.status < 300, path }));
  }

  private check(header: string | undefined, body: string): boolean | undefined {
    if (header === undefined) return undefined;
    const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header);
    if (!m) return false;
    const want = createHmac('sha256', this.secret).update(`${m[1]}.${body}`).digest();
    return timingSafeEqual(want, Buffer.from(m[2]!, 'hex'));
  }

  on(path: string): Received[] {
    return this.requests.filter((r) => r.path === path);
  }

  /** How many requests each idempotency key was seen on. */
  keys(path?: string): Map<string, number> {
    const m = new Map<string, number>();
    for (const r of path ? this.on(path) : this.requests) {
      const k = String(r.headers['idempotency-key']);
      m.set(k, (m.get(k) ?? 0) + 1);
    }
    return m;
  }

  async close(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise((r) => this.server?.close(r));
  }
}
