import { realpathSync } from 'node:fs';
import pkcs11js from 'pkcs11js';
import type { PKCS11 } from 'pkcs11js';
import { ConfigError, StrongroomError, UnavailableError } from '../errors.js';

/*
 * A PKCS#11 module is one per process whatever the number of handles on it: dlopen returns the same
 * library, and C_Initialize/C_Finalize act on all of it. This registry counts its users and finalizes
 * it after the last one, and re-initializes it to recover from a lost token (some modules, SoftHSM2
 * among them, only see a token again after C_Finalize and C_Initialize).
 */

export interface LoadedModule {
  readonly library: string;
  readonly pkcs11: PKCS11;
  users: number;
  /** Calls in progress on this module's sessions: it must not be finalized under them. */
  busy: number;
  /** Bumped by each re-initialization: every session handle from before is void (and may be reused). */
  generation: number;
  initialized: boolean;
  lastReinitialized: number;
}

/** At most one re-initialization per this interval, so that an outage under load is not a storm of them. */
const REINITIALIZE_INTERVAL_MS = 1000;

const modules = new Map<string, LoadedModule>();

/** Loads and initializes the module at `library`, or takes one more use of it. */
export function attachModule(library: string): LoadedModule {
  // Two paths to one file (a symlink) are still one module.
  const key = realpathOrSelf(library);
  let module = modules.get(key);
  if (module === undefined) {
    const pkcs11 = new pkcs11js.PKCS11();
    try {
      pkcs11.load(library);
    } catch (error) {
      throw new ConfigError('kms.pkcs11.library', `cannot load the PKCS#11 module ${library}: ${describe(error)}`);
    }
    module = { library, pkcs11, users: 0, busy: 0, generation: 0, initialized: false, lastReinitialized: 0 };
    modules.set(key, module);
  }
  if (!module.initialized) {
    initialize(module);
  }
  module.users += 1;
  return module;
}

/** Gives up one use; the last one finalizes the module. It stays loaded for the next user to initialize again. */
export function detachModule(module: LoadedModule): void {
  module.users -= 1;
  if (module.users === 0 && module.initialized) {
    module.initialized = false;
    module.generation += 1;
    try {
      module.pkcs11.C_Finalize();
    } catch {
      // Nothing left to release if the module is already finalized or broken.
    }
  }
}

/**
 * Finalizes and initializes the module again, unless a call is in progress or it was done less than a
 * second ago. Returns whether it did.
 */
export function reinitializeModule(module: LoadedModule): boolean {
  const now = Date.now();
  if (module.busy > 0 || now - module.lastReinitialized < REINITIALIZE_INTERVAL_MS) {
    return false;
  }
  module.lastReinitialized = now;
  if (module.initialized) {
    module.initialized = false;
    try {
      module.pkcs11.C_Finalize();
    } catch {
      // A broken module may refuse to finalize; initializing again is what matters.
    }
  }
  module.generation += 1;
  initialize(module);
  return true;
}

/** The `CKR_*` name of a PKCS#11 error, e.g. CKR_SESSION_HANDLE_INVALID; undefined for other errors. */
export function ckrName(error: unknown): string | undefined {
  if (!(error instanceof pkcs11js.Pkcs11Error)) {
    return undefined;
  }
  return /CKR_[A-Z0-9_]+/.exec(error.message)?.[0] ?? `CKR 0x${error.code.toString(16)}`;
}

export function ckrCode(error: unknown): number | undefined {
  return error instanceof pkcs11js.Pkcs11Error ? error.code : undefined;
}

/** Return values that mean the token, its sessions or the module are gone or failing: every session may be dead. */
const SESSION_LOST = new Set([
  pkcs11js.CKR_GENERAL_ERROR,
  pkcs11js.CKR_FUNCTION_FAILED,
  pkcs11js.CKR_DEVICE_ERROR,
  pkcs11js.CKR_DEVICE_MEMORY,
  pkcs11js.CKR_DEVICE_REMOVED,
  pkcs11js.CKR_TOKEN_NOT_PRESENT,
  pkcs11js.CKR_TOKEN_NOT_RECOGNIZED,
  pkcs11js.CKR_SLOT_ID_INVALID,
  pkcs11js.CKR_SESSION_CLOSED,
  pkcs11js.CKR_SESSION_COUNT,
  pkcs11js.CKR_SESSION_HANDLE_INVALID,
  pkcs11js.CKR_USER_NOT_LOGGED_IN,
  pkcs11js.CKR_CRYPTOKI_NOT_INITIALIZED,
]);

/** An object found a moment ago was destroyed since (by another session or process): worth a retry. */
const OBJECT_GONE = new Set([pkcs11js.CKR_OBJECT_HANDLE_INVALID, pkcs11js.CKR_KEY_HANDLE_INVALID]);

export function isSessionLost(error: unknown): boolean {
  return SESSION_LOST.has(ckrCode(error) ?? 0);
}

export function isObjectGone(error: unknown): boolean {
  return OBJECT_GONE.has(ckrCode(error) ?? 0);
}

export const PIN_REFUSED = new Set([
  pkcs11js.CKR_PIN_INCORRECT,
  pkcs11js.CKR_PIN_INVALID,
  pkcs11js.CKR_PIN_LEN_RANGE,
  pkcs11js.CKR_PIN_EXPIRED,
  pkcs11js.CKR_PIN_LOCKED,
]);

/**
 * Our error for a failed PKCS#11 call. Messages are built from the CKR name and our own words only:
 * nothing a caller passed (a PIN) can reach a log through them.
 */
export function tokenFailure(error: unknown, tokenLabel: string, operation: string): StrongroomError {
  if (error instanceof StrongroomError) {
    return error;
  }
  const reason = ckrName(error) ?? (error instanceof Error ? error.name : 'unknown error');
  if (isSessionLost(error) || isObjectGone(error)) {
    return new UnavailableError(`the PKCS#11 token "${tokenLabel}" is unavailable (${reason} on ${operation}); retry later`);
  }
  return new StrongroomError('internal', `PKCS#11 ${operation} on token "${tokenLabel}" failed: ${reason}`);
}

function initialize(module: LoadedModule): void {
  try {
    // Without OS locking the module is not thread-safe, and async calls on several sessions crash the process.
    module.pkcs11.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  } catch (error) {
    // Already initialized by another user in this process: the module is shared either way.
    if (ckrCode(error) !== pkcs11js.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
      throw new UnavailableError(`the PKCS#11 module ${module.library} did not initialize (${ckrName(error) ?? describe(error)})`);
    }
  }
  module.initialized = true;
}

function realpathOrSelf(library: string): string {
  try {
    return realpathSync(library);
  } catch {
    // A bare name for the dynamic loader to find, or a missing file that load() will report.
    return library;
  }
}

function describe(error: unknown): string {
  return ckrName(error) ?? (error instanceof Error ? error.message : String(error));
}
