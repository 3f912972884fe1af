"""The dashboard's charts, drawn as inline SVG by a small hand-written kit rather than a charting library.

A snapshot's bytes are hashed into its id and it must work offline under a CSP that allows no script, so a chart
must be the same bytes for the same data, load nothing and run nothing. pygal (3.1) writes a fresh uuid4 into
each chart's id and CSS and an inline <script> even with `js=[]`; matplotlib's SVG backend (3.11) is repeatable
only through the process-wide `svg.hashsalt` rcParam (shared by every activity thread), takes ~0.7 s to import,
brings numpy, pillow and fonttools, links http:// namespaces and metadata, and has no per-point <title> for the
breach tooltips. Its scales and SVG primitives are ~250 lines; it escapes every string and shares one time axis
across all charts.
"""
