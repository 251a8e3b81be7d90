/**
 * The layering of src/, checked by `npx depcruise src bench scripts` in .ci/run (docs/architecture.md
 * draws it). A folder may import the folders below it in LAYERS, never one above; a folder cycle is
 * therefore impossible. Nothing outside test/ imports test/.
 */
const LAYERS = [
  'cli', // composition root for the command line (starts an embedded daemon)
  'daemon', // composition root for the node service
  'k8s', // manifests and the webhook's Kubernetes shapes
  'cri', // CRI gRPC service, client, error → status mapping
  'stream', // exec / attach / port-forward streaming server
  'engine', // pods and containers: lifecycle, records, recovery, views
  'policy', // trust levels and node enforcement (pure)
  'runtime', // Backend seam, conmon, OCI spec builder, one folder per backend
  'vm', // bulkhead-vm: VMMs, guest image, agent protocol
  'network', // pod network namespaces, CNI, egress guard
  'image', // registry, content store, unpack, snapshots
  'cgroup', // the one owner of cgroupfs
  'oci', // OCI runtime-spec types
  'metrics', // Prometheus registry and /metrics server (fed by cri/daemon through seams; imports no part)
  'api', // the CRI data model
  'wire', // HTTP/2, HPACK, gRPC transport, proto codec
  'util', // processes, logs, paths
];

const above = (i) => LAYERS.slice(0, i);
const layerRules = LAYERS.map((name, i) => ({
  name: `layer-${name}`,
  comment: `src/${name}/ may not import a layer above it (${above(i).join(', ') || 'none'})`,
  severity: 'error',
  from: { path: `^src/${name}/`, pathNot: '\\.test\\.ts$' },
  to: { path: i === 0 ? '^$' : `^src/(${above(i).join('|')})/` },
})).filter((r) => r.to.path !== '^$');

module.exports = {
  forbidden: [
    ...layerRules,
    {
      name: 'errors-is-the-floor',
      comment: 'src/errors.ts imports nothing of Bulkhead',
      severity: 'error',
      from: { path: '^src/errors\\.ts$' },
      to: { path: '^src/' },
    },
    {
      name: 'util-below-everything',
      comment: 'src/util/ imports only src/errors.ts and itself',
      severity: 'error',
      from: { path: '^src/util/' },
      to: { path: '^src/', pathNot: '^src/(util/|errors\\.ts$)' },
    },
    {
      name: 'no-test-imports',
      comment: 'production code, benches and the harness never import test/ (shared starters live in harness/)',
      severity: 'error',
      from: { path: '^(src|bench|scripts|harness)/', pathNot: '\\.test\\.ts$' },
      to: { path: '^test/' },
    },
    {
      name: 'no-circular',
      comment: 'no module cycle, even inside one folder',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'known-folders',
      comment: 'every folder of src/ has a place in LAYERS',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^src/[^/]+/', pathNot: `^src/(${LAYERS.join('|')})/` },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '(^|/)node_modules/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js', '.json'] },
  },
};
