/** The store's public surface: an explicit list (style.md). */

export { audit, configChannel, notifyConfig } from './audit.js';

export {
  allowsPrivateNetworks,
  type ConnectionInfo,
  type ConnectionInput,
  type ConnectionKind,
  ConnectionStore,
  SecretBox,
  setTenantSettings,
  tenantSettings,
} from './connections.js';
export {
  DataDirInUseError,
  type Db,
  isConnectionError,
  openDb,
  openPglite,
  openPostgres,
  type PostgresOptions,
  type Queryable,
  type QueryResult,
} from './db.js';
export {
  batches,
  pgJson,
  pgJsonText,
  STATEMENT_CHARS,
  UNSTORABLE_REASON,
  unstorablePath,
  writeDroppingRefused,
} from './json.js';
export { migrate } from './migrate.js';
export { MIGRATIONS, type Migration } from './migrations.js';
export {
  type Actor,
  type RuleChangeNotice,
  type RuleStatus,
  RuleStore,
  type StoredRule,
  VersionConflict,
} from './rules.js';
