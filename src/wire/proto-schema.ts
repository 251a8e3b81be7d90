/**
 * The message, enum and service types of a protobuf.js JSON descriptor (for CRI the committed
 * src/cri/proto/descriptor.json, see src/cri/schema.ts), resolved once into plain tables for
 * proto-codec.ts and its callers (the CRI client; a ttrpc client would be another).
 * Only what proto3 CRI needs: scalars, enums, nested messages, repeated, maps, oneofs; no groups,
 * no extensions, no proto2 defaults.
 *
 * Lifecycle: `new Schema(json)` walks the descriptor (cheap); a message's fields are resolved the
 * first time proto-codec.ts uses the type (`fieldsOf`), so a CLI call pays only for the types it sends
 * and receives.
 */
import { InternalError } from '../errors.ts';

export type ScalarType =
  | 'double' | 'float' | 'int32' | 'uint32' | 'sint32' | 'fixed32' | 'sfixed32'
  | 'int64' | 'uint64' | 'sint64' | 'fixed64' | 'sfixed64' | 'bool' | 'string' | 'bytes';

const SCALARS = new Set<string>([
  'double', 'float', 'int32', 'uint32', 'sint32', 'fixed32', 'sfixed32',
  'int64', 'uint64', 'sint64', 'fixed64', 'sfixed64', 'bool', 'string', 'bytes',
]);

export interface EnumType {
  kind: 'enum';
  fullName: string;
  /** name → number, in declaration order. */
  values: Map<string, number>;
  /** number → name (the last name declared for a number, as protobuf.js keeps it). */
  names: Map<number, string>;
  /** The first declared value: proto3's default. */
  defaultValue: number;
}

export interface Field {
  /** lowerCamelCase, as in the descriptor. */
  name: string;
  id: number;
  /** `.pkg.Message.field`, for error messages. */
  fullName: string;
  repeated: boolean;
  /** For maps: the key's scalar type; `type` is then the value's type. */
  keyType: ScalarType | null;
  /** A scalar, or the resolved message or enum. */
  type: ScalarType | MessageType | EnumType;
  /** The oneof this field belongs to, if any. */
  oneof: string | null;
}

export interface MessageType {
  kind: 'message';
  fullName: string;
  /** Resolved on first use (see fieldsOf). */
  fields: Field[] | null;
  byId: Map<number, Field> | null;
  /** Raw descriptor parts, until resolved. */
  raw: { fields: Record<string, RawField>; oneofs: Record<string, { oneof: string[] }> };
}

export interface Method {
  /** lowerCamelCase, as grpc-js names client methods (`runPodSandbox`). */
  name: string;
  /** `/runtime.v1.RuntimeService/RunPodSandbox`. */
  path: string;
  request: MessageType;
  response: MessageType;
  responseStream: boolean;
  requestStream: boolean;
}

export interface Service {
  fullName: string;
  methods: Map<string, Method>;
}

interface RawField { type: string; id: number; rule?: string; keyType?: string; options?: Record<string, unknown> }
interface RawMethod { requestType: string; responseType: string; requestStream?: boolean; responseStream?: boolean }
interface RawNamespace {
  nested?: Record<string, RawNamespace>;
  fields?: Record<string, RawField>;
  oneofs?: Record<string, { oneof: string[] }>;
  values?: Record<string, number>;
  methods?: Record<string, RawMethod>;
}

export class Schema {
  readonly #types = new Map<string, MessageType | EnumType>();
  readonly #services = new Map<string, Service>();

