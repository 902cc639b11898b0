/**
 * `mint-ssh-exec/site`: what the external computer's admin runs (through `mint-gateway`): the
 * authorized_keys line, install and uninstall, and doctor. Not part of the core entry.
 */
export { install as installGateway, uninstall as uninstallGateway, parsePublicKey, authorizedKeysLine, gatewayCommand, GATEWAY_SCRIPT, type GatewayOptions, type KeyRestrictions } from './install.js';
export { doctor, type DoctorCheck, type DoctorOptions, type DoctorStatus } from './doctor.js';
export { verifyAuditLog, auditLogOf, AUDIT_GENESIS, AUDIT_LOG_NAME, type AuditReport, type AuditProblem } from './audit-chain.js';
