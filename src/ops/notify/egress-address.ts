import { BlockList, isIP } from 'node:net';
import { ConfigError } from '../../errors.js';

type Family = 'ipv4' | 'ipv6';

interface Range {
  cidr: string;
  family: Family;
  kind: string;
  list: BlockList;
}

function range(cidr: string, kind: string): Range {
  const [network = '', prefix = ''] = cidr.split('/');
  const family: Family = isIP(network) === 6 ? 'ipv6' : 'ipv4';
  const list = new BlockList();
  list.addSubnet(network, Number(prefix), family);
  return { cidr, family, kind, list };
}

/** Ranges an outbound connection must not reach unless `egress.allowedNetworks` opens them: each is a way into the deployment's own network. */
const REFUSED: Range[] = [
  range('0.0.0.0/8', 'a "this network" address'),
  range('10.0.0.0/8', 'a private address'),
  range('100.64.0.0/10', 'a shared (carrier-grade NAT) address'),
  range('127.0.0.0/8', 'a loopback address'),
  range('169.254.0.0/16', 'a link-local address'),
  range('172.16.0.0/12', 'a private address'),
  range('192.0.0.0/24', 'an IETF protocol address'),
  range('192.0.2.0/24', 'a documentation address'),
  range('192.168.0.0/16', 'a private address'),
  range('198.18.0.0/15', 'a benchmarking address'),
  range('198.51.100.0/24', 'a documentation address'),
  range('203.0.113.0/24', 'a documentation address'),
  range('224.0.0.0/4', 'a multicast address'),
  range('240.0.0.0/4', 'a reserved or broadcast address'),
  range('::/128', 'the unspecified address'),
  range('::1/128', 'a loopback address'),
  range('fc00::/7', 'a unique local address'),
  range('fe80::/10', 'a link-local address'),
  range('ff00::/8', 'a multicast address'),
  range('2001:db8::/32', 'a documentation address'),
];

/**
 * Cloud metadata and credential endpoints (AWS, GCP, Azure, OCI; AWS IPv6; Alibaba; ECS task and
 * EKS pod credentials). They hand out the instance's cloud credentials to whoever asks, so a range
 * in allowedNetworks does not open them: only an entry naming the address exactly does.
 */
const METADATA = new BlockList();
for (const address of ['169.254.169.254', '169.254.170.2', '169.254.170.23', '100.100.100.200']) METADATA.addAddress(address, 'ipv4');
for (const address of ['fd00:ec2::254', 'fd00:ec2::23']) METADATA.addAddress(address, 'ipv6');

/** IPv4-mapped (::ffff:0:0/96) and NAT64 (64:ff9b::/96) addresses reach the IPv4 address in their last 32 bits. */
const EMBEDS_IPV4 = new BlockList();
EMBEDS_IPV4.addSubnet('::ffff:0:0', 96, 'ipv6');
EMBEDS_IPV4.addSubnet('64:ff9b::', 96, 'ipv6');

/** `egress.allowedNetworks`, split by family: node's BlockList matches across families (`::/0` holds every IPv4 address), which would open more than the operator wrote. */
export type AllowedNetworks = Record<Family, { networks: BlockList; exactHosts: BlockList }>;

const CIDR = /^([0-9a-fA-F.:]+)\/(\d{1,3})$/;

/** Parses `egress.allowedNetworks`; an entry that is not `address/prefix` is a configuration error. */
export function allowedNetworks(cidrs: string[]): AllowedNetworks {
  const allowed: AllowedNetworks = {
    ipv4: { networks: new BlockList(), exactHosts: new BlockList() },
    ipv6: { networks: new BlockList(), exactHosts: new BlockList() },
  };
  for (const cidr of cidrs) {
    const [, network = '', prefixText = ''] = CIDR.exec(cidr) ?? [];
    const version = isIP(network);
    const prefix = Number(prefixText);
    if (version === 0 || prefix > (version === 4 ? 32 : 128)) {
      throw new ConfigError('egress.allowedNetworks', `${JSON.stringify(cidr)} is not a CIDR range such as 10.20.0.0/16`);
    }
    const family: Family = version === 4 ? 'ipv4' : 'ipv6';
    allowed[family].networks.addSubnet(network, prefix, family);
    if (prefix === (version === 4 ? 32 : 128)) allowed[family].exactHosts.addAddress(network, family);
  }
  return allowed;
}

/**
 * Why an outbound connection to `address` is refused, or undefined when it may go ahead.
 *
 * @example
 * refusalOf('::ffff:169.254.169.254', allowedNetworks([])) // '… is a cloud metadata address; …'
 */
export function refusalOf(address: string, allowed: AllowedNetworks): string | undefined {
  // A zone index (fe80::1%eth0) is not understood by BlockList: it would match no range at all.
  if (address.includes('%')) return `${address} is a scoped address`;
  const judged = judgedAddress(address);
  if (judged === undefined) return `${JSON.stringify(address)} is not an IP address`;
  const shown = judged.address === address ? address : `${address} (${judged.address})`;
  const { networks, exactHosts } = allowed[judged.family];
  if (METADATA.check(judged.address, judged.family)) {
    if (exactHosts.check(judged.address, judged.family)) return undefined;
    return `${shown} is a cloud metadata address; only an exact /32 or /128 entry in egress.allowedNetworks opens it`;
  }
  const refused = REFUSED.find((r) => r.family === judged.family && r.list.check(judged.address, judged.family));
  if (refused === undefined || networks.check(judged.address, judged.family)) return undefined;
  return `${shown} is ${refused.kind} (${refused.cidr}), outside egress.allowedNetworks`;
}

/** The address as the network will treat it: an IPv4-mapped or NAT64 address is its embedded IPv4 one; IPv6 is in canonical form. */
function judgedAddress(address: string): { address: string; family: Family } | undefined {
  const version = isIP(address);
  if (version === 4) return { address, family: 'ipv4' };
  if (version !== 6) return undefined;
  // The URL parser writes every IPv6 form (dotted tail, upper case, leading zeros) as compressed hex groups.
  const canonical = new URL(`http://[${address}]`).hostname.slice(1, -1);
  if (!EMBEDS_IPV4.check(canonical, 'ipv6')) return { address: canonical, family: 'ipv6' };
  const [high = 0, low = 0] = hexGroups(canonical).slice(6);
  return { address: [high >> 8, high & 0xff, low >> 8, low & 0xff].join('.'), family: 'ipv4' };
}

/** The eight 16-bit groups of an IPv6 address in canonical form. */
function hexGroups(canonical: string): number[] {
  const split = (part: string) => (part === '' ? [] : part.split(':').map((group) => parseInt(group, 16)));
  const [head = '', tail] = canonical.split('::');
  if (tail === undefined) return split(head);
  const [before, after] = [split(head), split(tail)];
  return [...before, ...new Array<number>(8 - before.length - after.length).fill(0), ...after];
}
