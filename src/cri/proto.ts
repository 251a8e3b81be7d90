/**
 * Loads the CRI v1 and Bulkhead protos once per process with @grpc/proto-loader. Decoded messages
 * use lowerCamelCase field names, enums as strings, int64 as number and default values filled in,
 * the same shapes src/api/cri.ts describes.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as protoLoader from '@grpc/proto-loader';
import * as grpc from '@grpc/grpc-js';

export const loaderOptions: protoLoader.Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
};

export interface Protos {
  runtimeService: grpc.ServiceDefinition;
  imageService: grpc.ServiceDefinition;
  bulkheadService: grpc.ServiceDefinition;
  /** grpc-js client constructors (tests, tools); the CLI's CriClient (client.ts) speaks gRPC without grpc-js. */
  RuntimeServiceClient: grpc.ServiceClientConstructor;
  ImageServiceClient: grpc.ServiceClientConstructor;
  BulkheadClient: grpc.ServiceClientConstructor;
}

let cached: Protos | undefined;

export function loadProtos(): Protos {
  if (cached) return cached;
  // The committed descriptor of api.proto + bulkhead.proto (see proto-descriptor.ts): parsing the
  // .proto text at every start would cost the CLI ~100 ms.
  const descriptor = JSON.parse(readFileSync(join(import.meta.dirname, 'proto', 'descriptor.json'), 'utf8')) as Record<string, unknown>;
  const pkg = protoLoader.fromJSON(descriptor, loaderOptions);
  const obj = grpc.loadPackageDefinition(pkg) as unknown as {
    runtime: { v1: { RuntimeService: grpc.ServiceClientConstructor; ImageService: grpc.ServiceClientConstructor } };
    bulkhead: { v1: { Bulkhead: grpc.ServiceClientConstructor } };
  };
  cached = {
    runtimeService: obj.runtime.v1.RuntimeService.service,
    imageService: obj.runtime.v1.ImageService.service,
    bulkheadService: obj.bulkhead.v1.Bulkhead.service,
    RuntimeServiceClient: obj.runtime.v1.RuntimeService,
    ImageServiceClient: obj.runtime.v1.ImageService,
    BulkheadClient: obj.bulkhead.v1.Bulkhead,
  };
  return cached;
}
