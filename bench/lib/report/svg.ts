// Renders a Vega-Lite specification to SVG text, headless (no canvas, no DOM).
import * as vega from "vega";
import { compile, type TopLevelSpec } from "vega-lite";

export async function toSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: "none", logLevel: vega.Error });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
