// Weighted choice (weightedClusters): cumulative weights are built once, a
// pick costs one Math.random() and a binary search. Items of weight 0 are
// never picked.

export function compileWeighted<T>(items: { value: T; weight: number }[]): () => T {
  if (items.length === 0) throw new Error('weighted choice needs at least one item');
  const values = items.map((i) => i.value);
  const cumulative = new Float64Array(items.length);
  let total = 0;
  items.forEach((item, i) => {
    if (!(item.weight >= 0) || !Number.isFinite(item.weight)) throw new Error(`invalid weight ${item.weight}`);
    total += item.weight;
    cumulative[i] = total;
  });
  if (total <= 0) throw new Error('weights must not all be 0');
  if (values.length === 1) {
    const only = values[0] as T;
    return () => only;
  }
  const last = values.length - 1;
  return () => {
    const r = Math.random() * total;
    // smallest i with r < cumulative[i]; `last` also absorbs rounding at the top
    let lo = 0;
    let hi = last;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (r < cumulative[mid]!) hi = mid;
      else lo = mid + 1;
    }
    return values[lo] as T;
  };
}
