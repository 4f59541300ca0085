/**
 * @peculiar/x509, loaded after the Reflect metadata polyfill its dependency injection needs and
 * bound to node's WebCrypto. Every module of ours that builds certificates imports x509 from here.
 */
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto);

export { x509 };
