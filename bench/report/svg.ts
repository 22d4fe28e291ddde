// Plain SVG charts for the result files: line panels (latency CDFs, growth curves) and
// bars (throughput). No dependencies; the output renders on GitHub and in any browser.

export interface Series {
  readonly name: string;
  readonly points: readonly (readonly [number, number])[];
}

export interface Panel {
  readonly title: string;
  readonly series: readonly Series[];
}

export interface LineChartOptions {
  readonly title: string;
  readonly panels: readonly Panel[];
  readonly xLabel: string;
  readonly yLabel: string;
  readonly logX?: boolean;
  readonly logY?: boolean;
  readonly columns?: number;
  /** Fixed y range (CDFs: 0..1); default from the data. */
  readonly yRange?: readonly [number, number];
  readonly yFormat?: (y: number) => string;
}

const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#111111', '#e377c2', '#17becf', '#bcbd22'];
const PANEL_W = 420;
const PANEL_H = 280;
const M = { left: 56, right: 16, top: 30, bottom: 42 };

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const fmt = (x: number) => (Math.abs(x) >= 100 ? x.toFixed(0) : Math.abs(x) >= 10 ? x.toFixed(0) : Math.abs(x) >= 1 ? x.toFixed(1).replace(/\.0$/, '') : x.toPrecision(2));

/** Stable color per series name across panels. */
function palette(names: readonly string[]): Map<string, string> {
  return new Map(names.map((n, i) => [n, COLORS[i % COLORS.length]!]));
}

function ticks(lo: number, hi: number, log: boolean): number[] {
  if (log) {
    const out: number[] = [];
    for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
      for (const m of [1, 2, 5]) {
        const v = m * 10 ** e;
        if (v >= lo * 0.999 && v <= hi * 1.001) out.push(v);
      }
    }
    return out;
  }
  const span = hi - lo || 1;
  const raw = span / 5;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) out.push(Math.round(v * 1e9) / 1e9);
  return out;
}

export function lineChart(o: LineChartOptions): string {
  const cols = Math.min(o.columns ?? 2, o.panels.length) || 1;
  const rows = Math.ceil(o.panels.length / cols);
  const names = [...new Set(o.panels.flatMap((p) => p.series.map((s) => s.name)))];
  const color = palette(names);
  const legendH = 24;
  const W = cols * PANEL_W;
  const H = 36 + legendH + rows * PANEL_H;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">${esc(o.title)}</text>`,
  ];
  let lx = 10;
  for (const n of names) {
    parts.push(`<rect x="${lx}" y="${36}" width="12" height="4" fill="${color.get(n)}"/><text x="${lx + 16}" y="${42}">${esc(n)}</text>`);
    lx += 28 + n.length * 7.5;
  }
  o.panels.forEach((panel, i) => {
    const ox = (i % cols) * PANEL_W;
    const oy = 36 + legendH + Math.floor(i / cols) * PANEL_H;
    const pts = panel.series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!o.logX || x > 0) && (!o.logY || y > 0));
    let [x0, x1] = pts.length ? [Math.min(...pts.map((p) => p[0])), Math.max(...pts.map((p) => p[0]))] : [1, 10];
    let [y0, y1] = o.yRange ?? (pts.length ? [Math.min(0, ...pts.map((p) => p[1])), Math.max(...pts.map((p) => p[1]))] : [0, 1]);
    if (o.logX) x0 = 10 ** (Math.floor(Math.log10(x0) * 2) / 2);
    if (o.logY) {
      y0 = 10 ** Math.floor(Math.log10(Math.max(y0, Math.min(...pts.map((p) => p[1]).filter((y) => y > 0), 1))));
    }
    if (x1 <= x0) x1 = x0 + 1;
    if (y1 <= y0) y1 = y0 + 1;
    const pw = PANEL_W - M.left - M.right;
    const ph = PANEL_H - M.top - M.bottom;
    const sx = (x: number) => ox + M.left + (o.logX ? (Math.log10(x) - Math.log10(x0)) / (Math.log10(x1) - Math.log10(x0)) : (x - x0) / (x1 - x0)) * pw;
    const sy = (y: number) => oy + M.top + ph - (o.logY ? (Math.log10(y) - Math.log10(y0)) / (Math.log10(y1) - Math.log10(y0)) : (y - y0) / (y1 - y0)) * ph;
    parts.push(`<text x="${ox + PANEL_W / 2}" y="${oy + 18}" text-anchor="middle" font-weight="bold">${esc(panel.title)}</text>`);
    parts.push(`<rect x="${ox + M.left}" y="${oy + M.top}" width="${pw}" height="${ph}" fill="none" stroke="#999"/>`);
    for (const t of ticks(x0, x1, !!o.logX)) {
      parts.push(`<line x1="${sx(t)}" x2="${sx(t)}" y1="${oy + M.top}" y2="${oy + M.top + ph}" stroke="#eee"/>`);
      parts.push(`<text x="${sx(t)}" y="${oy + M.top + ph + 14}" text-anchor="middle">${fmt(t)}</text>`);
    }
    for (const t of ticks(y0, y1, !!o.logY)) {
      parts.push(`<line x1="${ox + M.left}" x2="${ox + M.left + pw}" y1="${sy(t)}" y2="${sy(t)}" stroke="#eee"/>`);
      parts.push(`<text x="${ox + M.left - 4}" y="${sy(t) + 4}" text-anchor="end">${o.yFormat ? o.yFormat(t) : fmt(t)}</text>`);
    }
    parts.push(`<text x="${ox + M.left + pw / 2}" y="${oy + PANEL_H - 10}" text-anchor="middle">${esc(o.xLabel)}</text>`);
    parts.push(`<text transform="translate(${ox + 14},${oy + M.top + ph / 2}) rotate(-90)" text-anchor="middle">${esc(o.yLabel)}</text>`);
    for (const s of panel.series) {
      const ps = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!o.logX || x > 0) && (!o.logY || y > 0));
      if (ps.length === 0) continue;
      const d = ps.map(([x, y], k) => `${k === 0 ? 'M' : 'L'}${sx(Math.min(Math.max(x, x0), x1)).toFixed(1)},${sy(Math.min(Math.max(y, y0), y1)).toFixed(1)}`).join('');
      parts.push(`<path d="${d}" fill="none" stroke="${color.get(s.name)}" stroke-width="1.6"/>`);
      if (ps.length <= 12) for (const [x, y] of ps) parts.push(`<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="2.5" fill="${color.get(s.name)}"/>`);
    }
  });
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}

