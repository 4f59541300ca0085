// s3rver, a local S3 server keeping objects as files, for the S3 blob backend's tests, run in a
// child process (s3rver-child.ts says why). It stores each object as
// `<folder>/<bucket>/<key>._S3rver_object`, has no versioning and does not check SigV4 signatures,
// only that the access key id is its own (S3RVER).
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { S3BlobOptions } from '../../src/store/blob/s3.js';
import { tempDirs } from './cli-process.js';

const S3RVER_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

const CHILD = fileURLToPath(new URL('./s3rver-child.js', import.meta.url));

export interface S3Server {
  /** `http://127.0.0.1:PORT` */
  endpoint: string;
  /** Options for a bucket on this server, which is created if it does not exist. */
  options(bucket: string, prefix?: string): S3BlobOptions;
  /** Where s3rver keeps buckets and objects. */
  folder: string;
  /** Stops the server (SIGKILL: it holds nothing that needs a clean stop) and waits for its exit. */
  close(): Promise<void>;
}

const tempDir = tempDirs('strongroom-s3rver-');

/** The path s3rver stores an object's bytes at. */
export function s3rverObjectFile(folder: string, bucket: string, key: string): string {
  const segments = key.split('/');
  return join(folder, bucket, ...segments.slice(0, -1), `${segments.at(-1)!}._S3rver_object`);
}

export async function startS3Server(timeoutMs = 10_000): Promise<S3Server> {
  const folder = tempDir();
  const child = spawn(process.execPath, ['--openssl-legacy-provider', CHILD, folder], { stdio: ['ignore', 'pipe', 'pipe'] });
  // Last resort if a test dies before its cleanup: never leave a server running.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  void exited.then(() => process.removeListener('exit', killOnExit));
  const stderr: string[] = [];
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => stderr.push(chunk));
  const port = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`s3rver did not start within ${timeoutMs} ms\n${stderr.join('')}`));
    }, timeoutMs);
    let buffered = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk;
      const match = /^listening (\d+)$/m.exec(buffered);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`s3rver exited before listening\n${stderr.join('')}`));
    });
  });
  const endpoint = `http://127.0.0.1:${port}`;
  return {
    endpoint,
    folder,
    options(bucket, prefix = '') {
      // s3rver's store takes any folder at its top level for a bucket.
      mkdirSync(join(folder, bucket), { recursive: true });
      return { bucket, region: 'us-east-1', endpoint, forcePathStyle: true, prefix, credentials: S3RVER_CREDENTIALS, requestTimeoutMs: 10_000 };
    },
    async close() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}
