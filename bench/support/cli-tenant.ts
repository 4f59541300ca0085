import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

/**
 * Creates a tenant the way an operator does, with `strongroom tenant create --json` on the server's
 * machine (before the server starts: the CLI opens the same key store and database).
 */
export async function createTenantWithCli(cli: string, dataDir: string, name: string): Promise<{ tenantId: string; apiKey: string }> {
  const { stdout } = await promisify(execFile)(process.execPath, [cli, '--data-dir', dataDir, 'tenant', 'create', name, '--json']);
  const created = JSON.parse(stdout.trim().split('\n').pop() ?? '') as { tenantId?: string; apiKey?: string };
  if (!created.tenantId || !created.apiKey) throw new Error(`tenant create printed no tenantId/apiKey: ${stdout}`);
  return { tenantId: created.tenantId, apiKey: created.apiKey };
}
