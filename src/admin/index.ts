/** The admin service's public surface: an explicit list (style.md). */
export { AdminApi } from './api.js';
export { ADMIN_ERRORS, AdminError, type AdminErrorCode, type FieldError } from './errors.js';
export {
  ADMIN_PROTO,
  ADMIN_SERVICE,
  type AdminGrpcServer,
  adminClientConstructor,
  LOADER_OPTIONS,
  MessageCodec,
  startAdminGrpc,
} from './grpc.js';
export { type AdminHttpServer, MAX_ADMIN_BODY, startAdminHttp } from './http.js';
export { type ApiKeyInfo, ApiKeys, type Caller, ROLES, type Role } from './keys.js';
export { openapi } from './openapi.js';
export { inputSchema, OPERATIONS, type Operation } from './ops.js';
export { type AdminDeps, AdminService, type ConnectionChecker, type RawAdapter } from './service.js';
export { TEMPLATES, type Template } from './templates.js';
