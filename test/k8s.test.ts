// The manifests in k8s/: valid Kubernetes objects (the OpenAPI validators
// that kubernetes-models bundles, no cluster needed), a ConfigMap that tandem
// itself accepts, and probes, ports and grace period that agree with it.

import { readdir, readFile } from 'node:fs/promises';
import { posix } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { describe, expect, test } from 'vitest';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Service } from 'kubernetes-models/v1/Service';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import type { IContainer } from 'kubernetes-models/v1/Container';
import { loadConfigText } from '../src/config/load.js';
import type { Config } from '../src/config/types.js';

const dir = new URL('../k8s/', import.meta.url);

type Manifest = { apiVersion: string; kind: string; metadata?: { name?: string }; [key: string]: unknown };

const MODELS: Record<string, { validate(data: unknown): void }> = {
  'apps/v1 Deployment': { validate: (data) => new Deployment(data as Deployment).validate() },
  'v1 ConfigMap': { validate: (data) => new ConfigMap(data as ConfigMap).validate() },
  'v1 Service': { validate: (data) => new Service(data as Service).validate() },
  'networking.k8s.io/v1 NetworkPolicy': { validate: (data) => new NetworkPolicy(data as NetworkPolicy).validate() },
};

async function manifests(): Promise<Map<string, Manifest[]>> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.yaml')).sort();
  const byFile = new Map<string, Manifest[]>();
  for (const file of files) {
    const docs = parseAllDocuments(await readFile(new URL(file, dir), 'utf8'));
    byFile.set(
      file,
      (Array.isArray(docs) ? docs : [docs]).map((d) => {
        expect(d.errors, file).toEqual([]);
        return d.toJS() as Manifest;
      }),
    );
  }
  return byFile;
}

async function only(kind: string): Promise<Manifest> {
  const all = [...(await manifests()).values()].flat().filter((m) => m.kind === kind);
  expect(all, kind).toHaveLength(1);
  return all[0]!;
}

interface PodSpec {
  terminationGracePeriodSeconds: number;
  initContainers: IContainer[];
  containers: IContainer[];
  volumes: { name: string; configMap?: { name: string } }[];
}

async function podSpec(): Promise<{ spec: PodSpec; annotations: Record<string, string> }> {
  const deployment = (await only('Deployment')) as unknown as {
    spec: { template: { metadata: { annotations: Record<string, string> }; spec: PodSpec } };
  };
  return { spec: deployment.spec.template.spec, annotations: deployment.spec.template.metadata.annotations };
}

async function sidecar(): Promise<IContainer> {
  const { spec } = await podSpec();
  const tandem = spec.initContainers.find((c) => c.name === 'tandem');
  expect(tandem).toBeDefined();
  return tandem!;
}

async function tandemConfig(): Promise<Config> {
  const cm = (await only('ConfigMap')) as unknown as { data: Record<string, string> };
  const result = loadConfigText(cm.data['tandem.yaml'] ?? '', 'k8s/configmap.yaml#tandem.yaml');
  if (!result.ok) throw new Error(result.errors.map((e) => `${e.line}:${e.col}: ${e.path}: ${e.message}`).join('\n'));
  return result.config;
}

