#!/usr/bin/env node
import { relative } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { maskedConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { StrongroomError } from '../errors.js';
import { configFrom, prepareDataDir, type GlobalOptions } from './runtime.js';
import { registerLifecycleCommands } from './lifecycle-commands.js';
import { registerRecoveryCommands } from './recovery-commands.js';

// The server, the database drivers and the KMS load only for the commands that use them.
const openCore = async (...args: Parameters<typeof import('../core/open-core.js').openCore>) =>
  (await import('../core/open-core.js')).openCore(...args);

// Everything this process creates (database, keys, certificates) is private to its user.
process.umask(0o077);

/** Output for the person at the terminal; logs go to standard error through the logger. */
const say = (text: string) => process.stdout.write(`${text}\n`);

const CLI_ACTOR = { kind: 'system', name: 'cli' } as const;
const CLI_META = { requestId: 'cli', sourceIp: 'local' };

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('a port is an integer from 0 to 65535');
  return n;
}

const program = new Command('strongroom')
  .description('Strongroom: a security-first, multi-tenant customer-data platform')
  .option('--config <file>', 'JSON configuration file')
  .option('--data-dir <dir>', 'data directory (default ./.strongroom)')
  .showHelpAfterError();

const globals = () => program.opts<GlobalOptions>();

program
  .command('serve')
  .description('serve the API over HTTPS')
  .option('--port <n>', 'HTTPS port', port)
  .action(async (options: { port?: number }) => {
    const config = configFrom(globals(), options.port);
    await prepareDataDir(config);
    const { createLogger, stderrDestination } = await import('../log.js');
    const { startServer } = await import('../http/server.js');
    const logger = createLogger(config.log.level, stderrDestination());
    const core = await openCore(config);
    const server = await startServer(config, core, logger);
    say(`listening ${server.url}`);
    const tenants = await core.db.reader.selectFrom('tenants').select('id').limit(1).execute();
    if (server.caCertFile && tenants.length === 0) printFirstSteps(server.caCertFile, server.url, globals());
    const stop = async () => {
      await server.close();
      await core.close();
      process.exit(0);
    };
    process.once('SIGINT', () => void stop());
    process.once('SIGTERM', () => void stop());
  });

function printFirstSteps(caCertFile: string, url: string, options: GlobalOptions): void {
  const flags = [options.config ? `--config ${options.config}` : '', options.dataDir ? `--data-dir ${options.dataDir}` : '']
    .filter(Boolean)
    .join(' ');
  const cli = `node ${relative(process.cwd(), process.argv[1] ?? 'strongroom')}${flags ? ` ${flags}` : ''}`;
  say(`
Strongroom is serving HTTPS with a certificate from its local CA. Trust it with:
  ${caCertFile}

Next, in another terminal:
  ${cli} tenant create acme --json          # prints {"tenantId":…,"apiKey":…}; the key is shown once
  export T=<tenantId> K=<apiKey>
  curl --cacert ${caCertFile} -H "Authorization: Bearer $K" -X PUT ${url}/v1/tenants/$T/collections/notes \\
       -H 'content-type: application/json' -d '{"indexes":[]}'
  curl --cacert ${caCertFile} -H "Authorization: Bearer $K" -X PUT ${url}/v1/tenants/$T/collections/notes/records/first \\
       -H 'content-type: application/json' -d '{"text":"hello"}'
  curl --cacert ${caCertFile} -H "Authorization: Bearer $K" ${url}/v1/tenants/$T/collections/notes/records/first

API reference: ${url}/v1/openapi.json`);
}

const tenant = program.command('tenant').description('manage tenants (as the operator of this machine)');
tenant
  .command('create <name>')
  .description('create a tenant and print its id and a one-time owner API key')
  .option('--json', 'print one JSON object')
  .action(async (name: string, options: { json?: boolean }) => {
    const config = configFrom(globals());
    await prepareDataDir(config);
    const core = await openCore(config);
    try {
      const { createTenant } = await import('../core/tenants.js');
      const created = await createTenant(core, CLI_ACTOR, CLI_META, name);
      if (options.json) say(JSON.stringify({ tenantId: created.tenantId, name: created.name, apiKey: created.apiKey }));
      else say(`tenant ${created.tenantId} (${created.name})\nowner API key (shown once): ${created.apiKey}`);
    } finally {
      await core.close();
    }
  });

program
  .command('config')
  .description('configuration')
  .command('print')
  .description('print the effective configuration, secrets masked')
  .action(() => {
    say(JSON.stringify(maskedConfig(configFrom(globals())), null, 2));
  });