  constructor(descriptor: unknown) {
    const pendingServices: [string, Record<string, RawMethod>][] = [];
    const walk = (ns: RawNamespace, prefix: string): void => {
      for (const [name, node] of Object.entries(ns.nested ?? {})) {
        const fullName = `${prefix}.${name}`;
        if (node.fields) {
          this.#types.set(fullName, { kind: 'message', fullName, fields: null, byId: null, raw: { fields: node.fields, oneofs: node.oneofs ?? {} } });
        } else if (node.values) {
          const values = new Map(Object.entries(node.values));
          const names = new Map<number, string>();
          for (const [k, v] of values) names.set(v, k);
          const first = values.values().next();
          this.#types.set(fullName, { kind: 'enum', fullName, values, names, defaultValue: first.done ? 0 : first.value });
        } else if (node.methods) {
          pendingServices.push([fullName, node.methods]);
        }
        walk(node, fullName);
      }
    };
    walk(descriptor as RawNamespace, '');
    for (const [fullName, methods] of pendingServices) {
      const scope = fullName.slice(0, fullName.lastIndexOf('.'));
      const svc: Service = { fullName, methods: new Map() };
      for (const [name, m] of Object.entries(methods)) {
        const request = this.#resolve(m.requestType, scope);
        const response = this.#resolve(m.responseType, scope);
        if (request.kind !== 'message' || response.kind !== 'message') throw new InternalError(`${fullName}.${name}: request and response must be messages`);
        const lower = name.charAt(0).toLowerCase() + name.slice(1);
        svc.methods.set(lower, {
          name: lower, path: `/${fullName.slice(1)}/${name}`, request, response,
          responseStream: m.responseStream === true, requestStream: m.requestStream === true,
        });
      }
      this.#services.set(fullName.slice(1), svc);
    }
  }

  /** A service by its full name without the leading dot (`runtime.v1.RuntimeService`). */
  service(fullName: string): Service {
    const s = this.#services.get(fullName);
    if (!s) throw new InternalError(`no service ${fullName} in the descriptor`);
    return s;
  }

  /** A message type by its full name without the leading dot (`runtime.v1.PodSandboxConfig`). */
  message(fullName: string): MessageType {
    const t = this.#types.get(`.${fullName}`);
    if (!t || t.kind !== 'message') throw new InternalError(`no message ${fullName} in the descriptor`);
    return t;
  }

  /** All message types (for tests). */
  messages(): MessageType[] {
    return [...this.#types.values()].filter((t): t is MessageType => t.kind === 'message');
  }

  /** The fields of `t` ordered by number, resolving them on first use. */
  fieldsOf(t: MessageType): Field[] {
    if (t.fields) return t.fields;
    const oneofOf = new Map<string, string>();
    for (const [oneof, { oneof: members }] of Object.entries(t.raw.oneofs)) for (const m of members) oneofOf.set(m, oneof);
    const fields: Field[] = [];
    for (const [name, f] of Object.entries(t.raw.fields)) {
      let keyType: ScalarType | null = null;
      if (f.keyType !== undefined) {
        if (!SCALARS.has(f.keyType)) throw new InternalError(`${t.fullName}.${name}: bad map key type ${f.keyType}`);
        keyType = f.keyType as ScalarType;
      }
      fields.push({
        name, id: f.id, fullName: `${t.fullName}.${name}`, repeated: f.rule === 'repeated', keyType,
        type: SCALARS.has(f.type) ? f.type as ScalarType : this.#resolve(f.type, t.fullName),
        oneof: oneofOf.get(name) ?? null,
      });
    }
    fields.sort((a, b) => a.id - b.id);
    t.byId = new Map(fields.map((f) => [f.id, f]));
    t.fields = fields;
    return fields;
  }

  /** Resolves a type name as protobuf.js does: absolute with a leading dot, else from `scope` outwards. */
  #resolve(name: string, scope: string): MessageType | EnumType {
    if (name.startsWith('.')) {
      const t = this.#types.get(name);
      if (t) return t;
    } else {
      for (let s = scope; ; s = s.slice(0, s.lastIndexOf('.'))) {
        const t = this.#types.get(`${s}.${name}`);
        if (t) return t;
        if (s === '') break;
      }
    }
    throw new InternalError(`type ${name} (used in ${scope}) is not in the descriptor`);
  }
}
