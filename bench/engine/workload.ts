/**
 * A PSA-like workload for the engine benchmarks: rules of the kinds MSPs write (status changes,
 * P1 escalation, VIP companies, boards and priorities, device offline, summaries that contain a
 * word, custom fields, nested not/or), over several tenants and sources, and events shaped like
 * what the adapters produce. Deterministic (seeded), so runs are comparable.
 */

export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const STATUSES = [
  'New',
  'In Progress',
  'Waiting Customer',
  'Escalated',
  'Scheduled',
  'Resolved',
  'Closed',
  'On Hold',
  'Assigned',
  'Reopened',
];
const BOARDS = ['Help Desk', 'Projects', 'NOC', 'Security', 'Onboarding', 'Field', 'Billing', 'Alerts'];
const WORDS = [
  'backup',
  'offline',
  'disk',
  'password',
  'printer',
  'vpn',
  'outlook',
  'firewall',
  'license',
  'phish',
];
const PSA = ['connectwise', 'autotask', 'halo'];
const PSA_TYPES = [
  'ticket.created',
  'ticket.updated',
  'ticket.updated',
  'ticket.updated',
  'ticket.sla.breached',
];
const RMM_TYPES = ['device.offline', 'device.online', 'alert.triggered'];

export interface Workload {
  readonly rules: Record<string, unknown>[];
  readonly events: Record<string, unknown>[];
}

/**
 * `scaled`: every tenant (MSP) has a rulebook of RULES_PER_TENANT rules, and more rules means more
 * tenants, as on a platform that hosts many MSPs; matches per event stay about the same at every
 * size. `dense`: 20 tenants whatever the size, so each tenant's rulebook grows with the rule count
 * (5,000 rules per MSP at 100k), a stress case where matches per event grow too.
 */
export type Shape = 'scaled' | 'dense';
export const RULES_PER_TENANT = 500;