program
  .command('audit')
  .description('audit log')
  .command('verify')
  .description("verify every tenant's audit hash chain, or one tenant's")
  .option('--tenant <id>', 'only this tenant')
  .option('--json', 'print one JSON object')
  .action(async (options: { tenant?: string; json?: boolean }) => {
    const config = configFrom(globals());
    const core = await openCore(config);
    try {
      let query = core.db.reader.selectFrom('tenants').select('id').orderBy('id');
      if (options.tenant) query = query.where('id', '=', options.tenant);
      const ids = (await query.execute()).map((r) => r.id);
      if (options.tenant && ids.length === 0) throw new StrongroomError('not_found', `no tenant ${options.tenant}`);
      const { SYSTEM_CHAIN } = await import('../core/audit-events.js');
      // The system chain (system key uses) is verified with the tenants'.
      if (!options.tenant) ids.push(SYSTEM_CHAIN);
      const { verifyAuditChain } = await import('../audit/verify.js');
      const results = [];
      for (const id of ids) results.push(await verifyAuditChain(core.db.reader, id));
      const ok = results.every((r) => r.ok);
      if (options.json) say(JSON.stringify({ ok, tenants: results }));
      else {
        for (const r of results) {
          say(r.ok ? `ok      ${r.tenantId}: ${r.events} events` : `FAILED  ${r.tenantId}: event ${r.seq}: ${r.reason}`);
        }
      }
      process.exitCode = ok ? 0 : 1;
    } finally {
      await core.close();
    }
  });

const keys = program.command('keys').description('keys: KEK and data-key rotation, re-wrapping, re-encryption, status');

/** Re-wraps every data key not on its KEK's primary version, printing progress to standard error. */
async function rewrapWithProgress(core: Awaited<ReturnType<typeof openCore>>): Promise<number> {
  const { rewrapAll } = await import('../core/key-rotation.js');
  const started = Date.now();
  return rewrapAll(core, ({ done, total }) => {
    const rate = done / Math.max(1, Date.now() - started);
    const eta = rate > 0 ? Math.ceil((total - done) / rate / 1000) : '?';
    process.stderr.write(`\rre-wrapped ${done}/${total} data keys, about ${eta} s left   `);
  });
}

/** Re-encrypts the rows of every tenant with a rotated-out data key, printing progress to standard error. */
async function reencryptWithProgress(core: Awaited<ReturnType<typeof openCore>>, config: Config): Promise<number> {
  const { reencryptAll } = await import('../core/data-key-rotation.js');
  const started = Date.now();
  return reencryptAll(core, {
    batchRows: config.keys.reencryptBatchRows,
    pauseMs: config.keys.reencryptPauseMs,
    onProgress: ({ done, total }) => {
      const rate = done / Math.max(1, Date.now() - started);
      const eta = rate > 0 ? Math.ceil((total - done) / rate / 1000) : '?';
      process.stderr.write(`\rre-encrypted ${done}/${total} rows scanned, about ${eta} s left   `);
    },
  });
}

keys
  .command('rotate')
  .description('make a new primary KEK version and re-wrap the data keys under it (never decrypting records); with --data-key, a new data key and re-encryption of the rows under it')
  .option('--tenant <id>', "one tenant's key")
  .option('--all-tenants', "every tenant's key")
  .option('--system', 'the system KEK that seals the secrets')
  .option('--data-key', "rotate the tenants' data keys instead of their KEKs")
  .action(async (options: { tenant?: string; allTenants?: boolean; system?: boolean; dataKey?: boolean }) => {
    if ([options.tenant !== undefined, options.allTenants, options.system].filter(Boolean).length !== 1 || (options.dataKey && options.system)) {
      throw new StrongroomError('bad_request', 'say which key: --tenant T, --all-tenants or --system (--data-key goes with a tenant or all tenants)');
    }
    const config = configFrom(globals());
    const core = await openCore(config);
    try {
      if (options.system) {
        const { SYSTEM_SECRETS_KEY } = await import('../secrets/store.js');
        const { auditedSecretStore } = await import('../core/open-core.js');
        const version = await core.kms.rotateKey(SYSTEM_SECRETS_KEY);
        const rewrapped = await auditedSecretStore(core, config.secrets.file!).rewrap();
        say(`${SYSTEM_SECRETS_KEY}: version ${version} is primary; ${rewrapped} secrets re-wrapped`);
        return;
      }
      const { kekName } = await import('../core/tenant-keys.js');
      let query = core.db.reader.selectFrom('tenants').select('id').orderBy('id');
      if (options.tenant) query = query.where('id', '=', options.tenant);
      const ids = (await query.execute()).map((r) => r.id);
      if (ids.length === 0) throw new StrongroomError('not_found', options.tenant ? `no tenant ${options.tenant}` : 'no tenants');
      if (options.dataKey) {
        const { rotateDataKey } = await import('../core/data-key-rotation.js');
        for (const id of ids) say(`${id}: data key ${await rotateDataKey(core, id, { kind: 'system', name: 'cli' })} is current`);
        say(`\n${await reencryptWithProgress(core, config)} rows re-encrypted`);
        return;
      }
      for (const id of ids) say(`${kekName(id)}: version ${await core.kms.rotateKey(kekName(id))} is primary`);
      const rewrapped = await rewrapWithProgress(core);
      say(`\n${rewrapped} data keys re-wrapped`);
    } finally {
      await core.close();
    }
  });

keys
  .command('rewrap')
  .description('re-wrap every data key not on its KEK primary version (resumes an interrupted rotation)')
  .action(async () => {
    const core = await openCore(configFrom(globals()));
    try {
      say(`\n${await rewrapWithProgress(core)} data keys re-wrapped`);
    } finally {
      await core.close();
    }
  });

