/**
 * What notification e-mails say: short and factual — what happened, when, who (an operator
 * pseudonym, a request id) and what the reader can do. Only ids, times and the tenant name are
 * interpolated, never customer data.
 */

/** Values a template may mention. */
export interface NotificationContext {
  tenantName: string | null;
  tenantId: string | null;
  /** The console e-mails link back to (`notifications.linkUrl`); only an https URL is linked. */
  linkUrl: string | null;
  /**
   * Ids and times, by name: `operatorId` (the `op_…` pseudonym), `actorId` (who approved or
   * terminated), `requestId`, `scope`, `durationMinutes`, `breakGlass`, `occurredAt`, `expiresAt`,
   * `purgeAt` (times as ISO strings or epoch milliseconds). A template leaves out what is missing.
   */
  details: Record<string, string | number | boolean>;
}

export interface RenderedNotification {
  subject: string;
  text: string;
  html: string;
}

/** A piece of a message in both forms; interpolated values are made one line, and escaped in the HTML form. */
interface Fragment {
  text: string;
  html: string;
}

type Template = (facts: Facts) => { subject: Fragment; paragraphs: (Fragment | null)[] };

/**
 * Renders the e-mail for a notification event; an unknown event gets a generic message naming it.
 *
 * @example
 * const mail = renderNotification('access.approved', { tenantName: 'Acme', tenantId: 't_1', linkUrl: 'https://console.example.com',
 *   details: { operatorId: 'op_2', requestId: 'ar_3', occurredAt: Date.now() } });
 */
export function renderNotification(event: string, context: NotificationContext): RenderedNotification {
  const template = TEMPLATES.get(event) ?? genericTemplate(event);
  const { subject, paragraphs } = template(new Facts(context));
  const body = paragraphs.filter((p): p is Fragment => p !== null);
  const link = safeLink(context.linkUrl);
  const text = [...body.map((p) => p.text), ...(link ? [`Console: ${link}`] : [])].join('\n\n');
  const html = [
    '<!doctype html><html lang="en"><body style="font-family:sans-serif;line-height:1.5">',
    ...body.map((p) => `<p>${p.html}</p>`),
    ...(link ? [`<p><a href="${escapeHtml(link)}">Open the console</a></p>`] : []),
    '</body></html>',
  ].join('\n');
  return { subject: `[Strongroom] ${subject.text}`, text: `${text}\n`, html: `${html}\n` };
}

// A Map, not an object: an event named `constructor` or `__proto__` must not find Object's members.
const TEMPLATES = new Map<string, Template>(Object.entries({
  'access.requested': (f) => ({
    subject: say`Access to ${f.tenantShort} requested by operator ${f.operator}${f.flag('breakGlass') ? ' (break-glass)' : ''}`,
    paragraphs: [
      say`Operator ${f.operator} asked to access the data of ${f.tenant}${f.at('occurredAt', ' on ')}.`,
      f.requestSummary(),
      f.flag('breakGlass')
        ? say`This is a break-glass request: a second operator with the security role may approve it without you, and you will be told if that happens. You can deny it in the console.`
        : say`Nothing is granted until an admin of ${f.tenantShort} approves. Approve or deny the request in the console.`,
    ],
  }),
  'access.approved': (f) => ({
    subject: say`Access to ${f.tenantShort} granted to operator ${f.operator}`,
    paragraphs: [
      say`Operator ${f.operator} may access the data of ${f.tenant}${f.at('expiresAt', ' until ')}${f.who(', approved by ')}.`,
      f.requestSummary(),
      say`Every access is in your audit log. To end the grant early, revoke it in the console.`,
    ],
  }),
  'access.breakglass': (f) => ({
    subject: say`Emergency access to ${f.tenantShort} granted to operator ${f.operator} (break-glass)`,
    paragraphs: [
      say`Operator ${f.operator} was given emergency access to the data of ${f.tenant}${f.at('occurredAt', ' on ')}${f.who(' by ')}, without the approval of your admins (break-glass)${f.at('expiresAt', '; the grant ends ')}.`,
      f.requestSummary(),
      say`Every access is in your audit log. If you did not expect this, revoke the grant in the console and contact your provider's security team.`,
    ],
  }),
  'tenant.terminated': (f) => ({
    subject: say`${f.tenantShort} was terminated`,
    paragraphs: [
      say`${f.tenant} was terminated${f.at('occurredAt', ' on ')}${f.who(' by ')}. Its data can no longer be read or written.`,
      say`All its data will be deleted${f.at('purgeAt', ' on ')}. If the termination was a mistake, contact your provider before then.`,
    ],
  }),
  'tenant.purge_scheduled': (f) => ({
    subject: say`The data of ${f.tenantShort} will be deleted${f.at('purgeAt', ' on ')}`,
    paragraphs: [
      say`The purge of ${f.tenant} is scheduled${f.at('purgeAt', ' for ')}: its keys will be destroyed, after which no copy of its data, backups included, can be read.`,
      say`If this is a mistake, contact your provider before then.`,
    ],
  }),
  'tenant.purged': (f) => ({
    subject: say`The data of ${f.tenantShort} was deleted`,
    paragraphs: [
      say`${f.tenant} was purged${f.at('occurredAt', ' on ')}: its keys were destroyed, so no copy of its data, backups included, can be read, and its records and files were deleted.`,
      say`Nothing more needs to be done.`,
    ],
  }),
  'webhook.test': (f) => ({
    subject: say`Test notification`,
    paragraphs: [
      say`This is a test message${f.at('occurredAt', ', sent on ')}. It shows that notifications for ${f.tenant} reach you; nothing happened to any data.`,
    ],
  }),
} satisfies Record<string, Template>));

