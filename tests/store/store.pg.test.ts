/** The store conformance suite on a real Postgres server (deploy/local or DATABASE_URL). */
import { testSchemaDb } from '../pg-schema.js';
import { storeConformance } from './conformance.js';

storeConformance('postgres', testSchemaDb('test'));
