/**
 * Versioned migrations, applied in order, each in its own transaction. The same SQL runs on
 * Postgres 15 (the local server) and PGlite (Postgres 18, embedded). Constraints here reject
 * malformed rows even if the application does not.
 *
 * Never edit a migration that has shipped; add a new one.
 */

export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

const NAME = `'^[a-z0-9][a-z0-9_-]{0,63}$'`;

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'tenants, keys, connections, rules, runs, events, audit',
    sql: `
create table tenants (
  id text primary key check (id ~ ${NAME}),
  name text not null default '' check (length(name) <= 200),
  settings jsonb not null default '{}' check (jsonb_typeof(settings) = 'object'),
  created_at timestamptz not null default now()
);

-- API keys are stored as the SHA-256 of the secret, never the secret itself.
create table api_keys (
  id text primary key check (id ~ '^[A-Za-z0-9_-]{8,64}$'),
  tenant_id text not null references tenants (id) on delete cascade,
  name text not null default '' check (length(name) <= 200),
  role text not null check (role in ('admin', 'editor', 'viewer')),
  key_hash text not null unique check (key_hash ~ '^[0-9a-f]{64}$'),
  created_at timestamptz not null default now(),
  last_used_at timestamptz,
  revoked_at timestamptz
);

-- Connection secrets are encrypted by the application (AES-256-GCM, key from the environment)
-- and never returned by any API; settings hold only what is not secret.
create table connections (
  tenant_id text not null references tenants (id) on delete cascade,
  id text not null check (id ~ ${NAME}),
  kind text not null check (kind in ('connectwise', 'autotask', 'halo', 'generic', 'webhook', 'slack', 'teams', 'smtp')),
  name text not null default '' check (length(name) <= 200),
  settings jsonb not null default '{}' check (jsonb_typeof(settings) = 'object'),
  secret_ciphertext bytea,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (tenant_id, id)
);

create table rules (
  tenant_id text not null references tenants (id) on delete cascade,
  id text not null check (id ~ '^[a-z0-9][a-z0-9_-]{0,127}$'),
  version integer not null check (version >= 1),
  status text not null check (status in ('active', 'draft', 'paused', 'archived')),
  run_count bigint not null default 0 check (run_count >= 0),
  last_run_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (tenant_id, id)
);

create table rule_versions (
  tenant_id text not null,
  rule_id text not null,
  version integer not null check (version >= 1),
  document jsonb not null check (jsonb_typeof(document) = 'object' and document ->> 'id' = rule_id),
  created_at timestamptz not null default now(),
  created_by text not null default '',
  primary key (tenant_id, rule_id, version),
  foreign key (tenant_id, rule_id) references rules (tenant_id, id) on delete cascade deferrable initially deferred
);

-- The current version must exist (checked at commit, since both rows are written together).
alter table rules add constraint rules_current_version_fk
  foreign key (tenant_id, id, version) references rule_versions (tenant_id, rule_id, version)
  deferrable initially deferred;

-- Rule versions are immutable: a change is a new version.
create function sb_reject_update() returns trigger language plpgsql as $$
begin
  raise exception '% rows are immutable', tg_table_name using errcode = 'check_violation';
end
$$;
create trigger rule_versions_immutable before update on rule_versions
  for each row execute function sb_reject_update();

create table runs (
  id text primary key check (length(id) between 1 and 128),
  tenant_id text not null references tenants (id) on delete cascade,
  rule_id text not null,
  rule_version integer not null check (rule_version >= 1),
  event_id text,
  status text not null check (status in ('pending', 'running', 'delayed', 'completed', 'failed', 'skipped', 'throttled', 'cancelled')),
  reason text,
  created_at timestamptz not null default now(),
  started_at timestamptz,
  finished_at timestamptz,
  error jsonb,
  check (finished_at is null or started_at is null or finished_at >= started_at)
);
create index runs_by_rule on runs (tenant_id, rule_id, created_at desc);
create index runs_by_status on runs (tenant_id, status, created_at desc);

create table steps (
  run_id text not null references runs (id) on delete cascade,
  idx integer not null check (idx >= 0),
  type text not null check (length(type) between 1 and 64),
  status text not null check (status in ('pending', 'running', 'completed', 'failed', 'skipped')),
  attempts integer not null default 0 check (attempts >= 0),
  started_at timestamptz,
  finished_at timestamptz,
  output jsonb check (output is null or octet_length(output::text) <= 65536),
  error jsonb,
  primary key (run_id, idx)
);

-- The event archive, for replay and backtest: one partition per day, dropped by retention.
create table events (
  tenant_id text not null,
  id text not null,
  received_on date not null,
  received_at timestamptz not null,
  source text not null,
  type text not null,
  time timestamptz,
  envelope jsonb not null check (jsonb_typeof(envelope) = 'object'),
  primary key (tenant_id, received_on, id)
) partition by range (received_on);
create table events_default partition of events default;

-- Creates the partition of one day if missing (run ahead of time by a maintenance job; rows of a
-- day without a partition land in events_default).
create function sb_ensure_event_partition(day date) returns text language plpgsql as $$
declare
  part text := 'events_' || to_char(day, 'YYYYMMDD');
begin
  if to_regclass(part) is null then
    execute format('create table %I partition of events for values from (%L) to (%L)', part, day, day + 1);
  end if;
  return part;
end
$$;

-- Drops the day partitions older than a date; returns how many were dropped.
create function sb_drop_event_partitions(before date) returns integer language plpgsql as $$
declare
  r record;
  n integer := 0;
begin
  for r in
    select c.relname from pg_inherits i
      join pg_class c on c.oid = i.inhrelid
      join pg_class p on p.oid = i.inhparent
    where p.relname = 'events' and p.relnamespace = c.relnamespace
      and c.relname ~ '^events_[0-9]{8}$' and to_date(substr(c.relname, 8), 'YYYYMMDD') < before
  loop
    execute format('drop table %I', r.relname);
    n := n + 1;
  end loop;
  return n;
end
$$;

create table audit_log (
  id bigserial primary key,
  tenant_id text not null,
  at timestamptz not null default now(),
  actor text not null check (length(actor) between 1 and 200),
  action text not null check (action ~ '^[a-z][a-z_.]*$'),
  entity text not null,
  entity_id text not null,
  details jsonb not null default '{}' check (jsonb_typeof(details) = 'object')
);
create index audit_by_tenant on audit_log (tenant_id, at desc);
`,
  },
  {
    version: 2,
    name: 'run revisions: history records applied in order',
    sql: `
-- Each history record of a run carries a revision (the time it was written, made to increase); an
-- older record never overwrites a newer one (records of one run can reach Postgres out of order
-- after a worker dies and another resumes the run).
alter table runs add column revision bigint not null default 0 check (revision >= 0);
`,
  },
  {
    version: 3,
    name: 'event archive indexes: by id, by time, by type and time',
    sql: `
-- The admin API finds an archived event by id (without its day), replays a time window and
-- backtests a rule over the events of the types its \`on\` admits.
create index events_by_id on events (tenant_id, id);
create index events_by_time on events (tenant_id, received_at);
create index events_by_type on events (tenant_id, type, received_at);
`,
  },
  {
    version: 4,
    name: 'run history retention: runs and log records by age',
    sql: `
-- The workers delete run history past its retention (SIGNALBOX_HISTORY_DAYS) oldest first, a few
-- thousand rows a statement: these find them without reading the tables whole.
create index runs_by_created on runs (created_at);
create index audit_run_log_by_at on audit_log (at) where action = 'run.log';
`,
  },
];