export interface Bar {
  readonly label: string;
  readonly value: number;
  /** Small text above the bar (e.g. a ratio). */
  readonly note?: string;
}

export interface BarGroup {
  readonly title: string;
  readonly bars: readonly Bar[];
}

export function barChart(title: string, yLabel: string, groups: readonly BarGroup[]): string {
  const gw = 100 + Math.max(...groups.map((g) => g.bars.length)) * 80;
  const W = groups.length * gw;
  const H = 340;
  const top = 50;
  const bottom = 60;
  const ph = H - top - bottom;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">${esc(title)}</text>`,
  ];
  groups.forEach((g, gi) => {
    const ox = gi * gw;
    const max = Math.max(...g.bars.map((b) => b.value), 1);
    const top2 = Math.max(ticks(0, max * 1.1, false).at(-1) ?? max, max);
    const sy = (v: number) => top + ph - (v / top2) * ph;
    parts.push(`<text x="${ox + gw / 2}" y="40" text-anchor="middle" font-weight="bold">${esc(g.title)}</text>`);
    for (const t of ticks(0, top2, false)) {
      parts.push(`<line x1="${ox + 60}" x2="${ox + gw - 10}" y1="${sy(t)}" y2="${sy(t)}" stroke="#eee"/>`);
      parts.push(`<text x="${ox + 56}" y="${sy(t) + 4}" text-anchor="end">${fmt(t)}</text>`);
    }
    parts.push(`<text transform="translate(${ox + 14},${top + ph / 2}) rotate(-90)" text-anchor="middle">${esc(yLabel)}</text>`);
    g.bars.forEach((b, i) => {
      const x = ox + 70 + i * 80;
      parts.push(`<rect x="${x}" y="${sy(b.value).toFixed(1)}" width="56" height="${(top + ph - sy(b.value)).toFixed(1)}" fill="${COLORS[i % COLORS.length]}"/>`);
      parts.push(`<text x="${x + 28}" y="${(sy(b.value) - 4).toFixed(1)}" text-anchor="middle">${esc(b.note ?? fmt(b.value))}</text>`);
      parts.push(`<text x="${x + 28}" y="${top + ph + 16}" text-anchor="middle">${esc(b.label)}</text>`);
    });
  });
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}
