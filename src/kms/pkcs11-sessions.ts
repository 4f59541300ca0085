import pkcs11js from 'pkcs11js';
import type { PKCS11 } from 'pkcs11js';
import { ConfigError, UnavailableError } from '../errors.js';
import {
  PIN_REFUSED,
  attachModule,
  ckrCode,
  ckrName,
  detachModule,
  isSessionLost,
  reinitializeModule,
  tokenFailure,
  type LoadedModule,
} from './pkcs11-module.js';

type Handle = Buffer;

interface PooledSession {
  handle: Handle;
  /** The module generation and pool epoch it was opened in; from an older one it is not reused. */
  generation: number;
  epoch: number;
}

export interface SessionPoolOptions {
  library: string;
  tokenLabel: string;
  pin: string;
  size: number;
}

/**
 * A bounded pool of logged-in read/write sessions on the token with a given label. A PKCS#11 session
 * serves one operation at a time, so each call leases one; concurrency comes from having several.
 * After a failure that means the token went away, every session is dropped and the next call finds
 * the token again (re-initializing the module if need be) and logs in anew.
 */
export class SessionPool {
  /** A # field: util.inspect and JSON.stringify never show it, so it cannot reach a log. */
  readonly #pin: string;
  readonly tokenLabel: string;
  private readonly module: LoadedModule;
  private readonly size: number;
  private slot: Handle | null = null;
  private slotGeneration = -1;
  private idle: PooledSession[] = [];
  private opened = 0;
  private leased = 0;
  private epoch = 0;
  private waiters: (() => void)[] = [];
  private closed = false;
  private drained: (() => void) | undefined;
  /** Set once the token refuses the PIN: trying it again could lock the token. */
  private pinRefused = false;

  /** Attaches the module, finds the token and logs in: fails now if the token or the PIN is wrong. */
  static open(opts: SessionPoolOptions): SessionPool {
    const module = attachModule(opts.library);
    try {
      const pool = new SessionPool(module, opts);
      pool.idle.push(pool.openSession());
      pool.opened = 1;
      return pool;
    } catch (error) {
      detachModule(module);
      throw error;
    }
  }

  private constructor(module: LoadedModule, opts: SessionPoolOptions) {
    this.module = module;
    this.tokenLabel = opts.tokenLabel;
    this.#pin = opts.pin;
    this.size = opts.size;
  }

  get pkcs11(): PKCS11 {
    return this.module.pkcs11;
  }

  /** Runs `work` on a session of its own. PKCS#11 errors come out as our typed errors. */
  async use<T>(operation: string, work: (session: Handle) => T | Promise<T>): Promise<T> {
    const session = await this.acquire(operation);
    try {
      const result = await work(session.handle);
      this.release(session, true);
      return result;
    } catch (error) {
      const lost = isSessionLost(error) || error instanceof UnavailableError;
      if (lost) {
        // One dead session usually means all are: reconnect on the next call.
        this.epoch += 1;
        this.slot = null;
      }
      this.release(session, !lost);
      throw tokenFailure(error, this.tokenLabel, operation);
    }
  }

  /** Whether the token is still there; a search that finds nothing must not be taken for "no such key" during an outage. */
  tokenPresent(): boolean {
    if (this.slot === null) {
      return false;
    }
    try {
      return this.module.pkcs11.C_GetTokenInfo(this.slot).label.trimEnd() === this.tokenLabel;
    } catch {
      return false;
    }
  }

  describe(): string {
    const info = this.slot === null ? undefined : this.module.pkcs11.C_GetTokenInfo(this.slot);
    const model = info === undefined ? '' : ` (${info.manufacturerID.trim()} ${info.model.trim()})`;
    return `token "${this.tokenLabel}"${model}; ${this.opened} of ${this.size} sessions open`;
  }

  async close(): Promise<void> {
    if (this.closed) {
      return;
    }
    this.closed = true;
    for (const wake of this.waiters.splice(0)) {
      wake();
    }
    if (this.leased > 0) {
      // Finalizing the module under a call in progress would crash the process.
      await new Promise<void>((resolve) => (this.drained = resolve));
    }
    for (const session of this.idle.splice(0)) {
      this.discard(session);
    }
    detachModule(this.module);
  }

