"""The dashboard snapshot: one self-contained HTML page (inline CSS, inline SVG charts, no script, no network).

People open these pages offline, long after the run, and the page's bytes are hashed into its id. So rendering
is a pure function of the data (no clock, no random ids, same data -> same bytes), nothing is fetched from
anywhere, and every string that comes from the data is escaped. Why the charts are hand-written SVG rather than
a charting library: see `abrollout.report.charts`.
"""

from __future__ import annotations

from html import escape

from abrollout.contracts.records import DashboardData
from abrollout.report.charts.effect import effect_section
from abrollout.report.charts.guardrails import guardrail_section
from abrollout.report.charts.health import health_section
from abrollout.report.charts.scales import Axis, time_axis
from abrollout.report.colors import arm_colors
from abrollout.report.formats import finite
from abrollout.report.header import header
from abrollout.report.tables import checkpoint_section, receipt_section

CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f3f4f6;color:#111827;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,sans-serif;font-variant-numeric:tabular-nums}
main{max-width:1240px;margin:0 auto;padding:24px}
code{font:12px/1.3 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;word-break:break-all}
h1{font-size:24px;margin:0;word-break:break-word}
h2{font-size:16px;margin:0 0 4px;text-transform:uppercase;letter-spacing:.06em;color:#374151}
h3{font-size:14px;margin:0;word-break:break-word}
section{margin-top:22px}
.note,figcaption p{color:#6b7280;margin:0 0 10px;font-size:13px}
.head{background:#fff;border:1px solid #e5e7eb;border-left:8px solid;border-radius:10px;padding:18px 22px}
.title{display:flex;flex-wrap:wrap;align-items:center;gap:12px}
.badge{color:#fff;font-weight:700;text-transform:uppercase;letter-spacing:.08em;padding:5px 12px;border-radius:6px}
.label{color:#4b5563;background:#f3f4f6;border:1px solid #e5e7eb;border-radius:999px;padding:2px 10px;font-size:12px}
.rationale{font-size:15px;margin:12px 0;max-width:100ch}
.alert{background:#fef2f2;border:1px solid #fecaca;color:#991b1b;border-radius:8px;padding:8px 14px;margin:8px 0}
.alert ul{margin:0;padding-left:18px}
.facts{display:grid;grid-template-columns:repeat(auto-fit,minmax(220px,1fr));gap:10px 24px;margin:14px 0 0}
.facts div:last-child{grid-column:1/-1}
dt{color:#6b7280;font-size:12px;text-transform:uppercase;letter-spacing:.05em}
dd{margin:2px 0 0;font-weight:500}
.chips{display:flex;flex-direction:column;gap:2px}
.chip{display:flex;align-items:center;gap:6px;overflow-wrap:anywhere}
.chip b{white-space:nowrap}
.chip i,.legend i{display:inline-block;width:10px;height:10px;border-radius:2px;flex:none}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:14px}
.panel{background:#fff;border:1px solid #e5e7eb;border-radius:10px;margin:0;padding:14px 16px}
.panel figcaption p{margin:2px 0 6px}
.legend{list-style:none;display:flex;flex-wrap:wrap;gap:4px 16px;margin:0 0 4px;padding:0;font-size:12px}
.legend li{display:flex;align-items:center;gap:5px;word-break:break-all}
.empty{border:1px dashed #d1d5db;border-radius:8px;color:#6b7280;text-align:center;padding:40px 12px;
background:#fafafa}
svg.chart{width:100%;height:auto;display:block;overflow:visible}
.gl{stroke:#eef0f3;stroke-width:1}
.axis{stroke:#9ca3af;stroke-width:1}
.tick{fill:#6b7280;font-size:11px}
.series{fill:none;stroke-width:1.8;stroke-linejoin:round}
.band{opacity:.14}
.whisker{stroke-width:1.5;opacity:.7}
.dot{stroke:#fff;stroke-width:1}
.breach{stroke:#fff;stroke-width:1.2}
.bad{fill:#fee2e2;opacity:.55}
.ref-zero{stroke:#374151;stroke-width:1}
.ref-mde{stroke:#7c3aed;stroke-width:1.2;stroke-dasharray:5 4}
.ref-threshold{stroke:#dc2626;stroke-width:1.4;stroke-dasharray:6 4}
.ref-label{stroke:none;font-size:11px;font-weight:600}
text.ref-zero{fill:#374151}
text.ref-mde{fill:#7c3aed}
text.ref-threshold{fill:#dc2626}
.scroll{overflow-x:auto;background:#fff;border:1px solid #e5e7eb;border-radius:10px}
table{border-collapse:collapse;width:100%;font-size:13px}
th{position:sticky;top:0;background:#f9fafb;text-align:left;color:#4b5563;font-weight:600;padding:8px 10px;
border-bottom:1px solid #e5e7eb}
td{padding:4px 10px;border-bottom:1px solid #f1f5f9;vertical-align:top}
td.n{text-align:right;white-space:nowrap}
.bad-row{background:#fef2f2}
.muted-row{color:#9ca3af}
.pill{color:#fff;font-size:11px;padding:1px 7px;border-radius:999px;white-space:nowrap}
.tag{background:#dc2626;color:#fff;font-size:11px;font-weight:600;padding:1px 6px;border-radius:4px;margin-right:6px}
.ok{color:#16a34a;font-weight:700}
.fail{color:#dc2626;font-weight:700}
footer{color:#9ca3af;font-size:12px;margin:28px 0 8px;text-align:center}
"""

CSP = "default-src 'none'; style-src 'unsafe-inline'"
"""The page may load nothing at all: a snapshot that worked offline once works offline forever."""


def _time_axis(data: DashboardData) -> Axis:
    """One time axis for every chart, so that a breach lines up with the effect and the traffic at that hour."""
    hours = [c.at_hours for c in data.checkpoints if finite(c.at_hours)]
    return time_axis(min([0.0, *hours]), max([1.0, *hours]))


def render_dashboard(data: DashboardData) -> str:
    """The snapshot page: decision first, then the charts behind it, then the check and receipt trail."""
    colors = arm_colors(data)
    x_axis = _time_axis(data)
    title = f"{data.exp_key} · {data.label} · {data.state.value}"
    body = "".join([
        header(data, colors),
        effect_section(data, x_axis, colors),
        guardrail_section(data, x_axis, colors),
        health_section(data, x_axis, colors),
        checkpoint_section(data),
        receipt_section(data),
        "<footer>abrollout dashboard snapshot · self-contained, works offline</footer>",
    ])
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body><main>{body}</main></body></html>\n")
