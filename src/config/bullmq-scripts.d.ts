/**
 * BullMQ's generated Lua scripts, one module each (its own types sit beside the ESM copies, which
 * plain Node cannot load from this package: it has no "type": "module").
 */
declare module 'bullmq/dist/cjs/scripts/addStandardJob-9.js' {
  export const addStandardJob: { readonly name: string; readonly content: string; readonly keys: number };
}