function genericTemplate(event: string): Template {
  return (f) => ({
    subject: f.hasTenant ? say`Notification: ${event} for ${f.tenantShort}` : say`Notification: ${event}`,
    paragraphs: [say`Event ${event} happened for ${f.tenant}${f.at('occurredAt', ' on ')}.`, f.listDetails()],
  });
}

/** The context as the phrases templates use, each one line. */
class Facts {
  /** The tenant's name with its id, for the body. */
  readonly tenant: string;
  /** The tenant's name alone (or its id), for subjects and short mentions. */
  readonly tenantShort: string;
  readonly operator: string;
  readonly hasTenant: boolean;

  constructor(private readonly context: NotificationContext) {
    const name = context.tenantName || null;
    const id = context.tenantId || null;
    const deployment = 'your Strongroom deployment';
    this.hasTenant = name !== null || id !== null;
    this.tenant = name && id ? `${name} (tenant ${id})` : name ?? (id ? `tenant ${id}` : deployment);
    this.tenantShort = name ?? id ?? deployment;
    this.operator = this.detail('operatorId') ?? 'unknown';
  }

  detail(key: string): string | null {
    const value = this.context.details[key];
    return value === undefined || value === '' ? null : oneLine(String(value));
  }

  flag(key: string): boolean {
    return this.context.details[key] === true;
  }

  /** `prefix` and the time under `key`, or nothing when it is missing. */
  at(key: string, prefix: string): Fragment | string {
    const value = this.context.details[key];
    return value === undefined ? '' : say`${prefix}${formatTime(value)}`;
  }

  /** `prefix` and who acted (approved, terminated), or nothing when it is missing. */
  who(prefix: string): Fragment | string {
    const actor = this.detail('actorId');
    return actor ? say`${prefix}${actor}` : '';
  }

  requestSummary(): Fragment | null {
    const request = this.detail('requestId');
    if (!request) return null;
    const scope = this.detail('scope');
    const minutes = this.detail('durationMinutes');
    return say`Request: ${request}${scope ? say`, scope ${scope}` : ''}${minutes ? say`, for ${minutes} minutes` : ''}.`;
  }

  listDetails(): Fragment | null {
    const entries = Object.keys(this.context.details).map((key) => `${oneLine(key)}: ${this.detail(key) ?? ''}`);
    return entries.length === 0 ? null : say`Details: ${entries.join('; ')}.`;
  }
}

/** Builds a fragment; literal parts are trusted markup, values are not. */
function say(strings: TemplateStringsArray, ...values: (string | Fragment)[]): Fragment {
  let text = strings[0] ?? '';
  let html = text;
  values.forEach((value, i) => {
    const literal = strings[i + 1] ?? '';
    const piece = typeof value === 'string' ? { text: oneLine(value), html: escapeHtml(oneLine(value)) } : value;
    text += piece.text + literal;
    html += piece.html + literal;
  });
  return { text, html };
}

/** A value with a line break could forge headers in the subject (header injection) or lines in the body. */
function oneLine(value: string): string {
  // eslint-disable-next-line no-control-regex
  return value.replace(/[\u0000-\u001f\u007f\u0085\u2028\u2029]+/g, ' ');
}

function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function formatTime(value: string | number | boolean): string {
  const date = typeof value === 'boolean' ? null : new Date(value);
  if (!date || Number.isNaN(date.getTime())) return String(value);
  return `${date.toISOString().slice(0, 16).replace('T', ' at ')} UTC`;
}

/** Only an https URL becomes a link: a `javascript:` or `data:` one in a mail client is an attack. */
function safeLink(url: string | null): string | null {
  if (url === null || !/^https:\/\//i.test(url) || !URL.canParse(url)) return null;
  return new URL(url).href;
}
