// Endpoint shorthand: "host:port", with IPv6 literals in brackets ("[::1]:8080")
// so that the last colon is never ambiguous.

export type HostPortResult = { ok: true; address: string; port: number } | { ok: false; message: string };

const BRACKETED = /^\[([0-9A-Fa-f:.]+)\]:([0-9]+)$/;
const PLAIN = /^([^:\s[\]]+):([0-9]+)$/;

export function parseHostPort(text: string): HostPortResult {
  const m = BRACKETED.exec(text) ?? PLAIN.exec(text);
  if (m) {
    const port = Number(m[2]);
    if (port < 1 || port > 65535) return { ok: false, message: `port ${m[2]} in "${text}" is out of range (1-65535)` };
    return { ok: true, address: m[1] ?? '', port };
  }
  const colons = text.split(':').length - 1;
  if (colons > 1 && !text.startsWith('[')) {
    return { ok: false, message: `"${text}": write IPv6 addresses in brackets, e.g. "[::1]:8080"` };
  }
  if (colons === 0 || text.endsWith(':') || text.endsWith(']')) {
    return { ok: false, message: `missing port in "${text}": write HOST:PORT, e.g. "127.0.0.1:8080"` };
  }
  return { ok: false, message: `"${text}" is not HOST:PORT (e.g. "127.0.0.1:8080" or "[::1]:8080")` };
}
