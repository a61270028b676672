// A time series chart with uPlot.
import { useEffect, useRef } from "react";
import uPlot from "uplot";

export type Series = { label: string; values: (number | null)[]; color: string };

/** `times` are milliseconds since the epoch; with `steps`, plain numbers on the x axis (a metric's steps). */
export function Chart(props: { times: number[]; series: Series[]; height?: number; yLabel?: string; max?: number; steps?: boolean }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const { times, series, height = 180, yLabel, max, steps = false } = props;

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const dark = document.documentElement.dataset.theme === "dark";
    const axis = { stroke: dark ? "#a8b3c2" : "#4a5565", grid: { stroke: dark ? "#2a3340" : "#e5e9ef" } };
    const opts: uPlot.Options = {
      width: el.clientWidth || 600,
      height,
      scales: { x: { time: !steps }, y: max != null ? { range: [0, max] } : {} },
      axes: [steps ? { ...axis, label: "step" } : axis, { ...axis, label: yLabel }],
      series: [
        steps ? { label: "step" } : {},
        ...series.map((s) => ({ label: s.label, stroke: s.color, width: 2, fill: steps ? undefined : `${s.color}22`, spanGaps: steps })),
      ],
      legend: { show: true },
    };
    const data = [steps ? times : times.map((t) => t / 1000), ...series.map((s) => s.values)] as uPlot.AlignedData;
    plot.current?.destroy();
    plot.current = new uPlot(opts, data, el);
    const resize = () => plot.current?.setSize({ width: el.clientWidth, height });
    window.addEventListener("resize", resize);
    return () => {
      window.removeEventListener("resize", resize);
      plot.current?.destroy();
      plot.current = null;
    };
  }, [times, series, height, yLabel, max, steps]);

  return <div className="chart" ref={box} />;
}
