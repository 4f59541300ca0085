// s3rver in a process of its own, started by s3-server.ts with --openssl-legacy-provider: s3rver
// makes ListObjectsV2 continuation tokens with DES, which OpenSSL 3 keeps in its legacy provider,
// so without the flag every listing longer than a page fails with 500 InternalError.
import S3rver from 's3rver';

const folder = process.argv[2];
if (!folder) throw new Error('usage: s3rver-child.js FOLDER');
const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: folder });
const { port } = await server.run();
process.stdout.write(`listening ${port}\n`);
