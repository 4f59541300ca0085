import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { finished } from 'node:stream/promises';
import { Readable, pipeline } from 'node:stream';
import type { Kysely } from 'kysely';
import tar from 'tar-stream';
import { IntegrityError } from '../../errors.js';
import type { FileVersionsTable, Tables } from '../../store/db/tables.js';
import type { Actor, Core } from '../context.js';
import { decryptedStream } from '../files/file-reads.js';
import { meter } from '../files/file-writes.js';
import { FILE_VERSION_COLUMNS, openMeta, type FileMeta } from '../files/file-rows.js';
import { openEnvelope } from '../records.js';

/**
 * A tenant's export archive: a POSIX tar whose FIRST entry is `manifest.json`, so a reader can check
 * every later entry against it as the stream goes by. Then:
 *
 *   records/<collection>.jsonl        one line per current record: {id, version, data, createdAt, updatedAt}
 *   versions/<collection>.jsonl       with versions: every retained version, deletes included: {id, version, op, at, data}
 *   files/<path>                      the current version of every file that is not deleted
 *   file-versions/<path>@<version>    with versions: every retained version of every file
 *
 * Everything comes from one consistent read of the database (a snapshot), so the archive is the
 * tenant's data at one journal sequence. The manifest is written first, so the JSON Lines are made
 * twice (once to measure and hash them, once to send them): memory stays flat and no plaintext
 * touches a disk.
 */
export const MANIFEST_NAME = 'manifest.json';

export interface ManifestEntry {
  name: string;
  size: number;
  sha256: string;
  /** For `files/` and `file-versions/` entries: the file version the bytes are. */
  file?: { path: string; version: number; contentType: string; createdAt: string };
}

export interface ExportManifest {
  format: 'strongroom-export/1';
  tenantId: string;
  exportId: string;
  /** The journal sequence and the time of the read the archive was made from. */
  seq: number;
  takenAt: string;
  includeVersions: boolean;
  counts: { collections: number; records: number; recordVersions: number; files: number; fileVersions: number };
  /** Every entry after the manifest, in archive order. */
  entries: ManifestEntry[];
  /** With versions: the deletions (tombstones) in the files' retained history. */
  fileDeletions?: { path: string; version: number; deletedAt: string }[];
}

export interface ArchiveSummary {
  manifest: ExportManifest;
  manifestSha256: string;
  /** Size and SHA-256 (hex) of the whole plaintext tar. */
  size: number;
  sha256: string;
}

const PAGE = 500;
const MODE = 0o600;
const iso = (ms: number) => new Date(Number(ms)).toISOString();

interface Reading {
  core: Core;
  actor: Actor;
  tenantId: string;
  db: Kysely<Tables>;
}

/** Planned entries: the manifest's line for each, its time, and how to make its bytes (again). */
interface PlannedEntry {
  entry: ManifestEntry;
  mtime: Date;
  body: () => Promise<AsyncIterable<Buffer>>;
}

/** JSON Lines from pages of rows in key order; JSON.stringify never writes a raw newline, so a line is a row. */
async function* jsonLines<Row>(page: (after: Row | null) => Promise<Row[]>, line: (row: Row) => Promise<unknown>): AsyncGenerator<Buffer> {
  let after: Row | null = null;
  for (;;) {
    const rows = await page(after);
    if (rows.length === 0) return;
    const lines: string[] = [];
    for (const row of rows) lines.push(`${JSON.stringify(await line(row))}\n`);
    yield Buffer.from(lines.join(''), 'utf8');
    if (rows.length < PAGE) return;
    after = rows.at(-1)!;
  }
}

function currentRecords(r: Reading, collection: string) {
  return jsonLines(
    (after: { record_key: Buffer } | null) => {
      let q = r.db
        .selectFrom('records')
        .select(['record_key', 'version', 'body', 'created_at', 'updated_at'])
        .where('tenant_id', '=', r.tenantId)
        .where('collection', '=', collection)
        .where('deleted', '=', 0);
      if (after) q = q.where('record_key', '>', after.record_key);
      return q.orderBy('record_key').limit(PAGE).execute();
    },
    async (row) => {
      const version = Number(row.version);
      const { id, data } = await openEnvelope(r.core, r.actor, r.tenantId, collection, row.record_key, version, row.body);
      return { id, version, data, createdAt: iso(row.created_at), updatedAt: iso(row.updated_at) };
    },
  );
}

