import type { Tx } from '../store/db/group-commit.js';
import { randomId } from './ids.js';

/** Events that tell people something; the notifications issue delivers them. */
export type NotificationEvent = 'access.requested' | 'access.approved' | 'access.breakglass';

/**
 * Queues a notification in the caller's transaction: it exists exactly when the event does. The
 * payload names ids only; the deliverer reads what it needs, so no customer data waits here in clear.
 */
export async function enqueueNotification(
  tx: Tx,
  now: number,
  notification: { tenantId: string | null; event: NotificationEvent; payload: Record<string, string | number | boolean> },
): Promise<void> {
  await tx
    .insertInto('outbox')
    .values({
      id: `n_${randomId(10)}`,
      tenant_id: notification.tenantId,
      event_type: notification.event,
      payload: JSON.stringify(notification.payload),
      status: 'pending',
      attempts: 0,
      created_at: now,
      next_attempt_at: now,
    })
    .execute();
}