  private async acquire(operation: string): Promise<PooledSession> {
    for (;;) {
      if (this.closed) {
        throw new UnavailableError('the PKCS#11 KMS is closed');
      }
      const session = this.idle.pop();
      if (session !== undefined) {
        if (this.isCurrent(session)) {
          return this.lease(session);
        }
        this.discard(session);
        continue;
      }
      if (this.opened < this.size) {
        this.opened += 1;
        try {
          return this.lease(this.openSession());
        } catch (error) {
          this.opened -= 1;
          this.waiters.shift()?.();
          throw tokenFailure(error, this.tokenLabel, operation);
        }
      }
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  private lease(session: PooledSession): PooledSession {
    this.leased += 1;
    this.module.busy += 1;
    return session;
  }

  private release(session: PooledSession, healthy: boolean): void {
    this.leased -= 1;
    this.module.busy -= 1;
    if (healthy && !this.closed && this.isCurrent(session)) {
      this.idle.push(session);
    } else {
      this.discard(session);
    }
    this.waiters.shift()?.();
    if (this.closed && this.leased === 0) {
      this.drained?.();
    }
  }

  private isCurrent(session: PooledSession): boolean {
    return session.generation === this.module.generation && session.epoch === this.epoch;
  }

  private discard(session: PooledSession): void {
    this.opened -= 1;
    // After a re-initialization the handle may already name another user's new session: leave it.
    if (session.generation === this.module.generation) {
      try {
        this.module.pkcs11.C_CloseSession(session.handle);
      } catch {
        // Already gone with its token.
      }
    }
  }

  private openSession(): PooledSession {
    if (this.pinRefused) {
      throw pinRefusedError(this.tokenLabel, 'CKR_PIN_INCORRECT');
    }
    const pkcs11 = this.module.pkcs11;
    const slot = this.connect();
    let handle: Handle;
    try {
      handle = pkcs11.C_OpenSession(slot, pkcs11js.CKF_RW_SESSION | pkcs11js.CKF_SERIAL_SESSION);
    } catch (error) {
      this.slot = null;
      throw tokenFailure(error, this.tokenLabel, 'opening a session');
    }
    try {
      pkcs11.C_Login(handle, pkcs11js.CKU_USER, this.#pin);
    } catch (error) {
      // The login is per application: sessions opened after the first one share it.
      if (ckrCode(error) !== pkcs11js.CKR_USER_ALREADY_LOGGED_IN) {
        try {
          pkcs11.C_CloseSession(handle);
        } catch {
          // The session is of no use either way.
        }
        if (PIN_REFUSED.has(ckrCode(error) ?? 0)) {
          this.pinRefused = true;
          throw pinRefusedError(this.tokenLabel, ckrName(error) ?? 'CKR_PIN_INCORRECT');
        }
        this.slot = null;
        throw tokenFailure(error, this.tokenLabel, 'logging in');
      }
    }
    return { handle, generation: this.module.generation, epoch: this.epoch };
  }

  /** The slot of our token, found again after a failure; may re-initialize the module to see it. */
  private connect(): Handle {
    if (!this.module.initialized && !reinitializeModule(this.module)) {
      throw new UnavailableError(`the PKCS#11 module ${this.module.library} is not initialized; retry later`);
    }
    if (this.slot !== null && this.slotGeneration === this.module.generation) {
      return this.slot;
    }
    let slot = this.findSlot();
    if (slot === undefined && reinitializeModule(this.module)) {
      slot = this.findSlot();
    }
    if (slot === undefined) {
      throw new UnavailableError(`no token labelled "${this.tokenLabel}" is present in ${this.module.library}`);
    }
    this.slot = slot;
    this.slotGeneration = this.module.generation;
    return slot;
  }

  private findSlot(): Handle | undefined {
    const pkcs11 = this.module.pkcs11;
    let slots: Handle[];
    try {
      slots = pkcs11.C_GetSlotList(true);
    } catch {
      return undefined;
    }
    const matches = slots.filter((slot) => {
      try {
        return pkcs11.C_GetTokenInfo(slot).label.trimEnd() === this.tokenLabel;
      } catch {
        // A token that cannot be read now is not one we can use.
        return false;
      }
    });
    if (matches.length > 1) {
      throw new ConfigError('kms.pkcs11.tokenLabel', `${matches.length} tokens are labelled "${this.tokenLabel}"; the label must name one`);
    }
    return matches[0];
  }
}

function pinRefusedError(tokenLabel: string, reason: string): ConfigError {
  return new ConfigError(
    'kms.pkcs11.pin',
    `token "${tokenLabel}" refused the PIN (${reason}); correct it and restart: retrying could lock the token`,
  );
}