describe('k8s manifests', () => {
  test('every object is valid against the Kubernetes API schema', async () => {
    const seen: string[] = [];
    for (const [file, docs] of await manifests()) {
      for (const doc of docs) {
        if (doc.kind === 'Kustomization') continue;
        const model = MODELS[`${doc.apiVersion} ${doc.kind}`];
        expect(model, `${file}: no validator for ${doc.apiVersion} ${doc.kind}`).toBeDefined();
        expect(() => model!.validate(doc), file).not.toThrow();
        seen.push(doc.kind);
      }
    }
    expect(seen.sort()).toEqual(['ConfigMap', 'Deployment', 'NetworkPolicy', 'Service']);
  });

  test('the validator rejects a broken object (it is not a no-op)', async () => {
    const deployment = structuredClone(await only('Deployment')) as unknown as { spec: { template: { spec: PodSpec } } };
    deployment.spec.template.spec.initContainers[0]!.ports![0]!.containerPort = 'fifteen-thousand' as unknown as number;
    expect(() => MODELS['apps/v1 Deployment']!.validate(deployment)).toThrow(/containerPort must be integer/);
    delete (deployment.spec.template.spec.containers[0] as Partial<IContainer>).name;
    expect(() => MODELS['apps/v1 Deployment']!.validate(deployment)).toThrow(/name/);
  });

  test('the kustomization lists every manifest and names the images the Pod uses', async () => {
    const all = await manifests();
    const kustomization = all.get('kustomization.yaml')![0] as unknown as { resources: string[]; images: { name: string }[] };
    expect([...kustomization.resources].sort()).toEqual([...all.keys()].filter((f) => f !== 'kustomization.yaml'));
    const { spec } = await podSpec();
    const images = [...spec.initContainers, ...spec.containers].map((c) => c.image).sort();
    expect(kustomization.images.map((i) => i.name).sort()).toEqual(images);
  });

  test("the ConfigMap's tandem.yaml passes tandem's own validation", async () => {
    const config = await tandemConfig();
    expect(config.listeners.map((l) => l.name)).toEqual(['inbound']);
    expect(config.clusters.map((c) => c.name)).toEqual(['app']);
  });

  test('tandem is a native sidecar whose startup gates the app', async () => {
    const tandem = await sidecar();
    expect(tandem.restartPolicy).toBe('Always');
    expect(tandem.startupProbe?.httpGet?.path).toBe('/ready');
    expect(tandem.args).toEqual(['--config', '/etc/tandem/tandem.yaml']);
  });

  test('probes hit the admin API where the config binds it, on the Pod IP', async () => {
    const config = await tandemConfig();
    const tandem = await sidecar();
    // The kubelet probes the Pod IP: a loopback-only admin would fail every probe.
    expect(config.admin.address).toBe('0.0.0.0');
    const probes = { startup: tandem.startupProbe, readiness: tandem.readinessProbe, liveness: tandem.livenessProbe };
    expect(Object.fromEntries(Object.entries(probes).map(([k, p]) => [k, [p?.httpGet?.path, p?.httpGet?.port]]))).toEqual({
      startup: ['/ready', config.admin.port],
      readiness: ['/ready', config.admin.port],
      liveness: ['/live', config.admin.port],
    });
    const { annotations } = await podSpec();
    expect(annotations['prometheus.io/port']).toBe(String(config.admin.port));
  });

  test('the Service and the container ports point at the listener', async () => {
    const config = await tandemConfig();
    const listener = config.listeners[0]!;
    const service = (await only('Service')) as unknown as { spec: { ports: { port: number; targetPort: number }[] } };
    expect(service.spec.ports.map((p) => [p.port, p.targetPort])).toEqual([[80, listener.port]]);
    const tandem = await sidecar();
    expect(tandem.ports?.map((p) => p.containerPort)).toEqual([listener.port, config.admin.port]);
    const policy = (await only('NetworkPolicy')) as unknown as { spec: { ingress: { ports: { port: number }[] }[] } };
    expect(policy.spec.ingress.flatMap((rule) => rule.ports.map((p) => p.port))).toEqual([listener.port, config.admin.port]);
  });

  test('the grace period outlasts the preStop wait and the whole drain', async () => {
    const config = await tandemConfig();
    const { spec } = await podSpec();
    const preStopSeconds = spec.containers[0]?.lifecycle?.preStop?.sleep?.seconds ?? 0;
    expect(preStopSeconds).toBeGreaterThan(0);
    const drainSeconds = (config.drain.delay + config.drain.timeout) / 1000;
    expect(spec.terminationGracePeriodSeconds).toBeGreaterThan(preStopSeconds + drainSeconds);
    // tandem itself needs no preStop hook: it drains on SIGTERM.
    expect((await sidecar()).lifecycle).toBeUndefined();
  });

  test('the config is mounted as a directory so ConfigMap updates reach it', async () => {
    const tandem = await sidecar();
    const { spec } = await podSpec();
    const configPath = tandem.args![1]!;
    const mount = tandem.volumeMounts?.find((m) => m.mountPath === posix.dirname(configPath));
    expect(mount?.subPath).toBeUndefined();
    expect(spec.volumes.find((v) => v.name === mount?.name)?.configMap?.name).toBe((await only('ConfigMap')).metadata?.name);
    const cm = (await only('ConfigMap')) as unknown as { data: Record<string, string> };
    expect(Object.keys(cm.data)).toEqual([posix.basename(configPath)]);
  });

  test('resources are requested and memory is capped for tandem', async () => {
    const tandem = await sidecar();
    expect(tandem.resources?.requests).toEqual({ cpu: '100m', memory: '128Mi' });
    expect(tandem.resources?.limits?.['memory']).toBe('256Mi');
  });
});
