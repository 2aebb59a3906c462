/** Prometheus text metrics for the ingest: counters by labels and one latency histogram. */

type Labels = Readonly<Record<string, string>>;

/** Rendered label sets by their raw values: inc runs several times per request. */
const keys = new Map<string, string>();

function key(labels: Labels): string {
  let raw = '';
  for (const k in labels) raw += `${k}\u0000${labels[k]}\u0001`;
  let v = keys.get(raw);
  if (v === undefined) {
    v = render(labels);
    if (keys.size < 10_000) keys.set(raw, v);
  }
  return v;
}

function render(labels: Labels): string {
  return Object.entries(labels)
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([k, v]) => `${k}="${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`)
    .join(',');
}

class Counter {
  readonly values = new Map<string, number>();
  constructor(
    readonly name: string,
    readonly help: string,
  ) {}
  inc(labels: Labels = {}, by = 1): void {
    const k = key(labels);
    this.values.set(k, (this.values.get(k) ?? 0) + by);
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    for (const [k, v] of this.values) lines.push(`${this.name}${k ? `{${k}}` : ''} ${v}`);
    return lines.join('\n');
  }
}

class Histogram {
  private readonly counts: number[];
  private sum = 0;
  private count = 0;
  constructor(
    readonly name: string,
    readonly help: string,
    readonly buckets: readonly number[],
  ) {
    this.counts = buckets.map(() => 0);
  }
  observe(v: number): void {
    this.sum += v;
    this.count++;
    for (let i = 0; i < this.buckets.length; i++) if (v <= this.buckets[i]!) this.counts[i]!++;
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    this.buckets.forEach((b, i) => {
      lines.push(`${this.name}_bucket{le="${b}"} ${this.counts[i]}`);
    });
    lines.push(
      `${this.name}_bucket{le="+Inf"} ${this.count}`,
      `${this.name}_sum ${this.sum}`,
      `${this.name}_count ${this.count}`,
    );
    return lines.join('\n');
  }
}

export class IngestMetrics {
  readonly requests = new Counter('signalbox_ingest_requests_total', 'HTTP requests by route and status');
  readonly events = new Counter(
    'signalbox_ingest_events_total',
    'Events by source and outcome (accepted, duplicate, stale, invalid)',
  );
  readonly matches = new Counter('signalbox_ingest_matches_total', 'Rule matches by source');
  readonly rejected = new Counter('signalbox_ingest_rejected_total', 'Rejected requests by reason');
  readonly fetched = new Counter(
    'signalbox_ingest_records_fetched_total',
    'Records of event-information-only payloads fetched from the PSA API, by source and outcome',
  );
  readonly handoff = new Histogram(
    'signalbox_ingest_handoff_seconds',
    'Time from request received to hand-off committed',
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
  );

  render(): string {
    return `${[this.requests, this.events, this.matches, this.rejected, this.fetched, this.handoff].map((m) => m.render()).join('\n')}\n`;
  }
}
