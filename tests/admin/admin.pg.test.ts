/** The admin API suite on a real Postgres server (deploy/local or DATABASE_URL). */
import { testSchemaDb } from '../pg-schema.js';
import { adminConformance } from './conformance.js';

adminConformance('postgres', testSchemaDb('admin'));
