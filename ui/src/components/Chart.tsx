// A time series chart with uPlot.
import { useEffect, useRef } from "react";
import uPlot from "uplot";

export type Series = { label: string; values: (number | null)[]; color: string };

export function Chart(props: { times: number[]; series: Series[]; height?: number; yLabel?: string; max?: number }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const { times, series, height = 180, yLabel, max } = props;

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const dark = document.documentElement.dataset.theme === "dark";
    const axis = { stroke: dark ? "#a8b3c2" : "#4a5565", grid: { stroke: dark ? "#2a3340" : "#e5e9ef" } };
    const opts: uPlot.Options = {
      width: el.clientWidth || 600,
      height,
      scales: { x: { time: true }, y: max != null ? { range: [0, max] } : {} },
      axes: [axis, { ...axis, label: yLabel }],
      series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.color, width: 2, fill: `${s.color}22` }))],
      legend: { show: true },
    };
    const data = [times.map((t) => t / 1000), ...series.map((s) => s.values)] as uPlot.AlignedData;
    plot.current?.destroy();
    plot.current = new uPlot(opts, data, el);
    const resize = () => plot.current?.setSize({ width: el.clientWidth, height });
    window.addEventListener("resize", resize);
    return () => {
      window.removeEventListener("resize", resize);
      plot.current?.destroy();
      plot.current = null;
    };
  }, [times, series, height, yLabel, max]);

  return <div className="chart" ref={box} />;
}
