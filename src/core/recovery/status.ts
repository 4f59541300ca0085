import { authorize } from '../../policy/authorize.js';
import type { Core, Principal } from '../context.js';
import { shippingStatus, type ShippingStatus } from './ship.js';

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

export interface RecoveryStatus {
  shipping: Omit<ShippingStatus, 'lastShippedAt'> & { lastShippedAt: string | null };
  backups: { count: number; latest: { backupId: string; seq: number; takenAt: string; bytes: number; parts: number } | null };
  drills: {
    /** Seconds since the newest drill that verified a restore; null when none has. */
    lastVerifiedRestoreAgeSeconds: number | null;
    recent: { drillId: string; kind: string; tenantId: string | null; ok: boolean; seq: number; durationMs: number; finishedAt: string; detail: string }[];
  };
}

/** Where recovery stands: how far shipping lags, the newest backup, and what the drills found. */
export async function recoveryStatus(core: Core, principal: Principal): Promise<RecoveryStatus> {
  authorize(principal, 'ops.read', { tenantId: null });
  const shipping = await shippingStatus(core);
  const backups = await core.db.reader.selectFrom('backups').selectAll().where('pruned_at', 'is', null).orderBy('seq', 'desc').execute();
  const drills = await core.db.reader.selectFrom('restore_drills').selectAll().orderBy('finished_at', 'desc').limit(10).execute();
  const verified = await core.db.reader.selectFrom('restore_drills').select('finished_at').where('ok', '=', 1).orderBy('finished_at', 'desc').limit(1).executeTakeFirst();
  const latest = backups[0];
  return {
    shipping: { ...shipping, lastShippedAt: iso(shipping.lastShippedAt) },
    backups: {
      count: backups.length,
      latest: latest ? { backupId: latest.backup_id, seq: Number(latest.seq), takenAt: iso(Number(latest.taken_at))!, bytes: Number(latest.bytes), parts: Number(latest.parts) } : null,
    },
    drills: {
      lastVerifiedRestoreAgeSeconds: verified ? Math.max(0, Math.round((core.now() - Number(verified.finished_at)) / 1000)) : null,
      recent: drills.map((d) => ({
        drillId: d.drill_id,
        kind: d.kind,
        tenantId: d.tenant_id,
        ok: d.ok === 1,
        seq: Number(d.seq),
        durationMs: Number(d.finished_at) - Number(d.started_at),
        finishedAt: iso(Number(d.finished_at))!,
        detail: d.detail,
      })),
    },
  };
}
