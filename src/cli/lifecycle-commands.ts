import type { Command } from 'commander';
import { configFrom, type GlobalOptions } from './runtime.js';

const say = (text: string) => process.stdout.write(`${text}\n`);

async function withCore<T>(globals: () => GlobalOptions, run: (core: Awaited<ReturnType<typeof import('../core/open-core.js').openCore>>) => Promise<T>): Promise<T> {
  const { openCore } = await import('../core/open-core.js');
  const core = await openCore(configFrom(globals()));
  try {
    return await run(core);
  } finally {
    await core.close();
  }
}

/** `strongroom tenant purge|certificate`: the end of a tenant's life, run by the machine's operator. */
export function registerLifecycleCommands(tenant: Command, globals: () => GlobalOptions): void {
  tenant
    .command('purge')
    .description('purge the tenants whose purge is due now (by the database clock), or finish one cut short; the server does this every 10 minutes')
    .option('--tenant <id>', 'only this tenant (it must be due)')
    .option('--json', 'print one JSON object')
    .action(async (options: { tenant?: string; json?: boolean }) =>
      withCore(globals, async (core) => {
        const { duePurges, purgeTenant } = await import('../core/lifecycle/purge.js');
        const tenants = options.tenant ? [options.tenant] : await duePurges(core);
        const results: { tenantId: string; step: string }[] = [];
        for (const tenantId of tenants) {
          const step = await purgeTenant(core, tenantId, (s) => process.stderr.write(`${tenantId}: ${s}\n`));
          results.push({ tenantId, step });
        }
        if (options.json) say(JSON.stringify({ purges: results }));
        else say(results.length === 0 ? 'no purge is due' : results.map((r) => `${r.tenantId}: ${r.step}`).join('\n'));
      }),
    );
  tenant
    .command('certificate')
    .description("print a purged tenant's signed deletion certificate (a compact JWS; --json decodes it beside the JWS)")
    .requiredOption('--tenant <id>', 'the purged tenant')
    .option('--json', 'print one JSON object')
    .action(async (options: { tenant: string; json?: boolean }) =>
      withCore(globals, async (core) => {
        const { storedCertificate } = await import('../core/lifecycle/purge.js');
        const { decodeJwt } = await import('jose');
        const jws = await storedCertificate(core, options.tenant);
        say(options.json ? JSON.stringify({ certificate: decodeJwt(jws), jws }) : jws);
      }),
    );
}
