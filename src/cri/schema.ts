/** The CRI v1 + Bulkhead proto schema for wire/proto-codec.ts, read from the committed descriptor. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Schema } from '../wire/proto-schema.ts';

let cached: Schema | undefined;

/** The CRI v1 + Bulkhead schema from the committed descriptor, parsed once per process. */
export function criSchema(): Schema {
  cached ??= new Schema(JSON.parse(readFileSync(join(import.meta.dirname, 'proto', 'descriptor.json'), 'utf8')));
  return cached;
}