function recordVersions(r: Reading, collection: string) {
  return jsonLines(
    (after: { record_key: Buffer; version: number } | null) => {
      let q = r.db
        .selectFrom('record_versions')
        .select(['record_key', 'version', 'op', 'body', 'created_at'])
        .where('tenant_id', '=', r.tenantId)
        .where('collection', '=', collection);
      if (after) {
        q = q.where((eb) => eb.or([eb('record_key', '>', after.record_key), eb.and([eb('record_key', '=', after.record_key), eb('version', '>', after.version)])]));
      }
      return q.orderBy('record_key').orderBy('version').limit(PAGE).execute();
    },
    async (row) => {
      const version = Number(row.version);
      const { id, data } = await openEnvelope(r.core, r.actor, r.tenantId, collection, row.record_key, version, row.body);
      return { id, version, op: row.op, at: iso(row.created_at), data };
    },
  );
}

type VersionRow = Pick<FileVersionsTable, (typeof FILE_VERSION_COLUMNS)[number]>;

/** File versions in (path key, version) order: the current ones only, or every retained one. */
async function fileVersions(r: Reading, currentOnly: boolean): Promise<{ row: VersionRow; meta: FileMeta }[]> {
  const found: { row: VersionRow; meta: FileMeta }[] = [];
  let after: VersionRow | null = null;
  for (;;) {
    let q = r.db
      .selectFrom('file_versions as v')
      .innerJoin('files as f', (j) => j.onRef('f.tenant_id', '=', 'v.tenant_id').onRef('f.path_key', '=', 'v.path_key'))
      .select(['v.path_key', 'v.version', 'v.op', 'v.object_key', 'v.size', 'v.stored_size', 'v.stored_sha256', 'v.meta_enc', 'v.created_at'])
      .where('v.tenant_id', '=', r.tenantId);
    if (currentOnly) q = q.where('f.deleted', '=', 0).whereRef('v.version', '=', 'f.version');
    if (after) {
      const last = after;
      q = q.where((eb) => eb.or([eb('v.path_key', '>', last.path_key), eb.and([eb('v.path_key', '=', last.path_key), eb('v.version', '>', last.version)])]));
    }
    const rows = await q.orderBy('v.path_key').orderBy('v.version').limit(PAGE).execute();
    for (const row of rows) found.push({ row, meta: await openMeta(r.core, r.actor, r.tenantId, row) });
    if (rows.length < PAGE) return found;
    after = rows.at(-1)!;
  }
}

async function measure(body: AsyncIterable<Buffer>): Promise<{ size: number; sha256: string; lines: number }> {
  const hash = createHash('sha256');
  let size = 0;
  let lines = 0;
  for await (const chunk of body) {
    hash.update(chunk);
    size += chunk.length;
    for (let at = chunk.indexOf(0x0a); at !== -1; at = chunk.indexOf(0x0a, at + 1)) lines += 1;
  }
  return { size, sha256: hash.digest('hex'), lines };
}

