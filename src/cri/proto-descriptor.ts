/**
 * The CRI and Bulkhead protos as a protobuf.js JSON descriptor. Parsing the .proto text costs
 * ~100 ms at every CLI start; loading the committed descriptor (src/cri/proto/descriptor.json)
 * costs a third of that. `node src/cri/proto-descriptor.ts` regenerates it, and a unit test fails
 * when it no longer matches the .proto files.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import protobuf from 'protobufjs';

export const PROTO_DIR = join(import.meta.dirname, 'proto');
export const PROTO_FILES = ['api.proto', 'bulkhead.proto'].map((f) => join(PROTO_DIR, f));
export const DESCRIPTOR_PATH = join(PROTO_DIR, 'descriptor.json');

/** The descriptor text for the current .proto files (stable, so it can be compared). */
export function generateDescriptor(): string {
  const root = new protobuf.Root();
  root.loadSync(PROTO_FILES, { keepCase: false });
  return JSON.stringify(root.toJSON(), null, 1) + '\n';
}

if (import.meta.main) {
  writeFileSync(DESCRIPTOR_PATH, generateDescriptor());
  process.stdout.write(`wrote ${DESCRIPTOR_PATH}\n`);
}
