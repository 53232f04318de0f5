// `rewrite.prefix`: the path sent upstream. With `match.prefix` it follows
// Gateway API's ReplacePrefixMatch (Envoy's prefix_rewrite without its
// pitfall of gluing segments together):
// - the matched prefix and the replacement are both taken without a trailing
//   slash, the replacement takes the prefix's place, and the rest of the path
//   (which is empty or starts with `/`) follows unchanged; an empty result is
//   `/`. So no `//` appears and no segment is glued to another:
//     /api/ + /    : /api/x -> /x,      /api/ -> /
//     /api  + /v2  : /api/x -> /v2/x,   /api  -> /v2,   /api/ -> /v2/
//     /api  + /v2/ : /api/x -> /v2/x
//     /     + /v2  : /x     -> /v2/x,   /     -> /v2/
// - With `match.path` (exact), the whole path becomes the replacement, as
//   Envoy's prefix_rewrite does on a path match.
// - With `match.regex` it is a configuration error: there is no prefix to
//   replace.
// The function expects a path its route matched (normalized, no query).
import type { RewriteConfig, RouteMatchConfig } from '../config/types.js';

export function compileRewrite(match: RouteMatchConfig, rewrite: RewriteConfig | undefined): ((path: string) => string) | null {
  if (rewrite?.prefix === undefined) return null;
  const replacement = withoutTrailingSlash(rewrite.prefix.startsWith('/') ? rewrite.prefix : `/${rewrite.prefix}`);
  if (match.prefix !== undefined) {
    const cut = withoutTrailingSlash(match.prefix).length;
    return (path) => {
      const result = replacement + path.slice(cut);
      return result.length === 0 ? '/' : result;
    };
  }
  if (match.path !== undefined) {
    const whole = replacement.length === 0 ? '/' : replacement;
    return () => whole;
  }
  throw new Error('rewrite.prefix needs a route matching on prefix or path, not regex');
}

function withoutTrailingSlash(p: string): string {
  return p.endsWith('/') ? p.slice(0, -1) : p;
}
