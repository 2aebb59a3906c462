/**
 * Backtest over the event archive (issue 5's target: ≥ 500,000 archived events/s), beside a
 * baseline measured in the same run: a linear scan that reads every archived event of the window
 * and matches it with the same compiled rule.
 *
 * The archive holds SB_BENCH_EVENTS events (default 500,000) of one tenant over ~6 days, in day
 * partitions, across 20 event types; the backtested rule admits one of them (5%).
 *
 *   npm run bench:admin      (needs deploy/local's Postgres: npm run services:up)
 *
 * Writes bench/results/admin.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { AdminService, ApiKeys } from '../../src/admin/index.js';
import { compileRule, Engine, type Envelope } from '../../src/engine/index.js';
import { ConnectionStore, migrate, openPostgres, RuleStore, SecretBox } from '../../src/store/index.js';
import { runInfo } from '../env.js';

const PG_URL = process.env.DATABASE_URL ?? 'postgres://signalbox:signalbox@127.0.0.1:5433/signalbox';
const EVENTS = Number(process.env.SB_BENCH_EVENTS ?? 500_000);
const schema = `sb_bench_bt_${process.pid}`;
const db = await openPostgres({ url: PG_URL, schema });
await migrate(db);

const TYPES = Array.from({ length: 20 }, (_, i) =>
  i === 0
    ? 'ticket.updated'
    : ['ticket.created', 'device.offline', 'alert.created', 'backup.failed'][i % 4] + (i > 4 ? `_${i}` : ''),
);
const start = Date.parse('2026-11-01T00:00:00Z');
const days = Math.ceil(EVENTS / 86_400) + 1;
for (let d = 0; d < days; d++)
  await db.query('select sb_ensure_event_partition($1::date)', [
    new Date(start + d * 86_400_000).toISOString().slice(0, 10),
  ]);
console.log(`seeding ${EVENTS.toLocaleString()} events over ${days} days…`);
const t0 = Date.now();
for (let off = 0; off < EVENTS; off += 100_000) {
  await db.query(
    `insert into events (tenant_id, id, received_on, received_at, source, type, time, envelope)
     select 'bench', 'e' || g, (ts at time zone 'UTC')::date, ts, src, typ, ts,
       jsonb_build_object('id', 'e' || g, 'tenant', 'bench', 'source', src, 'type', typ, 'time', ts,
         'data', jsonb_build_object('id', g % 5000, 'priority', g % 4 + 1,
            'status', case when g % 3 = 0 then 'Escalated' else 'New' end, 'summary', 'Printer offline floor ' || (g % 9)),
         'previous', jsonb_build_object('id', g % 5000, 'priority', g % 4 + 1, 'status', 'New'))
     from (select g, $1::timestamptz + g * interval '1 second' as ts,
                  ($2::text[])[g % 20 + 1] as typ,
                  case when g % 20 = 0 then 'halo' else (array['connectwise', 'autotask', 'rmm'])[g % 3 + 1] end as src
           from generate_series($3::int, $4::int) as g) x`,
    [new Date(start).toISOString(), TYPES, off, Math.min(EVENTS, off + 100_000) - 1],
  );
}
await db.exec('analyze events');
console.log(`seeded in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

const document = {
  source: 'halo',
  on: 'ticket.updated',
  when: 'ticket.priority == 1 and changed(ticket.status) and ticket.status == "Escalated"',
};
const caller = { tenant: 'bench', keyId: 'bench', role: 'viewer' as const };
const service = new AdminService({
  db,
  rules: new RuleStore(db),
  connections: new ConnectionStore(db, new SecretBox(Buffer.alloc(32))),
  keys: new ApiKeys(db),
});
const from = new Date(start).toISOString();
const to = new Date(start + days * 86_400_000).toISOString();

async function backtest() {
  const r = await service.backtest(caller, { document, from, to, samples: 20 });
  return {
    ms: r.elapsedMs as number,
    events: r.events as number,
    considered: r.considered as number,
    matched: r.matched as number,
  };
}

/** The baseline: every archived event of the window read (keyset pages of 5,000) and matched. */
async function linear() {
  const engine = new Engine([compileRule({ id: 'bt', tenant: 'bench', ...document })]);
  const t = performance.now();
  let n = 0;
  let matched = 0;
  let after: [string, string] | undefined;
  for (;;) {
    const r = await db.query<{ received_at: Date; id: string; envelope: Envelope }>(
      `select received_at, id, envelope from events where tenant_id = 'bench' and received_at >= $1 and received_at < $2
       ${after ? 'and (received_at, id) > ($3::timestamptz, $4)' : ''} order by received_at, id limit 5000`,
      after ? [from, to, ...after] : [from, to],
    );
    for (const row of r.rows) {
      n++;
      if (engine.match(row.envelope).length > 0) matched++;
    }
    if (r.rows.length < 5000) break;
    const last = r.rows[r.rows.length - 1]!;
    after = [new Date(last.received_at).toISOString(), last.id];
  }
  return { ms: performance.now() - t, events: n, matched };
}

// One warm-up of each, then the median of three.
await backtest();
await linear();
const bt = [await backtest(), await backtest(), await backtest()].sort((a, b) => a.ms - b.ms)[1]!;
const lin = [await linear(), await linear(), await linear()].sort((a, b) => a.ms - b.ms)[1]!;
if (bt.matched !== lin.matched)
  throw new Error(`backtest found ${bt.matched} matches, the linear scan ${lin.matched}`);
const result = {
  run: runInfo(),
  setup: { events: EVENTS, days, types: TYPES.length, admittedShare: 1 / 20, rule: document },
  results: {
    backtest: { ...bt, eventsPerSec: Math.round((bt.events / bt.ms) * 1000) },
    linearScan: { ...lin, eventsPerSec: Math.round((lin.events / lin.ms) * 1000) },
    speedupOverLinear: Math.round((lin.ms / bt.ms) * 10) / 10,
  },
  target: { eventsPerSec: 500_000 },
};
console.log(JSON.stringify(result.results, null, 2));
mkdirSync('bench/results', { recursive: true });
writeFileSync('bench/results/admin.json', `${JSON.stringify(result, null, 2)}\n`);
await db.exec(`drop schema ${schema} cascade`);
await db.close();
