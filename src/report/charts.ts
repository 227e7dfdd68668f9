/**
 * The report's charts, drawn by Observable Plot into a jsdom document and returned as
 * inline SVG markup: a report needs no script and no network when it is viewed.
 */
import * as Plot from "@observablehq/plot";
import { JSDOM } from "jsdom";

/** One line of a line chart; `y` null (or missing) leaves a gap. */
export interface Series {
  name: string;
  points: { x: number; y: number | null }[];
}

/** Options of {@link ChartRenderer.lines}. */
export interface LineChartOptions {
  xLabel: string;
  yLabel: string;
  series: Series[];
  /** Fixed y range, e.g. [0, 1] for probabilities. */
  yDomain?: [number, number];
  /** Show y values (fractions in [0, 1]) as percentages. */
  percent?: boolean;
  /** x is a count (epochs): integer ticks only. */
  integerX?: boolean;
}

const WIDTH = 600;
const HEIGHT = 280;

/** Draws charts as SVG strings; one renderer (one DOM) serves a whole report. */
export class ChartRenderer {
  private readonly document = new JSDOM("<!DOCTYPE html><html><body></body></html>").window.document;

  private render(options: Plot.PlotOptions): string {
    const element = Plot.plot({ ...options, document: this.document }) as unknown as { outerHTML: string };
    return element.outerHTML;
  }

  /** A line chart with one colour per series and a legend when there are several. */
  lines(o: LineChartOptions): string {
    const rows = o.series.flatMap((s) =>
      s.points.map((p) => ({ series: s.name, x: p.x, y: p.y === null || !Number.isFinite(p.y) ? NaN : p.y })),
    );
    const few = o.series.every((s) => s.points.length <= 40);
    const xs = [...new Set(rows.map((r) => r.x))].sort((a, b) => a - b);
    // Plot's `percent` scales the data by 100, so a fixed domain must be scaled too.
    const domain = o.yDomain && o.percent ? (o.yDomain.map((v) => 100 * v) as [number, number]) : o.yDomain;
    return this.render({
      width: WIDTH,
      height: HEIGHT,
      marginLeft: 50,
      x: { label: o.xLabel, ...(o.integerX ? { tickFormat: "d", ...(xs.length <= 12 ? { ticks: xs } : {}) } : {}) },
      y: { label: o.yLabel, domain, grid: true, percent: o.percent },
      color: { legend: o.series.length > 1, domain: o.series.map((s) => s.name) },
      marks: [
        Plot.lineY(rows, { x: "x", y: "y", stroke: "series" }),
        ...(few ? [Plot.dot(rows, { x: "x", y: "y", fill: "series", r: 2.5 })] : []),
      ],
    });
  }

  /**
   * A confusion matrix: rows are true classes, columns predictions; cells coloured by the
   * share of the row (recall) and labelled with counts.
   * @param matrix `[C][C]` counts, `matrix[t][p]`
   */
  confusion(matrix: number[][], classes: readonly string[]): string {
    const rows = matrix.flatMap((row, t) => {
      const total = row.reduce((a, b) => a + b, 0);
      return row.map((count, p) => ({ true: classes[t], predicted: classes[p], count, share: total > 0 ? count / total : 0 }));
    });
    return this.render({
      width: Math.max(360, 70 * classes.length + 110),
      height: Math.max(260, 40 * classes.length + 90),
      marginLeft: 90,
      marginBottom: 50,
      x: { domain: classes, label: "predicted", tickRotate: -30 },
      y: { domain: classes, label: "true" },
      // No colour ramp legend: Plot draws ramps on a canvas, which has no server-side DOM.
      color: { scheme: "blues", domain: [0, 1] },
      marks: [
        Plot.cell(rows, { x: "predicted", y: "true", fill: "share", inset: 0.5 }),
        Plot.text(rows, {
          x: "predicted",
          y: "true",
          text: (d: { count: number }) => String(d.count),
          fill: (d: { share: number }) => (d.share > 0.55 ? "white" : "black"),
        }),
      ],
    });
  }

  /** Bars per class, one bar per group side by side (e.g. accepted vs all pseudo-labels). */
  groupedBars(classes: readonly string[], groups: { name: string; values: number[] }[], yLabel: string): string {
    const rows = groups.flatMap((g) => g.values.map((value, c) => ({ class: classes[c], group: g.name, value })));
    return this.render({
      width: WIDTH,
      height: HEIGHT,
      marginLeft: 60,
      fx: { domain: classes, label: null },
      x: { axis: null, domain: groups.map((g) => g.name) },
      y: { label: yLabel, grid: true },
      color: { legend: true, domain: groups.map((g) => g.name) },
      marks: [Plot.barY(rows, { fx: "class", x: "group", y: "value", fill: "group" }), Plot.ruleY([0])],
    });
  }
}
