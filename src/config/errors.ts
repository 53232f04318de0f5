// Configuration errors: `issues` carry a key path only (validation knows
// nothing about text); `ConfigError`s add the file position for users.

export type ConfigPath = (string | number)[];

export interface ConfigIssue {
  path: ConfigPath;
  message: string;
  /** where the column should point: the key itself (unknown or reserved keys) or its value */
  at: 'key' | 'value';
}

export interface ConfigError {
  file: string;
  line: number;
  col: number;
  /** dotted key path, `(root)` for the document itself */
  path: string;
  message: string;
}

export const ROOT_PATH = '(root)';

export function dottedPath(path: ConfigPath): string {
  return path.length === 0 ? ROOT_PATH : path.join('.');
}

/** `FILE:LINE:COL: dotted.key.path: message` */
export function formatConfigError(e: ConfigError): string {
  return `${e.file}:${e.line}:${e.col}: ${e.path}: ${e.message}`;
}

/** An error about the whole file, pointing at its start (it could not be read, or not loaded at all). */
export function fileError(file: string, message: string): ConfigError {
  return { file, line: 1, col: 1, path: ROOT_PATH, message };
}
