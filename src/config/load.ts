// YAML text -> Config, or every error of the file with its line and column.

import { LineCounter, isMap, isPair, isScalar, isSeq, parseDocument, type Document, type Node } from 'yaml';
import type { Config } from './types.js';
import { readConfigFile } from './read.js';
import { dottedPath, type ConfigError, type ConfigIssue, type ConfigPath } from './errors.js';
import { validateConfig } from './validate.js';

export type LoadResult = { ok: true; config: Config } | { ok: false; errors: ConfigError[] };

export async function loadConfigFile(file: string): Promise<LoadResult> {
  const text = await readConfigFile(file);
  return typeof text === 'string' ? loadConfigText(text, file) : text;
}

export function loadConfigText(text: string, file: string): LoadResult {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const at = (offset: number, path: ConfigPath, message: string): ConfigError => {
    const { line, col } = lineCounter.linePos(offset);
    return { file, line, col, path: dottedPath(path), message };
  };

  // A broken document would only add noise to validation: report syntax first.
  if (doc.errors.length > 0) {
    return failed(doc.errors.map((e) => at(e.pos[0], pathAtOffset(doc, e.pos[0]), e.message)));
  }
  if (doc.contents === null) {
    return failed([at(0, [], 'the configuration is empty: "listeners" is required')]);
  }
  let data: unknown;
  try {
    data = doc.toJS();
  } catch (err) {
    // e.g. too many alias expansions (a "billion laughs" document)
    return failed([at(0, [], (err as Error).message)]);
  }
  const result = validateConfig(data);
  if (result.ok) return result;
  return failed(result.issues.map((issue) => at(offsetOf(doc, issue), issue.path, issue.message)));
}

function failed(errors: ConfigError[]): LoadResult {
  const unique = new Map<string, ConfigError>();
  for (const e of errors) unique.set(`${e.line}:${e.col}:${e.path}:${e.message}`, e);
  const sorted = [...unique.values()].sort((a, b) => a.line - b.line || a.col - b.col);
  return { ok: false, errors: sorted };
}

/**
 * Where an issue points: the key or the value at its path; for a path that
 * does not exist (a missing key), the nearest enclosing node.
 */
function offsetOf(doc: Document, issue: ConfigIssue): number {
  let node: unknown = doc.contents;
  let keyNode: Node | undefined;
  for (const key of issue.path) {
    const next = child(node, key);
    if (!next) return startOf(node) ?? startOf(keyNode) ?? 0;
    node = next.value;
    keyNode = next.key;
  }
  if (issue.at === 'key' && keyNode) return startOf(keyNode) ?? 0;
  return startOf(node) ?? startOf(keyNode) ?? 0;
}

function child(node: unknown, key: string | number): { key?: Node; value: unknown } | undefined {
  if (isMap(node)) {
    const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(key));
    if (!pair) return undefined;
    return { key: pair.key as Node, value: pair.value };
  }
  if (isSeq(node) && typeof key === 'number' && key < node.items.length) return { value: node.items[key] };
  return undefined;
}

function startOf(node: unknown): number | undefined {
  if (isScalar(node) || isMap(node) || isSeq(node)) return node.range?.[0];
  return undefined;
}

/** The key path of the innermost node containing `offset`, to name where a syntax error sits. */
function pathAtOffset(doc: Document, offset: number): ConfigPath {
  const path: ConfigPath = [];
  let node: unknown = doc.contents;
  for (;;) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && contains(p.key, offset, p.value));
      if (!pair || !isScalar(pair.key)) return path;
      path.push(String(pair.key.value));
      node = pair.value;
    } else if (isSeq(node)) {
      const index = node.items.findIndex((item) => contains(item, offset));
      if (index < 0) return path;
      path.push(index);
      node = node.items[index];
    } else {
      return path;
    }
  }
}

function contains(first: unknown, offset: number, last: unknown = first): boolean {
  const start = startOf(first);
  const end = endOf(last) ?? endOf(first);
  return start !== undefined && end !== undefined && start <= offset && offset <= end;
}

function endOf(node: unknown): number | undefined {
  if (isScalar(node) || isMap(node) || isSeq(node)) return node.range?.[2];
  return undefined;
}
