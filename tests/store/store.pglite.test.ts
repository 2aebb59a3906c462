/** The store conformance suite on the embedded default (PGlite), in memory. */
import { openPglite } from '../../src/store/index.js';
import { storeConformance } from './conformance.js';

storeConformance('pglite', () => openPglite('memory://'));
