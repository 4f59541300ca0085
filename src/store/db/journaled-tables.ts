import type { Tables } from './tables.js';

/**
 * The tables the change log journals (every table but those in UNJOURNALED_TABLES): the column
 * that names the tenant owning a row, and the primary key, by which backups page through them.
 */
export interface JournaledTable {
  name: keyof Tables & string;
  tenantColumn: string;
  key: readonly string[];
}

export const JOURNALED_TABLES: readonly JournaledTable[] = [
  { name: 'tenants', tenantColumn: 'id', key: ['id'] },
  { name: 'data_keys', tenantColumn: 'tenant_id', key: ['tenant_id', 'key_id'] },
  { name: 'members', tenantColumn: 'tenant_id', key: ['tenant_id', 'member_id'] },
  { name: 'api_keys', tenantColumn: 'tenant_id', key: ['tenant_id', 'key_id'] },
  { name: 'collections', tenantColumn: 'tenant_id', key: ['tenant_id', 'name'] },
  { name: 'records', tenantColumn: 'tenant_id', key: ['tenant_id', 'collection', 'record_key'] },
  { name: 'record_versions', tenantColumn: 'tenant_id', key: ['tenant_id', 'collection', 'record_key', 'version'] },
  { name: 'record_index', tenantColumn: 'tenant_id', key: ['tenant_id', 'collection', 'record_key', 'field'] },
  { name: 'audit_events', tenantColumn: 'tenant_id', key: ['tenant_id', 'seq'] },
  { name: 'access_requests', tenantColumn: 'tenant_id', key: ['tenant_id', 'request_id'] },
  { name: 'webhooks', tenantColumn: 'owner', key: ['owner', 'webhook_id'] },
  { name: 'files', tenantColumn: 'tenant_id', key: ['tenant_id', 'path_key'] },
  { name: 'file_versions', tenantColumn: 'tenant_id', key: ['tenant_id', 'path_key', 'version'] },
  { name: 'file_folders', tenantColumn: 'tenant_id', key: ['tenant_id', 'folder_token', 'path_key'] },
];
