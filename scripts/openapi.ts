/** Writes openapi/admin.json from the operations of src/admin (a test checks it is current). */
import { writeFileSync } from 'node:fs';
import { openapi } from '../src/admin/openapi.js';

writeFileSync(new URL('../openapi/admin.json', import.meta.url), `${JSON.stringify(openapi(), null, 2)}\n`);
console.log('wrote openapi/admin.json');
