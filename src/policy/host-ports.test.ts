import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { canonicalIp, hostIpProblem, hostPortProbe, listeningPorts, nodeAddresses, portsInTable } from './host-ports.ts';

const TCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:4813 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 0100007F:A1B2 0100007F:4813 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 20 4 30 10 -1
`;
const TCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3 1 0 100 0 0 10 0
`;

describe('host ports in use', () => {
  it('reads LISTEN sockets (v4 and v6) and ignores connected ones', () => {
    assert.deepEqual(portsInTable(TCP, '0A'), [0x4813]);
    assert.deepEqual(portsInTable(TCP6, '0A'), [80]);
    assert.deepEqual(portsInTable('garbage\nnot a table\n', '0A'), []);
  });

  it('sees a real listener on this host, by protocol', async () => {
    const s = createServer();
    await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
    const port = (s.address() as { port: number }).port;
    try {
      const probe = hostPortProbe(await listeningPorts());
      assert.equal(probe(port, 'tcp'), true);
      assert.equal(probe(port, 'sctp'), false);
    } finally {
      await new Promise<void>((resolve) => s.close(() => resolve()));
    }
  });
});

describe('port mapping host_ip', () => {
  it('empty, a wildcard or a node address only; never loopback, link-local, another host or a non-address', () => {
    const node = new Set(['192.0.2.2', 'fd00::2']);
    for (const ip of ['', '0.0.0.0', '::', '192.0.2.2', 'fd00::2', 'FD00:0::2']) assert.equal(hostIpProblem(ip, node), undefined, ip);
    for (const ip of ['127.0.0.1', '::1', '169.254.169.254', '203.0.113.9', '10.96.0.1', 'fe80::1', 'fe80::1%eth0', 'localhost', '192.0.2.2 ', '0192.0.2.2', '1.2.3']) {
      assert.match(hostIpProblem(ip, node) ?? '', /host_ip .* (is not an address of this node|is not an IP address)/, ip);
    }
    assert.equal(canonicalIp('FD00:0:0::2'), 'fd00::2');
  });

  it('the node addresses read from the interfaces leave loopback and link-local out', () => {
    const a = nodeAddresses();
    for (const ip of a) assert.doesNotMatch(ip, /^(127\.|::1$|169\.254\.|fe80:)/, ip);
  });
});
