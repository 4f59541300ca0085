/**
 * The smallest Reflect metadata API that @peculiar/x509's dependency injector (tsyringe) needs at
 * import time. tsyringe refuses to load without one; x509 never asks it for constructor parameter
 * types, so a WeakMap store is enough. Installed only when no polyfill (reflect-metadata) is present.
 * Import this module before @peculiar/x509 (`x509.ts` does).
 */
type MetadataStore = WeakMap<object, Map<string | symbol | undefined, Map<unknown, unknown>>>;

interface ReflectMetadataApi {
  getMetadata(key: unknown, target: object, property?: string | symbol): unknown;
  getOwnMetadata(key: unknown, target: object, property?: string | symbol): unknown;
  defineMetadata(key: unknown, value: unknown, target: object, property?: string | symbol): void;
}

const reflect = Reflect as typeof Reflect & Partial<ReflectMetadataApi>;

if (typeof reflect.getMetadata !== 'function') {
  const store: MetadataStore = new WeakMap();

  const ownMap = (target: object, property: string | symbol | undefined, create: boolean) => {
    let byProperty = store.get(target);
    if (!byProperty) {
      if (!create) return undefined;
      byProperty = new Map();
      store.set(target, byProperty);
    }
    let byKey = byProperty.get(property);
    if (!byKey && create) {
      byKey = new Map();
      byProperty.set(property, byKey);
    }
    return byKey;
  };

  const api: ReflectMetadataApi = {
    getOwnMetadata: (key, target, property) => ownMap(target, property, false)?.get(key),
    getMetadata(key, target, property) {
      // Like reflect-metadata: look up the prototype chain.
      for (let t: object | null = target; t !== null; t = Object.getPrototypeOf(t) as object | null) {
        const own = ownMap(t, property, false);
        if (own?.has(key)) return own.get(key);
      }
      return undefined;
    },
    defineMetadata(key, value, target, property) {
      ownMap(target, property, true)?.set(key, value);
    },
  };
  for (const [name, fn] of Object.entries(api)) {
    Object.defineProperty(Reflect, name, { value: fn, writable: true, configurable: true });
  }
}

export {};
