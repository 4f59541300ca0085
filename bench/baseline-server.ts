/**
 * The bare baseline the records benchmark compares Strongroom with: the same TLS policy and
 * certificate, Fastify 5, SQLite opened exactly as Strongroom opens it (WAL, synchronous=FULL, the
 * same schema and statement cache) and the same group committer with the same batch size — but no
 * authentication, encryption, blind index, version history, change log, audit, security headers or
 * request log. Bodies are stored as plaintext JSON in the `records` table under one fixed
 * tenant and collection, keyed by the record id.
 *
 * Usage: node dist/bench/baseline-server.js --data-dir DIR [--port N]
 *   reads DIR/tls/server-{cert,key}.pem (made by `strongroom serve`), keeps its database in
 *   DIR/baseline/baseline.db and prints `listening https://localhost:PORT` when ready.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import Fastify from 'fastify';
import { loadConfig } from '../src/config/load.js';
import { secureContextOptions } from '../src/http/tls/tls-policy.js';
import { GroupCommitter } from '../src/store/db/group-commit.js';
import { openDatabase } from '../src/store/db/open.js';

const say = (text: string) => process.stdout.write(`${text}\n`);

const TENANT = 'baseline';
const COLLECTION = 'records';

interface RecordParams {
  tenantId: string;
  collection: string;
  id: string;
}

const { values } = parseArgs({ options: { 'data-dir': { type: 'string' }, port: { type: 'string', default: '0' } } });
const dataDir = values['data-dir'];
if (!dataDir) throw new Error('--data-dir DIR is required');
const defaults = loadConfig({ env: {}, overrides: { dataDir } });

const db = await openDatabase({ driver: 'sqlite', file: join(dataDir, 'baseline', 'baseline.db') });
const committer = new GroupCommitter(db.writer, db.dialect, defaults.database.groupCommitMaxBatch);
const tls = join(dataDir, 'tls');
const app = Fastify({
  https: secureContextOptions({ cert: readFileSync(join(tls, 'server-cert.pem')), key: readFileSync(join(tls, 'server-key.pem')) }),
  bodyLimit: defaults.records.maxRecordBytes,
});

const path = '/v1/tenants/:tenantId/collections/:collection/records/:id';
const iso = (ms: number) => new Date(ms).toISOString();

app.put<{ Params: RecordParams; Body: unknown }>(path, async (request, reply) => {
  const { id } = request.params;
  const data = request.body;
  const body = Buffer.from(JSON.stringify(data), 'utf8');
  const recordKey = Buffer.from(id, 'utf8');
  const view = await committer.submit(TENANT, async (tx) => {
    const current = await tx
      .selectFrom('records')
      .select(['version', 'created_at'])
      .where('tenant_id', '=', TENANT)
      .where('collection', '=', COLLECTION)
      .where('record_key', '=', recordKey)
      .executeTakeFirst();
    const now = Date.now();
    const version = (current ? Number(current.version) : 0) + 1;
    const createdAt = current ? Number(current.created_at) : now;
    if (current) {
      await tx
        .updateTable('records')
        .set({ version, body, updated_at: now })
        .where('tenant_id', '=', TENANT)
        .where('collection', '=', COLLECTION)
        .where('record_key', '=', recordKey)
        .execute();
    } else {
      await tx
        .insertInto('records')
        .values({ tenant_id: TENANT, collection: COLLECTION, record_key: recordKey, version, body, deleted: 0, created_at: now, updated_at: now })
        .execute();
    }
    return { id, version, createdAt: iso(createdAt), updatedAt: iso(now), data };
  });
  return reply.code(view.version === 1 ? 201 : 200).send(view);
});

app.get<{ Params: RecordParams }>(path, async (request, reply) => {
  const { id } = request.params;
  const row = await db.reader
    .selectFrom('records')
    .select(['version', 'body', 'created_at', 'updated_at'])
    .where('tenant_id', '=', TENANT)
    .where('collection', '=', COLLECTION)
    .where('record_key', '=', Buffer.from(id, 'utf8'))
    .executeTakeFirst();
  if (!row) return reply.code(404).send({ error: { code: 'not_found', message: 'record not found' } });
  return reply.send({
    id,
    version: Number(row.version),
    createdAt: iso(Number(row.created_at)),
    updatedAt: iso(Number(row.updated_at)),
    data: JSON.parse(row.body.toString('utf8')) as unknown,
  });
});

await app.listen({ host: '127.0.0.1', port: Number(values.port) });
const address = app.server.address();
say(`listening https://localhost:${typeof address === 'object' && address ? address.port : values.port}`);

const stop = async () => {
  await app.close();
  await committer.close();
  await db.close();
  process.exit(0);
};
process.once('SIGINT', () => void stop());
process.once('SIGTERM', () => void stop());
