import type { Tx } from '../../store/db/group-commit.js';
import { randomId } from '../ids.js';

/** Events that tell people something, by e-mail and signed webhooks. */
export const NOTIFICATION_EVENTS = [
  'access.requested',
  'access.approved',
  'access.breakglass',
  'tenant.terminated',
  'tenant.purge_scheduled',
  'tenant.purged',
  'recovery.drill_failed',
  'webhook.test',
] as const;
export type NotificationEvent = (typeof NOTIFICATION_EVENTS)[number];

/**
 * Queues a notification in the caller's transaction: it exists exactly when the event does. The
 * payload names ids only; the deliverer reads what it needs, so no customer data waits here in clear.
 */
export async function enqueueNotification(
  tx: Tx,
  now: number,
  notification: { tenantId: string | null; event: NotificationEvent; payload: Record<string, string | number | boolean> },
): Promise<string> {
  const id = `n_${randomId(10)}`;
  await tx
    .insertInto('outbox')
    .values({
      id,
      tenant_id: notification.tenantId,
      event_type: notification.event,
      payload: JSON.stringify(notification.payload),
      status: 'pending',
      attempts: 0,
      created_at: now,
      next_attempt_at: now,
      expanded_at: null,
    })
    .execute();
  return id;
}
