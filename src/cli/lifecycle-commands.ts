import { open, rm } from 'node:fs/promises';
import type { Command } from 'commander';
import { configFrom, type GlobalOptions } from './runtime.js';

const say = (text: string) => process.stdout.write(`${text}\n`);
const MACHINE = { kind: 'system', name: 'cli' } as const;
const CLI_META = { requestId: 'cli', sourceIp: 'local' };

async function withCore<T>(globals: () => GlobalOptions, run: (core: Awaited<ReturnType<typeof import('../core/open-core.js').openCore>>) => Promise<T>): Promise<T> {
  const { openCore } = await import('../core/open-core.js');
  const core = await openCore(configFrom(globals()));
  try {
    return await run(core);
  } finally {
    await core.close();
  }
}

/** `strongroom tenant export|terminate|cancel-termination|purge|certificate`: the end of a tenant's life, run by the machine's operator. */
export function registerLifecycleCommands(tenant: Command, globals: () => GlobalOptions): void {
  tenant
    .command('export')
    .description("write a tenant's export archive (a tar: manifest.json, records/*.jsonl, files/…) to a new file, from the data directory")
    .requiredOption('--tenant <id>', 'the tenant')
    .requiredOption('--out <file>', 'the archive to write; it must not exist')
    .option('--versions', 'every retained version of records and files too')
    .option('--json', 'print one JSON object')
    .action(async (options: { tenant: string; out: string; versions?: boolean; json?: boolean }) =>
      withCore(globals, async (core) => {
        const { exportToStream } = await import('../core/lifecycle/exports.js');
        // 'wx': never overwrite a file that is there; 0600: the archive is the tenant's data in the clear.
        const file = await open(options.out, 'wx', 0o600);
        let written;
        try {
          written = await exportToStream(core, MACHINE, CLI_META, options.tenant, options.versions === true, file.createWriteStream());
        } catch (error) {
          await rm(options.out, { force: true });
          throw error;
        }
        const { exportId, size, sha256, manifestSha256, manifest } = written;
        if (options.json) say(JSON.stringify({ exportId, tenantId: options.tenant, file: options.out, size, sha256, manifestSha256, seq: manifest.seq, counts: manifest.counts }));
        else say(`export ${exportId} of ${options.tenant} at sequence ${manifest.seq}: ${options.out}, ${size} bytes, sha256 ${sha256} (manifest sha256 ${manifestSha256})`);
      }),
    );
  tenant
    .command('terminate')
    .description('terminate a tenant: read-only at once (export still works), purged after lifecycle.purgeAfterDays; its owners are notified')
    .requiredOption('--tenant <id>', 'the tenant')
    .requiredOption('--reason <text>', 'why, for its audit log')
    .option('--json', 'print one JSON object')
    .action(async (options: { tenant: string; reason: string; json?: boolean }) =>
      withCore(globals, async (core) => {
        const { terminateTenant } = await import('../core/lifecycle/termination.js');
        const tenantView = await terminateTenant(core, MACHINE, CLI_META, options.tenant, { reason: options.reason });
        say(options.json ? JSON.stringify(tenantView) : `${tenantView.tenantId} terminated; purged after ${tenantView.purgeAfter} unless the termination is cancelled before`);
      }),
    );
  tenant
    .command('cancel-termination')
    .description('make a terminated tenant active again, before its purge date')
    .requiredOption('--tenant <id>', 'the tenant')
    .option('--json', 'print one JSON object')
    .action(async (options: { tenant: string; json?: boolean }) =>
      withCore(globals, async (core) => {
        const { cancelTermination } = await import('../core/lifecycle/termination.js');
        const tenantView = await cancelTermination(core, MACHINE, CLI_META, options.tenant);
        say(options.json ? JSON.stringify(tenantView) : `${tenantView.tenantId} is ${tenantView.status} again`);
      }),
    );
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
