// A customer's webhook endpoint: HTTPS on 127.0.0.1 with its own CA, recording what arrives and
// verifying signatures the way the Standard Webhooks libraries do, from the secret alone.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { ensureLocalTls } from '../../src/http/tls/local-ca.js';
import { tempDirs } from './cli-process.js';

const tempDir = tempDirs('strongroom-webhook-receiver-');

export interface Received {
  headers: Record<string, string>;
  body: string;
  /** What the receiver answered. */
  status?: number;
}

export interface WebhookReceiver {
  /** `https://127.0.0.1:PORT/hook` */
  url: string;
  caFile: string;
  received: Received[];
  /** The status it answers with: 204, or e.g. 503 to play an outage. */
  status: number;
  /** Resolves once `count` deliveries have arrived (whatever the status answered). */
  waitFor(count: number, timeoutMs?: number): Promise<void>;
  /** The webhook-ids of deliveries it answered with a 2xx. */
  acceptedIds(): Set<string>;
  close(): Promise<void>;
}

export async function startWebhookReceiver(): Promise<WebhookReceiver> {
  const tls = await ensureLocalTls(tempDir(), { hostnames: ['localhost', '127.0.0.1'] });
  const receiver = { received: [] as Received[], status: 204 } as WebhookReceiver;
  const server: Server = createServer({ cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile) }, (request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      receiver.received.push({ headers: request.headers as Record<string, string>, body: Buffer.concat(chunks).toString('utf8'), status: receiver.status });
      response.writeHead(receiver.status).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  receiver.url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  receiver.caFile = tls.caCertFile;
  receiver.waitFor = async (count, timeoutMs = 20_000) => {
    const deadline = Date.now() + timeoutMs;
    while (receiver.received.length < count) {
      if (Date.now() > deadline) throw new Error(`only ${receiver.received.length} of ${count} webhook deliveries arrived`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  receiver.acceptedIds = () => new Set(receiver.received.filter((r) => r.status! < 300).map((r) => r.headers['webhook-id']!));
  receiver.close = () => new Promise((resolve) => server.close(() => resolve()));
  return receiver;
}

/**
 * What a customer's endpoint does with a delivery: recompute the HMAC over `id.timestamp.body` with
 * the base64 secret after `whsec_`, compare in constant time with each `v1,` signature, and refuse a
 * timestamp more than `toleranceSeconds` from now (replays).
 */
export function verifyWebhook(secret: string, delivery: Received, nowSeconds: number, toleranceSeconds = 300): boolean {
  const id = delivery.headers['webhook-id'];
  const timestamp = Number(delivery.headers['webhook-timestamp']);
  if (!id || !Number.isInteger(timestamp) || Math.abs(nowSeconds - timestamp) > toleranceSeconds) return false;
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  const expected = createHmac('sha256', key).update(`${id}.${timestamp}.${delivery.body}`).digest();
  return (delivery.headers['webhook-signature'] ?? '').split(' ').some((candidate) => {
    const [version, signature] = candidate.split(',');
    const given = Buffer.from(signature ?? '', 'base64');
    return version === 'v1' && given.length === expected.length && timingSafeEqual(given, expected);
  });
}
