// A proxy in front of an S3 server that flips one bit at the start of every PUT body (a whole
// object or a multipart part): the service stores bytes other than those sent, as a faulty disk,
// NIC or middlebox would, so a test can show that a put notices. s3rver ignores Content-MD5, so the
// damaged bytes are stored and only the ETag check can catch them.
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface CorruptingProxy {
  /** `http://127.0.0.1:PORT` */
  endpoint: string;
  close(): Promise<void>;
}

export async function startCorruptingProxy(target: string): Promise<CorruptingProxy> {
  const server = createServer((incoming, outgoing) => {
    const upstream = request(new URL(incoming.url ?? '/', target), { method: incoming.method, headers: incoming.headers }, (answer) => {
      outgoing.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(outgoing);
    });
    upstream.on('error', () => outgoing.destroy());
    let flipped = incoming.method !== 'PUT';
    incoming.on('data', (chunk: Buffer) => {
      if (!flipped && chunk.length > 0) {
        chunk = Buffer.from(chunk);
        chunk[0]! ^= 1;
        flipped = true;
      }
      upstream.write(chunk);
    });
    incoming.on('end', () => upstream.end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve()))),
  };
}
