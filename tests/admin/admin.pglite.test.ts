/** The admin API suite on the embedded default (PGlite), in memory. */
import { openPglite } from '../../src/store/index.js';
import { adminConformance } from './conformance.js';

adminConformance('pglite', () => openPglite('memory://'));
