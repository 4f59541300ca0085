import type { Database } from '../store/db/open.js';

/**
 * Which data key each tenant encrypts new data under: its newest data key. Looked up once per tenant
 * and remembered for `ttlMs`, so another instance's rotation is seen within that time; this is why
 * re-encryption retires an old key only once the new one is older than `ttlMs`.
 */
export class CurrentDataKeys {
  /** Map order is insertion order: past `maxEntries`, the oldest lookup is dropped. */
  private readonly cached = new Map<string, { keyId: number; expiresAt: number }>();

  constructor(
    private readonly db: Pick<Database, 'reader'>,
    readonly ttlMs: number,
    private readonly maxEntries: number,
    private readonly now: () => number,
  ) {}

  /** The remembered key id, or undefined; never allocates a promise (the write path asks every time). */
  getSync(tenantId: string): number | undefined {
    const entry = this.cached.get(tenantId);
    if (entry === undefined || this.now() >= entry.expiresAt) return undefined;
    return entry.keyId;
  }

  /** The tenant's newest data key id; null when the tenant has no data key (it does not exist). */
  async get(tenantId: string): Promise<number | null> {
    const known = this.getSync(tenantId);
    if (known !== undefined) return known;
    const row = await this.db.reader
      .selectFrom('data_keys')
      .select((eb) => eb.fn.max('key_id').as('key_id'))
      .where('tenant_id', '=', tenantId)
      .where('purpose', '=', 'data')
      .executeTakeFirst();
    if (row?.key_id === undefined || row.key_id === null) return null;
    const keyId = Number(row.key_id);
    this.cached.delete(tenantId);
    this.cached.set(tenantId, { keyId, expiresAt: this.now() + this.ttlMs });
    if (this.cached.size > this.maxEntries) this.cached.delete(this.cached.keys().next().value!);
    return keyId;
  }

  /** Forgets the tenant's entry, after this instance rotated its data key or purged it. */
  forget(tenantId: string): void {
    this.cached.delete(tenantId);
  }
}