keys
  .command('reencrypt')
  .description('re-encrypt the rows still sealed under rotated-out data keys (resumes an interrupted data-key rotation)')
  .action(async () => {
    const config = configFrom(globals());
    const core = await openCore(config);
    try {
      say(`\n${await reencryptWithProgress(core, config)} rows re-encrypted`);
    } finally {
      await core.close();
    }
  });

keys
  .command('status')
  .description('KEK versions, data keys per version, data-key rotation state, re-wrap and re-encryption progress with ETA')
  .option('--json', 'print one JSON object')
  .action(async (options: { json?: boolean }) => {
    const core = await openCore(configFrom(globals()));
    try {
      const { dataKeyVersions, REWRAP_JOB, staleDataKeys } = await import('../core/key-rotation.js');
      const { dataKeyStatus, REENCRYPT_JOB } = await import('../core/data-key-rotation.js');
      const { jobProgress } = await import('../core/job-progress.js');
      const tenants = await dataKeyVersions(core);
      const dataKeys = new Map((await dataKeyStatus(core)).map((d) => [d.tenantId, d]));
      const rewrap = await jobProgress(core, REWRAP_JOB);
      const reencrypt = await jobProgress(core, REENCRYPT_JOB);
      const stale = tenants.reduce((n, t) => n + staleDataKeys(t), 0);
      if (options.json) {
        say(JSON.stringify({ tenants: tenants.map((t) => ({ ...t, dataKey: dataKeys.get(t.tenantId) })), dataKeysOnOlderVersions: stale, rewrap, reencrypt }));
        return;
      }
      for (const t of tenants) {
        const counts = Object.entries(t.dataKeys).map(([v, c]) => `v${v}: ${c}`).join(', ');
        const d = dataKeys.get(t.tenantId);
        const rotation = d ? `  current data key ${d.current}${d.pending.length ? `, re-encrypting from ${d.pending.join(',')}` : ''}${d.retired.length ? `, retired ${d.retired.join(',')}` : ''}` : '';
        say(`${t.tenantId}  primary v${t.primary}  data keys ${counts}${rotation}`);
      }
      say(`${stale} data keys on an older KEK version`);
      for (const [label, job] of [['re-wrap', rewrap], ['re-encryption', reencrypt]] as const) {
        if (!job) continue;
        const state = job.finishedAt ? `finished ${new Date(job.finishedAt).toISOString()}` : `running, about ${Math.ceil((job.etaMs ?? 0) / 1000)} s left`;
        say(`last ${label}: ${job.done}/${job.total}, ${state}`);
      }
    } finally {
      await core.close();
    }
  });

/** Runs `use` with the secret store of this configuration, through its KMS. */
async function withSecretStore<T>(use: (store: import('../secrets/store.js').SecretStore) => Promise<T>): Promise<T> {
  const config = configFrom(globals());
  await prepareDataDir(config);
  const { openConfiguredKms } = await import('../core/open-core.js');
  const { openSecretStore } = await import('../secrets/store.js');
  const kms = await openConfiguredKms(config);
  try {
    return await use(openSecretStore({ file: config.secrets.file!, kms }));
  } finally {
    await kms.close();
  }
}

/** The secret from standard input, never from the command line (argv is visible to every user). */
async function readSecretFromStdin(): Promise<Buffer> {
  if (process.stdin.isTTY) throw new StrongroomError('bad_request', 'pipe the value in, e.g. strongroom secrets set NAME < file: typing it would echo it');
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  const value = Buffer.concat(chunks);
  // One trailing newline is what `echo` adds, not part of the secret.
  return value.at(-1) === 0x0a ? value.subarray(0, -1) : value;
}

const secrets = program.command('secrets').description('system secrets, sealed under the KMS; the configuration refers to them as secret:NAME');
secrets
  .command('set <name>')
  .description('store a secret read from standard input')
  .action(async (name: string) => {
    const value = await readSecretFromStdin();
    try {
      await withSecretStore((store) => store.set(name, value));
    } finally {
      value.fill(0);
    }
    say(`secret ${name} stored; refer to it as secret:${name}`);
  });
secrets
  .command('list')
  .description('names and dates, never values')
  .option('--json', 'print one JSON object')
  .action(async (options: { json?: boolean }) => {
    const list = await withSecretStore((store) => store.list());
    if (options.json) say(JSON.stringify({ secrets: list }));
    else for (const s of list) say(`${s.name}\tcreated ${s.createdAt}\tupdated ${s.updatedAt}`);
  });
secrets
  .command('delete <name>')
  .description('remove a secret')
  .action(async (name: string) => {
    await withSecretStore((store) => store.delete(name));
    say(`secret ${name} deleted`);
  });

registerRecoveryCommands(program, globals);
registerLifecycleCommands(tenant, globals);

program.parseAsync().catch((error: unknown) => {
  const message = error instanceof StrongroomError ? error.message : error instanceof Error ? error.message : String(error);
  console.error(`strongroom: ${message}`);
  process.exit(2);
});
