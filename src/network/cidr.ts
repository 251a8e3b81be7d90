/** IPv4 addresses and CIDR ranges as plain numbers: parsing, overlap, formatting. */
import { InvalidArgumentError } from '../errors.ts';

export interface Cidr4 {
  /** Network address as an unsigned 32-bit number (host bits cleared). */
  base: number;
  prefix: number;
}

export function parseIp4(s: string): number {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) throw new InvalidArgumentError(`not an IPv4 address: ${JSON.stringify(s)}`);
  let n = 0;
  for (let i = 1; i <= 4; i++) {
    const part = Number(m[i]);
    if (part > 255 || (m[i]!.length > 1 && m[i]!.startsWith('0'))) throw new InvalidArgumentError(`not an IPv4 address: ${JSON.stringify(s)}`);
    n = n * 256 + part;
  }
  return n;
}

export function formatIp4(n: number): string {
  return [24, 16, 8, 0].map((sh) => Math.floor(n / 2 ** sh) % 256).join('.');
}

function maskOf(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff - (2 ** (32 - prefix) - 1));
}

/** Parses "a.b.c.d/n" (or a bare address = /32). Host bits must be zero unless allowHostBits. */
export function parseCidr4(s: string, opts: { allowHostBits?: boolean } = {}): Cidr4 {
  const [addr, len, extra] = s.split('/');
  if (extra !== undefined || addr === undefined) throw new InvalidArgumentError(`not an IPv4 CIDR: ${JSON.stringify(s)}`);
  const prefix = len === undefined ? 32 : Number(len);
  if (!/^\d{1,2}$/.test(len ?? '32') || prefix > 32) throw new InvalidArgumentError(`not an IPv4 CIDR: ${JSON.stringify(s)}`);
  const ip = parseIp4(addr);
  const base = (ip & maskOf(prefix)) >>> 0;
  if (base !== ip && !opts.allowHostBits) throw new InvalidArgumentError(`CIDR ${s} has host bits set (did you mean ${formatIp4(base)}/${prefix}?)`);
  return { base, prefix };
}

export function formatCidr4(c: Cidr4): string {
  return `${formatIp4(c.base)}/${c.prefix}`;
}

export function cidrSize(c: Cidr4): number {
  return 2 ** (32 - c.prefix);
}

export function cidrContains(c: Cidr4, ip: number): boolean {
  return ip >= c.base && ip < c.base + cidrSize(c);
}

export function cidrsOverlap(a: Cidr4, b: Cidr4): boolean {
  return a.base < b.base + cidrSize(b) && b.base < a.base + cidrSize(a);
}

/** The n-th address of a range (1 = first host address). */
export function cidrHost(c: Cidr4, n: number): number {
  if (n < 0 || n >= cidrSize(c)) throw new InvalidArgumentError(`host ${n} is outside ${formatCidr4(c)}`);
  return c.base + n;
}
