/**
 * The servers of the ingest load benchmark, one per child process (load.bench.ts drives them):
 *
 *   bare    a uWebSockets.js server that reads the body, parses the JSON and answers: the ceiling
 *   ingest  the real ingest (startIngest) on real Redis (database 2 of REDIS_URL, flushed first),
 *           its COMMIT enqueueing the runs, and RULES active rules
 *
 * Prints `port <n>` when listening.
 */

import uWS from 'uWebSockets.js';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { RUN_QUEUE } from '../../src/config/runs.js';
import { Engine, RuleCompiler } from '../../src/engine/index.js';
import { Handoff } from '../../src/ingest/handoff.js';
import { startIngest } from '../../src/ingest/server.js';

const mode = process.argv[2];
const rulesFile = process.argv[3];

if (mode === 'bare') {
  const app = uWS.App();
  app.post('/*', (res, req) => {
    // The same parsing work as the ingest: NDJSON line by line, else one JSON document.
    const ndjson = req.getHeader('content-type').startsWith('application/x-ndjson');
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    const parts: Buffer[] = [];
    res.onData((chunk, isLast) => {
      parts.push(Buffer.from(new Uint8Array(chunk)));
      if (!isLast) return;
      const text = Buffer.concat(parts).toString('utf8');
      const items = ndjson
        ? text
            .split('\n')
            .filter((l) => l.trim() !== '')
            .map((l) => JSON.parse(l))
        : [JSON.parse(text)];
      if (aborted) return;
      res.cork(() => {
        res
          .writeStatus('202')
          .writeHeader('content-type', 'application/json')
          .end(`{"accepted":${items.length}}`);
      });
    });
  });
  app.listen('127.0.0.1', 0, (t) => {
    if (!t) throw new Error('listen failed');
    console.log(`port ${uWS.us_socket_local_port(t)}`);
  });
} else if (mode === 'ingest') {
  const url = new URL(process.env.REDIS_URL ?? 'redis://127.0.0.1:6390');
  url.pathname = '/2';
  const redis = new Redis(url.toString(), { maxRetriesPerRequest: 1 });
  await redis.flushdb();
  const { readFileSync } = await import('node:fs');
  const docs = JSON.parse(readFileSync(rulesFile!, 'utf8')) as unknown[];
  const compiler = new RuleCompiler();
  const engine = new Engine(docs.map((d) => compiler.compile(d)));
  const handoff = new Handoff(redis, () => engine, { prefix: 'bench' });
  const queue = new Queue(RUN_QUEUE, { connection: redis.duplicate(), prefix: 'bench' });
  const server = await startIngest({
    connections: { get: () => undefined },
    apiKeys: { tenantOf: (k) => (k.startsWith('key-') ? k.slice(4) : undefined) },
    handoff,
    ready: async () => true,
    rate: { perSecond: 1e9, burst: 1e9 },
    maxBodyBytes: 4 * 1024 * 1024,
  });
  console.log(`port ${server.port}`);
  process.on('SIGTERM', async () => {
    server.close();
    const counts = await queue.getJobCounts('wait');
    console.log(`queued ${counts.wait} outbox ${await redis.xlen(handoff.outboxKey)}`);
    await redis.flushdb();
    process.exit(0);
  });
} else {
  throw new Error('usage: servers.ts bare|ingest [rules.json]');
}