/** Plans every entry and writes the manifest from the plan: the first pass. */
async function plan(r: Reading, exportId: string, includeVersions: boolean): Promise<{ manifest: ExportManifest; planned: PlannedEntry[] }> {
  const head = await r.db.selectFrom('journal_head').select('seq').where('id', '=', 1).executeTakeFirstOrThrow();
  const takenAt = new Date(r.core.now());
  const collections = (await r.db.selectFrom('collections').select('name').where('tenant_id', '=', r.tenantId).orderBy('name').execute()).map((c) => c.name);
  const counts = { collections: collections.length, records: 0, recordVersions: 0, files: 0, fileVersions: 0 };
  const planned: PlannedEntry[] = [];
  const lineEntries = async (folder: string, lines: (r: Reading, collection: string) => AsyncGenerator<Buffer>) => {
    let total = 0;
    for (const collection of collections) {
      const { size, sha256, lines: n } = await measure(lines(r, collection));
      planned.push({ entry: { name: `${folder}/${collection}.jsonl`, size, sha256 }, mtime: takenAt, body: async () => lines(r, collection) });
      total += n;
    }
    return total;
  };
  counts.records = await lineEntries('records', currentRecords);
  if (includeVersions) counts.recordVersions = await lineEntries('versions', recordVersions);
  const fileEntry = (folder: string, name: string, { row, meta }: { row: VersionRow; meta: FileMeta }): PlannedEntry => ({
    entry: {
      name: `${folder}/${name}`,
      size: Number(row.size),
      sha256: meta.sha256,
      file: { path: meta.path, version: Number(row.version), contentType: meta.contentType, createdAt: iso(row.created_at) },
    },
    mtime: new Date(Number(row.created_at)),
    body: () => decryptedStream(r.core, r.actor, r.tenantId, row, null),
  });
  const current = await fileVersions(r, true);
  counts.files = current.length;
  for (const file of current) planned.push(fileEntry('files', file.meta.path, file));
  const manifest: ExportManifest = { format: 'strongroom-export/1', tenantId: r.tenantId, exportId, seq: Number(head.seq), takenAt: takenAt.toISOString(), includeVersions, counts, entries: [] };
  if (includeVersions) {
    const history = await fileVersions(r, false);
    const puts = history.filter((v) => v.row.op === 'put');
    counts.fileVersions = puts.length;
    for (const version of puts) planned.push(fileEntry('file-versions', `${version.meta.path}@${Number(version.row.version)}`, version));
    manifest.fileDeletions = history.filter((v) => v.row.op === 'delete').map(({ row, meta }) => ({ path: meta.path, version: Number(row.version), deletedAt: iso(row.created_at) }));
  }
  manifest.entries = planned.map((p) => p.entry);
  return { manifest, planned };
}

/** Streams one entry into the tar, checking that its bytes are the ones the manifest promised. */
async function addEntry(pack: tar.Pack, planned: PlannedEntry): Promise<void> {
  const { entry } = planned;
  let sink!: ReturnType<tar.Pack['entry']>;
  const written = new Promise<void>((resolve, reject) => {
    sink = pack.entry({ name: entry.name, size: entry.size, mode: MODE, mtime: planned.mtime }, (error) => (error ? reject(error) : resolve()));
  });
  // Awaited below; until then a failure of the pack (its reader went away) must not go unhandled.
  written.catch(() => undefined);
  const hash = createHash('sha256');
  for await (const chunk of await planned.body()) {
    hash.update(chunk);
    if (!sink.write(chunk)) await Promise.race([once(sink, 'drain'), written]);
  }
  if (hash.digest('hex') !== entry.sha256) throw new IntegrityError(`${entry.name} does not match the digest the export recorded for it`);
  sink.end(null);
  await written;
}

/**
 * The tenant's archive as a stream, and its summary once the stream has been read to its end. The
 * reader must consume the stream; if it stops, the archive fails and its snapshot is released.
 */
export function tenantArchive(core: Core, actor: Actor, tenantId: string, options: { exportId: string; includeVersions: boolean }): { stream: Readable; summary: Promise<ArchiveSummary> } {
  const pack = tar.pack();
  const measured = meter();
  const stream = pipeline(Readable.from(pack, { objectMode: false }), measured.stream, () => undefined);
  const written = core.db
    .snapshot(async (db) => {
      const { manifest, planned } = await plan({ core, actor, tenantId, db }, options.exportId, options.includeVersions);
      const manifestBytes = Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`, 'utf8');
      const manifestSha256 = createHash('sha256').update(manifestBytes).digest('hex');
      await addEntry(pack, { entry: { name: MANIFEST_NAME, size: manifestBytes.length, sha256: manifestSha256 }, mtime: new Date(manifest.takenAt), body: async () => Readable.from([manifestBytes]) });
      for (const entry of planned) await addEntry(pack, entry);
      pack.finalize();
      return { manifest, manifestSha256 };
    })
    .catch((error: unknown) => {
      pack.destroy(error as Error);
      throw error;
    });
  const summary = Promise.all([written, finished(measured.stream)]).then(([done]) => ({ ...done, ...measured.result() }));
  return { stream, summary };
}
