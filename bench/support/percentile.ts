/** The nearest-rank percentile (`q` in 0…1) of ascending values; NaN when there are none. */
export function percentile(sorted: readonly number[], q: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}