export function makeWorkload(
  ruleCount: number,
  eventCount: number,
  seed = 42,
  shape: Shape = 'scaled',
): Workload {
  const r = rng(seed);
  const pick = <T>(a: readonly T[]): T => a[Math.floor(r() * a.length)]!;
  const int = (n: number) => Math.floor(r() * n);
  const tenantCount = shape === 'dense' ? 20 : Math.max(2, Math.round(ruleCount / RULES_PER_TENANT));
  const tenants = Array.from({ length: tenantCount }, (_, i) => `msp-${i}`);
  // A bigger rulebook belongs to an MSP with more clients and sites.
  const perTenant = ruleCount / tenantCount;
  const companies = Math.max(25, Math.round(perTenant / 10));
  const sites = Math.max(10, Math.round(perTenant / 25));

  const rules: Record<string, unknown>[] = [];
  for (let i = 0; i < ruleCount; i++) {
    const kind = int(100);
    const tenant = pick(tenants);
    const id = `rule-${i}`;
    const psa = pick(PSA);
    const company = `C${int(companies)}`;
    let doc: Record<string, unknown>;
    if (kind < 12) {
      doc = {
        source: psa,
        on: 'ticket.updated',
        when: `ticket.status == "${pick(STATUSES)}" and ticket.priority <= ${1 + int(4)}`,
      };
    } else if (kind < 30) {
      doc = {
        source: psa,
        on: 'ticket.updated',
        when: `ticket.company.identifier == "${company}" and changed(ticket.status)`,
      };
    } else if (kind < 40) {
      doc = {
        source: psa,
        on: ['ticket.created', 'ticket.updated'],
        when: `ticket.board.name in ["${pick(BOARDS)}", "${pick(BOARDS)}"] and ticket.company.identifier == "${company}" and not (ticket.summary contains "test")`,
      };
    } else if (kind < 45) {
      doc = {
        source: '*',
        on: 'ticket.updated',
        when: `changed(ticket.status) and ticket.status == "Escalated" and ticket.priority <= 1 and ticket.company.identifier == "${company}"`,
      };
    } else if (kind < 60) {
      doc = {
        source: 'rmm',
        on: 'device.*',
        when: {
          all: [
            { field: 'device.status', op: 'eq', value: 'offline' },
            { field: 'device.site', op: 'eq', value: `Site${int(sites)}` },
          ],
        },
      };
    } else if (kind < 68) {
      doc = {
        source: psa,
        on: 'ticket.created',
        when: `ticket.summary contains "${pick(WORDS)}" and (ticket.company.id == ${int(companies)} or ticket.company.id == ${int(companies)})`,
      };
    } else if (kind < 78) {
      doc = {
        source: psa,
        on: 'ticket.*',
        when: `ticket.severity >= ${int(3)} and ticket.impact < ${1 + int(3)} and ticket.company.id == ${int(companies)}`,
      };
    } else if (kind < 86) {
      doc = {
        source: psa,
        on: 'ticket.updated',
        when: `(ticket.status == "New" or ticket.status == "Reopened") and not (ticket.owner == null) and ticket.company.identifier == "${company}"`,
      };
    } else if (kind < 93) {
      doc = {
        source: psa,
        on: 'ticket.created',
        when: `any(ticket.customfields, it.name == "VIP" and it.value == true) and ticket.company.identifier == "${company}"`,
      };
    } else if (kind < 98) {
      doc = {
        source: 'rmm',
        on: 'alert.triggered',
        when: `alert.severity in ["critical", "high"] and lower(alert.message) contains "${pick(WORDS)}" and alert.site == "Site${int(sites)}"`,
      };
    } else {
      // A few rules have no equality test at all: they are evaluated for every event of their type.
      doc = {
        source: psa,
        on: 'ticket.sla.breached',
        when: `ticket.summary matches /^(P1|URGENT)/i or ticket.priority == 1`,
      };
    }
    rules.push({ id, tenant, name: `benchmark rule ${i}`, status: 'active', actions: [], ...doc });
  }

  const events: Record<string, unknown>[] = [];
  for (let i = 0; i < eventCount; i++) {
    const tenant = pick(tenants);
    const rmm = r() < 0.25;
    const source = rmm ? 'rmm' : pick(PSA);
    const type = rmm ? pick(RMM_TYPES) : pick(PSA_TYPES);
    const cid = int(companies);
    let data: Record<string, unknown>;
    let previous: Record<string, unknown> | null = null;
    if (rmm) {
      data = {
        id: `dev-${int(100_000)}`,
        status: type === 'device.offline' ? 'offline' : 'online',
        site: `Site${int(sites)}`,
        severity: pick(['critical', 'high', 'low']),
        message: `${pick(WORDS).toUpperCase()} threshold exceeded on host ${int(1000)}`,
      };
    } else {
      const status = pick(STATUSES);
      data = {
        id: 10_000 + i,
        summary: `${r() < 0.1 ? 'URGENT ' : ''}${pick(WORDS)} issue for user ${int(500)}`,
        status,
        priority: 1 + int(4),
        severity: int(3),
        impact: int(3),
        board: { id: int(8), name: pick(BOARDS) },
        company: { id: cid, identifier: `C${cid}`, name: `Company ${cid}` },
        owner: r() < 0.7 ? { id: int(40), identifier: `tech${int(40)}` } : null,
        customfields: [
          { id: 1, name: 'VIP', value: r() < 0.2 },
          { id: 2, name: 'Contract', value: pick(['Gold', 'Silver', 'Bronze']) },
        ],
        _info: { lastUpdated: '2026-11-20T10:00:00Z', updatedBy: 'api' },
      };
      if (type !== 'ticket.created') previous = { ...data, status: r() < 0.5 ? status : pick(STATUSES) };
    }
    events.push({
      id: `${source}:${i}`,
      tenant,
      source,
      type,
      time: '2026-11-20T10:00:00.000Z',
      data,
      previous,
    });
  }
  return { rules, events };
}
