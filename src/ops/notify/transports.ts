import { readFileSync } from 'node:fs';
import type { Config } from '../../config/schema.js';
import type { Core } from '../../core/context.js';
import { notificationRecipients } from '../../core/members.js';
import { auditedSecretStore } from '../../core/open-core.js';
import { resolveSecrets } from '../../secrets/resolve.js';
import { createMailer } from './email.js';
import { checkSmtpHost, egressRequest } from './egress.js';
import { renderNotification } from './templates.js';
import type { Transports } from './deliveries.js';

/**
 * The configured ways out: webhooks through the egress-checked HTTPS client, e-mail through the
 * SMTP server (connected at an address the egress policy allows), or no e-mail when none is set.
 */
export async function configuredTransports(core: Core, unresolved: Config): Promise<Transports> {
  // The SMTP password is a `secret:NAME` reference; opening it is audited in the system chain.
  const config = await resolveSecrets(unresolved, auditedSecretStore(core, unresolved.secrets.file!));
  const policy = config.egress;
  const { smtp } = config;
  const egressCa = policy.caFile === null ? null : [readFileSync(policy.caFile)];
  const mailer =
    smtp.host === null || smtp.from === null
      ? null
      : createMailer(
          { host: smtp.host, port: smtp.port, security: smtp.security, username: smtp.username, password: smtp.password, from: smtp.from, ca: smtp.caFile === null ? null : [readFileSync(smtp.caFile)] },
          { connectTo: (host: string) => checkSmtpHost(policy, host), timeoutMs: policy.timeoutMs },
        );
  const tenantName = async (tenantId: string | null) =>
    tenantId === null ? null : ((await core.db.reader.selectFrom('tenants').select('name').where('id', '=', tenantId).executeTakeFirst())?.name ?? null);
  return {
    webhook: async (url, headers, body) => egressRequest(policy, url, { method: 'POST', headers, body, ...(egressCa ? { ca: egressCa } : {}) }),
    email:
      mailer === null
        ? null
        : async (message) => {
            const rendered = renderNotification(message.event, { tenantName: await tenantName(message.tenantId), tenantId: message.tenantId, linkUrl: config.notifications.linkUrl, details: message.details });
            await mailer.send({ id: message.id, to: message.to, ...rendered });
          },
    tenantRecipients: (tenantId) => notificationRecipients(core, tenantId),
    operatorEmails: config.notifications.operatorEmails,
  };
}
